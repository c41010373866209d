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
