/**
 * The campaign engine: pulls recipients from the CSV, renders each message once,
 * hands batches to a transport within a bounded in-flight window, retries
 * transient failures with backoff, applies rate limits, and reports exactly one
 * final outcome per row.
 *
 * Pull-based: a CSV chunk is read only when the window has room, so memory is
 * bounded by the window (plus the compact dedupe set), never by the row count.
 *
 * @module
 */
import { type Clock, systemClock } from "./clock.ts";
import { MinHeap } from "./heap.ts";
import { type ComposeOptions, MessageComposer, type PackedMessages } from "./message.ts";
import { RateLimiter, type RateWindow } from "./rate.ts";
import { createRecipientReader, type ReaderChoiceOptions } from "./parallel_reader.ts";
import { RecipientPack } from "./recipient_pack.ts";
import { duplicateColumnWarning, type RowItem } from "./recipients.ts";
import type { MessageTemplate } from "./template.ts";
import {
  detachMessage,
  type Outgoing,
  type Recipient,
  type RetryResult,
  type RowOutcome,
  type RowStatus,
  type SendResult,
  type Transport,
} from "./types.ts";

/** Options of {@link startCampaign}. Only `input`, `template` and `transport` are required. */
export interface CampaignOptions {
  /** The CSV bytes: a file's readable, stdin, or a request body. */
  readonly input: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>;
  /** The message every recipient gets. */
  readonly template: MessageTemplate;
  /** Where messages go. The engine does not close it. */
  readonly transport: Transport;
  /**
   * How rows become recipients (address column, header row, delimiter), and
   * whether to read them in a worker thread (`parallel`, off by default; see
   * `ReaderChoiceOptions`).
   */
  readonly recipients?: ReaderChoiceOptions;
  /** Messages in flight at most. Default: `transport.defaultConcurrency`, else 100. */
  readonly concurrency?: number;
  /** Process only the first N data rows. */
  readonly limit?: number;
  /** Render every message but send none. */
  readonly dryRun?: boolean;
  /** Rate limits (see `parseRate`), applied with the transport's own `limits`. */
  readonly rate?: readonly RateWindow[];
  /** Past send times (ms, same clock) that count against the rate windows (resume). */
  readonly rateHistory?: Iterable<number>;
  /** Attempts per message before a transient failure becomes final. Default 5. */
  readonly maxAttempts?: number;
  /** First backoff ceiling in ms; doubles per attempt (full jitter). Default 1000. */
  readonly retryBaseMs?: number;
  /** Largest backoff in ms. Default 60000. */
  readonly retryMaxMs?: number;
  /** A message still failing this long after its first attempt is recorded as failed. Default 15 min. */
  readonly retryDeadlineMs?: number;
  /** Pause the run after this many consecutive failed or deferred messages. 0 = never (default). */
  readonly maxErrors?: number;
  /** Graceful stop (Ctrl-C): take no more rows, let in-flight messages finish. */
  readonly signal?: AbortSignal;
  /** Hard stop: abort in-flight sends too. */
  readonly abortSignal?: AbortSignal;
  /** Time source; default the system clock. */
  readonly clock?: Clock;
  /** Random source in [0, 1) for backoff jitter; default `Math.random`. */
  readonly random?: () => number;
  /** Message rendering options (campaign id, Date clock, 8bit). */
  readonly compose?: ComposeOptions;
  /**
   * Resume: the earlier final status of a row, if it has one. Such rows are
   * counted in `stats.done` and not sent again. `address` is the row's address
   * as its outcome records it, so a ledger can check that the row is still the
   * same one (throwing here fails the run with that error).
   */
  readonly previous?: (line: number, address: string) => RowStatus | undefined;
  /** Addresses never to mail (dedupe keys, see `dedupeKey`): those rows end as `suppressed`. */
  readonly suppress?: (address: string) => boolean;
  /** Called once the header and columns are known and the template is checked, before any send. */
  readonly onStart?: (info: CampaignStart) => void | Promise<void>;
  /**
   * Called with every row's final outcome, in completion order. `transient` is
   * true for a failed row whose last answer was transient (out of attempts or
   * past the retry deadline), so a ledger can offer to send it again.
   */
  readonly onOutcome?: (outcome: RowOutcome, transient: boolean) => void;
  /** Called for every transient failure that will be retried (the report's transient history). */
  readonly onRetry?: (
    line: number,
    attempt: number,
    result: RetryResult,
    delayMs: number,
    address: string,
  ) => void;
  /**
   * Called with each message rendered (the first one serves `--preview`). Return false to take
   * no more rows; the message it was called with is still sent unless `dryRun` is set.
   * Read what you need before returning, or keep a `detachMessage` copy: once sent, a
   * message's memory may be reused (see `Transport.releasesMessages`).
   */
  readonly onRendered?: (message: Outgoing) => boolean | void;
}

