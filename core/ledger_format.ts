/**
 * The ledger's file format: how records are written (CSV, one line each, fields
 * guarded against spreadsheet formulas), read back (tolerating a torn last line)
 * and what a meta record holds. The ledger itself (ledger.ts) decides what to
 * write and what a resume does with what it reads.
 *
 * @module
 */
import type { RowStatus } from "./types.ts";

/** The largest line number a ledger records (and the line tombstone of ledger.ts). */
export const MAX_LINE = 2 ** 32 - 1;

const encoder = new TextEncoder();

/** The header row of every ledger file. */
export const LEDGER_HEADER = "line,address,status,code,reason,attempts,time,id,failure";

/** Format version written in the `code` field of meta records. */
export const LEDGER_FORMAT = "ledger/1";

/** What a meta record holds (the JSON in its `reason` field). */
export interface LedgerMeta {
  /** Campaign id: the same for every run on the same input; a forced run on a changed input gets a new one. */
  readonly campaign: string;
  /** 1 for the run that created the ledger, then 2, 3, ... */
  readonly run: number;
  /** Fingerprint of the input, when it could be taken. */
  readonly input?: string;
  /** Fingerprint of the template and recipient options. */
  readonly template?: string;
  /** Column names from the input's header row. */
  readonly columns?: readonly string[];
  /** True when this run accepted a changed input or template. */
  readonly forced?: boolean;
  readonly [key: string]: unknown;
}

/** A ledger problem: it belongs to another input, it is damaged, or it cannot be written. */
export class LedgerError extends Error {
  /** `changed` (input or template differ), `corrupt`, `foreign` (not a ledger), `io`. */
  readonly kind: "changed" | "corrupt" | "foreign" | "io";
  /** The ledger file. */
  readonly path: string;
  /** The input line the error is about, when it is about one (a row that changed). */
  readonly line: number | undefined;
  /** Make a ledger error. */
  constructor(
    kind: LedgerError["kind"],
    path: string,
    message: string,
    options?: ErrorOptions & { line?: number },
  ) {
    super(message, options);
    this.name = "LedgerError";
    this.kind = kind;
    this.path = path;
    this.line = options?.line;
  }
}

/** Why a field needs more than being written as it is. */
const SPECIAL = /[",\r\n]|^'*[=+\-@\t]/;
const FORMULA = /^'*[=+\-@\t]/;

/**
 * Write `s` as one CSV field: quoted when it holds a quote or comma, line
 * breaks made spaces, and a leading `=`, `+`, `-`, `@` or tab guarded with `'`
 * (spreadsheets would run it as a formula; see ledger.ts's module doc).
 */
export function csvField(s: string): string {
  if (s.length === 0 || !SPECIAL.test(s)) return s;
  let v = s.replace(/[\r\n]/g, " ");
  if (FORMULA.test(v)) v = "'" + v;
  return /[",]/.test(v) ? `"${v.replaceAll('"', '""')}"` : v;
}

/** ASCII codes a plain field cannot hold: LF, CR, quote, comma. */
const UNSAFE = new Uint8Array(128);
for (const c of [10, 13, 34, 44]) UNSAFE[c] = 1;

/**
 * Record bytes waiting to be written, built in place without intermediate
 * strings: plain ASCII fields (nearly all of them) are copied code unit by code
 * unit; a field that needs quoting, the formula guard or UTF-8 takes
 * {@link csvField} and `encodeInto`.
 */
export class RecordBuffer {
  bytes = new Uint8Array(1 << 18);
  length = 0;

  /** Make room for `n` more bytes. */
  room(n: number): void {
    if (this.length + n <= this.bytes.length) return;
    let size = this.bytes.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.bytes.subarray(0, this.length));
    this.bytes = next;
  }

  /** One byte (room must have been made). */
  byte(c: number): void {
    this.bytes[this.length++] = c;
  }

  /** Text known to be ASCII and safe as a field: status names, times (room must have been made). */
  ascii(s: string): void {
    const b = this.bytes;
    let at = this.length;
    for (let i = 0; i < s.length; i++) b[at++] = s.charCodeAt(i);
    this.length = at;
  }

  /** A whole number >= 0 (room must have been made). */
  int(n: number): void {
    if (n < 10) {
      this.bytes[this.length++] = 48 + n;
      return;
    }
    // Digits straight into the buffer: a string per line number adds up over a million rows.
    let digits = 1;
    for (let x = n; x >= 10; x = Math.floor(x / 10)) digits++;
    const b = this.bytes;
    let at = this.length + digits;
    this.length = at;
    do {
      b[--at] = 48 + (n % 10);
      n = Math.floor(n / 10);
    } while (n > 0);
  }

  /** One CSV field (see {@link csvField}); needs room for `3 * s.length` bytes. */
  field(s: string): void {
    const n = s.length;
    if (n === 0) return;
    const first = s.charCodeAt(0);
    // = + - @ tab and ' may need the formula guard: leave them to csvField.
    if (
      first === 61 || first === 43 || first === 45 || first === 64 || first === 9 || first === 39
    ) {
      this.#slow(s);
      return;
    }
    const b = this.bytes;
    let at = this.length;
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c >= 128 || UNSAFE[c] === 1) {
        this.#slow(s); // Nothing was committed: `length` still points before this field.
        return;
      }
      b[at++] = c;
    }
    this.length = at;
  }

  #slow(s: string): void {
    const v = csvField(s);
    this.room(v.length * 3);
    this.length += encoder.encodeInto(v, this.bytes.subarray(this.length)).written;
  }
}

