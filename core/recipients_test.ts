import assert from "node:assert/strict";
import {
  readRecipients,
  type RecipientOptions,
  RecipientReader,
  type RowItem,
} from "./recipients.ts";

const encoder = new TextEncoder();

function bytesOf(text: string, bom = false): Uint8Array {
  const body = encoder.encode(text);
  if (!bom) return body;
  const out = new Uint8Array(body.length + 3);
  out.set([0xef, 0xbb, 0xbf]);
  out.set(body, 3);
  return out;
}

function chunked(bytes: Uint8Array, size: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let at = 0; at < bytes.length; at += size) out.push(bytes.slice(at, at + size));
  return out;
}

interface Read {
  reader: RecipientReader;
  items: RowItem[];
  batches: number;
}

async function read(
  input: string | Uint8Array | Uint8Array[],
  opts?: RecipientOptions,
): Promise<Read> {
  const chunks = typeof input === "string"
    ? [bytesOf(input)]
    : input instanceof Uint8Array
    ? [input]
    : input;
  const reader = readRecipients(ReadableStream.from(chunks), opts);
  const items: RowItem[] = [];
  let batches = 0;
  for await (const batch of reader) {
    assert.ok(batch.length > 0, "empty batch");
    batches++;
    items.push(...batch);
  }
  return { reader, items, batches };
}

function addresses(items: RowItem[]): string[] {
  return items.flatMap((i) => i.kind === "recipient" ? [i.recipient.address] : []);
}

function kinds(items: RowItem[]): string[] {
  return items.map((i) => i.kind);
}

const CSV1 = bytesOf("email,name\r\nuser1@example.com,Ann\r\nuser2@example.com,Bob\r\n", true);
const CSV1_NO_HEADER = bytesOf("user1@example.com,Ann\r\nuser2@example.com,Bob\r\n", true);

Deno.test("readRecipients() reads a file with a BOM, with and without a header (CSV-1)", async (t) => {
  await t.step("with a header", async () => {
    const { reader, items } = await read(CSV1);
    assert.deepEqual(items, [
      {
        kind: "recipient",
        recipient: {
          line: 2,
          address: "user1@example.com",
          values: ["user1@example.com", "Ann"],
          smtpUtf8: false,
        },
      },
      {
        kind: "recipient",
        recipient: {
          line: 3,
          address: "user2@example.com",
          values: ["user2@example.com", "Bob"],
          smtpUtf8: false,
        },
      },
    ]);
    assert.deepEqual(reader.columns, ["email", "name"]);
    assert.equal(reader.hasHeader, true);
    assert.equal(reader.addressColumn, 0);
  });
  await t.step("without a header", async () => {
    const { reader, items } = await read(CSV1_NO_HEADER);
    assert.deepEqual(addresses(items), ["user1@example.com", "user2@example.com"]);
    assert.equal(addresses(items)[0], "user1@example.com");
    assert.deepEqual(reader.columns, []);
    assert.equal(reader.hasHeader, false);
    assert.equal(items[0].kind === "recipient" && items[0].recipient.line, 1);
  });
  await t.step("the same items for any chunking (CSV-2)", async () => {
    const expected = (await read(CSV1)).items;
    for (let size = 1; size <= 16; size++) {
      assert.deepEqual((await read(chunked(CSV1, size))).items, expected, `${size}-byte chunks`);
    }
    for (let at = 0; at <= CSV1.length; at++) {
      const got = await read([CSV1.slice(0, at), CSV1.slice(at)]);
      assert.deepEqual(got.items, expected, `split at ${at}`);
      assert.deepEqual(got.reader.columns, ["email", "name"]);
    }
  });
});

Deno.test("readRecipients() lets no CR reach an address, whatever the line ends (CSV-3)", async (t) => {
  const cases: [string, string][] = [
    ["CRLF, no final newline", "user1@example.com\r\nuser2@example.com\r\nuser3@example.com"],
    ["CR only", "user1@example.com\ruser2@example.com\ruser3@example.com"],
    ["mixed", "user1@example.com\ruser2@example.com\r\nuser3@example.com\n"],
  ];
  for (const [name, text] of cases) {
    await t.step(name, async () => {
      for (const chunks of [[bytesOf(text)], chunked(bytesOf(text), 1)]) {
        const { items } = await read(chunks);
        assert.deepEqual(addresses(items), [
          "user1@example.com",
          "user2@example.com",
          "user3@example.com",
        ]);
        assert.deepEqual(
          items.map((i) => i.kind === "recipient" ? i.recipient.line : 0),
          [1, 2, 3],
        );
      }
    });
  }
});

