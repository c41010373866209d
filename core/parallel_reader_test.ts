/**
 * ParallelRecipientReader against RecipientReader: the same batches, getters
 * and errors for every input, and a worker that never outlives the reading.
 *
 * Starting a worker costs about 30 ms, so the worker runs on the cases.md
 * inputs and on 40 random CSVs; the compact encoding between the threads is
 * checked in-process on 300 more random CSVs and on every chunking of one.
 *
 * @module
 */
import assert from "node:assert/strict";
import { seededRandom } from "../tests/_random.ts";
import {
  createRecipientReader,
  PARALLEL_MIN_BYTES,
  ParallelRecipientReader,
} from "./parallel_reader.ts";
import { type RecipientOptions, RecipientReader, type RowItem } from "./recipients.ts";
import { decodeRows, encodeRows } from "./row_codec.ts";

// ---------------------------------------------------------------------------
// Workers are counted: every one started must be terminated by the reader.

const RealWorker = globalThis.Worker;
const live = new Set<Worker>();
let started = 0;
/** Messages received by the last worker started (0: it never ran). */
let lastMessages = 0;

class CountedWorker extends RealWorker {
  constructor(url: string | URL, opts?: WorkerOptions) {
    super(url, opts);
    live.add(this);
    started++;
    lastMessages = 0;
    this.addEventListener("message", () => lastMessages++);
  }
  override terminate(): void {
    live.delete(this);
    super.terminate();
  }
}
globalThis.Worker = CountedWorker;

function assertNoWorkerLeft(): void {
  assert.equal(live.size, 0, "a worker was left running");
}

// ---------------------------------------------------------------------------

const encoder = new TextEncoder();

function bytesOf(text: string, bom = false): Uint8Array {
  const body = encoder.encode(text);
  return bom ? new Uint8Array([0xef, 0xbb, 0xbf, ...body]) : body;
}

/** Split into chunks of `size` bytes (a function of the chunk index for uneven splits). */
function split(bytes: Uint8Array, size: number | ((i: number) => number)): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const n = typeof size === "number" ? size : size(i);
    out.push(bytes.slice(at, at + n));
    at += n;
  }
  return out;
}

/** Everything a reader showed: its batches, getters, and the error that ended it. */
interface Outcome {
  batches: RowItem[][];
  columns: readonly string[];
  hasHeader: boolean;
  addressColumn: number;
  error?: { class: string; message: string };
}

function errorOf(e: unknown): Outcome["error"] {
  assert.ok(e instanceof Error, `not an Error: ${String(e)}`);
  return { class: e.constructor.name, message: e.message };
}

type Reader = RecipientReader | ParallelRecipientReader;
type ReaderClass = new (
  input: ReadableStream<Uint8Array>,
  opts?: RecipientOptions,
) => Reader;

/** Read `chunks` (copied: the parallel reader may detach them) with `Reader`. */
async function outcome(
  Reader: ReaderClass,
  chunks: Uint8Array[],
  opts?: RecipientOptions,
): Promise<Outcome> {
  let reader: Reader;
  try {
    reader = new Reader(ReadableStream.from(chunks.map((c) => c.slice())), opts);
  } catch (e) {
    return { batches: [], columns: [], hasHeader: false, addressColumn: 0, error: errorOf(e) };
  }
  const batches: RowItem[][] = [];
  let error: Outcome["error"];
  try {
    for await (const batch of reader) batches.push(batch);
  } catch (e) {
    error = errorOf(e);
  }
  const out: Outcome = {
    batches,
    columns: reader.columns,
    hasHeader: reader.hasHeader,
    addressColumn: reader.addressColumn,
  };
  if (error !== undefined) out.error = error;
  return out;
}

/** Both readers on the same chunks: equal outcomes, the worker ran and is gone. */
async function same(chunks: Uint8Array[], opts?: RecipientOptions): Promise<Outcome> {
  const expected = await outcome(RecipientReader, chunks, opts);
  const before = started;
  const actual = await outcome(ParallelRecipientReader, chunks, opts);
  assert.deepEqual(actual, expected);
  if (expected.error === undefined || expected.batches.length > 0) {
    assert.equal(started, before + 1, "no worker started");
    assert.ok(lastMessages > 0, "the worker never answered (the reader fell back)");
  }
  assertNoWorkerLeft();
  return expected;
}

