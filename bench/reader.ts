/**
 * Benchmark: reading a generated CSV (default 1,000,000 rows) into row items
 * with the in-thread {@link RecipientReader} and with the
 * {@link ParallelRecipientReader} (the same reader in a Web Worker), each
 * alone and while the main thread burns `--work-ns` of CPU per row (about
 * what rendering costs in the engine), to show how much of the reading the
 * worker takes off the main thread and what the overlap gains end to end.
 *
 * Per run it prints the wall time; CPU time per thread (from /proc/self/task,
 * Linux only): the main thread, V8's helper threads (GC, compilation) and the
 * rest of the process's CPU, which is the reader's worker; the main thread's
 * CPU less the simulated work's calibrated CPU time (what reading costs the
 * main thread); and, for the parallel reader, the time spent synchronously in
 * its own code on the main thread (each `next()`, plus the worker's message
 * handler, where a batch is rebuilt when the consumer already waits for it).
 * The in-thread reader parses when a read completes, after `next()` has
 * returned, so only the CPU column shows its cost. Rounds alternate the
 * readers; the table shows the median of each column.
 *
 * Usage:
 *   deno run -A bench/reader.ts [--rows N] [--file CSV] [--rounds N] [--work-ns NS]
 *
 * The machine may be busy (other processes share its 2 cores): compare
 * within one run, and prefer the CPU columns over one wall-time number.
 *
 * @module
 */
import process from "node:process";
import { parseArgs } from "node:util";
import { ParallelRecipientReader } from "../core/parallel_reader.ts";
import { RecipientReader, type RowItem } from "../core/recipients.ts";
import { BENCH_ARGS, generatedCsv, table } from "./_measure.ts";

const { values: flags } = parseArgs({
  args: BENCH_ARGS,
  options: {
    rows: { type: "string", default: "1000000" },
    file: { type: "string" },
    rounds: { type: "string", default: "3" },
    "work-ns": { type: "string", default: "1000" },
  },
});
const ROWS = Number(flags.rows);
const ROUNDS = Number(flags.rounds);
const WORK_NS = Number(flags["work-ns"]);
if (!Number.isInteger(ROWS) || ROWS < 1) throw new RangeError(`Bad --rows ${flags.rows}`);
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) throw new RangeError(`Bad --rounds ${flags.rounds}`);
if (!(WORK_NS >= 0)) throw new RangeError(`Bad --work-ns ${flags["work-ns"]}`);
const FILE = flags.file ?? await generatedCsv(ROWS);
const SIZE = (await Deno.stat(FILE)).size;

// ---------------------------------------------------------------------------
// CPU time per thread: /proc/self/task/<tid>/schedstat (run time in ns), or
// /proc/self/task/<tid>/stat (utime + stime, in 10 ms ticks) where that is missing.
// A thread that has exited (the reader's worker, once terminated) is gone from
// /proc, so its share is the process's CPU (getrusage) less the live threads'.

const TICK_MS = 10; // USER_HZ is 100 on Linux
type Kind = "main" | "v8" | "other";
type ThreadCpu = { main: number; worker: number; v8: number; other: number };
type Snapshot = { process: number; threads: Map<string, { kind: Kind; ms: number }> };

function snapshot(): Snapshot | undefined {
  const threads = new Map<string, { kind: Kind; ms: number }>();
  const usage = process.cpuUsage();
  try {
    for (const entry of Deno.readDirSync("/proc/self/task")) {
      const dir = `/proc/self/task/${entry.name}`;
      let stat: string;
      let ms: number;
      try {
        stat = Deno.readTextFileSync(`${dir}/stat`);
        try {
          ms = Number(Deno.readTextFileSync(`${dir}/schedstat`).split(" ")[0]) / 1e6;
        } catch {
          const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
          ms = (Number(fields[11]) + Number(fields[12])) * TICK_MS;
        }
      } catch {
        continue; // the thread has exited
      }
      const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      if (name.startsWith("worker")) continue; // counted as the rest, below
      const kind: Kind = entry.name === String(Deno.pid)
        ? "main"
        : name.startsWith("V8")
        ? "v8"
        : "other";
      threads.set(entry.name, { kind, ms });
    }
  } catch {
    return undefined;
  }
  return { process: (usage.user + usage.system) / 1000, threads };
}

function cpuBetween(a: Snapshot | undefined, b: Snapshot | undefined): ThreadCpu | undefined {
  if (a === undefined || b === undefined) return undefined;
  const cpu: ThreadCpu = { main: 0, worker: 0, v8: 0, other: 0 };
  for (const [tid, t] of b.threads) cpu[t.kind] += t.ms - (a.threads.get(tid)?.ms ?? 0);
  cpu.worker = Math.max(0, b.process - a.process - cpu.main - cpu.v8 - cpu.other);
  return cpu;
}

// ---------------------------------------------------------------------------
// Time in the reader's code on the main thread: the synchronous part of each
// next() plus the worker's message handler (where a batch is rebuilt when the
// consumer is already waiting for it). Messages are deserialized before the
// handler runs, so that is not in here; the main thread's CPU has it.

