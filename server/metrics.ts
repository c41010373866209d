/**
 * Prometheus metrics of the HTTP service, rendered in the text exposition
 * format (version 0.0.4).
 *
 * Row counters are read from the live `stats` of running campaigns at scrape
 * time and folded into totals when a run ends, so the hot path does no extra
 * work per row. Failures are counted by code as they become final, and send
 * latency is timed once per transport call (a batch counts once per message).
 *
 * @module
 */
import type { CampaignStats, CampaignStatus } from "../core/campaign.ts";
import type { Outgoing, SendOptions, SendResult, Transport } from "../core/types.ts";

/** The `Content-Type` of the metrics page. */
export const METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Default histogram buckets for send latency, in seconds. */
export const LATENCY_BUCKETS: readonly number[] = [
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60,
];

/** A cumulative histogram (Prometheus semantics: `le` buckets, sum and count). */
export class Histogram {
  /** Upper bounds, ascending, without `+Inf`. */
  readonly buckets: readonly number[];
  readonly #counts: number[];
  #sum = 0;
  #count = 0;

  /** @throws {RangeError} unless `buckets` is strictly ascending and finite. */
  constructor(buckets: readonly number[] = LATENCY_BUCKETS) {
    for (let i = 0; i < buckets.length; i++) {
      if (!Number.isFinite(buckets[i]) || (i > 0 && buckets[i] <= buckets[i - 1])) {
        throw new RangeError("Histogram buckets must be finite and strictly ascending");
      }
    }
    this.buckets = [...buckets];
    this.#counts = new Array(buckets.length + 1).fill(0);
  }

  /** Record `count` observations of `value`. */
  observe(value: number, count = 1): void {
    let i = 0;
    while (i < this.buckets.length && value > this.buckets[i]) i++;
    this.#counts[i] += count;
    this.#sum += value * count;
    this.#count += count;
  }

  /** Total of all observations. */
  get sum(): number {
    return this.#sum;
  }

  /** Number of observations. */
  get count(): number {
    return this.#count;
  }

  /** Cumulative counts per bucket, the last one for `+Inf`. */
  cumulative(): number[] {
    const out: number[] = [];
    let acc = 0;
    for (const c of this.#counts) out.push(acc += c);
    return out;
  }
}

/** A running campaign as the metrics see it. */
export interface LiveRun {
  readonly stats: Readonly<CampaignStats>;
}

const COUNTED = [
  "rows",
  "sent",
  "invalid",
  "duplicates",
  "suppressed",
  "done",
  "transient",
  "attempts",
] as const;
type Counted = typeof COUNTED[number];

/** The service's metrics: totals, live runs, failures by code, send latency. */
export class ServerMetrics {
  readonly #base: Record<Counted, number> = {
    rows: 0,
    sent: 0,
    invalid: 0,
    duplicates: 0,
    suppressed: 0,
    done: 0,
    transient: 0,
    attempts: 0,
  };
  readonly #live = new Set<LiveRun>();
  readonly #failed = new Map<string, number>();
  readonly #runs = new Map<string, number>();
  readonly #responses = new Map<string, number>();
  readonly latency: Histogram;
  #bodyBytes = 0;

  /** @param buckets latency histogram bounds in seconds */
  constructor(buckets: readonly number[] = LATENCY_BUCKETS) {
    this.latency = new Histogram(buckets);
  }

  /** A run started: its live stats count from now on. */
  runStarted(run: LiveRun): void {
    this.#live.add(run);
  }

  /** A run ended: fold its final stats into the totals. */
  runEnded(run: LiveRun, status: CampaignStatus | "rejected"): void {
    if (this.#live.delete(run)) {
      for (const k of COUNTED) this.#base[k] += run.stats[k];
    }
    this.#runs.set(status, (this.#runs.get(status) ?? 0) + 1);
  }

  /** A message failed for good with `code`. */
  failed(code: string): void {
    this.#failed.set(code, (this.#failed.get(code) ?? 0) + 1);
  }

  /** Request body bytes received. */
  bodyBytes(n: number): void {
    this.#bodyBytes += n;
  }

  /** An HTTP response was sent with this status. */
  response(status: number): void {
    const key = String(status);
    this.#responses.set(key, (this.#responses.get(key) ?? 0) + 1);
  }

  /** Wrap a transport so every `send` is timed into the latency histogram. */
  timed(transport: Transport): Transport {
    const latency = this.latency;
    return {
      name: transport.name,
      maxBatch: transport.maxBatch,
      defaultConcurrency: transport.defaultConcurrency,
      limits: transport.limits,
      // What the engine may do with a sent message's memory is the wrapped transport's call.
      releasesMessages: transport.releasesMessages,
      consumesOnSend: transport.consumesOnSend,
      send(batch: readonly Outgoing[], opts: SendOptions): Promise<SendResult[]> {
        const t0 = performance.now();
        const n = batch.length; // not the batch itself: it must not be kept while it waits
        return transport.send(batch, opts).then((results) => {
          latency.observe((performance.now() - t0) / 1000, n);
          return results;
        });
      },
      close: () => transport.close(),
    };
  }

