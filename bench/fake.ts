/**
 * Benchmark: 1,000,000 rows through the fake transport at 500 ms latency with
 * default settings, against the ideal and a plain promise pool, in one run.
 *
 * Usage: deno task bench [-- --rows N --latency MS --runs N --v8-flags FLAGS]
 *
 * With `--v8-flags` (e.g. `--memory-saver-mode`) the CLI also runs with those
 * V8 flags, alternating with the default, to show the time/memory trade-off.
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
    // Also run the CLI with these V8 flags (e.g. --memory-saver-mode), alternating with the default.
    "v8-flags": { type: "string", default: "" },
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
const variants: [string, string[]][] = [["mass-mailer", send]];
if (values["v8-flags"] !== "") {
  const flags = `--v8-flags=${values["v8-flags"]}`;
  variants.push([`mass-mailer ${flags}`, ["run", flags, ...send.slice(1)]]);
}
const bestOf = new Map<string, { ms: number; rss: number }>();
for (let i = 0; i < runs * variants.length; i++) {
  const [label, args] = variants[i % variants.length];
  // Default settings keep a per-row report next to the CSV; start each run afresh.
  await Deno.remove(`${csv}.report.csv`).catch(() => {});
  const m = await measure(deno, args);
  let ok = "no";
  try {
    const s = JSON.parse(m.stdout);
    const sum = s.sent + s.failed + s.invalid + s.duplicates + s.suppressed;
    ok = s.rows === rows && sum === rows && s.sent === rows ? "yes" : `no (${sum}/${rows})`;
  } catch {
    ok = `no (exit ${m.code}: ${m.stderr.trim().split("\n").pop()})`;
  }
  results.push([
    `${label} #${Math.floor(i / variants.length) + 1}`,
    Math.round(m.wallMs),
    m.peakRssMb.toFixed(0),
    (m.wallMs / ideal).toFixed(2),
    ok,
  ]);
  const b = bestOf.get(label);
  if (b === undefined || m.wallMs < b.ms) bestOf.set(label, { ms: m.wallMs, rss: m.peakRssMb });
  if (label === "mass-mailer" && m.wallMs < best) {
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
for (const [label, b] of bestOf) {
  if (label !== "mass-mailer") {
    console.log(`best ${label}: ${Math.round(b.ms)} ms, ${b.rss.toFixed(0)} MB`);
  }
}