const items = (o: Outcome) => o.batches.flat();

// ---------------------------------------------------------------------------

Deno.test("ParallelRecipientReader yields what RecipientReader yields for the cases.md inputs", async (t) => {
  const csv1 = "email,name\r\nuser1@example.com,Ann\r\nuser2@example.com,Bob\r\n";
  const cases: [string, Uint8Array, RecipientOptions, number[]][] = [
    ["CSV-1 BOM with a header", bytesOf(csv1, true), {}, [1000, 1, 2, 5]],
    [
      "CSV-1 BOM without a header",
      bytesOf("user1@example.com,Ann\r\nuser2@example.com,Bob\r\n", true),
      {},
      [1000, 1, 3],
    ],
    ["CSV-2 split inside the BOM and inside CRLF", bytesOf(csv1, true), {}, [2, 3, 7, 13, 64]],
    [
      "CSV-3 CRLF, no final newline",
      bytesOf("user1@example.com\r\nuser2@example.com\r\nuser3@example.com"),
      {},
      [1000, 1],
    ],
    [
      "CSV-3 CR only",
      bytesOf("user1@example.com\ruser2@example.com\ruser3@example.com\r"),
      {},
      [1000, 4],
    ],
    [
      "CSV-3 mixed endings",
      bytesOf("user1@example.com\r\nuser2@example.com\ruser3@example.com\n"),
      {},
      [1000, 2],
    ],
    [
      "CSV-4 quoted fields in 8-byte chunks",
      bytesOf('"user1@example.com","Doe, Ann","line one\nline two"\nuser2@example.com,Bob,x\n'),
      {},
      [8, 1000],
    ],
    [
      "CSV-5 wrong delimiter",
      bytesOf("user1@example.com;Ann\nuser2@example.com;Bob"),
      {},
      [1000],
    ],
    [
      "CSV-5 --delimiter ;",
      bytesOf("user1@example.com;Ann\nuser2@example.com;Bob"),
      { delimiter: ";" },
      [1000, 5],
    ],
    [
      "ADDR-1 case duplicates",
      bytesOf("Alice@Example.com\nalice@example.COM\nbob@example.com\n"),
      {},
      [1000, 6],
    ],
    [
      "ADDR-2 IDN and UTF-8 local part",
      bytesOf("email,name\nuser@bücher.example,A\njürgen@example.org,J\nUSER@BÜCHER.example,B\n"),
      {},
      [1000, 1],
    ],
    [
      "ADDR-3 one bad address",
      bytesOf(
        "user1@example.com\nnot-an-address\nuser3@example.com\nuser4@example.com\nuser5@example.com\n",
      ),
      {},
      [1000, 9],
    ],
    [
      "malformed and short rows",
      bytesOf('email,name\na@example.com,A\nb@exa"mple.com,B\n,C\n"c@example.com"x,D\n'),
      { column: 1 },
      [1000, 3],
    ],
    [
      "a merge field that is not UTF-8",
      new Uint8Array([...bytesOf("email,name\na@example.com,J"), 0xfc, ...bytesOf("rgen\n")]),
      {},
      [1000, 1],
    ],
    ["empty input", new Uint8Array(0), {}, [1]],
    ["header only", bytesOf("email,name\r\n"), {}, [1000, 1]],
    [
      "column by name, case-insensitive",
      bytesOf("name,E-Mail\nAnn,a@example.com\n"),
      { column: "e-mail" },
      [1000],
    ],
    ["column by index, no header", bytesOf("Ann,a@example.com\n"), { column: 2 }, [1000]],
  ];
  for (const [name, bytes, opts, sizes] of cases) {
    await t.step(name, async () => {
      for (const size of sizes) {
        const o = await same(split(bytes, size), opts);
        if (bytes.length > 0 && name !== "header only") assert.ok(items(o).length > 0);
      }
    });
  }
  await t.step("CSV-6 0, 1, 999, 1000, 1001 and 2001 rows", async () => {
    for (const rows of [0, 1, 999, 1000, 1001, 2001]) {
      let csv = "email,n\n";
      for (let i = 1; i <= rows; i++) csv += `user${i}@example.com,${i}\n`;
      const o = await same(split(bytesOf(csv), 4096));
      assert.equal(items(o).length, rows);
    }
  });
});

