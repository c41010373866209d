import assert from "node:assert/strict";
import { formatInt } from "./format.ts";

Deno.test("formatInt() groups digits as Intl.NumberFormat('en-US') does", () => {
  const intl = new Intl.NumberFormat("en-US");
  const values = [0, 1, -1, 7, 12, 123, 999, 1000, -1000, 1001, 12345, 999999, 1_000_000, 1234567];
  for (let n = 1; n < Number.MAX_SAFE_INTEGER / 7; n = n * 7 + 3) values.push(n, -n);
  values.push(Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, 1.5, 2 ** 60, NaN, Infinity);
  for (const n of values) assert.equal(formatInt(n), intl.format(n), String(n));
});
