import assert from "node:assert/strict";
import { authenticate, base64Utf8, chooseMechanism, type CommandChannel } from "./auth.ts";
import { SmtpError } from "./error.ts";
import type { Reply } from "./reply.ts";

/** A scripted server: answers each command with the next reply; records what was sent. */
function script(replies: [number, string][]): CommandChannel & { sent: [string, boolean][] } {
  const sent: [string, boolean][] = [];
  return {
    sent,
    command(line: string, secret = false): Promise<Reply> {
      sent.push([line, secret]);
      const [code, text] = replies.shift()!;
      return Promise.resolve({ code, enhanced: "", text });
    },
  };
}

const offered = new Set(["PLAIN", "LOGIN", "XOAUTH2"]);

Deno.test("chooseMechanism() prefers XOAUTH2 with a token, else PLAIN, else LOGIN", async (t) => {
  const cases: [string, object, string[], string][] = [
    ["token", { user: "u", token: "t" }, ["PLAIN", "XOAUTH2"], "XOAUTH2"],
    ["password", { user: "u", pass: "p" }, ["LOGIN", "PLAIN"], "PLAIN"],
    ["password, LOGIN only", { user: "u", pass: "p" }, ["LOGIN"], "LOGIN"],
    ["forced LOGIN", { user: "u", pass: "p", method: "LOGIN" }, ["LOGIN", "PLAIN"], "LOGIN"],
  ];
  for (const [name, auth, mechs, want] of cases) {
    await t.step(name, () => assert.equal(chooseMechanism(auth as never, new Set(mechs)), want));
  }
  await t.step("nothing usable", () => {
    assert.throws(
      () => chooseMechanism({ user: "u", pass: "p" }, new Set(["CRAM-MD5"])),
      (e) => e instanceof SmtpError && e.code === "EAUTH" && /CRAM-MD5/.test(e.message),
    );
    assert.throws(
      () => chooseMechanism({ user: "u", pass: "p" }, new Set()),
      /does not offer AUTH/,
    );
  });
});

Deno.test("authenticate() sends RFC 4954 exchanges and marks secrets", async (t) => {
  await t.step("PLAIN with an initial response", async () => {
    const ch = script([[235, "ok"]]);
    assert.equal(await authenticate(ch, { user: "ann", pass: "pässword" }, offered), "PLAIN");
    assert.deepEqual(ch.sent, [[`AUTH PLAIN ${base64Utf8("\0ann\0pässword")}`, true]]);
    assert.equal(atob(ch.sent[0][0].slice(11)), "\0ann\0p\xc3\xa4ssword");
  });
  await t.step("LOGIN", async () => {
    const ch = script([[334, "VXNlcm5hbWU6"], [334, "UGFzc3dvcmQ6"], [235, "ok"]]);
    await authenticate(ch, { user: "ann", pass: "pw", method: "LOGIN" }, offered);
    assert.deepEqual(ch.sent, [["AUTH LOGIN", false], [btoa("ann"), true], [btoa("pw"), true]]);
  });
  await t.step(
    "XOAUTH2 asks the provider and answers an error challenge with an empty line",
    async () => {
      let calls = 0;
      const ch = script([[334, btoa('{"status":"401"}')], [
        535,
        "5.7.8 Username and Password not accepted",
      ]]);
      const e = await authenticate(ch, {
        user: "ann@example.com",
        token: () => `tok${++calls}`,
      }, offered)
        .then(() => null, (e) => e);
      assert.equal(calls, 1);
      assert.equal(
        atob(ch.sent[0][0].slice(13)),
        "user=ann@example.com\x01auth=Bearer tok1\x01\x01",
      );
      assert.deepEqual(ch.sent[1], ["", true]);
      assert.ok(
        e instanceof SmtpError && e.code === "EAUTH" && e.responseCode === 535 && !e.transient,
      );
      assert.doesNotMatch(e.message, /tok1/);
    },
  );
  await t.step("a 454 is transient", async () => {
    const ch = script([[454, "4.7.0 Temporary authentication failure"]]);
    const e = await authenticate(ch, { user: "ann", pass: "pw" }, offered).then(
      () => null,
      (e) => e,
    );
    assert.ok(e instanceof SmtpError && e.transient);
  });
});