Deno.test("readRecipients() with the wrong delimiter makes every row invalid with a clear reason (CSV-5)", async (t) => {
  const text = "user1@example.com;Ann\nuser2@example.com;Bob";
  await t.step("default delimiter", async () => {
    const { items } = await read(text);
    assert.equal(items.length, 2);
    for (const item of items) {
      assert.equal(item.kind, "invalid");
      if (item.kind !== "invalid") continue;
      assert.equal(item.code, "syntax");
      assert.match(item.reason, /invalid character ";"/);
      assert.match(item.reason, /set that as the delimiter/);
    }
    assert.deepEqual(items.map((i) => i.kind === "invalid" ? i.line : 0), [1, 2]);
  });
  await t.step('delimiter ";"', async () => {
    const { items, reader } = await read(text, { delimiter: ";" });
    assert.deepEqual(addresses(items), ["user1@example.com", "user2@example.com"]);
    assert.equal(reader.hasHeader, false);
    assert.deepEqual(items[1].kind === "recipient" && items[1].recipient.values, [
      "user2@example.com",
      "Bob",
    ]);
  });
});

Deno.test("readRecipients() drops case duplicates and keeps the address as first written (ADDR-1)", async () => {
  const { items } = await read("Alice@Example.com\nalice@example.COM\nbob@example.com\n");
  assert.deepEqual(addresses(items), ["Alice@Example.com", "bob@example.com"]);
  assert.deepEqual(items[1], {
    kind: "duplicate",
    line: 2,
    address: "alice@example.COM",
    firstLine: 1,
  });
  assert.deepEqual(kinds(items), ["recipient", "duplicate", "recipient"]);
});

Deno.test("readRecipients() converts IDN domains and flags UTF-8 local parts (ADDR-2)", async () => {
  const { items } = await read(
    "email\nuser@bücher.example\njürgen@example.org\nUSER@BÜCHER.example\nJürgen@example.org\n",
  );
  assert.deepEqual(items.slice(0, 2), [
    {
      kind: "recipient",
      recipient: {
        line: 2,
        address: "user@xn--bcher-kva.example",
        values: ["user@bücher.example"],
        smtpUtf8: false,
      },
    },
    {
      kind: "recipient",
      recipient: {
        line: 3,
        address: "jürgen@example.org",
        values: ["jürgen@example.org"],
        smtpUtf8: true,
      },
    },
  ]);
  assert.deepEqual(items.slice(2), [
    { kind: "duplicate", line: 4, address: "USER@BÜCHER.example", firstLine: 2 },
    { kind: "duplicate", line: 5, address: "Jürgen@example.org", firstLine: 3 },
  ]);
});

Deno.test("readRecipients() marks a bad address invalid and goes on (ADDR-3)", async () => {
  const { items } = await read(
    "a1@example.com\nnot-an-address\na3@example.com\na4@example.com\na5@example.com\n",
  );
  assert.deepEqual(kinds(items), ["recipient", "invalid", "recipient", "recipient", "recipient"]);
  assert.deepEqual(items[1], {
    kind: "invalid",
    line: 2,
    address: "not-an-address",
    code: "syntax",
    reason: 'missing "@"',
  });
});

