/**
 * Differential tests for the per-row writers in mime_writers.ts: every writer
 * must write exactly the bytes the reference formatters in mime.ts return.
 */

import assert from "node:assert/strict";
import {
  encodeBase64Lines,
  encodeBody,
  encodeQuotedPrintable,
  formatMailbox,
  formatUnstructured,
  normalizeNewlines,
} from "./mime.ts";
import {
  ChunkWriter,
  encodeUtf8Into,
  HeaderWriter,
  writeBase64Lines,
  writeBody,
  writeQuotedPrintable,
} from "./mime_writers.ts";
import { randomBodyText, seededRandom } from "../tests/_random.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

Deno.test("ChunkWriter hands out views that later writes never change, across slab changes", () => {
  const w = new ChunkWriter(16);
  const chunks: Uint8Array[] = [];
  const want: string[] = [];
  const next = seededRandom(45);
  for (let i = 0; i < 200; i++) {
    let text = "";
    const parts = Math.floor(next() * 4);
    for (let j = 0; j < parts; j++) {
      const kind = Math.floor(next() * 4);
      const piece = kind === 0
        ? "abc".repeat(Math.floor(next() * 10))
        : kind === 1
        ? [..."é東😀x"].slice(0, 1 + Math.floor(next() * 4)).join("")
        : kind === 2
        ? String(Math.floor(next() * 1e9))
        : "bytes".repeat(Math.floor(next() * 8));
      if (kind === 2) w.uint(Number(piece));
      else if (kind === 3) w.bytes(encoder.encode(piece));
      else w.text(piece);
      text += piece;
    }
    assert.equal(w.length, encoder.encode(text).length);
    chunks.push(w.finish());
    want.push(text);
  }
  assert.deepEqual(chunks.map((c) => decoder.decode(c)), want);
});

Deno.test("ChunkWriter.address() refuses control characters and angle brackets, writing nothing", async (t) => {
  const cases: [string, boolean][] = [
    ["a@example.com", true],
    ["jürgen@example.org", true],
    ["", false],
    ["a@example.com\r\nBcc: x@example.org", false],
    ["a\x00@example.com", false],
    ["a>@example.com", false],
    ["<a@example.com", false],
    ["ü\u0085@example.com", false],
    ["ü\u2028@example.com", false],
  ];
  for (const [address, ok] of cases) {
    await t.step(JSON.stringify(address), () => {
      const w = new ChunkWriter();
      w.text("To: ");
      assert.equal(w.address(address), ok);
      assert.equal(decoder.decode(w.finish()), "To: " + (ok ? address : ""));
    });
  }
});

// ---------------------------------------------------------------------------
// The per-row writers against the reference formatters in mime.ts.

/** Pieces of realistic and hostile text: ASCII, Latin-1, CJK, emoji, lone surrogates, controls, specials. */
const PIECES = [
  "a",
  "Ann",
  "Chloé",
  "Jürgen",
  "São Paulo",
  "Köln",
  "東京",
  "😀",
  "👍🏽",
  "\ud800",
  "\udc00",
  " ",
  "  ",
  "\t",
  "\r\n",
  "\r",
  "\n",
  "\x00",
  "\x7f",
  "\u0085",
  "\u2028",
  "=?",
  "?=",
  "=",
  "?",
  "_",
  "=_",
  '"',
  "\\",
  "<",
  ">",
  ".",
  ",",
  "@",
  "x".repeat(80),
  "é".repeat(40),
  "東".repeat(30),
  "word ",
];

/** Pieces whose lengths sit around the limits: 76-character words, 60-character names, line columns. */
function boundaryPiece(next: () => number): string {
  const r = next();
  if (r < 0.25) return "w".repeat(1 + Math.floor(next() * 14)) + " ";
  if (r < 0.5) return "x".repeat(74 + Math.floor(next() * 5));
  if (r < 0.75) return ('Ann "Q" \\ ' + "q".repeat(60)).slice(0, 56 + Math.floor(next() * 8));
  return "é".repeat(1 + Math.floor(next() * 30));
}

