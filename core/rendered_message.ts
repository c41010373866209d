/**
 * The messages a `MessageComposer` (message.ts) hands out, and how they wait.
 *
 * A `RenderedMessage` is one message whose bytes are offsets into a shared slab
 * (see mime_writers.ts): `data` and `messageId` are made when read, and
 * `MessageComposer.release` lets the slab's memory be reused once a transport is
 * done with it (reading a released message's `data` throws). `PackedMessages`
 * keeps a batch of them as a few arrays while it waits on a transport.
 *
 * Split from message.ts, which builds the bytes; this file holds them.
 *
 * @module
 */
import { Slab } from "./mime_writers.ts";
import type { Outgoing } from "./types.ts";

/** What every message of one composer shares. */
export interface MessageShape {
  readonly from: string;
  readonly midPrefix: string;
  readonly midSuffix: string;
}

/**
 * Turn recorded chunks (shared bytes, or end offsets of row bytes in `slab`
 * from `first`; -1 stands for `end`) into views.
 */
function materialize(
  chunks: readonly (Uint8Array | number)[],
  slab: Uint8Array,
  first: number,
  end: number,
): Uint8Array[] {
  const out: Uint8Array[] = new Array(chunks.length);
  let at = first;
  for (let i = 0; i < chunks.length; i++) {
    const c = chunks[i];
    if (typeof c === "number") {
      const to = c < 0 ? end : c;
      out[i] = slab.subarray(at, to);
      at = to;
    } else out[i] = c;
  }
  return out;
}

/** Int32 fields per message in a {@link PackedMessages} (see its `ints`). */
const PACKED_INTS = 6;
/** Scratch for the addresses of the batch being packed. */
const PACK_SCRATCH: string[] = [];

/**
 * A batch of rendered messages kept as a few arrays instead of one object per
 * message, for the time they wait on a transport: at the default window of
 * the fake transport hundreds of thousands wait at once, and objects that live
 * that long are promoted to the old generation and die there, where garbage
 * is collected late. Made by `MessageComposer.pack` (message.ts); read with
 * {@link line}, {@link to} and {@link message}.
 */
export class PackedMessages {
  /** How many messages. */
  readonly length: number;
  /** @internal */
  readonly shape: MessageShape;
  /** @internal Per message: line, size, first, end, flags | ref index << 2, end of `to` in `toText`. */
  readonly ints: Int32Array;
  /** @internal The envelope recipients, one after another. */
  readonly toText: string;
  /** @internal Distinct (chunks, slab) pairs. */
  readonly refs: readonly unknown[];

  /** @internal Use `MessageComposer.pack` (message.ts). */
  constructor(shape: MessageShape, ints: Int32Array, toText: string, refs: unknown[]) {
    this.shape = shape;
    this.ints = ints;
    this.toText = toText;
    this.refs = refs;
    this.length = ints.length / PACKED_INTS;
  }

  /** Line of message `i`. */
  line(i: number): number {
    return this.ints[i * PACKED_INTS];
  }

  /** Envelope recipient of message `i`. */
  to(i: number): string {
    const o = i * PACKED_INTS + 5;
    return this.toText.slice(i === 0 ? 0 : this.ints[o - PACKED_INTS], this.ints[o]);
  }

  /** @internal The slab message `i` holds bytes in, if any. */
  slab(i: number): Slab | undefined {
    const ref = (this.ints[i * PACKED_INTS + 4] >>> 2) << 1;
    return this.refs[ref + 1] as Slab | undefined;
  }

  /**
   * Message `i` as an {@link Outgoing} again (a new object each call). It holds
   * the message's memory: release it with `MessageComposer.release` (message.ts), or
   * let the garbage collector free it. Take each message out at most once.
   */
  message(i: number): Outgoing {
    return RenderedMessage.unpack(this, i);
  }
}

/** Marks a message whose slab hold was released (see `MessageComposer.release`). */
const RELEASED = new Slab(new Uint8Array(0));

/**
 * A rendered message, kept compact while it waits in flight: its row bytes are
 * offsets into a shared slab, and `data` and `messageId` are made when read
 * (each read of `data` returns fresh views of the same, never-changing bytes).
 * Hundreds of thousands of these can be in flight at once, so every field counts.
 */
export class RenderedMessage implements Outgoing {
  readonly line: number;
  readonly to: string;
  readonly smtpUtf8: boolean;
  readonly eightBit: boolean;
  readonly size: number;
  readonly #shape: MessageShape;
  readonly #chunks: readonly (Uint8Array | number)[];
  #slab: Slab | undefined;
  readonly #first: number;
  readonly #end: number;

