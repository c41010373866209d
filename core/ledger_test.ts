import assert from "node:assert/strict";
// deno-lint-ignore no-import-prefix -- the project imports npm packages by full specifier (no import map)
import { parse as csvParseSync } from "npm:csv-parse@^5/sync";
import { runCampaign } from "./campaign.ts";
import { ManualClock } from "./clock.ts";
import { fingerprintFile, fingerprintTemplate } from "./fingerprint.ts";
import {
  csvField,
  LEDGER_HEADER,
  type LedgerCounts,
  LedgerError,
  openLedger,
  readLedger,
  splitRecord,
} from "./ledger.ts";
import { LockError } from "./lock.ts";
import { parseRate, RateLimiter } from "./rate.ts";
import type { Outgoing, RowOutcome, SendResult, Transport } from "./types.ts";

const TEMPLATE = {
  from: "Team <team@example.com>",
  subject: "Hi {{name}}",
  text: "Hello {{name}}\n",
};

async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "ledger-test-" });
}

function sent(line: number, address = `user${line}@example.com`): RowOutcome {
  return {
    line,
    address,
    status: "sent",
    code: "",
    reason: "250 OK",
    attempts: 1,
    id: `id-${line}`,
  };
}

function failed(line: number, code = "5.1.1"): RowOutcome {
  return {
    line,
    address: `user${line}@example.com`,
    status: "failed",
    code,
    reason: `550 ${code} no such user`,
    attempts: 1,
  };
}

function csvText(n: number): string {
  let s = "email,name\n";
  for (let i = 1; i <= n; i++) s += `user${i}@example.com,Name ${i}\n`;
  return s;
}

function stream(text: string): ReadableStream<Uint8Array> {
  return ReadableStream.from([new TextEncoder().encode(text)]);
}

/** Parse a ledger file with csv-parse (an independent CSV reader). */
async function parseWithCsvParse(path: string): Promise<string[][]> {
  return csvParseSync(await Deno.readTextFile(path), { relax_column_count: false }) as string[][];
}

Deno.test("csvField() output reads back the same through csv-parse and splitRecord()", async (t) => {
  const cases: [string, string][] = [
    ["plain", "plain"],
    ["", ""],
    ["a,b", "a,b"],
    ['say "hi"', 'say "hi"'],
    ['"', '"'],
    ["line\r\nbreak", "line  break"],
    ["lone\rcr", "lone cr"],
    ['=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'],
    ["+1", "'+1"],
    ["-1,5", "'-1,5"],
    ["@SUM(A1)", "'@SUM(A1)"],
    ["\tx", "'\tx"],
    ["'=x", "''=x"],
    ["it's", "it's"],
    ["Grüße, 東京", "Grüße, 東京"],
  ];
  for (const [input, spreadsheet] of cases) {
    await t.step(JSON.stringify(input), () => {
      const line = `1,${csvField(input)},x`;
      const parsed = csvParseSync(line) as string[][];
      assert.equal(parsed.length, 1);
      assert.equal(parsed[0][1], spreadsheet, "what a spreadsheet or csv-parse shows");
      assert.deepEqual(splitRecord(line), parsed[0], "splitRecord agrees with csv-parse");
    });
  }
});

Deno.test("splitRecord() agrees with csv-parse on random fields", () => {
  let seed = 7;
  const rand = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const alphabet = ['"', ",", "a", "b", " ", "'", "=", "-", "é", "\r", "\n"];
  for (let i = 0; i < 2000; i++) {
    const fields = Array.from({ length: 1 + Math.floor(rand() * 5) }, () => {
      let s = "";
      const n = Math.floor(rand() * 8);
      for (let k = 0; k < n; k++) s += alphabet[Math.floor(rand() * alphabet.length)];
      return s;
    });
    const line = fields.map(csvField).join(",");
    assert.ok(!/[\r\n]/.test(line), "a record is one line");
    const expected = csvParseSync(line, { relax_quotes: false })[0] as string[] | undefined;
    assert.deepEqual(splitRecord(line), expected ?? [""], JSON.stringify(line));
  }
});

