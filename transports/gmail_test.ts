import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
// deno-lint-ignore no-import-prefix -- the project imports npm packages inline (no import map)
import { simpleParser } from "npm:mailparser@^3";
// deno-lint-ignore no-import-prefix -- the project imports npm packages inline (no import map)
import { exportPKCS8, generateKeyPair } from "npm:jose@^5";
import {
  createGmailTransport,
  GmailError,
  type GmailTransportOptions,
  retryAfterOf,
} from "./gmail.ts";
import type { Outgoing, SendResult } from "../core/types.ts";
import {
  type GmailFakeOptions,
  type RunningGmailFake,
  startGmailFake,
} from "../tests/_gmail_fake.ts";
import { type MeantMessage, messages } from "../tests/_gmail_messages.ts";

const USER = "sender@example.org";
const REFRESH = "rt-good";
const signal = new AbortController().signal;

/** A fake plus a refresh-token transport pointed at it; fast quotas unless the test sets them. */
async function withGmail(
  fakeOptions: GmailFakeOptions,
  transportOptions: Partial<GmailTransportOptions>,
  fn: (ctx: {
    server: RunningGmailFake;
    transport: ReturnType<typeof createGmailTransport>;
    logs: string[];
  }) => Promise<void>,
): Promise<void> {
  const server = startGmailFake({
    refreshTokens: { [REFRESH]: USER },
    quota: { units: 1e12, perMs: 1000 },
    ...fakeOptions,
  });
  const logs: string[] = [];
  const transport = createGmailTransport({
    credentials: {
      kind: "refresh-token",
      clientId: "fake-client-id",
      clientSecret: "fake-client-secret",
      refreshToken: REFRESH,
    },
    credentialsSource: "creds.json",
    apiUrl: server.url,
    tokenUrl: server.tokenUrl,
    rate: "100000/s",
    log: (line) => logs.push(line),
    ...transportOptions,
  });
  try {
    await fn({ server, transport, logs });
  } finally {
    await transport.close();
    await server.close();
  }
}

/** Parse every received raw with mailparser and compare it with what was meant. */
async function assertReceivedAsMeant(
  server: RunningGmailFake,
  meant: readonly MeantMessage[],
): Promise<void> {
  const byId = new Map(meant.map((m) => [m.messageId, m]));
  for (const r of server.fake.received) {
    assert.match(r.raw, /^[A-Za-z0-9_-]+$/, "raw is base64url: no + / or =");
    const parsed = await simpleParser(Buffer.from(r.bytes));
    const m = byId.get(parsed.messageId ?? "");
    assert.ok(m, `unexpected message ${parsed.messageId}`);
    assert.equal(parsed.subject, m.subject);
    const to = Array.isArray(parsed.to) ? parsed.to[0] : parsed.to;
    assert.deepEqual(to?.value, [{ address: m.to, name: m.name }]);
    assert.deepEqual(parsed.from?.value, [{ address: m.from, name: m.fromName }]);
    assert.equal(parsed.text?.replaceAll("\r\n", "\n"), m.text);
  }
}

function count(results: readonly SendResult[], status: SendResult["status"]): number {
  return results.filter((r) => r.status === status).length;
}

Deno.test("gmail send() delivers every message of a batch, each raw decoding to what was meant", async () => {
  await withGmail({}, {}, async ({ server, transport }) => {
    const { meant, out } = messages(120);
    const results = [
      ...await transport.send(out.slice(0, 50), { signal }),
      ...await transport.send(out.slice(50, 100), { signal }),
      ...await transport.send(out.slice(100), { signal }),
    ];
    assert.equal(count(results, "sent"), 120);
    assert.equal(server.fake.stats.batchRequests, 3);
    assert.equal(server.fake.received.length, 120);
    // Results are in the order of the batch although the fake shuffles its answers.
    const idOf = new Map(server.fake.received.map((r) => [r.messageId, r.id]));
    results.forEach((r, i) =>
      assert.equal(r.status === "sent" && r.id, idOf.get(out[i].messageId))
    );
    await assertReceivedAsMeant(server, meant);
  });
});

