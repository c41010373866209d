import assert from "node:assert/strict";
// deno-lint-ignore no-import-prefix -- the project imports npm packages by full specifier (no import map)
import { parse as csvParseSync } from "npm:csv-parse@^5/sync";
import { CsvParser, type CsvRecord, readCsvRecords } from "./csv.ts";
import { seededRandom } from "../tests/_random.ts";

const encoder = new TextEncoder();

/** Split bytes into chunks of the given sizes (cycled). */
function chunked(bytes: Uint8Array, sizes: number[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let at = 0;
  let k = 0;
  while (at < bytes.length) {
    const size = sizes[k++ % sizes.length];
    out.push(bytes.slice(at, at + size));
    at += size;
  }
  return out;
}

/** Read all records from byte chunks through readCsvRecords. */
async function readAll(
  chunks: Uint8Array[],
  opts?: { delimiter?: string },
): Promise<CsvRecord[]> {
  const records: CsvRecord[] = [];
  for await (const batch of readCsvRecords(ReadableStream.from(chunks), opts)) {
    assert.ok(batch.length > 0, "readCsvRecords() yielded an empty batch");
    records.push(...batch);
  }
  return records;
}

/** Parse text in one piece with CsvParser. */
function parseText(text: string, opts?: { delimiter?: string }): CsvRecord[] {
  const parser = new CsvParser(opts);
  return [...parser.push(text), ...parser.finish()];
}

/** Records as plain data for deepEqual (drops undefined error). */
function plain(records: CsvRecord[]): unknown[] {
  return records.map((r) => r.error === undefined ? { line: r.line, fields: r.fields } : { ...r });
}

function bytesOf(text: string, bom = false): Uint8Array {
  const body = encoder.encode(text);
  if (!bom) return body;
  const out = new Uint8Array(body.length + 3);
  out.set([0xef, 0xbb, 0xbf]);
  out.set(body, 3);
  return out;
}

/** Count line breaks (LF, CRLF, lone CR each count once). */
function countBreaks(text: string): number {
  return text.match(/\r\n|\r|\n/g)?.length ?? 0;
}

const CSV1 = bytesOf("email,name\r\nuser1@example.com,Ann\r\nuser2@example.com,Bob\r\n", true);
const CSV4 = bytesOf(
  '"user1@example.com","Doe, Ann","line one\nline two"\nuser2@example.com,Bob,x\n',
);

Deno.test("readCsvRecords() drops a UTF-8 BOM (CSV-1)", async () => {
  const records = await readAll([CSV1]);
  assert.deepEqual(plain(records), [
    { line: 1, fields: ["email", "name"] },
    { line: 2, fields: ["user1@example.com", "Ann"] },
    { line: 3, fields: ["user2@example.com", "Bob"] },
  ]);
  assert.equal(records[1].fields[0], "user1@example.com");
  for (const r of records) for (const f of r.fields) assert.ok(!f.includes("\uFEFF"));
});

Deno.test("CsvParser drops a BOM only at the very start of the text", () => {
  const parser = new CsvParser();
  assert.deepEqual(parser.push(""), []);
  assert.deepEqual(plain(parser.push("\uFEFFa\n\uFEFFb\n")), [
    { line: 1, fields: ["a"] },
    { line: 2, fields: ["\uFEFFb"] },
  ]);
});

Deno.test("CsvParser reads LF, CRLF, lone CR and mixed line ends (CSV-3)", async (t) => {
  const cases: [string, string][] = [
    ["CRLF, no final newline", "user1@example.com\r\nuser2@example.com\r\nuser3@example.com"],
    ["LF", "user1@example.com\nuser2@example.com\nuser3@example.com\n"],
    ["CR only", "user1@example.com\ruser2@example.com\ruser3@example.com\r"],
    ["mixed", "user1@example.com\ruser2@example.com\r\nuser3@example.com\n"],
    ["mixed, no final newline", "user1@example.com\nuser2@example.com\ruser3@example.com"],
  ];
  for (const [name, text] of cases) {
    await t.step(name, async () => {
      const expected = [
        { line: 1, fields: ["user1@example.com"] },
        { line: 2, fields: ["user2@example.com"] },
        { line: 3, fields: ["user3@example.com"] },
      ];
      assert.deepEqual(plain(parseText(text)), expected);
      assert.deepEqual(plain(await readAll(chunked(bytesOf(text), [1]))), expected);
    });
  }
});

Deno.test("readCsvRecords() reads quoted fields in 8-byte chunks (CSV-4)", async () => {
  const records = await readAll(chunked(CSV4, [8]));
  assert.equal(records.length, 2);
  assert.equal(records[0].fields.length, 3);
  assert.equal(records[0].fields[1], "Doe, Ann");
  assert.deepEqual(plain(records), [
    { line: 1, fields: ["user1@example.com", "Doe, Ann", "line one\nline two"] },
    { line: 3, fields: ["user2@example.com", "Bob", "x"] },
  ]);
});

Deno.test("CsvParser reads RFC 4180 details", async (t) => {
  const cases: [string, string, unknown[]][] = [
    ["doubled quotes", 'a,"say ""hi""",""""\n', [{
      line: 1,
      fields: ["a", 'say "hi"', '"'],
    }]],
    ["empty fields", ',a,,\n""\n', [{ line: 1, fields: ["", "a", "", ""] }, {
      line: 2,
      fields: [""],
    }]],
    ["empty lines skipped but counted", "\n\na\r\n\r\n\rb\n\n", [{ line: 3, fields: ["a"] }, {
      line: 6,
      fields: ["b"],
    }]],
    ["CRLF inside quotes counts one line", '"x\r\ny",1\r\nz\r\n', [
      { line: 1, fields: ["x\r\ny", "1"] },
      { line: 3, fields: ["z"] },
    ]],
    ["lone CR inside quotes counts one line", '"x\ry"\rz', [
      { line: 1, fields: ["x\ry"] },
      { line: 3, fields: ["z"] },
    ]],
    ["delimiter and quote inside quotes", '"a,""b"",c"', [{ line: 1, fields: ['a,"b",c'] }]],
    ["whitespace is data", " a , b \n", [{ line: 1, fields: [" a ", " b "] }]],
    ["unicode", "jürgen@example.org,東京,😀\n", [{
      line: 1,
      fields: ["jürgen@example.org", "東京", "😀"],
    }]],
    ["empty input", "", []],
    ["only line breaks", "\r\n\n\r", []],
  ];
  for (const [name, text, expected] of cases) {
    await t.step(name, () => assert.deepEqual(plain(parseText(text)), expected));
  }
});

Deno.test("CsvParser returns malformed records with an error and goes on", async (t) => {
  await t.step("a stray quote inside an unquoted field", () => {
    const records = parseText('a@example.com,Ann\nb@exa"mple.com,Bob\nc@example.com\n');
    assert.equal(records.length, 3);
    assert.deepEqual(records[1].fields, ['b@exa"mple.com', "Bob"]);
    assert.equal(records[1].line, 2);
    assert.match(records[1].error ?? "", /quote inside unquoted field 1 on line 2/);
    assert.equal(records[0].error, undefined);
    assert.equal(records[2].error, undefined);
    assert.deepEqual(records[2].fields, ["c@example.com"]);
  });
  await t.step("text after a closing quote", () => {
    const records = parseText('x,"a@example.com"junk,y\nz\n');
    assert.deepEqual(records[0].fields, ["x", "a@example.comjunk", "y"]);
    assert.match(records[0].error ?? "", /after the closing quote of field 2 on line 1/);
    assert.deepEqual(plain(records.slice(1)), [{ line: 2, fields: ["z"] }]);
  });
  await t.step("an unterminated quote at the end names the line where it opened", () => {
    const parser = new CsvParser();
    parser.push('a\nb\n"c,\nd\ne');
    assert.throws(() => parser.finish(), (e: unknown) => {
      assert.ok(e instanceof SyntaxError);
      assert.match(e.message, /^Line 3: unterminated quoted field/);
      return true;
    });
  });
  await t.step("readCsvRecords() yields the records before an unterminated quote", async () => {
    const got: CsvRecord[] = [];
    await assert.rejects(async () => {
      for await (const batch of readCsvRecords(ReadableStream.from([bytesOf('a\n"b\n')]))) {
        got.push(...batch);
      }
    }, /Line 2: unterminated quoted field/);
    assert.deepEqual(plain(got), [{ line: 1, fields: ["a"] }]);
  });
});

Deno.test("CsvParser delimiter option", async (t) => {
  await t.step("semicolon and tab", () => {
    assert.deepEqual(plain(parseText('a;"b;c"\n', { delimiter: ";" })), [
      { line: 1, fields: ["a", "b;c"] },
    ]);
    assert.deepEqual(plain(parseText("a\tb,c\n", { delimiter: "\t" })), [
      { line: 1, fields: ["a", "b,c"] },
    ]);
  });
  for (const bad of ["", ";;", '"', "\n", "\r"]) {
    await t.step(`rejects ${JSON.stringify(bad)} with RangeError`, () => {
      assert.throws(() => new CsvParser({ delimiter: bad }), RangeError);
    });
  }
});

/** Cases for the chunking test: bytes, expected records from one-piece parsing. */
const CHUNK_CASES: [string, Uint8Array][] = [
  ["CSV-1 (BOM, CRLF)", CSV1],
  ["CSV-3 CRLF", bytesOf("user1@example.com\r\nuser2@example.com\r\nuser3@example.com")],
  ["CSV-3 CR", bytesOf("user1@example.com\ruser2@example.com\ruser3@example.com")],
  ["CSV-3 mixed", bytesOf("user1@example.com\ruser2@example.com\r\nuser3@example.com\n")],
  ["CSV-4", CSV4],
  [
    "quotes, multi-byte characters, empty lines",
    bytesOf('\r\n"a""b",jürgen@example.org\r\r\n"東京\r\n😀",""""\n\n,x,\r"",""\r\n', true),
  ],
  ["malformed records", bytesOf('a"b,c\r\n"d"e,f\n"g""\r"h\n', true)],
];

Deno.test("readCsvRecords() gives the same records for any chunking (CSV-2)", async (t) => {
  for (const [name, bytes] of CHUNK_CASES) {
    await t.step(name, async () => {
      const text = new TextDecoder().decode(bytes); // drops the BOM
      const expected = plain(parseText(text));
      assert.ok(expected.length > 0);
      for (const r of expected as CsvRecord[]) {
        for (const f of r.fields) assert.ok(!f.includes("\uFEFF"), "U+FEFF in a field");
      }
      // Two pieces, split at every byte offset (inside the BOM, CRLF, "" and UTF-8).
      for (let at = 0; at <= bytes.length; at++) {
        const got = await readAll([bytes.slice(0, at), bytes.slice(at)]);
        assert.deepEqual(plain(got), expected, `split at byte ${at}`);
      }
      // Fixed chunk sizes 1..64.
      for (let size = 1; size <= 64; size++) {
        const got = await readAll(chunked(bytes, [size]));
        assert.deepEqual(plain(got), expected, `${size}-byte chunks`);
      }
      // Text-level splits straight into the parser, at every character offset.
      for (let at = 0; at <= text.length; at++) {
        const parser = new CsvParser();
        const got = [...parser.push(text.slice(0, at)), ...parser.push(text.slice(at))];
        got.push(...parser.finish());
        assert.deepEqual(plain(got), expected, `text split at ${at}`);
      }
    });
  }
});

Deno.test("readCsvRecords() pulls a chunk only when the consumer asks", async () => {
  let pulled = 0;
  let cancelled = false;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      pulled++;
      controller.enqueue(bytesOf(`row${pulled}\n`));
    },
    cancel() {
      cancelled = true;
    },
  }, { highWaterMark: 0 });
  const records = readCsvRecords(stream);
  assert.equal(pulled, 0);
  const first = await records.next();
  assert.deepEqual(plain(first.value as CsvRecord[]), [{ line: 1, fields: ["row1"] }]);
  assert.equal(pulled, 1);
  const second = await records.next();
  assert.deepEqual(plain(second.value as CsvRecord[]), [{ line: 2, fields: ["row2"] }]);
  assert.equal(pulled, 2);
  await records.return(undefined);
  assert.ok(cancelled, "stopping early cancels the input");
  assert.equal(pulled, 2);
});

