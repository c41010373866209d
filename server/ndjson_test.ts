import assert from "node:assert/strict";
import { NdjsonWriter } from "./ndjson.ts";

async function readAll(stream: ReadableStream<Uint8Array>): Promise<string> {
  return await new Response(stream).text();
}

Deno.test("NdjsonWriter writes one JSON object per line", async () => {
  const w = new NdjsonWriter();
  w.write({ type: "start", text: "line\nbreak" });
  w.write({ type: "summary", n: 1 });
  w.close();
  assert.equal(w.write({ late: true }), false);
  const text = await readAll(w.readable);
  assert.deepEqual(text.split("\n"), [
    '{"type":"start","text":"line\\nbreak"}',
    '{"type":"summary","n":1}',
    "",
  ]);
});

Deno.test("NdjsonWriter.offer() drops lines while the client has not read the previous one", async () => {
  const w = new NdjsonWriter();
  assert.equal(w.offer({ n: 1 }), true);
  assert.equal(w.offer({ n: 2 }), false, "queue full: a progress tick is dropped, not buffered");
  const reader = w.readable.getReader();
  const first = await reader.read();
  assert.equal(new TextDecoder().decode(first.value), '{"n":1}\n');
  assert.equal(w.offer({ n: 3 }), true);
  w.write({ n: 4 });
  w.close();
  let rest = "";
  for (let r = await reader.read(); !r.done; r = await reader.read()) {
    rest += new TextDecoder().decode(r.value);
  }
  assert.equal(rest, '{"n":3}\n{"n":4}\n');
});

Deno.test("NdjsonWriter calls onCancel once when the client goes away", async () => {
  const reasons: unknown[] = [];
  const w = new NdjsonWriter((r) => reasons.push(r));
  w.write({ a: 1 });
  await w.readable.cancel("gone");
  assert.deepEqual(reasons, ["gone"]);
  assert.equal(w.cancelled, true);
  assert.equal(w.write({ b: 2 }), false);
  w.close();
});
