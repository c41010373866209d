/**
 * Benchmark: the same 1,000,000-row CSV through the fake transport, by the CLI
 * and by POST /v1/send to `mass-mailer serve`, in one run.
 *
 * Usage: deno run -A bench/server.ts [--rows N] [--latency MS] [--runs N] [--v8-flags F]
 *
 * Both run as they ship, with the V8 heap settings of cli/v8_flags.ts; `--v8-flags`
 * gives others (`--v8-flags=` for V8's defaults).
 *
 * The CLI's figures are the wall time and peak RSS of its process; the
 * server's are the time from the first byte of the request to the last NDJSON
 * line and the peak RSS of the server process (started before the clock
 * runs, so its start-up is not counted; the CLI's start-up, about 0.1 s, is).
 * Both run without a ledger (the CLI with --no-report, the server without an
 * Idempotency-Key), then both with one (the CLI's default report, the server
 * with an Idempotency-Key). Goals (issue 6): server time <= 1.3x the CLI's,
 * server peak RSS <= 250 MB.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { V8_FLAGS } from "../cli/v8_flags.ts";
import {
  BENCH_ARGS,
  BENCH_MESSAGE,
  benchDir,
  fakeSendArgs,
  generatedCsv,
  measure,
  table,
} from "./_measure.ts";

const { values } = parseArgs({
  args: BENCH_ARGS,
  options: {
    rows: { type: "string", default: "1000000" },
    latency: { type: "string", default: "500" },
    runs: { type: "string", default: "2" },
    "v8-flags": { type: "string", default: V8_FLAGS.join(",") },
  },
});
/** The `--v8-flags=...` argument of both processes ("" for V8's defaults). */
const v8Flags = values["v8-flags"] === "" ? "" : `--v8-flags=${values["v8-flags"]}`;
const rows = Number(values.rows);
const latency = String(Number(values.latency));
const runs = Number(values.runs);
const dir = await benchDir();
const csv = await generatedCsv(rows);
const csvBytes = (await Deno.stat(csv)).size;
const deno = Deno.execPath();
const cliSend = fakeSendArgs(csv, Number(latency), v8Flags);
const serverTs = new URL("../server.ts", import.meta.url).pathname;

interface Figures {
  readonly ms: number;
  readonly rssMb: number;
  readonly ok: string;
}

function check(summary: Record<string, number>): string {
  const sum = summary.sent + summary.failed + summary.invalid + summary.duplicates +
    summary.suppressed;
  return summary.rows === rows && sum === rows && summary.sent === rows
    ? "yes"
    : `no (${sum}/${rows})`;
}

async function runCli(report: boolean): Promise<Figures> {
  const reportPath = `${dir}server-bench-${crypto.randomUUID()}.report.csv`;
  const m = await measure(deno, [
    ...cliSend,
    ...(report ? ["--report", reportPath] : ["--no-report"]),
  ]);
  await Deno.remove(reportPath).catch(() => {});
  let ok;
  try {
    ok = check(JSON.parse(m.stdout));
  } catch {
    ok = `no (exit ${m.code}: ${m.stderr.trim().split("\n").pop()})`;
  }
  return { ms: m.wallMs, rssMb: m.peakRssMb, ok };
}