  constructor(
    shape: MessageShape,
    line: number,
    to: string,
    smtpUtf8: boolean,
    eightBit: boolean,
    chunks: readonly (Uint8Array | number)[],
    slab: Slab | undefined,
    first: number,
    end: number,
    size: number,
  ) {
    this.#shape = shape;
    this.line = line;
    this.to = to;
    this.smtpUtf8 = smtpUtf8;
    this.eightBit = eightBit;
    this.#chunks = chunks;
    this.#slab = slab;
    this.#first = first;
    this.#end = end;
    this.size = size;
  }

  get from(): string {
    return this.#shape.from;
  }

  get messageId(): string {
    return this.#shape.midPrefix + this.line + this.#shape.midSuffix;
  }

  get data(): readonly Uint8Array[] {
    const slab = this.#slab;
    if (slab === undefined) return this.#chunks as readonly Uint8Array[];
    if (slab === RELEASED || slab.recycled) {
      throw new TypeError(
        `The message for line ${this.line} was released after it was sent, and its memory reused; ` +
          "keep a copy (detachMessage) instead of the message itself",
      );
    }
    return materialize(this.#chunks, slab.bytes, this.#first, this.#end);
  }

  /**
   * Pack `messages` into a {@link PackedMessages}, or undefined when one of them
   * is not a RenderedMessage (or was released). Each message's slab hold moves
   * to the pack: the messages may still be read (a transport may be writing
   * them) but must not be released.
   */
  static pack(messages: readonly Outgoing[]): PackedMessages | undefined {
    const n = messages.length;
    let shape: MessageShape | undefined;
    for (let i = 0; i < n; i++) {
      const m = messages[i];
      if (!(m instanceof RenderedMessage) || m.#slab === RELEASED || m.line > 0x7fffffff) {
        return undefined;
      }
      if (shape === undefined) shape = m.#shape;
      else if (shape !== m.#shape) return undefined;
    }
    const ints = new Int32Array(n * PACKED_INTS);
    const tos = PACK_SCRATCH;
    // Messages rendered one after another mostly share their layout and slab:
    // each distinct (chunks, slab) pair is kept once.
    const refs: unknown[] = [];
    let chunks: unknown = undefined;
    let slab: unknown = null;
    let toEnd = 0;
    for (let i = 0; i < n; i++) {
      const m = messages[i] as RenderedMessage;
      const o = i * PACKED_INTS;
      if (m.#chunks !== chunks || m.#slab !== slab) {
        chunks = m.#chunks;
        slab = m.#slab;
        refs.push(chunks, slab);
      }
      ints[o] = m.line;
      ints[o + 1] = m.size;
      ints[o + 2] = m.#first;
      ints[o + 3] = m.#end;
      ints[o + 4] = (m.smtpUtf8 ? 1 : 0) | (m.eightBit ? 2 : 0) | ((refs.length - 2) << 1);
      toEnd += m.to.length;
      ints[o + 5] = toEnd;
      tos[i] = m.to;
    }
    // One flat string: the addresses were slices of the CSV text and would keep it alive.
    tos.length = n;
    const text = tos.join("");
    tos.length = 0;
    return new PackedMessages(shape!, ints, text, refs);
  }

  /** Rebuild message `i` of `pack` (see {@link pack}); it holds the slab again. */
  static unpack(pack: PackedMessages, i: number): RenderedMessage {
    const ints = pack.ints;
    const o = i * PACKED_INTS;
    const flags = ints[o + 4];
    const ref = flags >>> 2 << 1;
    return new RenderedMessage(
      pack.shape,
      ints[o],
      pack.to(i),
      (flags & 1) !== 0,
      (flags & 2) !== 0,
      pack.refs[ref] as readonly (Uint8Array | number)[],
      pack.refs[ref + 1] as Slab | undefined,
      ints[o + 2],
      ints[o + 3],
      ints[o + 1],
    );
  }

  /** Take `message`'s hold on its slab (once): afterwards its `data` throws. */
  static release(message: RenderedMessage): Slab | undefined {
    const slab = message.#slab;
    if (slab === undefined || slab === RELEASED) return undefined;
    message.#slab = RELEASED;
    return slab;
  }

  toJSON(): Record<string, unknown> {
    return {
      line: this.line,
      from: this.from,
      to: this.to,
      smtpUtf8: this.smtpUtf8,
      eightBit: this.eightBit,
      messageId: this.messageId,
      size: this.size,
    };
  }
}
