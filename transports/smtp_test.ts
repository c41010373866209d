import assert from "node:assert/strict";
// deno-lint-ignore no-import-prefix -- the project imports npm packages by full specifier (no import map)
import { type ParsedMail, simpleParser } from "npm:mailparser@^3";
import { createSmtpTransport, type SmtpOptions, type SmtpTransport } from "./smtp.ts";
import { SmtpError } from "./smtp/error.ts";
import {
  makeOutgoing,
  type RecordingProxy,
  startRecordingProxy,
  startSilentServer,
  startSmtpServer,
  TEST_CA,
  type TestSmtpServer,
  type TestSmtpServerOptions,
} from "../tests/_smtp_server.ts";
import type { Outgoing, Recipient, SendResult } from "../core/types.ts";
import { MessageComposer } from "../core/message.ts";
import { Buffer } from "node:buffer";

/** Parse received bytes with mailparser (an independent MIME parser). */
async function parseMail(raw: Uint8Array): Promise<ParsedMail> {
  return await simpleParser(Buffer.from(raw));
}

const signal = new AbortController().signal;

/** Send each message as its own batch, all at once, like the engine's window. */
async function sendAll(t: SmtpTransport, msgs: Outgoing[]): Promise<SendResult[]> {
  const out = await Promise.all(msgs.map((m) => t.send([m], { signal })));
  return out.map((r) => r[0]);
}

function options(port: number, extra: Partial<SmtpOptions> = {}): SmtpOptions {
  return {
    host: "127.0.0.1",
    port,
    tls: "none",
    name: "client.test",
    reconnectDelay: 5,
    ...extra,
  };
}

function messages(n: number, prefix = "user"): Outgoing[] {
  return Array.from(
    { length: n },
    (_, i) => makeOutgoing({ line: i + 1, to: `${prefix}${i + 1}@example.com` }),
  );
}

/** Run `fn` with a server, a transport and optionally a recording proxy; always clean up. */
async function withSmtp(
  serverOptions: TestSmtpServerOptions,
  transportOptions: Partial<SmtpOptions> & { proxy?: boolean },
  fn: (
    ctx: { server: TestSmtpServer; t: SmtpTransport; proxy: RecordingProxy | null },
  ) => Promise<void>,
): Promise<void> {
  const server = await startSmtpServer(serverOptions);
  const { proxy: wantProxy, ...topts } = transportOptions;
  const proxy = wantProxy ? startRecordingProxy(server.port) : null;
  const t = createSmtpTransport(options(proxy?.port ?? server.port, topts));
  try {
    await fn({ server, t, proxy });
  } finally {
    await t.close();
    await proxy?.close();
    await server.close();
  }
}

function statuses(results: SendResult[]): string[] {
  return results.map((r) => r.status);
}

function sortedRecipients(server: TestSmtpServer): string[] {
  return server.received.flatMap((m) => m.to).sort();
}

function addressesOf(msgs: Outgoing[]): string[] {
  return msgs.map((m) => m.to).sort();
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  assert.fail("expected the promise to reject");
}

Deno.test("smtp transport sends over plain SMTP and reports the server's queue ids", async () => {
  await withSmtp({}, { connections: 2 }, async ({ server, t }) => {
    const msgs = messages(10);
    const results = await sendAll(t, msgs);
    assert.deepEqual(statuses(results), msgs.map(() => "sent"));
    assert.deepEqual(sortedRecipients(server), addressesOf(msgs));
    const ids = results.map((r) => (r.status === "sent" ? r.id : "")).sort();
    assert.deepEqual(ids, server.received.map((_, i) => `Q${i + 1}`).sort());
    const first = results[0];
    assert.ok(first.status === "sent" && first.response?.startsWith("250 "));
    assert.equal(t.maxBatch, 1);
    assert.equal(t.defaultConcurrency, 4);
  });
});

Deno.test("smtp transport takes batches of several messages and keeps their order", async () => {
  await withSmtp(
    {
      onRcptTo: (
        a,
      ) => (a === "user2@example.com" ? { code: 550, message: "5.1.1 No such user" } : null),
    },
    { connections: 2 },
    async ({ t }) => {
      const msgs = messages(5);
      const results = await t.send(msgs, { signal });
      assert.deepEqual(statuses(results), ["sent", "failed", "sent", "sent", "sent"]);
    },
  );
});

