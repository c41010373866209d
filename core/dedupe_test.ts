import assert from "node:assert/strict";
import { DedupeSet } from "./dedupe.ts";

Deno.test("DedupeSet.add() reports the first line of a repeated key", () => {
  const seen = new DedupeSet();
  assert.equal(seen.add("alice@example.com", 1), 0);
  assert.equal(seen.add("bob@example.com", 2), 0);
  assert.equal(seen.add("alice@example.com", 3), 1);
  assert.equal(seen.add("alice@example.com", 9), 1, "the first line is kept");
  assert.equal(seen.size, 2);
  assert.equal(seen.firstLine("bob@example.com"), 2);
  assert.equal(seen.firstLine("carol@example.com"), 0);
});

Deno.test("DedupeSet folds ASCII case only", async (t) => {
  const cases: [string, string, boolean][] = [
    ["Alice@Example.com", "alice@example.COM", true],
    ["ABCXYZ@example.com", "abcxyz@example.com", true],
    ["a@example.com", "b@example.com", false],
    ["ü@example.com", "Ü@example.com", false], // non-ASCII: callers pass dedupeKey()
    ["[@example.com", "{@example.com", false], // neighbours of the A-Z range
    ["@@example.com", "`@example.com", false],
    ["", "a", false],
    ["ab", "ba", false],
    ["a", "a\u0000", false],
  ];
  for (const [first, second, same] of cases) {
    await t.step(`${JSON.stringify(first)} vs ${JSON.stringify(second)}`, () => {
      const seen = new DedupeSet();
      seen.add(first, 1);
      assert.equal(seen.add(second, 2), same ? 1 : 0);
    });
  }
});

Deno.test("DedupeSet keeps 200k distinct addresses apart and finds every repeat", () => {
  const n = 200_000;
  const seen = new DedupeSet(8); // start tiny: many doublings
  const address = (i: number) => `user${i}.${(i * 7919) % 1000}@host${i % 97}.example.com`;
  for (let i = 0; i < n; i++) assert.equal(seen.add(address(i), i + 1), 0, address(i));
  assert.equal(seen.size, n);
  const bytes = seen.byteLength;
  assert.ok(bytes <= n * 16 / 0.3, `table holds ${bytes} bytes for ${n} keys`);
  // Every key again (upper-cased), in a different order: all found, with the right line.
  for (let k = 0; k < n; k++) {
    const i = (k * 40503) % n;
    assert.equal(seen.add(address(i).toUpperCase(), n + k + 1), i + 1);
  }
  assert.equal(seen.size, n);
  assert.equal(seen.byteLength, bytes, "repeats take no memory");
});

Deno.test("DedupeSet.addMany() gives the same answers as add() in order", () => {
  const single = new DedupeSet(8);
  const batched = new DedupeSet(8);
  let line = 0;
  for (let round = 0; round < 40; round++) {
    const count = 1 + ((round * 37) % 300);
    const keys: string[] = [];
    const lines = new Uint32Array(count);
    for (let i = 0; i < count; i++) {
      // Repeats within a batch and across batches.
      keys.push(`k${(round * 131 + i * 17) % 2000}@example.com`);
      lines[i] = ++line;
    }
    const found = new Uint32Array(count);
    batched.addMany(keys, lines, count, found);
    for (let i = 0; i < count; i++) {
      assert.equal(found[i], single.add(keys[i], lines[i]), `${keys[i]} round ${round}`);
    }
  }
  assert.equal(batched.size, single.size);
  assert.ok(single.size > 1000 && single.size <= 2000);
});

Deno.test("DedupeSet refuses bad lines and capacities with RangeError", async (t) => {
  const seen = new DedupeSet();
  for (const line of [0, -1, 1.5, 2 ** 32, Number.NaN]) {
    await t.step(`line ${line}`, () => {
      assert.throws(() => seen.add("a@example.com", line), RangeError);
      assert.throws(
        () => seen.addMany(["a@example.com"], [line], 1, new Uint32Array(1)),
        RangeError,
      );
    });
  }
  await t.step("count larger than the arrays", () => {
    assert.throws(() => seen.addMany(["a"], [1], 2, new Uint32Array(2)), RangeError);
  });
  await t.step("capacity", () => {
    assert.throws(() => new DedupeSet(0), RangeError);
    assert.throws(() => new DedupeSet(2 ** 29), RangeError);
  });
  assert.equal(seen.size, 0);
});

Deno.test("DedupeSet.reserve() sizes the table once and keeps every key", () => {
  const set = new DedupeSet(8);
  for (let i = 1; i <= 100; i++) assert.equal(set.add(`k${i}@example.com`, i), 0);
  const before = set.byteLength;
  set.reserve(100_000);
  assert.ok(set.byteLength > before);
  const sized = set.byteLength;
  for (let i = 1; i <= 100; i++) assert.equal(set.add(`K${i}@EXAMPLE.com`, 1000 + i), i);
  for (let i = 101; i <= 100_000; i++) assert.equal(set.add(`k${i}@example.com`, i), 0);
  assert.equal(set.byteLength, sized, "no doubling while filling what was reserved");
  assert.ok(sized <= (100_000 / 0.7 + 2) * 16, `${sized} bytes: no power-of-two round-up`);
  assert.equal(set.size, 100_000);
  // Past the reservation the table doubles and still finds every key.
  for (let i = 100_001; i <= 150_000; i++) assert.equal(set.add(`k${i}@example.com`, i), 0);
  assert.ok(set.byteLength > sized);
  for (let i = 1; i <= 150_000; i += 7) assert.equal(set.add(`K${i}@example.com`, 9), i);
  assert.equal(set.size, 150_000);
});