Deno.test("readCsvRecords() accepts any async iterable of bytes", async () => {
  async function* source() {
    yield bytesOf("a,b\n");
    yield bytesOf("c,d");
  }
  const records: CsvRecord[] = [];
  for await (const batch of readCsvRecords(source())) records.push(...batch);
  assert.deepEqual(plain(records), [{ line: 1, fields: ["a", "b"] }, {
    line: 2,
    fields: ["c", "d"],
  }]);
});

const PIECES = [
  "a",
  "b",
  "Z",
  "0",
  "@",
  ".",
  " ",
  ",",
  ",",
  '"',
  '"',
  "\r",
  "\n",
  "\r\n",
  "é",
  "東",
  "😀",
  "user@example.com",
];
const BREAKS = ["\n", "\r\n", "\r"];

interface Generated {
  text: string;
  records: { line: number; fields: string[] }[];
}

/** A random valid RFC 4180 input and its records with their start lines. */
function generate(random: () => number): Generated {
  const pick = <T>(xs: T[]): T => xs[Math.floor(random() * xs.length)];
  const records: { line: number; fields: string[] }[] = [];
  let text = random() < 0.3 ? "\uFEFF" : "";
  let line = 1;
  const count = Math.floor(random() * 12);
  for (let r = 0; r < count; r++) {
    while (random() < 0.15) {
      const br = pick(BREAKS);
      // An LF right after a CR line end joins it into one CRLF: no new line.
      if (!(br === "\n" && text.endsWith("\r"))) line++;
      text += br;
    }
    const fields: string[] = [];
    const width = 1 + Math.floor(random() * 5);
    const cells: string[] = [];
    for (let f = 0; f < width; f++) {
      let field = "";
      const len = random() < 0.2 ? 0 : Math.floor(random() * 8);
      for (let k = 0; k < len; k++) field += pick(PIECES);
      fields.push(field);
      const special = /[,"\r\n]/.test(field) || (width === 1 && field === "");
      cells.push(special || random() < 0.2 ? `"${field.replaceAll('"', '""')}"` : field);
    }
    records.push({ line, fields });
    line += countBreaks(fields.join(","));
    text += cells.join(",");
    if (r < count - 1 || random() < 0.6) {
      text += pick(BREAKS);
      line++;
    }
  }
  return { text, records };
}

Deno.test("readCsvRecords() agrees with csv-parse on random inputs in random chunks", () => {
  const random = seededRandom(20240601);
  let total = 0;
  return (async () => {
    for (let n = 0; n < 400; n++) {
      const { text, records: expected } = generate(random);
      const bytes = encoder.encode(text);
      const sizes = Array.from({ length: 5 }, () => 1 + Math.floor(random() * 17));
      const got = await readAll(chunked(bytes, sizes));
      const context = `input ${n}: ${JSON.stringify(text)}, chunks ${sizes}`;
      // Independent expectation from the generator (fields and start lines).
      assert.deepEqual(plain(got), expected, context);
      // csv-parse with options meaning RFC 4180 plus mixed line ends.
      const reference = csvParseSync(text, {
        bom: true,
        relax_column_count: true,
        skip_empty_lines: true,
        record_delimiter: ["\r\n", "\n", "\r"],
        info: true,
      }) as { record: string[]; info: { lines: number } }[];
      assert.deepEqual(got.map((r) => r.fields), reference.map((r) => r.record), context);
      // csv-parse reports the line where a record ends, and counts a CRLF inside
      // quotes as two lines (one more than an editor shows): allow for exactly that.
      let crlfInQuotes = 0;
      for (let i = 0; i < got.length; i++) {
        const joined = got[i].fields.join(",");
        crlfInQuotes += joined.split("\r\n").length - 1;
        const endLine = got[i].line + countBreaks(joined);
        assert.equal(endLine + crlfInQuotes, reference[i].info.lines, `${context}, record ${i}`);
      }
      total += got.length;
    }
    assert.ok(total > 1000, `only ${total} records generated`);
  })();
});