Deno.test("smtp transport speaks TLS", async (t) => {
  await t.step("STARTTLS with a certificate from the trusted test CA", async () => {
    await withSmtp({ tls: "starttls" }, { tls: "starttls", ca: TEST_CA }, async ({ server, t }) => {
      const results = await sendAll(t, messages(3));
      assert.deepEqual(statuses(results), ["sent", "sent", "sent"]);
      assert.ok(server.received.every((m) => m.secure));
    });
  });
  await t.step("implicit TLS, host name verified as localhost", async () => {
    await withSmtp(
      { tls: "implicit" },
      { tls: "implicit", host: "localhost", ca: TEST_CA },
      async ({ server, t }) => {
        const results = await sendAll(t, messages(3));
        assert.deepEqual(statuses(results), ["sent", "sent", "sent"]);
        assert.ok(server.received.every((m) => m.secure));
      },
    );
  });
});

Deno.test("smtp transport rejects untrusted certificates and never downgrades", async (t) => {
  for (const mode of ["starttls", "implicit"] as const) {
    await t.step(`${mode} with a self-signed certificate`, async () => {
      await withSmtp(
        { tls: mode, cert: "untrusted", auth: { user: "ann", pass: "secret" } },
        { tls: mode, ca: TEST_CA, auth: { user: "ann", pass: "secret" } },
        async ({ server, t }) => {
          const e = await rejection(t.send([makeOutgoing()], { signal }));
          assert.ok(e instanceof SmtpError, String(e));
          assert.equal(e.code, "ETLS");
          assert.match(e.message, /certificate/i);
          assert.deepEqual(server.auths, []);
          assert.deepEqual(server.mailFroms, []);
          assert.equal(t.stats.failedOpens, 1, "a TLS failure is not retried");
          // The transport stays failed: no later message goes out in clear text either.
          assert.equal(await rejection(t.send([makeOutgoing()], { signal })), e);
        },
      );
    });
  }
  await t.step("STARTTLS required but not offered", async () => {
    await withSmtp({ tls: "none" }, { tls: "starttls" }, async ({ server, t }) => {
      const e = await rejection(t.send([makeOutgoing()], { signal }));
      assert.ok(e instanceof SmtpError && e.code === "ESTARTTLS", String(e));
      assert.match(e.message, /does not offer STARTTLS/);
      assert.deepEqual(server.mailFroms, []);
    });
  });
});

Deno.test("smtp transport authenticates with PLAIN, LOGIN and XOAUTH2", async (t) => {
  const creds = { user: "ann@example.com", pass: "app password ü", token: "ya29.token" };
  const cases = [
    {
      name: "PLAIN by default",
      offered: ["PLAIN", "LOGIN"],
      auth: { user: creds.user, pass: creds.pass },
      method: "PLAIN",
    },
    {
      name: "LOGIN when PLAIN is not offered",
      offered: ["LOGIN"],
      auth: { user: creds.user, pass: creds.pass },
      method: "LOGIN",
    },
    {
      name: "XOAUTH2 from a token provider",
      offered: ["PLAIN", "XOAUTH2"],
      auth: { user: creds.user, token: () => Promise.resolve(creds.token) },
      method: "XOAUTH2",
    },
  ];
  for (const c of cases) {
    await t.step(`${c.name}: accepted`, async () => {
      await withSmtp(
        { tls: "starttls", auth: creds, authMethods: c.offered },
        { tls: "starttls", ca: TEST_CA, auth: c.auth },
        async ({ server, t }) => {
          assert.deepEqual(statuses(await sendAll(t, messages(2))), ["sent", "sent"]);
          assert.deepEqual(server.auths, [{ method: c.method, ok: true }]);
          assert.ok(server.received.every((m) => m.user === creds.user));
        },
      );
    });
    await t.step(`${c.name}: rejected`, async () => {
      const bad = "pass" in c.auth ? { ...c.auth, pass: "wrong" } : { ...c.auth, token: "expired" };
      await withSmtp(
        { tls: "starttls", auth: creds, authMethods: c.offered },
        { tls: "starttls", ca: TEST_CA, auth: bad },
        async ({ server, t }) => {
          const e = await rejection(sendAll(t, messages(2)));
          assert.ok(e instanceof SmtpError && e.code === "EAUTH", String(e));
          assert.equal(e.responseCode, 535);
          assert.doesNotMatch(e.message, /wrong|expired/);
          assert.deepEqual(server.auths, [{ method: c.method, ok: false }]);
          assert.deepEqual(server.mailFroms, []);
        },
      );
    });
  }
});