Deno.test("GMAIL-3 non-ASCII subject and name: raw is base64url and round-trips to the exact Unicode", async () => {
  await withGmail({}, {}, async ({ server, transport }) => {
    const { meant, out } = messages(6); // even lines: "Grüße — 東京", every 3rd: "Jürgen"
    const results = await transport.send(out, { signal });
    assert.equal(count(results, "sent"), 6);
    for (const r of server.fake.received) {
      assert.ok(!/[+/=]/.test(r.raw));
      const decoded = new TextDecoder().decode(Buffer.from(r.raw, "base64url"));
      const head = decoded.slice(0, decoded.indexOf("\r\n\r\n"));
      assert.match(head, /^[\t\r\n\x20-\x7e]*$/, "headers are 7-bit: encoded words, not raw UTF-8");
      const parsed = await simpleParser(Buffer.from(r.raw, "base64url"));
      const m = meant.find((x) => x.messageId === parsed.messageId)!;
      assert.equal(parsed.subject, m.subject);
      if (!/^[\x20-\x7e]*$/.test(m.subject)) {
        assert.match(head, /^Subject: =\?(UTF|utf)-8\?[BbQq]\?/m);
      }
      assert.equal(parsed.to && !Array.isArray(parsed.to) && parsed.to.value[0].name, m.name);
    }
    const subjects = await Promise.all(
      server.fake.received.map(async (r) => (await simpleParser(Buffer.from(r.bytes))).subject),
    );
    assert.ok(subjects.includes("Grüße — 東京 #2"));
    await assertReceivedAsMeant(server, meant);
  });
});

Deno.test("GMAIL-1 parts 37-60 of a 100-part batch answered 429: 76 sent, only those 24 retried", async () => {
  const limited = (p: { batch: number; index: number }) =>
    p.batch === 1 && p.index >= 37 && p.index <= 60;
  await withGmail(
    {
      onPart: (p) =>
        limited(p)
          ? {
            status: 429,
            reason: "rateLimitExceeded",
            message: "Too many concurrent requests for user",
          }
          : undefined,
    },
    { batchSize: 100 },
    async ({ server, transport }) => {
      const { meant, out } = messages(100);
      const first = await transport.send(out, { signal });
      assert.equal(count(first, "sent"), 76);
      first.forEach((r, i) => {
        const want = i + 1 >= 37 && i + 1 <= 60 ? "retry" : "sent";
        assert.equal(r.status, want, `message ${i + 1}`);
        if (r.status === "retry") {
          assert.equal(r.code, "429");
          assert.match(r.reason, /Too many concurrent requests for user \(rateLimitExceeded\)/);
          assert.equal(r.pauseSender, undefined);
        }
      });
      // The engine sends the 24 again, alone.
      const again = out.filter((_, i) => first[i].status === "retry");
      const second = await transport.send(again, { signal });
      assert.equal(count(second, "sent"), 24);
      assert.equal(server.fake.stats.parts, 124, "only the 24 went a second time");
      const secondBatch = server.fake.received.filter((r) => r.batch === 2).map((r) => r.messageId)
        .sort();
      assert.deepEqual(secondBatch, again.map((m) => m.messageId).sort());
      assert.equal(new Set(server.fake.received.map((r) => r.messageId)).size, 100);
      assert.equal(server.fake.received.length, 100, "nothing delivered twice");
      await assertReceivedAsMeant(server, meant);
    },
  );
});