/** What is known when the run is about to start sending. */
export interface CampaignStart {
  /** Column names from the header row ([] without one). */
  readonly columns: readonly string[];
  /** Whether the first row was a header. */
  readonly hasHeader: boolean;
  /** 0-based index of the address column. */
  readonly addressColumn: number;
  /**
   * Things about the input worth telling the user before the run (nothing is
   * wrong enough to stop it): e.g. two columns with the same header name.
   */
  readonly warnings: readonly string[];
  /**
   * The composer, for callers that fingerprint the rendered template; undefined
   * when the input held nothing at all (no header, no row: nothing is rendered).
   */
  readonly composer: MessageComposer | undefined;
}

/** Live counters of a run. `rows` = every other final count + `pending`. */
export interface CampaignStats {
  /** Data rows taken from the CSV so far. */
  rows: number;
  sent: number;
  failed: number;
  invalid: number;
  duplicates: number;
  suppressed: number;
  /** Rows that already had a final outcome from an earlier run (resume). */
  done: number;
  /** Messages rendered (dry run: rendered but not sent). */
  rendered: number;
  /** Messages handed to the transport and not yet answered. */
  inFlight: number;
  /** Messages waiting for a retry. */
  retrying: number;
  /** Send attempts made, first tries and retries. */
  attempts: number;
  /** Transient failures seen (each scheduled a retry or ended in failed). */
  transient: number;
  /** Bytes of rendered messages handed to the transport. */
  bytes: number;
}

/** How a run ended. */
export type CampaignStatus =
  | "finished" // every row read has a final outcome
  | "stopped" // graceful stop asked; unfinished rows resume next time
  | "paused" // error budget hit or the sender is out of quota; resume later
  | "failed"; // the transport or the input failed; see `error`

/** The result of a run: final counters and how it ended. */
export interface CampaignSummary extends CampaignStats {
  readonly status: CampaignStatus;
  /** Rows read that have no final outcome (in flight at a stop, deferred, waiting to retry). */
  readonly pending: number;
  /** Why the run did not finish, in one sentence. */
  readonly reason?: string;
  /** The error that ended a failed run. */
  readonly error?: Error;
  readonly elapsedMs: number;
  /** True when this was a dry run. */
  readonly dryRun: boolean;
}

/** The transport failed in a way that stops the whole run (bad credentials, TLS, closed). */
export class TransportError extends Error {
  /** Wrap the transport's own error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "TransportError";
  }
}

/** A running campaign: live `stats` and the `done` promise. */
export interface Campaign {
  readonly stats: Readonly<CampaignStats>;
  /** Milliseconds since the run started. */
  elapsed(): number;
  /** Data rows parsed from the input so far: those taken plus those read ahead, waiting. */
  parsed(): number;
  /** Resolves when the run ends; rejects only for errors before the first send (bad template, bad column). */
  readonly done: Promise<CampaignSummary>;
}

interface RetryEntry {
  readonly msg: Outgoing;
  readonly attempts: number;
  readonly firstAt: number;
}

/**
 * NO_LITERALS: objects and arrays that point at row data (batches, flights, CSV
 * records) are made with `new` or copied with `slice`, never with a literal. V8
 * may decide from a few samples that every object of a literal lives long and
 * allocate them all in the old generation from then on ("pretenuring"); there,
 * dead or not, they keep the young rows they point to alive until the next full
 * collection, and a 1M-row run then peaks ~50 MB higher. Class instances and
 * `slice` copies are never pretenured that way.
 */

/** Batches at least this big are kept packed while they wait (see `#dispatch`). */
const PACK_MIN = 16;

/**
 * A batch on its way (see NO_LITERALS for why a class). `msgs` is undefined once the
 * batch is kept packed, as messages (`packed`) or as recipients (`recips`).
 */
class Flight {
  /** The batch as sent; undefined once it is kept packed while it waits. */
  msgs: Outgoing[] | undefined;
  /** The batch, packed (see `MessageComposer.pack`) while it waits. */
  packed: PackedMessages | undefined = undefined;
  /** The batch's recipients, when the transport consumed the messages (see `#dispatch`). */
  recips: RecipientPack | undefined = undefined;
  /** How many messages. */
  readonly count: number;
  /** When the batch went out; also the first attempt of every fresh message in it. */
  readonly at: number;
  /** Per message: attempt number and first-attempt time; absent when all are first tries. */
  readonly retried: { attempts: number[]; firstAt: number[] } | undefined;