Deno.test("smtp transport redacts AUTH in its debug transcript", async () => {
  const lines: string[] = [];
  const pass = "s3cret-pass";
  await withSmtp(
    { tls: "starttls", auth: { user: "ann", pass }, authMethods: ["LOGIN"] },
    { tls: "starttls", ca: TEST_CA, auth: { user: "ann", pass }, debug: (l) => lines.push(l) },
    async ({ t }) => {
      await sendAll(t, messages(1));
    },
  );
  const transcript = lines.join("\n");
  assert.match(transcript, /C: AUTH LOGIN/);
  assert.match(transcript, /C: <redacted>/);
  assert.match(transcript, /C: MAIL FROM:<sender@example.com>/);
  assert.doesNotMatch(transcript, new RegExp(`${pass}|${btoa(pass)}|${btoa("ann")}`));
});

Deno.test("smtp transport pipelines: one write per message, body and next envelope together", async () => {
  await withSmtp({}, { connections: 1, proxy: true }, async ({ server, t, proxy }) => {
    const msgs = messages(6);
    assert.deepEqual(statuses(await sendAll(t, msgs)), msgs.map(() => "sent"));
    assert.equal(server.received.length, 6);
    const chunks = proxy!.chunks[0];
    const envelope = /MAIL FROM:<[^>]+>\r\nRCPT TO:<[^>]+>\r\nDATA\r\n/;
    assert.match(chunks.find((c) => c.includes("MAIL FROM"))!, envelope);
    const bodyThenNext = chunks.filter((c) => /\r\n\.\r\nMAIL FROM:/.test(c) && envelope.test(c));
    assert.ok(bodyThenNext.length >= 4, `body + next envelope grouped: ${JSON.stringify(chunks)}`);
    // 6 messages: EHLO, 1 first envelope, 5 body+envelope, 1 last body, QUIT at most a few more.
    const afterEhlo = chunks.slice(chunks.findIndex((c) => c.startsWith("EHLO")) + 1);
    assert.ok(afterEhlo.length <= 9, `round trips: ${afterEhlo.length}`);
  });
});

Deno.test("smtp transport sends one command at a time to a server without PIPELINING", async () => {
  await withSmtp(
    { pipelining: false },
    { connections: 1, proxy: true },
    async ({ server, t, proxy }) => {
      const msgs = messages(4);
      assert.deepEqual(statuses(await sendAll(t, msgs)), msgs.map(() => "sent"));
      assert.deepEqual(sortedRecipients(server), addressesOf(msgs));
      for (const c of proxy!.chunks[0]) {
        const commands = c.split("\r\n").filter((l) =>
          /^(MAIL|RCPT|DATA|RSET|QUIT|EHLO)\b/.test(l)
        );
        assert.ok(
          commands.length <= 1,
          `grouped commands without PIPELINING: ${JSON.stringify(c)}`,
        );
      }
    },
  );
});

Deno.test("SMTP-1: a pool larger than the server allows still sends everything", async () => {
  await withSmtp(
    { maxClients: 10 },
    { connections: 12, maxMessages: 50 },
    async ({ server, t }) => {
      const msgs = messages(200);
      const results = await sendAll(t, msgs);
      assert.deepEqual(statuses(results), msgs.map(() => "sent"));
      assert.deepEqual(sortedRecipients(server), addressesOf(msgs));
      assert.ok(
        server.maxConcurrent() <= 11,
        `at most the limit, plus the refused one: ${server.maxConcurrent()}`,
      );
      assert.ok(
        t.stats.failedOpens >= 1,
        "connections beyond the limit got 421 and were retried later",
      );
      assert.ok(
        t.stats.opened <= 14,
        `connections are reused, not one per message: ${t.stats.opened}`,
      );
    },
  );
});