async function runServer(idempotent: boolean, upload: "chunked" | "length"): Promise<Figures> {
  const state = await Deno.makeTempDir({ prefix: "mass-mailer-bench-" });
  const child = new Deno.Command(deno, {
    args: [
      "run",
      ...(v8Flags === "" ? [] : [v8Flags]),
      "-A",
      serverTs,
      "--transport",
      "fake",
      "--latency",
      latency,
      "--no-auth",
      "--port",
      "0",
      "--idempotency-dir",
      state,
      ...BENCH_MESSAGE,
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  try {
    const port = await listeningPort(child.stderr);
    let peakKb = 0;
    const sample = () => {
      try {
        const m = /VmHWM:\s+(\d+) kB/.exec(Deno.readTextFileSync(`/proc/${child.pid}/status`));
        if (m) peakKb = Math.max(peakKb, Number(m[1]));
      } catch {
        // Exited.
      }
    };
    const timer = setInterval(sample, 10);
    // chunked: streamed from the file as it is read; length: the file read first, sent with
    // Content-Length (what curl --data-binary @file and curl -X POST -T file do).
    const body = upload === "chunked" ? (await Deno.open(csv)).readable : await Deno.readFile(csv);
    const t0 = performance.now();
    const res = await fetch(`http://127.0.0.1:${port}/v1/send`, {
      method: "POST",
      body,
      headers: {
        "content-type": "text/csv",
        ...(idempotent ? { "idempotency-key": crypto.randomUUID() } : {}),
      },
    });
    const text = await res.text();
    const ms = performance.now() - t0;
    sample();
    clearInterval(timer);
    const last = JSON.parse(text.trim().split("\n").pop()!);
    return {
      ms,
      rssMb: peakKb / 1024,
      ok: last.type === "summary" ? check(last) : `no (${text.slice(0, 200)})`,
    };
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await Deno.remove(state, { recursive: true });
  }
}

async function listeningPort(stderr: ReadableStream<Uint8Array>): Promise<number> {
  const reader = stderr.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (true) {
    const r = await reader.read();
    if (r.done) throw new Error(`The server exited: ${text}`);
    text += r.value;
    const m = /listening on http:\/\/127\.0\.0\.1:(\d+)\//.exec(text);
    if (m) {
      (async () => {
        while (!(await reader.read()).done) {
          // Keep draining stderr.
        }
      })();
      return Number(m[1]);
    }
  }
}

// Warm the module cache so compile time is not measured.
await measure(deno, [...cliSend.slice(0, cliSend.indexOf("send")), "--version"]);

const out: (string | number)[][] = [["run", "ms", "peak RSS MB", "rows ok"]];
const runners = {
  cli: ["CLI send --no-report", () => runCli(false)],
  server: ["POST /v1/send, chunked", () => runServer(false, "chunked")],
  serverLength: ["POST /v1/send, Content-Length", () => runServer(false, "length")],
  cliLedger: ["CLI send (report)", () => runCli(true)],
  serverLedger: ["POST /v1/send + Idempotency-Key, chunked", () => runServer(true, "chunked")],
} as const;
type Key = keyof typeof runners;
const best = Object.fromEntries(
  Object.keys(runners).map((k) => [k, { ms: Infinity, rss: 0 }]),
) as Record<
  Key,
  { ms: number; rss: number }
>;
for (let i = 1; i <= runs; i++) {
  for (const [key, [label, fn]] of Object.entries(runners) as [Key, (typeof runners)[Key]][]) {
    const f = await fn();
    out.push([`${label} #${i}`, Math.round(f.ms), f.rssMb.toFixed(0), f.ok]);
    // Best time, worst memory.
    best[key] = { ms: Math.min(best[key].ms, f.ms), rss: Math.max(best[key].rss, f.rssMb) };
  }
}

console.log(
  `${rows.toLocaleString("en-US")} rows (${(csvBytes / 1048576).toFixed(0)} MB), fake transport, ` +
    `${latency} ms latency, default window, V8 flags: ${values["v8-flags"] || "(V8 defaults)"}; ` +
    `best time and highest peak RSS of ${runs} runs\n`,
);
console.log(table(out));
const r = (a: Key, b: Key) => (best[a].ms / best[b].ms).toFixed(2);
console.log(
  `\nserver / CLI time (goal <= 1.3x): ${r("server", "cli")}x chunked, ${
    r("serverLength", "cli")
  }x ` +
    `with Content-Length, ${r("serverLedger", "cliLedger")}x with a ledger on both sides\n` +
    `peak RSS (goal <= 250 MB for the server): server ${best.server.rss.toFixed(0)} MB chunked, ` +
    `${best.serverLength.rss.toFixed(0)} MB with Content-Length, ${
      best.serverLedger.rss.toFixed(0)
    } MB ` +
    `with a ledger; CLI ${best.cli.rss.toFixed(0)} MB, ${
      best.cliLedger.rss.toFixed(0)
    } MB with its report`,
);