// ---------------------------------------------------------------------------
// Random CSVs: every kind of field and row the reader distinguishes.

const ADDRESSES = [
  "user@example.com",
  "USER@Example.COM",
  "ann.lee+tag@example.org",
  "Ann.Lee+tag@EXAMPLE.org",
  "user@bücher.example",
  "USER@BÜCHER.EXAMPLE",
  "jürgen@example.org",
  "Jürgen@example.org",
  "東京@example.jp",
  "not-an-address",
  "a@@example.com",
  "",
  "  padded@example.com  ",
  "\tpadded@example.com",
  "x@example.com",
  'quote"inside@example.com',
];
const VALUES = ["Ann", "", " spaced ", "Doe, Ann", 'say "hi"', "line\nbreak", "Köln", "東京", "�"];

function randomCsv(next: () => number): { bytes: Uint8Array; opts: RecipientOptions } {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)];
  const delimiter = pick([",", ",", ";", "\t"]);
  const wrongDelimiter = next() < 0.1;
  const width = 1 + Math.floor(next() * 4);
  const eol = () => pick(["\n", "\r\n", "\r"]);
  const parts: (string | number[])[] = [];
  if (next() < 0.3) parts.push([0xef, 0xbb, 0xbf]);
  const field = (text: string): string => {
    const needsQuotes = text.includes(delimiter) || text.includes('"') || /[\r\n]/.test(text);
    if (needsQuotes || next() < 0.1) return `"${text.replaceAll('"', '""')}"`;
    return text;
  };
  const header = next() < 0.6;
  if (header) {
    const names = ["email", "name", "city", "note"].slice(0, width);
    parts.push(names.map(field).join(delimiter) + eol());
  }
  const rows = Math.floor(next() * 60);
  for (let r = 0; r < rows; r++) {
    const roll = next();
    if (roll < 0.05) {
      parts.push(eol()); // an empty row
      continue;
    }
    const cells: string[] = [];
    const n = roll < 0.1 ? Math.max(1, width - 1) : width; // some rows are short
    for (let c = 0; c < n; c++) {
      const text = c === 0 ? pick(ADDRESSES) : pick(VALUES);
      cells.push(next() < 0.03 ? `${text}"stray` : field(text));
    }
    parts.push(cells.join(delimiter));
    if (next() < 0.05) parts.push(pick([[0xfc], [0xe2, 0x82], [0xff, 0xfe]])); // not UTF-8
    if (r < rows - 1 || next() < 0.7) parts.push(eol());
  }
  if (next() < 0.03) parts.push('"unclosed@example.com,'); // a SyntaxError at the end
  const bytes = new Uint8Array(
    parts.flatMap((p) => typeof p === "string" ? [...encoder.encode(p)] : p),
  );
  const opts: RecipientOptions = {};
  if (delimiter !== "," && !wrongDelimiter) opts.delimiter = delimiter;
  const column = next();
  if (column < 0.15) opts.column = header ? "EMAIL" : 1;
  else if (column < 0.25) opts.column = "1";
  else if (column < 0.3) opts.column = 2;
  const h = next();
  if (h < 0.15) opts.header = header;
  else if (h < 0.2) opts.header = !header;
  if (next() < 0.2) opts.sizeHint = bytes.length * 10;
  return { bytes, opts };
}

function randomChunks(bytes: Uint8Array, next: () => number): Uint8Array[] {
  const max = [1, 3, 16, 64, 4096][Math.floor(next() * 5)];
  return split(bytes, () => 1 + Math.floor(next() * max));
}

