/**
 * CSV rows -> recipients: the address column, the header row, trimming,
 * validation and duplicate removal, in one streaming pass.
 *
 * Every CSV record becomes exactly one {@link RowItem}: a `recipient`, an
 * `invalid` row (with a code and a reason) or a `duplicate` (with the line of
 * the first occurrence). The header row, when there is one, becomes none.
 *
 * - Address column: the first by default; `column` picks another by header
 *   name or 1-based index. A name that no header cell matches, or an index
 *   beyond the first row, is a `RangeError` before any row is yielded.
 * - Header row (`header: "auto"`, the default): the first row is a header when
 *   its address cell is not a valid address AND either that cell looks like a
 *   label (after lower-casing and dropping everything but letters and digits it
 *   contains `mail`, or is `address`, `addresses`, `addr`, `recipient`,
 *   `recipients` or `to`) or no cell of the row contains `@`. A `column` given
 *   by name implies a header. `header: true`/`false` forces it.
 * - Values: every cell of the record is trimmed (JS `String#trim`).
 * - Validation: {@link checkAddress}; see `address.ts` for the rules and codes.
 *   Extra codes here: `csv` (a malformed record, e.g. a stray quote) and
 *   `column` (the row has no cell for the address column).
 * - Duplicates: two rows are duplicates when their {@link dedupeKey}s are
 *   equal (local part and domain lower-cased, IDN domain in punycode); the
 *   first row is sent, to its address as written, the later ones are reported
 *   with `firstLine`. The seen set is a {@link DedupeSet}: memory grows only with
 *   distinct addresses, about 34 bytes each.
 *
 * @module
 */

import { type CsvOptions, CsvParser, type CsvRecord, readCsvRecords } from "./csv.ts";
import { type AddressCheck, checkAddress, dedupeKey, isPlainAddress } from "./address.ts";
import { DedupeSet } from "./dedupe.ts";
import type { Recipient } from "./types.ts";

export { type AddressCheck, checkAddress, dedupeKey };

/** Options for {@link readRecipients}. */
export interface RecipientOptions extends CsvOptions {
  /**
   * The address column: a header name, or a 1-based index. A string of digits
   * that matches no header cell is taken as an index. Default 1 (the first column).
   */
  column?: string | number;
  /**
   * Whether the first row is a header: `true`, `false`, or `"auto"` (the
   * default) to detect it by the rule in the module doc.
   */
  header?: boolean | "auto";
  /**
   * The input's size in bytes, when known (a file): the duplicate table is
   * then sized once from the first chunk's bytes per row instead of doubling
   * as it fills. Only a hint; any value works.
   */
  sizeHint?: number;
}

/** What one CSV row became. */
export type RowItem =
  | { kind: "recipient"; recipient: Recipient }
  | { kind: "invalid"; line: number; address: string; code: string; reason: string }
  | { kind: "duplicate"; line: number; address: string; firstLine: number };

/** Marks a batch entry that took the fast path (valid ASCII address, sent as written). */
const PLAIN: AddressCheck = Object.freeze({ ok: true, address: "", smtpUtf8: false });

const LABELS = new Set(["address", "addresses", "addr", "recipient", "recipients", "to"]);

/** Whether a header cell reads like the name of an address column. */
function looksLikeLabel(cell: string): boolean {
  const word = cell.toLowerCase().replace(/[^a-z0-9]+/g, "");
  return word.includes("mail") || LABELS.has(word);
}

/** Trim every field in place (most fields need nothing, so check the ends first). */
/**
 * Trim every field in place. Returns the index of the first field holding
 * U+FFFD (what the decoder puts for bytes that are not UTF-8), or -1.
 */
function trimFields(fields: string[]): number {
  let bad = -1;
  for (let i = 0; i < fields.length; i++) {
    const f = fields[i];
    const n = f.length;
    if (n === 0) continue;
    const first = f.charCodeAt(0);
    const last = f.charCodeAt(n - 1);
    if (first <= 32 || first >= 127 || last <= 32 || last >= 127) fields[i] = f.trim();
    if (bad < 0 && f.indexOf("\uFFFD") >= 0) bad = i;
  }
  return bad;
}

function listColumns(cells: readonly string[]): string {
  return cells.length === 0 ? "(none)" : cells.map((c) => c === "" ? '""' : c).join(", ");
}

/**
 * A warning for a header name that appears twice, or undefined: a merge field
 * then takes the first of the two, which may not be what was meant.
 */
export function duplicateColumnWarning(columns: readonly string[]): string | undefined {
  const seen = new Map<string, number>();
  for (let i = 0; i < columns.length; i++) {
    const name = columns[i];
    if (name === "") continue;
    const first = seen.get(name);
    if (first !== undefined) {
      return `columns ${first + 1} and ${i + 1} are both named "${name}"; ` +
        `{{${name}}} takes column ${first + 1} (use {{${i + 1}}} for the other)`;
    }
    seen.set(name, i);
  }
  return undefined;
}