Deno.test("gmail send() classifies each part by its own status", async (t) => {
  // Message line -> the answer the fake gives it.
  const answers: Record<
    number,
    { status: number; reason?: string; message?: string; headers?: Record<string, string> }
  > = {
    2: { status: 500, reason: "backendError", message: "Backend Error" },
    3: { status: 400, reason: "invalidArgument", message: "Invalid To header" },
    4: { status: 403, reason: "forbidden", message: "Delegation denied" },
    5: { status: 403, reason: "userRateLimitExceeded", message: "User Rate Limit Exceeded" },
    6: {
      status: 503,
      reason: "backendError",
      message: "Unavailable",
      headers: { "Retry-After": "7" },
    },
    7: {
      status: 429,
      reason: "rateLimitExceeded",
      message: "User-rate limit exceeded.  Retry after 2099-01-01T00:00:00.000Z",
    },
    8: { status: 404, reason: "notFound", message: "Not Found" },
  };
  const want: Record<number, [SendResult["status"], string]> = {
    1: ["sent", ""],
    2: ["retry", "500"],
    3: ["failed", "400"],
    4: ["failed", "403"],
    5: ["retry", "403"],
    6: ["retry", "503"],
    7: ["retry", "429"],
    8: ["failed", "404"],
  };
  await withGmail(
    {
      onPart: (p) => answers[Number(/user(\d+)@/.exec(p.to ?? "")?.[1])],
    },
    {},
    async ({ transport }) => {
      const { out } = messages(8);
      const results = await transport.send(out, { signal });
      for (let line = 1; line <= 8; line++) {
        await t.step(`line ${line}: ${want[line].join(" ")}`, () => {
          const r = results[line - 1];
          assert.equal(r.status, want[line][0]);
          if (r.status !== "sent") {
            assert.equal(r.code, want[line][1]);
            assert.ok(r.reason.includes(answers[line].message!.replace(/\s+/g, " ")), r.reason);
          }
        });
      }
      const r6 = results[5];
      assert.equal(r6.status === "retry" && r6.retryAfterMs, 7000);
      const r7 = results[6];
      assert.ok(
        r7.status === "retry" && r7.retryAfterMs! > 1e9,
        "Retry after <ISO time> is honoured",
      );
    },
  );
});

Deno.test("gmail send() retries a message whose answer part is missing, and a garbled response", async (t) => {
  const cases: Array<[string, (body: string) => string, string]> = [
    ["a part dropped", (body) => {
      const parts = body.split(/(?=--batch_fake)/);
      return parts.filter((p, i) => i !== 1 || p.startsWith("--batch_fake") === false).join("");
    }, "no-answer"],
    ["not multipart", () => "<html>proxy error</html>", "bad-response"],
  ];
  for (const [name, mangle, code] of cases) {
    await t.step(name, async () => {
      const server = startGmailFake({
        refreshTokens: { [REFRESH]: USER },
        quota: { units: 1e9, perMs: 1 },
      });
      const mangling: typeof fetch = async (input, init) => {
        const res = await fetch(input, init);
        if (!String(input).includes("/batch/")) return res;
        const type = name === "not multipart" ? "text/html" : res.headers.get("content-type")!;
        return new Response(mangle(await res.text()), {
          status: 200,
          headers: { "content-type": type },
        });
      };
      const transport = createGmailTransport({
        credentials: {
          kind: "refresh-token",
          clientId: "fake-client-id",
          clientSecret: "fake-client-secret",
          refreshToken: REFRESH,
        },
        apiUrl: server.url,
        tokenUrl: server.tokenUrl,
        fetch: mangling,
      });
      try {
        const results = await transport.send(messages(5).out, { signal });
        const retried = results.filter((r) => r.status === "retry" && r.code === code);
        assert.equal(retried.length, name === "a part dropped" ? 1 : 5);
        assert.equal(count(results, "sent"), name === "a part dropped" ? 4 : 0);
        for (const r of retried) {
          assert.match(r.status === "retry" ? r.reason : "", /may or may not have been sent/);
        }
      } finally {
        await server.close();
      }
    });
  }
});

Deno.test("gmail send() refreshes an expired token once on 401 and fails clearly the second time", async (t) => {
  await t.step("expired token: one refresh, the batch goes through", async () => {
    await withGmail({}, {}, async ({ server, transport }) => {
      await transport.send(messages(3).out, { signal });
      assert.equal(server.fake.stats.tokenRequests, 1);
      server.fake.expireTokens();
      const results = await transport.send(messages(3, 4).out, { signal });
      assert.equal(count(results, "sent"), 3);
      assert.equal(server.fake.stats.unauthorized, 1);
      assert.equal(server.fake.stats.tokenRequests, 2);
      assert.equal(server.fake.received.length, 6);
    });
  });
  await t.step("rejected twice: GmailError naming the credentials, no token in it", async () => {
    await withGmail({}, {}, async ({ server, transport }) => {
      server.fake.rejectAllTokens = true;
      const err = await transport.send(messages(2).out, { signal }).then(
        () => assert.fail("send must throw"),
        (e) => e,
      );
      assert.ok(err instanceof GmailError);
      assert.equal(
        err.message,
        "Gmail rejected the access token twice; check the credentials in creds.json",
      );
      assert.equal(err.code, "auth");
      assert.equal(server.fake.stats.unauthorized, 2);
      assert.equal(server.fake.stats.tokenRequests, 2, "exactly one refresh");
      assert.ok(!/fake-at-|rt-good/.test(err.message + String(err.stack)));
    });
  });
  await t.step(
    "a revoked refresh token: GmailError from the token endpoint, without the token",
    async () => {
      await withGmail({ refreshTokens: {} }, {}, async ({ transport }) => {
        const err = await transport.send(messages(1).out, { signal }).then(
          () => undefined,
          (e) => e,
        );
        assert.ok(err instanceof GmailError);
        assert.match(
          err.message,
          /invalid_grant \(Token has been expired or revoked\.\); check the credentials in creds\.json/,
        );
        assert.ok(!err.message.includes(REFRESH));
      });
    },
  );
  await t.step("concurrent batches share one refresh", async () => {
    await withGmail({}, {}, async ({ server, transport }) => {
      await transport.send(messages(1).out, { signal });
      server.fake.expireTokens();
      const all = await Promise.all(
        [1, 2, 3, 4].map((k) => transport.send(messages(5, k * 10).out, { signal })),
      );
      assert.equal(all.flat().filter((r) => r.status === "sent").length, 20);
      assert.equal(server.fake.stats.tokenRequests, 2);
    });
  });
});

