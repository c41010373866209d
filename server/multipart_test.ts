import assert from "node:assert/strict";
import { multipartBoundary, MultipartError, MultipartReader } from "./multipart.ts";
import { seededRandom } from "../tests/_random.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Serialise a FormData with Deno's own encoder: bytes and Content-Type. */
async function serialise(
  form: FormData,
): Promise<{ bytes: Uint8Array<ArrayBuffer>; type: string }> {
  const req = new Request("http://x/", { method: "POST", body: form });
  return { bytes: new Uint8Array(await req.arrayBuffer()), type: req.headers.get("content-type")! };
}

/** `bytes` as an async iterable of chunks whose sizes come from `size()`. */
async function* chunked(bytes: Uint8Array, size: () => number): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < bytes.length;) {
    const n = Math.max(1, size());
    yield bytes.slice(at, at + n);
    at += n;
  }
}

/** Parse every part with MultipartReader: [name, filename, type, text]. */
async function parseAll(source: AsyncIterable<Uint8Array>, boundary: string): Promise<string[][]> {
  const mp = new MultipartReader(source, boundary);
  const out: string[][] = [];
  for (let part = await mp.next(); part !== undefined; part = await mp.next()) {
    let text = "";
    const d = new TextDecoder();
    for await (const piece of mp.body()) text += d.decode(piece, { stream: true });
    out.push([part.name, part.filename ?? "", part.contentType, text + d.decode()]);
  }
  return out;
}

/** The same parts as Deno's own parser (Request.formData) sees them. */
async function reference(bytes: Uint8Array<ArrayBuffer>, type: string): Promise<string[][]> {
  const form = await new Request("http://x/", {
    method: "POST",
    body: bytes,
    headers: { "content-type": type },
  })
    .formData();
  const out: string[][] = [];
  for (const [name, value] of form.entries()) {
    if (typeof value === "string") out.push([name, "", "text/plain", value]);
    else {out.push([
        name,
        value.name,
        value.type.split(";")[0] || "application/octet-stream",
        await value.text(),
      ]);}
  }
  return out;
}

const TRICKY = ["\r\n", "\r", "\n", "--", "\r\n--", "-", "a", "é", "東", ",", '"', "x".repeat(50)];

Deno.test("MultipartReader reads what Deno's FormData encoder writes, whatever the chunking", async (t) => {
  const random = seededRandom(7);
  for (let round = 0; round < 40; round++) {
    const form = new FormData();
    const parts = 1 + Math.floor(random() * 3);
    for (let p = 0; p < parts; p++) {
      let text = "";
      const len = Math.floor(random() * 60);
      for (let i = 0; i < len; i++) text += TRICKY[Math.floor(random() * TRICKY.length)];
      if (p === parts - 1) {
        form.append(`part${p}`, new Blob([text], { type: "text/csv" }), `f${p}.csv`);
      } else form.append(`part${p}`, text);
    }
    const { bytes, type } = await serialise(form);
    const boundary = multipartBoundary(type)!;
    // Tricky content must survive, including text that almost looks like the delimiter.
    const want = await reference(bytes, type);
    await t.step(`round ${round}: ${bytes.length} bytes, ${parts} parts`, async () => {
      for (
        const size of [() => 1, () => 2, () => 1 + Math.floor(random() * 64), () => bytes.length]
      ) {
        assert.deepEqual(await parseAll(chunked(bytes, size), boundary), want);
      }
    });
  }
});

Deno.test("MultipartReader handles a preamble, padding after the boundary and an epilogue", async () => {
  const body = "This is the preamble\r\n--XyZ  \r\n" +
    'Content-Disposition: form-data; name="message"\r\nContent-Type: application/json\r\n\r\n{"a":1}\r\n' +
    '--XyZ\r\nContent-Disposition: form-data; name="recipients"; filename="a \\"q\\".csv"\r\n\r\n' +
    "email\r\na@example.com\r\n--XyZ--\r\nepilogue";
  const got = await parseAll(chunked(enc.encode(body), () => 3), "XyZ");
  assert.deepEqual(got, [
    ["message", "", "application/json", '{"a":1}'],
    ["recipients", 'a "q".csv', "text/plain", "email\r\na@example.com"],
  ]);
});

Deno.test("MultipartReader refuses malformed or cut-off bodies with MultipartError", async (t) => {
  const head = '--B\r\nContent-Disposition: form-data; name="recipients"\r\n\r\n';
  const cases: [string, string, RegExp][] = [
    ["no boundary at all", "just text", /no boundary line/],
    ["cut inside a body (no closing boundary)", head + "a@example.com\r\nb@exa", /cut off/],
    [
      "cut inside the headers",
      "--B\r\nContent-Disposition: form-data; na",
      /headers: it was cut off/,
    ],
    [
      "a part without a name",
      "--B\r\nContent-Type: text/plain\r\n\r\nx\r\n--B--",
      /no Content-Disposition/,
    ],
    ["garbage after a boundary", "--B!!\r\n\r\nx\r\n--B--", /expected CRLF/],
  ];
  for (const [name, body, re] of cases) {
    await t.step(name, async () => {
      await assert.rejects(
        () => parseAll(chunked(enc.encode(body), () => 4), "B"),
        (e: unknown) => {
          assert.ok(e instanceof MultipartError, String(e));
          assert.match((e as Error).message, re);
          return true;
        },
      );
    });
  }
});