/**
 * Reads recipients from CSV bytes. Iterate it once with `for await`; each step
 * yields the items of one input chunk (never an empty batch). Reading is
 * pull-based: the next chunk is read only when the next batch is asked for.
 *
 * @example
 * ```ts
 * import { RecipientReader } from "./recipients.ts";
 * const csv = "email,name\nAnn@example.com,Ann\nann@EXAMPLE.com,Ann again\nnope,X\n";
 * const reader = new RecipientReader(ReadableStream.from([new TextEncoder().encode(csv)]));
 * for await (const batch of reader) {
 *   for (const item of batch) console.log(item.kind); // recipient, duplicate, invalid
 * }
 * console.log(reader.columns); // ["email", "name"]
 * ```
 */
export class RecipientReader implements AsyncIterable<RowItem[]> {
  readonly #input: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>;
  readonly #csv: CsvOptions;
  readonly #column: string | number;
  readonly #header: boolean | "auto";
  readonly #sizeHint: number | undefined;
  #columns: readonly string[] = [];
  #hasHeader = false;
  #addressColumn = 0;
  #started = false;
  readonly #seen = new DedupeSet(1 << 12);
  // Scratch space for one batch, reused.
  readonly #keys: string[] = [];
  readonly #checks: AddressCheck[] = [];
  #lines = new Uint32Array(0);
  #found = new Uint32Array(0);
  #positions = new Uint32Array(0);

