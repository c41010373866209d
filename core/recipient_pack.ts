/**
 * A batch of recipients kept compactly while their messages are in flight.
 *
 * When a transport reads a message's bytes during `send` and never again
 * (`Transport.consumesOnSend`), the engine need not keep the bytes while it
 * waits for the answer: it keeps the recipients instead, and renders a message
 * again in the rare case it must be retried. A quarter of a million messages
 * can wait at once, so the recipients are packed: one flat string holding every
 * value, and `Int32Array`s of numbers and offsets, instead of an object, an array and a
 * few strings each (which would also keep the CSV text they were sliced from).
 *
 * @module
 */
import type { Recipient } from "./types.ts";

/** Per recipient: line, flags (bit 0 smtpUtf8, bit 1 address is a value), first value, value count. */
const INTS = 4;
const SMTP_UTF8 = 1;
const ADDRESS_IS_VALUE = 2;

/**
 * The text is built starting from this character (then cut off), so it is always a
 * concatenation of two or more pieces, never a single value that may itself be a
 * slice of the CSV text (see `pack`).
 */
const SEED = "\0";

/** Recipients packed into one string and offsets; see the module doc. */
export class RecipientPack {
  /** How many recipients. */
  readonly length: number;
  readonly #ints: Int32Array;
  /** End offset in `#text` of every piece (the address when separate, then each value). */
  readonly #ends: Int32Array;
  readonly #text: string;
  readonly #addressColumn: number;

  private constructor(
    length: number,
    ints: Int32Array,
    ends: Int32Array,
    text: string,
    addressColumn: number,
  ) {
    this.length = length;
    this.#ints = ints;
    this.#ends = ends;
    this.#text = text;
    this.#addressColumn = addressColumn;
  }

  /**
   * Pack `recipients`. `addressColumn` (0-based) is where the address usually
   * is among the values: when `values[addressColumn]` equals the address, the
   * address is not stored twice. Lines must fit in 31 bits.
   */
  static pack(recipients: readonly Recipient[], addressColumn: number): RecipientPack {
    const n = recipients.length;
    const ints = new Int32Array(n * INTS);
    let pieces = 0;
    for (let i = 0; i < n; i++) {
      const r = recipients[i];
      if (r.line > 0x7fffffff) throw new RangeError(`Line ${r.line} is too large to pack`);
      pieces += r.values.length + (r.values[addressColumn] === r.address ? 0 : 1);
    }
    const ends = new Int32Array(pieces);
    let text = SEED;
    let at = 0;
    let p = 0;
    for (let i = 0; i < n; i++) {
      const r = recipients[i];
      const values = r.values;
      const o = i * INTS;
      ints[o] = r.line;
      let flags = r.smtpUtf8 ? SMTP_UTF8 : 0;
      if (values[addressColumn] === r.address) {
        flags |= ADDRESS_IS_VALUE;
      } else {
        at += r.address.length;
        ends[p++] = at;
        text += r.address;
      }
      ints[o + 1] = flags;
      ints[o + 2] = p;
      ints[o + 3] = values.length;
      for (let v = 0; v < values.length; v++) {
        at += values[v].length;
        ends[p++] = at;
        text += values[v];
      }
    }
    // The values are slices of the CSV text and would keep it alive; `text` is a tree of
    // concatenations pointing at them. A substring of it is made from one new flat copy of
    // the whole (V8 makes slices only of flat strings), which lets go of the pieces; about
    // a fifth faster than an array join. The test "does not keep the CSV text alive" checks
    // this; the 1M-row benchmark is the stronger check (reading one character, tried first,
    // passed the test but left the tree unflattened in a real run: 280 MB).
    text = text.substring(SEED.length);
    return new RecipientPack(n, ints, ends, text, addressColumn);
  }

  /** Line of recipient `i`. */
  line(i: number): number {
    return this.#ints[i * INTS];
  }

  /** Address of recipient `i` (the envelope recipient). */
  address(i: number): string {
    const o = i * INTS;
    const first = this.#ints[o + 2];
    const piece = (this.#ints[o + 1] & ADDRESS_IS_VALUE) !== 0
      ? first + this.#addressColumn
      : first - 1;
    return this.#piece(piece);
  }

  /** Recipient `i` as a new object, equal to the one packed. */
  recipient(i: number): Recipient {
    const o = i * INTS;
    const first = this.#ints[o + 2];
    const count = this.#ints[o + 3];
    const values: string[] = new Array(count);
    for (let v = 0; v < count; v++) values[v] = this.#piece(first + v);
    return {
      line: this.#ints[o],
      address: this.address(i),
      values,
      smtpUtf8: (this.#ints[o + 1] & SMTP_UTF8) !== 0,
    };
  }

  #piece(p: number): string {
    return this.#text.slice(p === 0 ? 0 : this.#ends[p - 1], this.#ends[p]);
  }
}
