/**
 * Per-mailbox sending quotas, enforced locally because Gmail reports
 * over-limit sends late: a paced per-minute rate and a rolling daily cap, both
 * from core/rate.ts, plus a pause flag set when Gmail says the mailbox hit its
 * sending limit. {@link MailboxPool} picks the mailbox that can send soonest.
 *
 * @module
 */
import { RateLimiter, type RateWindow, rateWindow } from "../../core/rate.ts";

/** A mailbox the transport sends as, with its own quota. */
export class Mailbox {
  /** `me` or the address. */
  readonly user: string;
  /** The per-minute (or other short) rate: paced. */
  readonly pace: RateLimiter;
  /** The daily cap: a rolling 24 h window. */
  readonly cap: RateLimiter;
  /** Why Gmail paused this mailbox, once it did; it is then skipped. */
  pausedReason: string | undefined;

  /** A mailbox with its limiters on clock `now`. */
  constructor(user: string, rate: readonly RateWindow[], daily: number, now: () => number) {
    this.user = user;
    this.pace = new RateLimiter(rate, { now });
    this.cap = new RateLimiter([rateWindow(daily, 86_400_000)], { now });
  }
}

/** What {@link MailboxPool.acquire} decided for a batch of `n`. */
export type Acquired =
  | { readonly kind: "go"; readonly mailbox: Mailbox; readonly count: number }
  | { readonly kind: "wait"; readonly ms: number }
  | { readonly kind: "capped"; readonly ms: number }
  | { readonly kind: "paused" };

/** The mailboxes of one transport and the choice between them. */
export class MailboxPool {
  /** All mailboxes, in the order given. */
  readonly mailboxes: readonly Mailbox[];
  #next = 0;

  /** A pool over `mailboxes` (at least one). */
  constructor(mailboxes: readonly Mailbox[]) {
    if (mailboxes.length === 0) throw new RangeError("At least one Gmail mailbox is needed");
    this.mailboxes = mailboxes;
  }

  /** Mailboxes Gmail has not paused. */
  get active(): Mailbox[] {
    return this.mailboxes.filter((m) => m.pausedReason === undefined);
  }

  /**
   * Take quota for up to `n` sends from the mailbox that can send soonest
   * (round robin among equals). `go` may grant fewer than `n` when a daily cap
   * has only that many left; `wait` says how long until one can send;
   * `capped` means every active mailbox has used its daily cap; `paused`
   * means Gmail paused them all.
   */
  acquire(n: number): Acquired {
    const all = this.mailboxes;
    if (this.active.length === 0) return { kind: "paused" };
    let full: Mailbox | undefined;
    let fullWait = Infinity;
    let partial: Mailbox | undefined;
    let partialCount = 0;
    let partialWait = Infinity;
    let capWait = Infinity;
    for (let i = 0; i < all.length; i++) {
      const mailbox = all[(this.#next + i) % all.length];
      if (mailbox.pausedReason !== undefined) continue;
      const count = mailbox.cap.wait(n) === 0 ? n : allowance(mailbox.cap, n);
      if (count === 0) {
        capWait = Math.min(capWait, mailbox.cap.wait(1));
        continue;
      }
      const wait = mailbox.pace.wait(count);
      if (count === n && wait < fullWait) {
        full = mailbox;
        fullWait = wait;
      } else if (count < n && wait < partialWait) {
        partial = mailbox;
        partialCount = count;
        partialWait = wait;
      }
    }
    if (full && fullWait === 0) return this.#take(full, n);
    if (partial && partialWait === 0) return this.#take(partial, partialCount);
    if (full || partial) return { kind: "wait", ms: Math.min(fullWait, partialWait) };
    return { kind: "capped", ms: capWait };
  }

  #take(mailbox: Mailbox, count: number): Acquired {
    mailbox.pace.tryTake(count);
    mailbox.cap.tryTake(count);
    this.#next = (this.mailboxes.indexOf(mailbox) + 1) % this.mailboxes.length;
    return { kind: "go", mailbox, count };
  }
}

/** The largest k <= n that `limiter` allows now (binary search over wait(k)). */
export function allowance(limiter: RateLimiter, n: number): number {
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (limiter.wait(mid) === 0) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
