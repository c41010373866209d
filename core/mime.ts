/**
 * The general MIME formatters and encoders used by the message composer:
 * RFC 2047 encoded-words, header folding, display names, RFC 5322 dates,
 * quoted-printable and base64 bodies (RFC 2045). Pure functions on strings
 * and bytes; no I/O.
 *
 * These formatters (`formatUnstructured`, `formatMailbox`, `encodeBody`, ...)
 * return strings and byte arrays and are the reference, checked against
 * independent implementations (libmime, libqp, Buffer). The per-row writers
 * of the composer's hot path live in mime_writers.ts and must write exactly
 * the same bytes; mime_writers_test.ts holds the two to that.
 *
 * Dependencies go one way: mime_writers.ts imports from this module (the
 * limits, tables and the quoted-printable core loop below), never the other
 * way round, so this module imports nothing.
 *
 * @module
 */

/** Longest header line we aim for (RFC 5322 2.1.1 "SHOULD"), CRLF excluded. */
export const SOFT_LINE_LIMIT = 78;
/** Longest line allowed anywhere in a message (RFC 5322 2.1.1 "MUST"), CRLF excluded. */
export const HARD_LINE_LIMIT = 998;
/** Longest encoded-word (RFC 2047 section 2). */
export const MAX_WORD = 75;
/** A plain (unencoded) word longer than this is encoded so that it can be folded. */
export const MAX_PLAIN_WORD = 76;

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
/** Start of a Q encoded-word. */
export const WORD_PREFIX_Q = "=?utf-8?Q?";
/** Start of a B encoded-word. */
export const WORD_PREFIX_B = "=?utf-8?B?";
/** Characters an encoded-word takes besides its encoded text: `=?utf-8?Q?` and `?=`. */
export const WORD_OVERHEAD = 12;

/** Characters a Q encoded-word may carry literally, in any header position (RFC 2047 5(3)). */
export function qLiteral(c: number): boolean {
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
  const out = new Uint8Array(quotedPrintableBound(input.length));
  return out.subarray(0, encodeQuotedPrintableInto(input, 0, input.length, out, 0));
}

/** Bytes of ASCII hex digits, for `=XX` escapes. */
export const HEX_CODES: Uint8Array = Uint8Array.from(HEX, (c) => c.charCodeAt(0));
/** Bytes quoted-printable always writes as they are (space and tab depend on the position). */
const QP_LITERAL = new Uint8Array(256);
for (let b = 33; b <= 126; b++) QP_LITERAL[b] = b === 61 ? 0 : 1;

/** Most bytes quoted-printable can write for `n` input bytes (3 per byte, plus soft breaks). */
export function quotedPrintableBound(n: number): number {
  return n * 3 + Math.ceil((n * 3) / 73) * 3 + 3;
}

/**
 * The one quoted-printable encoder: write `src[start, end)` as
 * {@link encodeQuotedPrintable} describes into `out` from offset `o` and
 * return the end offset. `out` must have room for
 * {@link quotedPrintableBound}`(end - start)` bytes from `o`.
 */
export function encodeQuotedPrintableInto(
  src: Uint8Array,
  start: number,
  end: number,
  out: Uint8Array,
  o: number,
): number {
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
  return o;
}

/** Bytes of the base64 alphabet (RFC 4648). */
export const B64_CODES: Uint8Array = Uint8Array.from(B64, (c) => c.charCodeAt(0));

/** Base64 (RFC 2045 6.8) in lines of 76 characters, each ending with CRLF. */
export function encodeBase64Lines(input: Uint8Array): Uint8Array {
  const out = new Uint8Array(base64LinesBound(input.length));
  return out.subarray(0, encodeBase64LinesInto(input, 0, input.length, out, 0));
}

/** The most bytes {@link encodeBase64LinesInto} writes for `n` input bytes. */
export function base64LinesBound(n: number): number {
  const chars = Math.ceil(n / 3) * 4;
  return chars + Math.ceil(chars / 76) * 2;
}

/**
 * The one base64 line encoder: `src[start, end)` into `out` from `o`, which
 * must have {@link base64LinesBound}`(end - start)` bytes; returns the end offset.
 */
export function encodeBase64LinesInto(
  src: Uint8Array,
  start: number,
  end: number,
  out: Uint8Array,
  o: number,
): number {
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
  return o;
}
