/**
 * {@link ParallelRecipientReader}: the {@link RecipientReader} run in a Web
 * Worker, so decoding, CSV parsing, validation and duplicate removal use a
 * second core while the main thread renders and sends.
 *
 * The main thread reads the input (a file, stdin, a request body) and hands
 * a copy of each chunk to the worker (the copy's buffer is transferred; the
 * caller's chunk is left as it was, so a `tee()`d input keeps its data). The worker runs the unchanged `RecipientReader` on the same
 * chunks and posts each batch back in the compact form of `row_codec.ts`;
 * the main thread rebuilds it when the consumer asks for it. The batches are
 * exactly those the in-thread reader yields: same items, same order, equal
 * recipients.
 *
 * Memory stays bounded, whatever the input's size: the main thread reads one
 * chunk ahead of the worker's requests, the worker holds at most 4 input
 * chunks and runs at most 4 batches ahead of the consumer.
 *
 * Ending: the worker is terminated when the rows end, when reading fails, and
 * when the consumer stops early (`return()`, as `break` in `for await` does;
 * the input is then cancelled too). A consumer that calls `next()` by hand
 * must call `return()` when it stops before the end: a live worker keeps
 * the process from exiting.
 *
 * When a worker cannot run (no `Worker`, no read permission for the worker's
 * module, or the module fails to load) the reader silently runs in-thread.
 *
 * `deno compile` must embed the worker's module:
 * `--include core/recipients_worker.ts`.
 *
 * @module
 */

import { type RecipientOptions, RecipientReader, type RowItem } from "./recipients.ts";
import { decodeRows, type FromWorker, type Meta, type ToWorker } from "./row_codec.ts";

/** The worker's module. */
const WORKER_URL = new URL("./recipients_worker.ts", import.meta.url);

/** Inputs of at least this many bytes (by `sizeHint`) use a worker under `parallel: "auto"`. */
export const PARALLEL_MIN_BYTES: number = 4 * 1024 * 1024;

/** What both readers offer: batches of row items and what the header row decided. */
export interface RowSource extends AsyncIterable<RowItem[]> {
  /** Column names from the header row ([] when there is none). */
  readonly columns: readonly string[];
  /** Whether the first row was treated as a header. */
  readonly hasHeader: boolean;
  /** Index (0-based) of the address column. */
  readonly addressColumn: number;
}

/** Options for {@link createRecipientReader}. */
export interface ReaderChoiceOptions extends RecipientOptions {
  /**
   * Read in a worker: `true`, `false` (the default), or `"auto"`: a worker
   * when `sizeHint` is at least {@link PARALLEL_MIN_BYTES} (starting a worker
   * costs tens of milliseconds, more than a small input takes in-thread).
   *
   * Off by default because, measured on the 2-vCPU machines we benchmark on,
   * a whole 1M-row run was not faster with it (the main thread's rendering
   * slowed by about as much as the reading moved off it) and peaked ~80 MB
   * higher (a second heap). Reading alone does move off the main thread
   * (0.68 s to 0.24 s of its CPU per million rows): worth trying where cores
   * are plentiful and the main thread is the bottleneck (bench/reader.ts).
   */
  parallel?: boolean | "auto";
}

/**
 * A {@link RecipientReader} or a {@link ParallelRecipientReader}, as
 * `opts.parallel` says. Both yield the same batches.
 */
export function createRecipientReader(
  input: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>,
  opts?: ReaderChoiceOptions,
): RecipientReader | ParallelRecipientReader {
  const { parallel = false, ...rest } = opts ?? {};
  if (parallel !== true && parallel !== false && parallel !== "auto") {
    throw new TypeError(
      `Invalid parallel option ${JSON.stringify(parallel)}: use true, false or "auto"`,
    );
  }
  const use = parallel === true ||
    (parallel === "auto" && typeof rest.sizeHint === "number" &&
      rest.sizeHint >= PARALLEL_MIN_BYTES);
  return use ? new ParallelRecipientReader(input, rest) : new RecipientReader(input, rest);
}

/**
 * Reads recipients from CSV bytes in a Web Worker. Same surface and same
 * batches as {@link RecipientReader}; see the module doc for how it ends.
 *
 * @example
 * ```ts
 * import { ParallelRecipientReader } from "./parallel_reader.ts";
 * const csv = "email,name\nAnn@example.com,Ann\nann@EXAMPLE.com,Ann again\nnope,X\n";
 * const reader = new ParallelRecipientReader(ReadableStream.from([new TextEncoder().encode(csv)]));
 * for await (const batch of reader) {
 *   for (const item of batch) console.log(item.kind); // recipient, duplicate, invalid
 * }
 * console.log(reader.columns); // ["email", "name"]
 * ```
 */
