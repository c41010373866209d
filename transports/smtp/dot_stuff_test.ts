import assert from "node:assert/strict";
import { ByteBuffer } from "./byte_buffer.ts";
import { writeDotStuffed } from "./dot_stuff.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function stuff(chunks: readonly Uint8Array[]): string {
  const out = new ByteBuffer(4);
  writeDotStuffed(chunks, out);
  return dec.decode(out.view());
}

/** Every way to cut `text` into pieces at the offsets in `cuts`. */
function split(text: string, cuts: number[]): Uint8Array[] {
  const bytes = enc.encode(text);
  const out: Uint8Array[] = [];
  let at = 0;
  for (const c of cuts) {
    out.push(bytes.subarray(at, c));
    at = c;
  }
  out.push(bytes.subarray(at));
  return out;
}

/** An independent, obviously correct reference: stuff line by line. */
function reference(text: string): string {
  if (text === "") return ".\r\n"; // nothing to terminate: the CRLF after DATA counts
  const lines = text.split("\r\n");
  const body = lines.map((l) => (l.startsWith(".") ? "." + l : l)).join("\r\n");
  return (text.endsWith("\r\n") ? body : body + "\r\n") + ".\r\n";
}

Deno.test("writeDotStuffed() doubles leading dots and ends with CRLF.CRLF", async (t) => {
  const cases: [string, string][] = [
    ["MIME-3 body lines", "Subject: x\r\n\r\nhello\r\n.\r\n.signature\r\nworld\r\n"],
    ["dot at the very start", ".first\r\nsecond\r\n"],
    ["no final CRLF", "a\r\n.b"],
    ["dots not at line start", "a.b\r\nc..d\r\n"],
    ["only a dot line", ".\r\n"],
    ["consecutive dot lines", "..\r\n...\r\n.\r\n"],
    ["empty body", ""],
  ];
  for (const [name, text] of cases) {
    await t.step(name, () => {
      assert.equal(stuff([enc.encode(text)]), reference(text));
    });
  }
});

Deno.test("writeDotStuffed() gives the same bytes at every chunk split", () => {
  const text = ".a\r\nhello\r\n.\r\n.signature\r\nx.y\r\n..\r\nend\r\n";
  const want = reference(text);
  const n = enc.encode(text).length;
  for (let i = 0; i <= n; i++) {
    assert.equal(stuff(split(text, [i])), want, `split at ${i}`);
    for (let j = i; j <= n; j++) {
      assert.equal(stuff(split(text, [i, j])), want, `split at ${i},${j}`);
    }
  }
});

Deno.test("writeDotStuffed() never modifies shared chunks", () => {
  const shared = enc.encode("\r\n.dot\r\n");
  const copy = shared.slice();
  const first = enc.encode("x");
  assert.equal(stuff([first, shared, shared]), "x\r\n..dot\r\n\r\n..dot\r\n.\r\n");
  assert.deepEqual(shared, copy);
});
