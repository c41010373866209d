/**
 * Rate limits with one or more windows, written `100/s`, `6000/min`, `10/h`,
 * `2000/d` and combined with commas (`100/s,2000/d`). A send is allowed only
 * when every window allows it.
 *
 * Two kinds of window, chosen by length, because they mean different things:
 *
 * - **Paced windows** (shorter than one hour: `s`, `min`) use GCRA, the
 *   generic cell rate algorithm: one number per window, the theoretical
 *   arrival time (TAT). Sends are spaced one emission interval `T = perMs /
 *   count` apart, so `100/s` means one send every 10 ms, never 100 at once at
 *   the start of each second (no 2x burst at window edges). The burst
 *   tolerance is half an interval (`T / 2`): a caller that wakes up a little
 *   late keeps its slot, so timer jitter does not lower the rate, yet no two
 *   single sends come closer than `T / 2`. A rolling cap of the same window
 *   (below) runs beside it, so any window of `perMs` still sees at most
 *   `count` sends. A request for `n` sends at once (a batch) is one
 *   burst: its tolerance is raised to `(n - 1) * T` for that request, so it is
 *   allowed once the schedule has caught up with now, and it books `n`
 *   intervals; the average rate stays exact. A request for more than `count`
 *   sends would break the window at once, so it is never granted: `wait` and
 *   `tryTake` answer `Infinity` and callers ask for fewer (see `maxTake`).
 *
 * - **Rolling caps** (one hour or longer: `h`, `d`) are a sliding log: never
 *   more than `count` sends in any `perMs`, but no pacing. With `2000/d` alone
 *   the first 2,000 go as fast as asked, then each further send waits until
 *   the oldest leaves the window. Pacing a day cap at one send per 43 s would
 *   make a 2,000-message run take a day; a cap is what mailbox providers
 *   actually enforce. The log keeps `(time, sends)` entries in a ring buffer
 *   that grows on demand: sends at the same instant share one entry, so it
 *   holds at most `count` entries (16 bytes each: 32 KB for `2000/d`). Caps
 *   above {@link EXACT_LOG_LIMIT} sends coalesce sends within `perMs /`
 *   {@link LOG_SLOTS} of each other into one entry stamped with the latest
 *   time, which bounds the log at `LOG_SLOTS + 1` entries; this is
 *   conservative (a send may be held in the window up to that quantum longer,
 *   about 10 s for a day) and never lets more than `count` through.
 *
 * Combine them for both effects: `150/min,2000/d` paces at 2.5/s and stops at
 * 2,000 per rolling day. {@link RateLimiter.seed} replays past sends (from the
 * ledger after a restart) so a day cap survives restarts.
 *
 * Time comes from an injected clock in milliseconds, `Date.now` by default so
 * that seeded times can be wall-clock times from the ledger. A clock that goes
 * backwards is treated as standing still.
 *
 * @example
 * ```ts
 * import { parseRate, RateLimiter } from "./rate.ts";
 * let now = 0;
 * const limiter = new RateLimiter(parseRate("100/s,2000/d"), { now: () => now });
 * if (limiter.tryTake() !== 0) throw new Error("the first send must go at once");
 * const wait = limiter.tryTake(); // the next one is 10 ms later (5 ms early is tolerated)
 * if (wait !== 5) throw new Error(`expected 5, got ${wait}`);
 * now += wait;
 * if (limiter.tryTake() !== 0) throw new Error("the second send must go after the wait");
 * ```
 *
 * @module
 */

/** One window of a rate limit: at most `count` sends per `perMs` milliseconds. */
export interface RateWindow {
  /** Sends allowed per window, a whole number of at least 1. */
  readonly count: number;
  /** Window length in milliseconds. */
  readonly perMs: number;
  /** The text this window was written as, e.g. `"100/s"` (used in messages). */
  readonly spec: string;
}

/** Options of {@link RateLimiter}. */
export interface RateLimiterOptions {
  /** The clock in milliseconds. Default `Date.now` (so seeded ledger times line up). */
  now?: () => number;
}