  /**
   * Check the options (`TypeError`/`RangeError` for bad ones); nothing is read
   * until iteration starts.
   */
  constructor(
    input: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>,
    opts?: RecipientOptions,
  ) {
    this.#input = input;
    this.#csv = { delimiter: opts?.delimiter };
    new CsvParser(this.#csv); // validates the delimiter now
    const column = opts?.column ?? 1;
    if (typeof column === "number") {
      if (!Number.isInteger(column) || column < 1) {
        throw new RangeError(
          `Invalid column ${column}: give a header name or a 1-based index (1 is the first column)`,
        );
      }
    } else if (typeof column !== "string" || column.trim() === "") {
      throw new TypeError(
        `Invalid column ${JSON.stringify(column)}: give a header name or a 1-based index`,
      );
    }
    const header = opts?.header ?? "auto";
    if (header !== true && header !== false && header !== "auto") {
      throw new TypeError(
        `Invalid header option ${JSON.stringify(header)}: use true, false or "auto"`,
      );
    }
    if (typeof column === "string" && header === false && !/^\d+$/.test(column.trim())) {
      throw new RangeError(
        `Column "${column}" is a header name, but the header option is false; give a 1-based index instead`,
      );
    }
    this.#column = typeof column === "string" ? column.trim() : column;
    this.#header = header;
    this.#sizeHint = opts?.sizeHint;
  }

  /** Column names from the header row ([] when there is none). Set before the first batch is yielded. */
  get columns(): readonly string[] {
    return this.#columns;
  }

  /** Whether the first row was treated as a header (known once the first batch is yielded). */
  get hasHeader(): boolean {
    return this.#hasHeader;
  }

  /** Index (0-based) of the address column. */
  get addressColumn(): number {
    return this.#addressColumn;
  }

  /** Iterate the batches; a reader can be iterated only once. */
  [Symbol.asyncIterator](): AsyncIterator<RowItem[]> {
    if (this.#started) {
      throw new TypeError("RecipientReader can be iterated only once; create a new reader");
    }
    this.#started = true;
    return this.#run();
  }

  async *#run(): AsyncGenerator<RowItem[]> {
    let first = true;
    let bytes = 0;
    const input = this.#input;
    const hint = this.#sizeHint;
    async function* counted(): AsyncGenerator<Uint8Array> {
      for await (const chunk of input) {
        bytes += chunk.length;
        yield chunk;
      }
    }
    const source = hint === undefined ? input : counted();
    for await (const records of readCsvRecords(source, this.#csv)) {
      let start = 0;
      if (first) {
        first = false;
        if (this.#decide(records[0])) start = 1;
        if (hint !== undefined && bytes > 0 && hint > bytes) {
          // Rows expected in the whole input, from the first chunk's bytes per row (+10%).
          this.#seen.reserve((hint / bytes) * records.length * 1.1);
        }
      }
      const items = this.#items(records, start);
      if (items.length > 0) yield items;
    }
  }

  /**
   * Turn records (from `start`) into row items, in order. Valid addresses are
   * checked against the seen set as one batch (see {@link DedupeSet.addMany}).
   */
  #items(records: CsvRecord[], start: number): RowItem[] {
    const n = records.length - start;
    const items: RowItem[] = new Array(n);
    const keys = this.#keys;
    const lines = this.#lines.length >= n ? this.#lines : (this.#lines = new Uint32Array(n));
    const found = this.#found.length >= n ? this.#found : (this.#found = new Uint32Array(n));
    const positions = this.#positions.length >= n
      ? this.#positions
      : (this.#positions = new Uint32Array(n));
    const checks = this.#checks;
    let valid = 0;
    for (let i = 0; i < n; i++) {
      const record = records[start + i];
      const values = record.fields;
      const garbled = trimFields(values);
      const cell = values[this.#addressColumn];
      if (garbled >= 0 && garbled !== this.#addressColumn && record.error === undefined) {
        // A merge field that is not UTF-8 would go out garbled: report the row instead.
        items[i] = {
          kind: "invalid",
          line: record.line,
          address: cell ?? "",
          code: "encoding",
          reason: `column ${garbled + 1} is not valid UTF-8 (was the file saved as Latin-1 or ` +
            `Windows-1252? save it as UTF-8)`,
        };
        continue;
      }
      if (record.error === undefined && cell !== undefined && isPlainAddress(cell)) {
        // The common case: a valid ASCII address, sent as written; no AddressCheck needed.
        keys[valid] = cell;
        lines[valid] = record.line;
        positions[valid] = i;
        checks[valid] = PLAIN;
        valid++;
        continue;
      }
      const check = this.#check(record);
      if (!check.ok) {
        items[i] = {
          kind: "invalid",
          line: record.line,
          address: check.address,
          code: check.code ?? "syntax",
          reason: check.reason ?? "invalid address",
        };
        continue;
      }
      // ASCII case is folded by the fingerprint; a UTF-8 local part needs the full key.
      keys[valid] = check.smtpUtf8 ? dedupeKey(check.address) : check.address;
      lines[valid] = record.line;
      positions[valid] = i;
      checks[valid] = check;
      valid++;
    }
    this.#seen.addMany(keys, lines, valid, found);
    for (let v = 0; v < valid; v++) {
      const i = positions[v];
      const record = records[start + i];
      const check = checks[v];
      const firstLine = found[v];
      const address = check === PLAIN ? record.fields[this.#addressColumn] : check.address;
      items[i] = firstLine !== 0
        ? {
          kind: "duplicate",
          line: record.line,
          address: record.fields[this.#addressColumn],
          firstLine,
        }
        : {
          kind: "recipient",
          recipient: {
            line: record.line,
            address,
            values: record.fields,
            smtpUtf8: check.smtpUtf8,
          },
        };
    }
    keys.length = 0;
    checks.length = 0;
    return items;
  }

  /** Resolve the address column and the header from the first record; true when it is a header. */
  #decide(record: CsvRecord): boolean {
    const cells = record.fields;
    trimFields(cells);
    const column = this.#column;
    let index = -1;
    let byName = false;
    if (typeof column === "string") {
      index = cells.indexOf(column);
      if (index < 0) {
        const lower = column.toLowerCase();
        index = cells.findIndex((c) => c.toLowerCase() === lower);
      }
      byName = index >= 0 && this.#header !== false;
      if (index < 0 || !byName) {
        if (!/^\d+$/.test(column)) {
          throw new RangeError(
            `Column "${column}" not found; columns are: ${listColumns(cells)}`,
          );
        }
        index = Number(column) - 1;
      }
    } else {
      index = column - 1;
    }
    if (index >= cells.length || index < 0) {
      throw new RangeError(
        `Column ${index + 1} not found: line ${record.line} has ${cells.length} column${
          cells.length === 1 ? "" : "s"
        } (${listColumns(cells)})`,
      );
    }
    let header: boolean;
    if (byName) header = true;
    else if (this.#header !== "auto") header = this.#header;
    else {
      const cell = cells[index];
      header = !checkAddress(cell).ok &&
        (looksLikeLabel(cell) || !cells.some((c) => c.includes("@")));
    }
    this.#addressColumn = index;
    this.#hasHeader = header;
    this.#columns = header ? Object.freeze(cells.slice()) : [];
    return header;
  }

  /** Check a trimmed record's address cell; the address is as written when invalid. */
  #check(record: CsvRecord): AddressCheck {
    const values = record.fields;
    const column = this.#addressColumn;
    if (record.error !== undefined) {
      return {
        ok: false,
        address: values[column] ?? "",
        smtpUtf8: false,
        code: "csv",
        reason: `malformed CSV: ${record.error}`,
      };
    }
    if (column >= values.length) {
      return {
        ok: false,
        address: "",
        smtpUtf8: false,
        code: "column",
        reason: `row has ${values.length} column${
          values.length === 1 ? "" : "s"
        }; the address is in column ${column + 1}`,
      };
    }
    const check = checkAddress(values[column]);
    if (!check.ok) check.address = values[column];
    return check;
  }
}

/** Read recipients from CSV bytes: `new RecipientReader(input, opts)`. */
export function readRecipients(
  input: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>,
  opts?: RecipientOptions,
): RecipientReader {
  return new RecipientReader(input, opts);
}
