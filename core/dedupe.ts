/**
 * A compact set of seen keys for dropping duplicate recipients.
 *
 * Keys are not stored: each is reduced to a 96-bit fingerprint (three 32-bit
 * hashes computed in one pass over its UTF-16 code units: the two lanes of a
 * cyrb53-style multiply-xor hash, 64 bits, and a MurmurHash3-style lane) kept
 * with the line the key was first seen on, in an open-addressing hash table
 * with linear probing inside one `Uint32Array` (16 bytes a slot). The table
 * doubles when it is 60% full, so it takes 27-53 bytes per distinct key
 * (about 34 MB for 1,000,000 keys, off the JS heap) and nothing per repeat.
 *
 * False positives: a new key is taken for a duplicate only when its whole
 * 96-bit fingerprint equals an earlier key's. For n distinct keys the chance
 * that this happens at all is about n² / 2^97: 6e-18 for a million keys,
 * 6e-16 for ten million. There are no false negatives.
 *
 * ASCII letters are folded to lower case while hashing, so callers can pass an
 * ASCII address as it is and get the same fingerprint as its lower-cased form.
 *
 * @module
 */

const SLOT_WORDS = 4; // hash a, hash b, hash c, first line (0 = empty slot)
const MAX_LOAD = 0.6;

/** Fingerprint lanes of the last {@link fingerprint} call (avoids an allocation per key). */
let fpA = 0;
let fpB = 0;
let fpC = 0;

/**
 * Compute the 96-bit fingerprint of `key` into fpA/fpB/fpC, ASCII letters
 * folded to lower case. Code units are taken two at a time as one 32-bit word.
 */
