/**
 * Low-level MIME encoders used by the message composer: RFC 2047 encoded-words,
 * header folding, display names, RFC 5322 dates, quoted-printable and base64
 * bodies (RFC 2045). Pure functions on strings and bytes; no I/O.
 *
 * Two layers: the formatters (`formatUnstructured`, `formatMailbox`,
 * `encodeBody`, ...) return strings and byte arrays and are the reference,
 * checked against independent implementations; the per-row writers
 * (`HeaderWriter`, `writeBody`, `writeQuotedPrintable`, ...) write exactly the
 * same bytes straight into a {@link ChunkWriter} slab, without allocating,
 * for the composer's hot path. The tests hold the two to the same bytes.
 *
 * @module
 */

/** Longest header line we aim for (RFC 5322 2.1.1 "SHOULD"), CRLF excluded. */
export const SOFT_LINE_LIMIT = 78;
/** Longest line allowed anywhere in a message (RFC 5322 2.1.1 "MUST"), CRLF excluded. */
export const HARD_LINE_LIMIT = 998;
/** Longest encoded-word (RFC 2047 section 2). */
const MAX_WORD = 75;
/** A plain (unencoded) word longer than this is encoded so that it can be folded. */
const MAX_PLAIN_WORD = 76;

const encoder = new TextEncoder();

// C0 controls (HT included: it only ever reaches headers inside encoded-words
// or as a space), DEL, C1 controls, and the Unicode line and paragraph separators.
// deno-lint-ignore no-control-regex -- control characters are what this matches
const HEADER_UNSAFE = /\r\n|[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]/g;
// deno-lint-ignore no-control-regex -- control characters are what this matches
const HEADER_UNSAFE_TEST = /[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]/;

/**
 * Make text safe for a header: CRLF, CR, LF and every other control character
 * (except tab) become one space each (a CRLF pair becomes a single space), so
 * data can never start a new header line.
 */
export function sanitizeHeaderText(text: string): string {
  return HEADER_UNSAFE_TEST.test(text) ? text.replace(HEADER_UNSAFE, " ") : text;
}

const NEWLINE = /\r\n|\r|\n/g;
const LONE_NEWLINE = /\r(?!\n)|(?<!\r)\n/;

/** Turn every line end (CRLF, lone CR, lone LF) into CRLF. */
export function normalizeNewlines(text: string): string {
  return LONE_NEWLINE.test(text) ? text.replace(NEWLINE, "\r\n") : text;
}

const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

function pad2(n: number): string {
  return n < 10 ? "0" + n : String(n);
}

/** Format a time (ms since the epoch) as an RFC 5322 date-time in UTC: `Thu, 01 Jan 2026 09:05:00 +0000`. */
export function formatDate(ms: number): string {
  const d = new Date(ms);
  if (Number.isNaN(d.getTime())) {
    throw new RangeError(`Cannot format date: ${ms} is not a valid time`);
  }
  return `${DAYS[d.getUTCDay()]}, ${pad2(d.getUTCDate())} ${
    MONTHS[d.getUTCMonth()]
  } ${d.getUTCFullYear()} ` +
    `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())} +0000`;
}

// ---------------------------------------------------------------------------
// Encoded-words (RFC 2047)

const HEX = "0123456789ABCDEF";
const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const WORD_PREFIX_Q = "=?utf-8?Q?";
const WORD_PREFIX_B = "=?utf-8?B?";
const WORD_OVERHEAD = 12; // "=?utf-8?Q?" + "?="

/** Characters a Q encoded-word may carry literally, in any header position (RFC 2047 5(3)). */
function qLiteral(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) ||
    c === 0x21 || c === 0x2a || c === 0x2b || c === 0x2d || c === 0x2f;
}

function utf8Length(cp: number): number {
  return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
}

function qEncodeCodePoint(cp: number): string {
  if (cp < 0x80) {
    if (qLiteral(cp)) return String.fromCharCode(cp);
    if (cp === 0x20) return "_";
    return "=" + HEX[cp >> 4] + HEX[cp & 15];
  }
  let out = "";
  for (const b of encoder.encode(String.fromCodePoint(cp))) out += "=" + HEX[b >> 4] + HEX[b & 15];
  return out;
}

function base64(bytes: Uint8Array): string {
  let out = "";
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    out += B64[n >> 18] + B64[(n >> 12) & 63] + B64[(n >> 6) & 63] + B64[n & 63];
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i] << 16;
    out += B64[n >> 18] + B64[(n >> 12) & 63] + "==";
  } else if (rest === 2) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8);
    out += B64[n >> 18] + B64[(n >> 12) & 63] + B64[(n >> 6) & 63] + "=";
  }
  return out;
}

