/**
 * The per-row byte writers of the message composer's hot path
 * (core/message.ts): {@link ChunkWriter}, a slab that hands out finished
 * parts as views, and the writers that put header fields
 * ({@link HeaderWriter}) and bodies ({@link writeBody},
 * {@link writeQuotedPrintable}, {@link writeBase64Lines}) straight into it
 * from reusable scratch buffers, without building strings, arrays or
 * intermediate byte buffers.
 *
 * Their output must equal, byte for byte, what the general formatters in
 * mime.ts return for the same input (`formatUnstructured`, `formatMailbox`,
 * `encodeBody`, ...); those stay the reference, and the differential tests in
 * mime_writers_test.ts (and message_test.ts) prove the two agree.
 *
 * Dependencies go one way: this module imports from mime.ts (limits, tables,
 * the encoding choice and the quoted-printable core loop); mime.ts never
 * imports from here.
 *
 * @module
 */

import {
  B64_CODES,
  base64IsShorter,
  base64LinesBound,
  encodeBase64LinesInto,
  encodeQuotedPrintableInto,
  HARD_LINE_LIMIT,
  HEX_CODES,
  MAX_PLAIN_WORD,
  MAX_WORD,
  qLiteral,
  quotedPrintableBound,
  SOFT_LINE_LIMIT,
  type TransferEncoding,
  WORD_OVERHEAD,
  WORD_PREFIX_B,
  WORD_PREFIX_Q,
} from "./mime.ts";

const encoder = new TextEncoder();

// deno-lint-ignore no-control-regex -- control characters are what this matches
const ADDRESS_UNSAFE = /[\x00-\x1f\x7f-\x9f<>\u2028\u2029]/;

/**
 * One slab of a {@link ChunkWriter} and what it takes to reuse it: the number
 * of rendered messages that still hold bytes in it (`holders`), whether the
 * writer has moved on to another slab (`sealed`), and whether a view of it was
 * handed out that nobody counts (`pinned`: then only the garbage collector may
 * free it).
 */
export class Slab {
  /** The slab's memory. */
  readonly bytes: Uint8Array<ArrayBuffer>;
  /** Messages that hold bytes here and have not been released. */
  holders = 0;
  /** The writer writes elsewhere now. */
  sealed = false;
  /** An uncounted view exists: never reuse. */
  pinned = false;
  /**
   * The memory went back to the pool (and is being rewritten): anything that
   * still points here is stale, and must not read it.
   */
  recycled = false;

  /** Wrap `bytes` as a slab nobody holds yet. */
  constructor(bytes: Uint8Array<ArrayBuffer>) {
    this.bytes = bytes;
  }
}

/**
 * Free slabs kept for reuse at most: 64 MiB at the default slab size. A run's
 * in-flight messages can fill that many, and answers come back in bursts.
 */
const POOL_LIMIT = 256;

/**
 * Writes the bytes of one message part after another into a large shared
 * buffer (a slab) and hands each finished part out as a view of it. One small
 * `Uint8Array` per message costs more than the encoding itself, and a string
 * built from many pieces costs a flattening copy; writing pieces straight into
 * the slab avoids both. A region is written once and never rewritten while
 * anything may read it, so the views stay immutable.
 *
 * Slabs are reused only when their holders say so: a caller that keeps
 * offsets (see {@link cut}) counts itself in {@link current}`.holders` and
 * calls {@link release} when done; a slab whose holders all left after the
 * writer moved on goes back to a pool (up to 256 slabs) instead of to the
 * garbage collector. A slab that ever handed out a view ({@link finish}) is never
 * reused. Without releases, slabs are simply freed by the garbage collector
 * once nothing refers to them.
 */
export class ChunkWriter {
  readonly #slabSize: number;
  #buf = new Uint8Array(0);
  #slab = new Slab(this.#buf);
  #start = 0;
  #at = 0;
  /** Free slabs of `#slabSize` bytes, ready for reuse. */
  readonly #pool: Uint8Array<ArrayBuffer>[] = [];

  /**
   * Create a writer whose slabs hold `slabSize` bytes (256 KiB by default:
   * about 800 typical messages, so a million rows need only ~1,300 slabs). One
   * view kept alive keeps its whole slab alive: messages in flight are rendered
   * one after another and die together, and the engine keeps a message waiting
   * for a retry as its own copy (`detachMessage`), never as a view.
   */
  constructor(slabSize = 256 * 1024) {
    this.#slabSize = slabSize;
  }