export class ParallelRecipientReader implements RowSource {
  readonly #input: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>;
  readonly #opts: RecipientOptions;
  #meta: Meta | undefined;
  #fallback: RecipientReader | undefined;
  #started = false;

  /**
   * Check the options as {@link RecipientReader} does (`TypeError`/`RangeError`
   * for bad ones); nothing is read and no worker starts until iteration starts.
   */
  constructor(
    input: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>,
    opts?: RecipientOptions,
  ) {
    new RecipientReader(input, opts); // validates the options
    this.#input = input;
    // Only what the reader reads: the rest may not survive a structured clone.
    this.#opts = {
      delimiter: opts?.delimiter,
      column: opts?.column,
      header: opts?.header,
      sizeHint: opts?.sizeHint,
    };
  }

  /** Column names from the header row ([] when there is none). Set before the first batch is yielded. */
  get columns(): readonly string[] {
    return this.#fallback?.columns ?? this.#meta?.columns ?? [];
  }

  /** Whether the first row was treated as a header (known once the first batch is yielded). */
  get hasHeader(): boolean {
    return this.#fallback?.hasHeader ?? this.#meta?.hasHeader ?? false;
  }

  /** Index (0-based) of the address column. */
  get addressColumn(): number {
    return this.#fallback?.addressColumn ?? this.#meta?.addressColumn ?? 0;
  }

  /** Iterate the batches; a reader can be iterated only once. */
  [Symbol.asyncIterator](): AsyncIterator<RowItem[]> {
    if (this.#started) {
      throw new TypeError(
        "ParallelRecipientReader can be iterated only once; create a new reader",
      );
    }
    this.#started = true;
    return new WorkerRows(
      this.#input,
      this.#opts,
      (meta) => {
        if (meta.hasHeader) Object.freeze(meta.columns);
        this.#meta = meta;
      },
      () => (this.#fallback = new RecipientReader(this.#input, this.#opts)),
    );
  }
}

const ERRORS: Record<string, new (message: string) => Error> = {
  Error,
  TypeError,
  RangeError,
  SyntaxError,
  ReferenceError,
  EvalError,
  URIError,
};

/** The worker's error as the same class (by name) with the same message. */
function rebuild(name: string, message: string): Error {
  const Class = Object.hasOwn(ERRORS, name) ? ERRORS[name] : undefined;
  if (Class !== undefined) return new Class(message);
  const error = new Error(message);
  error.name = name;
  return error;
}

/** Whether this process may load the worker's module (asking would prompt or fail). */
function mayLoadWorker(): boolean {
  if (typeof Worker !== "function") return false;
  if (WORKER_URL.protocol !== "file:") return true;
  try {
    return Deno.permissions.querySync({ name: "read", path: WORKER_URL }).state === "granted";
  } catch {
    return false;
  }
}

type Source =
  | { stream: ReadableStreamDefaultReader<Uint8Array> }
  | { iterator: AsyncIterator<Uint8Array> };

type Ending = Extract<FromWorker, { t: "done" } | { t: "error" }>;
type Entry = Extract<FromWorker, { t: "rows" }> | Ending;

interface Waiter {
  resolve(result: IteratorResult<RowItem[]> | Promise<IteratorResult<RowItem[]>>): void;
  reject(error: unknown): void;
}

const END_OF_INPUT = Symbol("end of input");
/** A chunk read ahead, the end of the input, or the input's error. */
type Ahead = Uint8Array | typeof END_OF_INPUT | { error: unknown };

const DONE: IteratorResult<RowItem[]> = Object.freeze({ done: true, value: undefined });