Deno.test("gmail tokens are refreshed before they expire (no 401 on the way)", async () => {
  const clock = { t: Date.now() };
  await withGmail(
    { tokenLifetimeS: 120, now: () => clock.t },
    { now: () => clock.t },
    async ({ server, transport }) => {
      await transport.send(messages(2).out, { signal });
      clock.t += 30_000;
      await transport.send(messages(2, 3).out, { signal });
      assert.equal(server.fake.stats.tokenRequests, 1, "still fresh");
      clock.t += 40_000; // 70 s of 120: within the 60 s margin
      await transport.send(messages(2, 5).out, { signal });
      assert.equal(server.fake.stats.tokenRequests, 2);
      assert.equal(server.fake.stats.unauthorized, 0);
    },
  );
});

async function serviceAccount() {
  const { publicKey, privateKey } = await generateKeyPair("RS256", { extractable: true });
  const pem = await exportPKCS8(privateKey);
  return {
    publicKey,
    credentials: {
      kind: "service-account" as const,
      clientEmail: "mailer@project.iam.gserviceaccount.com",
      privateKey: pem,
      privateKeyId: "key-1",
    },
  };
}

Deno.test("gmail service account: a JWT per mailbox, verified by the fake with the public key", async (t) => {
  const account = await serviceAccount();
  const users = ["ann@example.com", "bob@example.com"];
  const fakeOptions: GmailFakeOptions = {
    serviceAccounts: [{
      clientEmail: account.credentials.clientEmail,
      publicKey: account.publicKey,
      users,
    }],
  };
  await t.step("several mailboxes split the list, each with its own token", async () => {
    await withGmail(
      fakeOptions,
      { credentials: account.credentials, users },
      async ({ server, transport }) => {
        const { meant, out } = messages(200);
        const batches = [0, 1, 2, 3].map((k) =>
          transport.send(out.slice(k * 50, k * 50 + 50), { signal })
        );
        const results = (await Promise.all(batches)).flat();
        assert.equal(count(results, "sent"), 200);
        assert.equal(server.fake.acceptedBy("ann@example.com"), 100);
        assert.equal(server.fake.acceptedBy("bob@example.com"), 100);
        assert.equal(server.fake.stats.tokenRequests, 2);
        await assertReceivedAsMeant(server, meant);
      },
    );
  });
  await t.step("a key the fake does not trust is refused clearly", async () => {
    const other = await serviceAccount();
    await withGmail(fakeOptions, {
      credentials: { ...other.credentials },
      users: ["ann@example.com"],
      credentialsSource: "sa.json",
    }, async ({ transport }) => {
      const err = await transport.send(messages(1).out, { signal }).then(() => undefined, (e) => e);
      assert.ok(err instanceof GmailError);
      assert.equal(
        err.message,
        "Google refused the access token request for ann@example.com: invalid_grant (Invalid JWT Signature.); check the credentials in sa.json",
      );
    });
  });
  await t.step("a mailbox outside the delegation is refused", async () => {
    await withGmail(
      fakeOptions,
      { credentials: account.credentials, users: ["eve@example.com"] },
      async ({ transport }) => {
        const err = await transport.send(messages(1).out, { signal }).then(
          () => undefined,
          (e) => e,
        );
        assert.ok(err instanceof GmailError);
        assert.match(err.message, /for eve@example\.com: unauthorized_client/);
      },
    );
  });
});

