import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
// deno-lint-ignore no-import-prefix -- the project imports npm packages inline (no import map)
import libmime from "npm:libmime@^5";
// deno-lint-ignore no-import-prefix -- the project imports npm packages inline (no import map)
import libqp from "npm:libqp@^3";
import {
  encodeBase64Lines,
  encodeBody,
  encodeQuotedPrintable,
  encodeWords,
  formatDate,
  formatExtraHeader,
  formatMailbox,
  formatUnstructured,
  isSevenBit,
  normalizeNewlines,
  sanitizeHeaderText,
} from "./mime.ts";
import { randomBodyText, seededRandom } from "../tests/_random.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

Deno.test("sanitizeHeaderText() turns CR, LF and control characters into spaces", async (t) => {
  const cases: [string, string][] = [
    ["plain", "plain"],
    ["a\r\nb", "a b"],
    ["a\nb\rc", "a b c"],
    ["a\r\n\r\nb", "a  b"],
    ["tab\tkept", "tab\tkept"],
    ["nul\x00del\x7fnel\x85ls\u2028", "nul del nel ls "],
  ];
  for (const [input, want] of cases) {
    await t.step(JSON.stringify(input), () => assert.equal(sanitizeHeaderText(input), want));
  }
});

Deno.test("normalizeNewlines() makes every line end CRLF", () => {
  assert.equal(normalizeNewlines("a\nb\rc\r\nd\n\re"), "a\r\nb\r\nc\r\nd\r\n\r\ne");
  assert.equal(normalizeNewlines("a\r\nb"), "a\r\nb");
});

Deno.test("formatDate() writes RFC 5322 dates that Date parses back", () => {
  const next = seededRandom(7);
  for (let i = 0; i < 200; i++) {
    const ms = Math.floor(next() * 4e12) * 1000 / 1000;
    const text = formatDate(ms);
    assert.match(
      text,
      /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d \+0000$/,
    );
    assert.equal(Date.parse(text), Math.floor(ms / 1000) * 1000);
    assert.equal(
      text.replace(/ \+0000$/, " GMT"),
      new Date(Math.floor(ms / 1000) * 1000).toUTCString(),
    );
  }
  assert.throws(() => formatDate(Number.NaN), RangeError);
});

Deno.test("encodeQuotedPrintable() output decodes with libqp and keeps lines within 76", () => {
  const next = seededRandom(42);
  for (let i = 0; i < 500; i++) {
    const text = randomBodyText(next);
    const bytes = encoder.encode(text);
    const qp = decoder.decode(encodeQuotedPrintable(bytes));
    for (const line of qp.split("\r\n")) {
      assert.ok(line.length <= 76, `line of ${line.length}: ${line}`);
      assert.ok(!line.startsWith("."), "a leading dot is encoded");
      assert.ok(!/[ \t]$/.test(line), "no trailing whitespace");
      assert.match(line, /^[\x21-\x7e \t]*$/);
    }
    assert.deepEqual(new Uint8Array(libqp.decode(qp)), bytes, JSON.stringify(text));
  }
});

Deno.test("encodeBase64Lines() output decodes to the input in lines of 76", () => {
  const next = seededRandom(43);
  for (let i = 0; i < 200; i++) {
    const bytes = Uint8Array.from(
      { length: Math.floor(next() * 300) },
      () => Math.floor(next() * 256),
    );
    const text = decoder.decode(encodeBase64Lines(bytes));
    const lines = text.split("\r\n");
    assert.equal(lines.pop(), "", "ends with CRLF (or is empty)");
    assert.ok(lines.every((l) => l.length <= 76 && l.length > 0));
    assert.deepEqual(new Uint8Array(Buffer.from(lines.join(""), "base64")), bytes);
  }
});

Deno.test("encodeBody() picks 7bit, 8bit, quoted-printable or base64 by content", async (t) => {
  const cases: [string, string, boolean, string][] = [
    ["ASCII", "hello\r\nworld\r\n", false, "7bit"],
    ["long ASCII line", "x".repeat(999) + "\r\n", false, "quoted-printable"],
    ["998 octets is still 7bit", "x".repeat(998) + "\r\n", false, "7bit"],
    ["mostly ASCII", "Grüße aus Köln, lots of ASCII text here\r\n", false, "quoted-printable"],
    ["mostly CJK", "東京東京東京東京東京東京\r\n", false, "base64"],
    ["8bit allowed", "Grüße\r\n", true, "8bit"],
    ["8bit allowed but a line is too long", "ü".repeat(500) + "\r\n", true, "base64"],
    ["NUL", "a\x00b and some ASCII\r\n", false, "quoted-printable"],
    ["NUL with 8bit allowed", "ä\x00b and some ASCII\r\n", true, "quoted-printable"],
  ];
  for (const [name, text, allow8bit, want] of cases) {
    await t.step(name, () => {
      const body = encodeBody(text, allow8bit);
      assert.equal(body.encoding, want);
      const wire = decoder.decode(body.bytes);
      const decoded = want === "base64"
        ? decoder.decode(Buffer.from(wire, "base64"))
        : want === "quoted-printable"
        ? decoder.decode(libqp.decode(wire))
        : wire;
      assert.equal(decoded, text);
    });
  }
  await t.step("a 7bit body holding the boundary is encoded instead", () => {
    assert.equal(encodeBody("a\r\n--=_b\r\n", false, "=_b").encoding, "quoted-printable");
  });
  assert.equal(isSevenBit("a\nb"), false, "a bare LF is not 7bit");
});