/** Whether B encoding is shorter than Q for this text (mostly non-ASCII text). */
function preferBase64(text: string): boolean {
  let q = 0;
  let bytes = 0;
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    const n = utf8Length(cp);
    bytes += n;
    q += n === 1 ? (qLiteral(cp) || cp === 0x20 ? 1 : 3) : 3 * n;
  }
  return Math.ceil(bytes / 3) * 4 < q;
}

/**
 * Encode text as RFC 2047 encoded-words (UTF-8, B or Q, whichever is shorter),
 * each at most 75 characters and never splitting a UTF-8 sequence (nor a code
 * point). The first word is at most `firstMax` characters long when that leaves
 * room for at least one character; later words are at most 75. Adjacent
 * encoded-words are joined by folding whitespace, which decoders drop, so the
 * words concatenate back to exactly `text`. Q words use only characters that
 * are legal in every position, display names included.
 */
export function encodeWords(text: string, firstMax = MAX_WORD): string[] {
  const words: string[] = [];
  let max = Math.min(firstMax, MAX_WORD);
  if (preferBase64(text)) {
    let chunk = "";
    let bytes = 0;
    for (const ch of text) {
      const n = utf8Length(ch.codePointAt(0)!);
      const room = Math.floor((max - WORD_OVERHEAD) / 4) * 3;
      if (bytes + n > room && bytes > 0) {
        words.push(WORD_PREFIX_B + base64(encoder.encode(chunk)) + "?=");
        chunk = "";
        bytes = 0;
        max = MAX_WORD;
      }
      chunk += ch;
      bytes += n;
    }
    if (bytes > 0 || words.length === 0) {
      words.push(WORD_PREFIX_B + base64(encoder.encode(chunk)) + "?=");
    }
  } else {
    let body = "";
    for (const ch of text) {
      const piece = qEncodeCodePoint(ch.codePointAt(0)!);
      if (body.length + piece.length > max - WORD_OVERHEAD && body.length > 0) {
        words.push(WORD_PREFIX_Q + body + "?=");
        body = "";
        max = MAX_WORD;
      }
      body += piece;
    }
    if (body.length > 0 || words.length === 0) words.push(WORD_PREFIX_Q + body + "?=");
  }
  return words;
}

// ---------------------------------------------------------------------------
// Header folding

/**
 * Builds one header field, folding before a space when a line would pass 78
 * characters. Tokens never split; a token is written after one space.
 */
export class HeaderBuilder {
  #out: string;
  #col: number;
  #start: number;

  /** Start the field `name:`. */
  constructor(name: string) {
    this.#out = name + ":";
    this.#col = this.#out.length;
    this.#start = this.#col;
  }

  /** The current column (characters on the current line). */
  get column(): number {
    return this.#col;
  }

  /** Room left on the current line for a token after one space. */
  get room(): number {
    return SOFT_LINE_LIMIT - this.#col - 1;
  }

  /**
   * Append ` token`, folding first (CRLF, then the space starts the next line)
   * when the token does not fit and the line already holds something besides
   * the field name. An empty token (a second space) is never a fold point.
   */
  add(token: string): void {
    if (
      token.length > 0 && this.#col > this.#start && this.#col + 1 + token.length > SOFT_LINE_LIMIT
    ) {
      this.#out += "\r\n";
      this.#col = 0;
    }
    this.#out += " " + token;
    this.#col += 1 + token.length;
  }

  /** Append encoded-words for `text`, sizing the first to fit this line if it can. */
  addEncoded(text: string): void {
    const room = this.room;
    const first = this.#col > this.#start && room < WORD_OVERHEAD + 9
      ? MAX_WORD
      : Math.max(room, WORD_OVERHEAD + 9);
    for (const word of encodeWords(text, first)) this.add(word);
  }

  /** The finished field, ending with CRLF. */
  finish(): string {
    return this.#out + "\r\n";
  }
}

/** A word that may stay unencoded in unstructured text: printable ASCII, short, no `=?`. */
function isPlainWord(word: string): boolean {
  return word.length <= MAX_PLAIN_WORD && PLAIN_WORD.test(word) && !word.includes("=?");
}
const PLAIN_WORD = /^[\x21-\x7e]*$/;

/**
 * True when `text` is printable ASCII (spaces allowed), does not start or end
 * with a space and holds no `=?`: it can go into a header as it is. A loop
 * beats a regular expression on the short strings of the hot path.
 */
