/**
 * A compact set of seen keys for dropping duplicate recipients.
 *
 * Keys are not stored: each is reduced to a 96-bit fingerprint (three 32-bit
 * hashes computed in one pass over its UTF-8 bytes, four at a time: the two
 * lanes of a cyrb53-style multiply-xor hash, 64 bits, and a MurmurHash3-style
 * lane, each with its own final mix) kept
 * with the line the key was first seen on, in an open-addressing hash table
 * with linear probing inside one `Uint32Array` (16 bytes a slot). The table
 * doubles when it is 70% full, so it takes 23-46 bytes per distinct key, off
 * the JS heap, and nothing per repeat; sized once from the input's size
 * ({@link DedupeSet.reserve}: a file's rows estimated from its first chunk,
 * +10%), a million keys take about 25 MB.
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
const MAX_LOAD = 0.7;

const encoder = new TextEncoder();

/**
 * Compute the 96-bit fingerprint of the UTF-8 bytes `view[start..end)` into
 * `out[at..at+3)`. Bytes are taken four at a time as one little-endian word,
 * and ASCII capitals in it are lower-cased first (SWAR: no branch per byte).
 */
function fingerprint(
  view: DataView,
  start: number,
  end: number,
  out: Uint32Array,
  at: number,
): void {
  const len = end - start;
  let a = 0xdeadbeef ^ len;
  let b = 0x41c6ce57 ^ len;
  let c = 0x9747b28c ^ len;
  for (let i = start; i < end; i += 4) {
    let w: number;
    if (i + 4 <= end) w = view.getUint32(i, true);
    else {
      w = 0;
      for (let k = 0; i + k < end; k++) w |= view.getUint8(i + k) << (8 * k);
    }
    // 0x80 in each byte that is an ASCII capital (0x41-0x5a); then set its 0x20 bit.
    const low = w & 0x7f7f7f7f;
    w ^= ((low + 0x3f3f3f3f) & ~(low + 0x25252525) & ~w & 0x80808080) >>> 2;
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
  out[at] = a;
  out[at + 1] = b;
  out[at + 2] = c;
}

/** The home slot of hash `a` (a uint32) in a table of `cap` slots: `a` scaled to [0, cap). */
function home(a: number, cap: number): number {
  const i = Math.floor(a * cap * 2.3283064365386963e-10); // 2^-32
  return i < cap ? i : cap - 1;
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
  /** Slots in the table (any size: a key's home slot is scaled from its hash, not masked). */
  #cap: number;
  #size = 0;
  #limit: number;
  /** Fingerprints of the keys being added (3 words each). */
  #scratch = new Uint32Array(3 * 1024);
  /** UTF-8 bytes of the keys being added. */
  #bytes = new Uint8Array(1 << 16);
  #view = new DataView(this.#bytes.buffer);
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
    this.#cap = capacity;
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
    this.#fingerprintKey(key, 0);
    const a = this.#scratch[0], b = this.#scratch[1], c = this.#scratch[2];
    const slots = this.#slots;
    const cap = this.#cap;
    let i = home(a, cap);
    for (;;) {
      const at = i * SLOT_WORDS;
      const first = slots[at + 3];
      if (first === 0) break;
      if (slots[at] === a && slots[at + 1] === b && slots[at + 2] === c) return first;
      i = i + 1 === cap ? 0 : i + 1;
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
    const cap = this.#cap;
    // Pass 1: fingerprints. All keys are encoded to UTF-8 with one call; when
    // they are all ASCII, byte offsets are the string lengths.
    const joined = count === keys.length ? keys.join("") : keys.slice(0, count).join("");
    this.#reserve(joined.length * 3);
    const written = encoder.encodeInto(joined, this.#bytes).written;
    if (written === joined.length) {
      const view = this.#view;
      let at = 0;
      for (let i = 0; i < count; i++) {
        const end = at + keys[i].length;
        fingerprint(view, at, end, fp, i * 3);
        at = end;
      }
    } else {
      for (let i = 0; i < count; i++) this.#fingerprintKey(keys[i], i * 3);
    }
    // Pass 2: read each home slot in a tight loop, so the cache misses overlap
    // (a software prefetch; interleaved with hashing they would not).
    let touch = 0;
    for (let i = 0; i < count; i++) touch ^= slots[home(fp[i * 3], cap) * SLOT_WORDS + 3];
    this.#touched ^= touch;
    // Pass 3: look up and insert, in order.
    for (let i = 0; i < count; i++) {
      const a = fp[i * 3], b = fp[i * 3 + 1], c = fp[i * 3 + 2];
      let s = home(a, cap);
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
        s = s + 1 === cap ? 0 : s + 1;
      }
      firstLines[i] = found;
    }
  }

  /** The line `key` was first seen on, or 0 when it was never added. */
  firstLine(key: string): number {
    this.#fingerprintKey(key, 0);
    const fp = this.#scratch;
    const a = fp[0], b = fp[1], c = fp[2];
    const slots = this.#slots;
    const cap = this.#cap;
    let i = home(a, cap);
    for (;;) {
      const at = i * SLOT_WORDS;
      const first = slots[at + 3];
      if (first === 0) return 0;
      if (slots[at] === a && slots[at + 1] === b && slots[at + 2] === c) return first;
      i = i + 1 === cap ? 0 : i + 1;
    }
  }

  /** Make the byte scratch hold at least `size` bytes. */
  #reserve(size: number): void {
    if (this.#bytes.length >= size) return;
    this.#bytes = new Uint8Array(Math.max(size, this.#bytes.length * 2));
    this.#view = new DataView(this.#bytes.buffer);
  }

  /** Fingerprint one key into `#scratch[at..at+3)`. */
  #fingerprintKey(key: string, at: number): void {
    this.#reserve(key.length * 3);
    const written = encoder.encodeInto(key, this.#bytes).written;
    fingerprint(this.#view, 0, written, this.#scratch, at);
  }

  /** Put a fingerprint known to be absent into the table. */
  #insert(a: number, b: number, c: number, line: number): void {
    const slots = this.#slots;
    const cap = this.#cap;
    let i = home(a, cap);
    while (slots[i * SLOT_WORDS + 3] !== 0) i = i + 1 === cap ? 0 : i + 1;
    const at = i * SLOT_WORDS;
    slots[at] = a;
    slots[at + 1] = b;
    slots[at + 2] = c;
    slots[at + 3] = line;
  }

  /** Double the table and re-insert every fingerprint (hashes are stored, keys are not needed). */
  /**
   * Make room for `count` keys in all (a sizing hint, e.g. from the input's
   * size): one resize now instead of a doubling after every few hundred
   * thousand keys. Never shrinks; capped at 2^27 keys.
   */
  reserve(count: number): void {
    const want = Math.min(Math.ceil(count), 2 ** 27);
    if (want <= this.#limit) return;
    // Exactly enough for `want` at the load limit: with a hint, no power-of-two round-up.
    this.#resize(Math.ceil(want / MAX_LOAD) + 1);
  }

  #grow(): void {
    this.#resize(this.#cap * 2);
  }

  #resize(capacity: number): void {
    const old = this.#slots;
    this.#slots = new Uint32Array(capacity * SLOT_WORDS);
    this.#cap = capacity;
    this.#limit = Math.floor(capacity * MAX_LOAD);
    const slots = this.#slots;
    const cap = this.#cap;
    for (let from = 0; from < old.length; from += SLOT_WORDS) {
      const line = old[from + 3];
      if (line === 0) continue;
      const a = old[from];
      let i = home(a, cap);
      while (slots[i * SLOT_WORDS + 3] !== 0) i = i + 1 === cap ? 0 : i + 1;
      const at = i * SLOT_WORDS;
      slots[at] = a;
      slots[at + 1] = old[from + 1];
      slots[at + 2] = old[from + 2];
      slots[at + 3] = line;
    }
  }
}
