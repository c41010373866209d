/**
 * Request-body intake: counts bytes, enforces the body limit, and tells a
 * complete body from a cut-off one.
 *
 * The rule for a body that does not arrive whole (the client died, the
 * connection dropped, `Content-Length` promised more than came, the limit was
 * hit, the client sent nothing for too long, or the server stopped reading): the consumer never sees an end of
 * stream. It sees every byte that arrived, then the stream *stalls* until
 * {@link BodyIntake.release}, and then it throws. A CSV reader therefore never
 * completes the partial last line of a cut-off body, so that line can never
 * become a recipient. Only a body that ended cleanly (the final chunk of a
 * chunked body, or exactly `Content-Length` bytes) reaches end of stream, where
 * a last line without a newline is a complete record (RFC 4180 allows it).
 *
 * @module
 */

/** How reading the body ended (`reading` while it goes on). */
/**
 * A body that arrived faster than it is consumed is read from a buffer, and
 * such reads never give the event loop a turn: the transport's answers would
 * wait while rows are rendered. Every this many bytes, the reader lets it run.
 */
const YIELD_BYTES = 1 << 20;

export type IntakeState =
  | "reading"
  | "complete" // the whole body arrived
  | "truncated" // the connection ended early or the stream failed
  | "too_large" // more than the limit arrived; reading was cancelled
  | "timed_out" // no byte arrived for `idleTimeoutMs` while the server waited for one
  | "stopped"; // the server stopped reading (client gone, run over, bad input)

const IDLE = Symbol("idle");

/** Options of {@link BodyIntake}. */
export interface BodyIntakeOptions {
  /** Bytes allowed in all; more ends reading as `too_large`. */
  readonly maxBytes: number;
  /** The request's `Content-Length`, when it had one. */
  readonly expectedBytes?: number;
  /**
   * Give up when a read waits this long for the client (a stalled or very
   * slow upload must not hold a run slot forever). Default: no limit.
   */
  readonly idleTimeoutMs?: number;
  /** Called once when reading ends, however it ends. */
  readonly onEnd?: (state: Exclude<IntakeState, "reading">, bytes: number) => void;
}

/** The error a stalled consumer receives once the intake is released. */
export class BodyCutOffError extends Error {
  /** How reading ended. */
  readonly state: Exclude<IntakeState, "reading" | "complete">;
  /** Make the error for a body that did not arrive whole. */
  constructor(state: Exclude<IntakeState, "reading" | "complete">, bytes: number) {
    super(`The request body did not arrive whole (${state} after ${bytes} bytes)`);
    this.name = "BodyCutOffError";
    this.state = state;
  }
}

/** Reads one request body for one consumer; see the module doc for the cut-off rule. */
export class BodyIntake {
  readonly #body: ReadableStream<Uint8Array> | null;
  readonly #o: BodyIntakeOptions;
  #reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  #bytes = 0;
  #state: IntakeState = "reading";
  #taken = false;
  readonly #released = Promise.withResolvers<void>();

  /** Wrap `body` (null reads as an empty, complete body). */
  constructor(body: ReadableStream<Uint8Array> | null, options: BodyIntakeOptions) {
    if (options.idleTimeoutMs !== undefined && !(options.idleTimeoutMs > 0)) {
      throw new RangeError(`Invalid idle timeout ${options.idleTimeoutMs}: use milliseconds > 0`);
    }
    if (!(options.maxBytes >= 0)) {
      throw new RangeError(`Invalid body limit ${options.maxBytes}: use a number of bytes >= 0`);
    }
    this.#body = body;
    this.#o = options;
  }

  /** Bytes received so far. */
  get bytes(): number {
    return this.#bytes;
  }

  /** How reading ended, or `reading`. */
  get state(): IntakeState {
    return this.#state;
  }

  /**
   * The body's bytes. Ends only when the whole body arrived; otherwise stalls
   * until {@link release} and then throws {@link BodyCutOffError}. Call once.
   */
  async *chunks(): AsyncGenerator<Uint8Array, void, undefined> {
    if (this.#taken) throw new Error("The request body can be read only once");
    this.#taken = true;
    if (this.#body === null) {
      this.#end("complete");
      return;
    }
    if (this.#state !== "reading") return await this.#stall();
    const reader = this.#body.getReader();
    this.#reader = reader;
    const max = this.#o.maxBytes;
    const idle = this.#o.idleTimeoutMs;
    let yieldedAt = 0;
    while (true) {
      let result: ReadableStreamReadResult<Uint8Array>;
      let timer: ReturnType<typeof setTimeout> | undefined;
      try {
        result = idle === undefined ? await reader.read() : await Promise.race([
          reader.read(),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(IDLE), idle);
          }),
        ]);
      } catch (error) {
        this.#end(error === IDLE ? "timed_out" : "truncated");
        if (error === IDLE) this.#cancel();
        return await this.#stall();
      } finally {
        clearTimeout(timer);
      }
      // stop() may have cancelled the reader, which reads as done: not a complete body.
      if (this.#state !== "reading") return await this.#stall();
      if (result.done) {
        const expected = this.#o.expectedBytes;
        if (expected !== undefined && this.#bytes !== expected) {
          this.#end("truncated");
          return await this.#stall();
        }
        this.#end("complete");
        return;
      }
      this.#bytes += result.value.length;
      if (this.#bytes - yieldedAt >= YIELD_BYTES) {
        yieldedAt = this.#bytes;
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
      if (this.#bytes > max) {
        this.#end("too_large");
        this.#cancel();
        return await this.#stall();
      }
      yield result.value;
    }
  }

  /** Stop reading (client gone, run over): cancels the body; a consumer stalls. */
  stop(): void {
    if (this.#state !== "reading") return;
    this.#end("stopped");
    this.#cancel();
  }

  /**
   * Let a stalled consumer go: it throws {@link BodyCutOffError}, never sees
   * an end of stream. Also stops reading if it still goes on.
   */
  release(): void {
    this.stop();
    this.#released.resolve();
    if (!this.#taken) this.#body?.cancel().catch(() => {});
  }

  async #stall(): Promise<never> {
    await this.#released.promise;
    throw new BodyCutOffError(
      this.#state as Exclude<IntakeState, "reading" | "complete">,
      this.#bytes,
    );
  }

  #end(state: Exclude<IntakeState, "reading">): void {
    if (this.#state !== "reading") return;
    this.#state = state;
    this.#o.onEnd?.(state, this.#bytes);
  }

  #cancel(): void {
    const reader = this.#reader;
    if (reader !== undefined) reader.cancel().catch(() => {});
    else this.#body?.cancel().catch(() => {});
  }
}