/** Window lengths of the units `parseRate` accepts. */
export const RATE_UNITS: Readonly<Record<string, number>> = Object.freeze({
  s: 1_000,
  min: 60_000,
  h: 3_600_000,
  d: 86_400_000,
});

/** Windows at least this long (ms) are rolling caps; shorter ones are paced. One hour. */
export const ROLLING_CAP_FROM_MS = 3_600_000;

/** Rolling caps up to this many sends keep an exact log (one entry per distinct instant). */
export const EXACT_LOG_LIMIT = 100_000;

/** Larger caps coalesce sends within `perMs / LOG_SLOTS` into one log entry. */
export const LOG_SLOTS = 8_192;

const RATE_PART = /^([0-9]+)\s*\/\s*([a-z]+)$/;
const EPSILON_MS = 1e-6;

/**
 * Parse a rate such as `100/s`, `6000/min`, `10/h`, `2000/d` or several joined
 * by commas (`100/s,2000/d`). Throws a `RangeError` naming the bad part.
 *
 * @example
 * ```ts
 * import { parseRate } from "./rate.ts";
 * const [perSecond, perDay] = parseRate("100/s, 2000/d");
 * if (perSecond.perMs !== 1000 || perDay.count !== 2000) throw new Error("bad parse");
 * ```
 */
export function parseRate(spec: string): RateWindow[] {
  if (typeof spec !== "string") {
    throw new TypeError(`A rate must be a string such as "100/s", got ${typeof spec}`);
  }
  const windows: RateWindow[] = [];
  for (const raw of spec.split(",")) {
    const part = raw.trim();
    const match = RATE_PART.exec(part);
    const perMs = match ? RATE_UNITS[match[2]] : undefined;
    if (!match || perMs === undefined) {
      throw new RangeError(
        `Invalid rate "${part}": use COUNT/UNIT with UNIT s, min, h or d`,
      );
    }
    const count = Number(match[1]);
    if (!Number.isSafeInteger(count) || count < 1) {
      throw new RangeError(
        `Invalid rate "${part}": COUNT must be a whole number from 1 to ${Number.MAX_SAFE_INTEGER}`,
      );
    }
    windows.push({ count, perMs, spec: `${count}/${match[2]}` });
  }
  return windows;
}

/**
 * A {@link RateWindow} for a plain `{count, perMs}` limit (such as a
 * transport's `TransportLimit`), with a readable `spec` for messages.
 */
export function rateWindow(count: number, perMs: number): RateWindow {
  checkWindow(count, perMs, "rateWindow()");
  let spec = `${count}/${perMs}ms`;
  for (const [unit, ms] of Object.entries(RATE_UNITS)) {
    if (ms === perMs) spec = `${count}/${unit}`;
  }
  return { count, perMs, spec };
}

function checkWindow(count: number, perMs: number, where: string): void {
  if (!Number.isSafeInteger(count) || count < 1) {
    throw new RangeError(`${where}: count must be a whole number of at least 1, got ${count}`);
  }
  if (!Number.isFinite(perMs) || perMs <= 0) {
    throw new RangeError(`${where}: perMs must be a positive number of milliseconds, got ${perMs}`);
  }
}

/** One window's state; `wait` never changes it, `take` books sends at `now`. */
interface Limit {
  readonly window: RateWindow;
  wait(n: number, now: number): number;
  take(n: number, now: number): void;
  seed(sorted: readonly number[], now: number): void;
  readonly entries: number;
}

/** GCRA: one theoretical arrival time per window. */
class PacedLimit implements Limit {
  readonly window: RateWindow;
  readonly #interval: number;
  readonly #tolerance: number;
  #tat = -Infinity;

  constructor(window: RateWindow) {
    this.window = window;
    this.#interval = window.perMs / window.count;
    this.#tolerance = this.#interval / 2;
  }

  get entries(): number {
    return 1;
  }