function isSimpleText(text: string): boolean {
  const n = text.length;
  if (n === 0 || text.charCodeAt(0) === 32 || text.charCodeAt(n - 1) === 32) return false;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || (c === 0x3d && text.charCodeAt(i + 1) === 0x3f)) return false;
  }
  return true;
}

/** True when every character of `text` is printable ASCII (0x20-0x7E). */
export function isPrintableAscii(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

/**
 * One unstructured header field (`Subject`), ending with CRLF. The value is
 * sanitised (no control characters), words that are not plain printable ASCII
 * (and leading or trailing spaces, which parsers trim) are written as
 * encoded-words, and the line is folded at spaces.
 */
export function formatUnstructured(name: string, value: string): string {
  if (name.length + 2 + value.length <= SOFT_LINE_LIMIT && isSimpleText(value)) {
    return name + ": " + value + "\r\n";
  }
  value = sanitizeHeaderText(value);
  const h = new HeaderBuilder(name);
  if (value.length === 0) return h.finish();
  const words = value.split(" ");
  const last = words.length - 1;
  let first = -1;
  let end = -1;
  for (let i = 0; i <= last; i++) {
    const w = words[i];
    const plain = w.length === 0 ? i !== 0 && i !== last : isPlainWord(w);
    if (!plain) {
      if (first < 0) first = i;
      end = i;
    }
  }
  if (first < 0) {
    for (const w of words) h.add(w);
    return h.finish();
  }
  for (let i = 0; i < first; i++) h.add(words[i]);
  h.addEncoded(words.slice(first, end + 1).join(" "));
  for (let i = end + 1; i <= last; i++) h.add(words[i]);
  return h.finish();
}

const ATOM_TEXT = /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+$/;
const PRINTABLE = /^[\x20-\x7e]*$/;

/**
 * Append a display name (RFC 5322 phrase) to a header: atoms when it is plain,
 * a quoted-string when it is printable ASCII with specials (`,` `"` `<` ...),
 * encoded-words when it holds non-ASCII, leading, trailing or repeated spaces,
 * or is too long to fold. The name is sanitised first.
 */
export function addDisplayName(h: HeaderBuilder, name: string): void {
  const words = name.split(" ");
  if (
    words.every((w) =>
      w.length > 0 && w.length <= MAX_PLAIN_WORD && ATOM_TEXT.test(w) && !w.includes("=?")
    )
  ) {
    for (const w of words) h.add(w);
    return;
  }
  if (
    PRINTABLE.test(name) && name.length <= 60 && !name.includes("=?") && name.trim() === name &&
    !name.includes("  ")
  ) {
    h.add('"' + name.replace(/["\\]/g, "\\$&") + '"');
    return;
  }
  h.addEncoded(name);
}

/**
 * One address header field (`From`, `To`, `Reply-To`) with one mailbox, ending
 * with CRLF: `Name <address>`, or the bare address when the name is empty.
 * The address is written as given (it must already be valid; a UTF-8 local
 * part is allowed by RFC 6532 when the message travels with SMTPUTF8).
 */
export function formatMailbox(field: string, name: string, address: string): string {
  name = sanitizeHeaderText(name);
  if (name.length === 0) return field + ": " + address + "\r\n";
  const h = new HeaderBuilder(field);
  addDisplayName(h, name);
  h.add("<" + address + ">");
  return h.finish();
}

/**
 * An extra header field given by the user. ASCII values (structured ones such
 * as `List-Unsubscribe` included) are written as they are, folded at spaces;
 * non-ASCII values become encoded-words like a subject.
 */
export function formatExtraHeader(name: string, value: string): string {
  if (!PRINTABLE_OR_TAB.test(value)) return formatUnstructured(name, value);
  const h = new HeaderBuilder(name);
  for (const w of value.split(" ")) h.add(w);
  return h.finish();
}
const PRINTABLE_OR_TAB = /^[\x20-\x7e\t]*$/;

// ---------------------------------------------------------------------------
// Bodies (RFC 2045)

/** A content-transfer-encoding this module produces. */
export type TransferEncoding = "7bit" | "8bit" | "quoted-printable" | "base64";

/** An encoded body: its transfer encoding and bytes (CRLF line ends, ending with CRLF). */
export interface EncodedBody {
  readonly encoding: TransferEncoding;
  readonly bytes: Uint8Array;
}

const SEVEN_BIT_TEXT = /^[\x20-\x7e\t\r\n]*$/;
// deno-lint-ignore no-control-regex -- control characters are what this matches
const EIGHT_BIT_UNSAFE = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/;

/** True when no line of `text` (CRLF-separated) is longer than `limit` UTF-16 units. */
function linesWithin(text: string, limit: number): boolean {
  if (text.length <= limit) return true;
  let start = 0;
  for (;;) {
    const at = text.indexOf("\r\n", start);
    const end = at < 0 ? text.length : at;
    if (end - start > limit) return false;
    if (at < 0) return true;
    start = at + 2;
  }
}

/** True when no line of `bytes` is longer than `limit` octets. */
function byteLinesWithin(bytes: Uint8Array, limit: number): boolean {
  let col = 0;
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] === 10) col = 0;
    else if (++col > limit + 1) return false; // +1: the CR of CRLF
  }
  return true;
}

/**
 * Whether `text` (CRLF line ends) can travel as 7bit: printable ASCII, tabs
 * and CRLF only, every line at most 998 octets.
 */
export function isSevenBit(text: string): boolean {
  return SEVEN_BIT_TEXT.test(text) && !LONE_NEWLINE.test(text) &&
    linesWithin(text, HARD_LINE_LIMIT);
}

/**
 * Encode a body (CRLF line ends, ending with CRLF) for transfer: 7bit when it
 * can be; else 8bit when allowed and safe; else quoted-printable, or base64
 * when that is shorter (mostly non-ASCII text). `avoid` is a string (the MIME
 * boundary) that must not appear in a 7bit or 8bit body; when it does, the
 * body is encoded instead (neither QP nor base64 output can contain `=_`).
 */
export function encodeBody(text: string, allow8bit: boolean, avoid?: string): EncodedBody {
  const clash = avoid !== undefined && text.includes(avoid);
  if (!clash && isSevenBit(text)) return { encoding: "7bit", bytes: encoder.encode(text) };
  const bytes = encoder.encode(text);
  if (
    !clash && allow8bit && !EIGHT_BIT_UNSAFE.test(text) && !LONE_NEWLINE.test(text) &&
    byteLinesWithin(bytes, HARD_LINE_LIMIT)
  ) {
    return { encoding: "8bit", bytes };
  }
  if (base64IsShorter(escapeCount(bytes), bytes.length)) {
    return { encoding: "base64", bytes: encodeBase64Lines(bytes) };
  }
  return { encoding: "quoted-printable", bytes: encodeQuotedPrintable(bytes) };
}

/**
 * How many of `bytes` quoted-printable writes as `=XX` wherever they are:
 * 8-bit bytes, `=`, and control characters other than tab, CR and LF.
 */
export function escapeCount(bytes: Uint8Array): number {
  let escapes = 0;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    if (b > 126 || (b < 32 && b !== 9 && b !== 10 && b !== 13) || b === 61) escapes++;
  }
  return escapes;
}