  constructor(
    msgs: Outgoing[],
    at: number,
    retried: { attempts: number[]; firstAt: number[] } | undefined,
  ) {
    this.msgs = msgs;
    this.count = msgs.length;
    this.at = at;
    this.retried = retried;
  }
}

/** Run a campaign to its end. Shorthand for `startCampaign(options).done`. */
export function runCampaign(options: CampaignOptions): Promise<CampaignSummary> {
  return startCampaign(options).done;
}

/**
 * Why a run that finished sent nothing that counts, or undefined: `no_rows` (the
 * input had no data rows: empty, or only a header) or `no_valid_addresses` (rows,
 * but not one valid address: most often the wrong column or delimiter). Not when
 * `limit` was 0. The CLI exits 3 for these; the HTTP summary carries them as `code`.
 */
export function emptyRun(
  s: CampaignSummary,
  limit?: number,
): "no_rows" | "no_valid_addresses" | undefined {
  if (s.status !== "finished" || limit === 0) return undefined;
  if (s.rows === 0) return "no_rows";
  const valid = s.rendered + s.done + s.duplicates + s.suppressed;
  return valid === 0 ? "no_valid_addresses" : undefined;
}

/** Start a campaign; watch `stats` while it runs, await `done` for the summary. */
export function startCampaign(options: CampaignOptions): Campaign {
  const engine = new Engine(options);
  return {
    stats: engine.stats,
    elapsed: () => engine.elapsed(),
    parsed: () => engine.parsed(),
    done: engine.run(),
  };
}

const WAKE = Symbol("wake");
/** Rate windows shorter than this are paced; longer ones are rolling caps (see rate.ts). */
const HOUR_MS = 3_600_000;
/**
 * The far end throttles the run when the share of answers that say "try later" (a
 * moving average, weight 0.1 per answer, successes counting 0) reaches this: about a
 * dozen such answers with few successes between. Scattered per-recipient 4xx never do.
 */
const THROTTLE_SHARE = 0.7;

class Engine {
  readonly stats: CampaignStats = {
    rows: 0,
    sent: 0,
    failed: 0,
    invalid: 0,
    duplicates: 0,
    suppressed: 0,
    done: 0,
    rendered: 0,
    inFlight: 0,
    retrying: 0,
    attempts: 0,
    transient: 0,
    bytes: 0,
  };
  readonly #o: CampaignOptions;
  readonly #transport: Transport;
  /** Whether the transport lets go of a message once it is sent or failed (reuse its memory). */
  readonly #releases: boolean;
  /** Whether the transport is done with a message when `send` returns (see `Transport.consumesOnSend`). */
  readonly #consumes: boolean;
  /** 0-based address column, known once reading started. */
  #addressColumn = 0;
  readonly #batchScratch: Outgoing[] = [];
  readonly #recipScratch: Recipient[] = [];
  /** The recipient of the message `#admit` last returned. */
  #admitted: Recipient | undefined;
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #window: number;
  readonly #maxBatch: number;
  readonly #maxAttempts: number;
  readonly #retryBase: number;
  readonly #retryMax: number;
  readonly #retryDeadline: number;
  readonly #maxErrors: number;
  readonly #limit: number;
  readonly #limiter: RateLimiter | undefined;
  /** At most this many messages per dispatch under a paced rate: 50 ms worth, so `100/s` goes 5 at a time. */
  readonly #paceCap: number = Infinity;
  readonly #retries = new MinHeap<RetryEntry>();
  readonly #hard = new AbortController();
  readonly #startedAt: number;
  #composer!: MessageComposer;
  #iterator: AsyncIterator<RowItem[]> | undefined;
  /** The reader ended or failed by itself: nothing to stop. */
  #readerDone = false;
  #buffer: RowItem[] = [];
  #bufferAt = 0;
  #exhausted = false;
  #pendingNext: Promise<void> | undefined;
  #inputError: Error | undefined;
  #fatal: Error | undefined;
  #pauseReason: string | undefined;
  #consecutiveErrors = 0;
  #errorBudgetSpent = false;
  /** Moving share of answers that were transient (successes count 0); see THROTTLE_SHARE. */
  #transientShare = 0;
  #gateLevel = 0;
  /** No dispatch before this time: the far end is throttling the run. */
  #gateUntil = 0;
  #waker: (() => void) | undefined;
  #previewStop = false;
  /** A rendered message waiting for the rate limit (see #hold). */
  #held: Outgoing | undefined;
  /** The recipient of `#held`. */
  #heldRecipient: Recipient | undefined;
  /** Wall-clock time for the Date header of the batch being rendered. */
  #wallNow = Date.now();

