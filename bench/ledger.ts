/**
 * Benchmark: what the ledger (the per-row report and resume state) costs on
 * the 1M-row fake run of bench/fake.ts, measured with and without it in one
 * run, alternating so that machine noise hits both alike. Both run as mass-mailer
 * ships, with the V8 heap settings of cli/v8_flags.ts.
 *
 * Usage: deno run -A bench/ledger.ts [--rows N] [--latency MS] [--runs N]
 *
 * Prints wall time, CPU time (user + system, less sensitive to other load on
 * a shared machine) and peak RSS of each run, the best of each kind, and the
 * overhead of the ledger in percent (goal, issue 3: <= 15% of wall time).
 * Also times a resume that finds every row done (reading the whole 1M-row
 * report back). CPU time and peak RSS come from GNU time when
 * /usr/bin/time exists; otherwise CPU is not shown and RSS is sampled.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { BENCH_ARGS, benchDir, fakeSendArgs, generatedCsv, measure, table } from "./_measure.ts";

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
const dir = await benchDir();
const csv = await generatedCsv(rows);
const report = `${dir}ledger-${rows}.report.csv`;
const deno = Deno.execPath();
const send = fakeSendArgs(csv, latency);

async function removeReport(): Promise<void> {
  for (const path of [report, `${report}.lock`]) {
    try {
      await Deno.remove(path);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
}

/** One measured run: wall and CPU ms, peak RSS MB, exit code and output. */
interface Run {
  readonly wallMs: number;
  readonly cpuMs: number | undefined;
  readonly peakRssMb: number;
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

let gnuTime = true;
try {
  await Deno.stat("/usr/bin/time");
} catch {
  gnuTime = false;
}

/** Run the CLI once; through GNU time when there is one, for CPU time and the kernel's peak RSS. */
async function run(args: string[]): Promise<Run> {
  if (!gnuTime) return { ...await measure(deno, args), cpuMs: undefined };
  const m = await measure("/usr/bin/time", ["-f", "GNUTIME %e %U %S %M", deno, ...args]);
  const line = /GNUTIME ([\d.]+) ([\d.]+) ([\d.]+) (\d+)\s*$/.exec(m.stderr);
  if (line === null) return { ...m, cpuMs: undefined };
  return {
    wallMs: m.wallMs,
    cpuMs: (Number(line[2]) + Number(line[3])) * 1000,
    peakRssMb: Number(line[4]) / 1024,
    code: m.code,
    stdout: m.stdout,
    stderr: m.stderr,
  };
}

function check(m: Run, expectSent: number): string {
  try {
    const s = JSON.parse(m.stdout);
    const sum = s.sent + s.failed + s.invalid + s.duplicates + s.suppressed + s.done;
    return s.rows === rows && sum === rows && s.sent === expectSent
      ? "yes"
      : `no (${s.sent} sent, ${sum}/${rows})`;
  } catch {
    return `no (exit ${m.code}: ${m.stderr.trim().split("\n").pop()})`;
  }
}

// Warm the module cache so compile time is not measured.
await measure(deno, [...send.slice(0, send.indexOf("send")), "--version"]);

const results: (string | number)[][] = [["run", "wall ms", "CPU ms", "peak RSS MB", "rows ok"]];
const row = (name: string, m: Run, expectSent: number) =>
  results.push([
    name,
    Math.round(m.wallMs),
    m.cpuMs === undefined ? "n/a" : Math.round(m.cpuMs),
    m.peakRssMb.toFixed(0),
    check(m, expectSent),
  ]);
const samples = {
  without: [] as number[],
  with: [] as number[],
  withoutCpu: [] as number[],
  withCpu: [] as number[],
};
const best = {
  without: Infinity,
  with: Infinity,
  withoutCpu: Infinity,
  withCpu: Infinity,
  withoutRss: Infinity,
  withRss: Infinity,
};
for (let i = 0; i < runs; i++) {
  const plain = await run([...send, "--no-report"]);
  row(`without ledger #${i + 1}`, plain, rows);
  samples.without.push(plain.wallMs);
  if (plain.cpuMs !== undefined) samples.withoutCpu.push(plain.cpuMs);
  best.without = Math.min(best.without, plain.wallMs);
  best.withoutCpu = Math.min(best.withoutCpu, plain.cpuMs ?? Infinity);
  best.withoutRss = Math.min(best.withoutRss, plain.peakRssMb);
  await removeReport();
  const ledger = await run([...send, "--report", report]);
  row(`with ledger #${i + 1}`, ledger, rows);
  samples.with.push(ledger.wallMs);
  if (ledger.cpuMs !== undefined) samples.withCpu.push(ledger.cpuMs);
  best.with = Math.min(best.with, ledger.wallMs);
  best.withCpu = Math.min(best.withCpu, ledger.cpuMs ?? Infinity);
  best.withRss = Math.min(best.withRss, ledger.peakRssMb);
}
// The report of the last run is complete: a rerun reads it back and has nothing to send.
const resume = await run([...send, "--report", report]);
row("resume, all done", resume, 0);
const size = (await Deno.stat(report)).size;
await removeReport();

console.log(
  `${rows.toLocaleString("en-US")} rows, fake transport, ${latency} ms latency; ` +
    `report ${(size / 1e6).toFixed(1)} MB\n`,
);
console.log(table(results));
const pct = (a: number, b: number) => `${((a / b - 1) * 100).toFixed(1)}%`;
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0
    ? NaN
    : s.length % 2
    ? s[(s.length - 1) / 2]
    : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
console.log(
  `\nbest without ledger: ${Math.round(best.without)} ms wall, ${
    Math.round(best.withoutCpu)
  } ms CPU, ` +
    `${best.withoutRss.toFixed(0)} MB\n` +
    `best with ledger:    ${Math.round(best.with)} ms wall, ${Math.round(best.withCpu)} ms CPU, ` +
    `${best.withRss.toFixed(0)} MB\n` +
    `ledger overhead: ${pct(best.with, best.without)} of wall time (goal <= 15%), ` +
    (Number.isFinite(best.withCpu) ? `${pct(best.withCpu, best.withoutCpu)} of CPU time, ` : "") +
    `${(best.withRss - best.withoutRss).toFixed(0)} MB peak RSS`,
);
console.log(
  `medians: ${pct(median(samples.with), median(samples.without))} of wall time` +
    (samples.withCpu.length
      ? `, ${pct(median(samples.withCpu), median(samples.withoutCpu))} of CPU time`
      : "") +
    ` (wall time is only meaningful on an otherwise idle machine)`,
);