Deno.test("gmail 'User-rate limit exceeded (Mail sending)' pauses the mailbox", async (t) => {
  await t.step("one mailbox: retry with pauseSender, then no more requests", async () => {
    await withGmail({ mailSendingLimit: 30 }, {}, async ({ server, transport, logs }) => {
      const results = await transport.send(messages(50).out, { signal });
      assert.equal(count(results, "sent"), 30);
      const paused = results.filter((r) => r.status === "retry" && r.pauseSender === true);
      assert.equal(paused.length, 20);
      for (const r of paused) {
        assert.equal(r.status === "retry" && r.retryAfterMs, undefined);
        assert.match(
          r.status === "retry" ? r.reason : "",
          /reached its sending limit .*Mail sending.*left for a later resume/,
        );
      }
      assert.equal(logs.length, 1);
      assert.match(
        logs[0],
        /no mailbox is left, so sending stops and the remaining rows stay for a later resume/,
      );
      const requests = server.fake.stats.batchRequests;
      const later = await transport.send(messages(10, 100).out, { signal });
      assert.ok(later.every((r) => r.status === "retry" && r.pauseSender === true));
      assert.equal(server.fake.stats.batchRequests, requests, "no request for a paused mailbox");
    });
  });
  await t.step("several mailboxes: the rest go to the others, then everything pauses", async () => {
    const account = await serviceAccount();
    const users = ["ann@example.com", "bob@example.com"];
    await withGmail(
      {
        mailSendingLimit: 30,
        serviceAccounts: [{
          clientEmail: account.credentials.clientEmail,
          publicKey: account.publicKey,
        }],
      },
      { credentials: account.credentials, users },
      async ({ server, transport, logs }) => {
        const { out } = messages(80);
        const first = await transport.send(out.slice(0, 50), { signal }); // ann: 30 sent, 20 back
        assert.equal(count(first, "sent"), 30);
        const back = out.slice(0, 50).filter((_, i) => first[i].status === "retry");
        assert.ok(
          first.every((r) =>
            r.status === "sent" ||
            (r.status === "retry" && r.pauseSender === undefined && r.retryAfterMs === undefined)
          ),
          "rerouted, not paused",
        );
        assert.match(
          logs[0],
          /ann@example\.com reached its sending limit .* go to the 1 other mailbox/,
        );
        const second = await transport.send(back, { signal }); // bob takes them
        assert.equal(count(second, "sent"), 20);
        const third = await transport.send(out.slice(50, 80), { signal }); // bob: 10 more, then paused
        assert.equal(count(third, "sent"), 10);
        assert.equal(third.filter((r) => r.status === "retry" && r.pauseSender).length, 20);
        assert.equal(server.fake.acceptedBy("ann@example.com"), 30);
        assert.equal(server.fake.acceptedBy("bob@example.com"), 30);
      },
    );
  });
});

/** A clock that only moves when the transport sleeps. */
function virtualClock() {
  const clock = {
    t: Date.UTC(2026, 5, 1),
    sleeps: [] as number[],
    now: () => clock.t,
    sleep: (ms: number, s: AbortSignal) => {
      s.throwIfAborted();
      clock.sleeps.push(ms);
      clock.t += ms;
      return Promise.resolve();
    },
  };
  return clock;
}

function maxInWindow(times: readonly number[], perMs: number): number {
  let max = 0;
  for (let lo = 0, hi = 0; hi < times.length; hi++) {
    while (times[hi] - times[lo] >= perMs) lo++;
    max = Math.max(max, hi - lo + 1);
  }
  return max;
}

