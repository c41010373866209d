import assert from "node:assert/strict";
import { createFakeTransport } from "./fake.ts";
import type { Outgoing } from "../core/types.ts";

function msg(line: number): Outgoing {
  const data = [new TextEncoder().encode(`Subject: ${line}\r\n\r\nhi\r\n`)];
  return {
    line,
    from: "a@example.com",
    to: `user${line}@example.com`,
    smtpUtf8: false,
    eightBit: false,
    messageId: `<c.${line}@example.com>`,
    data,
    size: data[0].length,
  };
}

const signal = new AbortController().signal;

Deno.test("fake transport completes each message no earlier than its latency after its own start", async () => {
  const t = createFakeTransport({ latencyMs: 30 });
  const starts: number[] = [];
  const ends: number[] = [];
  const sends = [];
  for (let i = 0; i < 20; i++) {
    starts[i] = performance.now();
    sends.push(t.send([msg(i + 1)], { signal }).then(() => ends[i] = performance.now()));
    if (i % 5 === 4) await new Promise((r) => setTimeout(r, 2));
  }
  await Promise.all(sends);
  for (let i = 0; i < 20; i++) {
    assert.ok(ends[i] - starts[i] >= 30, `message ${i} took ${ends[i] - starts[i]} ms`);
  }
  await t.close();
});

Deno.test("fake transport failure injection is seeded and honours the rate", async () => {
  const lines = Array.from({ length: 4000 }, (_, i) => msg(i + 1));
  const run = async (seed: number) => {
    const t = createFakeTransport({ latencyMs: 0, failRate: 0.1, seed, maxBatch: 4000 });
    return (await t.send(lines, { signal })).map((r) => r.status);
  };
  const a = await run(7);
  const b = await run(7);
  const c = await run(8);
  assert.deepEqual(a, b, "the same seed fails the same messages");
  assert.notDeepEqual(a, c);
  const failed = a.filter((s) => s === "failed").length;
  assert.ok(failed > 320 && failed < 480, `${failed} of 4000 failed at rate 0.1`);
});

Deno.test("fake transport transient failures succeed on a later attempt", async () => {
  const t = createFakeTransport({ latencyMs: 0, failRate: 0.5, failKind: "transient", seed: 3 });
  const pending = new Set(Array.from({ length: 50 }, (_, i) => i + 1));
  let rounds = 0;
  while (pending.size > 0 && rounds < 40) {
    rounds++;
    for (const line of [...pending]) {
      const [r] = await t.send([msg(line)], { signal });
      if (r.status === "sent") pending.delete(line);
      else assert.equal(r.status, "retry");
    }
  }
  assert.equal(pending.size, 0);
  assert.ok(rounds > 1);
});

Deno.test("fake transport refuses --fail-lines with 550 5.1.1 and logs only deliveries", async () => {
  const log = await Deno.makeTempFile();
  try {
    const t = createFakeTransport({ latencyMs: 0, failLines: [2], deliveryLog: log });
    const results = await t.send([msg(1), msg(2), msg(3)], { signal });
    assert.deepEqual(results.map((r) => r.status), ["sent", "failed", "sent"]);
    assert.match((results[1] as { reason: string }).reason, /^550 5\.1\.1/);
    assert.equal(
      await Deno.readTextFile(log),
      "1,user1@example.com,<c.1@example.com>\n3,user3@example.com,<c.3@example.com>\n",
    );
  } finally {
    await Deno.remove(log);
  }
});

Deno.test("fake transport rejects in-flight sends when the signal aborts, and checks its options", async () => {
  const t = createFakeTransport({ latencyMs: 10_000, maxBatch: 2 });
  const stop = new AbortController();
  const p = t.send([msg(1)], { signal: stop.signal });
  stop.abort(new Error("stop"));
  await assert.rejects(p, /stop/);
  await assert.rejects(t.send([msg(1), msg(2), msg(3)], { signal }), RangeError);
  assert.throws(() => createFakeTransport({ failRate: 2 }), RangeError);
  assert.throws(() => createFakeTransport({ latencyMs: -1 }), RangeError);
  await t.close();
  await assert.rejects(t.send([msg(1)], { signal }), /closed/);
});
