import assert from "node:assert/strict";
import { seededRandom } from "../tests/_random.ts";
import {
  EXACT_LOG_LIMIT,
  LOG_SLOTS,
  parseRate,
  RateLimiter,
  type RateWindow,
  rateWindow,
} from "./rate.ts";

const DAY = 86_400_000;

/** A limiter on a manual clock. */
function limiter(spec: string | readonly RateWindow[], start = 0) {
  const clock = { t: start };
  const rl = new RateLimiter(typeof spec === "string" ? parseRate(spec) : spec, {
    now: () => clock.t,
  });
  return { clock, rl };
}

/**
 * A greedy caller: takes `n` whenever allowed, otherwise advances the clock by
 * the wait it was told, until `untilMs`. Returns the time of every send.
 */
function greedy(spec: string, untilMs: number, n = 1, start = 0): number[] {
  const { clock, rl } = limiter(spec, start);
  const times: number[] = [];
  while (clock.t <= untilMs) {
    const wait = rl.tryTake(n);
    if (wait === 0) { for (let i = 0; i < n; i++) times.push(clock.t); }
    else clock.t += wait;
  }
  return times;
}

/** Most sends seen in any half-open window [s, s + perMs), by brute force over sorted times. */
function maxInWindow(times: readonly number[], perMs: number): number {
  let max = 0;
  let lo = 0;
  for (let hi = 0; hi < times.length; hi++) {
    while (times[hi] - times[lo] >= perMs) lo++;
    max = Math.max(max, hi - lo + 1);
  }
  return max;
}

Deno.test("parseRate() reads each unit and comma-joined windows", async (t) => {
  const cases: Array<[string, Array<[number, number, string]>]> = [
    ["100/s", [[100, 1_000, "100/s"]]],
    ["6000/min", [[6000, 60_000, "6000/min"]]],
    ["10/h", [[10, 3_600_000, "10/h"]]],
    ["2000/d", [[2000, DAY, "2000/d"]]],
    ["100/s,2000/d", [[100, 1_000, "100/s"], [2000, DAY, "2000/d"]]],
    [" 150 / min , 2000/d ", [[150, 60_000, "150/min"], [2000, DAY, "2000/d"]]],
  ];
  for (const [spec, want] of cases) {
    await t.step(JSON.stringify(spec), () => {
      const got = parseRate(spec).map((w) => [w.count, w.perMs, w.spec]);
      assert.deepEqual(got, want);
    });
  }
});

Deno.test("parseRate() refuses bad input with a RangeError naming the part", async (t) => {
  const cases: Array<[string, string]> = [
    ["100/x", 'Invalid rate "100/x": use COUNT/UNIT with UNIT s, min, h or d'],
    ["", 'Invalid rate "": use COUNT/UNIT with UNIT s, min, h or d'],
    ["100", 'Invalid rate "100": use COUNT/UNIT with UNIT s, min, h or d'],
    ["100/s,", 'Invalid rate "": use COUNT/UNIT with UNIT s, min, h or d'],
    ["2.5/s", 'Invalid rate "2.5/s": use COUNT/UNIT with UNIT s, min, h or d'],
    ["-1/s", 'Invalid rate "-1/s": use COUNT/UNIT with UNIT s, min, h or d'],
    ["100/m", 'Invalid rate "100/m": use COUNT/UNIT with UNIT s, min, h or d'],
    ["0/s", 'Invalid rate "0/s": COUNT must be a whole number from 1 to 9007199254740991'],
    ["100/s,5/week", 'Invalid rate "5/week": use COUNT/UNIT with UNIT s, min, h or d'],
  ];
  for (const [spec, message] of cases) {
    await t.step(JSON.stringify(spec), () => {
      assert.throws(() => parseRate(spec), { name: "RangeError", message });
    });
  }
  await t.step("non-string", () => {
    assert.throws(() => parseRate(100 as unknown as string), TypeError);
  });
});

Deno.test("rateWindow() names plain limits in the rate syntax", () => {
  assert.deepEqual(rateWindow(150, 60_000), { count: 150, perMs: 60_000, spec: "150/min" });
  assert.equal(rateWindow(3, 250).spec, "3/250ms");
  assert.throws(() => rateWindow(0, 1000), RangeError);
  assert.throws(() => rateWindow(1, -5), RangeError);
});

Deno.test("RateLimiter paces 100/s: 500 ± 1 in 5 s of simulated time, no edge burst", () => {
  const times = greedy("100/s", 5_000).filter((t) => t < 5_000);
  assert.ok(Math.abs(times.length - 500) <= 1, `sent ${times.length}`);
  // Paced, not bursty: no second holds more than 100, and no two sends closer than 5 ms.
  assert.ok(maxInWindow(times, 1_000) <= 100, `max per second ${maxInWindow(times, 1_000)}`);
  for (let i = 1; i < times.length; i++) assert.ok(times[i] - times[i - 1] >= 5);
  // Every 100 ms window sees about 10, never the whole second's 100.
  assert.ok(maxInWindow(times, 100) <= 11);
});

