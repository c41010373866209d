import assert from "node:assert/strict";
import { HttpError } from "./errors.ts";
import { completeMessage, parseMessagePart } from "./message_part.ts";

const DEFAULTS = { from: "Team <team@example.com>", subject: "Default", text: "Body" };

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof HttpError) return `${e.status} ${e.code}: ${e.message}`;
    throw e;
  }
  return "ok";
}

Deno.test("parseMessagePart() lays the request's message over the defaults", () => {
  const m = parseMessagePart(
    JSON.stringify({
      subject: "Hi {{name}}",
      headers: { "List-Unsubscribe": "<mailto:u@example.com>" },
    }),
    DEFAULTS,
  );
  assert.deepEqual(m, {
    ...DEFAULTS,
    subject: "Hi {{name}}",
    headers: { "List-Unsubscribe": "<mailto:u@example.com>" },
  });
  assert.deepEqual(parseMessagePart(JSON.stringify(DEFAULTS)), DEFAULTS);
});

Deno.test("parseMessagePart() refuses line breaks and controls in single-line fields", async (t) => {
  const cases: [string, unknown, RegExp][] = [
    [
      "CRLF in subject",
      { subject: "Hi\r\nBcc: spy@example.org" },
      /"subject" contains a line break/,
    ],
    [
      "LF in from",
      { from: "Eve <e@example.com>\nBcc: spy@example.org" },
      /"from" contains a line break/,
    ],
    ["CR in toName", { toName: "Eve\rBcc: x" }, /"toName"/],
    ["U+2028 in replyTo", { replyTo: "a@example.com\u2028Bcc: x" }, /"replyTo"/],
    ["NUL in subject", { subject: "a\u0000b" }, /control character/],
    [
      "CRLF in a header value",
      { headers: { "X-Tag": "a\r\nBcc: spy@example.org" } },
      /Header X-Tag contains/,
    ],
    [
      "a header name with a colon",
      { headers: { "Bcc: spy@example.org\r\nX": "y" } },
      /not a valid token/,
    ],
    ["a non-string value", { subject: 5 }, /must be a string/],
    ["an unknown key", { bcc: "spy@example.org" }, /Unknown key "bcc"/],
    ["not an object", ["subject"], /must be a JSON object/],
  ];
  for (const [name, value, re] of cases) {
    await t.step(name, () => {
      const got = code(() => parseMessagePart(JSON.stringify(value), DEFAULTS));
      assert.match(got, /^400 bad_message: /);
      assert.match(got, re);
    });
  }
  await t.step(
    "invalid JSON",
    () => assert.match(code(() => parseMessagePart("{", DEFAULTS)), /not valid JSON/),
  );
});

Deno.test("parseMessagePart() keeps line breaks in bodies", () => {
  const m = parseMessagePart(JSON.stringify({ text: "a\r\nb", html: "<p>a</p>\n" }), DEFAULTS);
  assert.equal(m.text, "a\r\nb");
});

Deno.test("completeMessage() names what is missing", () => {
  assert.match(
    code(() => completeMessage(undefined)),
    /400 bad_message: The message needs from, subject, text/,
  );
  assert.match(code(() => completeMessage({ from: "a@example.com" })), /needs subject, text/);
  assert.equal(code(() => completeMessage(DEFAULTS)), "ok");
});
