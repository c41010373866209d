/**
 * A compact form of a `RowItem[]` batch that crosses a worker boundary
 * cheaply: a few strings and typed arrays instead of an array of objects (a
 * structured clone of objects costs about as much as parsing the CSV again).
 *
 * - `text`: every string of the batch, one after another: all the values of a
 *   recipient's record; the address of a duplicate or invalid row.
 * - `ends`: where each of those strings ends in `text` (the next starts there).
 * - `rows`: four numbers per row: line, tag (kind and flags), number of
 *   strings in `text`, and an extra number (a duplicate's first line, or an
 *   index into `strs`).
 * - `strs`: the rare strings that do not fit the above: an invalid row's code
 *   and reason, a recipient's address when it differs from its address cell
 *   (an IDN domain in punycode).
 *
 * Lines are kept as unsigned 32-bit numbers, as the duplicate table keeps them.
 *
 * @module
 */

import type { RecipientOptions, RowItem } from "./recipients.ts";

/** One batch of row items in compact form (see the module doc). */
export interface EncodedRows {
  /** The batch's strings, concatenated. */
  readonly text: string;
  /** End offset in `text` of each string. */
  readonly ends: Uint32Array<ArrayBuffer>;
  /** Four numbers per row: line, tag, string count, extra. */
  readonly rows: Uint32Array<ArrayBuffer>;
  /** Codes and reasons of invalid rows; recipient addresses that differ from the cell. */
  readonly strs: string[];
}

// ---------------------------------------------------------------------------
// The messages between ParallelRecipientReader and its worker.

/** What the header row decided: the reader's getters. */
export interface Meta {
  readonly columns: string[];
  readonly hasHeader: boolean;
  readonly addressColumn: number;
}

/** Messages from the main thread to the worker. */
export type ToWorker =
  | { t: "start"; opts: RecipientOptions }
  | { t: "chunk"; bytes: Uint8Array }
  | { t: "end" }
  | { t: "fail" }
  | { t: "more" };

/** Messages from the worker to the main thread. */
export type FromWorker =
  | { t: "read" }
  | { t: "rows"; rows: EncodedRows; meta?: Meta }
  | { t: "done"; meta?: Meta }
  | { t: "error"; name: string; message: string; input: boolean; meta?: Meta };

// ---------------------------------------------------------------------------

/** Numbers per row in {@link EncodedRows.rows}. */
const STRIDE = 4;
const KIND_RECIPIENT = 0;
const KIND_DUPLICATE = 1;
const KIND_INVALID = 2;
const KIND_MASK = 3;
/** The recipient's address is `strs[extra]`, not its address cell. */
const FLAG_OWN_ADDRESS = 4;
/** The recipient needs SMTPUTF8. */
const FLAG_SMTP_UTF8 = 8;

/**
 * Encode a batch. `column` is the reader's address column (0-based); a
 * recipient whose address equals that cell stores it only once.
 */
export function encodeRows(items: readonly RowItem[], column: number): EncodedRows {
  const n = items.length;
  const rows = new Uint32Array(n * STRIDE);
  let strings = 0;
  for (let i = 0; i < n; i++) {
    const item = items[i];
    strings += item.kind === "recipient" ? item.recipient.values.length : 1;
  }
  const ends = new Uint32Array(strings);
  const strs: string[] = [];
  // Appending builds a rope that postMessage flattens once (cheaper than join()).
  let text = "";
  let end = 0;
  let s = 0;
  for (let i = 0, j = 0; i < n; i++, j += STRIDE) {
    const item = items[i];
    switch (item.kind) {
      case "recipient": {
        const r = item.recipient;
        const values = r.values;
        const count = values.length;
        for (let k = 0; k < count; k++) {
          const v = values[k];
          text += v;
          end += v.length;
          ends[s++] = end;
        }
        let tag = KIND_RECIPIENT;
        if (r.smtpUtf8) tag |= FLAG_SMTP_UTF8;
        if (r.address !== values[column]) {
          tag |= FLAG_OWN_ADDRESS;
          rows[j + 3] = strs.length;
          strs.push(r.address);
        }
        rows[j] = r.line;
        rows[j + 1] = tag;
        rows[j + 2] = count;
        break;
      }
      case "duplicate":
        text += item.address;
        end += item.address.length;
        ends[s++] = end;
        rows[j] = item.line;
        rows[j + 1] = KIND_DUPLICATE;
        rows[j + 2] = 1;
        rows[j + 3] = item.firstLine;
        break;
      case "invalid":
        text += item.address;
        end += item.address.length;
        ends[s++] = end;
        rows[j] = item.line;
        rows[j + 1] = KIND_INVALID;
        rows[j + 2] = 1;
        rows[j + 3] = strs.length;
        strs.push(item.code, item.reason);
        break;
    }
  }
  return { text, ends, rows, strs };
}

/**
 * Decode a batch made by {@link encodeRows} with the same `column`: the same
 * items, in order, with equal values (recipients' `values` are substrings of
 * `text`).
 */
export function decodeRows(batch: EncodedRows, column: number): RowItem[] {
  const { text, ends, rows, strs } = batch;
  const n = rows.length / STRIDE;
  const items: RowItem[] = new Array(n);
  let pos = 0;
  let s = 0;
  for (let i = 0, j = 0; i < n; i++, j += STRIDE) {
    const line = rows[j];
    const tag = rows[j + 1];
    const kind = tag & KIND_MASK;
    if (kind === KIND_RECIPIENT) {
      const count = rows[j + 2];
      const values: string[] = new Array(count);
      for (let k = 0; k < count; k++) {
        const e = ends[s++];
        values[k] = text.slice(pos, e);
        pos = e;
      }
      items[i] = {
        kind: "recipient",
        recipient: {
          line,
          address: (tag & FLAG_OWN_ADDRESS) !== 0 ? strs[rows[j + 3]] : values[column],
          values,
          smtpUtf8: (tag & FLAG_SMTP_UTF8) !== 0,
        },
      };
      continue;
    }
    const e = ends[s++];
    const address = text.slice(pos, e);
    pos = e;
    if (kind === KIND_DUPLICATE) {
      items[i] = { kind: "duplicate", line, address, firstLine: rows[j + 3] };
    } else {
      const x = rows[j + 3];
      items[i] = { kind: "invalid", line, address, code: strs[x], reason: strs[x + 1] };
    }
  }
  return items;
}