Deno.test("SMTP-1: at a 10-connection limit, pool 20 keeps full speed: retired connections are replaced at once", async () => {
  const maxMessages = 50;
  await withSmtp(
    { maxClients: 10 },
    // The default reconnect delay: with a failure backoff shared by every slot,
    // the refused slots pushed it to its 30 s cap and each round of retirements
    // waited behind it (2,000 messages took 4 x 30 s).
    { connections: 20, maxMessages, reconnectDelay: 250 },
    async ({ server, t }) => {
      const msgs = messages(2000);
      const started = performance.now();
      const results = await sendAll(t, msgs);
      const elapsed = performance.now() - started;
      assert.deepEqual(statuses(results), msgs.map(() => "sent"));
      assert.equal(server.received.length, msgs.length, "each message delivered exactly once");
      assert.deepEqual(sortedRecipients(server), addressesOf(msgs));
      assert.ok(t.stats.refusedOpens >= 1, "the server refused connections beyond its limit");
      assert.ok(t.stats.limit <= 10, `the pool shrank to the server's limit: ${t.stats.limit}`);
      const needed = msgs.length / maxMessages;
      assert.ok(
        t.stats.opened >= needed && t.stats.opened <= needed + 2,
        `one connection per ${maxMessages} messages, no churn: ${t.stats.opened} opened`,
      );
      assert.ok(
        t.stats.longestWait <= 5000,
        `no wait beyond the 5 s probe cap was scheduled: ${t.stats.longestWait} ms`,
      );
      assert.ok(elapsed < 15_000, `no stall behind a reconnect backoff: ${Math.round(elapsed)} ms`);
    },
  );
});

Deno.test("SMTP-1: a pool shrunk by refusals probes again and grows back when the server admits more", async () => {
  let attempts = 0;
  await withSmtp(
    {},
    {
      connections: 4,
      maxMessages: 20,
      reconnectDelay: 1,
      dialer: {
        // Attempts 3 to 6 are refused, as by a server that is full for a moment.
        connect(o) {
          attempts++;
          if (attempts >= 3 && attempts <= 6) {
            return Promise.reject(new Error("connection refused (test)"));
          }
          return Deno.connect(o);
        },
        startTls: (c, o) => Deno.startTls(c, o),
      },
    },
    async ({ server, t }) => {
      const msgs = messages(1000);
      const results = await sendAll(t, msgs);
      assert.deepEqual(statuses(results), msgs.map(() => "sent"));
      assert.deepEqual(sortedRecipients(server), addressesOf(msgs));
      assert.ok(t.stats.refusedOpens >= 1, "a refusal while others worked shrank the pool");
      assert.equal(t.stats.failedOpens, 4);
      assert.equal(t.stats.limit, 4, "probes found the room again");
    },
  );
});

Deno.test("SMTP-2: a 421 after the 3rd message moves the next one, nothing is sent twice", async () => {
  await withSmtp(
    {
      onMailFrom: (_a, s) => (s.accepted >= 3 ? { code: 421, message: "4.4.2 closing" } : null),
    },
    { connections: 2, maxAttempts: 5 },
    async ({ server, t }) => {
      const msgs = messages(20);
      const results = await sendAll(t, msgs);
      assert.deepEqual(statuses(results), msgs.map(() => "sent"));
      assert.deepEqual(sortedRecipients(server), addressesOf(msgs), "each message exactly once");
      const perConnection = new Map<number, number>();
      for (const m of server.received) {
        perConnection.set(
          m.connection,
          (perConnection.get(m.connection) ?? 0) + 1,
        );
      }
      assert.ok([...perConnection.values()].every((n) => n <= 3));
      assert.ok(t.stats.requeued >= 1);
    },
  );
});

Deno.test("SMTP-3: 450 4.7.1 at MAIL FROM is a transient result, and sends after the window", async () => {
  let throttled = false;
  let accepted = 0;
  await withSmtp(
    {
      onMailFrom: () => (throttled ? { code: 450, message: "4.7.1 too much mail" } : null),
      onData: () => {
        if (++accepted === 5) throttled = true;
        return null;
      },
    },
    { connections: 2 },
    async ({ server, t }) => {
      const msgs = messages(20);
      const first = await sendAll(t, msgs);
      const retry = msgs.filter((_, i) => first[i].status === "retry");
      // Pipelining on 2 connections may get one more MAIL FROM in before the window starts.
      assert.equal(first.filter((r) => r.status === "sent").length, server.received.length);
      assert.ok(
        server.received.length >= 5 && server.received.length <= 7,
        `${server.received.length}`,
      );
      assert.equal(retry.length, 20 - server.received.length);
      for (const r of first) {
        if (r.status === "retry") {
          assert.equal(r.code, "4.7.1");
          assert.match(r.reason, /^450 4\.7\.1 too much mail/);
        }
      }
      throttled = false;
      const second = await sendAll(t, retry);
      assert.deepEqual(statuses(second), retry.map(() => "sent"));
      assert.deepEqual(sortedRecipients(server), addressesOf(msgs));
    },
  );
});