Deno.test("RateLimiter never lets count + 1 into a window, whatever the caller's timing", async (t) => {
  for (const [spec, perMs, count] of [["60/min", 60_000, 60], ["100/s", 1_000, 100]] as const) {
    await t.step(spec, () => {
      // A caller that wakes up early or late by up to half an interval, at random.
      const { clock, rl } = limiter(spec);
      const next = seededRandom(7);
      const interval = perMs / count;
      const times: number[] = [];
      while (clock.t < 10 * perMs) {
        const wait = rl.tryTake();
        if (wait === 0) times.push(clock.t);
        clock.t += Math.max(0, wait + (next() - 0.5) * interval);
      }
      assert.ok(maxInWindow(times, perMs) <= count, `${maxInWindow(times, perMs)} in one window`);
      assert.ok(times.length >= 10 * count - 10, `still about the rate: ${times.length}`);
    });
  }
});

Deno.test("RateLimiter keeps the exact average rate for odd intervals and a late caller", () => {
  // 7/s has a fractional interval; the caller here always wakes 2 ms late.
  const { clock, rl } = limiter("7/s");
  let sent = 0;
  while (clock.t < 60_000) {
    const wait = rl.tryTake();
    if (wait === 0) sent++;
    else clock.t += wait + 2;
  }
  assert.ok(Math.abs(sent - 420) <= 2, `sent ${sent} in 60 s at 7/s`);
});

Deno.test("RateLimiter.wait() does not take", () => {
  const { rl } = limiter("1/s");
  assert.equal(rl.wait(), 0);
  assert.equal(rl.wait(), 0);
  assert.equal(rl.tryTake(), 0);
  const w = rl.wait();
  assert.ok(w > 0);
  assert.equal(rl.wait(), w);
  assert.equal(rl.tryTake(), w, "a refused tryTake takes nothing and returns the same wait");
});

Deno.test("RateLimiter 2000/d is a rolling cap, not a pace", async (t) => {
  await t.step("the first 2000 go at once, the 2001st waits for the oldest to leave", () => {
    const { clock, rl } = limiter("2000/d", 1_000);
    for (let i = 0; i < 2000; i++) {
      assert.equal(rl.tryTake(), 0, `send ${i + 1}`);
      clock.t += 1; // as fast as asked: 1 ms apart
    }
    // Now t = 3000; the oldest was at 1000 and leaves at 1000 + DAY.
    assert.equal(rl.tryTake(), 1_000 + DAY - clock.t);
    clock.t = 1_000 + DAY - 1;
    assert.equal(rl.tryTake(), 1);
    clock.t = 1_000 + DAY;
    assert.equal(rl.tryTake(), 0);
    assert.equal(rl.tryTake(), 1, "the second oldest leaves 1 ms later");
  });
  await t.step("never more than 2000 in any 24 h over three simulated days", () => {
    // A caller that asks at irregular moments: a burst, then every 13 s.
    const { clock, rl } = limiter("2000/d");
    const times: number[] = [];
    let i = 0;
    while (clock.t < 3 * DAY) {
      if (rl.tryTake() === 0) times.push(clock.t);
      clock.t += (i++ % 7 === 0) ? 13_000 : 1 + (i % 5);
    }
    assert.ok(maxInWindow(times, DAY) <= 2000);
    assert.ok(maxInWindow(times, DAY) === 2000, "the cap is reached, not paced below it");
  });
  await t.step("entries stay bounded by the count", () => {
    const { clock, rl } = limiter("2000/d");
    for (let i = 0; i < 10_000; i++) {
      rl.tryTake();
      clock.t += 50_000;
    }
    assert.ok(rl.entries <= 2000, `entries ${rl.entries}`);
  });
});

Deno.test("RateLimiter combined windows obey all of them", () => {
  const times = greedy("100/s,2000/d", DAY + 30_000);
  // Paced at 100/s until the day cap: 2000 sends in about 20 s.
  const firstDay = times.filter((t) => t < DAY);
  assert.equal(firstDay.length, 2000);
  assert.ok(firstDay[1999] >= 19_990 - 10 && firstDay[1999] <= 20_000, `last ${firstDay[1999]}`);
  assert.ok(maxInWindow(times, 1_000) <= 100);
  assert.ok(maxInWindow(times, DAY) <= 2000);
  // After a day the first ones leave one by one, and the next 2000 follow them at the pace.
  const nextDay = times.filter((t) => t >= DAY);
  assert.equal(nextDay[0], DAY);
  assert.equal(nextDay.length, 2000, "30 s into the second day the cap is full again");
});

