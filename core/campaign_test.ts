import assert from "node:assert/strict";
import { type CampaignOptions, runCampaign, startCampaign, TransportError } from "./campaign.ts";
import { flush, ManualClock } from "./clock.ts";
import { parseRate } from "./rate.ts";
import {
  joinChunks,
  type Outgoing,
  type RowOutcome,
  type SendResult,
  type Transport,
} from "./types.ts";
import { createFakeTransport } from "../transports/fake.ts";

const TEMPLATE = {
  from: "Team <team@example.com>",
  subject: "Hello {{name}}",
  text: "Hi {{name}}\n",
};

/** A CSV with a header and `n` valid rows. */
function csv(n: number, extra = ""): string {
  let s = "email,name\n";
  for (let i = 1; i <= n; i++) s += `user${i}@example.com,Name ${i}\n`;
  return s + extra;
}

/** Bytes of `text` in chunks of `size`. */
function stream(text: string, size = 4096): ReadableStream<Uint8Array> {
  const bytes = new TextEncoder().encode(text);
  let at = 0;
  return new ReadableStream({
    pull(c) {
      if (at >= bytes.length) return c.close();
      c.enqueue(bytes.slice(at, at + size));
      at += size;
    },
  });
}

interface Recorder extends Transport {
  readonly batches: Outgoing[][];
  maxInFlight: number;
}

/** A transport that answers with `answer` after `delay()` resolves, recording what it saw. */
function recorder(
  answer: (m: Outgoing, attempt: number) => SendResult,
  opts: { maxBatch?: number; delay?: () => Promise<void> } = {},
): Recorder {
  const seen = new Map<number, number>();
  let inFlight = 0;
  const t: Recorder = {
    name: "recorder",
    maxBatch: opts.maxBatch ?? 10,
    batches: [],
    maxInFlight: 0,
    async send(batch) {
      assert.ok(batch.length <= t.maxBatch, "batch larger than maxBatch");
      t.batches.push([...batch]);
      inFlight += batch.length;
      t.maxInFlight = Math.max(t.maxInFlight, inFlight);
      await (opts.delay?.() ?? Promise.resolve());
      inFlight -= batch.length;
      return batch.map((m) => {
        const n = (seen.get(m.line) ?? 0) + 1;
        seen.set(m.line, n);
        return answer(m, n);
      });
    },
    close: () => Promise.resolve(),
  };
  return t;
}

const sent = (): SendResult => ({ status: "sent", id: "x" });

function run(text: string, transport: Transport, extra: Partial<CampaignOptions> = {}) {
  const outcomes: RowOutcome[] = [];
  const done = runCampaign({
    input: stream(text),
    template: TEMPLATE,
    transport,
    onOutcome: (o) => outcomes.push(o),
    ...extra,
  });
  return { done, outcomes };
}

Deno.test("runCampaign() sends exactly one message per valid row for 0, 1, 999, 1000, 1001 and 2001 rows", async (t) => {
  for (const n of [0, 1, 999, 1000, 1001, 2001]) {
    await t.step(`${n} rows`, async () => {
      const tr = recorder(sent, { maxBatch: 100 });
      const { done, outcomes } = run(csv(n), tr, { concurrency: 250 });
      const s = await done;
      const lines = tr.batches.flat().map((m) => m.line).sort((a, b) => a - b);
      assert.deepEqual(lines, Array.from({ length: n }, (_, i) => i + 2));
      assert.equal(s.status, "finished");
      assert.equal(s.rows, n);
      assert.equal(s.sent, n);
      assert.equal(s.pending, 0);
      assert.equal(outcomes.length, n);
      assert.ok(tr.maxInFlight <= 250);
    });
  }
});

