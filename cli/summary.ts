/**
 * The end-of-run summary: human lines for stderr, one JSON object for `--json`.
 *
 * @module
 */
import type { CampaignSummary } from "../core/campaign.ts";
import { formatDuration, formatInt } from "./format.ts";

/** Extra facts the summary shows beside the engine's counters. */
export interface SummaryContext {
  readonly transport: string;
  /** Where the per-row report is, when there is one. */
  readonly report?: string;
}

/** The machine-readable summary printed by `--json` (stable keys). */
export function summaryJson(s: CampaignSummary, ctx: SummaryContext): Record<string, unknown> {
  return {
    status: s.status,
    rows: s.rows,
    sent: s.sent,
    failed: s.failed,
    invalid: s.invalid,
    duplicates: s.duplicates,
    suppressed: s.suppressed,
    done: s.done,
    pending: s.pending,
    rendered: s.rendered,
    attempts: s.attempts,
    transient: s.transient,
    elapsedMs: Math.round(s.elapsedMs),
    perSecond: Math.round((s.sent + s.failed) / Math.max(0.001, s.elapsedMs / 1000)),
    transport: ctx.transport,
    dryRun: s.dryRun,
    ...(s.reason === undefined ? {} : { reason: s.reason }),
    ...(ctx.report === undefined ? {} : { report: ctx.report }),
  };
}

/** Human summary lines (no trailing newline on the last). */
export function summaryText(s: CampaignSummary, ctx: SummaryContext): string {
  const head = {
    finished: "Finished",
    stopped: "Stopped",
    paused: "Paused",
    failed: "Failed",
  }[s.status];
  const rate = Math.round((s.sent + s.failed) / Math.max(0.001, s.elapsedMs / 1000));
  const lines = [
    `${head} in ${formatDuration(s.elapsedMs)}: ${formatInt(s.rows)} ${
      s.rows === 1 ? "row" : "rows"
    } read` +
    (s.dryRun ? " (dry run: nothing sent)" : `, ${formatInt(rate)} messages/s`),
  ];
  // A failed run's cause comes first: it is what the user has to fix.
  if (s.status === "failed" && s.reason) lines.push(s.reason);
  const rows: [string, number, string?][] = [
    [s.dryRun ? "rendered" : "sent", s.dryRun ? s.rendered : s.sent],
    ["failed", s.failed, s.failed ? "permanent or out of retries" : undefined],
    ["invalid", s.invalid, s.invalid ? "bad address or row" : undefined],
    ["duplicates", s.duplicates],
  ];
  if (s.suppressed) rows.push(["suppressed", s.suppressed]);
  if (s.done) rows.push(["done before", s.done, "final in an earlier run"]);
  if (s.pending) {
    const note = s.status === "failed"
      ? "not sent: fix the cause above, then run the same command again"
      : "no final outcome yet: run the same command again to resume";
    rows.push(["pending", s.pending, note]);
  }
  const width = Math.max(...rows.map((r) => formatInt(r[1]).length));
  for (const [label, n, note] of rows) {
    lines.push(`  ${label.padEnd(12)}${formatInt(n).padStart(width)}${note ? `  (${note})` : ""}`);
  }
  if (s.transient) {
    lines.push(
      `  ${formatInt(s.transient)} transient failures (try-later answers), each retried until ` +
        `sent or out of attempts`,
    );
  }
  if (s.reason && s.status !== "failed") lines.push(s.reason);
  if (ctx.transport === "fake" && !s.dryRun) {
    lines.push("Transport: fake (no mail left this machine)");
  }
  if (ctx.report) lines.push(`Per-row report: ${ctx.report}`);
  return lines.join("\n");
}