let handlerMs = 0;
const RealWorker = globalThis.Worker;
class TimedWorker extends RealWorker {}
const onmessage = Object.getOwnPropertyDescriptor(RealWorker.prototype, "onmessage");
if (onmessage?.get && onmessage.set) {
  const { get, set } = onmessage;
  Object.defineProperty(TimedWorker.prototype, "onmessage", {
    get() {
      return get.call(this);
    },
    set(fn: ((this: Worker, e: MessageEvent) => void) | null) {
      set.call(
        this,
        fn === null ? null : function (this: Worker, e: MessageEvent) {
          const t = performance.now();
          try {
            fn.call(this, e);
          } finally {
            handlerMs += performance.now() - t;
          }
        },
      );
    },
  });
  globalThis.Worker = TimedWorker;
}

// ---------------------------------------------------------------------------
// Simulated main-thread work: a calibrated CPU loop.

let state = 1;
function spin(iterations: number): void {
  let x = state;
  for (let i = 0; i < iterations; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
  }
  state = x;
}
function calibrate(): number {
  spin(1e6); // warm up
  let best = Infinity;
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    spin(2e7);
    best = Math.min(best, performance.now() - t0);
  }
  return 2e7 / (best * 1e6); // iterations per ns
}
const PER_NS = calibrate();

// ---------------------------------------------------------------------------

interface Run {
  rows: number;
  wallMs: number;
  nextMs: number;
  workMs: number;
  cpu: ThreadCpu | undefined;
}

async function run(parallel: boolean, workNs: number): Promise<Run> {
  const file = await Deno.open(FILE);
  const Reader = parallel ? ParallelRecipientReader : RecipientReader;
  const reader = new Reader(file.readable, { sizeHint: SIZE });
  handlerMs = 0;
  const before = snapshot();
  const t0 = performance.now();
  let rows = 0;
  let nextMs = 0;
  let workMs = 0;
  const it: AsyncIterator<RowItem[]> = reader[Symbol.asyncIterator]();
  for (;;) {
    const a = performance.now();
    const pending = it.next();
    nextMs += performance.now() - a;
    const step = await pending;
    if (step.done) break;
    rows += step.value.length;
    if (workNs > 0) {
      const iterations = Math.round(step.value.length * workNs * PER_NS);
      spin(iterations);
      workMs += iterations / PER_NS / 1e6; // its CPU time, as calibrated
    }
  }
  const wallMs = performance.now() - t0;
  const cpu = cpuBetween(before, snapshot());
  return { rows, wallMs, nextMs: nextMs + handlerMs, workMs, cpu };
}

const modes = [
  { name: "in-thread", parallel: false, work: 0 },
  { name: "parallel", parallel: true, work: 0 },
  { name: `in-thread + ${WORK_NS} ns/row`, parallel: false, work: WORK_NS },
  { name: `parallel + ${WORK_NS} ns/row`, parallel: true, work: WORK_NS },
].filter((m) => WORK_NS > 0 || m.work === 0);

console.log(`${FILE}: ${(SIZE / 1e6).toFixed(1)} MB`);
await run(false, 0); // warm up both
await run(true, 0);
const runs = new Map<string, Run[]>(modes.map((m) => [m.name, []]));
for (let round = 0; round < ROUNDS; round++) {
  const order = round % 2 === 0 ? modes : [...modes].reverse();
  for (const m of order) runs.get(m.name)!.push(await run(m.parallel, m.work));
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ms = (x: number) => Math.round(x);
const header = [
  "reader",
  "rows",
  "wall ms",
  "main cpu ms",
  "main - work",
  "reader code ms",
  "worker cpu",
  "V8 helpers",
];
const lines: (string | number)[][] = [header];
const summary = new Map<string, { wall: number; mainRead: number }>();
for (const m of modes) {
  const rs = runs.get(m.name)!;
  const hasCpu = rs.every((r) => r.cpu !== undefined);
  const wall = median(rs.map((r) => r.wallMs));
  const mainRead = hasCpu ? median(rs.map((r) => r.cpu!.main - r.workMs)) : NaN;
  summary.set(m.name, { wall, mainRead });
  lines.push([
    m.name,
    rs[0].rows,
    ms(wall),
    hasCpu ? ms(median(rs.map((r) => r.cpu!.main))) : "-",
    hasCpu ? ms(mainRead) : "-",
    m.parallel ? ms(median(rs.map((r) => r.nextMs))) : "-",
    hasCpu ? ms(median(rs.map((r) => r.cpu!.worker))) : "-",
    hasCpu ? ms(median(rs.map((r) => r.cpu!.v8))) : "-",
  ]);
}
console.log();
console.log(table(lines));
console.log();
const a = summary.get("in-thread")!;
const b = summary.get("parallel")!;
if (!Number.isNaN(a.mainRead)) {
  console.log(
    `main-thread CPU for reading: parallel / in-thread = ${(b.mainRead / a.mainRead).toFixed(2)}` +
      ` (${ms(b.mainRead)} ms vs ${ms(a.mainRead)} ms per ${a === b ? "" : ""}${
        runs.get("in-thread")![0].rows
      } rows)`,
  );
}
if (WORK_NS > 0) {
  const c = summary.get(`in-thread + ${WORK_NS} ns/row`)!;
  const d = summary.get(`parallel + ${WORK_NS} ns/row`)!;
  console.log(
    `wall with ${WORK_NS} ns/row of main-thread work: parallel / in-thread = ${
      (d.wall / c.wall).toFixed(2)
    } (${ms(d.wall)} ms vs ${ms(c.wall)} ms)`,
  );
}