Deno.test("runCampaign() accounts for every row: rows = sent + failed + invalid + duplicates", async () => {
  const text = "email,name\nuser1@example.com,A\nnot-an-address,B\nuser3@example.com,C\n" +
    "USER1@example.com,D\nuser5@example.com,E\n";
  const tr = recorder((m) =>
    m.line === 4 ? { status: "failed", code: "5.1.1", reason: "550 5.1.1 no such user" } : sent()
  );
  const { done, outcomes } = run(text, tr);
  const s = await done;
  assert.equal(s.rows, 5);
  assert.deepEqual([s.sent, s.failed, s.invalid, s.duplicates], [2, 1, 1, 1]);
  assert.equal(s.sent + s.failed + s.invalid + s.duplicates, s.rows);
  const byLine = new Map(outcomes.map((o) => [o.line, o]));
  assert.equal(byLine.get(3)?.status, "invalid");
  assert.ok(byLine.get(3)!.reason.length > 0);
  assert.equal(byLine.get(4)?.status, "failed");
  assert.equal(byLine.get(4)?.code, "5.1.1");
  assert.equal(byLine.get(5)?.status, "duplicate");
  assert.match(byLine.get(5)!.reason, /line 2/);
});

Deno.test("runCampaign() with the fake transport: ADDR-3, one bad row and one refused recipient do not stop the run", async () => {
  const text =
    "user1@example.com\nnot-an-address\nuser3@example.com\nuser4@example.com\nuser5@example.com\n";
  const { done, outcomes } = run(text, createFakeTransport({ latencyMs: 1, failLines: [4] }), {
    template: { from: "a@example.com", subject: "s", text: "t" },
  });
  const s = await done;
  assert.deepEqual([s.rows, s.sent, s.invalid, s.failed], [5, 3, 1, 1]);
  const byLine = new Map(outcomes.map((o) => [o.line, o]));
  assert.equal(byLine.get(2)?.status, "invalid");
  assert.equal(byLine.get(4)?.status, "failed");
  assert.match(byLine.get(4)!.reason, /550 5\.1\.1/);
  for (const l of [1, 3, 5]) assert.equal(byLine.get(l)?.status, "sent");
});

Deno.test("runCampaign() never has more than the window in flight and batches at most maxBatch", async () => {
  const gate = () => new Promise<void>((r) => setTimeout(r, 1));
  const tr = recorder(sent, { maxBatch: 7, delay: gate });
  const s = await run(csv(500), tr, { concurrency: 20 }).done;
  assert.equal(s.sent, 500);
  assert.ok(tr.maxInFlight <= 20, `max in flight ${tr.maxInFlight}`);
  assert.ok(tr.batches.every((b) => b.length <= 7));
});

Deno.test("runCampaign() reads the input only as fast as the window drains (pull-based)", async () => {
  let pulls = 0;
  const text = new TextEncoder().encode(csv(500));
  let at = 0;
  const input = new ReadableStream<Uint8Array>({
    pull(c) {
      pulls++;
      if (at >= text.length) return c.close();
      c.enqueue(text.slice(at, at + 256));
      at += 256;
    },
  }, { highWaterMark: 0 });
  let open: (() => void)[] = [];
  const tr = recorder(sent, {
    maxBatch: 5,
    delay: () => new Promise<void>((r) => open.push(r)),
  });
  const campaign = startCampaign({ input, template: TEMPLATE, transport: tr, concurrency: 10 });
  await flush();
  // The window is full and nothing completes: the reader must not race ahead.
  const pullsWhileBlocked = pulls;
  assert.ok(pullsWhileBlocked <= 3, `pulled ${pullsWhileBlocked} chunks with a full window`);
  while (true) {
    const o = open;
    open = [];
    o.forEach((r) => r());
    await flush();
    if (campaign.stats.sent === 500) break;
  }
  assert.equal((await campaign.done).sent, 500);
});

Deno.test("runCampaign() retries transient failures with backoff on the injected clock", async () => {
  const clock = new ManualClock();
  const tr = recorder((m, attempt) =>
    m.line === 3 && attempt < 3
      ? { status: "retry", code: "4.7.1", reason: "450 4.7.1 try later" }
      : sent()
  );
  const retries: [number, number, number][] = [];
  const campaign = startCampaign({
    input: stream(csv(3)),
    template: TEMPLATE,
    transport: tr,
    clock,
    random: () => 0.5,
    retryBaseMs: 1000,
    onRetry: (line, attempt, _r, delay) => retries.push([line, attempt, delay]),
  });
  await flush();
  assert.equal(campaign.stats.sent, 2);
  assert.equal(campaign.stats.retrying, 1);
  await clock.advance(499); // first backoff is 0.5 * 1000
  assert.equal(campaign.stats.sent, 2);
  await clock.advance(1);
  await clock.advance(1000); // second backoff 0.5 * 2000
  const s = await campaign.done;
  assert.equal(s.sent, 3);
  assert.equal(s.transient, 2);
  assert.deepEqual(retries, [[3, 1, 500], [3, 2, 1000]]);
});

