import assert from "node:assert/strict";
import { formatReply, parseQueueId, type Reply, replyCode, ReplyParser } from "./reply.ts";
import { SmtpError } from "./error.ts";

const enc = new TextEncoder();

function parseAll(parts: string[]): Reply[] {
  const parser = new ReplyParser();
  const out: Reply[] = [];
  for (const p of parts) {
    const b = enc.encode(p);
    parser.feed(b, 0, b.length, (r) => out.push(r));
  }
  return out;
}

Deno.test("ReplyParser reads single and multi-line replies", async (t) => {
  await t.step("one line with an enhanced code", () => {
    assert.deepEqual(parseAll(["550 5.1.1 No such user\r\n"]), [
      { code: 550, enhanced: "5.1.1", text: "5.1.1 No such user" },
    ]);
  });
  await t.step("EHLO multi-line", () => {
    const [r] = parseAll(["250-mx.example\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n"]);
    assert.equal(r.code, 250);
    assert.deepEqual(r.text.split("\n"), ["mx.example", "PIPELINING", "SIZE 1000", "8BITMIME"]);
  });
  await t.step("several replies in one read (pipelining)", () => {
    const rs = parseAll(["250 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n"]);
    assert.deepEqual(rs.map((r) => r.code), [250, 250, 354]);
    assert.deepEqual(rs.map((r) => r.enhanced), ["", "2.1.5", ""]);
  });
  await t.step("a bare code and LF-only line ends", () => {
    assert.deepEqual(parseAll(["250\n"]), [{ code: 250, enhanced: "", text: "" }]);
  });
  await t.step("enhanced code of another class is not taken", () => {
    assert.equal(parseAll(["250 5.1.1 odd\r\n"])[0].enhanced, "");
  });
});

Deno.test("ReplyParser gives the same replies at every read split", () => {
  const wire = "220 hi\r\n250-a\r\n250-b\r\n250 c\r\n421 4.4.2 closing\r\n";
  const want = parseAll([wire]);
  for (let i = 0; i <= wire.length; i++) {
    for (let j = i; j <= wire.length; j++) {
      assert.deepEqual(parseAll([wire.slice(0, i), wire.slice(i, j), wire.slice(j)]), want);
    }
  }
});

Deno.test("ReplyParser rejects malformed lines", async (t) => {
  for (const bad of ["hello\r\n", "25\r\n", "250x\r\n", "999 x\r\n", "250-a\r\n251 b\r\n"]) {
    await t.step(JSON.stringify(bad), () => {
      assert.throws(() => parseAll([bad]), (e) => e instanceof SmtpError && e.code === "EPROTOCOL");
    });
  }
});

Deno.test("replyCode() and formatReply() summarise a reply", () => {
  const [a, b] = parseAll(["450 4.7.1 too much mail\r\n", "451-a\r\n451 b\r\n"]);
  assert.equal(replyCode(a), "4.7.1");
  assert.equal(replyCode(b), "451");
  assert.equal(formatReply(a), "450 4.7.1 too much mail");
  assert.equal(formatReply(b), "451 a / b");
});

Deno.test("parseQueueId() finds the id of common servers", async (t) => {
  const cases: [string, string, string | undefined][] = [
    ["Postfix", "2.0.0 Ok: queued as 4XyZ12AbC", "4XyZ12AbC"],
    ["Exim", "OK id=1rAbCd-000123-Xy", "1rAbCd-000123-Xy"],
    ["Gmail", "2.0.0 OK  1700000000 a1b2c3d4.123 - gsmtp".replace("  ", " "), "a1b2c3d4.123"],
    ["Sendmail", "2.0.0 x3AB12345 Message accepted for delivery", "x3AB12345"],
    [
      "Microsoft",
      "2.6.0 <abc@example.com> [InternalId=1] Queued mail for delivery",
      "<abc@example.com>",
    ],
    ["smtp-server custom", "Message queued as abc123.", "abc123"],
    ["no id", "OK", undefined],
  ];
  for (const [name, text, id] of cases) {
    await t.step(name, () => assert.equal(parseQueueId(text), id));
  }
});