Deno.test("readRecipients() detects the header row and resolves the column", async (t) => {
  // [name, csv, options, hasHeader, addressColumn, columns, first address]
  const cases: [string, string, RecipientOptions, boolean, number, string[], string][] = [
    [
      "label header",
      "email,name\na@example.com,A\n",
      {},
      true,
      0,
      ["email", "name"],
      "a@example.com",
    ],
    ["E-Mail label", "E-Mail Address;Name\na@example.com;A\n", { delimiter: ";" }, true, 0, [
      "E-Mail Address",
      "Name",
    ], "a@example.com"],
    ["recipient label", "Recipient\na@example.com\n", {}, true, 0, ["Recipient"], "a@example.com"],
    ["no @ in the first row", "name,city\nAnn,Paris\n", { column: 1 }, true, 0, [
      "name",
      "city",
    ], ""],
    ["no header", "a@example.com,A\nb@example.com,B\n", {}, false, 0, [], "a@example.com"],
    [
      "first row invalid but has @ and no label",
      "a@@example.com,A\nb@example.com,B\n",
      {},
      false,
      0,
      [],
      "b@example.com",
    ],
    ["forced header", "a@example.com,A\nb@example.com,B\n", { header: true }, true, 0, [
      "a@example.com",
      "A",
    ], "b@example.com"],
    [
      "forced no header",
      "email,name\na@example.com,A\n",
      { header: false },
      false,
      0,
      [],
      "a@example.com",
    ],
    ["column by name", "name,Email\nAnn,a@example.com\n", { column: "email" }, true, 1, [
      "name",
      "Email",
    ], "a@example.com"],
    ["column by exact name", "name,mail\nAnn,a@example.com\n", { column: "mail" }, true, 1, [
      "name",
      "mail",
    ], "a@example.com"],
    ["column by index with header", "name,email\nAnn,a@example.com\n", { column: 2 }, true, 1, [
      "name",
      "email",
    ], "a@example.com"],
    [
      "column by index without header",
      "Ann,a@example.com\n",
      { column: 2 },
      false,
      1,
      [],
      "a@example.com",
    ],
    [
      "column index as digit string",
      "Ann,a@example.com\n",
      { column: "2" },
      false,
      1,
      [],
      "a@example.com",
    ],
    ["trimmed header and values", " email , name \n  a@example.com  ,  Ann \n", {}, true, 0, [
      "email",
      "name",
    ], "a@example.com"],
  ];
  for (const [name, csv, opts, hasHeader, column, columns, first] of cases) {
    await t.step(name, async () => {
      const { reader, items } = await read(csv, opts);
      assert.equal(reader.hasHeader, hasHeader);
      assert.equal(reader.addressColumn, column);
      assert.deepEqual(reader.columns, columns);
      assert.equal(addresses(items)[0] ?? "", first);
      const rows = csv.split("\n").filter((l) => l !== "").length;
      assert.equal(items.length, rows - (hasHeader ? 1 : 0), "one item per data row");
    });
  }
  await t.step("values are trimmed everywhere", async () => {
    const { items } = await read("email,name,city\n  a@example.com\t,  Ann  , Paris \n");
    assert.deepEqual(items[0].kind === "recipient" && items[0].recipient.values, [
      "a@example.com",
      "Ann",
      "Paris",
    ]);
  });
});

Deno.test("readRecipients() refuses an unknown column before yielding any row", async (t) => {
  const cases: [string, string, RecipientOptions, RegExp][] = [
    [
      "unknown name",
      "email,name,city\na@example.com,A,P\n",
      { column: "emial" },
      /^Column "emial" not found; columns are: email, name, city$/,
    ],
    [
      "index beyond the first row",
      "email,name\na@example.com,A\n",
      { column: 3 },
      /^Column 3 not found: line 1 has 2 columns \(email, name\)$/,
    ],
  ];
  for (const [name, csv, opts, message] of cases) {
    await t.step(name, async () => {
      const reader = readRecipients(ReadableStream.from([bytesOf(csv)]), opts);
      const iterator = reader[Symbol.asyncIterator]();
      await assert.rejects(() => iterator.next(), (e: unknown) => {
        assert.ok(e instanceof RangeError);
        assert.match(e.message, message);
        return true;
      });
    });
  }
  await t.step("bad options fail at construction", () => {
    const input = ReadableStream.from([bytesOf("a@example.com\n")]);
    assert.throws(() => readRecipients(input, { column: 0 }), RangeError);
    assert.throws(() => readRecipients(input, { column: 1.5 }), RangeError);
    assert.throws(() => readRecipients(input, { column: "" }), TypeError);
    assert.throws(() => readRecipients(input, { column: "email", header: false }), RangeError);
    assert.throws(() => readRecipients(input, { delimiter: ";;" }), RangeError);
    assert.throws(
      () => readRecipients(input, { header: "yes" as unknown as boolean }),
      TypeError,
    );
  });
});

Deno.test("readRecipients() turns malformed and short rows into invalid items", async () => {
  const { items } = await read(
    'email,name\na@example.com,A\nb@exa"mple.com,B\n,C\n"c@example.com"x,D\n',
    { column: 1 },
  );
  assert.deepEqual(items.map((i) => i.kind === "invalid" ? [i.line, i.code, i.address] : i.kind), [
    "recipient",
    [3, "csv", 'b@exa"mple.com'],
    [4, "empty", ""],
    [5, "csv", "c@example.comx"],
  ]);
  const short = await read("name,email\nAnn,a@example.com\nBob\n", { column: "email" });
  assert.deepEqual(short.items[1], {
    kind: "invalid",
    line: 3,
    address: "",
    code: "column",
    reason: "row has 1 column; the address is in column 2",
  });
});

Deno.test("readRecipients() handles empty and header-only files", async (t) => {
  await t.step("empty", async () => {
    const { reader, items } = await read("");
    assert.deepEqual(items, []);
    assert.deepEqual(reader.columns, []);
    assert.equal(reader.hasHeader, false);
  });
  await t.step("header only", async () => {
    const { reader, items } = await read("email,name\r\n");
    assert.deepEqual(items, []);
    assert.deepEqual(reader.columns, ["email", "name"]);
    assert.equal(reader.hasHeader, true);
  });
  await t.step("a reader is iterated once", async () => {
    const { reader } = await read("a@example.com\n");
    assert.throws(() => reader[Symbol.asyncIterator](), TypeError);
  });
});