  /** Bytes written since the last {@link finish}. */
  get length(): number {
    return this.#at - this.#start;
  }

  #ensure(n: number): void {
    if (this.#at + n <= this.#buf.length) return;
    const used = this.#at - this.#start;
    const size = Math.max(this.#slabSize, (used + n) * 2);
    const next = size === this.#slabSize && this.#pool.length > 0
      ? this.#pool.pop()!
      : new Uint8Array(size);
    next.set(this.#buf.subarray(this.#start, this.#at));
    const old = this.#slab;
    old.sealed = true;
    this.#buf = next;
    this.#slab = new Slab(next);
    this.#start = 0;
    this.#at = used;
    this.#recycle(old);
  }

  /** The slab being written, with its reuse bookkeeping. */
  get current(): Slab {
    return this.#slab;
  }

  /**
   * One holder of `slab` is done with its bytes (counted in `holders` when it
   * took them). The slab is reused once the writer has moved on and no holder
   * is left; reading a released region afterwards reads other bytes.
   */
  release(slab: Slab): void {
    if (--slab.holders === 0) this.#recycle(slab);
  }

  #recycle(slab: Slab): void {
    if (
      slab.sealed && slab.holders === 0 && !slab.pinned &&
      slab.bytes.length === this.#slabSize && this.#pool.length < POOL_LIMIT
    ) {
      slab.pinned = true; // in the pool now: never recycled twice
      slab.recycled = true;
      this.#pool.push(slab.bytes);
    }
  }

  /**
   * Make room for `n` more bytes and return the offset in {@link slab} where
   * they go. Write at most `n` bytes from there, then {@link commit} the end;
   * no other write may come in between (it could move to a new slab).
   */
  reserve(n: number): number {
    this.#ensure(n);
    return this.#at;
  }

  /** End the bytes written into {@link slab} after {@link reserve} at offset `end`. */
  commit(end: number): void {
    this.#at = end;
  }

  /** Append bytes (copied): `b[start, end)`, all of `b` by default. */
  bytes(b: Uint8Array, start = 0, end: number = b.length): void {
    const n = end - start;
    this.#ensure(n);
    const buf = this.#buf;
    let at = this.#at;
    if (n < 16) { for (let i = start; i < end; i++) buf[at++] = b[i]; }
    else {
      buf.set(start === 0 && end === b.length ? b : b.subarray(start, end), at);
      at += n;
    }
    this.#at = at;
  }

  /** Append text as UTF-8. ASCII is copied character by character; the rest goes through `encodeInto`. */
  text(s: string): void {
    const n = s.length;
    this.#ensure(n);
    const buf = this.#buf;
    let at = this.#at;
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c > 0x7f) {
        this.#at = at;
        this.#utf8(i === 0 ? s : s.slice(i));
        return;
      }
      buf[at++] = c;
    }
    this.#at = at;
  }

  /**
   * Append an address: text without control characters or angle brackets.
   * Returns false, having written nothing, when `s` holds one.
   */
  address(s: string): boolean {
    const n = s.length;
    this.#ensure(n);
    const buf = this.#buf;
    const start = this.#at;
    let at = start;
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c < 0x20 || c === 0x3c || c === 0x3e || c >= 0x7f) {
        if (c <= 0x7f || ADDRESS_UNSAFE.test(s)) return false;
        this.#at = at;
        this.#utf8(i === 0 ? s : s.slice(i));
        return true;
      }
      buf[at++] = c;
    }
    this.#at = at;
    return n > 0;
  }

  /** Append a non-negative integer in decimal (a safe integer, e.g. a line number). */
  uint(n: number): void {
    let digits = 1;
    for (let x = n; x >= 10; x = Math.floor(x / 10)) digits++;
    this.#ensure(digits);
    const buf = this.#buf;
    let at = this.#at + digits;
    this.#at = at;
    do {
      buf[--at] = 0x30 + (n % 10);
      n = Math.floor(n / 10);
    } while (n > 0);
  }

  #utf8(s: string): void {
    this.#ensure(s.length * 3);
    this.#at += encoder.encodeInto(s, this.#buf.subarray(this.#at)).written;
  }

  /** The slab being written (the buffer under the views {@link finish} returns). */
  get slab(): Uint8Array {
    return this.#buf;
  }

  /** Offset in {@link slab} where the bytes since the last finish begin. */
  get start(): number {
    return this.#start;
  }

  /**
   * Like {@link finish} without making a view: end the current bytes and return
   * their end offset in {@link slab} (they begin at {@link start} as read before).
   */
  cut(): number {
    this.#start = this.#at;
    return this.#at;
  }

  /** Drop the bytes written since the last {@link finish} (after a failed render). */
  discard(): void {
    this.#at = this.#start;
  }

  /** The bytes written since the last call, as a view that is never written again. */
  finish(): Uint8Array {
    this.#slab.pinned = true; // a view nobody counts: the slab is never reused
    const chunk = this.#buf.subarray(this.#start, this.#at);
    this.#start = this.#at;
    return chunk;
  }
}

