/**
 * A growable byte buffer for building one socket write out of many pieces.
 *
 * @module
 */

const encoder = new TextEncoder();

/** An append-only byte buffer that reuses its storage after {@link ByteBuffer.clear}. */
export class ByteBuffer {
  #buf: Uint8Array;
  #len = 0;

  /** Start with `capacity` bytes of storage (it grows as needed). */
  constructor(capacity = 16_384) {
    this.#buf = new Uint8Array(capacity);
  }

  /** Number of bytes held. */
  get length(): number {
    return this.#len;
  }

  /** The bytes held, as a view that stays valid until the next append or clear. */
  view(): Uint8Array {
    return this.#buf.subarray(0, this.#len);
  }

  /** Drop the content and keep the storage. */
  clear(): void {
    this.#len = 0;
  }

  /** Make room for `extra` more bytes. */
  reserve(extra: number): void {
    const need = this.#len + extra;
    if (need <= this.#buf.length) return;
    let cap = this.#buf.length * 2;
    while (cap < need) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.#buf.subarray(0, this.#len));
    this.#buf = next;
  }

  /** Append `bytes[start, end)`. */
  push(bytes: Uint8Array, start = 0, end = bytes.length): void {
    const n = end - start;
    if (n <= 0) return;
    this.reserve(n);
    if (n < 16) {
      const buf = this.#buf;
      let at = this.#len;
      for (let i = start; i < end; i++) buf[at++] = bytes[i];
    } else {
      this.#buf.set(
        start === 0 && end === bytes.length ? bytes : bytes.subarray(start, end),
        this.#len,
      );
    }
    this.#len += n;
  }

  /** Append one byte. */
  pushByte(byte: number): void {
    this.reserve(1);
    this.#buf[this.#len++] = byte;
  }

  /** Append a string as UTF-8. */
  pushString(text: string): void {
    // UTF-8 needs at most 3 bytes per UTF-16 code unit.
    this.reserve(text.length * 3);
    const { written } = encoder.encodeInto(text, this.#buf.subarray(this.#len));
    this.#len += written;
  }
}
