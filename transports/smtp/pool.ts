/**
 * The connection pool: a queue of messages, up to `connections` open
 * connections pulling from it, a reconnect backoff for connections that fail
 * to open, and per-batch promises with abort support.
 *
 * @module
 */
import type { Outgoing, SendResult } from "../../core/types.ts";
import { type Job, type JobSource, SmtpConnection } from "./connection.ts";
import { SmtpError } from "./error.ts";
import type { ResolvedSmtpOptions } from "./options.ts";

/** Longest wait between two connection attempts. */
const MAX_RECONNECT_DELAY = 30_000;

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
  #failures = 0;
  #nextOpenAt = 0;
  #backoffTimer: ReturnType<typeof setTimeout> | undefined = undefined;
  #fatal: SmtpError | null = null;
  #closing = false;
  #drained: (() => void) | null = null;
  /** Counters, updated as the pool works. */
  readonly stats: PoolStats = { opened: 0, failedOpens: 0, requeued: 0 };

  /** A pool for resolved options; it opens nothing until the first message. */
  constructor(options: ResolvedSmtpOptions) {
    this.#o = options;
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
    if (this.#backoffTimer !== undefined) {
      clearTimeout(this.#backoffTimer);
      this.#backoffTimer = undefined;
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
    // Grow: each new connection will soon carry about two messages.
    while (
      this.#live.size + this.#openings.size < this.#o.connections &&
      this.#queued() > this.#openings.size * 2 &&
      this.#backoffTimer === undefined
    ) {
      const wait = this.#nextOpenAt - performance.now();
      if (wait > 0) {
        this.#backoffTimer = setTimeout(() => {
          this.#backoffTimer = undefined;
          this.#dispatch();
        }, Math.ceil(wait));
        return;
      }
      this.#open();
    }
  }

  #open(): void {
    const p: Promise<void> = SmtpConnection.open(this.#o).then(
      (conn) => {
        this.#openings.delete(p);
        this.#failures = 0;
        this.stats.opened++;
        this.#live.add(conn);
        conn.start(this);
        if (this.#fatal !== null) conn.destroy(this.#fatal);
        else this.#dispatch();
      },
      (error: SmtpError) => {
        this.#openings.delete(p);
        this.stats.failedOpens++;
        this.#openFailed(error);
      },
    );
    this.#openings.add(p);
  }

  #openFailed(error: SmtpError): void {
    if (this.#fatal !== null) return;
    if (!error.transient) {
      this.#failAll(error);
      return;
    }
    this.#failures++;
    const alone = this.#live.size === 0 && this.#openings.size === 0;
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