/** Undo the formula guard of {@link csvField} on a parsed field. */
function unguard(s: string): string {
  return s.charCodeAt(0) === 39 && FORMULA.test(s) ? s.slice(1) : s;
}

/**
 * Split one ledger line into its fields (RFC 4180 quoting, no line breaks
 * inside fields). Returns undefined for a line with an unterminated quote.
 */
export function splitRecord(line: string): string[] | undefined {
  if (line.indexOf('"') < 0) return line.split(",");
  const out: string[] = [];
  let i = 0;
  const n = line.length;
  for (;;) {
    if (line.charCodeAt(i) === 34) {
      let value = "";
      let from = i + 1;
      for (;;) {
        const q = line.indexOf('"', from);
        if (q < 0) return undefined;
        value += line.slice(from, q);
        if (line.charCodeAt(q + 1) === 34) {
          value += '"';
          from = q + 2;
          continue;
        }
        i = q + 1;
        break;
      }
      out.push(value);
      if (i >= n) return out;
      if (line.charCodeAt(i) !== 44) return undefined;
      i++;
    } else {
      const c = line.indexOf(",", i);
      if (c < 0) {
        out.push(line.slice(i));
        return out;
      }
      out.push(line.slice(i, c));
      i = c + 1;
    }
  }
}

/** One parsed ledger record. */
export interface LedgerRecord {
  readonly line: number;
  readonly address: string;
  readonly status: RowStatus | "retry" | "meta";
  readonly code: string;
  readonly reason: string;
  readonly attempts: number;
  readonly time: string;
  readonly id: string;
  /** `permanent` or `transient` for a failed row, else empty. */
  readonly failure: string;
}

/** What {@link readLedger} found besides the records. */
export interface LedgerFileInfo {
  /** False when the file does not exist. */
  readonly exists: boolean;
  /** Bytes of whole records (including the header); a torn tail starts here. */
  readonly goodBytes: number;
  /** Total file size. */
  readonly size: number;
  /** True when the header is present. */
  readonly hasHeader: boolean;
}

/**
 * Read every record of the ledger at `path`, in file order, calling `visit`
 * with each. A torn last line (no final line break, or unparseable) is not
 * visited and is reported through `goodBytes`. Throws a `foreign` or `corrupt`
 * {@link LedgerError} for a file that is not a ledger or is damaged elsewhere.
 */
