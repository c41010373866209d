/**
 * A streaming RFC 4180 CSV reader.
 *
 * {@link CsvParser} is the synchronous, incremental core: feed it decoded text in
 * pieces of any size and it returns the records completed so far, each with the
 * 1-based line on which it starts. {@link readCsvRecords} wraps it around a byte
 * stream (Web Streams or any async iterable), pulling the next chunk only when the
 * consumer asks for the next batch.
 *
 * Rules (RFC 4180, lenient where real files need it):
 * - Fields are separated by one delimiter character (default `,`).
 * - A field that starts with `"` is quoted: it may hold delimiters, line breaks
 *   and doubled quotes (`""` stands for one `"`).
 * - Records end at LF, CRLF or a lone CR, mixed freely. The last record needs no
 *   final line break. Empty lines are skipped but still counted.
 * - Lines are counted by LF, CRLF or lone CR, including the ones inside quoted
 *   fields, so `line` is what an editor shows.
 * - One UTF-8 byte order mark at the very start is dropped.
 * - A quote inside an unquoted field, or text after a closing quote, does not
 *   stop the reader: the record is returned with `error` set and the text kept
 *   as written. A quoted field still open at the end of the input is a
 *   `SyntaxError` naming the line where it opened.
 *
 * @example
 * ```ts
 * import { CsvParser } from "./csv.ts";
 * const parser = new CsvParser();
 * const records = [...parser.push('a,"b,\nc"\r\nd'), ...parser.finish()];
 * // [{ line: 1, fields: ["a", "b,\nc"] }, { line: 3, fields: ["d"] }]
 * if (records.length !== 2 || records[1].line !== 3) throw new Error("unexpected");
 * ```
 *
 * @module
 */

/** Options for {@link CsvParser} and {@link readCsvRecords}. */
export interface CsvOptions {
  /** The field separator: exactly one character, not a quote, CR or LF. Default `","`. */
  delimiter?: string;
}

/** One CSV record. */
export interface CsvRecord {
  /** 1-based line on which the record starts. */
  line: number;
  /** The record's fields, unquoted, in order (never trimmed). */
  fields: string[];
  /**
   * Set when the record is malformed (a stray quote, text after a closing
   * quote). The record is still returned, with its text kept as written.
   */
  error?: string;
}

/**
 * A record as the parser makes it: a class instance with a `slice`d fields array,
 * never literals, so V8 cannot "pretenure" records and keep the CSV text alive
 * until the next full collection (see NO_LITERALS in campaign.ts).
 */
class ParsedRecord implements CsvRecord {
  line: number;
  fields: string[];
  error: string | undefined = undefined;
  constructor(line: number, fields: string[]) {
    this.line = line;
    this.fields = fields;
  }
}

const LF = 10;
const CR = 13;
const QUOTE = 34;
const BOM = 0xfeff;

// Parser states.
/** Between records: nothing of the next record read yet. */
const RECORD_START = 0;
/** At the start of a field after a delimiter. */
const FIELD_START = 1;
/** Inside an unquoted field. */
const UNQUOTED = 2;
/** Inside a quoted field. */
const QUOTED = 3;
/** Just after a quote inside a quoted field: a closing quote or the first of `""`. */
const QUOTE_IN_QUOTED = 4;

/** Resolve and check the delimiter option. */
function resolveDelimiter(opts: CsvOptions | undefined): string {
  const delimiter = opts?.delimiter ?? ",";
  if (typeof delimiter !== "string" || delimiter.length !== 1) {
    throw new RangeError(
      `Invalid CSV delimiter ${
        JSON.stringify(delimiter)
      }: give exactly one character, such as "," or ";"`,
    );
  }
  if (delimiter === '"' || delimiter === "\r" || delimiter === "\n") {
    throw new RangeError(
      `Invalid CSV delimiter ${
        JSON.stringify(delimiter)
      }: a quote or line break cannot separate fields`,
    );
  }
  return delimiter;
}

/**
 * Synchronous incremental CSV parser: the core of {@link readCsvRecords}.
 *
 * Call {@link CsvParser.push} with each piece of decoded text (split anywhere,
 * even between CR and LF or inside `""`), then {@link CsvParser.finish} once at
 * the end. Work is linear in the input: a partial record is kept as parsed
 * state, never re-scanned.
 */
export class CsvParser {
  readonly #delimiter: string;
  readonly #delimiterCode: number;
  #state = RECORD_START;
  /** Fields of the current record completed so far. */
  readonly #fields: string[] = [];
  /** Text of the current field carried over from earlier chunks or before a `""`. */
  #buf = "";
  /** The current line (1-based). */
  #line = 1;
  /** Line on which the current record started. */
  #recordLine = 1;
  /** Line on which the current quoted field opened. */
  #quoteLine = 1;
  #error: string | undefined = undefined;
  /** Whether the last character of the previous chunk was CR. */
  #lastCR = false;
  #started = false;
  #finished = false;
  /** The fields of the record being read on the fast path (copied out with `slice`). */
  readonly #scratch: string[] = [];
  /** The records of the chunk being read (copied out with `slice`, see {@link ParsedRecord}). */
  readonly #out: CsvRecord[] = [];

