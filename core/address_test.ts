import assert from "node:assert/strict";
import { checkAddress, checkSlowly, dedupeKey, isPlainAddress } from "./address.ts";
import { seededRandom } from "../tests/_random.ts";

Deno.test("checkAddress() accepts valid addresses and normalises them for sending", async (t) => {
  // [input, address to send, smtpUtf8]
  const cases: [string, string, boolean][] = [
    ["user1@example.com", "user1@example.com", false],
    ["  user1@example.com\t", "user1@example.com", false],
    ["Alice@Example.com", "Alice@Example.com", false],
    ["first.last+tag@sub.example.co.uk", "first.last+tag@sub.example.co.uk", false],
    ["!#$%&'*+-/=?^_`{|}~@example.com", "!#$%&'*+-/=?^_`{|}~@example.com", false],
    ["a@my-host.example", "a@my-host.example", false],
    ["a@b.c1", "a@b.c1", false],
    ["a@xn--bcher-kva.example", "a@xn--bcher-kva.example", false],
    // ADDR-2: IDN domain to punycode; UTF-8 local part flagged for SMTPUTF8.
    ["user@bücher.example", "user@xn--bcher-kva.example", false],
    ["user@BÜCHER.Example", "user@xn--bcher-kva.example", false],
    ["jürgen@example.org", "jürgen@example.org", true],
    ["ü@bücher.example", "ü@xn--bcher-kva.example", true],
    ["a@例え.テスト", "a@xn--r8jz45g.xn--zckzah", false],
    ["東京@example.jp", "東京@example.jp", true],
    [`${"a".repeat(64)}@example.com`, `${"a".repeat(64)}@example.com`, false],
    [`a@${"b".repeat(63)}.com`, `a@${"b".repeat(63)}.com`, false],
  ];
  for (const [input, address, smtpUtf8] of cases) {
    await t.step(JSON.stringify(input), () => {
      assert.deepEqual(checkAddress(input), { ok: true, address, smtpUtf8 });
    });
  }
});

Deno.test("checkAddress() converts IDN domains as the URL parser does", () => {
  for (
    const domain of ["bücher.example", "BÜCHER.example", "例え.テスト", "faß.de", "ñandú.example"]
  ) {
    const expected = new URL(`http://${domain}`).hostname;
    assert.equal(checkAddress(`x@${domain}`).address, `x@${expected}`);
  }
  assert.equal(checkAddress("user@bücher.example").address, "user@xn--bcher-kva.example");
});