Deno.test("readRecipients() yields one item per row for 0, 1, 999, 1000, 1001 and 2001 rows (CSV-6)", async (t) => {
  for (const rows of [0, 1, 999, 1000, 1001, 2001]) {
    await t.step(`${rows} rows`, async () => {
      let csv = "email,n\n";
      for (let i = 1; i <= rows; i++) csv += `user${i}@example.com,${i}\n`;
      const { items } = await read(chunked(bytesOf(csv), 4096));
      assert.equal(items.length, rows);
      assert.equal(addresses(items).length, rows);
      assert.deepEqual(
        items.map((i) => i.kind === "recipient" ? i.recipient.line : 0),
        Array.from({ length: rows }, (_, i) => i + 2),
      );
    });
  }
});

Deno.test("readRecipients() finds every duplicate among 200k rows with the right first line", async () => {
  const lines: string[] = ["email,n"];
  const firstLine: number[] = []; // by address id
  const expectedDuplicates: [number, number][] = [];
  for (let i = 0; i < 200_000; i++) {
    const line = lines.length + 1;
    if (i % 4 === 3) {
      // Every fourth row repeats an earlier address, its case changed.
      const id = (i * 7919) % firstLine.length;
      expectedDuplicates.push([line, firstLine[id]]);
      lines.push(`USER${id}@EXAMPLE.com,${i}`);
    } else {
      firstLine.push(line);
      lines.push(`user${firstLine.length - 1}@example.com,${i}`);
    }
  }
  const { items } = await read(chunked(bytesOf(lines.join("\n")), 65536));
  assert.equal(items.length, 200_000);
  const duplicates = items.flatMap((i) => i.kind === "duplicate" ? [[i.line, i.firstLine]] : []);
  assert.equal(duplicates.length, 50_000);
  assert.deepEqual(duplicates, expectedDuplicates);
  assert.equal(items.filter((i) => i.kind === "recipient").length, 150_000, "no false duplicates");
});

Deno.test("RecipientReader reads the next chunk only when asked", async () => {
  let pulled = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      pulled++;
      controller.enqueue(
        bytesOf(pulled === 1 ? "email\nu1@example.com\n" : `u${pulled}@example.com\n`),
      );
      if (pulled === 5) controller.close();
    },
  }, { highWaterMark: 0 });
  const reader = new RecipientReader(stream);
  const iterator = reader[Symbol.asyncIterator]();
  const first = await iterator.next();
  assert.equal(first.done, false);
  assert.deepEqual(reader.columns, ["email"]);
  assert.equal(pulled, 1);
  await iterator.next();
  assert.equal(pulled, 2);
});

Deno.test("RecipientReader reports a row whose merge field is not UTF-8 as invalid (encoding)", async () => {
  const bytes = new Uint8Array([
    ...new TextEncoder().encode("email,name\na@example.com,J"),
    0xfc, // Latin-1 ü: not UTF-8
    ...new TextEncoder().encode("rgen\nb@example.com,Bob\n"),
  ]);
  const reader = new RecipientReader(new Blob([bytes]).stream());
  const items = [];
  for await (const batch of reader) items.push(...batch);
  assert.equal(items.length, 2);
  const [bad, good] = items;
  assert.equal(bad.kind, "invalid");
  if (bad.kind === "invalid") {
    assert.equal(bad.code, "encoding");
    assert.equal(bad.line, 2);
    assert.match(bad.reason, /column 2 is not valid UTF-8/);
  }
  assert.equal(good.kind, "recipient");
});

Deno.test("RecipientReader gives the same items with a sizeHint (the duplicate table sized up front)", async () => {
  let text = "email,name\n";
  for (let i = 0; i < 5000; i++) text += `user${i % 4000}@example.com,N${i}\n`;
  const bytes = new TextEncoder().encode(text);
  const chunks = (size: number) =>
    new ReadableStream<Uint8Array>({
      start(c) {
        for (let at = 0; at < bytes.length; at += size) c.enqueue(bytes.slice(at, at + size));
        c.close();
      },
    });
  const read = async (reader: RecipientReader) => {
    const out = [];
    for await (const batch of reader) out.push(...batch);
    return out;
  };
  const plain = await read(new RecipientReader(chunks(4096)));
  const hinted = await read(new RecipientReader(chunks(4096), { sizeHint: bytes.length }));
  assert.deepEqual(hinted, plain);
  assert.equal(plain.filter((i) => i.kind === "duplicate").length, 1000);
});