  /** Create a parser; throws `RangeError` for a bad delimiter. */
  constructor(opts?: CsvOptions) {
    this.#delimiter = resolveDelimiter(opts);
    this.#delimiterCode = this.#delimiter.charCodeAt(0);
  }

  /** Feed the next piece of text; returns the records it completed (maybe none). */
  push(text: string): CsvRecord[] {
    if (this.#finished) throw new TypeError("CsvParser.push() called after finish()");
    if (text.length === 0) return [];
    if (!this.#started) {
      this.#started = true;
      if (text.charCodeAt(0) === BOM) {
        text = text.slice(1);
        if (text.length === 0) return [];
      }
    }
    const out = this.#out;
    this.#scan(text, out);
    this.#lastCR = text.charCodeAt(text.length - 1) === CR;
    const records = out.slice();
    out.length = 0;
    this.#scratch.length = 0; // not to keep the last record's text alive
    return records;
  }

  /**
   * Signal the end of input; returns the last record when it had no final line
   * break. Throws `SyntaxError` when a quoted field is still open.
   */
  finish(): CsvRecord[] {
    if (this.#finished) return [];
    this.#finished = true;
    const out: CsvRecord[] = [];
    switch (this.#state) {
      case RECORD_START:
        break;
      case QUOTED:
        throw new SyntaxError(
          `Line ${this.#quoteLine}: unterminated quoted field (opened here, still open at the end of the input); add the closing quote or double the quotes inside the field`,
        );
      default:
        // FIELD_START (a trailing delimiter), UNQUOTED and QUOTE_IN_QUOTED all end a field.
        this.#fields.push(this.#buf);
        this.#buf = "";
        this.#emit(out);
    }
    return out;
  }

  /** Close the current record and append it to `out`. */
  #emit(out: CsvRecord[]): void {
    const record = new ParsedRecord(this.#recordLine, this.#fields.slice());
    if (this.#error !== undefined) {
      record.error = this.#error;
      this.#error = undefined;
    }
    out.push(record);
    this.#fields.length = 0;
    this.#state = RECORD_START;
  }

  /** Parse one chunk. Fast path: whole quote-free lines, fields found with indexOf and sliced. */
  #scan(s: string, out: CsvRecord[]): void {
    const len = s.length;
    const delimiter = this.#delimiter;
    let pos = 0;
    // Cached positions of the next quote, LF, CR and delimiter at or after `pos`;
    // `len` when none. Each is searched again only once `pos` has passed it.
    let nextQuote = -1;
    let nextLF = -1;
    let nextCR = -1;
    let nextDelimiter = -1;
    while (pos < len) {
      if (this.#state === RECORD_START) {
        const c = s.charCodeAt(pos);
        if (c === LF) {
          // An empty line (or the LF of a CRLF that ended the previous record).
          if (!(pos > 0 ? s.charCodeAt(pos - 1) === CR : this.#lastCR)) this.#line++;
          pos++;
          continue;
        }
        if (c === CR) {
          this.#line++;
          pos++;
          continue;
        }
        if (nextQuote < pos) {
          nextQuote = s.indexOf('"', pos);
          if (nextQuote < 0) nextQuote = len;
        }
        if (nextLF < pos) {
          nextLF = s.indexOf("\n", pos);
          if (nextLF < 0) nextLF = len;
        }
        if (nextCR < pos) {
          nextCR = s.indexOf("\r", pos);
          if (nextCR < 0) nextCR = len;
        }
        const end = nextLF < nextCR ? nextLF : nextCR;
        if (end < len && nextQuote > end) {
          // A complete line without quotes: one record, fields sliced between delimiters.
          const fields = this.#scratch;
          let k = 0;
          for (;;) {
            if (nextDelimiter < pos) {
              nextDelimiter = s.indexOf(delimiter, pos);
              if (nextDelimiter < 0) nextDelimiter = len;
            }
            if (nextDelimiter >= end) break;
            fields[k++] = s.slice(pos, nextDelimiter);
            pos = nextDelimiter + 1;
          }
          fields[k++] = s.slice(pos, end);
          fields.length = k;
          out.push(new ParsedRecord(this.#line, fields.slice()));
          this.#line++;
          pos = end + 1;
          if (end === nextCR && pos < len && s.charCodeAt(pos) === LF) pos++;
          continue;
        }
        this.#recordLine = this.#line;
        this.#state = FIELD_START;
      }
      pos = this.#slow(s, pos, out);
    }
  }

  /**
   * Character-level state machine for the current record, from `i` until the
   * record ends (returns the index after its line break) or the chunk ends.
   */
  #slow(s: string, i: number, out: CsvRecord[]): number {
    const len = s.length;
    const d = this.#delimiterCode;
    let state = this.#state;
    let start = i; // start of the current field's text within `s`
    while (i < len) {
      const c = s.charCodeAt(i);
      switch (state) {
        case FIELD_START:
          if (c === QUOTE) {
            state = QUOTED;
            this.#quoteLine = this.#line;
            start = ++i;
          } else if (c === d) {
            this.#fields.push("");
            i++;
          } else if (c === LF || c === CR) {
            this.#fields.push("");
            this.#emit(out);
            return this.#lineBreak(s, i);
          } else {
            state = UNQUOTED;
            start = i;
          }
          break;
        case UNQUOTED:
          if (c === d) {
            this.#fields.push(this.#buf + s.slice(start, i));
            this.#buf = "";
            state = FIELD_START;
          } else if (c === LF || c === CR) {
            this.#fields.push(this.#buf + s.slice(start, i));
            this.#buf = "";
            this.#emit(out);
            return this.#lineBreak(s, i);
          } else if (c === QUOTE && this.#error === undefined) {
            this.#error = `quote inside unquoted field ${
              this.#fields.length + 1
            } on line ${this.#line}; enclose the field in quotes and double the quote`;
          }
          i++;
          break;
        case QUOTED: {
          let q = s.indexOf('"', i);
          if (q < 0) q = len;
          // Count the line breaks inside the quoted text.
          for (let k = i; k < q; k++) {
            const ch = s.charCodeAt(k);
            if (ch === CR) this.#line++;
            else if (ch === LF && !(k > 0 ? s.charCodeAt(k - 1) === CR : this.#lastCR)) {
              this.#line++;
            }
          }
          if (q === len) {
            i = len;
            break;
          }
          this.#buf += s.slice(start, q);
          state = QUOTE_IN_QUOTED;
          i = q + 1;
          break;
        }
        case QUOTE_IN_QUOTED:
          if (c === QUOTE) {
            this.#buf += '"';
            state = QUOTED;
            start = ++i;
          } else if (c === d) {
            this.#fields.push(this.#buf);
            this.#buf = "";
            state = FIELD_START;
            i++;
          } else if (c === LF || c === CR) {
            this.#fields.push(this.#buf);
            this.#buf = "";
            this.#emit(out);
            return this.#lineBreak(s, i);
          } else {
            if (this.#error === undefined) {
              this.#error = `unexpected text after the closing quote of field ${
                this.#fields.length + 1
              } on line ${this.#line}; double the quote if it belongs to the field`;
            }
            // Keep the text as written: the rest of the field is read as unquoted.
            state = UNQUOTED;
            start = i;
          }
          break;
      }
    }
    // The chunk ended inside the record: keep the field's text so far.
    if (state === UNQUOTED || state === QUOTED) this.#buf += s.slice(start, len);
    this.#state = state;
    return len;
  }

  /** Consume the line break at `i` that ended a record; returns the next index. */
  #lineBreak(s: string, i: number): number {
    this.#line++;
    if (s.charCodeAt(i) === CR && i + 1 < s.length && s.charCodeAt(i + 1) === LF) return i + 2;
    return i + 1;
  }
}

/**
 * Read CSV records from a byte stream (UTF-8, an optional BOM).
 *
 * Yields one batch of records per input chunk (empty batches are skipped) and
 * reads the next chunk only when the consumer asks for the next batch. Stopping
 * early (`break`) cancels the input stream. Throws `SyntaxError` for a quoted
 * field still open at the end, `RangeError` for a bad delimiter. Invalid UTF-8
 * becomes U+FFFD.
 *
 * @example
 * ```ts
 * import { readCsvRecords } from "./csv.ts";
 * const bytes = new TextEncoder().encode("\uFEFFemail\r\nann@example.com\r\n");
 * for await (const batch of readCsvRecords(ReadableStream.from([bytes]))) {
 *   for (const record of batch) console.log(record.line, record.fields);
 * }
 * ```
 */
export async function* readCsvRecords(
  input: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>,
  opts?: CsvOptions,
): AsyncGenerator<CsvRecord[]> {
  const parser = new CsvParser(opts);
  // The parser drops the BOM itself (also when it arrives split across chunks,
  // since the decoder keeps multi-byte sequences whole), so the decoder must keep it.
  const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
  for await (const chunk of input) {
    const records = parser.push(decoder.decode(chunk, { stream: true }));
    if (records.length > 0) yield records;
  }
  const tail = parser.push(decoder.decode());
  const last = parser.finish();
  if (tail.length > 0 || last.length > 0) yield tail.concat(last);
}
