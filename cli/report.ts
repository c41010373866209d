/**
 * `mass-mailer report <report.csv>`: the summary of a ledger, whatever state
 * its campaign is in (running, stopped, finished): counts by status and by
 * code (latest record per row), the transient history, and the first failures.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { type LedgerMeta, type LedgerRecord, readLedger } from "../core/ledger.ts";
import { CliError, EXIT } from "./exit_codes.ts";
import { formatInt } from "./format.ts";
import type { CliIo } from "./io.ts";
import { toCliError } from "./send.ts";

/** Help text of `report`. */
export const REPORT_HELP = `Usage: mass-mailer report <report.csv> [--failures N] [--json]

Summarises a report written by mass-mailer send (the per-row CSV, also its resume ledger):
rows by status and by code, the transient failures that were retried, and the first failures.

  --failures N   how many failures to list (default 10)
  --json         one JSON object on stdout
`;

const STATUSES = ["sent", "failed", "invalid", "duplicate", "suppressed"] as const;

/** One status/code group of the latest outcomes. */
export interface CodeCount {
  readonly status: string;
  readonly code: string;
  readonly count: number;
  /** True for failures whose last answer was transient (`--retry-failed` resends them). */
  readonly transient: boolean;
  /** The reason of the first row in the group. */
  readonly example: string;
}

/** The summary of a ledger, as `report --json` prints it. */
export interface ReportSummary {
  readonly path: string;
  readonly campaign?: string;
  readonly runs: number;
  /** Rows with a final outcome (latest record per line). */
  readonly rows: number;
  readonly counts: Record<(typeof STATUSES)[number], number> & { failedTransient: number };
  readonly byCode: CodeCount[];
  /** Retried transient failures: total and by code. */
  readonly retries: { total: number; byCode: Record<string, number> };
  /** The first failed rows in file order. */
  readonly failures: {
    line: number;
    address: string;
    code: string;
    reason: string;
    attempts: number;
    failure: string;
  }[];
  readonly lastRun?: { time: string; transport?: unknown; forced?: boolean };
  /** Bytes of a torn last record that `send` will drop on resume. */
  readonly tornBytes: number;
}

/** A Uint32Array indexed by line that grows on demand. */
class Column {
  data = new Uint32Array(1024);
  set(line: number, value: number): void {
    if (line >= this.data.length) {
      let size = this.data.length;
      while (size <= line) size *= 2;
      const next = new Uint32Array(size);
      next.set(this.data);
      this.data = next;
    }
    this.data[line] = value;
  }
  get(line: number): number {
    return line < this.data.length ? this.data[line] : 0;
  }
}

/** Read the ledger at `path` and summarise it (two passes; memory: 8 bytes per line). */
export async function summariseReport(path: string, maxFailures = 10): Promise<ReportSummary> {
  // Pass 1: latest final record per line (its ordinal and its status/code group).
  const groups = new Map<string, number>();
  const groupInfo: { status: string; code: string; transient: boolean; example: string }[] = [
    { status: "", code: "", transient: false, example: "" },
  ];
  const groupOf = new Column();
  const latest = new Column();
  const retries = new Map<string, number>();
  let retryTotal = 0;
  let ordinal = 0;
  let maxLine = 0;
  const metas: { meta: LedgerMeta; time: string }[] = [];
  const info = await readLedger(path, (r: LedgerRecord) => {
    ordinal++;
    if (r.status === "meta") {
      try {
        metas.push({ meta: JSON.parse(r.reason), time: r.time });
      } catch {
        // A meta record without JSON: ignore.
      }
      return;
    }
    if (r.status === "retry") {
      retryTotal++;
      retries.set(r.code, (retries.get(r.code) ?? 0) + 1);
      return;
    }
    const transient = r.status === "failed" && r.failure === "transient";
    const key = `${r.status}\t${r.code}\t${transient}`;
    let g = groups.get(key);
    if (g === undefined) {
      g = groupInfo.length;
      groups.set(key, g);
      groupInfo.push({ status: r.status, code: r.code, transient, example: r.reason });
    }
    groupOf.set(r.line, g);
    latest.set(r.line, ordinal);
    if (r.line > maxLine) maxLine = r.line;
  });
  if (!info.exists) {
    throw new CliError(
      `No report at ${path}: give the file that mass-mailer send wrote (INPUT.report.csv by default)`,
      EXIT.USAGE,
    );
  }
  const perGroup = new Array<number>(groupInfo.length).fill(0);
  for (let line = 1; line <= maxLine; line++) perGroup[groupOf.get(line)]++;
  const counts = {
    sent: 0,
    failed: 0,
    invalid: 0,
    duplicate: 0,
    suppressed: 0,
    failedTransient: 0,
  };
  const byCode: CodeCount[] = [];
  for (let g = 1; g < groupInfo.length; g++) {
    const n = perGroup[g];
    if (n === 0) continue;
    const gi = groupInfo[g];
    counts[gi.status as (typeof STATUSES)[number]] += n;
    if (gi.transient) counts.failedTransient += n;
    byCode.push({ ...gi, count: n });
  }
  byCode.sort((a, b) =>
    STATUSES.indexOf(a.status as (typeof STATUSES)[number]) -
      STATUSES.indexOf(b.status as (typeof STATUSES)[number]) || b.count - a.count
  );

  // Pass 2: the first failures that are still the latest record of their line.
  const failures: ReportSummary["failures"] = [];
  if (counts.failed > 0 && maxFailures > 0) {
    let n = 0;
    await readLedger(path, (r) => {
      n++;
      if (failures.length >= maxFailures || r.status !== "failed") return;
      if (latest.get(r.line) !== n) return;
      failures.push({
        line: r.line,
        address: r.address,
        code: r.code,
        reason: r.reason,
        attempts: r.attempts,
        failure: r.failure,
      });
    });
  }
  const last = metas.at(-1);
  const rows = counts.sent + counts.failed + counts.invalid + counts.duplicate + counts.suppressed;
  return {
    path,
    campaign: metas[0]?.meta.campaign,
    runs: metas.length,
    rows,
    counts,
    byCode,
    retries: { total: retryTotal, byCode: Object.fromEntries(retries) },
    failures,
    ...(last === undefined ? {} : {
      lastRun: {
        time: last.time,
        transport: last.meta.transport,
        ...(last.meta.forced ? { forced: true } : {}),
      },
    }),
    tornBytes: info.size - info.goodBytes,
  };
}

