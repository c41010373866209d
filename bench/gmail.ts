/**
 * Benchmark: 10,000 messages through the Gmail transport against the local
 * fake (tests/_gmail_fake.ts), whose per-user quota is 250 units/s, enforced as
 * a token bucket. Prints the achieved send rate against the quota, messages
 * lost or doubled, parts without an answer, quota refusals, and HTTP requests.
 *
 * What is measured: whether the transport's local pacing (core/rate.ts, per
 * mailbox) reaches the quota without crossing it, and how few requests
 * batching needs. Real Gmail charges 100 units per `messages.send`, so 250
 * units/s is 2.5 sends/s per mailbox and 10,000 messages would take over an
 * hour on one mailbox. Two setups, chosen with `--setup`:
 *
 * - `scaled` (default): the fake charges 1 unit per send (its cost is an
 *   option), so 250 units/s = 250 sends/s per mailbox; 2 mailboxes, bucket of
 *   one second of units; the transport runs with `--gmail-rate 250/s`. About
 *   20 s.
 * - `real-cost`: 100 units per send as Gmail charges, the per-minute form of
 *   the same quota (15,000 units per 60 s bucket = 250 units/s), transport at
 *   the default `150/min`, 40 delegated mailboxes. About 90 s.
 *
 * Messages are driven by a small loop standing in for the engine: it keeps two
 * batches per mailbox in flight and sends `retry` results again.
 *
 * The achieved rate is measured per mailbox over its steady state, from its
 * first accepted batch to its last: (accepted - first batch) / (last - first);
 * a first batch always goes at once, which over a run of a few batches would
 * otherwise read as exceeding the quota. The plain N / wall time is printed too.
 *
 * Usage: deno run --allow-all bench/gmail.ts [--setup scaled|real-cost] [--messages N]
 *   [--users N] [--batch-size N]
 *
 * @module
 */
import { parseArgs } from "node:util";
// deno-lint-ignore no-import-prefix -- the project imports npm packages inline (no import map)
import { exportPKCS8, generateKeyPair } from "npm:jose@^5";
import { createGmailTransport } from "../transports/gmail.ts";
import type { Outgoing } from "../core/types.ts";
import { startGmailFake } from "../tests/_gmail_fake.ts";
import { messages } from "../tests/_gmail_messages.ts";
import { BENCH_ARGS } from "./_measure.ts";

const { values } = parseArgs({
  args: BENCH_ARGS,
  options: {
    setup: { type: "string", default: "scaled" },
    messages: { type: "string", default: "10000" },
    users: { type: "string" },
    "batch-size": { type: "string", default: "50" },
  },
});
const setups = {
  scaled: { cost: 1, units: 250, perMs: 1_000, rate: "250/s", users: 2, sendsPerS: 250 },
  "real-cost": {
    cost: 100,
    units: 15_000,
    perMs: 60_000,
    rate: "150/min",
    users: 40,
    sendsPerS: 2.5,
  },
} as const;
const setup = setups[values.setup as keyof typeof setups];
if (!setup) throw new RangeError(`Unknown --setup ${values.setup}: use scaled or real-cost`);
const total = Number(values.messages);
const users = Number(values.users ?? setup.users);
const batchSize = Number(values["batch-size"]);
const unitsPerS = setup.units / (setup.perMs / 1000);

const { publicKey, privateKey } = await generateKeyPair("RS256", { extractable: true });
const clientEmail = "bench@project.iam.gserviceaccount.com";
const mailboxes = Array.from({ length: users }, (_, i) => `sender${i + 1}@example.com`);
const server = startGmailFake({
  serviceAccounts: [{ clientEmail, publicKey, users: mailboxes }],
  quota: { units: setup.units, perMs: setup.perMs, cost: setup.cost },
});
const transport = createGmailTransport({
  credentials: { kind: "service-account", clientEmail, privateKey: await exportPKCS8(privateKey) },
  users: mailboxes,
  apiUrl: server.url,
  tokenUrl: server.tokenUrl,
  rate: setup.rate,
  daily: 1_000_000,
  batchSize,
});

const { out } = messages(total);
const queue: Outgoing[] = [...out];
const signal = new AbortController().signal;
let sent = 0;
let failed = 0;
let retried = 0;
let noAnswer = 0;
let partsSent = 0;
const started = performance.now();

async function worker(): Promise<void> {
  while (sent + failed < total) {
    const batch = queue.splice(0, transport.maxBatch);
    if (batch.length === 0) {
      await new Promise((r) => setTimeout(r, 5));
      continue;
    }
    partsSent += batch.length;
    const results = await transport.send(batch, { signal });
    results.forEach((r, i) => {
      if (r.status === "sent") sent++;
      else if (r.status === "failed") failed++;
      else {
        retried++;
        if (r.code === "no-answer") noAnswer++;
        queue.push(batch[i]);
      }
    });
  }
}
await Promise.all(Array.from({ length: users * 2 }, worker));
const wallS = (performance.now() - started) / 1000;
await transport.close();
await server.close();

const received = server.fake.received;
const unique = new Set(received.map((r) => r.messageId)).size;
let steadyRate = 0;
for (const user of mailboxes) {
  const mine = received.filter((r) => r.user === user);
  if (mine.length === 0) continue;
  const first = mine[0].at;
  const last = mine[mine.length - 1].at;
  const firstBatch = mine.filter((r) => r.batch === mine[0].batch).length;
  if (last > first) steadyRate += (mine.length - firstBatch) / ((last - first) / 1000);
}
const quotaSends = users * setup.sendsPerS;
const stats = server.fake.stats;
const rows: Array<[string, string]> = [
  [
    "setup",
    `${values.setup}: ${users} mailboxes, ${unitsPerS} units/s each, ${setup.cost} unit(s) per send, batch ${transport.maxBatch}, --gmail-rate ${setup.rate}`,
  ],
  ["messages", `${total} (sent ${sent}, failed ${failed}, resent after retry ${retried})`],
  ["quota (sends/s, all mailboxes)", quotaSends.toFixed(2)],
  [
    "achieved, steady state (sends/s)",
    `${steadyRate.toFixed(2)} = ${(100 * steadyRate / quotaSends).toFixed(1)}% of quota`,
  ],
  [
    "achieved, N / wall time (sends/s)",
    `${(total / wallS).toFixed(2)} (${wallS.toFixed(1)} s wall)`,
  ],
  ["lost / delivered twice", `${total - unique} / ${received.length - unique}`],
  [
    "parts without an answer",
    `${noAnswer} (parts sent ${partsSent}, answered by the fake ${stats.parts})`,
  ],
  ["quota refusals (429 parts)", String(stats.statuses[429] ?? 0)],
  [
    "HTTP requests",
    `${
      stats.batchRequests + stats.tokenRequests
    } (${stats.batchRequests} batch, ${stats.tokenRequests} token; ${
      (total / stats.batchRequests).toFixed(1)
    } messages per batch request)`,
  ],
];
const width = Math.max(...rows.map(([k]) => k.length));
for (const [k, v] of rows) console.log(`${k.padEnd(width)}  ${v}`);
const within = Math.abs(steadyRate - quotaSends) / quotaSends <= 0.05;
const clean = sent === total && unique === total && received.length === total && noAnswer === 0 &&
  stats.parts === partsSent;
console.log(
  `${
    within && clean ? "OK" : "MISSED"
  }: rate within 5% of quota: ${within}; nothing lost, doubled or dropped: ${clean}`,
);