Deno.test("runCampaign() records a message as failed after maxAttempts, with the last reason", async () => {
  const clock = new ManualClock();
  const tr = recorder(() => ({ status: "retry", code: "4.2.0", reason: "451 busy" }));
  const outcomes: RowOutcome[] = [];
  const campaign = startCampaign({
    input: stream(csv(1)),
    template: TEMPLATE,
    transport: tr,
    clock,
    maxAttempts: 3,
    onOutcome: (o) => outcomes.push(o),
  });
  for (let i = 0; i < 10 && campaign.stats.failed === 0; i++) await clock.advance(60_000);
  const s = await campaign.done;
  assert.equal(s.failed, 1);
  assert.equal(tr.batches.length, 3);
  assert.equal(outcomes[0].attempts, 3);
  assert.match(outcomes[0].reason, /451 busy \(after 3 attempts\)/);
});

Deno.test("runCampaign() honours the far end's retry-after over a shorter jitter", async () => {
  const clock = new ManualClock();
  const tr = recorder((_m, attempt) =>
    attempt === 1
      ? { status: "retry", code: "429", reason: "slow down", retryAfterMs: 30_000 }
      : sent()
  );
  const campaign = startCampaign({
    input: stream(csv(1)),
    template: TEMPLATE,
    transport: tr,
    clock,
    random: () => 0,
  });
  await flush();
  await clock.advance(29_999);
  assert.equal(campaign.stats.sent, 0);
  await clock.advance(1);
  assert.equal((await campaign.done).sent, 1);
});

Deno.test("runCampaign() pauses after --max-errors consecutive failures and leaves the rest pending", async () => {
  const tr = recorder(() => ({ status: "failed", code: "535", reason: "auth" }), { maxBatch: 1 });
  const s = await run(csv(100), tr, { maxErrors: 5, concurrency: 1 }).done;
  assert.equal(s.status, "paused");
  assert.equal(s.failed, 5);
  assert.match(s.reason!, /5 messages in a row failed/);
  assert.equal(s.rows, s.failed + s.pending);
});

Deno.test("runCampaign() stops taking rows on the signal and lets in-flight messages finish", async () => {
  const stop = new AbortController();
  let open: (() => void)[] = [];
  const tr = recorder(sent, { maxBatch: 5, delay: () => new Promise<void>((r) => open.push(r)) });
  const campaign = startCampaign({
    input: stream(csv(1000)),
    template: TEMPLATE,
    transport: tr,
    concurrency: 10,
    signal: stop.signal,
  });
  await flush();
  assert.equal(campaign.stats.inFlight, 10);
  stop.abort();
  open.forEach((r) => r());
  open = [];
  const s = await campaign.done;
  assert.equal(s.status, "stopped");
  assert.equal(s.sent, 10);
  assert.equal(tr.batches.flat().length, 10, "nothing new was dispatched after the stop");
  assert.equal(s.rows, s.sent + s.pending);
});

Deno.test("runCampaign() fails the run with TransportError when the transport throws", async () => {
  const tr: Transport = {
    name: "broken",
    maxBatch: 1,
    send: () => Promise.reject(new Error("535 5.7.8 authentication failed")),
    close: () => Promise.resolve(),
  };
  const s = await run(csv(10), tr).done;
  assert.equal(s.status, "failed");
  assert.ok(s.error instanceof TransportError);
  assert.match(s.reason!, /broken transport failed: 535 5\.7\.8/);
});

Deno.test("runCampaign() rejects an unknown merge field before the first send", async () => {
  const tr = recorder(sent);
  await assert.rejects(
    run(csv(5), tr, { template: { ...TEMPLATE, subject: "Hi {{nmae}}" } }).done,
    /nmae/,
  );
  assert.equal(tr.batches.length, 0);
});