Deno.test("ParallelRecipientReader yields what RecipientReader yields for 40 random CSVs at random chunkings", async () => {
  const next = seededRandom(20240611);
  let errors = 0;
  let rows = 0;
  for (let i = 0; i < 40; i++) {
    const { bytes, opts } = randomCsv(next);
    const o = await same(randomChunks(bytes, next), opts);
    if (o.error !== undefined) errors++;
    rows += items(o).length;
  }
  assert.ok(rows > 500, "the random CSVs hold rows");
  assert.ok(errors < 40, "not every random CSV fails");
});

/** RecipientReader's batches through encodeRows, a structured clone and decodeRows. */
async function roundTrip(chunks: Uint8Array[], opts: RecipientOptions): Promise<void> {
  try {
    const reader = new RecipientReader(ReadableStream.from(chunks), opts);
    for await (const batch of reader) {
      const copy = structuredClone(encodeRows(batch, reader.addressColumn));
      assert.deepEqual(decodeRows(copy, reader.addressColumn), batch);
    }
  } catch (e) {
    if (!(e instanceof SyntaxError || e instanceof RangeError)) throw e;
  }
}

Deno.test("decodeRows(encodeRows()) gives back the batches of 300 random CSVs", async () => {
  const next = seededRandom(7);
  const kinds = new Set<string>();
  for (let i = 0; i < 300; i++) {
    const { bytes, opts } = randomCsv(next);
    await roundTrip(randomChunks(bytes, next), opts);
    const all: RowItem[] = [];
    try {
      for await (const b of new RecipientReader(ReadableStream.from([bytes]), opts)) all.push(...b);
    } catch { /* an error case: compared in roundTrip() */ }
    for (const item of all) {
      kinds.add(
        item.kind === "invalid"
          ? `invalid:${item.code}`
          : item.kind === "recipient"
          ? `recipient:${item.recipient.smtpUtf8}:${
            item.recipient.address === item.recipient.values[0]
          }`
          : item.kind,
      );
    }
  }
  // The random inputs reach every shape the encoding distinguishes.
  for (
    const kind of [
      "recipient:false:true",
      "recipient:true:true",
      "recipient:false:false",
      "duplicate",
      "invalid:syntax",
      "invalid:csv",
      "invalid:encoding",
    ]
  ) assert.ok(kinds.has(kind), `no ${kind} row among the random CSVs`);
});

Deno.test("decodeRows(encodeRows()) gives back the batches at every chunking (CSV-2)", async () => {
  const bytes = bytesOf(
    'email,name,note\r\nuser1@example.com,"Doe, Ann","a\r\nb"\r\nUSER1@example.com,X,y\r\n' +
      "jürgen@example.org,J,\rnot-an-address,N,n\nuser@bücher.example,B,b",
    true,
  );
  for (let size = 1; size <= 64; size++) await roundTrip(split(bytes, size), {});
});

// ---------------------------------------------------------------------------