  wait(n: number, now: number): number {
    const tolerance = Math.max(this.#tolerance, (n - 1) * this.#interval);
    return this.#tat + (n - 1) * this.#interval - tolerance - now;
  }

  take(n: number, now: number): void {
    this.#tat = Math.max(this.#tat, now) + n * this.#interval;
  }

  seed(sorted: readonly number[], now: number): void {
    const from = now - this.window.perMs;
    let latest = -Infinity;
    for (const t of sorted) {
      if (t <= from) continue;
      this.#tat = Math.max(this.#tat, t) + this.#interval;
      latest = t;
    }
    // Past sends leave this window within perMs of the last of them: never owe more than that.
    if (latest > -Infinity) this.#tat = Math.min(this.#tat, latest + this.window.perMs);
  }
}

/** A sliding log of (time, sends) entries in a growable ring buffer. */
class RollingLimit implements Limit {
  readonly window: RateWindow;
  readonly #quantum: number;
  #times = new Float64Array(16);
  #counts = new Float64Array(16);
  #head = 0;
  #length = 0;
  #total = 0;
  #lastSlot = NaN;

  constructor(window: RateWindow) {
    this.window = window;
    this.#quantum = window.count > EXACT_LOG_LIMIT ? window.perMs / LOG_SLOTS : 0;
  }

  get entries(): number {
    return this.#length;
  }

  #prune(now: number): void {
    const cutoff = now - this.window.perMs;
    const capacity = this.#times.length;
    while (this.#length > 0 && this.#times[this.#head] <= cutoff) {
      this.#total -= this.#counts[this.#head];
      this.#head = (this.#head + 1) % capacity;
      this.#length--;
    }
  }

  wait(n: number, now: number): number {
    this.#prune(now);
    let excess = this.#total + n - this.window.count;
    if (excess <= 0) return 0;
    // The sends that must leave the window first are the oldest ones.
    const capacity = this.#times.length;
    for (let i = 0, at = this.#head; i < this.#length; i++, at = (at + 1) % capacity) {
      excess -= this.#counts[at];
      if (excess <= 0) return this.#times[at] + this.window.perMs - now;
    }
    return Infinity; // unreachable while n <= count
  }

  take(n: number, now: number): void {
    this.#prune(now);
    this.#append(now, n);
  }

