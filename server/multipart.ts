/**
 * A streaming `multipart/form-data` reader (RFC 7578, RFC 2046 section 5.1),
 * for requests that carry a JSON message part before the CSV part: the parts
 * are read in order and a part's body is streamed, never buffered whole.
 *
 * @example
 * ```ts
 * import { MultipartReader, multipartBoundary } from "./multipart.ts";
 * const form = new FormData();
 * form.append("message", '{"subject":"Hi"}');
 * form.append("recipients", new Blob(["email\nann@example.com\n"]), "list.csv");
 * const req = new Request("http://x/", { method: "POST", body: form });
 * const mp = new MultipartReader(req.body!, multipartBoundary(req.headers.get("content-type")!)!);
 * const first = await mp.next();
 * if (first?.name !== "message" || await mp.text(1024) !== '{"subject":"Hi"}') throw new Error();
 * ```
 *
 * @module
 */

/** A malformed multipart body. */
export class MultipartError extends Error {
  /** Make the error. */
  constructor(message: string) {
    super(message);
    this.name = "MultipartError";
  }
}

/** The headers of one part that matter for form data. */
export interface PartInfo {
  /** `name` from `Content-Disposition: form-data; name="..."`. */
  readonly name: string;
  /** `filename`, when the part is a file. */
  readonly filename?: string;
  /** The part's `Content-Type`, lower-cased, without parameters (default `text/plain`). */
  readonly contentType: string;
}

const CR = 13;
const LF = 10;
const DASH = 45;
const MAX_HEADER_BYTES = 16 * 1024;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The boundary parameter of a `multipart/form-data` content type, or undefined. */
export function multipartBoundary(contentType: string): string | undefined {
  const [type, ...params] = contentType.split(";");
  if (type.trim().toLowerCase() !== "multipart/form-data") return undefined;
  for (const p of params) {
    const eq = p.indexOf("=");
    if (eq < 0 || p.slice(0, eq).trim().toLowerCase() !== "boundary") continue;
    let value = p.slice(eq + 1).trim();
    if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) {
      value = value.slice(1, -1);
    }
    // RFC 2046: 1 to 70 characters from a fixed set, not ending in a space.
    if (/^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$/.test(value)) return value;
    return undefined;
  }
  return undefined;
}

/** Reads the parts of one multipart body in order. */
export class MultipartReader {
  readonly #source: AsyncIterator<Uint8Array>;
  /** `\r\n--boundary`: what ends a part's body. */
  readonly #delimiter: Uint8Array;
  #buf: Uint8Array;
  #eof = false;
  /** Where we are: before the first part, in a part's headers, in a body, or after the close. */
  #phase: "preamble" | "headers" | "body" | "done" = "preamble";
  /** The next part's headers, read ahead by `body(beforeEnd)`; {@link next} returns it. */
  #pending: PartInfo | undefined;

  /** Read `source` with `boundary` (see {@link multipartBoundary}). */
  constructor(source: AsyncIterable<Uint8Array>, boundary: string) {
    this.#source = source[Symbol.asyncIterator]();
    this.#delimiter = encoder.encode(`\r\n--${boundary}`);
    // The first delimiter may open the body without a line break before it.
    this.#buf = new Uint8Array([CR, LF]);
  }