Deno.test("ParallelRecipientReader rethrows the reader's errors as the same class with the same message", async (t) => {
  const many = Array.from({ length: 3000 }, (_, i) => `user${i}@example.com,${i}\n`).join("");
  const cases: [string, Uint8Array, RecipientOptions, new (m: string) => Error, RegExp][] = [
    [
      "unclosed quote at the end, after many batches",
      bytesOf(`email,n\n${many}"open@example.com,x\n`),
      {},
      SyntaxError,
      /^Line 3002: unterminated quoted field/,
    ],
    [
      "a column name that is not there",
      bytesOf("email,name\na@example.com,A\n"),
      { column: "emial" },
      RangeError,
      /^Column "emial" not found; columns are: email, name$/,
    ],
    [
      "a column index beyond the first row",
      bytesOf("email,name\na@example.com,A\n"),
      { column: 3 },
      RangeError,
      /^Column 3 not found: line 1 has 2 columns/,
    ],
  ];
  for (const [name, bytes, opts, Class, message] of cases) {
    await t.step(name, async () => {
      const o = await same(split(bytes, 4096), opts);
      assert.equal(o.error?.class, Class.name);
      assert.match(o.error?.message ?? "", message);
      const reader = new ParallelRecipientReader(ReadableStream.from([bytes.slice()]), opts);
      await assert.rejects(async () => {
        for await (const _ of reader) { /* read to the error */ }
      }, (e: unknown) => e instanceof Class && e.constructor === Class && message.test(e.message));
      assertNoWorkerLeft();
    });
  }

  await t.step("bad options throw from the constructor, as RecipientReader's do", () => {
    const input = ReadableStream.from([bytesOf("a@example.com\n")]);
    const bad: RecipientOptions[] = [
      { column: 0 },
      { column: 1.5 },
      { column: "" },
      { column: "email", header: false },
      { delimiter: ";;" },
      { header: "yes" as unknown as boolean },
    ];
    for (const opts of bad) {
      let expected: unknown;
      try {
        new RecipientReader(input, opts);
      } catch (e) {
        expected = e;
      }
      assert.ok(expected instanceof Error);
      assert.throws(
        () => new ParallelRecipientReader(input, opts),
        (e: unknown) =>
          e instanceof Error && e.constructor === expected.constructor &&
          e.message === expected.message,
      );
    }
    assertNoWorkerLeft();
  });

  await t.step("the input's own error, after the batches read before it", async () => {
    const failure = new Error("disk on fire");
    const chunks = split(bytesOf(`email,n\n${many}`), 8192);
    const input = (): AsyncIterable<Uint8Array> => ({
      async *[Symbol.asyncIterator]() {
        for (const c of chunks.slice(0, 3)) yield c.slice();
        throw failure;
      },
    });
    const expected: RowItem[][] = [];
    await assert.rejects(async () => {
      for await (const b of new RecipientReader(input())) expected.push(b);
    }, (e) => e === failure);
    const actual: RowItem[][] = [];
    await assert.rejects(async () => {
      for await (const b of new ParallelRecipientReader(input())) actual.push(b);
    }, (e) => e === failure);
    assert.equal(actual.length, 3);
    assert.deepEqual(actual, expected);
    assertNoWorkerLeft();
  });

  await t.step("a reader is iterated once", async () => {
    const reader = new ParallelRecipientReader(ReadableStream.from([bytesOf("a@example.com\n")]));
    for await (const _ of reader) { /* all */ }
    assert.throws(() => reader[Symbol.asyncIterator](), TypeError);
  });
});

// ---------------------------------------------------------------------------

/** An endless CSV stream that counts pulls and records its cancellation. */
function endless(): {
  stream: ReadableStream<Uint8Array>;
  pulls: () => number;
  cancelled: () => boolean;
} {
  let pulls = 0;
  let cancelled = false;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      const rows = pulls === 0 ? ["email,n"] : [];
      for (let i = 0; i < 100; i++) rows.push(`user${pulls * 100 + i}@example.com,${i}`);
      pulls++;
      controller.enqueue(encoder.encode(rows.join("\n") + "\n"));
    },
    cancel() {
      cancelled = true;
    },
  }, { highWaterMark: 0 });
  return { stream, pulls: () => pulls, cancelled: () => cancelled };
}