/** One iteration of a {@link ParallelRecipientReader}: the worker, the input pump, the queue. */
class WorkerRows implements AsyncIterator<RowItem[]> {
  readonly #input: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>;
  readonly #onMeta: (meta: Meta) => void;
  readonly #makeFallback: () => RecipientReader;
  #worker: Worker | undefined;
  /** The worker has sent its first message (so its module loaded). */
  #ready = false;
  /** In-thread iteration after the worker could not start. */
  #fallback: AsyncIterator<RowItem[]> | undefined;
  #column = 0;
  /** Batches and the ending the consumer has not taken yet. */
  readonly #queue: Entry[] = [];
  #head = 0;
  #waiter: Waiter | undefined;
  #waiting: Promise<IteratorResult<RowItem[]>> | undefined;
  /** The consumer has seen the end (or an error, or returned). */
  #finished = false;
  /** The worker is gone and the input released (or being released). */
  #stopped = false;
  #stopping: Promise<void> = Promise.resolve();
  #source: Source | undefined;
  /** The input ended or threw: nothing more to read, nothing to cancel. */
  #inputOver = false;
  #inputError: unknown;
  /** What was read and not yet sent to the worker. */
  #ahead: Ahead | undefined;
  /** The end or the failure of the input was sent: nothing more to send. */
  #sentLast = false;
  /** Chunks the worker asked for and not yet sent. */
  #wanted = 0;
  #pumping = false;

  constructor(
    input: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>,
    opts: RecipientOptions,
    onMeta: (meta: Meta) => void,
    makeFallback: () => RecipientReader,
  ) {
    this.#input = input;
    this.#onMeta = onMeta;
    this.#makeFallback = makeFallback;
    let worker: Worker | undefined;
    if (mayLoadWorker()) {
      try {
        worker = new Worker(WORKER_URL, { type: "module" });
      } catch {
        worker = undefined;
      }
    }
    if (worker === undefined) {
      this.#fallBack();
      return;
    }
    this.#worker = worker;
    worker.onmessage = (event: MessageEvent<FromWorker>) => this.#onMessage(event.data);
    worker.onerror = (event: ErrorEvent) => {
      event.preventDefault();
      this.#onWorkerError(event.message);
    };
    worker.onmessageerror = () => this.#onWorkerError("a message could not be read");
    this.#post({ t: "start", opts });
  }

  [Symbol.asyncIterator](): AsyncIterator<RowItem[]> {
    return this;
  }