Deno.test("gmail quotas: per-minute pacing and the daily cap, on an injected clock", async (t) => {
  await t.step(
    "150/min in batches of 50: one batch every 20 s, never a 429 from the fake",
    async () => {
      const clock = virtualClock();
      await withGmail(
        { quota: { units: 15_000, perMs: 60_000, cost: 100 }, now: clock.now },
        { rate: "150/min", now: clock.now, sleep: clock.sleep },
        async ({ server, transport }) => {
          const start = clock.t;
          const { out } = messages(500);
          for (let k = 0; k < 10; k++) {
            const r = await transport.send(out.slice(k * 50, k * 50 + 50), { signal });
            assert.equal(count(r, "sent"), 50);
          }
          const times = server.fake.received.map((r) => r.at - start);
          assert.deepEqual([...new Set(times)], Array.from({ length: 10 }, (_, k) => k * 20_000));
          assert.ok(maxInWindow(times, 60_000) <= 150);
          assert.equal(server.fake.stats.statuses[429], undefined);
        },
      );
    },
  );
  await t.step("without local pacing the fake's quota answers 429 (it does enforce)", async () => {
    const clock = virtualClock();
    await withGmail(
      { quota: { units: 15_000, perMs: 60_000, cost: 100 }, now: clock.now },
      { rate: "1000/min", now: clock.now, sleep: clock.sleep },
      async ({ transport }) => {
        const results = (await Promise.all([0, 1, 2, 3].map((k) =>
          transport.send(messages(50, k * 50 + 1).out, { signal })
        ))).flat();
        assert.equal(count(results, "sent"), 150);
        assert.equal(
          results.filter((r) =>
            r.status === "retry" && r.code === "429"
          ).length,
          50,
        );
      },
    );
  });
  await t.step(
    "a daily cap of 120: 50, 50, then 20 and the rest deferred with pauseSender",
    async () => {
      const clock = virtualClock();
      await withGmail({ now: clock.now }, {
        rate: "150/min",
        daily: 120,
        now: clock.now,
        sleep: clock.sleep,
      }, async ({ server, transport }) => {
        const start = clock.t;
        const { out } = messages(200);
        assert.equal(count(await transport.send(out.slice(0, 50), { signal }), "sent"), 50);
        assert.equal(count(await transport.send(out.slice(50, 100), { signal }), "sent"), 50);
        const third = await transport.send(out.slice(100, 150), { signal });
        assert.equal(count(third, "sent"), 20);
        assert.ok(third.slice(20).every((r) => r.status === "retry" && r.code === "daily-cap"));
        const requests = server.fake.stats.batchRequests;
        const fourth = await transport.send(out.slice(150, 200), { signal });
        assert.equal(server.fake.stats.batchRequests, requests, "no request beyond the cap");
        for (const r of fourth) {
          assert.ok(r.status === "retry" && r.pauseSender === true);
          assert.match(r.reason, /daily cap of 120 .*--gmail-daily.* left for a later resume/);
          assert.equal(r.retryAfterMs, undefined, "a resume, not a timer, picks these up");
          const hours = ((86_400_000 - (clock.t - start)) / 3_600_000).toFixed(1);
          assert.ok(r.reason.endsWith(`in about ${hours} h`), r.reason);
        }
      });
    },
  );
  await t.step("seeded past sends count against the daily cap", async () => {
    const clock = virtualClock();
    const past = Array.from({ length: 1990 }, (_, i) => clock.t - 1000 - i * 10_000);
    await withGmail({ now: clock.now }, {
      rate: "150/min",
      now: clock.now,
      sleep: clock.sleep,
      seed: { me: past },
    }, async ({ transport }) => {
      const results = await transport.send(messages(50).out, { signal });
      assert.equal(count(results, "sent"), 10);
    });
  });
  await t.step("an abort during a quota wait rejects with the abort reason", async () => {
    await withGmail({}, { rate: "50/min" }, async ({ transport }) => {
      await transport.send(messages(50).out, { signal });
      const ac = new AbortController();
      const pending = transport.send(messages(50, 51).out, { signal: ac.signal });
      ac.abort(new Error("stop now"));
      await assert.rejects(pending, /stop now/);
    });
  });
});