const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.test("ParallelRecipientReader stops the worker and cancels the input when the consumer stops", async (t) => {
  await t.step("break after the first batch", async () => {
    const input = endless();
    let batches = 0;
    for await (const batch of new ParallelRecipientReader(input.stream)) {
      assert.equal(batch.length, 100);
      batches++;
      break;
    }
    assert.equal(batches, 1);
    assert.ok(input.cancelled(), "the input was not cancelled");
    assertNoWorkerLeft();
  });

  await t.step("reads a bounded number of chunks ahead of a consumer that waits", async () => {
    const input = endless();
    const iterator = new ParallelRecipientReader(input.stream)[Symbol.asyncIterator]();
    try {
      assert.equal((await iterator.next()).done, false);
      // Let the worker run ahead as far as it may, until the pulls stop growing.
      let seen = -1;
      let still = 0;
      for (let i = 0; i < 200 && still < 4; i++) {
        still = input.pulls() === seen ? still + 1 : 0;
        seen = input.pulls();
        await tick(5);
      }
      // 1 taken, 4 posted ahead, 1 parsed and waiting to be posted, 4 held by
      // the worker, 1 read ahead on the main thread.
      assert.ok(input.pulls() <= 11, `${input.pulls()} chunks read for 1 batch taken`);
      assert.ok(input.pulls() >= 2, "nothing read ahead");
    } finally {
      await iterator.return!();
    }
    assert.ok(input.cancelled());
    assertNoWorkerLeft();
  });

  await t.step("return() while a next() is pending ends both", async () => {
    const input = endless();
    const iterator = new ParallelRecipientReader(input.stream)[Symbol.asyncIterator]();
    const pending = iterator.next();
    const returned = await iterator.return!();
    assert.equal(returned.done, true);
    assert.equal((await pending).done, true);
    assert.equal((await iterator.next()).done, true);
    assertNoWorkerLeft();
  });

  await t.step("break on a file's stream closes the file", async () => {
    /** Open descriptors of this process on `path` (Linux), or undefined. */
    const openOn = (path: string): number | undefined => {
      try {
        return [...Deno.readDirSync("/proc/self/fd")].filter((e) => {
          try {
            return Deno.readLinkSync(`/proc/self/fd/${e.name}`) === path;
          } catch {
            return false;
          }
        }).length;
      } catch {
        return undefined;
      }
    };
    const path = await Deno.realPath(await Deno.makeTempFile({ suffix: ".csv" }));
    try {
      // 100k rows: far more than the reader reads ahead, so the file is not read to its end.
      const text = "email,n\n" +
        Array.from({ length: 100_000 }, (_, i) => `user${i}@example.com,${i}\n`).join("");
      await Deno.writeTextFile(path, text);
      const file = await Deno.open(path);
      if (openOn(path) !== undefined) assert.equal(openOn(path), 1);
      for await (const _ of new ParallelRecipientReader(file.readable)) break;
      // Closed soon after: a read still under way when the stream was cancelled keeps the
      // descriptor until it returns (under load that takes a few milliseconds).
      for (let i = 0; i < 200 && (openOn(path) ?? 0) > 0; i++) {
        await new Promise((r) => setTimeout(r, 10));
      }
      if (openOn(path) !== undefined) assert.equal(openOn(path), 0, "the file is still open");
      assertNoWorkerLeft();
    } finally {
      await Deno.remove(path);
    }
  });

  await t.step("an async generator input is closed on break", async () => {
    let closed = false;
    async function* input(): AsyncGenerator<Uint8Array> {
      try {
        for (let i = 0; i < 1000; i++) yield encoder.encode(`user${i}@example.com\n`);
      } finally {
        closed = true;
      }
    }
    for await (const _ of new ParallelRecipientReader(input())) break;
    assert.ok(closed, "the generator's finally did not run");
    assertNoWorkerLeft();
  });
});

Deno.test("ParallelRecipientReader reads 200k rows with duplicates end to end", async () => {
  const lines: string[] = ["email,name"];
  for (let i = 0; i < 200_000; i++) {
    lines.push(
      i % 4 === 3 ? `USER${(i * 7919) % i}@EXAMPLE.com,N${i}` : `user${i}@example.com,N${i}`,
    );
  }
  const bytes = bytesOf(lines.join("\n"));
  const chunks = split(bytes, 65536);
  const expected = await outcome(RecipientReader, chunks, { sizeHint: bytes.length });
  const actual = await outcome(ParallelRecipientReader, chunks, { sizeHint: bytes.length });
  assert.equal(items(actual).length, 200_000);
  assert.equal(actual.batches.length, expected.batches.length);
  assert.deepEqual(actual, expected);
  assert.ok(items(actual).some((i) => i.kind === "duplicate"));
  assertNoWorkerLeft();
});

Deno.test("ParallelRecipientReader leaves the caller's chunks intact (a tee()d input keeps its data)", async () => {
  const bytes = bytesOf("email,name\n" + "a@example.com,A\n".repeat(5000));
  const chunks = split(bytes, 4096);
  const [mine, other] = ReadableStream.from(chunks).tee();
  const reader = new ParallelRecipientReader(mine);
  let rows = 0;
  for await (const batch of reader) rows += batch.length;
  assert.equal(rows, 5000);
  let kept = 0;
  for await (const c of other) kept += c.length;
  assert.equal(kept, bytes.length, "the other branch got every byte");
  assert.ok(chunks.every((c) => c.length > 0), "no chunk was emptied");
  assertNoWorkerLeft();
});