Deno.test("ADDR-2: a UTF-8 address needs SMTPUTF8", async (t) => {
  const utf8 = () => makeOutgoing({ to: "jürgen@example.org", smtpUtf8: true });
  await t.step(
    "server without SMTPUTF8: that one fails permanently, the others are sent",
    async () => {
      await withSmtp(
        { smtpUtf8: false },
        { connections: 1, proxy: true },
        async ({ server, t, proxy }) => {
          const msgs = [makeOutgoing({ to: "user@xn--bcher-kva.example" }), utf8(), makeOutgoing()];
          const results = await sendAll(t, msgs);
          assert.deepEqual(statuses(results), ["sent", "failed", "sent"]);
          const failed = results[1];
          assert.ok(failed.status === "failed" && failed.code === "SMTPUTF8");
          assert.match(failed.reason, /SMTPUTF8/);
          assert.match(failed.reason, /jürgen@example\.org/);
          assert.equal(server.received.length, 2);
          const wire = proxy!.chunks[0].join("");
          assert.match(wire, /RCPT TO:<user@xn--bcher-kva\.example>\r\n/);
          assert.doesNotMatch(wire, /jürgen/);
        },
      );
    },
  );
  await t.step("server with SMTPUTF8: MAIL FROM:<...> SMTPUTF8", async () => {
    await withSmtp({}, { connections: 1, proxy: true }, async ({ server, t, proxy }) => {
      assert.deepEqual(statuses(await sendAll(t, [utf8()])), ["sent"]);
      assert.deepEqual(server.received[0].to, ["jürgen@example.org"]);
      assert.equal(server.received[0].fromArgs.SMTPUTF8, true);
      assert.ok(
        proxy!.chunks[0].some((c) => c.includes("MAIL FROM:<sender@example.com> SMTPUTF8\r\n")),
      );
    });
  });
  await t.step("8bit bodies need 8BITMIME and are sent with BODY=8BITMIME", async () => {
    await withSmtp({ eightBitMime: false }, { connections: 1 }, async ({ t }) => {
      const [r] = await sendAll(t, [makeOutgoing({ eightBit: true, body: "Ça va? 東京" })]);
      assert.ok(r.status === "failed" && r.code === "8BITMIME");
    });
    await withSmtp({}, { connections: 1 }, async ({ server, t }) => {
      assert.deepEqual(
        statuses(await sendAll(t, [makeOutgoing({ eightBit: true, body: "Ça va? 東京" })])),
        ["sent"],
      );
      assert.equal(server.received[0].fromArgs.BODY, "8BITMIME");
      const parsed = await parseMail(server.received[0].raw);
      assert.equal(parsed.text?.trim(), "Ça va? 東京");
    });
  });
});

Deno.test("ADDR-3: a 550 5.1.1 at RCPT fails that message; the connection goes on", async () => {
  await withSmtp(
    {
      onRcptTo: (
        a,
      ) => (a === "user4@example.com" ? { code: 550, message: "5.1.1 No such user" } : null),
    },
    { connections: 1 },
    async ({ server, t }) => {
      const msgs = messages(6);
      const results = await sendAll(t, msgs);
      assert.deepEqual(statuses(results), ["sent", "sent", "sent", "failed", "sent", "sent"]);
      const r = results[3];
      assert.ok(r.status === "failed");
      assert.equal(r.code, "5.1.1");
      assert.equal(r.reason, "550 5.1.1 No such user");
      assert.equal(server.connections(), 1);
      assert.equal(server.received.length, 5);
    },
  );
});

