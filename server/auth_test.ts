import assert from "node:assert/strict";
import { parseBearer, timingSafeEqual, TokenCheck } from "./auth.ts";
import { HttpError } from "./errors.ts";

const TOKEN = "s3cr3t-token-0123456789";

Deno.test("TokenCheck accepts exactly 'Bearer <token>'", async (t) => {
  const check = new TokenCheck(TOKEN);
  const cases: [string | null, boolean][] = [
    [`Bearer ${TOKEN}`, true],
    [`bearer ${TOKEN}`, true],
    [`BEARER  ${TOKEN} `, true],
    [null, false],
    ["", false],
    [`Bearer ${TOKEN}x`, false],
    [`Bearer ${TOKEN.slice(0, -1)}`, false],
    [`Bearer ${TOKEN.toUpperCase()}`, false],
    [`Basic ${btoa(`user:${TOKEN}`)}`, false],
    [TOKEN, false],
    [`Bearer`, false],
    [`Bearer ${TOKEN} extra`, false],
  ];
  for (const [header, ok] of cases) {
    await t.step(`${JSON.stringify(header)} -> ${ok}`, async () => {
      assert.equal(await check.verify(header), ok);
    });
  }
});

Deno.test("TokenCheck.require() throws a 401 with WWW-Authenticate", async () => {
  const check = new TokenCheck(TOKEN);
  await check.require(`Bearer ${TOKEN}`);
  for (const header of [undefined, "Bearer wrong-token-wrong-token"]) {
    await assert.rejects(() => check.require(header), (e: unknown) => {
      assert.ok(e instanceof HttpError);
      assert.equal(e.status, 401);
      assert.equal(e.code, "unauthorized");
      assert.match(e.headers["www-authenticate"], /^Bearer/);
      assert.ok(!e.message.includes(TOKEN), "the message never echoes the token");
      return true;
    });
  }
});

Deno.test("TokenCheck refuses short tokens and tokens a header cannot carry", () => {
  assert.throws(() => new TokenCheck("short"), RangeError);
  assert.throws(() => new TokenCheck("0123456789abcdef\r\nX: y"), RangeError);
  assert.throws(() => new TokenCheck("0123456789 abcdef"), RangeError);
  new TokenCheck("0123456789abcdef");
});

Deno.test("timingSafeEqual() compares whole arrays", () => {
  const a = new Uint8Array([1, 2, 3]);
  assert.equal(timingSafeEqual(a, new Uint8Array([1, 2, 3])), true);
  assert.equal(timingSafeEqual(a, new Uint8Array([1, 2, 4])), false);
  assert.equal(timingSafeEqual(a, new Uint8Array([0, 2, 3])), false);
  assert.equal(timingSafeEqual(a, new Uint8Array([1, 2])), false);
});

Deno.test("parseBearer() extracts the token", () => {
  assert.equal(parseBearer("Bearer abc"), "abc");
  assert.equal(parseBearer("Token abc"), undefined);
  assert.equal(parseBearer(undefined), undefined);
});