Deno.test("runCampaign() applies a rate limit on the injected clock", async () => {
  const clock = new ManualClock();
  const tr = recorder(sent, { maxBatch: 10 });
  const campaign = startCampaign({
    input: stream(csv(40)),
    template: TEMPLATE,
    transport: tr,
    clock,
    rate: parseRate("10/s"),
  });
  await flush();
  for (let i = 0; i < 20; i++) await clock.advance(100);
  const sentIn2s = campaign.stats.sent;
  assert.ok(sentIn2s >= 19 && sentIn2s <= 21, `sent ${sentIn2s} in 2 s at 10/s`);
  for (let i = 0; i < 10 && campaign.stats.sent < 40; i++) await clock.advance(1000);
  assert.equal((await campaign.done).sent, 40);
});

Deno.test("runCampaign() skips rows that have a final outcome from an earlier run", async () => {
  const tr = recorder(sent);
  const s = await run(csv(10), tr, { previous: (line) => line % 2 === 0 ? "sent" : undefined })
    .done;
  assert.equal(s.done, 5);
  assert.equal(s.sent, 5);
  assert.deepEqual(tr.batches.flat().map((m) => m.line).sort((a, b) => a - b), [3, 5, 7, 9, 11]);
});

Deno.test("runCampaign() in a dry run renders every message and sends none", async () => {
  const tr = recorder(sent);
  const s = await run(csv(50), tr, { dryRun: true }).done;
  assert.equal(s.rendered, 50);
  assert.equal(s.sent, 0);
  assert.equal(tr.batches.length, 0);
  assert.equal(s.status, "finished");
});

Deno.test("runCampaign() pauses when the transport says the sender is out of quota", async () => {
  const tr = recorder(() => ({
    status: "retry",
    code: "429",
    reason: "User-rate limit exceeded (Mail sending)",
    pauseSender: true,
  }), { maxBatch: 1 });
  const s = await run(csv(20), tr, { concurrency: 1 }).done;
  assert.equal(s.status, "paused");
  assert.match(s.reason!, /out of quota/);
  assert.equal(s.sent, 0);
  assert.equal(s.pending, s.rows);
});

Deno.test("runCampaign() keeps a message waiting for a retry as its own copy of the same bytes", async () => {
  const clock = new ManualClock();
  const seen: Outgoing[] = [];
  const tr = recorder((m, attempt) => {
    seen.push(m);
    return attempt === 1 ? { status: "retry", code: "4.2.0", reason: "busy" } : sent();
  }, { maxBatch: 1 });
  const campaign = startCampaign({
    input: stream(csv(1)),
    template: TEMPLATE,
    transport: tr,
    clock,
    random: () => 0,
  });
  await flush();
  await clock.advance(1);
  assert.equal((await campaign.done).sent, 1);
  assert.equal(seen.length, 2);
  const [first, again] = seen;
  assert.equal(again.data.length, 1);
  assert.equal(again.data[0].buffer.byteLength, again.size, "owns exactly its bytes");
  assert.deepEqual(joinChunks(again.data, again.size), joinChunks(first.data, first.size));
  assert.equal(again.messageId, first.messageId);
});

Deno.test("runCampaign() paces a per-minute rate message by message, not one batch at once", async () => {
  const clock = new ManualClock();
  const tr = recorder(sent, { maxBatch: 100 });
  const campaign = startCampaign({
    input: stream(csv(10)),
    template: TEMPLATE,
    transport: tr,
    clock,
    rate: parseRate("60/min"),
  });
  await flush();
  assert.equal(campaign.stats.sent, 1, "one message at the start, not a burst of the batch");
  await clock.advance(1000);
  assert.equal(campaign.stats.sent, 2);
  await clock.advance(3000);
  assert.equal(campaign.stats.sent, 5);
  await clock.advance(5000);
  assert.equal((await campaign.done).sent, 10);
  assert.ok(tr.batches.every((b) => b.length === 1));
});

Deno.test("runCampaign() after --max-errors trips, later failures stay pending instead of failing", async () => {
  const tr = recorder(() => ({ status: "failed", code: "535", reason: "auth" }), { maxBatch: 10 });
  const s = await run(csv(100), tr, { maxErrors: 3, concurrency: 100 }).done;
  assert.equal(s.status, "paused");
  assert.ok(s.failed <= 3, `${s.failed} rows failed; only the streak that tripped the budget may`);
  assert.equal(s.rows, s.failed + s.pending);
  assert.match(s.reason!, /--retry-failed all/);
});