function randomText(next: () => number, maxPieces: number): string {
  let s = "";
  const n = Math.floor(next() * next() * maxPieces);
  for (let i = 0; i < n; i++) {
    s += next() < 0.2 ? boundaryPiece(next) : PIECES[Math.floor(next() * PIECES.length)];
  }
  return s;
}

/** Split `s` into 1 to 3 pieces at random code unit offsets (surrogate pairs and CRLF may split). */
function randomSplit(s: string, next: () => number): string[] {
  const cuts = [0, Math.floor(next() * (s.length + 1)), Math.floor(next() * (s.length + 1))]
    .sort((a, b) => a - b);
  return [s.slice(0, cuts[1]), s.slice(cuts[1], cuts[2]), s.slice(cuts[2])];
}

Deno.test("HeaderWriter writes exactly what formatUnstructured and formatMailbox write", async (t) => {
  const addresses = ["b@example.com", "jürgen@example.org", `${"l".repeat(60)}@example.com`];
  const names = ["Subject", "To", "X-A-Rather-Long-Header-Name-To-Fold-Early"];
  for (const slab of [32 * 1024, 16]) {
    await t.step(`slab of ${slab} bytes`, () => {
      const next = seededRandom(slab);
      const w = new ChunkWriter(slab);
      const h = new HeaderWriter(w);
      for (let i = 0; i < 3000; i++) {
        const value = randomText(next, 12);
        const name = names[i % names.length];
        const address = addresses[Math.floor(next() * addresses.length)];
        h.clear();
        for (const piece of randomSplit(value, next)) h.append(piece);
        w.text("\r\n");
        h.unstructured(name);
        const got = decoder.decode(w.finish());
        assert.equal(got, "\r\n" + formatUnstructured(name, value).slice(0, -2), value);
        h.clear();
        for (const piece of randomSplit(value, next)) h.append(piece);
        h.mailbox(name, address);
        const mailbox = decoder.decode(w.finish());
        assert.equal(mailbox, formatMailbox(name, value, address).slice(0, -2), value);
      }
    });
  }
});

Deno.test("writeBody() chooses and writes what encodeBody() does", async (t) => {
  const w = new ChunkWriter();
  await t.step("at the 998-octet line limit", () => {
    for (const length of [996, 997, 998, 999, 1000]) {
      for (const text of ["y".repeat(length), "é" + "y".repeat(length - 2)]) {
        for (const end of ["", "\r\n", "\r\nz\r\n"]) {
          for (const allow8bit of [false, true]) {
            const want = encodeBody(text + end, allow8bit);
            const bytes = encoder.encode(text + end);
            assert.equal(writeBody(w, bytes, 0, bytes.length, allow8bit), want.encoding);
            assert.deepEqual(
              w.finish(),
              concatBytes(encoder.encode(want.encoding + "\r\n\r\n"), want.bytes),
            );
          }
        }
      }
    }
  });
  await t.step("random bodies", () => randomBodies(w));
});

function randomBodies(w: ChunkWriter): void {
  const next = seededRandom(7);
  const boundary = "=_camp_0123456789abcdef";
  const scratch = new Uint8Array(64 * 1024);
  for (let i = 0; i < 3000; i++) {
    let text = i % 2 === 0 ? randomBodyText(next) : randomText(next, 40);
    if (i % 3 === 0) text = normalizeNewlines(text) + "\r\n";
    if (i % 7 === 0) text += boundary;
    if (i % 11 === 0) {
      const line = "y".repeat(994 + Math.floor(next() * 8)) + (next() < 0.5 ? "é" : "");
      text = line + (next() < 0.5 ? "\r\n" : "") + text;
    }
    const allow8bit = next() < 0.5;
    const avoid = next() < 0.5 ? boundary : undefined;
    const want = encodeBody(text, allow8bit, avoid);
    // The body sits inside a larger buffer with line ends around it, so reading past its ends shows.
    scratch.fill(10);
    const bytes = encoder.encode(text);
    const start = 1 + Math.floor(next() * 8);
    scratch.set(bytes, start);
    scratch[start - 1] = 13;
    const got = writeBody(
      w,
      scratch,
      start,
      start + bytes.length,
      allow8bit,
      avoid === undefined ? undefined : encoder.encode(avoid),
    );
    assert.equal(got, want.encoding, JSON.stringify(text));
    assert.deepEqual(
      w.finish(),
      concatBytes(encoder.encode(want.encoding + "\r\n\r\n"), want.bytes),
      JSON.stringify(text),
    );
  }
}