Deno.test("checkAddress() refuses invalid addresses with a code and a reason", async (t) => {
  // [input, code, reason pattern]
  const cases: [string, string, RegExp][] = [
    ["", "empty", /address is empty/],
    ["   ", "empty", /address is empty/],
    ["not-an-address", "syntax", /missing "@"/],
    ["a@b@example.com", "syntax", /more than one "@"/],
    ["@example.com", "syntax", /nothing before the "@"/],
    ["a@", "syntax", /nothing after the "@"/],
    [".a@example.com", "syntax", /starts or ends with a dot/],
    ["a.@example.com", "syntax", /starts or ends with a dot/],
    ["a..b@example.com", "syntax", /two dots in a row/],
    ['"john doe"@example.com', "syntax", /quoted local parts are not supported/],
    ["a b@example.com", "syntax", /contains a space/],
    ["a\r@example.com", "syntax", /carriage return \(CR\)/],
    ["a@exam\nple.com", "syntax", /line feed \(LF\)/],
    ["a\tb@example.com", "syntax", /contains a tab/],
    ["a\u0001b@example.com", "syntax", /control character U\+0001/],
    ["a\u00a0b@example.com", "syntax", /space character \(U\+00A0\)/],
    ["a\u200bb@example.com", "syntax", /invisible formatting character \(U\+200B\)/],
    ["a(b)@example.com", "syntax", /invalid character "\(" in the local part/],
    ["Ann <ann@example.com>", "syntax", /give the bare address/],
    ["<ann@example.com>", "syntax", /give the bare address/],
    ["a@exa_mple.com", "syntax", /invalid character "_" in the domain/],
    ["user1@example.com;Ann", "syntax", /";" in the domain .*set that as the delimiter/],
    ["a@ex\ufffdample.com", "encoding", /not valid UTF-8/],
    ["a\ud800@example.com", "encoding", /not valid UTF-8/],
    ["a@localhost", "domain", /has no dot/],
    ["a@1.2.3.4", "domain", /numeric label/],
    ["a@[192.0.2.1]", "domain", /address literals/],
    ["a@example.com.", "domain", /ends with a dot/],
    ["a@.example.com", "domain", /empty label/],
    ["a@exa..mple.com", "domain", /empty label/],
    ["a@-example.com", "domain", /"-example" starts or ends with a hyphen/],
    ["a@example-.com", "domain", /starts or ends with a hyphen/],
    ["a@xn--zz.example", "domain", /invalid punycode/],
    ["a@bü_cher.example", "syntax", /invalid character "_" in the domain/],
    [`${"a".repeat(65)}@example.com`, "length", /local part is 65 octets; the limit is 64/],
    [`${"ü".repeat(33)}@example.com`, "length", /local part is 66 octets; the limit is 64/],
    [`a@${"b".repeat(64)}.com`, "length", /is 64 characters; the limit is 63/],
    [
      `${"a".repeat(64)}@${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(62)}`,
      "length",
      /address is 255 octets; the limit is 254/,
    ],
  ];
  for (const [input, code, reason] of cases) {
    await t.step(JSON.stringify(input), () => {
      const check = checkAddress(input);
      if (check.ok) assert.fail(`${JSON.stringify(input)} was accepted`);
      assert.equal(check.code, code);
      assert.match(check.reason ?? "", reason);
      assert.equal(check.smtpUtf8, false);
      assert.equal(check.address, input.trim());
    });
  }
});

Deno.test("checkAddress() counts 254 octets as the longest address", () => {
  const local = "a".repeat(64);
  const domain = `${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(61)}`;
  assert.equal(local.length + 1 + domain.length, 254);
  assert.equal(checkAddress(`${local}@${domain}`).ok, true);
  assert.equal(checkAddress(`${local}@${domain}x`).code, "length");
});

Deno.test("checkAddress() fast path agrees with the detailed check on random inputs", () => {
  const random = seededRandom(7);
  const alphabet = ["a", "Z", "0", "9", ".", ".", "-", "-", "@", "_", "+", " ", "ü", "x", "n", "1"];
  let fast = 0;
  for (let n = 0; n < 50_000; n++) {
    let s = "";
    const len = 3 + Math.floor(random() * 14);
    for (let k = 0; k < len; k++) s += alphabet[Math.floor(random() * alphabet.length)];
    if (random() < 0.5) s = `${s.replaceAll("@", "")}@${random() < 0.5 ? "ex-ample.c0m" : "e.com"}`;
    const slow = checkSlowly(s.trim());
    if (isPlainAddress(s.trim())) {
      fast++;
      assert.deepEqual(slow, { ok: true, address: s.trim(), smtpUtf8: false }, JSON.stringify(s));
    }
    assert.deepEqual(checkAddress(s), slow, JSON.stringify(s));
  }
  assert.ok(fast > 1000, `only ${fast} inputs took the fast path`);
});

Deno.test("dedupeKey() lower-cases local part and domain and converts IDN domains", async (t) => {
  const cases: [string, string][] = [
    ["Alice@Example.com", "alice@example.com"],
    ["alice@example.COM", "alice@example.com"],
    [" bob@example.com ", "bob@example.com"],
    ["user@bücher.example", "user@xn--bcher-kva.example"],
    ["user@BÜCHER.example", "user@xn--bcher-kva.example"],
    ["user@xn--bcher-kva.example", "user@xn--bcher-kva.example"],
    ["Jürgen@example.org", "jürgen@example.org"],
    ["Ju\u0308rgen@example.org", "jürgen@example.org"], // decomposed ü -> NFC
    ["first.last+tag@example.com", "first.last+tag@example.com"], // dots and tags kept
  ];
  for (const [input, key] of cases) {
    await t.step(JSON.stringify(input), () => assert.equal(dedupeKey(input), key));
  }
});
