import assert from "node:assert/strict";
import { RecipientPack } from "./recipient_pack.ts";
import type { Recipient } from "./types.ts";

Deno.test("RecipientPack gives back every recipient as packed", async (t) => {
  const recipients: Recipient[] = [
    {
      line: 2,
      address: "ann@example.com",
      values: ["ann@example.com", "Ann", "Paris"],
      smtpUtf8: false,
    },
    // The envelope address differs from the cell (IDN domain in punycode): stored apart.
    {
      line: 3,
      address: "bob@xn--bcher-kva.example",
      values: ["bob@bücher.example", "Bob"],
      smtpUtf8: false,
    },
    {
      line: 5,
      address: "jörg@example.com",
      values: ["jörg@example.com", "", "Zürich 🏔"],
      smtpUtf8: true,
    },
    // Fewer cells than the address column: the address is stored apart too.
    { line: 0x7fffffff, address: "z@example.com", values: [], smtpUtf8: false },
    { line: 9, address: "", values: ["", ""], smtpUtf8: false },
  ];
  const pack = RecipientPack.pack(recipients, 0);
  assert.equal(pack.length, recipients.length);
  for (let i = 0; i < recipients.length; i++) {
    await t.step(`recipient ${i}`, () => {
      assert.equal(pack.line(i), recipients[i].line);
      assert.equal(pack.address(i), recipients[i].address);
      assert.deepEqual(pack.recipient(i), recipients[i]);
    });
  }
  await t.step("the address column need not be the first", () => {
    const r: Recipient = {
      line: 4,
      address: "c@example.com",
      values: ["C", "c@example.com"],
      smtpUtf8: false,
    };
    const p = RecipientPack.pack([r, r], 1);
    assert.deepEqual(p.recipient(1), r);
    assert.equal(p.address(0), "c@example.com");
  });
  await t.step("an empty batch", () => assert.equal(RecipientPack.pack([], 0).length, 0));
  await t.step("a line beyond 31 bits is refused, not wrapped", () => {
    assert.throws(
      () => RecipientPack.pack([{ ...recipients[0], line: 2 ** 31 }], 0),
      RangeError,
    );
  });
});

Deno.test("RecipientPack reads back values that were slices of a larger text", () => {
  const big = "x".repeat(100_000) + "ann@example.com,Ann";
  const address = big.slice(100_000, 100_015);
  const pack = RecipientPack.pack(
    [{ line: 2, address, values: [address, big.slice(100_016)], smtpUtf8: false }],
    0,
  );
  assert.deepEqual(pack.recipient(0).values, ["ann@example.com", "Ann"]);
});

Deno.test("RecipientPack: a refused batch leaves nothing behind for the next one", () => {
  const ok: Recipient = {
    line: 2,
    address: "a@example.com",
    values: ["a@example.com"],
    smtpUtf8: false,
  };
  assert.throws(
    () => RecipientPack.pack([ok, { ...ok, line: 2 ** 31, address: "b@example.com" }], 0),
    RangeError,
  );
  const next = RecipientPack.pack(
    [{ ...ok, address: "c@example.com", values: ["c@example.com"] }],
    0,
  );
  assert.deepEqual(next.recipient(0).values, ["c@example.com"]);
  assert.equal(next.address(0), "c@example.com");
});

Deno.test("RecipientPack does not keep the CSV text its values were sliced from alive", async () => {
  // Values are slices of big strings (as CSV fields are of the text read). Packs must
  // hold copies: 100 packs of 1 MB texts would otherwise keep 100 MB. A V8 detail does
  // the copying (see `pack`), so this checks it in a process that may force a full GC.
  const code = `
    import { RecipientPack } from ${
    JSON.stringify(new URL("./recipient_pack.ts", import.meta.url).href)
  };
    const packs = [];
    // Warm up until V8 optimises pack: the copy must also happen in optimised code.
    const warm = { line: 2, address: "w@example.com", values: ["w@example.com", "W"], smtpUtf8: false };
    for (let i = 0; i < 200_000; i++) RecipientPack.pack([warm, warm], 0);
    gc();
    const before = Deno.memoryUsage().heapUsed;
    for (let i = 0; i < 100; i++) {
      const big = String(i).padStart(6, "0") + "x".repeat(1_000_000) + "ann@example.com,Ann Example";
      const a = big.slice(1_000_006, 1_000_021);
      const b = big.slice(1_000_022);
      // One piece alone (a slice), and two pieces (a concatenation).
      packs.push(RecipientPack.pack([{ line: 2, address: a, values: [a], smtpUtf8: false }], 0));
      packs.push(RecipientPack.pack([{ line: 2, address: a, values: [a, b], smtpUtf8: false }], 0));
    }
    gc();
    const kept = Deno.memoryUsage().heapUsed - before;
    console.log(JSON.stringify({ kept, values: packs[7].recipient(0).values }));
  `;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--v8-flags=--expose-gc", code],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const { kept, values } = JSON.parse(new TextDecoder().decode(out.stdout));
  assert.deepEqual(values, ["ann@example.com", "Ann Example"]);
  assert.ok(kept < 10_000_000, `${(kept / 1e6).toFixed(1)} MB kept by 200 packs`);
});