export async function readLedger(
  path: string,
  visit: (record: LedgerRecord, fields: readonly string[]) => void,
): Promise<LedgerFileInfo> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      return { exists: false, goodBytes: 0, size: 0, hasHeader: false };
    }
    throw new LedgerError(
      "io",
      path,
      `Cannot read the report ${path}: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
  const decoder = new TextDecoder();
  const buffer = new Uint8Array(1 << 20);
  let offset = 0; // bytes read so far
  let lastBreak = -1; // byte offset of the last LF seen
  let rest = "";
  let lineNo = 0;
  let hasHeader = false;
  let badAt = 0; // file line of the first bad record (it must be the last line)
  let badText = "";
  let goodBytes: number;
  const handle = (text: string) => {
    lineNo++;
    if (badAt !== 0) {
      throw new LedgerError(
        "corrupt",
        path,
        `The report ${path} is damaged at line ${badAt} (${
          JSON.stringify(badText.slice(0, 80))
        }): ` +
          `fix or delete that line, or use another --report file`,
      );
    }
    if (lineNo === 1) {
      const head = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
      if (head !== LEDGER_HEADER) {
        throw new LedgerError(
          "foreign",
          path,
          `${path} is not a mass-mailer report (its first line is ${
            JSON.stringify(head.slice(0, 60))
          }): ` +
            `it was left unchanged`,
        );
      }
      hasHeader = true;
      return;
    }
    const record = parseRecord(text);
    if (record === undefined) {
      badAt = lineNo;
      badText = text;
      return;
    }
    visit(record.record, record.fields);
  };
  try {
    for (;;) {
      const n = await file.read(buffer);
      if (n === null) break;
      const chunk = buffer.subarray(0, n);
      const nl = chunk.lastIndexOf(10);
      if (nl >= 0) lastBreak = offset + nl;
      offset += n;
      const text = rest + decoder.decode(chunk, { stream: true });
      let from = 0;
      for (;;) {
        const at = text.indexOf("\n", from);
        if (at < 0) break;
        const end = at > from && text.charCodeAt(at - 1) === 13 ? at - 1 : at;
        handle(text.slice(from, end));
        from = at + 1;
      }
      rest = text.slice(from);
    }
    rest += decoder.decode();
  } finally {
    file.close();
  }
  // A bad record on the very last line is a torn write: drop it with any text after it.
  if (badAt !== 0) {
    goodBytes = await byteOffsetOfLine(path, badAt);
  } else {
    goodBytes = lastBreak + 1;
  }
  if (!hasHeader && rest.length > 0 && LEDGER_HEADER.startsWith(rest)) {
    goodBytes = 0; // A torn header: the file was being created.
  } else if (!hasHeader && rest.length > 0) {
    throw new LedgerError(
      "foreign",
      path,
      `${path} is not a mass-mailer report (it starts with ${
        JSON.stringify(rest.slice(0, 60))
      }): ` +
        `it was left unchanged`,
    );
  }
  return { exists: true, goodBytes, size: offset, hasHeader };
}

/** Byte offset where 1-based file line `n` starts. */
async function byteOffsetOfLine(path: string, n: number): Promise<number> {
  const bytes = await Deno.readFile(path);
  let line = 1;
  for (let i = 0; i < bytes.length; i++) {
    if (line === n) return i;
    if (bytes[i] === 10) line++;
  }
  return bytes.length;
}

const STATUSES = new Set(["sent", "failed", "invalid", "duplicate", "suppressed", "retry", "meta"]);

function parseRecord(text: string): { record: LedgerRecord; fields: string[] } | undefined {
  const f = splitRecord(text);
  if (f === undefined || f.length < 9) return undefined;
  const line = Number(f[0]);
  const attempts = Number(f[5]);
  if (!Number.isSafeInteger(line) || line < 0 || line > MAX_LINE || f[0] === "") return undefined;
  if (!STATUSES.has(f[2]) || !(attempts >= 0) || f[5] === "") return undefined;
  if ((line === 0) !== (f[2] === "meta")) return undefined;
  return {
    record: {
      line,
      address: unguard(f[1]),
      status: f[2] as LedgerRecord["status"],
      code: unguard(f[3]),
      reason: unguard(f[4]),
      attempts,
      time: f[6],
      id: unguard(f[7]),
      failure: f[8],
    },
    fields: f,
  };
}

/** Parse the JSON of a meta record, or undefined when it is not one. */
export function parseMeta(record: LedgerRecord): LedgerMeta | undefined {
  try {
    const v = JSON.parse(record.reason);
    if (v && typeof v === "object" && typeof v.campaign === "string") return v as LedgerMeta;
  } catch {
    // Fall through.
  }
  return undefined;
}