  constructor(options: CampaignOptions) {
    this.#o = options;
    this.#transport = options.transport;
    this.#consumes = options.transport.consumesOnSend === true;
    this.#releases = options.transport.releasesMessages === true || this.#consumes;
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
    this.#window = positiveInt(
      "concurrency",
      options.concurrency ?? options.transport.defaultConcurrency ?? 100,
    );
    this.#maxBatch = Math.max(1, Math.min(options.transport.maxBatch, this.#window));
    this.#maxAttempts = positiveInt("maxAttempts", options.maxAttempts ?? 5);
    this.#retryBase = options.retryBaseMs ?? 1000;
    this.#retryMax = options.retryMaxMs ?? 60_000;
    this.#retryDeadline = options.retryDeadlineMs ?? 15 * 60_000;
    this.#maxErrors = options.maxErrors ?? 0;
    this.#limit = options.limit ?? Infinity;
    if (!(this.#limit >= 0)) {
      throw new RangeError(`Invalid limit ${options.limit}: use a number >= 0`);
    }
    const windows = [
      ...(options.rate ?? []),
      ...(options.transport.limits ?? []).map((l) => ({
        count: l.count,
        perMs: l.perMs,
        spec: `${l.count}/${l.perMs}ms (${options.transport.name})`,
      })),
    ];
    if (windows.length > 0 && !options.dryRun) {
      this.#limiter = new RateLimiter(windows, { now: () => this.#clock.now() });
      for (const w of windows) {
        if (w.perMs < HOUR_MS) {
          this.#paceCap = Math.min(
            this.#paceCap,
            Math.max(1, Math.floor((w.count * 50) / w.perMs)),
          );
        }
      }
      if (options.rateHistory) this.#limiter.seed(options.rateHistory);
    }
    this.#startedAt = this.#clock.now();
    options.abortSignal?.addEventListener("abort", () => {
      this.#hard.abort(options.abortSignal!.reason);
      this.#wake();
    }, { once: true });
    options.signal?.addEventListener("abort", () => this.#wake(), { once: true });
  }

  parsed(): number {
    return this.stats.rows + (this.#buffer.length - this.#bufferAt);
  }

  elapsed(): number {
    return this.#clock.now() - this.#startedAt;
  }

  async run(): Promise<CampaignSummary> {
    try {
      await this.#begin();
      try {
        await this.#loop();
      } catch (error) {
        this.#fatal ??= error instanceof Error ? error : new Error(String(error));
        this.#hard.abort(this.#fatal);
      }
    } finally {
      this.#stopReading();
    }
    return this.#summary();
  }

  /**
   * Stop the reader when the run ends before the input does (limit, stop, error):
   * a worker reading ahead would keep the process alive. Not awaited: an
   * in-thread reader may be waiting on a read (stdin) that never completes.
   */
  #stopReading(): void {
    if (this.#iterator === undefined || this.#readerDone) return;
    this.#readerDone = true;
    this.#iterator.return?.().catch(() => {});
  }

  /**
   * Read the first batch so the columns are known, then check the template. Throws before
   * any send.
   */
  async #begin(): Promise<void> {
    const reader = createRecipientReader(this.#o.input, this.#o.recipients);
    this.#iterator = reader[Symbol.asyncIterator]();
    const first = await this.#iterator.next();
    if (first.done) this.#exhausted = this.#readerDone = true;
    else this.#buffer = first.value;
    // Without a header row, columns are known by position only: "1", "2", ...
    let columns = reader.columns;
    if (columns.length === 0) {
      let width = 1;
      for (const item of this.#buffer) {
        if (item.kind === "recipient") width = Math.max(width, item.recipient.values.length);
      }
      columns = Array.from({ length: width }, (_, i) => String(i + 1));
    }
    // The Date header's clock: read once per batch, not once per row (a clock read costs
    // ~50 ns here, 5% of a row's rendering), unless the caller brings its own.
    const compose = this.#o.compose?.now !== undefined
      ? this.#o.compose
      : { ...this.#o.compose, now: () => this.#wallNow };
    // An input with nothing in it (no header, no row) has no columns to check merge fields
    // against, and nothing will be rendered: the run finishes with 0 rows (see emptyRun),
    // which says what is wrong, instead of blaming the template for a column named "1".
    const empty = first.done === true && reader.columns.length === 0;
    if (!empty) this.#composer = new MessageComposer(this.#o.template, columns, compose);
    this.#addressColumn = reader.addressColumn;
    const twice = duplicateColumnWarning(reader.columns);
    await this.#o.onStart?.({
      columns: reader.columns,
      hasHeader: reader.hasHeader,
      addressColumn: reader.addressColumn,
      warnings: twice === undefined ? [] : [twice],
      composer: empty ? undefined : this.#composer,
    });
  }