/**
 * Whether a body of `length` bytes with `escapes` of them escaped
 * ({@link escapeCount}) goes as base64 rather than quoted-printable.
 */
export function base64IsShorter(escapes: number, length: number): boolean {
  return escapes * 2 > length / 3;
}

/**
 * Quoted-printable (RFC 2045 6.7): lines of at most 76 characters with soft
 * breaks (`=` CRLF), CRLF kept as hard breaks, `=`, controls, 8-bit bytes and
 * whitespace before a line end escaped. A `.` at the start of a line is
 * written `=2E`, so SMTP dot-stuffing never has to touch the body.
 */
export function encodeQuotedPrintable(input: Uint8Array): Uint8Array {
  // One implementation: the per-row writer, into a buffer of its own.
  const n = input.length;
  const w = new ChunkWriter(n * 3 + Math.ceil((n * 3) / 73) * 3 + 3);
  writeQuotedPrintable(w, input, 0, n);
  return w.finish();
}

const B64_CODES = Uint8Array.from(B64, (c) => c.charCodeAt(0));

/** Base64 (RFC 2045 6.8) in lines of 76 characters, each ending with CRLF. */
export function encodeBase64Lines(input: Uint8Array): Uint8Array {
  const n = input.length;
  const chars = Math.ceil(n / 3) * 4;
  const out = new Uint8Array(chars + Math.ceil(chars / 76) * 2);
  let o = 0;
  let col = 0;
  for (let i = 0; i < n; i += 3) {
    const rest = n - i;
    const v = (input[i] << 16) | ((rest > 1 ? input[i + 1] : 0) << 8) |
      (rest > 2 ? input[i + 2] : 0);
    out[o++] = B64_CODES[v >> 18];
    out[o++] = B64_CODES[(v >> 12) & 63];
    out[o++] = rest > 1 ? B64_CODES[(v >> 6) & 63] : 61;
    out[o++] = rest > 2 ? B64_CODES[v & 63] : 61;
    col += 4;
    if (col === 76) {
      out[o++] = 13;
      out[o++] = 10;
      col = 0;
    }
  }
  if (col > 0) {
    out[o++] = 13;
    out[o++] = 10;
  }
  return out.subarray(0, o);
}