Deno.test("smtp transport classifies replies to the end of DATA", async () => {
  await withSmtp(
    {
      onData: (m) =>
        m.to[0] === "user2@example.com"
          ? { code: 554, message: "5.7.1 Rejected as spam" }
          : m.to[0] === "user3@example.com"
          ? { code: 451, message: "4.3.0 Try later" }
          : null,
    },
    { connections: 1 },
    async ({ t }) => {
      const results = await sendAll(t, messages(4));
      assert.deepEqual(results.map((r) => r.status === "sent" ? "sent" : `${r.status} ${r.code}`), [
        "sent",
        "failed 5.7.1",
        "retry 4.3.0",
        "sent",
      ]);
    },
  );
});

Deno.test("MIME-3: dot-stuffed on the wire, stored exactly by the server", async () => {
  const body = "hello\r\n.\r\n.signature\r\nworld";
  await withSmtp({}, { connections: 1, proxy: true }, async ({ server, t, proxy }) => {
    const msgs = [1, 3, 7, 1000].map((chunk) => makeOutgoing({ body, chunk }));
    assert.deepEqual(statuses(await sendAll(t, msgs)), msgs.map(() => "sent"));
    for (const m of server.received) {
      const parsed = await parseMail(m.raw);
      assert.deepEqual(parsed.text?.split("\n").slice(0, 4), ["hello", ".", ".signature", "world"]);
    }
    const wire = proxy!.chunks[0].join("");
    assert.equal(wire.split("\r\nhello\r\n..\r\n..signature\r\nworld\r\n").length - 1, 4);
  });
});

Deno.test("smtp transport reuses connections up to maxMessages", async (t) => {
  for (const [maxMessages, connections] of [[3, 4], [100, 1]] as const) {
    await t.step(
      `maxMessages ${maxMessages}: 10 messages over ${connections} connection(s)`,
      async () => {
        await withSmtp({}, { connections: 1, maxMessages }, async ({ server, t }) => {
          assert.deepEqual(statuses(await sendAll(t, messages(10))), Array(10).fill("sent"));
          assert.equal(server.connections(), connections);
          assert.equal(t.stats.opened, connections);
        });
      },
    );
  }
});

Deno.test("smtp transport honours the abort signal", async (t) => {
  await t.step("a message in flight", async () => {
    await withSmtp({ onMailFrom: () => "hang" }, { connections: 1 }, async ({ server, t }) => {
      const ac = new AbortController();
      const p = t.send([makeOutgoing()], { signal: ac.signal });
      while (server.mailFroms.length === 0) await new Promise((r) => setTimeout(r, 2));
      const reason = new Error("stop now");
      ac.abort(reason);
      assert.equal(await rejection(p), reason);
    });
  });
  await t.step("a message still queued, and a signal aborted before send()", async () => {
    const silent = startSilentServer();
    const t = createSmtpTransport(options(silent.port, { greetingTimeout: 10_000 }));
    try {
      const ac = new AbortController();
      const p = t.send([makeOutgoing()], { signal: ac.signal });
      ac.abort(new Error("stop"));
      assert.match(String(await rejection(p)), /stop/);
      assert.match(
        String(await rejection(t.send([makeOutgoing()], { signal: ac.signal }))),
        /stop/,
      );
    } finally {
      await silent.close();
      await t.close();
    }
  });
});

Deno.test("smtp transport names the timeout that expired", async (t) => {
  await t.step("greeting: send() rejects after the reconnect backoff gives up", async () => {
    const silent = startSilentServer();
    const t = createSmtpTransport(
      options(silent.port, { greetingTimeout: 30, reconnectAttempts: 1 }),
    );
    try {
      const e = await rejection(t.send([makeOutgoing()], { signal }));
      assert.ok(e instanceof SmtpError, String(e));
      assert.equal(e.code, "ETIMEDOUT");
      assert.equal(e.timeout, "greeting");
      assert.match(e.message, /did not answer the greeting within 30 ms \(greetingTimeout\)/);
      assert.match(e.message, /gave up after 2 attempts/);
      assert.equal(silent.accepted(), 2);
    } finally {
      await t.close();
      await silent.close();
    }
  });
  await t.step("command: the message comes back as retry", async () => {
    await withSmtp(
      { onMailFrom: () => "hang" },
      { commandTimeout: 30, maxAttempts: 1 },
      async ({ t }) => {
        const [r] = await sendAll(t, messages(1));
        assert.ok(r.status === "retry", JSON.stringify(r));
        assert.equal(r.code, "ETIMEDOUT");
        assert.match(r.reason, /MAIL FROM within 30 ms \(commandTimeout\)/);
      },
    );
  });
  await t.step("data: the message may have been accepted, so it is a retry", async () => {
    await withSmtp({ onData: () => "hang" }, { dataTimeout: 30 }, async ({ t }) => {
      const [r] = await sendAll(t, messages(1));
      assert.ok(r.status === "retry", JSON.stringify(r));
      assert.equal(r.code, "ETIMEDOUT");
      assert.match(r.reason, /end of the message data within 30 ms \(dataTimeout\)/);
    });
  });
});