function fingerprint(key: string): void {
  const len = key.length;
  let a = 0xdeadbeef ^ len;
  let b = 0x41c6ce57 ^ len;
  let c = 0x9747b28c ^ len;
  for (let i = 0; i < len; i += 2) {
    let x = key.charCodeAt(i);
    let y = i + 1 < len ? key.charCodeAt(i + 1) : 0;
    if (x >= 65 && x <= 90) x += 32;
    if (y >= 65 && y <= 90) y += 32;
    const w = x | (y << 16);
    a = Math.imul(a ^ w, 2654435761);
    b = Math.imul(b ^ w, 1597334677);
    let k = Math.imul(w, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    c ^= Math.imul(k, 0x1b873593);
    c = (c << 13) | (c >>> 19);
    c = (Math.imul(c, 5) + 0xe6546b64) | 0;
  }
  a = Math.imul(a ^ (a >>> 16), 2246822507);
  a ^= Math.imul(b ^ (b >>> 13), 3266489909);
  b = Math.imul(b ^ (b >>> 16), 2246822507);
  b ^= Math.imul(a ^ (a >>> 13), 3266489909);
  c ^= c >>> 16;
  c = Math.imul(c, 0x85ebca6b);
  c ^= c >>> 13;
  c = Math.imul(c, 0xc2b2ae35);
  c ^= c >>> 16;
  fpA = a >>> 0;
  fpB = b >>> 0;
  fpC = c >>> 0;
}

/**
 * A set of keys, each remembered with the line it was first seen on, in memory
 * that grows with distinct keys only (see the module doc for the numbers).
 *
 * @example
 * ```ts
 * import { DedupeSet } from "./dedupe.ts";
 * const seen = new DedupeSet();
 * seen.add("alice@example.com", 1); // 0: new
 * seen.add("Alice@Example.com", 7); // 1: first seen on line 1
 * ```
 */
export class DedupeSet {
  #slots: Uint32Array;
  #mask: number;
  #size = 0;
  #limit: number;
  #scratch = new Uint32Array(0);
  /** Sink for the prefetch reads, so they are not optimised away. */
  #touched = 0;

  /** `initialCapacity` is rounded up to a power of two (default 1024 slots). */
  constructor(initialCapacity = 1024) {
    if (!Number.isInteger(initialCapacity) || initialCapacity < 1 || initialCapacity > 2 ** 28) {
      throw new RangeError(
        `Invalid initial capacity ${initialCapacity}: give an integer from 1 to 2^28`,
      );
    }
    let capacity = 8;
    while (capacity < initialCapacity) capacity *= 2;
    this.#slots = new Uint32Array(capacity * SLOT_WORDS);
    this.#mask = capacity - 1;
    this.#limit = Math.floor(capacity * MAX_LOAD);
  }

  /** Number of distinct keys added. */
  get size(): number {
    return this.#size;
  }

  /** Bytes held by the table. */
  get byteLength(): number {
    return this.#slots.byteLength;
  }

  /**
   * Add `key` first seen on `line` (an integer from 1 to 2^32-1). Returns 0 when
   * the key is new, else the line it was first added with (the set keeps that).
   */
  add(key: string, line: number): number {
    if ((line >>> 0) !== line || line === 0) {
      throw new RangeError(`Invalid line ${line}: give an integer from 1 to 2^32-1`);
    }
    fingerprint(key);
    const a = fpA, b = fpB, c = fpC;
    const slots = this.#slots;
    const mask = this.#mask;
    let i = a & mask;
    for (;;) {
      const at = i * SLOT_WORDS;
      const first = slots[at + 3];
      if (first === 0) break;
      if (slots[at] === a && slots[at + 1] === b && slots[at + 2] === c) return first;
      i = (i + 1) & mask;
    }
    if (this.#size >= this.#limit) {
      this.#grow();
      this.#insert(a, b, c, line);
    } else {
      const at = i * SLOT_WORDS;
      slots[at] = a;
      slots[at + 1] = b;
      slots[at + 2] = c;
      slots[at + 3] = line;
    }
    this.#size++;
    return 0;
  }

  /**
   * Add `count` keys at once: `keys[i]` first seen on `lines[i]`. Writes to
   * `firstLines[i]` 0 for a new key, else the line it was first added with (a
   * key repeated within the batch is found too). Same result as calling
   * {@link DedupeSet.add} in order, but faster for big tables: the slots are
   * touched in a first pass so their cache misses overlap.
   */
  addMany(
    keys: readonly string[],
    lines: ArrayLike<number>,
    count: number,
    firstLines: Uint32Array,
  ): void {
    if (count > keys.length || count > lines.length || count > firstLines.length) {
      throw new RangeError(`Invalid count ${count}: larger than the arrays given`);
    }
    for (let i = 0; i < count; i++) {
      const line = lines[i];
      if ((line >>> 0) !== line || line === 0) {
        throw new RangeError(`Invalid line ${line}: give an integer from 1 to 2^32-1`);
      }
    }
    while (this.#size + count > this.#limit) this.#grow();
    if (this.#scratch.length < count * 3) this.#scratch = new Uint32Array(count * 3 + 1024);
    const fp = this.#scratch;
    const slots = this.#slots;
    const mask = this.#mask;
    // Pass 1: fingerprints.
    for (let i = 0; i < count; i++) {
      fingerprint(keys[i]);
      fp[i * 3] = fpA;
      fp[i * 3 + 1] = fpB;
      fp[i * 3 + 2] = fpC;
    }
    // Pass 2: read each home slot in a tight loop, so the cache misses overlap
    // (a software prefetch; interleaved with hashing they would not).
    let touch = 0;
    for (let i = 0; i < count; i++) touch ^= slots[(fp[i * 3] & mask) * SLOT_WORDS + 3];
    this.#touched ^= touch;
    // Pass 3: look up and insert, in order.
    for (let i = 0; i < count; i++) {
      const a = fp[i * 3], b = fp[i * 3 + 1], c = fp[i * 3 + 2];
      let s = a & mask;
      let found = 0;
      for (;;) {
        const at = s * SLOT_WORDS;
        const first = slots[at + 3];
        if (first === 0) {
          slots[at] = a;
          slots[at + 1] = b;
          slots[at + 2] = c;
          slots[at + 3] = lines[i];
          this.#size++;
          break;
        }
        if (slots[at] === a && slots[at + 1] === b && slots[at + 2] === c) {
          found = first;
          break;
        }
        s = (s + 1) & mask;
      }
      firstLines[i] = found;
    }
  }

  /** The line `key` was first seen on, or 0 when it was never added. */
  firstLine(key: string): number {
    fingerprint(key);
    const slots = this.#slots;
    let i = fpA & this.#mask;
    for (;;) {
      const at = i * SLOT_WORDS;
      const first = slots[at + 3];
      if (first === 0) return 0;
      if (slots[at] === fpA && slots[at + 1] === fpB && slots[at + 2] === fpC) return first;
      i = (i + 1) & this.#mask;
    }
  }

  /** Put a fingerprint known to be absent into the table. */
  #insert(a: number, b: number, c: number, line: number): void {
    const slots = this.#slots;
    const mask = this.#mask;
    let i = a & mask;
    while (slots[i * SLOT_WORDS + 3] !== 0) i = (i + 1) & mask;
    const at = i * SLOT_WORDS;
    slots[at] = a;
    slots[at + 1] = b;
    slots[at + 2] = c;
    slots[at + 3] = line;
  }

  /** Double the table and re-insert every fingerprint (hashes are stored, keys are not needed). */
  #grow(): void {
    const old = this.#slots;
    const capacity = (this.#mask + 1) * 2;
    this.#slots = new Uint32Array(capacity * SLOT_WORDS);
    this.#mask = capacity - 1;
    this.#limit = Math.floor(capacity * MAX_LOAD);
    const slots = this.#slots;
    const mask = this.#mask;
    for (let from = 0; from < old.length; from += SLOT_WORDS) {
      const line = old[from + 3];
      if (line === 0) continue;
      const a = old[from];
      let i = a & mask;
      while (slots[i * SLOT_WORDS + 3] !== 0) i = (i + 1) & mask;
      const at = i * SLOT_WORDS;
      slots[at] = a;
      slots[at + 1] = old[from + 1];
      slots[at + 2] = old[from + 2];
      slots[at + 3] = line;
    }
  }
}