Deno.test("GMAIL-2 createGmailTransport() refuses bad options before any request", async (t) => {
  let requests = 0;
  const spy: typeof fetch = (input, init) => {
    requests++;
    return fetch(input, init);
  };
  const creds = {
    kind: "refresh-token",
    clientId: "i",
    clientSecret: "s",
    refreshToken: "r",
  } as const;
  const cases: Array<[string, Partial<GmailTransportOptions>, ErrorConstructor, RegExp]> = [
    [
      "batch size 250",
      { batchSize: 250 },
      RangeError,
      /batch size 250 is above Gmail's limit of 100 calls per batch request; use 100 or less \(50 is advised\)/,
    ],
    ["batch size 101", { batchSize: 101 }, RangeError, /limit of 100/],
    ["batch size 0", { batchSize: 0 }, RangeError, /from 1 to 100/],
    ["batch size 1.5", { batchSize: 1.5 }, RangeError, /from 1 to 100/],
    ["bad rate", { rate: "100/x" }, RangeError, /Invalid rate "100\/x"/],
    ["daily 0", { daily: 0 }, RangeError, /daily cap/],
    [
      "two users with a refresh token",
      { users: ["a@x.example", "b@x.example"] },
      RangeError,
      /acts as one mailbox/,
    ],
    [
      "a user twice",
      {
        credentials: { kind: "service-account", clientEmail: "a@b", privateKey: "k" },
        users: ["a@x.example", "A@x.example"],
      },
      RangeError,
      /listed twice/,
    ],
    ["not an address", { users: ["nobody"] }, TypeError, /not an email address/],
    ["bad API URL", { apiUrl: "ftp://x" }, TypeError, /http or https/],
    ["bad token URL", { tokenUrl: "::" }, TypeError, /not a URL/],
    [
      "a service account without users",
      { credentials: { kind: "service-account", clientEmail: "a@b", privateKey: "k" } },
      TypeError,
      /--gmail-user/,
    ],
  ];
  for (const [name, options, type, message] of cases) {
    await t.step(name, () => {
      assert.throws(
        () => createGmailTransport({ credentials: creds, fetch: spy, ...options }),
        (e: Error) => {
          assert.ok(e instanceof type, `${e.name}: ${e.message}`);
          assert.match(e.message, message);
          return true;
        },
      );
    });
  }
  assert.equal(requests, 0);
  await t.step("batch size 100 is fine; maxBatch shrinks to fit a small rate", () => {
    assert.equal(createGmailTransport({ credentials: creds, batchSize: 100 }).maxBatch, 100);
    assert.equal(createGmailTransport({ credentials: creds }).maxBatch, 50);
    assert.equal(createGmailTransport({ credentials: creds, rate: "20/min" }).maxBatch, 20);
    const t2 = createGmailTransport({ credentials: creds, daily: 500 });
    assert.deepEqual(t2.limits, [{ count: 500, perMs: 86_400_000 }]);
    assert.equal(t2.name, "gmail");
  });
});

Deno.test("gmail send() turns a network failure into retry and refuses use after close()", async () => {
  const server = startGmailFake({ refreshTokens: { [REFRESH]: USER } });
  const tokenUrl = server.tokenUrl;
  const transport = createGmailTransport({
    credentials: {
      kind: "refresh-token",
      clientId: "fake-client-id",
      clientSecret: "fake-client-secret",
      refreshToken: REFRESH,
    },
    tokenUrl,
    apiUrl: "http://127.0.0.1:9", // discard port: nothing listens
  });
  try {
    const results = await transport.send(messages(3).out, { signal });
    for (const r of results) {
      assert.equal(r.status, "retry");
      assert.equal(r.status === "retry" && r.code, "network");
    }
    await transport.close();
    await assert.rejects(transport.send(messages(1).out, { signal }), GmailError);
    assert.deepEqual(
      await createGmailTransport({
        credentials: { kind: "refresh-token", clientId: "a", clientSecret: "b", refreshToken: "c" },
      }).send([] as Outgoing[], { signal }),
      [],
    );
  } finally {
    await server.close();
  }
});

Deno.test("retryAfterOf() reads Retry-After seconds, dates and Gmail's 'Retry after' text", () => {
  const now = Date.parse("2026-06-01T00:00:00Z");
  assert.equal(retryAfterOf(new Headers({ "retry-after": "30" }), "", now), 30_000);
  assert.equal(
    retryAfterOf(new Headers({ "retry-after": "Mon, 01 Jun 2026 00:01:00 GMT" }), "", now),
    60_000,
  );
  assert.equal(
    retryAfterOf(
      new Headers(),
      "User-rate limit exceeded.  Retry after 2026-06-01T00:00:05.500Z (Mail sending)",
      now,
    ),
    5_500,
  );
  assert.equal(retryAfterOf(new Headers(), "Backend Error", now), undefined);
});