/**
 * Run `rows` rows at a window of 10 against a transport that, after 100
 * accepted messages, answers `450 4.7.1` for 10 s of the manual clock, except
 * every `leakEvery`-th answer (transactions already under way still succeed).
 */
async function throttledRun(rows: number, leakEvery: number, random: number) {
  const clock = new ManualClock();
  let accepted = 0;
  let throttleEnd = -1;
  let n = 0;
  const tr = recorder(() => {
    const now = clock.now();
    n++;
    if (accepted >= 100 && throttleEnd < 0) throttleEnd = now + 10_000;
    if (throttleEnd >= 0 && now < throttleEnd && n % leakEvery !== 0) {
      return { status: "retry", code: "4.7.1", reason: "450 4.7.1 too much mail" };
    }
    accepted++;
    return sent();
  }, { maxBatch: 1 });
  const campaign = startCampaign({
    input: stream(csv(rows)),
    template: TEMPLATE,
    transport: tr,
    clock,
    concurrency: 10,
    random: () => random,
  });
  for (let i = 0; i < 400 && campaign.stats.sent + campaign.stats.failed < rows; i++) {
    await clock.advance(250);
  }
  return { summary: await campaign.done, attempts: tr.batches.length };
}

Deno.test("runCampaign() backs off the whole run while the far end throttles, and sends everything after (SMTP-3)", async (t) => {
  await t.step("every answer refused during the throttle", async () => {
    const { summary: s, attempts } = await throttledRun(300, Infinity, 0.5);
    assert.equal(s.failed, 0, "a 10 s throttle must not turn into failures");
    assert.equal(s.sent, 300);
    assert.ok(s.transient > 0);
    // While throttled the run backs off together: few attempts hit the closed window.
    assert.ok(attempts - 300 <= 60, `${attempts - 300} attempts were refused during the throttle`);
  });
  await t.step("one answer in six still succeeds (pipelined transactions under way)", async () => {
    const { summary: s } = await throttledRun(500, 6, 0.3);
    assert.equal(s.failed, 0, "a 10 s throttle must not turn into failures");
    assert.equal(s.sent, 500);
  });
});

Deno.test("runCampaign() does not back off the run for scattered per-recipient transient failures", async () => {
  const clock = new ManualClock();
  // Every 10th first try fails transiently; the rest succeed.
  const tr = recorder(
    (m, attempt) =>
      attempt === 1 && m.line % 10 === 0
        ? { status: "retry", code: "4.2.2", reason: "452 4.2.2 mailbox full" }
        : sent(),
    { maxBatch: 1 },
  );
  const campaign = startCampaign({
    input: stream(csv(300)),
    template: TEMPLATE,
    transport: tr,
    clock,
    concurrency: 10,
    random: () => 0,
  });
  await flush();
  // With no run-wide gate (its first step is 1 s), 10 ms of clock finish the run.
  assert.equal(campaign.stats.rows, 300);
  await clock.advance(10);
  assert.equal((await campaign.done).sent, 300);
});

Deno.test("runCampaign() reuses sent messages' memory only for a transport that lets go of them, and every message arrives whole", async (t) => {
  for (const releases of [true, false]) {
    await t.step(releases ? "releasesMessages: true" : "releasesMessages unset", async () => {
      const buffers = new Set<ArrayBufferLike>();
      const texts = new Map<number, string>();
      const decoder = new TextDecoder();
      let open = 0;
      const transport: Transport = {
        name: "copier",
        maxBatch: 100,
        releasesMessages: releases || undefined,
        async send(batch) {
          // Read everything now, as a real transport writes it out, then wait like one.
          for (const m of batch) {
            for (const c of m.data) buffers.add(c.buffer);
            texts.set(m.line, decoder.decode(joinChunks(m.data, m.size)));
          }
          open++;
          await new Promise((r) => setTimeout(r, 1));
          open--;
          return batch.map(sent);
        },
        close: () => Promise.resolve(),
      };
      const rows = 20_000;
      const summary = await runCampaign({
        input: stream(csv(rows), 64 * 1024),
        template: TEMPLATE,
        transport,
        concurrency: 500,
      });
      assert.equal(summary.sent, rows);
      for (let i = 1; i <= rows; i++) {
        const text = texts.get(i + 1)!;
        assert.ok(text.includes(`To: user${i}@example.com\r\n`), `line ${i + 1} has its own To`);
        assert.ok(text.endsWith(`Hi Name ${i}\r\n`), `line ${i + 1} has its own body`);
      }
      // ~20k messages of ~170 bytes fill about 13 slabs of 256 KiB; with 500 in flight
      // and their memory reused, a handful is enough.
      const slabs = [...buffers].filter((b) => b.byteLength === 256 * 1024).length;
      if (releases) assert.ok(slabs <= 4, `${slabs} slabs`);
      else assert.ok(slabs >= 10, `${slabs} slabs`);
    });
  }
});