// ---------------------------------------------------------------------------

Deno.test("createRecipientReader() picks the worker by the parallel option and the size hint", async (t) => {
  const input = () => ReadableStream.from([bytesOf("a@example.com\n")]);
  const cases: [string, Parameters<typeof createRecipientReader>[1], ReaderClass][] = [
    ["default, no size hint", undefined, RecipientReader],
    ["default, big input", { sizeHint: 1e9 }, RecipientReader],
    ["auto, small input", { parallel: "auto", sizeHint: PARALLEL_MIN_BYTES - 1 }, RecipientReader],
    [
      "auto, big input",
      { parallel: "auto", sizeHint: PARALLEL_MIN_BYTES },
      ParallelRecipientReader,
    ],
    ["true", { parallel: true }, ParallelRecipientReader],
    ["false, big input", { parallel: false, sizeHint: 1e9 }, RecipientReader],
  ];
  for (const [name, opts, Class] of cases) {
    await t.step(name, async () => {
      const reader = createRecipientReader(input(), opts);
      assert.equal(reader.constructor, Class);
      const got: RowItem[] = [];
      for await (const b of reader) got.push(...b);
      assert.equal(got.length, 1);
      assertNoWorkerLeft();
    });
  }
  await t.step("a bad parallel option is a TypeError", () => {
    assert.throws(
      () => createRecipientReader(input(), { parallel: "yes" as unknown as boolean }),
      TypeError,
    );
  });
});

Deno.test("ParallelRecipientReader reads in-thread when the worker cannot start", async (t) => {
  const bytes = bytesOf("email,name\nAnn@example.com,Ann\nann@EXAMPLE.com,A2\nnope,X\n");
  const expected = await outcome(RecipientReader, [bytes]);
  const swap = async (Fake: unknown, check: () => void) => {
    globalThis.Worker = Fake as typeof Worker;
    try {
      assert.deepEqual(await outcome(ParallelRecipientReader, [bytes]), expected);
      check();
    } finally {
      globalThis.Worker = CountedWorker;
    }
  };

  await t.step("new Worker() throws", async () => {
    let tried = 0;
    await swap(function () {
      tried++;
      throw new Error("no workers here");
    }, () => assert.equal(tried, 1));
  });

  await t.step("the worker's module fails to load", async () => {
    let terminated = 0;
    class Unloadable extends EventTarget {
      onmessage: ((e: MessageEvent) => void) | null = null;
      onerror: ((e: ErrorEvent) => void) | null = null;
      constructor() {
        super();
        setTimeout(() =>
          this.onerror?.(new ErrorEvent("error", { message: "Module not found", cancelable: true }))
        );
      }
      postMessage(): void {}
      terminate(): void {
        terminated++;
      }
    }
    await swap(Unloadable, () => assert.equal(terminated, 1));
  });

  await t.step("no read permission for the worker's module (no prompt, no noise)", async () => {
    const dir = await Deno.makeTempDir();
    try {
      const script = `${dir}/read.ts`;
      await Deno.writeTextFile(
        script,
        `import { ParallelRecipientReader } from ${
          JSON.stringify(import.meta.resolve("./parallel_reader.ts"))
        };
        const counts = { recipient: 0, duplicate: 0, invalid: 0 };
        for await (const b of new ParallelRecipientReader(Deno.stdin.readable)) {
          for (const item of b) counts[item.kind]++;
        }
        console.log(JSON.stringify(counts));
        `,
      );
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "--no-prompt", "--no-check", "--no-config", script],
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
        env: { NO_COLOR: "1" },
      }).spawn();
      const writer = child.stdin.getWriter();
      await writer.write(bytes.slice());
      await writer.close();
      const out = await child.output();
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, stderr);
      assert.equal(stderr, "");
      assert.deepEqual(JSON.parse(new TextDecoder().decode(out.stdout)), {
        recipient: 1,
        duplicate: 1,
        invalid: 1,
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});