Deno.test("smtp transport gives up on an unreachable host after the reconnect backoff", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  const t = createSmtpTransport(options(port, { reconnectAttempts: 2, reconnectDelay: 1 }));
  try {
    const e = await rejection(t.send([makeOutgoing()], { signal }));
    assert.ok(e instanceof SmtpError && e.code === "ECONNECTION", String(e));
    assert.match(
      e.message,
      new RegExp(`Cannot connect to 127\\.0\\.0\\.1:${port}: .*gave up after 3 attempts`),
    );
    assert.equal(t.stats.failedOpens, 3);
  } finally {
    await t.close();
  }
});

Deno.test("smtp transport refuses to send after close()", async () => {
  await withSmtp({}, {}, async ({ t }) => {
    assert.deepEqual(statuses(await sendAll(t, messages(1))), ["sent"]);
    await t.close();
    const e = await rejection(t.send([makeOutgoing()], { signal }));
    assert.ok(e instanceof SmtpError && e.code === "ECLOSED");
  });
});

Deno.test("smtp transport close() finishes messages in flight, then QUITs", async () => {
  await withSmtp(
    {
      onRcptTo: (
        a,
      ) => (a === "user2@example.com" ? { code: 550, message: "5.1.1 No such user" } : null),
    },
    { connections: 1, proxy: true },
    async ({ server, t, proxy }) => {
      const pending = sendAll(t, messages(2));
      await t.close();
      assert.deepEqual(statuses(await pending), ["sent", "failed"]);
      assert.equal(server.received.length, 1);
      const wire = proxy!.chunks[0].join("");
      assert.match(wire, /RSET\r\nQUIT\r\n$/);
    },
  );
});

Deno.test("smtp transport delivers MessageComposer output intact (MIME-1, MIME-3)", async (t) => {
  const columns = ["email", "name"];
  const template = {
    from: "Team <team@example.com>",
    toName: "{{name}}",
    subject: "Grüße aus Köln",
    text: "hello\n.\n.signature\nworld\nÇa va? 東京, {{name}}\n",
  };
  const people: Recipient[] = [
    { line: 2, address: "ann@example.com", values: ["ann@example.com", "Ann"], smtpUtf8: false },
    {
      line: 3,
      address: "jurgen@example.org",
      values: ["jurgen@example.org", "Jürgen"],
      smtpUtf8: false,
    },
  ];
  for (const allow8bit of [false, true]) {
    await t.step(allow8bit ? "8bit body with 8BITMIME" : "7bit-safe encoding", async () => {
      const composer = new MessageComposer(template, columns, { allow8bit });
      const msgs = people.map((p) => composer.render(p));
      assert.ok(msgs.every((m) => m.eightBit === allow8bit));
      await withSmtp({}, { connections: 1 }, async ({ server, t }) => {
        assert.deepEqual(statuses(await sendAll(t, msgs)), ["sent", "sent"]);
        for (const [i, m] of server.received.entries()) {
          const parsed = await parseMail(m.raw);
          const to = Array.isArray(parsed.to) ? parsed.to[0] : parsed.to;
          assert.equal(parsed.subject, "Grüße aus Köln");
          assert.deepEqual(parsed.text?.split("\n").slice(0, 5), [
            "hello",
            ".",
            ".signature",
            "world",
            `Ça va? 東京, ${people[i].values[1]}`,
          ]);
          assert.deepEqual(
            to?.value.map((v) => ({ name: v.name, address: v.address })),
            [{ name: people[i].values[1], address: people[i].address }],
          );
          assert.equal(parsed.messageId, msgs[i].messageId);
          assert.equal(m.fromArgs.BODY, allow8bit ? "8BITMIME" : undefined);
        }
      });
    });
  }
});