Deno.test("runCampaign() with the worker reader stops the worker when the run ends early", async (t) => {
  const RealWorker = globalThis.Worker;
  const live = new Set<Worker>();
  let started = 0;
  globalThis.Worker = class extends RealWorker {
    constructor(url: string | URL, opts?: WorkerOptions) {
      super(url, opts);
      live.add(this);
      started++;
    }
    override terminate(): void {
      live.delete(this);
      super.terminate();
    }
  };
  try {
    await t.step("--limit: 5 of 20,000 rows", async () => {
      const tr = recorder(sent, { maxBatch: 10 });
      const summary = await runCampaign({
        input: stream(csv(20_000), 4096),
        template: TEMPLATE,
        transport: tr,
        limit: 5,
        recipients: { parallel: true },
      });
      assert.equal(summary.sent, 5);
      assert.equal(live.size, 0, "the worker was terminated");
    });
    await t.step("an unknown merge field, found before any send", async () => {
      await assert.rejects(
        runCampaign({
          input: stream(csv(20_000), 4096),
          template: { ...TEMPLATE, subject: "Hi {{nope}}" },
          transport: recorder(sent),
          recipients: { parallel: true },
        }),
        /nope/,
      );
      assert.equal(live.size, 0, "the worker was terminated");
    });
    await t.step("to the end: every row, the same outcomes as in-thread", async () => {
      const outcomes = async (parallel: boolean) => {
        const seen: string[] = [];
        const summary = await runCampaign({
          input: stream(csv(3000, "bad-address,X\nuser7@EXAMPLE.com,dup\n"), 1000),
          template: TEMPLATE,
          transport: recorder(sent),
          recipients: { parallel },
          onOutcome: (o) => seen.push(`${o.line} ${o.status} ${o.address}`),
        });
        return { summary: { ...summary, elapsedMs: 0, perSecond: 0 }, seen: seen.sort() };
      };
      const inThread = await outcomes(false);
      const before = started;
      const worker = await outcomes(true);
      assert.equal(started, before + 1, "a worker read the rows");
      assert.deepEqual(worker, inThread);
      assert.equal(live.size, 0);
    });
  } finally {
    globalThis.Worker = RealWorker;
  }
});

Deno.test("runCampaign(): a releasing transport that reads a message after its answer gets a TypeError, never another row's bytes", async () => {
  const kept: [Outgoing, string][] = [];
  const decoder = new TextDecoder();
  const transport: Transport = {
    name: "keeper",
    maxBatch: 100,
    releasesMessages: true, // a broken promise: it keeps the messages and reads them later
    async send(batch) {
      for (const m of batch) kept.push([m, `To: user${m.line - 1}@example.com\r\n`]);
      await new Promise((r) => setTimeout(r, 1));
      return batch.map(sent);
    },
    close: () => Promise.resolve(),
  };
  const rows = 20_000;
  const summary = await runCampaign({
    input: stream(csv(rows), 64 * 1024),
    template: TEMPLATE,
    transport,
    concurrency: 500,
  });
  assert.equal(summary.sent, rows);
  let threw = 0;
  for (const [m, to] of kept) {
    let text: string;
    try {
      text = decoder.decode(joinChunks(m.data, m.size));
    } catch (error) {
      assert.ok(error instanceof TypeError);
      threw++;
      continue;
    }
    assert.ok(text.includes(to), `line ${m.line}: its own bytes or a TypeError`);
  }
  assert.ok(threw > 0, "memory was reused, and reading it threw");
});