  #append(time: number, n: number): void {
    const slot = this.#quantum > 0 ? Math.floor(time / this.#quantum) : time;
    this.#total += n;
    if (this.#length > 0 && slot === this.#lastSlot) {
      const last = (this.#head + this.#length - 1) % this.#times.length;
      this.#counts[last] += n;
      this.#times[last] = Math.max(this.#times[last], time);
      return;
    }
    if (this.#length === this.#times.length) this.#grow();
    const at = (this.#head + this.#length) % this.#times.length;
    this.#times[at] = time;
    this.#counts[at] = n;
    this.#length++;
    this.#lastSlot = slot;
  }

  #grow(): void {
    const capacity = this.#times.length;
    const times = new Float64Array(capacity * 2);
    const counts = new Float64Array(capacity * 2);
    for (let i = 0; i < this.#length; i++) {
      times[i] = this.#times[(this.#head + i) % capacity];
      counts[i] = this.#counts[(this.#head + i) % capacity];
    }
    this.#times = times;
    this.#counts = counts;
    this.#head = 0;
  }

  seed(sorted: readonly number[], now: number): void {
    this.#prune(now);
    const cutoff = now - this.window.perMs;
    const merged: Array<[number, number]> = [];
    const capacity = this.#times.length;
    for (let i = 0; i < this.#length; i++) {
      const at = (this.#head + i) % capacity;
      merged.push([this.#times[at], this.#counts[at]]);
    }
    for (const t of sorted) if (t > cutoff) merged.push([t, 1]);
    merged.sort((a, b) => a[0] - b[0]);
    this.#head = 0;
    this.#length = 0;
    this.#total = 0;
    this.#lastSlot = NaN;
    for (const [t, n] of merged) this.#append(t, n);
  }
}

/**
 * Allows a send only when every window allows it. Never sleeps: it says how
 * long to wait, and the caller waits on its own clock.
 */
export class RateLimiter {
  /** The windows this limiter enforces. */
  readonly windows: readonly RateWindow[];
  readonly #limits: Limit[];
  readonly #clock: () => number;
  #last = -Infinity;

  /** Enforce every one of `windows` (none means no limit). */
  constructor(windows: readonly RateWindow[], opts: RateLimiterOptions = {}) {
    if (!Array.isArray(windows)) throw new TypeError("RateLimiter: windows must be an array");
    for (const w of windows) checkWindow(w.count, w.perMs, `RateLimiter "${w.spec}"`);
    if (opts.now !== undefined && typeof opts.now !== "function") {
      throw new TypeError("RateLimiter: opts.now must be a function returning milliseconds");
    }
    this.windows = Object.freeze([...windows]);
    // A paced window is also a rolling cap of its own size: the pacing's jitter tolerance
    // could otherwise let count + 1 sends into one window, and "60/min" means at most 60.
    this.#limits = windows.flatMap((w) =>
      w.perMs >= ROLLING_CAP_FROM_MS
        ? [new RollingLimit(w)]
        : [new PacedLimit(w), new RollingLimit(w)]
    );
    this.#clock = opts.now ?? Date.now;
  }

  /** Number of log entries held across all windows (pacing holds 1; caps up to their count); for tests and metrics. */
  get entries(): number {
    let n = 0;
    for (const limit of this.#limits) n += limit.entries;
    return n;
  }

  #now(): number {
    const t = this.#clock();
    if (t > this.#last) this.#last = t; // NaN and backwards steps leave time standing
    return this.#last;
  }

  #check(n: number): void {
    if (!Number.isSafeInteger(n) || n < 0) {
      throw new RangeError(`RateLimiter: n must be a whole number of sends, got ${n}`);
    }
  }

  /**
   * The most sends one `wait`/`tryTake` call can ever be granted: the smallest
   * window's count (Infinity without windows). Asking for more never succeeds.
   */
  get maxTake(): number {
    let max = Infinity;
    for (const limit of this.#limits) max = Math.min(max, limit.window.count);
    return max;
  }

  #waitAt(n: number, now: number): number {
    let wait = 0;
    for (const limit of this.#limits) wait = Math.max(wait, limit.wait(n, now));
    return wait <= EPSILON_MS ? 0 : Math.ceil(wait - EPSILON_MS);
  }

  /**
   * ms to wait until n more sends are allowed by every window (0 = now); does
   * not take. `Infinity` when n exceeds {@link RateLimiter.maxTake}: ask for fewer.
   */
  wait(n = 1): number {
    this.#check(n);
    if (n === 0) return 0;
    if (n > this.maxTake) return Infinity;
    return this.#waitAt(n, this.#now());
  }

  /**
   * Take n sends now if every window allows; returns 0 when taken, else the ms
   * to wait (nothing taken); `Infinity` when n exceeds {@link RateLimiter.maxTake}.
   */
  tryTake(n = 1): number {
    this.#check(n);
    if (n === 0) return 0;
    if (n > this.maxTake) return Infinity;
    const now = this.#now();
    const wait = this.#waitAt(n, now);
    if (wait > 0) return wait;
    for (const limit of this.#limits) limit.take(n, now);
    return 0;
  }

  /**
   * Record sends that happened in the past (e.g. from the ledger after a
   * restart) so long windows survive restarts. Times are on this limiter's
   * clock (epoch ms by default), in any order; times in the future count as
   * now, times older than a window are ignored by it.
   */
  seed(times: Iterable<number>): void {
    const now = this.#now();
    const sorted: number[] = [];
    for (const t of times) {
      if (typeof t !== "number" || Number.isNaN(t)) {
        throw new TypeError(`RateLimiter.seed(): times must be numbers (ms), got ${t}`);
      }
      sorted.push(Math.min(t, now));
    }
    sorted.sort((a, b) => a - b);
    for (const limit of this.#limits) limit.seed(sorted, now);
  }
}