function clip(s: string, n: number): string {
  return s.length <= n ? s : s.slice(0, n - 1) + "…";
}

/** The human form of a report summary (no trailing newline). */
export function reportText(r: ReportSummary): string {
  const out: string[] = [];
  const runs = r.runs === 1 ? "1 run" : `${formatInt(r.runs)} runs`;
  const last = r.lastRun ? `, last started ${r.lastRun.time}` : "";
  const via = r.lastRun?.transport ? ` (${r.lastRun.transport})` : "";
  out.push(`Report ${r.path}: campaign ${r.campaign ?? "(none yet)"}, ${runs}${last}${via}`);
  out.push(`${formatInt(r.rows)} rows with a final outcome:`);
  const c = r.counts;
  const lines: [string, number, string?][] = [
    ["sent", c.sent],
    [
      "failed",
      c.failed,
      c.failedTransient
        ? `${formatInt(c.failedTransient)} transient: --retry-failed sends them again`
        : undefined,
    ],
    ["invalid", c.invalid],
    ["duplicates", c.duplicate],
  ];
  if (c.suppressed) lines.push(["suppressed", c.suppressed]);
  const width = Math.max(...lines.map((l) => formatInt(l[1]).length));
  for (const [label, n, note] of lines) {
    out.push(`  ${label.padEnd(12)}${formatInt(n).padStart(width)}${note ? `  (${note})` : ""}`);
  }
  const coded = r.byCode.filter((g) => g.status !== "sent");
  if (coded.length > 0) {
    out.push("By code:");
    const cw = Math.max(...coded.map((g) => g.code.length), 4);
    const nw = Math.max(...coded.map((g) => formatInt(g.count).length));
    for (const g of coded) {
      const status = g.transient ? "failed*" : g.status;
      out.push(
        `  ${status.padEnd(11)}${(g.code || "-").padEnd(cw)}  ${
          formatInt(g.count).padStart(nw)
        }  ` +
          clip(g.example, 70),
      );
    }
    if (coded.some((g) => g.transient)) out.push("  (* last answer was transient: out of retries)");
  }
  if (r.retries.total > 0) {
    const codes = Object.entries(r.retries.byCode)
      .sort((a, b) => b[1] - a[1])
      .map(([code, n]) => `${code || "-"} x${formatInt(n)}`)
      .join(", ");
    out.push(`Transient failures retried: ${formatInt(r.retries.total)} (${codes})`);
  }
  if (r.failures.length > 0) {
    out.push(`First ${r.failures.length === 1 ? "failure" : `${r.failures.length} failures`}:`);
    for (const f of r.failures) {
      out.push(
        `  line ${String(f.line).padEnd(8)}${clip(f.address, 40).padEnd(40)}  ${
          f.code.padEnd(6)
        }  ` +
          clip(f.reason, 80),
      );
    }
  }
  if (r.tornBytes > 0) {
    out.push(`The last ${r.tornBytes} bytes are a torn record (a crash); the next send drops them`);
  }
  return out.join("\n");
}

/** Run `report` with its argv (after the word `report`). Returns the exit code. */
export async function reportCommand(args: string[], io: CliIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        failures: { type: "string" },
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (error) {
    throw new CliError(`${(error as Error).message}; see mass-mailer report --help`, EXIT.USAGE);
  }
  if (parsed.values.help) {
    io.stdout(REPORT_HELP);
    return EXIT.OK;
  }
  if (parsed.positionals.length !== 1) {
    throw new CliError("Give exactly one report file; see mass-mailer report --help", EXIT.USAGE);
  }
  const f = parsed.values.failures;
  const maxFailures = f === undefined ? 10 : Number(f);
  if (!Number.isInteger(maxFailures) || maxFailures < 0) {
    throw new CliError(
      `Invalid --failures ${JSON.stringify(f)}: use a whole number >= 0`,
      EXIT.USAGE,
    );
  }
  let summary: ReportSummary;
  try {
    summary = await summariseReport(parsed.positionals[0], maxFailures);
  } catch (error) {
    throw toCliError(error);
  }
  if (parsed.values.json) io.stdout(JSON.stringify(summary) + "\n");
  else io.stdout(reportText(summary) + "\n");
  return EXIT.OK;
}