function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

Deno.test("writeQuotedPrintable() and writeBase64Lines() write what the encoders return", () => {
  const next = seededRandom(8);
  const w = new ChunkWriter(64);
  const special = [13, 10, 32, 9, 46, 61, 0, 255, 0x41];
  for (let i = 0; i < 3000; i++) {
    const n = Math.floor(next() * 300);
    const buf = new Uint8Array(n + 4).fill(i % 2 === 0 ? 13 : 10);
    for (let j = 2; j < n + 2; j++) {
      buf[j] = next() < 0.5 ? special[Math.floor(next() * special.length)] : next() * 256;
    }
    const input = buf.subarray(2, n + 2);
    writeQuotedPrintable(w, buf, 2, n + 2);
    assert.deepEqual(w.finish(), encodeQuotedPrintable(input));
    writeBase64Lines(w, buf, 2, n + 2);
    assert.deepEqual(w.finish(), encodeBase64Lines(input));
  }
});

Deno.test("encodeUtf8Into() writes what TextEncoder does, and normalises line ends when asked", () => {
  const next = seededRandom(9);
  const dst = new Uint8Array(64 * 1024);
  for (let i = 0; i < 3000; i++) {
    const text = randomText(next, 20);
    let end = encodeUtf8Into(text, dst, 3);
    assert.deepEqual(dst.subarray(3, end), encoder.encode(text), JSON.stringify(text));
    end = encodeUtf8Into(text, dst, 0, true);
    assert.deepEqual(dst.subarray(0, end), encoder.encode(normalizeNewlines(text)));
    assert.ok(end <= 3 * text.length);
  }
});

Deno.test("ChunkWriter reuses a slab once it is sealed and its holders released it, never a pinned one", async (t) => {
  // Slabs of 128 bytes hold two writes of 60.
  const fill = (w: ChunkWriter, c: string) => {
    w.text(c.repeat(60));
    w.cut();
  };
  await t.step("released and sealed: the next new slab is the same memory", () => {
    const w = new ChunkWriter(128);
    fill(w, "a");
    const first = w.current;
    first.holders++;
    fill(w, "a");
    fill(w, "b"); // does not fit: a new slab, the first is sealed
    assert.notEqual(w.current, first);
    assert.ok(first.sealed);
    w.release(first);
    fill(w, "b");
    fill(w, "c"); // the next new slab comes from the pool
    assert.equal(w.current.bytes, first.bytes);
    assert.equal(decoder.decode(first.bytes.subarray(0, 60)), "c".repeat(60));
  });
  await t.step("still held: never reused", () => {
    const w = new ChunkWriter(128);
    fill(w, "a");
    const first = w.current;
    first.holders += 2;
    fill(w, "a");
    fill(w, "b");
    w.release(first); // one holder left
    fill(w, "b");
    fill(w, "c");
    assert.notEqual(w.current.bytes, first.bytes);
    assert.equal(decoder.decode(first.bytes.subarray(0, 60)), "a".repeat(60));
  });
  await t.step("a view was handed out (finish): never reused", () => {
    const w = new ChunkWriter(128);
    w.text("v".repeat(60));
    const view = w.finish();
    const first = w.current;
    first.holders++;
    fill(w, "a");
    fill(w, "b");
    w.release(first);
    fill(w, "b");
    fill(w, "c");
    assert.notEqual(w.current.bytes, first.bytes);
    assert.equal(decoder.decode(view), "v".repeat(60));
  });
  await t.step("not sealed yet: pooled only once the writer moves on", () => {
    const w = new ChunkWriter(128);
    fill(w, "a");
    const first = w.current;
    first.holders++;
    w.release(first); // the writer still writes here: not pooled
    fill(w, "a");
    assert.equal(w.current, first);
    fill(w, "b"); // moves on: the sealed slab has no holder left and is pooled
    fill(w, "b");
    fill(w, "c");
    assert.equal(w.current.bytes, first.bytes);
  });
});
