import assert from "node:assert/strict";
import { parseCapabilities, resultFor } from "./connection.ts";

Deno.test("parseCapabilities() reads the EHLO keywords", () => {
  const c = parseCapabilities(
    "mx.example.com Hello\nPIPELINING\nSIZE 35882577\n8BITMIME\nAUTH LOGIN PLAIN XOAUTH2\n" +
      "AUTH=LOGIN\nENHANCEDSTATUSCODES\nSMTPUTF8\nCHUNKING",
  );
  assert.deepEqual({ ...c, auth: [...c.auth].sort() }, {
    pipelining: true,
    eightBitMime: true,
    smtpUtf8: true,
    enhancedStatusCodes: true,
    startTls: false,
    size: 35882577,
    auth: ["LOGIN", "PLAIN", "XOAUTH2"],
  });
  const bare = parseCapabilities("mx.example.com\nSTARTTLS\nSIZE");
  assert.equal(bare.startTls, true);
  assert.equal(bare.size, 0);
  assert.equal(bare.pipelining, false);
});

Deno.test("resultFor() maps reply classes to results", async (t) => {
  const cases: [number, string, object][] = [
    [250, "2.0.0 Ok: queued as ABC", {
      status: "sent",
      id: "ABC",
      response: "250 2.0.0 Ok: queued as ABC",
    }],
    [250, "OK", { status: "sent", id: undefined, response: "250 OK" }],
    [450, "4.7.1 too much mail", {
      status: "retry",
      code: "4.7.1",
      reason: "450 4.7.1 too much mail",
    }],
    [452, "Too many recipients", {
      status: "retry",
      code: "452",
      reason: "452 Too many recipients",
    }],
    [550, "5.1.1 No such user", {
      status: "failed",
      code: "5.1.1",
      reason: "550 5.1.1 No such user",
    }],
    [554, "Transaction failed", {
      status: "failed",
      code: "554",
      reason: "554 Transaction failed",
    }],
    [
      550,
      "5.4.5 Daily user sending limit exceeded",
      {
        status: "retry",
        code: "5.4.5",
        reason: "550 5.4.5 Daily user sending limit exceeded",
        pauseSender: true,
      },
    ],
  ];
  for (const [code, text, want] of cases) {
    await t.step(`${code} ${text}`, () => {
      const enhanced = /^\d\.\d+\.\d+/.exec(text)?.[0] ?? "";
      assert.deepEqual(resultFor({ code, enhanced, text }), want);
    });
  }
});