  #stopping(): boolean {
    return this.#fatal !== undefined || this.#pauseReason !== undefined ||
      this.#previewStop || this.#o.signal?.aborted === true || this.#hard.signal.aborted;
  }

  #wake(): void {
    const w = this.#waker;
    if (w !== undefined) {
      this.#waker = undefined;
      w();
    }
  }

  /** Wait for a completion, new input or a signal; or until `ms` passes. */
  async #idle(ms: number): Promise<void> {
    const wake = new Promise<typeof WAKE>((resolve) => this.#waker = () => resolve(WAKE));
    if (!Number.isFinite(ms)) {
      await wake;
      return;
    }
    const cancel = new AbortController();
    try {
      await Promise.race([wake, this.#clock.sleep(ms, cancel.signal)]);
    } finally {
      cancel.abort();
      this.#waker = undefined;
    }
  }

  async #loop(): Promise<void> {
    while (true) {
      if (this.#inputError !== undefined) {
        this.#fatal ??= this.#inputError;
      }
      let waitMs = Infinity;
      if (!this.#stopping()) {
        waitMs = this.#fill();
      } else if (this.#hard.signal.aborted) {
        return;
      }
      const stats = this.stats;
      const drained = this.#exhausted && this.#buffer.length === this.#bufferAt &&
        this.#held === undefined;
      if (this.#stopping() || drained) {
        // Nothing new will be taken; finish when the in-flight and retry work is over.
        if (stats.inFlight === 0 && (this.#stopping() || this.#retries.size === 0)) return;
        if (this.#stopping()) waitMs = Infinity;
      }
      await this.#idle(waitMs);
    }
  }

  /**
   * Dispatch as much as the window and the rate allow. Returns how long to
   * wait at most before trying again (Infinity: until something happens).
   */
  #fill(): number {
    const stats = this.stats;
    while (true) {
      if (this.#stopping()) return Infinity;
      const room = this.#window - stats.inFlight;
      if (room <= 0) return Infinity;
      const gate = this.#gateUntil - this.#clock.now();
      if (gate > 0) return gate;
      let take = Math.min(room, this.#maxBatch, this.#paceCap);
      if (this.#limiter !== undefined) {
        while (take > 1 && this.#limiter.wait(take) > 0) take >>= 1;
        const wait = this.#limiter.wait(take);
        if (wait > 0) {
          // Nothing may be sent yet, but rows that need no send (done before, invalid,
          // duplicate) are still taken, so a run whose remaining rows need none ends now.
          this.#hold();
          return wait;
        }
      }
      const now = this.#clock.now();
      this.#wallNow = Date.now();
      // Built in scratch arrays and copied out with `slice` (see NO_LITERALS).
      const batch = this.#batchScratch;
      batch.length = 0;
      // The recipients of a batch of fresh messages, kept instead of the messages
      // while they wait when the transport consumes them (see #dispatch).
      let recips: Recipient[] | undefined = this.#consumes ? this.#recipScratch : undefined;
      this.#recipScratch.length = 0;
      let retried: { attempts: number[]; firstAt: number[] } | undefined;
      // Retries that are due go first.
      while (batch.length < take && (this.#retries.peekKey() ?? Infinity) <= now) {
        const entry = this.#retries.pop()!;
        stats.retrying--;
        batch.push(entry.msg);
        recips = undefined;
        retried ??= { attempts: [], firstAt: [] };
        retried.attempts.push(entry.attempts + 1);
        retried.firstAt.push(entry.firstAt);
      }
      // New rows only while the window has room beside the messages waiting to retry:
      // those are rendered and held too, and a throttling server must not make us render every row.
      const fresh = this.#window - stats.inFlight - this.#retries.size;
      if (this.#held !== undefined && batch.length < take) {
        batch.push(this.#held);
        recips?.push(this.#heldRecipient!);
        this.#held = undefined;
        this.#heldRecipient = undefined;
        if (retried !== undefined) {
          retried.attempts.push(1);
          retried.firstAt.push(now);
        }
      }
      while (batch.length < take && batch.length < fresh) {
        const item = this.#nextItem();
        if (item === undefined) break;
        const msg = this.#admit(item);
        if (msg !== undefined) {
          batch.push(msg);
          recips?.push(this.#admitted!);
          this.#admitted = undefined;
          if (retried !== undefined) {
            retried.attempts.push(1);
            retried.firstAt.push(now);
          }
        }
        if (this.#previewStop) break;
      }
      if (batch.length === 0) {
        const due = this.#retries.peekKey();
        return due === undefined ? Infinity : Math.max(0, due - now);
      }
      this.#limiter?.tryTake(batch.length);
      const msgs = batch.slice();
      batch.length = 0;
      this.#dispatch(new Flight(msgs, now, retried), recips);
      this.#recipScratch.length = 0;
    }
  }

  /** While the rate limit says wait: take rows until one needs sending, and keep its message. */
  #hold(): void {
    this.#wallNow = Date.now();
    while (this.#held === undefined && !this.#previewStop) {
      const item = this.#nextItem();
      if (item === undefined) return;
      this.#held = this.#admit(item);
      this.#heldRecipient = this.#held === undefined ? undefined : this.#admitted;
    }
  }

  /** The next row item, or undefined when none is buffered (a read is then under way). */
  #nextItem(): RowItem | undefined {
    if (this.#bufferAt < this.#buffer.length) {
      if (this.stats.rows >= this.#limit) {
        this.#exhausted = true;
        this.#buffer = [];
        this.#bufferAt = 0;
        return undefined;
      }
      return this.#buffer[this.#bufferAt++];
    }
    if (this.#exhausted || this.#pendingNext !== undefined) return undefined;
    this.#buffer = [];
    this.#bufferAt = 0;
    this.#pendingNext = this.#iterator!.next().then(
      (r) => {
        this.#pendingNext = undefined;
        if (r.done) this.#exhausted = this.#readerDone = true;
        else this.#buffer = r.value;
        this.#wake();
      },
      (error) => {
        this.#pendingNext = undefined;
        this.#exhausted = this.#readerDone = true;
        this.#inputError = error instanceof Error ? error : new Error(String(error));
        this.#wake();
      },
    );
    return undefined;
  }

  /** Account for one row; return its rendered message when it is to be sent. */
  #admit(item: RowItem): Outgoing | undefined {
    const stats = this.stats;
    stats.rows++;
    const line = item.kind === "recipient" ? item.recipient.line : item.line;
    const before = this.#o.previous?.(
      line,
      item.kind === "recipient" ? item.recipient.address : item.address,
    );
    if (before !== undefined) {
      stats.done++;
      return undefined;
    }
    if (item.kind === "invalid") {
      stats.invalid++;
      this.#outcome(line, item.address, "invalid", item.code, item.reason, 0);
      return undefined;
    }
    if (item.kind === "duplicate") {
      stats.duplicates++;
      this.#outcome(
        line,
        item.address,
        "duplicate",
        "duplicate",
        `Duplicate of line ${item.firstLine}`,
        0,
      );
      return undefined;
    }
    const r = item.recipient;
    if (this.#o.suppress?.(r.address)) {
      stats.suppressed++;
      this.#outcome(line, r.address, "suppressed", "suppressed", "On the suppression list", 0);
      return undefined;
    }
    let msg: Outgoing;
    try {
      msg = this.#composer.render(r);
    } catch (error) {
      stats.invalid++;
      this.#outcome(line, r.address, "invalid", "render", errorMessage(error), 0);
      return undefined;
    }
    stats.rendered++;
    if (this.#o.onRendered?.(msg) === false) this.#previewStop = true;
    if (this.#o.dryRun) return undefined;
    this.#admitted = r;
    return msg;
  }

  #dispatch(flight: Flight, recips: Recipient[] | undefined): void {
    const stats = this.stats;
    const msgs = flight.msgs!;
    const n = msgs.length;
    stats.inFlight += n;
    stats.attempts += n;
    for (const m of msgs) stats.bytes += m.size;
    let promise: Promise<SendResult[]>;
    try {
      promise = this.#transport.send(msgs, { signal: this.#hard.signal });
    } catch (error) {
      promise = Promise.reject(error);
    }
    if (recips !== undefined && recips.length === n) {
      // The transport is done with the messages: keep their recipients (a few bytes
      // each), let the bytes be reused now, and render again the rare one to retry.
      let pack: RecipientPack | undefined;
      try {
        pack = RecipientPack.pack(recips, this.#addressColumn);
      } catch {
        pack = undefined; // a line too large to pack: keep the messages
      }
      if (pack !== undefined) {
        for (let i = 0; i < n; i++) this.#composer.release(msgs[i]);
        flight.recips = pack;
        flight.msgs = undefined;
      }
    } else if (this.#releases && n >= PACK_MIN) {
      // A transport that batches may have a great many messages waiting at once:
      // keep them as a few arrays, not one object each (see PackedMessages).
      const packed = this.#composer.pack(msgs);
      if (packed !== undefined) {
        flight.packed = packed;
        flight.msgs = undefined;
      }
    }
    promise.then(
      (results) => this.#complete(flight, results),
      (error) => this.#crash(flight, error),
    );
  }

  #crash(flight: Flight, error: unknown): void {
    this.stats.inFlight -= flight.count;
    if (!this.#hard.signal.aborted) {
      this.#fatal ??= new TransportError(
        `The ${this.#transport.name} transport failed: ${errorMessage(error)}`,
        { cause: error },
      );
      this.#hard.abort(this.#fatal);
    }
    this.#wake();
  }

  #complete(flight: Flight, results: SendResult[]): void {
    const stats = this.stats;
    const { msgs, packed, recips, count } = flight;
    if (results.length !== count) {
      this.#crash(
        flight,
        new Error(`it answered ${results.length} results for a batch of ${count}`),
      );
      return;
    }
    stats.inFlight -= count;
    const now = this.#clock.now();
    let throttledNow = false;
    for (let i = 0; i < count; i++) {
      const r = results[i];
      const attempts = flight.retried?.attempts[i] ?? 1;
      // The common case of a big run reads straight from the pack: no message object rebuilt.
      const line = recips !== undefined
        ? recips.line(i)
        : msgs !== undefined
        ? msgs[i].line
        : packed!.line(i);
      const to = recips !== undefined
        ? recips.address(i)
        : msgs !== undefined
        ? msgs[i].to
        : packed!.to(i);
      if (r.status === "sent") {
        stats.sent++;
        this.#consecutiveErrors = 0;
        this.#transientShare *= 0.9;
        if (this.#transientShare < THROTTLE_SHARE) this.#gateLevel = 0;
        this.#outcome(line, to, "sent", "", r.response ?? "", attempts, r.id);
        this.#letGo(flight, i);
        continue;
      }
      const firstAt = flight.retried?.firstAt[i] ?? flight.at;
      if (this.#errorBudgetSpent) {
        // The error budget already paused the run: what still comes back failing is most
        // likely the same systemic fault, so it stays pending for the resume, not failed.
        this.#schedule(flight, i, attempts - 1, firstAt, now);
        continue;
      }
      this.#consecutiveErrors++;
      if (r.status === "failed") {
        stats.failed++;
        this.#outcome(line, to, "failed", r.code, r.reason, attempts);
        this.#letGo(flight, i);
        this.#checkErrorBudget();
        continue;
      }
      stats.transient++;
      if (r.pauseSender) {
        // Out of quota: not this message's fault. Leave it for a later resume, never fail it.
        this.#pauseReason ??= `The ${this.#transport.name} sender is out of quota (${r.reason}); ` +
          `the remaining rows are left for later: run the same command again to resume`;
        this.#schedule(flight, i, attempts - 1, firstAt, now + (r.retryAfterMs ?? 0));
        continue;
      }
      // Mostly "try later" answers mean the far end is throttling the whole run
      // (SMTP 421/450 4.7.x, HTTP 429): then everything backs off together, and attempts
      // made while throttled do not count against --max-attempts (the deadline still does).
      this.#transientShare = this.#transientShare * 0.9 + 0.1;
      const throttled = this.#transientShare >= THROTTLE_SHARE;
      if (throttled) throttledNow = true;
      const delay = Math.max(this.#backoff(attempts, r.retryAfterMs), this.#gateUntil - now);
      const outOfAttempts = !throttled && attempts >= this.#maxAttempts;
      if (outOfAttempts || now + delay - firstAt > this.#retryDeadline) {
        stats.failed++;
        const why = outOfAttempts
          ? `after ${attempts} attempts`
          : `retries ran past ${this.#retryDeadline} ms`;
        const reason = `${r.reason} (${why})`;
        this.#outcome(line, to, "failed", r.code, reason, attempts, undefined, true);
        this.#checkErrorBudget();
        continue;
      }
      this.#o.onRetry?.(line, attempts, r, delay, to);
      this.#schedule(flight, i, attempts, firstAt, now + delay);
      this.#checkErrorBudget();
    }
    if (throttledNow && now >= this.#gateUntil) {
      // One step of the run-wide backoff per round (answers that arrive while a gate is
      // closed belong to the round that closed it), doubling up to retryMaxMs.
      const step = Math.min(this.#retryMax, this.#retryBase * 2 ** this.#gateLevel);
      this.#gateLevel++;
      this.#gateUntil = now + step;
    }
    this.#wake();
  }

  /** Queue message `i` of `flight` to be sent again at `due`; `attempts` made so far. */
  #schedule(flight: Flight, i: number, attempts: number, firstAt: number, due: number): void {
    let msg: Outgoing;
    if (flight.recips !== undefined) {
      // The transport consumed the bytes: render the message again (same Message-ID).
      this.#wallNow = Date.now();
      try {
        msg = this.#composer.render(flight.recips.recipient(i));
      } catch (error) {
        // It rendered before, so this cannot happen; if it does, the row is not lost silently.
        this.stats.failed++;
        this.#outcome(
          flight.recips.line(i),
          flight.recips.address(i),
          "failed",
          "render",
          errorMessage(error),
          attempts,
        );
        return;
      }
      const copy = detachMessage(msg);
      this.#composer.release(msg);
      msg = copy;
    } else {
      msg = detachMessage(flight.msgs !== undefined ? flight.msgs[i] : flight.packed!.message(i));
    }
    this.stats.retrying++;
    this.#retries.push(due, { msg, attempts, firstAt });
  }

  /** Message `i` of `flight` is sent or failed for good: let its memory be reused. */
  #letGo(flight: Flight, i: number): void {
    if (!this.#releases || flight.recips !== undefined) return;
    if (flight.msgs !== undefined) this.#composer.release(flight.msgs[i]);
    else this.#composer.releasePacked(flight.packed!, i);
  }

  #checkErrorBudget(): void {
    if (this.#maxErrors > 0 && this.#consecutiveErrors >= this.#maxErrors) {
      this.#errorBudgetSpent = true;
      this.#pauseReason ??= `${this.#consecutiveErrors} messages in a row failed ` +
        `(--max-errors ${this.#maxErrors}); check the transport, then run the same command again ` +
        `to resume (add --retry-failed all to resend the rows that failed before the pause)`;
    }
  }

  /** Exponential backoff with full jitter, never less than the far end's Retry-After. */
  #backoff(attempt: number, retryAfterMs: number | undefined): number {
    const ceiling = Math.min(this.#retryMax, this.#retryBase * 2 ** (attempt - 1));
    const jitter = Math.floor(this.#random() * ceiling);
    return Math.max(jitter, retryAfterMs ?? 0);
  }

  #outcome(
    line: number,
    address: string,
    status: RowStatus,
    code: string,
    reason: string,
    attempts: number,
    id?: string,
    transient = false,
  ): void {
    const sink = this.#o.onOutcome;
    if (sink === undefined) return;
    sink(
      id === undefined
        ? { line, address, status, code, reason, attempts }
        : { line, address, status, code, reason, attempts, id },
      transient,
    );
  }

  #summary(): CampaignSummary {
    const s = this.stats;
    const final = s.sent + s.failed + s.invalid + s.duplicates + s.suppressed + s.done;
    const pending = s.rows - final - (this.#o.dryRun ? s.rendered : 0);
    let status: CampaignStatus = "finished";
    let reason: string | undefined;
    if (this.#fatal !== undefined) {
      status = "failed";
      reason = this.#fatal.message;
    } else if (this.#pauseReason !== undefined) {
      status = "paused";
      reason = this.#pauseReason;
    } else if (this.#o.signal?.aborted || this.#hard.signal.aborted) {
      status = "stopped";
      reason = "Stopped on request; run the same command again to resume";
    } else if (pending > 0 && !this.#previewStop) {
      status = "stopped";
      reason = `${pending} rows have no final outcome`;
    }
    return {
      ...s,
      retrying: this.#retries.size,
      status,
      pending,
      reason,
      error: this.#fatal,
      elapsedMs: this.elapsed(),
      dryRun: this.#o.dryRun === true,
    };
  }
}

function positiveInt(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`Invalid ${name} ${value}: use a whole number >= 1`);
  }
  return value;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