Deno.test("encodeWords() makes words of at most 75 characters that libmime decodes", () => {
  const next = seededRandom(44);
  const alphabet = [...'aZ09 _=?"(),.:;<>@[\\]éß東京😀\t'];
  for (let i = 0; i < 300; i++) {
    let text = "";
    const n = 1 + Math.floor(next() * 120);
    for (let j = 0; j < n; j++) text += alphabet[Math.floor(next() * alphabet.length)];
    const first = 20 + Math.floor(next() * 60);
    const words = encodeWords(text, first);
    assert.ok(words[0].length <= Math.min(first, 75), `first word ${words[0]}`);
    for (const w of words) {
      assert.ok(w.length <= 75, w);
      assert.match(
        w,
        /^=\?utf-8\?[BQ]\?[A-Za-z0-9!*+\-/=_]*\?=$/,
        "only characters safe in a phrase",
      );
    }
    assert.equal(libmime.decodeWords(words.join(" ")), text);
  }
});

Deno.test("formatUnstructured() keeps plain text readable and encodes only what it must", async (t) => {
  const cases: [string, string][] = [
    ["Hello world", "Subject: Hello world\r\n"],
    ["", "Subject:\r\n"],
    ["Hello Jürgen", "Subject: Hello =?utf-8?Q?J=C3=BCrgen?=\r\n"],
    ["Jürgen says hi", "Subject: =?utf-8?Q?J=C3=BCrgen?= says hi\r\n"],
    [" padded ", "Subject: =?utf-8?Q?_padded_?=\r\n"],
    ["fake =?utf-8?Q?x?= word", "Subject: fake =?utf-8?B?PT91dGYtOD9RP3g/PQ==?= word\r\n"],
    ["a\r\nBcc: x@example.org", "Subject: a Bcc: x@example.org\r\n"],
  ];
  for (const [value, want] of cases) {
    await t.step(JSON.stringify(value), () => {
      assert.equal(formatUnstructured("Subject", value), want);
    });
  }
  await t.step("long plain text folds at spaces", () => {
    const value = "word ".repeat(40).trim();
    const out = formatUnstructured("Subject", value);
    assert.ok(out.split("\r\n").every((l) => l.length <= 78));
    assert.equal(out.slice(9, -2).replace(/\r\n/g, ""), value);
  });
});

Deno.test("formatMailbox() writes atoms, quoted-strings or encoded-words as needed", async (t) => {
  const cases: [string, string][] = [
    ["", "To: a@example.com\r\n"],
    ["Ann Lee", "To: Ann Lee <a@example.com>\r\n"],
    ["Lee, Ann", 'To: "Lee, Ann" <a@example.com>\r\n'],
    ['Say "hi" \\o/', 'To: "Say \\"hi\\" \\\\o/" <a@example.com>\r\n'],
    ["Jürgen", "To: =?utf-8?Q?J=C3=BCrgen?= <a@example.com>\r\n"],
    ["Eve\r\nBcc: spy@example.org", 'To: "Eve Bcc: spy@example.org" <a@example.com>\r\n'],
  ];
  for (const [name, want] of cases) {
    await t.step(JSON.stringify(name), () => {
      const line = formatMailbox("To", name, "a@example.com");
      assert.equal(line, want);
      const parsed = libmime.decodeWords(line.slice(4, -2));
      assert.ok(parsed.includes("<a@example.com>") || parsed === "a@example.com");
    });
  }
});

Deno.test("formatExtraHeader() keeps structured ASCII values and folds at spaces", () => {
  const value = "<mailto:u@example.com>, <https://example.com/" + "x".repeat(100) + ">";
  const out = formatExtraHeader("List-Unsubscribe", value);
  assert.equal(
    out,
    "List-Unsubscribe: <mailto:u@example.com>,\r\n <https://example.com/" + "x".repeat(100) +
      ">\r\n",
  );
  assert.match(formatExtraHeader("X-Note", "Grüße"), /^X-Note: =\?utf-8\?[BQ]\?.*\?=\r\n$/);
});
