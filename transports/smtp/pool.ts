/**
 * The connection pool: a queue of messages, up to `connections` open
 * connections pulling from it, and per-batch promises with abort support.
 *
 * Two kinds of failed opens are told apart:
 *
 * - Nothing works (no live connection): the server is down or refuses us.
 *   Attempts back off exponentially (`reconnectDelay`, doubling, up to 30 s),
 *   and after `reconnectAttempts` failures in a row `send()` gives up.
 * - Refused while other connections work (typically `421 Too many
 *   connections`): the server has a connection limit below the pool size. The
 *   pool shrinks its effective size to the connections that work, never gives
 *   up because of it, and probes for one more connection on a short schedule
 *   (`reconnectDelay`, doubling, up to 5 s).
 *
 * A connection that retires (its `maxMessages` reached) or closes is replaced
 * at once: a planned reconnect never waits behind a failure backoff.
 *
 * @module
 */
import type { Outgoing, SendResult } from "../../core/types.ts";
import { type Job, type JobSource, SmtpConnection } from "./connection.ts";
import { SmtpError } from "./error.ts";
import type { ResolvedSmtpOptions } from "./options.ts";

/** Longest wait between two connection attempts while no connection works. */
const MAX_RECONNECT_DELAY = 30_000;
/** Longest wait between two probes for one more connection while others work. */
const MAX_PROBE_DELAY = 5_000;

interface Batch {
  readonly results: SendResult[];
  left: number;
  resolve: (results: SendResult[]) => void;
  reject: (error: unknown) => void;
  readonly jobs: PoolJob[];
  readonly signal: AbortSignal;
  onAbort: (() => void) | null;
}

interface PoolJob extends Job {
  readonly batch: Batch;
  readonly index: number;
}

/** Counters for tests, benchmarks and diagnostics. */
export interface PoolStats {
  /** Connections that completed setup. */
  opened: number;
  /** Connection attempts that failed. */
  failedOpens: number;
  /** Messages moved to another connection after theirs closed. */
  requeued: number;
  /** Failed attempts while other connections worked (e.g. 421 at a server's connection limit). */
  refusedOpens: number;
  /** Effective pool size: `connections`, lowered while the server refuses more. */
  limit: number;
  /** Longest wait, in ms, the pool scheduled before a connection attempt (0 if none). */
  longestWait: number;
}

/** A pool of SMTP connections fed from one queue. */
export class SmtpPool implements JobSource {
  readonly #o: ResolvedSmtpOptions;
  readonly #live = new Set<SmtpConnection>();
  readonly #openings = new Set<Promise<void>>();
  #queue: (PoolJob | undefined)[] = [];
  #head = 0;
  readonly #front: PoolJob[] = [];
  #pending = 0;
  /** Failed opens in a row while no connection worked. */
  #failures = 0;
  /** While nothing works: no attempt before this time (performance.now()). */
  #nextOpenAt = 0;
  /** Effective pool size (see {@link PoolStats.limit}). */
  #limit: number;
  /** Refusals in a row while others worked: grows the probe delay. */
  #refusals = 0;
  /** While the pool is shrunk: no probe for one more connection before this time. */
  #probeAt = 0;
  #probing = false;
  #timer: ReturnType<typeof setTimeout> | undefined = undefined;
  #timerAt = 0;
  #fatal: SmtpError | null = null;
  #closing = false;
  #drained: (() => void) | null = null;
  /** Counters, updated as the pool works. */
  readonly stats: PoolStats;

  /** A pool for resolved options; it opens nothing until the first message. */
  constructor(options: ResolvedSmtpOptions) {
    this.#o = options;
    this.#limit = options.connections;
    this.stats = {
      opened: 0,
      failedOpens: 0,
      requeued: 0,
      refusedOpens: 0,
      limit: options.connections,
      longestWait: 0,
    };
  }