// ---------------------------------------------------------------------------
// Per-row writers: the bytes of the formatters in mime.ts, written straight
// into a ChunkWriter from reusable scratch buffers, without building strings,
// arrays or intermediate byte buffers. The formatters stay the reference; the
// tests check that both write the same bytes.

/** Characters a byte takes in a Q encoded-word: 1 (literal, or `_` for a space) or 3 (`=XX`). */
const Q_WIDTH = new Uint8Array(256).fill(3);
for (let b = 0; b < 128; b++) if (qLiteral(b) || b === 32) Q_WIDTH[b] = 1;

/**
 * Write `s` as UTF-8 into `dst` from offset `at` and return the end offset.
 * `dst` must have room for `3 * s.length` bytes. Lone surrogates become
 * U+FFFD, as with `TextEncoder`; with `newlines`, every line end (CRLF, lone
 * CR, lone LF) becomes CRLF, as with {@link normalizeNewlines}.
 */
export function encodeUtf8Into(s: string, dst: Uint8Array, at: number, newlines = false): number {
  const n = s.length;
  for (let i = 0; i < n; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      if (newlines && (c === 13 || c === 10)) {
        dst[at++] = 13;
        dst[at++] = 10;
        if (c === 13 && s.charCodeAt(i + 1) === 10) i++;
      } else dst[at++] = c;
      continue;
    }
    if (c < 0x800) {
      dst[at++] = 0xc0 | (c >> 6);
      dst[at++] = 0x80 | (c & 63);
      continue;
    }
    if ((c & 0xf800) === 0xd800) {
      const d = s.charCodeAt(i + 1); // NaN past the end
      if (c < 0xdc00 && (d & 0xfc00) === 0xdc00) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
        dst[at++] = 0xf0 | (c >> 18);
        dst[at++] = 0x80 | ((c >> 12) & 63);
        dst[at++] = 0x80 | ((c >> 6) & 63);
        dst[at++] = 0x80 | (c & 63);
        continue;
      }
      c = 0xfffd;
    }
    dst[at++] = 0xe0 | (c >> 12);
    dst[at++] = 0x80 | ((c >> 6) & 63);
    dst[at++] = 0x80 | (c & 63);
  }
  return at;
}

/**
 * Write `src[start, end)` as quoted-printable into `w`: exactly the bytes
 * `encodeQuotedPrintable` returns for it (both run `encodeQuotedPrintableInto`).
 */
export function writeQuotedPrintable(
  w: ChunkWriter,
  src: Uint8Array,
  start: number,
  end: number,
): void {
  const o = w.reserve(quotedPrintableBound(end - start));
  w.commit(encodeQuotedPrintableInto(src, start, end, w.slab, o));
}

/**
 * Write `src[start, end)` as base64 lines into `w`: exactly the bytes
 * {@link encodeBase64Lines} returns for it.
 */
export function writeBase64Lines(
  w: ChunkWriter,
  src: Uint8Array,
  start: number,
  end: number,
): void {
  const o = w.reserve(base64LinesBound(end - start));
  w.commit(encodeBase64LinesInto(src, start, end, w.slab, o));
}

