/**
 * Benchmark: 1,000,000 rows through the fake transport at 500 ms latency with
 * default settings, against the ideal and a plain promise pool, in one run.
 *
 * Usage: deno task bench [-- --rows N --latency MS]
 *
 * Prints wall time, peak RSS, and ratios to the ideal ceil(rows / concurrency) x latency
 * and to the reference. Goals (issue 2): <= 2.5 s and <= 200 MB for 1M rows.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { BENCH_ARGS, BENCH_MESSAGE, CLI, generatedCsv, measure, table } from "./_measure.ts";

const { values } = parseArgs({
  args: BENCH_ARGS,
  options: {
    rows: { type: "string", default: "1000000" },
    latency: { type: "string", default: "500" },
    runs: { type: "string", default: "3" },
  },
});
const rows = Number(values.rows);
const latency = Number(values.latency);
const runs = Number(values.runs);
const concurrency = 1_000_000; // the fake transport's default window
const csv = await generatedCsv(rows);
const cli = CLI;
const deno = Deno.execPath();
const send = [
  "run",
  "--allow-read",
  "--allow-write",
  "--allow-env",
  cli,
  "send",
  csv,
  "--transport",
  "fake",
  "--latency",
  String(latency),
  ...BENCH_MESSAGE,
  "--json",
  "--progress",
  "none",
];

// Warm the module cache so compile time is not measured.
await measure(deno, [...send.slice(0, 5), "--version"]);

const ideal = Math.ceil(rows / concurrency) * latency;
const results: (string | number)[][] = [[
  "run",
  "wall ms",
  "peak RSS MB",
  "x ideal",
  "rows ok",
]];
let best = Infinity;
let bestRss = 0;
for (let i = 0; i < runs; i++) {
  // Default settings keep a per-row report next to the CSV; start each run afresh.
  await Deno.remove(`${csv}.report.csv`).catch(() => {});
  const m = await measure(deno, send);
  let ok = "no";
  try {
    const s = JSON.parse(m.stdout);
    const sum = s.sent + s.failed + s.invalid + s.duplicates + s.suppressed;
    ok = s.rows === rows && sum === rows && s.sent === rows ? "yes" : `no (${sum}/${rows})`;
  } catch {
    ok = `no (exit ${m.code}: ${m.stderr.trim().split("\n").pop()})`;
  }
  results.push([
    `mass-mailer #${i + 1}`,
    Math.round(m.wallMs),
    m.peakRssMb.toFixed(0),
    (m.wallMs / ideal).toFixed(2),
    ok,
  ]);
  if (m.wallMs < best) {
    best = m.wallMs;
    bestRss = m.peakRssMb;
  }
}
const ref = await measure(deno, [
  "run",
  "--allow-read",
  new URL("./pool_reference.ts", import.meta.url).pathname,
  csv,
  String(latency),
  String(concurrency),
]);
results.push([
  "promise pool (reference)",
  Math.round(ref.wallMs),
  ref.peakRssMb.toFixed(0),
  (ref.wallMs / ideal).toFixed(2),
  ref.code === 0 ? "n/a" : `exit ${ref.code}`,
]);

console.log(
  `${rows.toLocaleString("en-US")} rows, fake transport, ${latency} ms latency, ` +
    `window ${
      concurrency.toLocaleString("en-US")
    }; ideal = ceil(rows / window) x latency = ${ideal} ms\n`,
);
console.log(table(results));
console.log(
  `\nbest mass-mailer: ${Math.round(best)} ms, ${bestRss.toFixed(0)} MB ` +
    `(goal <= 2500 ms, <= 200 MB); ${(ref.wallMs / best).toFixed(2)}x faster and ` +
    `${(ref.peakRssMb / bestRss).toFixed(2)}x less memory than the promise pool`,
);