  /** Queue `batch` and resolve one result per message, in order. */
  send(batch: readonly Outgoing[], signal: AbortSignal): Promise<SendResult[]> {
    if (this.#fatal !== null) return Promise.reject(this.#fatal);
    if (this.#closing) {
      return Promise.reject(
        new SmtpError("ECLOSED", "The SMTP transport is closed: create a new one"),
      );
    }
    if (signal.aborted) return Promise.reject(signal.reason);
    if (batch.length === 0) return Promise.resolve([]);
    return new Promise<SendResult[]>((resolve, reject) => {
      const b: Batch = {
        results: new Array(batch.length),
        left: batch.length,
        resolve,
        reject,
        jobs: [],
        signal,
        onAbort: null,
      };
      for (let i = 0; i < batch.length; i++) {
        const job: PoolJob = {
          msg: batch[i],
          attempts: 0,
          failure: null,
          done: false,
          conn: null,
          batch: b,
          index: i,
        };
        b.jobs.push(job);
        this.#queue.push(job);
      }
      this.#pending += batch.length;
      b.onAbort = () => this.#abort(b);
      signal.addEventListener("abort", b.onAbort, { once: true });
      this.#dispatch();
    });
  }

  /** Finish queued and in-flight messages, then QUIT every connection. */
  async close(): Promise<void> {
    this.#closing = true;
    if (this.#pending > 0 && this.#fatal === null) {
      await new Promise<void>((resolve) => (this.#drained = resolve));
    }
    await this.#shutdown();
  }

  /** Close every connection now; queued messages are rejected with `error`. */
  async destroy(error: SmtpError): Promise<void> {
    this.#closing = true;
    this.#failAll(error);
    for (const c of [...this.#live]) c.destroy(error);
    await this.#shutdown();
  }

  async #shutdown(): Promise<void> {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    while (this.#openings.size > 0) await Promise.all([...this.#openings]);
    await Promise.all([...this.#live].map((c) => c.close()));
  }

  // ------------------------------------------------------------ JobSource

  /** @inheritdoc */
  take(): Job | undefined {
    const front = this.#front;
    while (front.length > 0) {
      const j = front.pop()!;
      if (!j.done) return j;
    }
    const q = this.#queue;
    while (this.#head < q.length) {
      const j = q[this.#head];
      q[this.#head++] = undefined;
      if (!j!.done) {
        if (this.#head > 4096 && this.#head * 2 > q.length) {
          this.#queue = q.slice(this.#head);
          this.#head = 0;
        }
        return j;
      }
    }
    this.#queue = [];
    this.#head = 0;
    return undefined;
  }

  /** @inheritdoc */
  finish(job: Job, result: SendResult): void {
    if (job.done) return;
    const j = job as PoolJob;
    j.done = true;
    j.conn = null;
    const b = j.batch;
    b.results[j.index] = result;
    if (--b.left === 0) {
      if (b.onAbort !== null) b.signal.removeEventListener("abort", b.onAbort);
      b.resolve(b.results);
    }
    if (--this.#pending === 0 && this.#drained !== null) {
      this.#drained();
      this.#drained = null;
    }
  }

  /** @inheritdoc */
  requeue(job: Job, code: string, reason: string): void {
    if (job.done) return;
    job.attempts++;
    job.conn = null;
    if (job.attempts >= this.#o.maxAttempts) {
      this.finish(job, { status: "retry", code, reason });
      return;
    }
    this.stats.requeued++;
    this.#front.push(job as PoolJob);
    queueMicrotask(() => this.#dispatch());
  }

  /** @inheritdoc */
  closed(conn: SmtpConnection): void {
    if (this.#live.delete(conn)) queueMicrotask(() => this.#dispatch());
  }

  // ------------------------------------------------------------- dispatch

  #queued(): number {
    return this.#front.length + this.#queue.length - this.#head;
  }

  #dispatch(): void {
    if (this.#fatal !== null || this.#queued() === 0) return;
    for (const c of this.#live) {
      c.pump();
      if (this.#queued() === 0) return;
    }
    const now = performance.now();
    // Nothing works: the failure backoff decides when to try again.
    // Attempts still in flight call back here when they settle.
    if (this.#live.size === 0 && now < this.#nextOpenAt) {
      if (this.#openings.size === 0) this.#wake(this.#nextOpenAt, now);
      return;
    }
    // Grow (or replace retired connections) up to the effective size, at once.
    // Each new connection will soon carry about two messages.
    while (
      this.#live.size + this.#counted() < this.#limit &&
      this.#queued() > this.#openings.size * 2
    ) {
      this.#open(false);
    }
    // Shrunk by refusals: probe for one more connection now and then.
    if (
      this.#limit < this.#o.connections && !this.#probing && this.#live.size > 0 &&
      this.#live.size + this.#counted() >= this.#limit &&
      this.#queued() > this.#openings.size * 2
    ) {
      if (now >= this.#probeAt) this.#open(true);
      else this.#wake(this.#probeAt, now);
    }
  }

  /** Run #dispatch at `at` (a performance.now() time), unless a timer fires earlier. */
  #wake(at: number, now: number): void {
    if (this.#timer !== undefined) {
      if (this.#timerAt <= at) return;
      clearTimeout(this.#timer);
    }
    const wait = Math.max(0, Math.ceil(at - now));
    if (wait > this.stats.longestWait) this.stats.longestWait = wait;
    this.#timerAt = at;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#dispatch();
    }, wait);
  }

  /** Openings that count toward the effective size (a probe is one beyond it). */
  #counted(): number {
    return this.#openings.size - (this.#probing ? 1 : 0);
  }

  #open(probe: boolean): void {
    if (probe) this.#probing = true;
    const p: Promise<void> = SmtpConnection.open(this.#o).then(
      (conn) => {
        this.#openings.delete(p);
        if (probe) {
          // There was room for one more: grow, and look for more soon.
          this.#probing = false;
          this.#refusals = 0;
          this.#probeAt = performance.now() + this.#probeDelay();
          this.#setLimit(Math.min(this.#limit + 1, this.#o.connections));
        }
        this.#failures = 0;
        this.#nextOpenAt = 0;
        this.stats.opened++;
        this.#live.add(conn);
        conn.start(this);
        if (this.#fatal !== null) conn.destroy(this.#fatal);
        else this.#dispatch();
      },
      (error: SmtpError) => {
        this.#openings.delete(p);
        if (probe) this.#probing = false;
        this.stats.failedOpens++;
        this.#openFailed(error, probe);
      },
    );
    this.#openings.add(p);
  }

  #setLimit(n: number): void {
    this.#limit = n;
    this.stats.limit = n;
  }

  /** Delay before the next probe: reconnectDelay doubling per refusal, up to MAX_PROBE_DELAY. */
  #probeDelay(): number {
    const base = Math.max(1, this.#o.reconnectDelay);
    return Math.min(base * 2 ** Math.min(Math.max(this.#refusals - 1, 0), 20), MAX_PROBE_DELAY);
  }

  #openFailed(error: SmtpError, probe: boolean): void {
    if (this.#fatal !== null) return;
    if (!error.transient) {
      this.#failAll(error);
      return;
    }
    if (this.#live.size > 0) {
      // Refused while others work: the server's limit is below the pool size.
      // Shrink to what works and probe again later; this is not a failure.
      // Refusals of one wave count once; each failed probe doubles the delay.
      this.stats.refusedOpens++;
      if (probe || this.#refusals === 0) this.#refusals++;
      // A failed probe says nothing about the connections within the limit.
      if (!probe) {
        this.#setLimit(Math.max(1, Math.min(this.#limit, this.#live.size + this.#counted())));
      }
      this.#probeAt = performance.now() + this.#probeDelay();
      this.#dispatch();
      return;
    }
    this.#failures++;
    const alone = this.#openings.size === 0;
    if (alone && this.#failures > this.#o.reconnectAttempts) {
      const tries = this.#failures;
      this.#failAll(
        new SmtpError(
          error.code,
          `${error.message} (gave up after ${tries} attempt${tries === 1 ? "" : "s"})`,
          {
            responseCode: error.responseCode,
            command: error.command,
            timeout: error.timeout,
            cause: error,
          },
        ),
      );
      return;
    }
    const delay = Math.min(
      this.#o.reconnectDelay * 2 ** Math.min(this.#failures - 1, 20),
      MAX_RECONNECT_DELAY,
    );
    this.#nextOpenAt = performance.now() + delay;
    this.#dispatch();
  }

  /** The transport cannot work: reject every batch that still waits. */
  #failAll(error: SmtpError): void {
    if (this.#fatal === null) this.#fatal = error;
    const waiting = new Set<Batch>();
    for (const j of this.#front) if (!j.done) waiting.add(j.batch);
    for (let i = this.#head; i < this.#queue.length; i++) {
      const j = this.#queue[i];
      if (j !== undefined && !j.done) waiting.add(j.batch);
    }
    for (const b of waiting) this.#rejectBatch(b, error);
    this.#front.length = 0;
    this.#queue = [];
    this.#head = 0;
  }

  #rejectBatch(b: Batch, error: unknown): void {
    for (const j of b.jobs) {
      if (!j.done) {
        j.done = true;
        this.#pending--;
      }
    }
    if (b.onAbort !== null) b.signal.removeEventListener("abort", b.onAbort);
    b.left = 0;
    b.reject(error);
    if (this.#pending === 0 && this.#drained !== null) {
      this.#drained();
      this.#drained = null;
    }
  }

  #abort(b: Batch): void {
    if (b.left === 0) return;
    const busy = new Set<SmtpConnection>();
    for (const j of b.jobs) if (!j.done && j.conn !== null) busy.add(j.conn);
    this.#rejectBatch(b, b.signal.reason);
    const why = new SmtpError("ECLOSED", "Sending was aborted");
    for (const c of busy) c.destroy(why);
  }
}