  /** Move to the next part and return its headers; undefined after the closing boundary. */
  async next(): Promise<PartInfo | undefined> {
    const pending = this.#pending;
    if (pending !== undefined) {
      this.#pending = undefined;
      return pending;
    }
    if (this.#phase === "body") {
      for await (const _ of this.body()) {
        // Skip the rest of the current part.
      }
    }
    if (this.#phase === "preamble") {
      // Everything before the first delimiter is ignored.
      for await (const _ of this.#until(true)) {
        // Preamble.
      }
    }
    if ((this.#phase as string) === "done") return undefined;
    return await this.#headers();
  }

  /**
   * The current part's body, streamed in pieces (views of the input; copy to keep).
   *
   * With `beforeEnd`, the reader first reads what follows the part (the next
   * part's headers, or the closing boundary), then calls `beforeEnd` with that
   * next part (undefined after the close), and only then yields the part's
   * last piece; {@link next} returns that part. If `beforeEnd` throws, the
   * last piece is never yielded and the error propagates to the consumer.
   */
  async *body(
    beforeEnd?: (next: PartInfo | undefined) => void,
  ): AsyncGenerator<Uint8Array, void, undefined> {
    if (this.#phase !== "body" || this.#pending !== undefined) return;
    yield* this.#until(false, beforeEnd);
  }

  /** The current part's body as UTF-8 text, refused past `maxBytes`. */
  async text(maxBytes: number): Promise<string> {
    const pieces: Uint8Array[] = [];
    let size = 0;
    for await (const piece of this.body()) {
      size += piece.length;
      if (size > maxBytes) throw new MultipartError(`A form part is larger than ${maxBytes} bytes`);
      pieces.push(piece.slice());
    }
    const all = new Uint8Array(size);
    let at = 0;
    for (const p of pieces) {
      all.set(p, at);
      at += p.length;
    }
    return decoder.decode(all);
  }

  /** Read and ignore whatever follows (later parts, the epilogue) up to the end of input. */
  async drain(): Promise<void> {
    this.#buf = new Uint8Array(0);
    while (!this.#eof) {
      const r = await this.#source.next();
      if (r.done) this.#eof = true;
    }
  }

  /** Pull one more chunk into the buffer; false at end of input. */
  async #more(): Promise<boolean> {
    if (this.#eof) return false;
    const r = await this.#source.next();
    if (r.done) {
      this.#eof = true;
      return false;
    }
    if (this.#buf.length === 0) this.#buf = r.value;
    else {
      const joined = new Uint8Array(this.#buf.length + r.value.length);
      joined.set(this.#buf);
      joined.set(r.value, this.#buf.length);
      this.#buf = joined;
    }
    return true;
  }

  /**
   * Yield bytes up to the next delimiter, consume it and what follows it (the
   * close marker, or padding and CRLF), and set the phase.
   */
  async *#until(
    preamble: boolean,
    beforeEnd?: (next: PartInfo | undefined) => void,
  ): AsyncGenerator<Uint8Array, void, undefined> {
    const d = this.#delimiter;
    while (true) {
      const at = indexOf(this.#buf, d, 0);
      if (at >= 0) {
        // A view of a buffer that is never written again (#more joins into a new one).
        const last = this.#buf.subarray(0, at);
        if (beforeEnd === undefined && at > 0 && !preamble) yield last;
        this.#buf = this.#buf.subarray(at + d.length);
        await this.#afterDelimiter();
        if (beforeEnd !== undefined) {
          const next = this.#phase === "headers" ? await this.#headers() : undefined;
          this.#pending = next;
          beforeEnd(next);
          if (at > 0) yield last;
        }
        return;
      }
      // Keep only a tail that could be the start of a delimiter.
      let keep = this.#buf.length;
      const from = Math.max(0, this.#buf.length - d.length + 1);
      const cr = this.#buf.indexOf(CR, from);
      keep = cr < 0 ? this.#buf.length : cr;
      if (keep > 0) {
        const out = this.#buf.subarray(0, keep);
        this.#buf = this.#buf.subarray(keep);
        if (!preamble) yield out;
      }
      if (!(await this.#more())) {
        throw new MultipartError(
          preamble
            ? "The multipart body has no boundary line; check the boundary in Content-Type"
            : "The multipart body ended inside a part (no closing boundary): it was cut off",
        );
      }
    }
  }

  async #afterDelimiter(): Promise<void> {
    while (this.#buf.length < 2 && await this.#more()) {
      // Need two bytes to tell "--" from padding/CRLF.
    }
    if (this.#buf.length >= 2 && this.#buf[0] === DASH && this.#buf[1] === DASH) {
      this.#phase = "done";
      this.#buf = this.#buf.subarray(2);
      return;
    }
    // Transport padding, then CRLF.
    while (true) {
      let i = 0;
      while (i < this.#buf.length && (this.#buf[i] === 32 || this.#buf[i] === 9)) i++;
      if (i + 1 < this.#buf.length) {
        if (this.#buf[i] !== CR || this.#buf[i + 1] !== LF) {
          throw new MultipartError("Malformed multipart boundary line: expected CRLF after it");
        }
        this.#buf = this.#buf.subarray(i + 2);
        this.#phase = "headers";
        return;
      }
      if (i > 1024 || !(await this.#more())) {
        throw new MultipartError("The multipart body ended after a boundary line: it was cut off");
      }
    }
  }

  async #headers(): Promise<PartInfo> {
    const end = encoder.encode("\r\n\r\n");
    let at: number;
    // A part with no headers starts right with CRLF.
    while (true) {
      if (this.#buf.length >= 2 && this.#buf[0] === CR && this.#buf[1] === LF) {
        at = -2;
        break;
      }
      at = indexOf(this.#buf, end, 0);
      if (at >= 0) break;
      if (this.#buf.length > MAX_HEADER_BYTES) {
        throw new MultipartError(`A form part's headers exceed ${MAX_HEADER_BYTES} bytes`);
      }
      if (!(await this.#more())) {
        throw new MultipartError(
          "The multipart body ended inside a part's headers: it was cut off",
        );
      }
    }
    const text = at < 0 ? "" : decoder.decode(this.#buf.subarray(0, at));
    this.#buf = this.#buf.subarray(at + 4);
    this.#phase = "body";
    let name: string | undefined;
    let filename: string | undefined;
    let contentType = "text/plain";
    for (const line of text.split("\r\n")) {
      const colon = line.indexOf(":");
      if (colon <= 0) {
        throw new MultipartError(`Malformed header line in a form part: ${JSON.stringify(line)}`);
      }
      const key = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      if (key === "content-type") contentType = value.split(";")[0].trim().toLowerCase();
      if (key === "content-disposition") {
        const params = parseParams(value);
        name = params.get("name");
        filename = params.get("filename");
      }
    }
    if (name === undefined) {
      throw new MultipartError('A form part has no Content-Disposition: form-data; name="..."');
    }
    return filename === undefined ? { name, contentType } : { name, filename, contentType };
  }
}

/** Parameters of a `Content-Disposition` value (`form-data; name="a"; filename="b"`). */
function parseParams(value: string): Map<string, string> {
  const out = new Map<string, string>();
  const re = /;\s*([A-Za-z0-9_*-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))/g;
  for (const m of value.matchAll(re)) {
    const v = m[2] !== undefined ? m[2].replace(/\\(.)/g, "$1") : m[3];
    out.set(m[1].toLowerCase(), v);
  }
  return out;
}

/** Index of `needle` in `hay` from `from`, or -1. */
function indexOf(hay: Uint8Array, needle: Uint8Array, from: number): number {
  const first = needle[0];
  const last = hay.length - needle.length;
  let i = from;
  while (i <= last) {
    i = hay.indexOf(first, i);
    if (i < 0 || i > last) return -1;
    let j = 1;
    while (j < needle.length && hay[i + j] === needle[j]) j++;
    if (j === needle.length) return i;
    i++;
  }
  return -1;
}