// ---------------------------------------------------------------------------
// Building chunks

// deno-lint-ignore no-control-regex -- control characters are what this matches
const ADDRESS_UNSAFE = /[\x00-\x1f\x7f-\x9f<>\u2028\u2029]/;

/**
 * Writes the bytes of one message part after another into a large shared
 * buffer (a slab) and hands each finished part out as a view of it. One small
 * `Uint8Array` per message costs more than the encoding itself, and a string
 * built from many pieces costs a flattening copy; writing pieces straight into
 * the slab avoids both. A region is written once and never reused, so the
 * views stay immutable; a slab is freed when its last view is.
 */
export class ChunkWriter {
  readonly #slabSize: number;
  #buf = new Uint8Array(0);
  #start = 0;
  #at = 0;

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
    const next = new Uint8Array(Math.max(this.#slabSize, (used + n) * 2));
    next.set(this.#buf.subarray(this.#start, this.#at));
    this.#buf = next;
    this.#start = 0;
    this.#at = used;
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
    const chunk = this.#buf.subarray(this.#start, this.#at);
    this.#start = this.#at;
    return chunk;
  }
}

// ---------------------------------------------------------------------------
// Per-row writers: the bytes of the formatters above, written straight into a
// ChunkWriter from reusable scratch buffers, without building strings, arrays
// or intermediate byte buffers. The formatters above stay the reference; the
// tests check that both write the same bytes.

const HEX_CODES = Uint8Array.from(HEX, (c) => c.charCodeAt(0));
/** Bytes quoted-printable always writes as they are (space and tab depend on the position). */
const QP_LITERAL = new Uint8Array(256);
for (let b = 33; b <= 126; b++) QP_LITERAL[b] = b === 61 ? 0 : 1;
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
 * {@link encodeQuotedPrintable} returns for it.
 */
export function writeQuotedPrintable(
  w: ChunkWriter,
  src: Uint8Array,
  start: number,
  end: number,
): void {
  const n = end - start;
  let o = w.reserve(n * 3 + Math.ceil((n * 3) / 73) * 3 + 3);
  const out = w.slab;
  let col = 0;
  for (let i = start; i < end; i++) {
    const b = src[i];
    // Most bytes: literal, mid-line, far from the soft line limit.
    if (QP_LITERAL[b] === 1 && col < 75 && (b !== 46 || col > 0)) {
      out[o++] = b;
      col++;
      continue;
    }
    if (b === 13 && i + 1 < end && src[i + 1] === 10) {
      out[o++] = 13;
      out[o++] = 10;
      col = 0;
      i++;
      continue;
    }
    const atLineEnd = i + 1 === end || (i + 2 < end && src[i + 1] === 13 && src[i + 2] === 10);
    let literal = b === 32 || b === 9 ? !atLineEnd : QP_LITERAL[b] === 1;
    if (b === 46 && col === 0) literal = false;
    let need = literal ? 1 : 3;
    if (col + need > (atLineEnd ? 76 : 75)) {
      out[o++] = 61;
      out[o++] = 13;
      out[o++] = 10;
      col = 0;
      if (b === 46) {
        literal = false;
        need = 3;
      }
    }
    if (literal) {
      out[o++] = b;
    } else {
      out[o++] = 61;
      out[o++] = HEX_CODES[b >> 4];
      out[o++] = HEX_CODES[b & 15];
    }
    col += need;
  }
  w.commit(o);
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
  const chars = Math.ceil((end - start) / 3) * 4;
  let o = w.reserve(chars + Math.ceil(chars / 76) * 2);
  const out = w.slab;
  let col = 0;
  for (let i = start; i < end; i += 3) {
    const rest = end - i;
    const v = (src[i] << 16) | ((rest > 1 ? src[i + 1] : 0) << 8) | (rest > 2 ? src[i + 2] : 0);
    out[o++] = B64_CODES[v >> 18];
    out[o++] = B64_CODES[(v >> 12) & 63];
    out[o++] = rest > 1 ? B64_CODES[(v >> 6) & 63] : 61;
    out[o++] = rest > 2 ? B64_CODES[v & 63] : 61;
    col += 4;
    if (col === 76) {
      out[o++] = 13;
      out[o++] = 10;
      col = 0;
    }
  }
  if (col > 0) {
    out[o++] = 13;
    out[o++] = 10;
  }
  w.commit(o);
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
