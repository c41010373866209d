/**
 * The reference for bench/fake.ts: the plain way to write this job in Deno — read
 * the CSV, and run a promise pool where every message waits on its own timer.
 * No validation, no MIME, no dedupe: a floor for "simple code", not a product.
 *
 * Usage: deno run -A bench/pool_reference.ts FILE LATENCY_MS CONCURRENCY
 *
 * @module
 */
const [path, latencyArg, concurrencyArg] = Deno.args;
const latency = Number(latencyArg ?? 500);
const concurrency = Number(concurrencyArg ?? 1_000_000);
const text = await Deno.readTextFile(path);
const lines = text.split("\n");
let sent = 0;
let next = 1; // skip the header

async function worker(): Promise<void> {
  while (next < lines.length) {
    const line = lines[next++];
    if (line === "") continue;
    const address = line.slice(0, line.indexOf(","));
    await new Promise<void>((resolve) => setTimeout(resolve, latency));
    if (address) sent++;
  }
}

const workers = [];
for (let i = 0; i < Math.min(concurrency, lines.length); i++) workers.push(worker());
await Promise.all(workers);
console.log(JSON.stringify({ sent }));