Deno.test("runCampaign() with a transport that consumes on send: memory reused while answers are awaited, retries rendered again", async (t) => {
  const decoder = new TextDecoder();
  /** A transport that copies every message inside send (as it promises) and answers later. */
  function consumer(answer: (line: number, attempt: number) => SendResult, wait: Promise<void>) {
    const attempts = new Map<number, number>();
    const copies = new Map<number, { text: string; id: string }[]>();
    const buffers = new Set<ArrayBufferLike>();
    const transport: Transport = {
      name: "consumer",
      maxBatch: 100,
      consumesOnSend: true,
      send(batch) {
        const results = batch.map((m) => {
          for (const c of m.data) buffers.add(c.buffer);
          const list = copies.get(m.line) ?? [];
          list.push({ text: decoder.decode(joinChunks(m.data, m.size)), id: m.messageId });
          copies.set(m.line, list);
          const n = (attempts.get(m.line) ?? 0) + 1;
          attempts.set(m.line, n);
          return answer(m.line, n);
        });
        return wait.then(() => results);
      },
      close: () => Promise.resolve(),
    };
    return { transport, copies, buffers };
  }

  await t.step("20,000 messages in flight at once fit in a few slabs", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => release = r);
    const { transport, copies, buffers } = consumer(() => sent(), gate);
    const rows = 20_000;
    const campaign = startCampaign({
      input: stream(csv(rows), 64 * 1024),
      template: TEMPLATE,
      transport,
      concurrency: rows,
    });
    while (campaign.stats.inFlight < rows) await new Promise((r) => setTimeout(r, 5));
    release();
    const summary = await campaign.done;
    assert.equal(summary.sent, rows);
    for (let i = 1; i <= rows; i++) {
      const [{ text }] = copies.get(i + 1)!;
      assert.ok(text.includes(`To: user${i}@example.com\r\n`), `line ${i + 1} has its own To`);
      assert.ok(text.endsWith(`Hi Name ${i}\r\n`), `line ${i + 1} has its own body`);
    }
    // All 20k (~13 slabs of 256 KiB of bytes) were in flight together; kept as
    // recipients, their bytes were reused as soon as each send returned.
    const slabs = [...buffers].filter((b) => b.byteLength === 256 * 1024).length;
    assert.ok(slabs <= 2, `${slabs} slabs`);
  });

  await t.step(
    "a retried message is rendered again: the same bytes but for the Date, the same Message-ID",
    async () => {
      const clock = new ManualClock();
      const outcomes: RowOutcome[] = [];
      // Every third row is refused for now on its first attempt, and row 5 for good.
      const { transport, copies } = consumer(
        (line, attempt) =>
          line === 5
            ? { status: "failed", code: "5.1.1", reason: "no such user" }
            : line % 3 === 0 && attempt === 1
            ? { status: "retry", code: "4.2.0", reason: "busy" }
            : sent(),
        Promise.resolve(),
      );
      const campaign = startCampaign({
        input: stream(csv(30, "nope,Bad\n")),
        template: TEMPLATE,
        transport,
        clock,
        random: () => 0,
        onOutcome: (o) => outcomes.push(o),
      });
      await flush();
      await clock.advance(1);
      const summary = await campaign.done;
      assert.equal(summary.sent, 29);
      assert.equal(summary.failed, 1);
      assert.equal(summary.invalid, 1);
      assert.equal(outcomes.find((o) => o.line === 5)?.status, "failed");
      assert.equal(outcomes.find((o) => o.line === 5)?.address, "user4@example.com");
      const retried = [...copies].filter(([, list]) => list.length === 2);
      assert.equal(retried.length, 10);
      const noDate = (s: string) => s.replace(/^Date: .*\r\n/m, "");
      for (const [line, [first, again]] of retried) {
        assert.equal(again.id, first.id, `line ${line}: same Message-ID`);
        assert.equal(noDate(again.text), noDate(first.text), `line ${line}: same message`);
        assert.ok(again.text.includes(`To: user${line - 1}@example.com\r\n`));
        const o = outcomes.find((o) => o.line === line)!;
        assert.equal(o.status, "sent");
        assert.equal(o.attempts, 2);
        assert.equal(o.address, `user${line - 1}@example.com`);
      }
    },
  );
});
