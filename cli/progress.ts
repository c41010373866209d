/**
 * The progress display on stderr: a redrawn bar on a terminal, plain periodic
 * lines otherwise (CI logs, pipes).
 *
 * @module
 */
import type { CampaignStats } from "../core/campaign.ts";
import { formatDuration, formatInt } from "./format.ts";

/** What the progress display reads on every tick. */
export interface ProgressSource {
  readonly stats: Readonly<CampaignStats>;
  /** Milliseconds since the run started. */
  elapsed(): number;
  /** Bytes of input read so far and the input's size, when known. */
  input(): { read: number; total?: number; parsed?: number };
}

/** Options of {@link startProgress}. */
export interface ProgressOptions {
  /** Write text to the progress stream (stderr). */
  readonly write: (text: string) => void;
  /** Redraw one line in place (a terminal) or print plain lines. */
  readonly tty: boolean;
  /** Milliseconds between updates. Default 100 on a terminal, 2000 otherwise. */
  readonly intervalMs?: number;
  /** Terminal width for the bar. Default 100. */
  readonly columns?: number;
}

/** A running progress display; `stop()` draws the last state and ends the line. */
export interface Progress {
  stop(): void;
}

/** Start drawing progress for `source` until `stop()`. */
export function startProgress(source: ProgressSource, options: ProgressOptions): Progress {
  const interval = options.intervalMs ?? (options.tty ? 100 : 2000);
  let last = "";
  const draw = (final: boolean) => {
    const line = progressLine(source, options.tty ? options.columns ?? 100 : 0);
    if (options.tty) {
      options.write(`\r${line}\x1b[K${final ? "\n" : ""}`);
    } else if (line !== last || final) {
      options.write(`${line}\n`);
    }
    last = line;
  };
  const id = setInterval(() => draw(false), interval);
  return {
    stop() {
      clearInterval(id);
      // A run that read no row (an empty or header-only input) gets no "0 rows" line.
      if (last !== "" || source.stats.rows > 0) draw(true);
    },
  };
}

/** One progress line: counts, rate, ETA (when the input size is known) and a bar on a terminal. */
export function progressLine(source: ProgressSource, barWidth: number): string {
  const s = source.stats;
  const ms = Math.max(1, source.elapsed());
  const { read, total, parsed } = source.input();
  const finished = s.sent + s.failed;
  const rate = finished / (ms / 1000);
  const parts: string[] = [];
  let eta = "";
  let pct = "";
  let fraction = -1;
  if (total !== undefined && total > 0) {
    // Rows with a final outcome out of the rows the file holds, estimated from the rows
    // parsed so far and the share of the bytes they came from (exact once all is read).
    const final = s.sent + s.failed + s.invalid + s.duplicates + s.suppressed + s.done;
    const rowsSeen = Math.max(parsed ?? s.rows, s.rows);
    const estimated = read > 0 ? rowsSeen * Math.max(1, total / read) : 0;
    fraction = estimated > 0 ? Math.min(1, final / estimated) : 0;
    pct = `${(fraction * 100).toFixed(fraction < 0.1 ? 1 : 0)}%`;
    if (fraction > 0.001 && fraction < 1) {
      eta = `ETA ${formatDuration((ms / fraction) * (1 - fraction))}`;
    }
  }
  parts.push(`${formatInt(s.rows)} rows`);
  parts.push(`${formatInt(s.sent)} sent`);
  if (s.failed) parts.push(`${formatInt(s.failed)} failed`);
  if (s.invalid) parts.push(`${formatInt(s.invalid)} invalid`);
  if (s.duplicates) parts.push(`${formatInt(s.duplicates)} dup`);
  if (s.done) parts.push(`${formatInt(s.done)} done before`);
  if (s.retrying) parts.push(`${formatInt(s.retrying)} retrying`);
  parts.push(`${formatInt(s.inFlight)} in flight`);
  parts.push(`${formatInt(Math.round(rate))}/s`);
  if (eta) parts.push(eta);
  const text = parts.join(" · ");
  if (barWidth <= 0 || fraction < 0) return pct ? `${pct} ${text}` : text;
  const width = Math.max(10, Math.min(30, barWidth - text.length - 8));
  const full = Math.round(fraction * width);
  return `[${"█".repeat(full)}${"░".repeat(width - full)}] ${pct.padStart(4)} ${text}`;
}
