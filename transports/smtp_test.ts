import assert from "node:assert/strict";
import { createSmtpTransport, type SmtpOptions } from "./smtp.ts";
import { makeOutgoing, startSmtpServer } from "../tests/_smtp_server.ts";
import type { Outgoing, SendResult, Transport } from "../core/types.ts";

const signal = new AbortController().signal;

/** Send each message as its own batch, all at once, like the engine's window. */
async function sendAll(t: Transport, msgs: Outgoing[]): Promise<SendResult[]> {
  const out = await Promise.all(msgs.map((m) => t.send([m], { signal })));
  return out.map((r) => r[0]);
}

function opts(port: number, extra: Partial<SmtpOptions> = {}): SmtpOptions {
  return { host: "127.0.0.1", port, tls: "none", name: "client.test", ...extra };
}

Deno.test("smtp transport sends messages over plain SMTP and gets queue ids", async () => {
  const server = await startSmtpServer();
  const t = createSmtpTransport(opts(server.port, { connections: 2 }));
  try {
    const msgs = Array.from({ length: 10 }, () => makeOutgoing());
    const results = await sendAll(t, msgs);
    assert.deepEqual(results.map((r) => r.status), msgs.map(() => "sent"));
    assert.equal(server.received.length, 10);
    const ids = results.map((r) => (r.status === "sent" ? r.id : "")).sort();
    assert.deepEqual(ids, server.received.map((_, i) => `Q${i + 1}`).sort());
  } finally {
    await t.close();
    await server.close();
  }
});
