/**
 * A streamed NDJSON response body (one JSON object per line, `\n` after each).
 *
 * Memory stays bounded when the client reads slowly: {@link NdjsonWriter.offer}
 * drops a line (a progress tick; the next one carries newer numbers) while the
 * client has not taken the previous one, and only the few lines that must
 * arrive go through {@link NdjsonWriter.write}.
 *
 * @module
 */

const encoder = new TextEncoder();

/** The `Content-Type` of an NDJSON response. */
export const NDJSON_TYPE = "application/x-ndjson; charset=utf-8";

/** Writes JSON lines into a `ReadableStream` that becomes a response body. */
export class NdjsonWriter {
  /** The response body. */
  readonly readable: ReadableStream<Uint8Array>;
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  #open = true;
  #cancelled = false;

  /** `onCancel` runs once if the client goes away (the body is cancelled) before {@link close}. */
  constructor(onCancel?: (reason: unknown) => void) {
    this.readable = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#controller = controller;
      },
      cancel: (reason) => {
        const wasOpen = this.#open;
        this.#open = false;
        this.#cancelled = true;
        if (wasOpen) onCancel?.(reason);
      },
    }, { highWaterMark: 1 });
  }

  /** True once the client went away before the stream was closed. */
  get cancelled(): boolean {
    return this.#cancelled;
  }

  /** Queue a line even if the client has not read the earlier ones. False when closed. */
  write(value: unknown): boolean {
    if (!this.#open) return false;
    this.#controller.enqueue(encoder.encode(JSON.stringify(value) + "\n"));
    return true;
  }

  /** Queue a line only if the client has taken everything before it. */
  offer(value: unknown): boolean {
    if (!this.#open || (this.#controller.desiredSize ?? 0) <= 0) return false;
    return this.write(value);
  }

  /** End the body. */
  close(): void {
    if (!this.#open) return;
    this.#open = false;
    this.#controller.close();
  }
}