  /** The metrics page in Prometheus text format. */
  render(): string {
    const total = (k: Counted) => {
      let n = this.#base[k];
      for (const run of this.#live) n += run.stats[k];
      return n;
    };
    let inFlight = 0;
    let retrying = 0;
    for (const run of this.#live) {
      inFlight += run.stats.inFlight;
      retrying += run.stats.retrying;
    }
    const out: string[] = [];
    const metric = (
      name: string,
      type: "counter" | "gauge",
      help: string,
      samples: Iterable<[Record<string, string>, number]>,
    ) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [labels, value] of samples) {
        out.push(`${name}${formatLabels(labels)} ${formatValue(value)}`);
      }
    };
    const one = (v: number): [Record<string, string>, number][] => [[{}, v]];
    metric(
      "mass_mailer_rows_total",
      "counter",
      "CSV data rows taken by all runs.",
      one(total("rows")),
    );
    metric(
      "mass_mailer_sent_total",
      "counter",
      "Messages the transport accepted.",
      one(total("sent")),
    );
    metric(
      "mass_mailer_failed_total",
      "counter",
      "Messages that failed for good, by the transport's code.",
      [...this.#failed].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0).map((
        [code, n],
      ) => [{ code }, n]),
    );
    metric(
      "mass_mailer_invalid_total",
      "counter",
      "Rows with an invalid address or row.",
      one(total("invalid")),
    );
    metric(
      "mass_mailer_duplicates_total",
      "counter",
      "Rows that repeat an earlier address.",
      one(total("duplicates")),
    );
    metric(
      "mass_mailer_suppressed_total",
      "counter",
      "Rows on the suppression list.",
      one(total("suppressed")),
    );
    metric(
      "mass_mailer_resumed_done_total",
      "counter",
      "Rows skipped because an earlier run with the same Idempotency-Key finished them.",
      one(total("done")),
    );
    metric(
      "mass_mailer_attempts_total",
      "counter",
      "Send attempts, first tries and retries.",
      one(total("attempts")),
    );
    metric(
      "mass_mailer_transient_failures_total",
      "counter",
      "Transient failures (retried or out of retries).",
      one(total("transient")),
    );
    metric(
      "mass_mailer_in_flight",
      "gauge",
      "Messages handed to the transport and not yet answered.",
      one(inFlight),
    );
    metric("mass_mailer_retrying", "gauge", "Messages waiting for a retry.", one(retrying));
    metric("mass_mailer_runs_active", "gauge", "Campaigns running now.", one(this.#live.size));
    metric(
      "mass_mailer_runs_total",
      "counter",
      "Campaigns ended, by how they ended.",
      [...this.#runs].sort(([a], [b]) => a < b ? -1 : 1).map(([status, n]) => [{ status }, n]),
    );
    metric(
      "mass_mailer_request_body_bytes_total",
      "counter",
      "Request body bytes received.",
      one(this.#bodyBytes),
    );
    metric(
      "mass_mailer_http_responses_total",
      "counter",
      "HTTP responses by status code.",
      [...this.#responses].sort(([a], [b]) => a < b ? -1 : 1).map(([code, n]) => [{ code }, n]),
    );
    const h = this.latency;
    const name = "mass_mailer_send_latency_seconds";
    out.push(
      `# HELP ${name} Time from handing a message to the transport to its answer.`,
      `# TYPE ${name} histogram`,
    );
    const cumulative = h.cumulative();
    h.buckets.forEach((le, i) =>
      out.push(`${name}_bucket{le="${formatValue(le)}"} ${cumulative[i]}`)
    );
    out.push(`${name}_bucket{le="+Inf"} ${cumulative[cumulative.length - 1]}`);
    out.push(`${name}_sum ${formatValue(h.sum)}`, `${name}_count ${h.count}`);
    return out.join("\n") + "\n";
  }
}

/** `{a="1",b="x\"y"}` with Prometheus escaping of `\`, `"` and newlines; "" without labels. */
export function formatLabels(labels: Record<string, string>): string {
  const keys = Object.keys(labels);
  if (keys.length === 0) return "";
  return `{${keys.map((k) => `${k}="${escapeLabel(labels[k])}"`).join(",")}}`;
}

function escapeLabel(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => c === "\n" ? "\\n" : `\\${c}`);
}

function formatValue(n: number): string {
  if (Number.isNaN(n)) return "NaN";
  if (n === Infinity) return "+Inf";
  if (n === -Infinity) return "-Inf";
  return String(n);
}
