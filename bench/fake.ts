/**
 * Benchmark: 1,000,000 rows through the fake transport at 500 ms latency with
 * default settings, against the ideal and a plain promise pool, in one run.
 *
 * Usage: deno task bench [--rows N --latency MS --runs N --v8-flags FLAGS]
 *
 * mass-mailer runs as it ships: with the V8 heap settings every launcher passes
 * (cli/v8_flags.ts). Alternating with it, the same CLI runs on V8's defaults
 * (plain `deno run`) to show what those settings buy, and with `--v8-flags`
 * (e.g. `--memory-saver-mode`) once more with those flags instead.
 *
 * Prints wall time, peak RSS, and ratios to the ideal ceil(rows / concurrency) x latency
 * and to the reference, then each variant's range over the runs and how many
 * runs met the goals (issue 2): <= 2.5 s and <= 200 MB for 1M rows.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { BENCH_ARGS, fakeSendArgs, generatedCsv, measure, table } from "./_measure.ts";

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
const deno = Deno.execPath();
const send = fakeSendArgs(csv, latency);

// Warm the module cache so compile time is not measured.
await measure(deno, [...send.slice(0, send.indexOf("send")), "--version"]);

const ideal = Math.ceil(rows / concurrency) * latency;
const results: (string | number)[][] = [[
  "run",
  "wall ms",
  "peak RSS MB",
  "x ideal",
  "rows ok",
]];
const SHIPPED = "mass-mailer";
const variants: [string, string[]][] = [
  [SHIPPED, send],
  ["mass-mailer, V8 defaults", fakeSendArgs(csv, latency, "")],
];
if (values["v8-flags"] !== "") {
  const flags = `--v8-flags=${values["v8-flags"]}`;
  variants.push([`mass-mailer ${flags}`, fakeSendArgs(csv, latency, flags)]);
}
const runsOf = new Map<string, { ms: number; rss: number }[]>();
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
  if (ok === "yes") {
    const list = runsOf.get(label) ?? [];
    list.push({ ms: m.wallMs, rss: m.peakRssMb });
    runsOf.set(label, list);
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
const range = (xs: number[], digits: number) =>
  `${Math.min(...xs).toFixed(digits)}-${Math.max(...xs).toFixed(digits)}`;
console.log("");
for (const [label] of variants) {
  const list = runsOf.get(label) ?? [];
  if (list.length === 0) {
    console.log(`${label}: no run accounted for every row`);
    continue;
  }
  const ms = list.map((r) => r.ms / 1000);
  const rss = list.map((r) => r.rss);
  const fast = ms.filter((x) => x <= 2.5).length;
  const small = rss.filter((x) => x <= 200).length;
  console.log(
    `${label}: ${range(ms, 2)} s, ${range(rss, 0)} MB over ${list.length} runs; ` +
      `<= 2.5 s in ${fast}, <= 200 MB in ${small}; vs the promise pool ` +
      `${(ref.wallMs / 1000 / Math.max(...ms)).toFixed(1)}x faster, ` +
      `${(ref.peakRssMb / Math.max(...rss)).toFixed(1)}x less memory (worst run)`,
  );
}