Deno.test("openLedger() writes a CSV report that csv-parse reads: header, meta, one record per outcome", async () => {
  const dir = await tempDir();
  const path = `${dir}/report.csv`;
  let now = Date.UTC(2026, 0, 5, 9, 0, 0);
  const ledger = await openLedger(path, {
    fingerprint: { input: "sha256:aa:1", template: "sha256:bb" },
    now: () => now,
  });
  ledger.begin({ columns: ["email", "name"] });
  ledger.record(sent(2));
  ledger.record({
    line: 3,
    address: "no,pe\n=1",
    status: "invalid",
    code: "syntax",
    reason: 'bad "x"',
    attempts: 0,
  });
  await Promise.resolve(); // records of one task share its time
  now += 1500;
  ledger.record(failed(4), false);
  ledger.recordRetry(
    5,
    1,
    { status: "retry", code: "4.7.1", reason: "451 4.7.1 later" },
    812,
    "user5@example.com",
  );
  ledger.record({ ...failed(5, "4.7.1"), attempts: 2 }, true);
  await ledger.close();

  const rows = await parseWithCsvParse(path);
  assert.deepEqual(rows[0], LEDGER_HEADER.split(","));
  assert.equal(rows.length, 7);
  for (const r of rows) assert.equal(r.length, 9);
  const meta = rows[1];
  assert.equal(meta[0], "0");
  assert.equal(meta[2], "meta");
  const json = JSON.parse(meta[4]);
  assert.equal(json.campaign, ledger.campaignId);
  assert.equal(json.input, "sha256:aa:1");
  assert.deepEqual(json.columns, ["email", "name"]);
  assert.deepEqual(rows[2], [
    "2",
    "user2@example.com",
    "sent",
    "",
    "250 OK",
    "1",
    "2026-01-05T09:00:00.000Z",
    "id-2",
    "",
  ]);
  assert.deepEqual(rows[3].slice(0, 5), ["3", "no,pe =1", "invalid", "syntax", 'bad "x"']);
  assert.deepEqual(rows[4].slice(2, 9), [
    "failed",
    "5.1.1",
    "550 5.1.1 no such user",
    "1",
    "2026-01-05T09:00:01.500Z",
    "",
    "permanent",
  ]);
  assert.deepEqual(rows[5].slice(0, 6), [
    "5",
    "user5@example.com",
    "retry",
    "4.7.1",
    "451 4.7.1 later; retry in 812 ms",
    "1",
  ]);
  assert.deepEqual(rows[6].slice(2, 9).at(-1), "transient");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("openLedger() resumes: previous() gives each line's latest final status and counts them", async () => {
  const dir = await tempDir();
  const path = `${dir}/report.csv`;
  const first = await openLedger(path);
  assert.equal(first.resumed, false);
  first.begin({ columns: ["email"] });
  first.record(sent(2));
  first.record(failed(3));
  first.record({ ...failed(4, "4.3.0") }, true);
  first.record({
    line: 5,
    address: "nope",
    status: "invalid",
    code: "syntax",
    reason: "no @",
    attempts: 0,
  });
  first.record({
    line: 6,
    address: "USER2@example.com",
    status: "duplicate",
    code: "duplicate",
    reason: "Duplicate of line 2",
    attempts: 0,
  });
  first.recordRetry(
    7,
    1,
    { status: "retry", code: "421", reason: "busy" },
    100,
    "user7@example.com",
  );
  await first.close();

  const again = await openLedger(path);
  assert.equal(again.resumed, true);
  assert.equal(again.campaignId, first.campaignId, "the campaign id is kept");
  const expected: LedgerCounts = {
    sent: 1,
    failed: 2,
    failedTransient: 1,
    invalid: 1,
    duplicate: 1,
    suppressed: 0,
    retries: 1,
  };
  assert.deepEqual({ ...again.before }, expected);
  assert.equal(again.previous(2, "user2@example.com"), "sent");
  assert.equal(again.previous(3, "user3@example.com"), "failed");
  assert.equal(again.previous(4, "user4@example.com"), "failed");
  assert.equal(again.previous(5, "nope"), "invalid");
  assert.equal(again.previous(6, "USER2@example.com"), "duplicate");
  assert.equal(again.previous(7, "user7@example.com"), undefined, "a retry record is not final");
  assert.equal(again.previous(8, "user8@example.com"), undefined);
  assert.equal(again.previous(1_000_000, "x@example.com"), undefined);
  // A later record of a line wins.
  again.begin({ columns: ["email"] });
  again.record(sent(3, "user3@example.com"));
  await again.close();
  const third = await openLedger(path);
  assert.equal(third.previous(3, "user3@example.com"), "sent");
  assert.equal(third.before.failed, 1);
  await third.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("openLedger() with retryFailed sends failed rows again: transient ones, or all", async (t) => {
  const dir = await tempDir();
  const path = `${dir}/report.csv`;
  const l = await openLedger(path);
  l.begin({ columns: [] });
  l.record(sent(2));
  l.record(failed(3));
  l.record(failed(4, "4.3.0"), true);
  await l.close();
  const table: [undefined | "transient" | "all", (string | undefined)[]][] = [
    [undefined, ["sent", "failed", "failed"]],
    ["transient", ["sent", "failed", undefined]],
    ["all", ["sent", undefined, undefined]],
  ];
  for (const [retryFailed, want] of table) {
    await t.step(`retryFailed ${retryFailed}`, async () => {
      const again = await openLedger(path, { retryFailed });
      assert.deepEqual([2, 3, 4].map((n) => again.previous(n, `user${n}@example.com`)), want);
      await again.close();
    });
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("openLedger() drops a torn last record and appends cleanly after it", async (t) => {
  const tails = [
    "5,user5@example.com,sent,,250 OK,1,2026-01-05T09:00:0",
    "5,user5@example.com,sent,,250 OK,1,2026-01-05T09:00:00.000Z,id-5,", // complete but no line break
    '5,"user5@exa',
    "5,user5@example.com,bogus-status\n",
    "\0\0\0\0",
  ];
  for (const tail of tails) {
    await t.step(JSON.stringify(tail.slice(0, 30)), async () => {
      const dir = await tempDir();
      const path = `${dir}/report.csv`;
      const l = await openLedger(path);
      l.begin({ columns: [] });
      l.record(sent(2));
      l.record(sent(3));
      await l.close();
      const good = (await Deno.stat(path)).size;
      await Deno.writeTextFile(path, tail, { append: true });
      const again = await openLedger(path);
      assert.equal((await Deno.stat(path)).size, good, "the torn tail was cut off");
      assert.equal(again.previous(5, "user5@example.com"), undefined, "the torn row is sent again");
      assert.equal(again.previous(3, "user3@example.com"), "sent");
      again.begin({ columns: [] });
      again.record(sent(5));
      await again.close();
      const rows = await parseWithCsvParse(path);
      assert.deepEqual(rows.at(-1)?.slice(0, 3), ["5", "user5@example.com", "sent"]);
      await Deno.remove(dir, { recursive: true });
    });
  }
});

Deno.test("openLedger() starts over on a torn or empty header and refuses a file that is not a ledger", async (t) => {
  for (const content of ["", "line,addr", LEDGER_HEADER]) {
    await t.step(`content ${JSON.stringify(content)}`, async () => {
      const dir = await tempDir();
      const path = `${dir}/report.csv`;
      await Deno.writeTextFile(path, content);
      const l = await openLedger(path);
      assert.equal(l.resumed, false);
      l.begin({ columns: ["email"] });
      await l.close();
      const lines = (await Deno.readTextFile(path)).split("\n");
      assert.equal(lines[0], LEDGER_HEADER);
      assert.match(lines[1], /^0,,meta,/);
      assert.equal(lines.length, 3);
      await Deno.remove(dir, { recursive: true });
    });
  }
  for (const content of ["email,name\nann@example.com,Ann\n", "hello"]) {
    await t.step(`foreign ${JSON.stringify(content.slice(0, 10))}`, async () => {
      const dir = await tempDir();
      const path = `${dir}/recipients.csv`;
      await Deno.writeTextFile(path, content);
      await assert.rejects(openLedger(path), (e: unknown) => {
        assert.ok(e instanceof LedgerError);
        assert.equal(e.kind, "foreign");
        assert.match(e.message, /is not a mass-mailer report/);
        return true;
      });
      assert.equal(await Deno.readTextFile(path), content, "the file is left as it was");
      await assert.rejects(Deno.stat(`${path}.lock`), Deno.errors.NotFound, "the lock is released");
      await Deno.remove(dir, { recursive: true });
    });
  }
});

Deno.test("close() removes a new ledger when the run never began (refused before the first row)", async () => {
  const dir = await tempDir();
  const path = `${dir}/report.csv`;
  const l = await openLedger(path);
  await l.close();
  await assert.rejects(Deno.stat(path), Deno.errors.NotFound);
  const kept = await openLedger(path);
  kept.begin({ columns: [] });
  await kept.close();
  const again = await openLedger(path);
  await again.close();
  assert.ok((await Deno.stat(path)).isFile, "an existing ledger is never removed");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("openLedger() refuses a ledger damaged before its last line", async () => {
  const dir = await tempDir();
  const path = `${dir}/report.csv`;
  await Deno.writeTextFile(
    path,
    `${LEDGER_HEADER}\n2,a@example.com,sent,,,1,t,,\ngarbage\n3,b@example.com,sent,,,1,t,,\n`,
  );
  await assert.rejects(openLedger(path), (e: unknown) => {
    assert.ok(e instanceof LedgerError && e.kind === "corrupt");
    assert.match(e.message, /damaged at line 3/);
    return true;
  });
  await Deno.remove(dir, { recursive: true });
});

Deno.test("openLedger() refuses a changed input, template or columns unless forced", async (t) => {
  const dir = await tempDir();
  const path = `${dir}/report.csv`;
  const fingerprint = { input: "sha256:1111111111111111:100", template: "sha256:t1" };
  const l = await openLedger(path, { fingerprint });
  l.begin({ columns: ["email", "name"] });
  l.record(sent(2));
  await l.close();
  const changes: [string, { input: string; template: string }, RegExp][] = [
    [
      "input",
      { ...fingerprint, input: "sha256:2222222222222222:101" },
      /The input changed .*100 bytes.*101 bytes/,
    ],
    [
      "template",
      { ...fingerprint, template: "sha256:t2" },
      /The message or the recipient options changed/,
    ],
  ];
  for (const [what, fp, message] of changes) {
    await t.step(`changed ${what} is refused`, async () => {
      await assert.rejects(openLedger(path, { fingerprint: fp }), (e: unknown) => {
        assert.ok(e instanceof LedgerError && e.kind === "changed");
        assert.match(e.message, message);
        assert.match(e.message, /--force/);
        return true;
      });
    });
    await t.step(`changed ${what} is accepted with force`, async () => {
      const forced = await openLedger(path, { fingerprint: fp, force: true });
      assert.equal(forced.previous(2, "user2@example.com"), "sent");
      await forced.close();
    });
  }
  await t.step("changed columns are refused", async () => {
    const again = await openLedger(path, { fingerprint });
    assert.throws(() => again.begin({ columns: ["mail", "name"] }), /columns changed/);
    await again.close();
  });
  await t.step("the same fingerprints resume", async () => {
    const again = await openLedger(path, { fingerprint });
    again.begin({ columns: ["email", "name"] });
    assert.equal(again.previous(2, "user2@example.com"), "sent");
    await again.close();
  });
  await Deno.remove(dir, { recursive: true });
});

Deno.test("previous() checks each row's address against its line (stdin) and matches by address with force", async () => {
  const dir = await tempDir();
  const path = `${dir}/report.csv`;
  const l = await openLedger(path);
  l.begin({ columns: ["email"] });
  l.record(sent(2, "ann@example.com"));
  l.record(sent(3, "bob@example.com"));
  l.record(failed(4));
  l.record({
    line: 5,
    address: "junk",
    status: "invalid",
    code: "syntax",
    reason: "no @",
    attempts: 0,
  });
  await l.close();

  const strict = await openLedger(path);
  assert.equal(strict.previous(2, "ann@example.com"), "sent");
  assert.throws(() => strict.previous(3, "carl@example.com"), (e: unknown) => {
    assert.ok(e instanceof LedgerError && e.kind === "changed");
    assert.match(e.message, /Line 3 of the input holds another address/);
    return true;
  });
  await strict.close();

  // A row was inserted at the top: every address moved down one line.
  const forced = await openLedger(path, { force: true });
  forced.begin({ columns: ["email"] });
  assert.equal(forced.previous(2, "new@example.com"), undefined, "a new address is sent");
  assert.equal(forced.previous(3, "Ann@Example.com"), "sent", "a moved address is not sent again");
  assert.equal(forced.previous(4, "bob@example.com"), "sent");
  assert.equal(forced.previous(5, "user4@example.com"), "failed");
  assert.equal(forced.previous(6, "junk"), undefined, "invalid rows are classified again");
  assert.equal(
    forced.previous(7, "ann@example.com"),
    undefined,
    "a second row with the address is left to dedupe",
  );
  forced.record(sent(2, "new@example.com"));
  await forced.close();

  // The moved rows were re-keyed to their new lines: a plain resume of the new input matches by line.
  const after = await openLedger(path);
  assert.equal(after.previous(2, "new@example.com"), "sent");
  assert.equal(after.previous(3, "Ann@Example.com"), "sent");
  assert.equal(after.previous(4, "bob@example.com"), "sent");
  assert.equal(after.previous(5, "user4@example.com"), "failed");
  await after.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("previous() with force never matches a line's newer address for an older one, and forced runs on a changed input get a new campaign id", async (t) => {
  const dir = await tempDir();
  const path = `${dir}/report.csv`;
  const fp = (input: string) => ({ input: `sha256:${input}:10`, template: "sha256:t" });
  const run = async (
    input: string,
    force: boolean,
    rows: [number, string][],
  ): Promise<{ campaignId: string; done: (string | undefined)[] }> => {
    const l = await openLedger(path, { fingerprint: fp(input), force, campaignId: "spring" });
    l.begin({ columns: ["email"] });
    const done = rows.map(([line, address]) => {
      const before = l.previous(line, address);
      if (before === undefined) l.record(sent(line, address));
      return before;
    });
    await l.close();
    return { campaignId: l.campaignId, done };
  };
  const one = await run("a", false, [[2, "a@example.com"], [3, "b@example.com"]]);
  await t.step("a new ledger uses the given campaign id", () => {
    assert.equal(one.campaignId, "spring");
  });
  // Run 2 (forced, changed input): line 2 now holds new@, whose record replaces a@'s for line 2.
  const two = await run("b", true, [[2, "new@example.com"], [3, "B@example.com"], [
    4,
    "d@example.com",
  ]]);
  await t.step(
    "a forced run on a changed input sends the new addresses under a new campaign id",
    () => {
      assert.deepEqual(two.done, [undefined, "sent", undefined]);
      assert.notEqual(two.campaignId, one.campaignId);
      assert.match(two.campaignId, /^[A-Za-z0-9._-]{1,64}$/);
    },
  );
  // Run 3 (forced, changed again): a@ moved to line 5; the last record of line 2 is new@'s.
  const three = await run("c", true, [
    [2, "new@example.com"],
    [3, "b@example.com"],
    [4, "d@example.com"],
    [5, "A@example.com"],
    [6, "e@example.com"],
  ]);
  await t.step("an address mailed in any earlier run is not mailed again wherever it moved", () => {
    assert.deepEqual(three.done, ["sent", "sent", "sent", "sent", undefined]);
    assert.equal(new Set([one.campaignId, two.campaignId, three.campaignId]).size, 3);
  });
  await t.step(
    "a plain resume on the same input keeps the campaign id and matches every row",
    async () => {
      const again = await run("c", false, [
        [2, "new@example.com"],
        [3, "b@example.com"],
        [4, "d@example.com"],
        [5, "A@example.com"],
        [6, "e@example.com"],
      ]);
      assert.equal(again.campaignId, three.campaignId);
      assert.deepEqual(again.done, ["sent", "sent", "sent", "sent", "sent"]);
    },
  );
  await t.step("a forced run on an unchanged input keeps the campaign id", async () => {
    const again = await run("c", true, [[5, "a@example.com"]]);
    assert.equal(again.campaignId, three.campaignId);
    assert.deepEqual(again.done, ["sent"]);
  });
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a plain resume after a forced run that stopped early matches the lines it did not reach by address", async () => {
  const dir = await tempDir();
  const path = `${dir}/report.csv`;
  const first = await openLedger(path, { fingerprint: { input: "sha256:a:1" } });
  first.begin({ columns: ["email"] });
  first.record(sent(2, "a@example.com"));
  await first.close();
  // Forced run on a new input [new@, a@] stops after line 2; line 3 (a@) was not reached.
  const forced = await openLedger(path, { fingerprint: { input: "sha256:b:1" }, force: true });
  forced.begin({ columns: ["email"] });
  assert.equal(forced.previous(2, "new@example.com"), undefined);
  forced.record(sent(2, "new@example.com"));
  await forced.close();
  const plain = await openLedger(path, { fingerprint: { input: "sha256:b:1" } });
  assert.equal(plain.campaignId, forced.campaignId);
  plain.begin({ columns: ["email"] });
  assert.equal(plain.previous(2, "new@example.com"), "sent");
  assert.equal(plain.previous(3, "a@example.com"), "sent", "a@ was mailed by the first run");
  assert.equal(plain.previous(4, "z@example.com"), undefined);
  await plain.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("openLedger() refuses a second holder and names its pid; close() releases the lock", async () => {
  const dir = await tempDir();
  const path = `${dir}/report.csv`;
  const first = await openLedger(path);
  await assert.rejects(openLedger(path), (e: unknown) => {
    assert.ok(e instanceof LockError);
    assert.equal(e.holder?.pid, Deno.pid);
    assert.match(e.message, new RegExp(`in use by process ${Deno.pid} `));
    return true;
  });
  await first.close();
  await first.close(); // twice is fine
  const second = await openLedger(path);
  await second.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("sendTimes() lets a daily rate window survive a restart", async () => {
  const dir = await tempDir();
  const path = `${dir}/report.csv`;
  const day = 86_400_000;
  let now = Date.UTC(2026, 0, 5, 12);
  const l = await openLedger(path, { now: () => now });
  l.begin({ columns: [] });
  for (let i = 2; i <= 4; i++) {
    l.record(sent(i));
    await Promise.resolve(); // one write per microtask turn
    now += 1000;
  }
  l.record({ line: 5, address: "x", status: "invalid", code: "syntax", reason: "", attempts: 0 });
  l.recordRetry(6, 1, { status: "retry", code: "421", reason: "busy" }, 10, "user6@example.com");
  await l.close();

  now += 60_000;
  const again = await openLedger(path, { now: () => now });
  const times = again.sendTimes();
  assert.equal(times.length, 4, "3 sends and 1 retried attempt; the invalid row was never sent");
  assert.deepEqual(times.slice(0, 3), [0, 1000, 2000].map((d) => Date.UTC(2026, 0, 5, 12) + d));

  // The engine's clock need not be the wall clock: times are shifted onto it.
  const clock = new ManualClock(5_000);
  const shifted = again.sendTimes(clock);
  assert.equal(shifted[3] - shifted[0], times[3] - times[0]);
  assert.equal(clock.now() - shifted[3], now - times[3]);

  const limiter = new RateLimiter(parseRate("4/d"), { now: () => clock.now() });
  limiter.seed(shifted);
  const wait = limiter.wait();
  assert.equal(wait, day - (now - times[0]), "the cap is full until the oldest send is a day old");
  const fresh = new RateLimiter(parseRate("4/d"), { now: () => clock.now() });
  assert.equal(fresh.wait(), 0, "without the ledger's history the cap would be empty");
  await again.close();

  // Sends older than historyMs are not returned.
  const later = await openLedger(path, { now: () => now + day });
  assert.equal(later.sendTimes().length, 0);
  await later.close();
  await Deno.remove(dir, { recursive: true });
});

/** A transport that answers per line and attempt; records every message it saw. */
function scripted(
  answer: (m: Outgoing, attempt: number) => SendResult,
): Transport & { seen: number[] } {
  const attempts = new Map<number, number>();
  const seen: number[] = [];
  return {
    name: "scripted",
    maxBatch: 10,
    seen,
    send(batch) {
      return Promise.resolve(batch.map((m) => {
        const n = (attempts.get(m.line) ?? 0) + 1;
        attempts.set(m.line, n);
        seen.push(m.line);
        return answer(m, n);
      }));
    },
    close: () => Promise.resolve(),
  };
}

Deno.test("a campaign with a ledger records transient history, and --retry-failed resends only the failed rows", async () => {
  const dir = await tempDir();
  const path = `${dir}/report.csv`;
  const clock = new ManualClock();
  // Line 3 is throttled twice then accepted; line 4 is always throttled; line 5 is refused for good.
  const transport = scripted((m, n) => {
    if ((m.line === 3 && n <= 2) || m.line === 4) {
      return {
        status: "retry",
        code: "4.7.1",
        reason: "450 4.7.1 too much mail",
        retryAfterMs: 1000,
      };
    }
    if (m.line === 5) return { status: "failed", code: "5.1.1", reason: "550 5.1.1 no such user" };
    return { status: "sent", id: `q${m.line}` };
  });
  const ledger = await openLedger(path, { now: () => 1_767_600_000_000 + clock.now() });
  const done = runCampaign({
    input: stream(csvText(5)),
    template: TEMPLATE,
    transport,
    clock,
    random: () => 0.5,
    maxAttempts: 3,
    ...ledger.hooks(clock),
  });
  let finished = false;
  done.then(() => finished = true, () => finished = true);
  for (let i = 0; i < 20 && !finished; i++) await clock.advance(1000);
  const summary = await done;
  await ledger.close();
  assert.equal(summary.status, "finished");
  assert.deepEqual([summary.sent, summary.failed, summary.transient], [3, 2, 5]);

  const all = await parseWithCsvParse(path);
  const id = JSON.parse(all[1][4]).campaign;
  const rows = all.slice(1).filter((r) => r[2] !== "meta");
  const byStatus = (s: string) => rows.filter((r) => r[2] === s).map((r) => `${r[0]}:${r[5]}`);
  assert.deepEqual(
    byStatus("retry"),
    ["3:1", "4:1", "3:2", "4:2"],
    "each retried attempt, with its number",
  );
  assert.deepEqual(byStatus("sent").sort(), ["2:1", "3:3", "6:1"]);
  const failedRows = rows.filter((r) => r[2] === "failed");
  assert.deepEqual(failedRows.map((r) => [r[0], r[3], r[5], r[8]]).sort(), [
    ["4", "4.7.1", "3", "transient"],
    ["5", "5.1.1", "1", "permanent"],
  ]);
  assert.match(
    failedRows.find((r) => r[0] === "4")![4],
    /450 4.7.1 too much mail \(after 3 attempts\)/,
  );

  // Second run: --retry-failed (transient) sends line 4 only, with the same Message-ID campaign.
  const again = await openLedger(path, { retryFailed: "transient", now: () => Date.now() });
  const second = scripted(() => ({ status: "sent" }));
  const rendered: string[] = [];
  const s2 = await runCampaign({
    input: stream(csvText(5)),
    template: TEMPLATE,
    transport: second,
    onRendered: (m) => void rendered.push(m.messageId),
    ...again.hooks(),
  });
  await again.close();
  assert.deepEqual(second.seen, [4]);
  assert.equal(s2.done, 4);
  assert.equal(s2.sent, 1);
  assert.match(
    rendered[0],
    new RegExp(`^<${id}\\.4@example\\.com>$`),
    "Message-IDs stay stable across runs",
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a campaign with a ledger stops with the ledger's error when a row's address changed (stdin)", async () => {
  const dir = await tempDir();
  const path = `${dir}/report.csv`;
  const first = await openLedger(path);
  await runCampaign({
    input: stream(csvText(3)),
    template: TEMPLATE,
    transport: scripted(() => ({ status: "sent" })),
    ...first.hooks(),
  });
  await first.close();
  const again = await openLedger(path);
  const transport = scripted(() => ({ status: "sent" }));
  const summary = await runCampaign({
    input: stream(csvText(3).replace("user2@", "other2@")),
    template: TEMPLATE,
    transport,
    ...again.hooks(),
  });
  await again.close();
  assert.equal(summary.status, "failed");
  assert.ok(summary.error instanceof LedgerError);
  assert.deepEqual(transport.seen, []);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("fingerprintFile() and fingerprintTemplate() change with the content and not with key order", async () => {
  const dir = await tempDir();
  await Deno.writeTextFile(`${dir}/a.csv`, csvText(3));
  const a = await fingerprintFile(`${dir}/a.csv`);
  assert.match(a, /^sha256:[0-9a-f]{64}:\d+$/);
  assert.equal(a.split(":")[2], String(new TextEncoder().encode(csvText(3)).length));
  await Deno.writeTextFile(`${dir}/a.csv`, csvText(3).replace("Name 2", "Name 9"));
  assert.notEqual(await fingerprintFile(`${dir}/a.csv`), a);
  assert.equal(
    fingerprintTemplate({ template: { subject: "s", text: "t" }, column: 1 }),
    fingerprintTemplate({ column: 1, template: { text: "t", subject: "s" } }),
  );
  assert.notEqual(
    fingerprintTemplate({ template: { subject: "s", text: "t" } }),
    fingerprintTemplate({ template: { subject: "s", text: "t2" } }),
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("readLedger() visits records in file order with their parsed fields", async () => {
  const dir = await tempDir();
  const path = `${dir}/report.csv`;
  const l = await openLedger(path);
  l.begin({ columns: [] });
  l.record({
    line: 2,
    address: "=cmd|' /C calc'!A0",
    status: "invalid",
    code: "syntax",
    reason: "a, b",
    attempts: 0,
  });
  await l.close();
  const seen: string[] = [];
  const info = await readLedger(
    path,
    (r) => seen.push(`${r.line}/${r.status}/${r.address}/${r.reason}`),
  );
  assert.equal(info.hasHeader, true);
  assert.equal(seen.length, 2);
  assert.equal(seen[1], "2/invalid/=cmd|' /C calc'!A0/a, b");
  const missing = await readLedger(`${dir}/none.csv`, () => {});
  assert.equal(missing.exists, false);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a resumed run whose rows are all done ends at once although the ledger's sends fill the daily cap", async () => {
  const dir = await tempDir();
  const path = `${dir}/report.csv`;
  const first = await openLedger(path);
  const s1 = await runCampaign({
    input: stream(csvText(3)),
    template: TEMPLATE,
    transport: scripted(() => ({ status: "sent" })),
    rate: parseRate("3/d"),
    ...first.hooks(),
  });
  await first.close();
  assert.equal(s1.sent, 3);
  const again = await openLedger(path);
  const clock = new ManualClock(1_000);
  const transport = scripted(() => ({ status: "sent" }));
  const run = runCampaign({
    input: stream(csvText(3)),
    template: TEMPLATE,
    transport,
    rate: parseRate("3/d"),
    clock,
    ...again.hooks(clock),
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const outcome = await Promise.race([
    run,
    new Promise<"stuck">((resolve) => timer = setTimeout(() => resolve("stuck"), 2_000)),
  ]);
  clearTimeout(timer);
  await again.close();
  assert.notEqual(outcome, "stuck", "the run waited for the daily cap with nothing to send");
  assert.equal(outcome !== "stuck" && outcome.status, "finished");
  assert.equal(outcome !== "stuck" && outcome.done, 3);
  assert.deepEqual(transport.seen, []);
  assert.deepEqual(again.counts(), { ...again.before }, "nothing new recorded");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("counts() follows each line's latest outcome across runs", async () => {
  const dir = await tempDir();
  const path = `${dir}/report.csv`;
  const first = await openLedger(path);
  first.begin({ columns: [] });
  first.record(sent(2));
  first.record(failed(3, "4.3.0"), true);
  first.record(failed(4));
  await first.close();
  const again = await openLedger(path, { retryFailed: "all" });
  again.begin({ columns: [] });
  assert.deepEqual([again.counts().sent, again.counts().failed, again.counts().failedTransient], [
    1,
    2,
    1,
  ]);
  again.record(sent(3));
  again.record(failed(4, "5.7.1"));
  again.record(sent(5));
  again.recordRetry(6, 1, { status: "retry", code: "421", reason: "busy" }, 5, "user6@example.com");
  const c = again.counts();
  assert.deepEqual([c.sent, c.failed, c.failedTransient, c.retries], [3, 1, 0, 1]);
  await again.close();
  const third = await openLedger(path);
  assert.deepEqual(third.counts(), c, "what a reopen reads equals what the run counted");
  await third.close();
  await Deno.remove(dir, { recursive: true });
});