Deno.test("MultipartReader.text() refuses a part over the size limit", async () => {
  const body = '--B\r\nContent-Disposition: form-data; name="message"\r\n\r\n' + "x".repeat(100) +
    "\r\n--B--";
  const mp = new MultipartReader(chunked(enc.encode(body), () => 7), "B");
  await mp.next();
  await assert.rejects(() => mp.text(99), /larger than 99 bytes/);
});

Deno.test("MultipartReader streams a large part without holding it", async () => {
  const line = "user@example.com,Name\r\n";
  const rows = 20_000;
  async function* source(): AsyncGenerator<Uint8Array> {
    yield enc.encode('--B\r\nContent-Disposition: form-data; name="recipients"\r\n\r\n');
    const block = enc.encode(line.repeat(100));
    for (let i = 0; i < rows / 100; i++) yield block;
    yield enc.encode("\r\n--B--\r\n");
  }
  const mp = new MultipartReader(source(), "B");
  await mp.next();
  let bytes = 0;
  let largest = 0;
  for await (const piece of mp.body()) {
    bytes += piece.length;
    largest = Math.max(largest, piece.length);
  }
  assert.equal(bytes, line.length * rows);
  assert.ok(largest <= line.length * 100 + 64, `pieces stay chunk-sized (largest ${largest})`);
  assert.equal(await mp.next(), undefined);
});

Deno.test("multipartBoundary() reads the boundary parameter", () => {
  const cases: [string, string | undefined][] = [
    ["multipart/form-data; boundary=abc", "abc"],
    ['multipart/form-data; charset=utf-8; boundary="a b:c"', "a b:c"],
    ["Multipart/Form-Data;BOUNDARY=----x", "----x"],
    ["multipart/form-data", undefined],
    ["multipart/mixed; boundary=abc", undefined],
    ["multipart/form-data; boundary=" + "a".repeat(71), undefined],
    ['multipart/form-data; boundary="bad\r\n"', undefined],
  ];
  for (const [type, want] of cases) assert.equal(multipartBoundary(type), want, type);
  assert.equal(dec.decode(enc.encode("ok")), "ok");
});

Deno.test("MultipartReader.body(beforeEnd) reads the next part's headers before the part's last piece", async (t) => {
  const form = new FormData();
  form.append("recipients", new Blob(["email\nuser1@example.com\nuser2@example.com\n"]), "r.csv");
  form.append("message", '{"subject":"LATE"}');
  const { bytes, type } = await serialise(form);
  const boundary = multipartBoundary(type)!;
  const cases: [string, () => number][] = [
    ["one chunk", () => bytes.length],
    ["1-byte chunks", () => 1],
    ["7-byte chunks", () => 7],
  ];
  for (const [name, size] of cases) {
    await t.step(`${name}: the hook sees "message" before the CSV's last bytes`, async () => {
      const mp = new MultipartReader(chunked(bytes, size), boundary);
      assert.equal((await mp.next())?.name, "recipients");
      let text = "";
      let seen: string | undefined = "(not called)";
      const events: string[] = [];
      for await (
        const piece of mp.body((next) => {
          seen = next?.name;
          events.push("hook");
        })
      ) {
        events.push("piece");
        text += dec.decode(piece);
      }
      assert.equal(seen, "message");
      // At most the part's last piece comes after the hook; in one chunk, the whole part does.
      const after = events.slice(events.indexOf("hook") + 1);
      assert.ok(after.length <= 1 && !after.includes("hook"), events.join(","));
      if (name === "one chunk") assert.deepEqual(events, ["hook", "piece"]);
      assert.equal(text, "email\nuser1@example.com\nuser2@example.com\n");
      // The pending part is the next one, and its body is intact.
      assert.equal((await mp.next())?.name, "message");
      assert.equal(await mp.text(1024), '{"subject":"LATE"}');
      assert.equal(await mp.next(), undefined);
    });
  }
  await t.step(
    "a throwing hook withholds the last piece and the error reaches the consumer",
    async () => {
      const mp = new MultipartReader(chunked(bytes, () => bytes.length), boundary);
      await mp.next();
      const got: string[] = [];
      await assert.rejects(async () => {
        for await (
          const piece of mp.body((next) => {
            if (next !== undefined) throw new RangeError(`late ${next.name}`);
          })
        ) got.push(dec.decode(piece));
      }, /late message/);
      assert.deepEqual(got, [], "the whole part was one piece, so nothing was yielded");
    },
  );
  await t.step("the last part: the hook gets undefined and every byte arrives", async () => {
    const last = new FormData();
    last.append("recipients", new Blob(["email\nuser1@example.com"]), "r.csv");
    const s = await serialise(last);
    const mp = new MultipartReader(chunked(s.bytes, () => 3), multipartBoundary(s.type)!);
    await mp.next();
    let text = "";
    let seen: unknown = "(not called)";
    for await (const piece of mp.body((next) => void (seen = next))) text += dec.decode(piece);
    assert.equal(seen, undefined);
    assert.equal(text, "email\nuser1@example.com");
    assert.equal(await mp.next(), undefined);
  });
});