Deno.test("RateLimiter.seed() carries a day cap across a restart", async (t) => {
  await t.step("1990 sends in the last 24 h leave only 10", () => {
    const now = 10 * DAY;
    const { clock, rl } = limiter("150/min,2000/d", now);
    // Ledger times, newest first, spread over the last 20 h, plus old ones that must not count.
    const past: number[] = [];
    for (let i = 0; i < 1990; i++) past.push(now - 1_000 - i * 36_000);
    for (let i = 0; i < 500; i++) past.push(now - DAY - 1 - i);
    rl.seed(past);
    let sent = 0;
    const oldest = Math.min(...past.filter((x) => x > now - DAY));
    while (clock.t < oldest + DAY) {
      const wait = rl.tryTake();
      if (wait === 0) sent++;
      else clock.t += wait;
    }
    assert.equal(sent, 10);
    assert.equal(rl.tryTake(), 0, "the oldest seeded send has left the window");
  });
  await t.step("seeded recent sends delay a paced window no longer than the window", () => {
    const { rl } = limiter("10/s", 5_000);
    rl.seed(Array.from({ length: 500 }, (_, i) => 4_000 + i));
    const wait = rl.wait();
    assert.ok(wait > 0 && wait <= 1_000, `wait ${wait}`);
  });
  await t.step("bad times are refused", () => {
    const { rl } = limiter("10/s");
    assert.throws(() => rl.seed([Number.NaN]), TypeError);
  });
});

Deno.test("RateLimiter takes batches: tryTake(n) books n intervals", async (t) => {
  await t.step("150/min in batches of 50 gives 150 a minute", () => {
    const times = greedy("150/min", 600_000, 50).filter((x) => x < 600_000);
    assert.equal(times.length, 1500);
    assert.ok(maxInWindow(times, 60_000) <= 150);
  });
  await t.step("a batch larger than a window is never granted: Infinity, nothing taken", () => {
    const { rl } = limiter("100/s,2000/d");
    assert.equal(rl.maxTake, 100);
    assert.equal(rl.wait(101), Infinity);
    assert.equal(rl.tryTake(101), Infinity);
    assert.equal(rl.tryTake(100), 0, "nothing was taken by the refused request");
    assert.throws(() => rl.wait(1.5), RangeError);
    assert.throws(() => rl.tryTake(-1), RangeError);
    assert.equal(rl.tryTake(0), 0);
    assert.equal(new RateLimiter([]).maxTake, Infinity);
  });
  await t.step("a caller halving its batch until it fits gets through", () => {
    const { rl } = limiter("10/s");
    let take = 64;
    while (take > 1 && rl.wait(take) > 0) take >>= 1;
    assert.equal(take, 8);
    assert.equal(rl.tryTake(take), 0);
  });
  await t.step("a rolling cap lets a batch go only when all of it fits", () => {
    const { clock, rl } = limiter("10/h");
    assert.equal(rl.tryTake(8), 0);
    clock.t = 1_000;
    assert.equal(rl.tryTake(3), 3_600_000 - 1_000);
    assert.equal(rl.tryTake(2), 0);
  });
});

Deno.test("RateLimiter big rolling caps use bounded memory and stay under the cap", () => {
  const count = EXACT_LOG_LIMIT * 2;
  const hour = 3_600_000;
  const { clock, rl } = limiter(`${count}/h`);
  const times: number[] = [];
  let i = 0;
  while (clock.t < 3 * hour) {
    const wait = rl.tryTake();
    if (wait === 0) times.push(clock.t);
    else clock.t += wait;
    // Irregular pacing: sometimes several sends per ms, sometimes gaps.
    if (++i % 3 === 0) clock.t += (i % 11) * 0.37;
    assert.ok(rl.entries <= LOG_SLOTS + 1);
  }
  assert.ok(maxInWindow(times, hour) <= count);
  // Conservative by at most one quantum per window: still close to the cap over 3 h.
  assert.ok(times.length >= 3 * count - 3, `sent ${times.length}`);
});

Deno.test("RateLimiter treats a clock going backwards as standing still", () => {
  const { clock, rl } = limiter("1/s", 10_000);
  assert.equal(rl.tryTake(), 0);
  clock.t = 0;
  assert.equal(rl.tryTake(), 1000, "still measured from 10 000: never two sends in one second");
});

Deno.test("RateLimiter without windows never waits, and refuses bad windows", () => {
  const rl = new RateLimiter([]);
  for (let i = 0; i < 1000; i++) assert.equal(rl.tryTake(), 0);
  assert.throws(() => new RateLimiter([{ count: 0, perMs: 1, spec: "0/1" }]), RangeError);
  assert.throws(() => new RateLimiter([{ count: 1, perMs: 0, spec: "1/0" }]), RangeError);
});