  next(): Promise<IteratorResult<RowItem[]>> {
    if (this.#fallback !== undefined) return this.#fallback.next();
    if (this.#waiting !== undefined) {
      // A next() before the previous one settled: answer them in order.
      return this.#waiting.then(() => this.next(), () => this.next());
    }
    if (this.#finished) return Promise.resolve(DONE);
    if (this.#head < this.#queue.length) return this.#take(this.#shift());
    const waiting = new Promise<IteratorResult<RowItem[]>>((resolve, reject) => {
      this.#waiter = { resolve, reject };
    });
    this.#waiting = waiting;
    return waiting;
  }

  async return(): Promise<IteratorResult<RowItem[]>> {
    if (this.#fallback !== undefined) return (await this.#fallback.return?.()) ?? DONE;
    this.#finished = true;
    this.#queue.length = 0;
    this.#head = 0;
    this.#settle(DONE);
    await this.#stop(true);
    return DONE;
  }

  /** Run in-thread from here on (nothing has been read from the input yet). */
  #fallBack(): void {
    this.#worker?.terminate();
    this.#worker = undefined;
    this.#stopped = true;
    this.#fallback = this.#makeFallback()[Symbol.asyncIterator]();
    if (this.#waiter !== undefined) this.#settle(this.#fallback.next());
  }

  #post(message: ToWorker, transfer: Transferable[] = []): void {
    this.#worker?.postMessage(message, transfer);
  }

  #shift(): Entry {
    const entry = this.#queue[this.#head];
    this.#queue[this.#head++] = undefined as unknown as Entry;
    if (this.#head === this.#queue.length) {
      this.#queue.length = 0;
      this.#head = 0;
    }
    return entry;
  }

  /** Resolve the pending next(), if any. */
  #settle(result: IteratorResult<RowItem[]> | Promise<IteratorResult<RowItem[]>>): void {
    const waiter = this.#waiter;
    if (waiter === undefined) return;
    this.#waiter = undefined;
    this.#waiting = undefined;
    waiter.resolve(result);
  }

  /** What next() answers for a queue entry. */
  #take(entry: Entry): Promise<IteratorResult<RowItem[]>> {
    if (entry.t === "rows") {
      const value = decodeRows(entry.rows, this.#column);
      this.#post({ t: "more" });
      return Promise.resolve({ done: false, value });
    }
    this.#finished = true;
    if (entry.t === "done") return this.#stopping.then(() => DONE);
    const error = entry.input ? this.#inputError : rebuild(entry.name, entry.message);
    return this.#stopping.then(() => Promise.reject(error));
  }

  #onMessage(m: FromWorker): void {
    if (this.#stopped) return;
    this.#ready = true;
    if (m.t === "read") {
      this.#wanted++;
      void this.#pump();
      return;
    }
    if (m.meta !== undefined) {
      this.#column = m.meta.addressColumn;
      this.#onMeta(m.meta);
    }
    if (m.t === "done") void this.#stop(false);
    else if (m.t === "error") void this.#stop(!m.input);
    this.#enqueue(m);
  }

  #enqueue(entry: Entry): void {
    if (this.#finished) return;
    if (this.#waiter !== undefined) {
      const waiter = this.#waiter;
      this.#waiter = undefined;
      this.#waiting = undefined;
      this.#take(entry).then(waiter.resolve, waiter.reject);
    } else this.#queue.push(entry);
  }

  #onWorkerError(message: string): void {
    if (this.#stopped) return;
    if (!this.#ready) {
      // The module did not load: nothing was read, so read in-thread instead.
      this.#fallBack();
      return;
    }
    void this.#stop(true);
    this.#enqueue({
      t: "error",
      name: "Error",
      message: `The recipient reader's worker failed: ${message}`,
      input: false,
    });
  }

  /** Terminate the worker; cancel the input when asked and it is still open. Idempotent. */
  #stop(cancel: boolean): Promise<void> {
    if (this.#stopped) return this.#stopping;
    this.#stopped = true;
    this.#worker?.terminate();
    this.#worker = undefined;
    const source = this.#source;
    if (cancel && source !== undefined && !this.#inputOver) {
      this.#inputOver = true;
      this.#stopping = cancelSource(source);
    }
    return this.#stopping;
  }

  /**
   * Send the worker the chunks it asked for, and keep one more read ahead so
   * the next request is answered at once. One read at a time.
   */
  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      for (;;) {
        if (this.#stopped || this.#sentLast) return;
        const ahead = this.#ahead;
        if (ahead !== undefined) {
          if (this.#wanted === 0) return;
          this.#wanted--;
          this.#ahead = undefined;
          this.#deliver(ahead);
          continue;
        }
        let next: Ahead;
        try {
          const result = await this.#read();
          next = result.done ? END_OF_INPUT : result.value;
          if (result.done) this.#inputOver = true;
        } catch (error) {
          this.#inputOver = true;
          next = { error };
        }
        if (this.#stopped) return;
        this.#ahead = next;
      }
    } finally {
      this.#pumping = false;
    }
  }

  /** Hand the worker one chunk, the end, or the input's failure. */
  #deliver(ahead: Ahead): void {
    if (ahead === END_OF_INPUT) {
      this.#sentLast = true;
      this.#post({ t: "end" });
      return;
    }
    if (ahead instanceof Uint8Array || !("error" in ahead)) {
      try {
        this.#sendChunk(ahead as Uint8Array);
        return;
      } catch (error) {
        // The chunk cannot be sent (not cloneable): the input's own fault.
        if (!this.#inputOver) {
          this.#inputOver = true;
          void cancelSource(this.#source!);
        }
        ahead = { error };
      }
    }
    this.#sentLast = true;
    this.#inputError = ahead.error;
    this.#post({ t: "fail" });
  }

  #read(): Promise<IteratorResult<Uint8Array>> {
    if (this.#source === undefined) {
      const input = this.#input;
      this.#source = input instanceof ReadableStream
        ? { stream: input.getReader() }
        : { iterator: input[Symbol.asyncIterator]() };
    }
    const source = this.#source;
    return "stream" in source
      ? source.stream.read() as Promise<IteratorResult<Uint8Array>>
      : source.iterator.next();
  }

  #sendChunk(chunk: Uint8Array): void {
    if (!ArrayBuffer.isView(chunk)) {
      // Not bytes: the worker's reader fails on it as the in-thread one would.
      this.#post({ t: "chunk", bytes: chunk });
      return;
    }
    // Always a copy: the caller may still hold the chunk (a tee()'d stream shares its chunks
    // between both branches), and a transferred buffer would be emptied under it.
    const copy = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength).slice();
    this.#post({ t: "chunk", bytes: copy }, [copy.buffer]);
  }
}

/** Cancel the input (a pending read ends); never rejects. */
async function cancelSource(source: Source): Promise<void> {
  try {
    if ("stream" in source) {
      await source.stream.cancel();
      source.stream.releaseLock();
    } else await source.iterator.return?.();
  } catch {
    // Cancelling is best effort: the input may already have failed.
  }
}
