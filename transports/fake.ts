/**
 * The fake transport: accepts every message after a fixed latency (500 ms by
 * default), with seeded failure injection. For trying mass-mailer out, for
 * benchmarks, and for exercising failure paths in tests.
 *
 * It receives exactly the rendered messages every other transport receives.
 * Messages whose sends start within the same millisecond share one timer, yet
 * each completes no earlier than `latencyMs` after its own start.
 *
 * @module
 */
import type { Outgoing, SendOptions, SendResult, Transport } from "../core/types.ts";

/** How injected failures behave. */
export type FailKind = "permanent" | "transient" | "mixed";

/** Options of {@link createFakeTransport}; every field has a default. */
export interface FakeTransportOptions {
  /** Time each message takes, in ms. Default 500. */
  latencyMs?: number;
  /** Fraction of attempts that fail, 0..1. Default 0. */
  failRate?: number;
  /** Whether injected failures are permanent (550), transient (451) or half each. Default "permanent". */
  failKind?: FailKind;
  /** Seed of the failure pattern: the same seed fails the same attempts. Default 1. */
  seed?: number;
  /** Line numbers whose messages are always refused with 550 5.1.1 (permanent). */
  failLines?: Iterable<number>;
  /** Largest batch accepted per call. Default 100. */
  maxBatch?: number;
  /** Default in-flight window the engine uses for this transport. Default 1,000,000. */
  defaultConcurrency?: number;
  /**
   * Append one line `line,address,messageId` per accepted message to this file,
   * written before the result is returned (an independent record for tests).
   */
  deliveryLog?: string;
}

interface Bucket {
  readonly due: number;
  readonly created: number;
  readonly waiters: Array<() => void>;
}

/** The one answer for an accepted message (the fake has no queue ids). */
const SENT: SendResult = Object.freeze({ status: "sent" });

/** Frozen arrays of n SENT answers, made once per batch size. */
const ALL_SENT: (readonly SendResult[])[] = [];

/** An array of `n` SENT answers, shared (frozen: the engine only reads answers). */
function allSentOf(n: number): SendResult[] {
  return (ALL_SENT[n] ??= Object.freeze(new Array<SendResult>(n).fill(SENT))) as SendResult[];
}

/** 32-bit mix (a murmur3 finaliser) used to draw deterministic failures. */
function mix(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/** Create a fake transport. */
export function createFakeTransport(options: FakeTransportOptions = {}): Transport {
  const latencyMs = options.latencyMs ?? 500;
  const failRate = options.failRate ?? 0;
  const failKind = options.failKind ?? "permanent";
  const seed = (options.seed ?? 1) >>> 0;
  const maxBatch = options.maxBatch ?? 100;
  if (!(latencyMs >= 0) || !Number.isFinite(latencyMs)) {
    throw new RangeError(`Invalid latency ${latencyMs}: use a number of milliseconds >= 0`);
  }
  if (!(failRate >= 0 && failRate <= 1)) {
    throw new RangeError(`Invalid fail rate ${failRate}: use a fraction from 0 to 1`);
  }
  if (!Number.isInteger(maxBatch) || maxBatch < 1) {
    throw new RangeError(`Invalid batch size ${maxBatch}: use a whole number >= 1`);
  }
  const failLines = new Set(options.failLines ?? []);
  const attempts = new Map<number, number>(); // only for lines that failed once
  const logPath = options.deliveryLog;
  let bucket: Bucket | undefined;
  let closed = false;
  const threshold = Math.round(failRate * 0x1_0000_0000);

  function outcome(msg: Outgoing): SendResult {
    if (failLines.has(msg.line)) {
      return {
        status: "failed",
        code: "5.1.1",
        reason: "550 5.1.1 Recipient refused (fake --fail-lines)",
      };
    }
    if (threshold === 0) return SENT;
    const n = attempts.get(msg.line) ?? 0;
    const draw = mix(mix(seed ^ Math.imul(msg.line, 0x9e3779b1)) + n);
    if (draw >= threshold) {
      if (n > 0) attempts.delete(msg.line);
      return SENT;
    }
    const transient = failKind === "transient" || (failKind === "mixed" && (draw & 1) === 0);
    if (transient) {
      attempts.set(msg.line, n + 1);
      return {
        status: "retry",
        code: "4.3.0",
        reason: "451 4.3.0 Temporary failure (fake --fail-rate)",
      };
    }
    return {
      status: "failed",
      code: "5.1.1",
      reason: "550 5.1.1 Mailbox unavailable (fake --fail-rate)",
    };
  }

  function fire(b: Bucket): void {
    const early = b.due - performance.now();
    if (early > 0) {
      setTimeout(() => fire(b), Math.ceil(early));
      return;
    }
    if (bucket === b) bucket = undefined;
    for (const wake of b.waiters) wake();
  }

  /** Waiters per abort signal: one listener per signal, not one per send. */
  const waiting = new Map<AbortSignal, Set<(reason: unknown) => void>>();

  function watch(signal: AbortSignal, reject: (reason: unknown) => void): () => void {
    let set = waiting.get(signal);
    if (set === undefined) {
      const fresh = new Set<(reason: unknown) => void>();
      set = fresh;
      waiting.set(signal, fresh);
      signal.addEventListener("abort", () => {
        waiting.delete(signal);
        for (const r of fresh) r(signal.reason);
      }, { once: true });
    }
    set.add(reject);
    const mine = set;
    return () => mine.delete(reject);
  }

  function wait(signal: AbortSignal): Promise<void> {
    const now = performance.now();
    let b = bucket;
    if (b === undefined || now - b.created >= 1) {
      // One timer per millisecond of starts; +1 ms so the last joiner still waits its full latency.
      b = { due: now + latencyMs + 1, created: now, waiters: [] };
      bucket = b;
      const made = b;
      setTimeout(() => fire(made), latencyMs + 1);
    }
    return new Promise<void>((resolve, reject) => {
      if (signal.aborted) {
        reject(signal.reason);
        return;
      }
      const unwatch = watch(signal, reject);
      b.waiters.push(() => {
        unwatch();
        resolve();
      });
    });
  }

  return {
    name: "fake",
    maxBatch,
    defaultConcurrency: options.defaultConcurrency ?? 1_000_000,
    releasesMessages: true,
    // Everything the answer needs is taken inside send (below): the engine may reuse the
    // messages' memory as soon as it returns.
    consumesOnSend: true,
    send(batch: readonly Outgoing[], opts: SendOptions): Promise<SendResult[]> {
      if (closed) return Promise.reject(new Error("Cannot send: the fake transport is closed"));
      if (batch.length > maxBatch) {
        return Promise.reject(
          new RangeError(`Batch of ${batch.length} exceeds the fake transport's ${maxBatch}`),
        );
      }
      // Everything the answer needs is taken now, so the batch is not kept while it waits
      // (hundreds of thousands of messages wait at once at the default window).
      let results = new Array<SendResult>(batch.length);
      let text = "";
      let allSent = true;
      for (let i = 0; i < batch.length; i++) {
        const m = batch[i];
        const r = results[i] = outcome(m);
        if (r !== SENT) allSent = false;
        if (logPath !== undefined && r.status === "sent") {
          text += `${m.line},${m.to},${m.messageId}\n`;
        }
      }
      // The usual answer, "all sent", is one shared array per size: nothing per batch waits.
      if (allSent) results = allSentOf(batch.length);
      return wait(opts.signal).then(() => {
        if (text !== "") Deno.writeTextFileSync(logPath!, text, { append: true });
        return results;
      });
    },
    close(): Promise<void> {
      closed = true;
      return Promise.resolve();
    },
  };
}