// What each byte means for choosing a body's encoding (bit set).
const ESCAPED = 1; // quoted-printable writes it as =XX
const NOT_7BIT = 2; // outside printable ASCII, tab, CR, LF
const NOT_8BIT = 4; // a control character 8bit may not carry
const LINE_END = 8; // CR or LF
const BODY_BYTE = new Uint8Array(256);
for (let b = 0; b < 256; b++) {
  const text = (b >= 0x20 && b <= 0x7e) || b === 9 || b === 10 || b === 13;
  const unsafe8 = b <= 0x08 || b === 0x0b || b === 0x0c || (b >= 0x0e && b <= 0x1f) || b === 0x7f;
  const escaped = b > 126 || (b < 32 && b !== 9 && b !== 10 && b !== 13) || b === 61;
  BODY_BYTE[b] = (escaped ? ESCAPED : 0) | (text ? 0 : NOT_7BIT) | (unsafe8 ? NOT_8BIT : 0) |
    (b === 10 || b === 13 ? LINE_END : 0);
}
const ENCODING_HEADS: Record<TransferEncoding, Uint8Array> = {
  "7bit": encoder.encode("7bit\r\n\r\n"),
  "8bit": encoder.encode("8bit\r\n\r\n"),
  "quoted-printable": encoder.encode("quoted-printable\r\n\r\n"),
  "base64": encoder.encode("base64\r\n\r\n"),
};

function includesBytes(src: Uint8Array, start: number, end: number, what: Uint8Array): boolean {
  const m = what.length;
  if (m === 0) return true;
  const first = what[0];
  for (let i = start; i + m <= end; i++) {
    if (src[i] !== first) continue;
    let j = 1;
    while (j < m && src[i + j] === what[j]) j++;
    if (j === m) return true;
  }
  return false;
}

/**
 * Write a body given as UTF-8 bytes `src[start, end)` (CRLF line ends,
 * ending with CRLF): `<encoding>` CRLF CRLF and the encoded bytes. Chooses
 * and writes exactly what {@link encodeBody} does for the same text; `avoid`
 * is the boundary as bytes. Returns the encoding.
 */
export function writeBody(
  w: ChunkWriter,
  src: Uint8Array,
  start: number,
  end: number,
  allow8bit: boolean,
  avoid?: Uint8Array,
): TransferEncoding {
  let bad = 0;
  let escapes = 0;
  let lone = false; // a CR or LF not in a CRLF pair
  // Lines are measured at each LF, CR included: over 999 octets is too long
  // for 8bit, and (when every line end is CRLF) for 7bit. The last line,
  // without LF, may hold 998 octets as 7bit and 999 as 8bit (a lone CR last).
  let long = false;
  let lineStart = start;
  for (let i = start; i < end; i++) {
    const k = BODY_BYTE[src[i]];
    bad |= k;
    escapes += k & ESCAPED;
    if ((k & LINE_END) === 0) continue;
    if (src[i] === 13) {
      if (i + 1 === end || src[i + 1] !== 10) lone = true;
    } else {
      if (i === start || src[i - 1] !== 13) lone = true;
      if (i - lineStart > HARD_LINE_LIMIT + 1) long = true;
      lineStart = i + 1;
    }
  }
  const long7 = long || end - lineStart > HARD_LINE_LIMIT;
  const long8 = long || end - lineStart > HARD_LINE_LIMIT + 1;
  const clash = avoid !== undefined && includesBytes(src, start, end, avoid);
  let encoding: TransferEncoding;
  if (!clash && (bad & NOT_7BIT) === 0 && !lone && !long7) encoding = "7bit";
  else if (!clash && allow8bit && (bad & NOT_8BIT) === 0 && !lone && !long8) encoding = "8bit";
  else if (base64IsShorter(escapes, end - start)) encoding = "base64";
  else encoding = "quoted-printable";
  writeEncodedBody(w, src, start, end, encoding);
  return encoding;
}

/**
 * Write `<encoding>` CRLF CRLF and the body `src[start, end)` (UTF-8, CRLF
 * line ends) in that encoding, chosen beforehand as {@link encodeBody} would.
 */
export function writeEncodedBody(
  w: ChunkWriter,
  src: Uint8Array,
  start: number,
  end: number,
  encoding: TransferEncoding,
): void {
  w.bytes(ENCODING_HEADS[encoding]);
  if (encoding === "quoted-printable") writeQuotedPrintable(w, src, start, end);
  else if (encoding === "base64") writeBase64Lines(w, src, start, end);
  else w.bytes(src, start, end);
}

