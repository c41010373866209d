import { writeGenerated } from "../cli/generate.ts";
import { V8_FLAGS_ARG } from "../cli/v8_flags.ts";

/**
 * Run a command and measure its wall time and peak RSS (VmHWM sampled from
 * /proc every 10 ms; the kernel keeps the high-water mark, so the last sample
 * before exit is the peak up to those final milliseconds).
 *
 * @module
 */

/** What one measured run produced. */
export interface Measured {
  readonly wallMs: number;
  readonly peakRssMb: number;
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Run `cmd` with `args`, measuring wall time and peak RSS. */
export async function measure(
  cmd: string,
  args: string[],
  env?: Record<string, string>,
): Promise<Measured> {
  const t0 = performance.now();
  const child = new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped", env }).spawn();
  let peakKb = 0;
  const sample = () => {
    try {
      const status = Deno.readTextFileSync(`/proc/${child.pid}/status`);
      const m = /VmHWM:\s+(\d+) kB/.exec(status);
      if (m) peakKb = Math.max(peakKb, Number(m[1]));
    } catch {
      // The process has exited.
    }
  };
  const timer = setInterval(sample, 10);
  const out = await child.output();
  clearInterval(timer);
  const wallMs = performance.now() - t0;
  return {
    wallMs,
    peakRssMb: peakKb / 1024,
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

/** Format a table of rows (first row = header) with right-aligned numbers. */
export function table(rows: (string | number)[][]): string {
  const cells = rows.map((r) => r.map(String));
  const widths = cells[0].map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  return cells.map((r) =>
    r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ")
  ).join("\n");
}

/** The CLI's entry point, for `deno run ... CLI send ...`. */
export const CLI = new URL("../cli.ts", import.meta.url).pathname;

/** The message every benchmark sends: merge fields in the subject, To name and body. */
export const BENCH_MESSAGE: readonly string[] = [
  "--from",
  "Bench <bench@example.com>",
  "--subject",
  "Hello {{name}}",
  "--to-name",
  "{{name}}",
  "--text",
  "Hi {{name}},\n\nGreetings from {{city}}.\n",
];

/**
 * `deno run` arguments for `mass-mailer send CSV` through the fake transport with
 * the bench message, `--json` and no progress; `v8Flags` is the `--v8-flags=...`
 * argument (the shipped one unless given; "" for V8's defaults).
 */
export function fakeSendArgs(csv: string, latency: number, v8Flags = V8_FLAGS_ARG): string[] {
  return [
    "run",
    ...(v8Flags === "" ? [] : [v8Flags]),
    "--allow-read",
    "--allow-write",
    "--allow-env",
    CLI,
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
}

/** bench/out/, created if missing (ignored by git). */
export async function benchDir(): Promise<string> {
  const dir = new URL("./out/", import.meta.url).pathname;
  await Deno.mkdir(dir, { recursive: true });
  return dir;
}

/** A generated CSV of `rows` rows in bench/out/, written once and reused by later runs. */
export async function generatedCsv(rows: number, name = "fake"): Promise<string> {
  const csv = `${await benchDir()}${name}-${rows}.csv`;
  try {
    await Deno.stat(csv);
  } catch {
    await writeGenerated(csv, { rows });
  }
  return csv;
}

/**
 * The script's own arguments: `deno task bench -- --rows 1000` passes the `--` through,
 * so a leading `--` is dropped here before `parseArgs` sees it.
 */
export const BENCH_ARGS: string[] = Deno.args[0] === "--" ? Deno.args.slice(1) : [...Deno.args];
