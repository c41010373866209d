/**
 * SMTP-4 without timing: the engine never holds more rendered messages than its
 * window (in flight plus waiting to retry), and reads the CSV only as fast as
 * messages finish. Counted exactly, so a read-ahead or an unbounded retry
 * queue fails the test whatever the machine's speed.
 */
import assert from "node:assert/strict";
import { startCampaign } from "../core/campaign.ts";
import { ManualClock } from "../core/clock.ts";
import type { Outgoing, SendResult, Transport } from "../core/types.ts";

const ROWS = 50_000;
const WINDOW = 1_000;
/** Rows per input chunk: besides the window, the engine holds at most one chunk of parsed rows. */
const CHUNK_ROWS = 200;

const TEMPLATE = {
  from: "Team <team@example.com>",
  subject: "Hello {{name}}",
  text: "Hi {{name}},\nthis is row {{name}}.\n",
};

/** What the probes saw. */
interface Probe {
  /** CSV rows handed to the engine so far. */
  pulled: number;
  /** Final outcomes so far (any status). */
  final: number;
  /** Messages rendered so far. */
  rendered: number;
  /** Rendered messages that reached a final outcome (sent or failed). */
  retired: number;
  /** Most rendered messages alive (rendered, not yet final) at any moment. */
  maxAlive: number;
  /** Most CSV rows taken but not final at any moment. */
  maxAhead: number;
  /** Messages the transport held at once, at most. */
  maxHeld: number;
}

/** `header` + `rows` rows, yielded in chunks of {@link CHUNK_ROWS} rows, counting what was pulled. */
async function* input(rows: number, probe: Probe): AsyncGenerator<Uint8Array> {
  const enc = new TextEncoder();
  yield enc.encode("email,name\n");
  for (let start = 1; start <= rows; start += CHUNK_ROWS) {
    let text = "";
    const end = Math.min(rows, start + CHUNK_ROWS - 1);
    for (let i = start; i <= end; i++) text += `user${i}@example.com,N${i}\n`;
    probe.pulled += end - start + 1;
    probe.maxAhead = Math.max(probe.maxAhead, probe.pulled - probe.final);
    yield enc.encode(text);
  }
}

/**
 * A transport that holds each batch until the next macrotask, counting what it
 * holds; `answer` decides each attempt's result.
 */
function holdingTransport(
  maxBatch: number,
  probe: Probe,
  answer: (m: Outgoing, attempt: number) => SendResult,
): Transport {
  const attempts = new Map<number, number>();
  let held = 0;
  return {
    name: "holding",
    maxBatch,
    async send(batch) {
      assert.ok(batch.length <= maxBatch, `batch of ${batch.length} > maxBatch ${maxBatch}`);
      held += batch.length;
      probe.maxHeld = Math.max(probe.maxHeld, held);
      await new Promise<void>((resolve) => setTimeout(resolve, 0));
      held -= batch.length;
      return batch.map((m) => {
        const n = (attempts.get(m.line) ?? 0) + 1;
        if (n > 1) attempts.delete(m.line);
        else attempts.set(m.line, n);
        return answer(m, n);
      });
    },
    close: () => Promise.resolve(),
  };
}

function newProbe(): Probe {
  return {
    pulled: 0,
    final: 0,
    rendered: 0,
    retired: 0,
    maxAlive: 0,
    maxAhead: 0,
    maxHeld: 0,
  };
}

const sent: SendResult = { status: "sent" };

Deno.test("startCampaign() holds at most the window of rendered messages and reads no further ahead (50,000 rows, concurrency 1,000)", async (t) => {
  for (const maxBatch of [1, 100]) {
    await t.step(`transport batches of ${maxBatch}`, async () => {
      const probe = newProbe();
      const campaign = startCampaign({
        input: input(ROWS, probe),
        template: TEMPLATE,
        transport: holdingTransport(maxBatch, probe, () => sent),
        concurrency: WINDOW,
        onRendered: () => {
          probe.rendered++;
          probe.maxAlive = Math.max(probe.maxAlive, probe.rendered - probe.retired);
        },
        onOutcome: (o) => {
          probe.final++;
          if (o.status === "sent" || o.status === "failed") probe.retired++;
        },
      });
      const s = await campaign.done;
      assert.equal(s.status, "finished");
      assert.equal(s.sent, ROWS);
      assert.equal(probe.pulled, ROWS);
      assert.ok(probe.maxAlive <= WINDOW, `${probe.maxAlive} rendered messages alive at once`);
      assert.ok(probe.maxHeld <= WINDOW, `the transport held ${probe.maxHeld} at once`);
      // The window was really used, so the bound above was really tested.
      assert.equal(probe.maxHeld, WINDOW);
      assert.ok(
        probe.maxAhead <= WINDOW + CHUNK_ROWS,
        `${probe.maxAhead} rows read ahead of their outcome (window ${WINDOW})`,
      );
    });
  }
});

Deno.test("startCampaign() counts messages waiting to retry against the window, so a throttling server cannot make it render every row", async () => {
  // Every message is first answered 450 (like SMTP-3's throttling sink); the
  // retry comes only when the manual clock moves, so nothing drains the queue
  // while the engine is free to take new rows.
  const probe = newProbe();
  const clock = new ManualClock();
  const campaign = startCampaign({
    input: input(ROWS / 5, probe),
    template: TEMPLATE,
    transport: holdingTransport(
      100,
      probe,
      (_m, attempt) =>
        attempt === 1
          ? { status: "retry", code: "4.7.1", reason: "450 4.7.1 too much mail" }
          : sent,
    ),
    concurrency: WINDOW,
    clock,
    random: () => 0.5,
    retryBaseMs: 1000,
    onRendered: () => {
      probe.rendered++;
      probe.maxAlive = Math.max(probe.maxAlive, probe.rendered - probe.retired);
    },
    onOutcome: (o) => {
      probe.final++;
      if (o.status === "sent" || o.status === "failed") probe.retired++;
    },
  });
  let finished = false;
  campaign.done.finally(() => finished = true);
  for (let round = 0; !finished && round < 10_000; round++) {
    await new Promise<void>((resolve) => setTimeout(resolve, 0));
    if (campaign.stats.inFlight === 0) await clock.advance(1000);
  }
  const s = await campaign.done;
  assert.equal(s.status, "finished");
  assert.equal(s.sent, ROWS / 5);
  assert.equal(s.transient, ROWS / 5);
  assert.ok(
    probe.maxAlive <= WINDOW,
    `${probe.maxAlive} rendered messages alive at once (in flight or waiting to retry)`,
  );
  assert.ok(probe.maxAhead <= WINDOW + CHUNK_ROWS, `${probe.maxAhead} rows read ahead`);
});