const CHAR_ATOM = new Uint8Array(128);
for (
  const ch of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-/=?^_`{|}~"
) {
  CHAR_ATOM[ch.charCodeAt(0)] = 1;
}
const B_PREFIX = encoder.encode(WORD_PREFIX_B);
const Q_PREFIX = encoder.encode(WORD_PREFIX_Q);

/**
 * Writes per-row header fields straight into a {@link ChunkWriter}. The value
 * is gathered with {@link append} into a reusable UTF-16 buffer (a value
 * merged from template pieces is never built as a string); then
 * {@link unstructured} or {@link mailbox} writes exactly the bytes of
 * {@link formatUnstructured} or {@link formatMailbox}, without the final CRLF.
 */
export class HeaderWriter {
  readonly #w: ChunkWriter;
  #units = new Uint16Array(256);
  #n = 0;
  /** The last unit appended was a CR (now a space): a LF right after it is dropped. */
  #cr = false;
  /** Some unit of the value is above printable ASCII. */
  #high = false;
  #utf8 = new Uint8Array(768);
  /** Characters the UTF-8 in {@link #utf8} takes in Q encoded-words. */
  #qLength = 0;
  // While a field is written: the slab, the write offset, and the folding state.
  #out: Uint8Array = new Uint8Array(0);
  #o = 0;
  #col = 0;
  #start = 0;

  /** A writer for fields written into `w`. */
  constructor(w: ChunkWriter) {
    this.#w = w;
  }

  /** Start a new value. */
  clear(): void {
    this.#n = 0;
    this.#cr = false;
    this.#high = false;
  }

  /**
   * Append `s` to the value, sanitised as {@link sanitizeHeaderText} does the
   * whole value: control characters become spaces, a CRLF pair one space
   * (also when the CR ends one piece and the LF starts the next).
   */
  append(s: string): void {
    const len = s.length;
    if (len === 0) return;
    let n = this.#n;
    if (n + len > this.#units.length) {
      const next = new Uint16Array(Math.max(this.#units.length * 2, n + len));
      next.set(this.#units.subarray(0, n));
      this.#units = next;
    }
    const u = this.#units;
    let cr = this.#cr;
    let high = false;
    for (let i = 0; i < len; i++) {
      let c = s.charCodeAt(i);
      if (c < 0x20 || (c >= 0x7f && c <= 0x9f) || c === 0x2028 || c === 0x2029) {
        if (c === 10 && cr) {
          cr = false;
          continue;
        }
        cr = c === 13;
        if (c !== 9) c = 32;
      } else {
        cr = false;
        if (c > 0x7e) high = true;
      }
      u[n++] = c;
    }
    this.#cr = cr;
    if (high) this.#high = true;
    this.#n = n;
  }

  /** Write `name: value` as {@link formatUnstructured} does, without the final CRLF. */
  unstructured(name: string): void {
    this.#begin(name, 0);
    if (this.#n > 0) this.#text(this.#n);
    this.#w.commit(this.#o);
  }

  /**
   * Write `field: value <address>` (the value is the display name) as
   * {@link formatMailbox} does, without the final CRLF. The address must be
   * valid; it is written as it is.
   */
  mailbox(field: string, address: string): void {
    this.#begin(field, address.length);
    if (this.#n === 0) {
      this.#out[this.#o++] = 32;
      this.#o = encodeUtf8Into(address, this.#out, this.#o);
    } else {
      this.#displayName(this.#n);
      this.#space(address.length + 2);
      const out = this.#out;
      out[this.#o++] = 0x3c;
      this.#o = encodeUtf8Into(address, out, this.#o);
      out[this.#o++] = 0x3e;
    }
    this.#w.commit(this.#o);
  }

  /** Reserve room for the whole field and write `name:`. */
  #begin(name: string, extra: number): void {
    // Worst cases: 9 characters per code unit in Q words, 15 per word of
    // overhead (prefix, suffix, space, fold); the address UTF-8.
    const bound = name.length + 25 * this.#n + 3 * extra + 32;
    this.#o = this.#w.reserve(bound);
    this.#out = this.#w.slab;
    const out = this.#out;
    for (let i = 0; i < name.length; i++) out[this.#o++] = name.charCodeAt(i);
    out[this.#o++] = 0x3a;
    this.#col = name.length + 1;
    this.#start = this.#col;
  }

  /** Before a token of `len` characters: fold when it does not fit, then one space. */
  #space(len: number): void {
    const out = this.#out;
    if (len > 0 && this.#col > this.#start && this.#col + 1 + len > SOFT_LINE_LIMIT) {
      out[this.#o++] = 13;
      out[this.#o++] = 10;
      this.#col = 0;
    }
    out[this.#o++] = 32;
    this.#col += 1 + len;
  }

  /** Add each space-separated word of `units[s, e)` (ASCII) as a token, empty ones too. */
  #words(s: number, e: number): void {
    const u = this.#units;
    const out = this.#out;
    for (let ws = s;;) {
      let we = ws;
      while (we < e && u[we] !== 32) we++;
      this.#space(we - ws);
      let o = this.#o;
      for (let i = ws; i < we; i++) out[o++] = u[i];
      this.#o = o;
      if (we >= e) return;
      ws = we + 1;
    }
  }

  /** Whether `units[s, e)` may stay unencoded in unstructured text (as `isPlainWord`). */
  #plain(s: number, e: number): boolean {
    if (e - s > MAX_PLAIN_WORD) return false;
    const u = this.#units;
    for (let i = s; i < e; i++) {
      const c = u[i];
      if (c < 0x21 || c > 0x7e || (c === 0x3d && i + 1 < e && u[i + 1] === 0x3f)) return false;
    }
    return true;
  }

  /** The unstructured value `units[0, n)`: plain words, and encoded-words from the first to the last word that is not plain. */
  #text(n: number): void {
    const u = this.#units;
    let first = -1;
    let last = -1;
    for (let ws = 0;;) {
      let we = ws;
      while (we < n && u[we] !== 32) we++;
      const plain = we === ws ? ws !== 0 && we !== n : this.#plain(ws, we);
      if (!plain) {
        if (first < 0) first = ws;
        last = we;
      }
      if (we === n) break;
      ws = we + 1;
    }
    if (first < 0) {
      this.#words(0, n);
      return;
    }
    if (first > 0) this.#words(0, first - 1);
    this.#encoded(first, last);
    if (last < n) this.#words(last + 1, n);
  }

  /** A display name `units[0, n)` (n > 0): atoms, a quoted-string or encoded-words (as {@link addDisplayName}). */
  #displayName(n: number): void {
    if (this.#high) {
      this.#encoded(0, n); // neither atoms nor a quoted-string can hold it
      return;
    }
    const u = this.#units;
    let atoms = true;
    let printable = true;
    let specials = 0;
    let prev = 0;
    let wordLength = 0;
    for (let i = 0; i < n; i++) {
      const c = u[i];
      if (c === 32) {
        if (wordLength === 0) atoms = false;
        wordLength = 0;
      } else if (++wordLength > MAX_PLAIN_WORD || c > 0x7e || CHAR_ATOM[c] === 0) atoms = false;
      if (c < 0x20 || c > 0x7e) printable = false;
      if (c === 0x3f && prev === 0x3d) {
        atoms = false;
        printable = false; // "=?" rules out the quoted-string too
      }
      if (c === 32 && prev === 32) printable = false;
      if (c === 0x22 || c === 0x5c) specials++;
      prev = c;
    }
    if (wordLength === 0) atoms = false;
    if (atoms) {
      this.#words(0, n);
      return;
    }
    if (printable && n <= 60 && u[0] !== 32 && u[n - 1] !== 32) {
      this.#space(n + 2 + specials);
      const out = this.#out;
      let o = this.#o;
      out[o++] = 0x22;
      for (let i = 0; i < n; i++) {
        const c = u[i];
        if (c === 0x22 || c === 0x5c) out[o++] = 0x5c;
        out[o++] = c;
      }
      out[o++] = 0x22;
      this.#o = o;
      return;
    }
    this.#encoded(0, n);
  }

  /** Encoded-words for `units[s, e)`, the first sized to this line if it can be (as `addEncoded`). */
  #encoded(s: number, e: number): void {
    const room = SOFT_LINE_LIMIT - this.#col - 1;
    const firstMax = this.#col > this.#start && room < WORD_OVERHEAD + 9
      ? MAX_WORD
      : Math.max(room, WORD_OVERHEAD + 9);
    let max = Math.min(firstMax, MAX_WORD);
    const m = this.#toUtf8(s, e);
    const b = this.#utf8;
    let words = 0;
    if (Math.ceil(m / 3) * 4 < this.#qLength) {
      let from = 0;
      let bytes = 0;
      for (let p = 0; p < m;) {
        const c = b[p];
        const len = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
        if (bytes + len > Math.floor((max - WORD_OVERHEAD) / 4) * 3 && bytes > 0) {
          this.#wordB(from, p);
          from = p;
          bytes = 0;
          max = MAX_WORD;
          words++;
        }
        bytes += len;
        p += len;
      }
      if (bytes > 0 || words === 0) this.#wordB(from, m);
    } else {
      let from = 0;
      let body = 0;
      for (let p = 0; p < m;) {
        const c = b[p];
        const len = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
        const piece = len === 1 ? Q_WIDTH[c] : 3 * len;
        if (body + piece > max - WORD_OVERHEAD && body > 0) {
          this.#wordQ(from, p, body);
          from = p;
          body = 0;
          max = MAX_WORD;
          words++;
        }
        body += piece;
        p += len;
      }
      if (body > 0 || words === 0) this.#wordQ(from, m, body);
    }
  }

  /**
   * `units[s, e)` as UTF-8 in the scratch buffer (lone surrogates as U+FFFD);
   * returns the length and sets {@link #qLength}.
   */
  #toUtf8(s: number, e: number): number {
    if (3 * (e - s) > this.#utf8.length) this.#utf8 = new Uint8Array(3 * (e - s) * 2);
    const u = this.#units;
    const dst = this.#utf8;
    let at = 0;
    let q = 0; // Q characters for the ASCII bytes, less 3 for each (every other byte takes 3)
    for (let i = s; i < e; i++) {
      let c = u[i];
      if (c < 0x80) {
        dst[at++] = c;
        q += Q_WIDTH[c] - 3;
        continue;
      }
      if (c < 0x800) {
        dst[at++] = 0xc0 | (c >> 6);
        dst[at++] = 0x80 | (c & 63);
        continue;
      }
      if ((c & 0xf800) === 0xd800) {
        if (c < 0xdc00 && i + 1 < e && (u[i + 1] & 0xfc00) === 0xdc00) {
          c = 0x10000 + ((c - 0xd800) << 10) + (u[i + 1] - 0xdc00);
          i++;
          dst[at++] = 0xf0 | (c >> 18);
          dst[at++] = 0x80 | ((c >> 12) & 63);
          dst[at++] = 0x80 | ((c >> 6) & 63);
          dst[at++] = 0x80 | (c & 63);
          continue;
        }
        c = 0xfffd;
      }
      dst[at++] = 0xe0 | (c >> 12);
      dst[at++] = 0x80 | ((c >> 6) & 63);
      dst[at++] = 0x80 | (c & 63);
    }
    this.#qLength = q + 3 * at;
    return at;
  }

  /** One B encoded-word for scratch bytes `[s, e)`. */
  #wordB(s: number, e: number): void {
    this.#space(WORD_OVERHEAD + Math.ceil((e - s) / 3) * 4);
    const out = this.#out;
    const src = this.#utf8;
    let o = this.#o;
    for (let i = 0; i < B_PREFIX.length; i++) out[o++] = B_PREFIX[i];
    for (let i = s; i < e; i += 3) {
      const rest = e - i;
      const v = (src[i] << 16) | ((rest > 1 ? src[i + 1] : 0) << 8) | (rest > 2 ? src[i + 2] : 0);
      out[o++] = B64_CODES[v >> 18];
      out[o++] = B64_CODES[(v >> 12) & 63];
      out[o++] = rest > 1 ? B64_CODES[(v >> 6) & 63] : 61;
      out[o++] = rest > 2 ? B64_CODES[v & 63] : 61;
    }
    out[o++] = 0x3f;
    out[o++] = 0x3d;
    this.#o = o;
  }

  /** One Q encoded-word for scratch bytes `[s, e)`, `body` characters long once encoded. */
  #wordQ(s: number, e: number, body: number): void {
    this.#space(WORD_OVERHEAD + body);
    const out = this.#out;
    const src = this.#utf8;
    let o = this.#o;
    for (let i = 0; i < Q_PREFIX.length; i++) out[o++] = Q_PREFIX[i];
    for (let i = s; i < e; i++) {
      const c = src[i];
      if (Q_WIDTH[c] === 1) out[o++] = c === 32 ? 0x5f : c;
      else {
        out[o++] = 61;
        out[o++] = HEX_CODES[c >> 4];
        out[o++] = HEX_CODES[c & 15];
      }
    }
    out[o++] = 0x3f;
    out[o++] = 0x3d;
    this.#o = o;
  }
}
