/**
 * The CLI as a user runs it: a subprocess on real files. The fake transport's
 * delivery log is the independent record of what was "sent".
 */
import assert from "node:assert/strict";
import { MESSAGE, runCli, tempFile } from "./_cli.ts";

const FAKE = ["--transport", "fake", "--latency", "0", "--progress", "none"];

/** Lines of the delivery log: [line, address, messageId]. */
async function deliveries(path: string): Promise<string[][]> {
  let text = "";
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return text.split("\n").filter(Boolean).map((l) => l.split(","));
}

/** Run `send` on `csv` with the fake transport; returns the run, its JSON summary and deliveries. */
async function send(csv: string | Uint8Array, extra: string[] = []) {
  const file = await tempFile(csv);
  const log = await Deno.makeTempFile({ suffix: ".log" });
  try {
    const run = await runCli([
      "send",
      file,
      ...FAKE,
      "--delivery-log",
      log,
      "--json",
      ...MESSAGE,
      ...extra,
    ]);
    let summary: Record<string, unknown> = {};
    if (run.stdout.trim()) summary = JSON.parse(run.stdout);
    return { ...run, summary, delivered: await deliveries(log) };
  } finally {
    await Deno.remove(file);
    await Deno.remove(log);
    await Deno.remove(`${file}.report.csv`).catch(() => {});
  }
}

function assertNoStack(stderr: string): void {
  assert.doesNotMatch(stderr, /^\s+at /m, `stack trace printed:\n${stderr}`);
  assert.doesNotMatch(stderr, /error: Uncaught/);
}

function rows(n: number): string {
  let s = "email,name\n";
  for (let i = 1; i <= n; i++) s += `user${i}@example.com,N${i}\n`;
  return s;
}

Deno.test("mass-mailer send delivers exactly one message per row for 0, 1, 999, 1000, 1001 and 2001 rows (CSV-6)", async (t) => {
  for (const n of [0, 1, 999, 1000, 1001, 2001]) {
    await t.step(`${n} rows`, async () => {
      const r = await send(rows(n));
      assert.equal(r.delivered.length, n);
      if (n === 0) {
        // Never exit 0 with 0 sent: a header-only file is an input error.
        assert.equal(r.code, 3, r.stderr);
        assert.match(r.stderr, /Nothing to send: .* has no data rows/);
        return;
      }
      assert.equal(r.code, 0, r.stderr);
      assert.equal(new Set(r.delivered.map((d) => d[1])).size, n);
      assert.equal(r.summary.rows, n);
      assert.equal(r.summary.sent, n);
      assert.equal(r.summary.pending, 0);
    });
  }
});

Deno.test("mass-mailer send --json prints one object with the counts and the summary on stderr", async () => {
  const r = await send("email,name\na@example.com,A\nbad,B\nA@EXAMPLE.com,C\n");
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim().split("\n").length, 1);
  for (const key of ["rows", "sent", "failed", "invalid", "duplicates", "elapsedMs"]) {
    assert.ok(key in r.summary, `missing ${key}`);
  }
  assert.deepEqual(
    [r.summary.rows, r.summary.sent, r.summary.failed, r.summary.invalid, r.summary.duplicates],
    [3, 1, 0, 1, 1],
  );
  assert.match(r.stderr, /Finished in .*: 3 rows read/);
  assert.match(r.stderr, /invalid\s+1/);
});

Deno.test("mass-mailer send strips a UTF-8 BOM with and without a header row (CSV-1)", async (t) => {
  const bom = new Uint8Array([0xef, 0xbb, 0xbf]);
  const enc = (s: string) => new Uint8Array([...bom, ...new TextEncoder().encode(s)]);
  await t.step("with header", async () => {
    const r = await send(enc("email,name\r\nuser1@example.com,Ann\r\nuser2@example.com,Bob\r\n"));
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.delivered.map((d) => d[1]), ["user1@example.com", "user2@example.com"]);
  });
  await t.step("without header", async () => {
    const r = await send(enc("user1@example.com,Ann\r\nuser2@example.com,Bob\r\n"), [
      "--header-row",
      "no",
      "--subject",
      "Hello {{2}}",
      "--text",
      "Hi {{2}}",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.delivered[0][1], "user1@example.com");
    assert.ok(!r.delivered.some((d) => d.join().includes("\uFEFF")));
  });
});

Deno.test("mass-mailer send reads CRLF, CR-only and mixed line ends without a final newline (CSV-3)", async (t) => {
  const cases = {
    crlf: "user1@example.com\r\nuser2@example.com\r\nuser3@example.com",
    cr: "user1@example.com\ruser2@example.com\ruser3@example.com",
    mixed: "user1@example.com\r\nuser2@example.com\ruser3@example.com\n",
  };
  for (const [name, csv] of Object.entries(cases)) {
    await t.step(name, async () => {
      const r = await send(csv, ["--subject", "Hi", "--text", "Hi"]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.delivered.map((d) => d[1]), [
        "user1@example.com",
        "user2@example.com",
        "user3@example.com",
      ]);
    });
  }
});

Deno.test("mass-mailer send fails loudly on a wrong delimiter and works with --delimiter (CSV-5)", async () => {
  const csv = "user1@example.com;Ann\nuser2@example.com;Bob";
  const bad = await send(csv, ["--subject", "Hi", "--text", "Hi"]);
  assert.equal(bad.code, 3);
  assert.equal(bad.summary.exitCode, 3, "--json carries the exit code");
  assert.equal(bad.stdout.trim().split("\n").length, 1, "one JSON object, not two");
  assert.match(String(bad.summary.error), /0 valid addresses/);
  assert.match(bad.stderr, /0 valid addresses in column 1 of 2 rows/);
  assert.equal(bad.delivered.length, 0);
  assertNoStack(bad.stderr);
  const good = await send(csv, ["--subject", "Hi", "--text", "Hi", "--delimiter", ";"]);
  assert.equal(good.code, 0, good.stderr);
  assert.equal(good.delivered.length, 2);
});

Deno.test("mass-mailer send mails case-duplicates once, to the address as first written (ADDR-1)", async () => {
  const r = await send("Alice@Example.com\nalice@example.COM\nbob@example.com\n", [
    "--subject",
    "Hi",
    "--text",
    "Hi",
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.delivered.map((d) => d[1]), ["Alice@Example.com", "bob@example.com"]);
  assert.equal(r.summary.duplicates, 1);
});

Deno.test("mass-mailer send goes on past a bad address and a refused recipient (ADDR-3)", async () => {
  const csv =
    "user1@example.com\nnot-an-address\nuser3@example.com\nuser4@example.com\nuser5@example.com\n";
  const r = await send(csv, ["--subject", "Hi", "--text", "Hi", "--fail-lines", "4"]);
  assert.equal(r.code, 1, "some rows failed permanently");
  assert.deepEqual([r.summary.sent, r.summary.invalid, r.summary.failed], [3, 1, 1]);
  assert.deepEqual(r.delivered.map((d) => d[0]), ["1", "3", "5"]);
});

Deno.test("mass-mailer send --preview prints one message and no injected header (MIME-2)", async () => {
  const csv = 'email,name\nuser1@example.com,"Eve\r\nBcc: spy@example.org"\n';
  const file = await tempFile(csv);
  try {
    const r = await runCli([
      "send",
      file,
      "--transport",
      "fake",
      "--preview",
      "--from",
      "Team <team@example.com>",
      "--to-name",
      "{{name}}",
      "--subject",
      "Hi {{name}}",
      "--text",
      "Hello",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const head = r.stdout.split("\r\n\r\n")[0];
    assert.doesNotMatch(head, /^bcc:/im);
    assert.match(r.stdout, /^Subject: /m);
    assert.match(r.stderr, /RCPT TO:<user1@example\.com>/);
    for (const line of r.stdout.split("\r\n").slice(0, -1)) {
      assert.ok(!line.includes("\n") && !line.includes("\r"), "bare CR or LF in output");
    }
  } finally {
    await Deno.remove(file);
    await Deno.remove(`${file}.report.csv`).catch(() => {});
  }
});

Deno.test("mass-mailer send refuses an unknown merge field before sending anything", async () => {
  const r = await send(rows(3), ["--subject", "Hi {{nmae}}"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /nmae/);
  assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  assert.equal(r.delivered.length, 0);
  // With progress lines on, still only the error: no "0 rows" line before it.
  const plain = await send(rows(3), ["--subject", "Hi {{nmae}}", "--progress", "plain"]);
  assert.equal(plain.stderr.trim().split("\n").length, 1, plain.stderr);
});

Deno.test("mass-mailer send names the line of an unterminated quote, without a stack trace", async () => {
  const r = await send('email,name\nuser1@example.com,Ann\nuser2@example.com,"Bob\n');
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.stderr, /[Ll]ine 3/);
  assertNoStack(r.stderr);
});

Deno.test("mass-mailer send explains usage errors in one line", async (t) => {
  const cases: [string, string[], RegExp][] = [
    ["no transport", ["send", "x.csv", ...MESSAGE], /--transport/],
    ["unknown transport", ["send", "x.csv", "--transport", "pigeon", ...MESSAGE], /pigeon/],
    [
      "no subject",
      ["send", "x.csv", ...FAKE, "--from", "a@example.com", "--text", "x"],
      /--subject/,
    ],
    ["bad flag", ["send", "x.csv", ...FAKE, ...MESSAGE, "--bogus"], /bogus/],
    ["bad number", ["send", "x.csv", ...FAKE, ...MESSAGE, "--concurrency", "lots"], /concurrency/],
    ["unknown command", ["sned"], /Unknown command/],
    [
      "--retry-failed with a wrong value",
      ["send", "x.csv", ...FAKE, ...MESSAGE, "--retry-failed", "bogus"],
      /Invalid --retry-failed bogus: use --retry-failed transient/,
    ],
    [
      "--text and --text-file",
      ["send", "x.csv", ...FAKE, ...MESSAGE, "--text-file", "body.txt"],
      /--text or --text-file, not both/,
    ],
  ];
  for (const [name, args, pattern] of cases) {
    await t.step(name, async () => {
      const r = await runCli(args);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, pattern);
      assertNoStack(r.stderr);
    });
  }
});

Deno.test("mass-mailer send --json prints one JSON object for usage errors too", async (t) => {
  const cases: [string, string[], number][] = [
    ["no transport", ["send", "x.csv", ...MESSAGE, "--json"], 2],
    ["bad flag", ["send", "x.csv", ...FAKE, ...MESSAGE, "--json", "--bogus"], 2],
    ["missing file", ["send", "/nonexistent/x.csv", ...FAKE, ...MESSAGE, "--json"], 3],
  ];
  for (const [name, args, code] of cases) {
    await t.step(name, async () => {
      const r = await runCli(args);
      assert.equal(r.code, code, r.stderr);
      const lines = r.stdout.trim().split("\n");
      assert.equal(lines.length, 1, r.stdout);
      const json = JSON.parse(lines[0]);
      assert.equal(json.exitCode, code);
      assert.equal(typeof json.error, "string");
      assert.ok(r.stderr.includes(json.error), "the same message on stderr");
    });
  }
});

Deno.test("mass-mailer send: unreadable or empty input is a one-line input error (exit 3)", async (t) => {
  const empty = await tempFile("");
  const dir = await Deno.makeTempDir();
  try {
    const cases: [string, string[], RegExp][] = [
      [
        "missing file",
        ["send", "/nonexistent/x.csv", ...FAKE, ...MESSAGE],
        /Cannot read .*no such file/,
      ],
      [
        "a missing relative path names the directory it was looked for in",
        ["send", "no-such-list.csv", ...FAKE, ...MESSAGE],
        /Cannot read no-such-list\.csv \(in \/.+\): no such file/,
      ],
      ["a directory", ["send", dir, ...FAKE, ...MESSAGE], /Cannot read .*directory/],
      ["an empty file", ["send", empty, ...FAKE, ...MESSAGE, "--no-report"], /Nothing to send/],
    ];
    for (const [name, args, pattern] of cases) {
      await t.step(name, async () => {
        const r = await runCli(args);
        assert.equal(r.code, 3, r.stderr);
        assert.match(r.stderr, pattern);
        assertNoStack(r.stderr);
      });
    }
    await t.step("a device gets no report beside it", async () => {
      const r = await runCli([
        "send",
        "/dev/null",
        ...FAKE,
        "--from",
        "a@example.com",
        "--subject",
        "Hi",
        "--text",
        "Hi",
      ]);
      assert.equal(r.code, 3, r.stderr);
      assert.match(r.stderr, /No report is kept for \/dev\/null/);
      let exists = true;
      try {
        await Deno.stat("/dev/null.report.csv");
      } catch {
        exists = false;
      }
      assert.equal(exists, false);
    });
  } finally {
    await Deno.remove(empty);
    await Deno.remove(dir);
  }
});

Deno.test("mass-mailer send --limit and --dry-run", async (t) => {
  await t.step("--limit 10 reads 10 rows", async () => {
    const r = await send(rows(50), ["--limit", "10"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.summary.rows, 10);
    assert.equal(r.delivered.length, 10);
  });
  await t.step("--dry-run renders all and sends none", async () => {
    const r = await send(rows(50), ["--dry-run"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.summary.rendered, 50);
    assert.equal(r.summary.sent, 0);
    assert.equal(r.delivered.length, 0);
  });
});

Deno.test("mass-mailer send: an empty stdin is 'nothing to send' (exit 3), not a template error", async () => {
  // MESSAGE has merge fields; an empty input has no columns to check them against.
  const r = await runCli(["send", "-", ...FAKE, ...MESSAGE], { stdin: "" });
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.stderr, /Nothing to send: stdin has no data rows/);
  assert.doesNotMatch(r.stderr, /merge field/);
});

Deno.test("mass-mailer send reads stdin with -", async () => {
  const log = await Deno.makeTempFile();
  try {
    const r = await runCli(["send", "-", ...FAKE, "--delivery-log", log, ...MESSAGE], {
      stdin: rows(25),
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await deliveries(log)).length, 25);
  } finally {
    await Deno.remove(log);
  }
});

Deno.test("mass-mailer send prints plain progress lines when stderr is not a terminal", async () => {
  const file = await tempFile(rows(20));
  try {
    const r = await runCli([
      "send",
      file,
      "--transport",
      "fake",
      "--latency",
      "0",
      "--progress",
      "plain",
      ...MESSAGE,
    ]);
    assert.equal(r.code, 0);
    assert.match(r.stderr, /100% 20 rows · 20 sent · 0 in flight/);
    assert.ok(
      !r.stderr.includes("\r") && !r.stderr.includes("\x1b["),
      "terminal codes in plain mode",
    );
  } finally {
    await Deno.remove(file);
    await Deno.remove(`${file}.report.csv`).catch(() => {});
  }
});

Deno.test("mass-mailer send drains in-flight messages on SIGTERM and exits 5", async () => {
  const file = await tempFile(rows(5000));
  const log = await Deno.makeTempFile();
  try {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../cli.ts", import.meta.url).pathname,
        "send",
        file,
        "--transport",
        "fake",
        "--latency",
        "200",
        "--concurrency",
        "100",
        "--delivery-log",
        log,
        "--json",
        "--progress",
        "none",
        ...MESSAGE,
      ],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    // Wait until some messages have been delivered, then ask it to stop.
    for (let i = 0; i < 200 && (await deliveries(log)).length < 200; i++) {
      await new Promise((r) => setTimeout(r, 25));
    }
    child.kill("SIGTERM");
    const out = await child.output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 5, stderr);
    const summary = JSON.parse(new TextDecoder().decode(out.stdout));
    assert.equal(summary.status, "stopped");
    const delivered = await deliveries(log);
    assert.equal(
      delivered.length,
      summary.sent,
      "every in-flight message finished and was counted",
    );
    assert.ok(summary.sent < 5000);
    assert.equal(summary.pending, summary.rows - summary.sent);
    assert.match(stderr, /Stopped/);
  } finally {
    await Deno.remove(file);
    await Deno.remove(log);
    await Deno.remove(`${file}.report.csv`).catch(() => {});
  }
});

Deno.test("mass-mailer generate writes a header and N unique rows", async () => {
  const r = await runCli(["generate", "5"]);
  assert.equal(r.code, 0);
  const lines = r.stdout.trim().split("\n");
  assert.equal(lines[0], "email,name,city");
  assert.equal(lines.length, 6);
  assert.equal(new Set(lines.slice(1).map((l) => l.split(",")[0])).size, 5);
});

Deno.test("local output errors get their own exit codes, not the transport's (4)", async (t) => {
  await t.step(
    "generate into a directory that does not exist: usage error (2), one line",
    async () => {
      const r = await runCli(["generate", "10", "-o", "/nonexistent-dir/x.csv"]);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr, "mass-mailer: Cannot write /nonexistent-dir/x.csv: no such file\n");
    },
  );
  await t.step("a reader that closes early (| head): the command's own code", async () => {
    const dir = await Deno.makeTempDir();
    try {
      // A preview bigger than a pipe's buffer, so writing it meets the closed pipe.
      await Deno.writeTextFile(`${dir}/body.txt`, "Some text of the body.\n".repeat(20_000));
      await Deno.writeTextFile(`${dir}/list.csv`, "email\nann@example.com\n");
      const preview = [
        "send",
        `${dir}/list.csv`,
        "--transport",
        "fake",
        "--from",
        "team@example.com",
        "--subject",
        "Hi",
        "--text-file",
        `${dir}/body.txt`,
        "--preview",
      ];
      for (const args of [["generate", "300000"], preview]) {
        const child = new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", new URL("../cli.ts", import.meta.url).pathname, ...args],
          stdout: "piped",
          stderr: "piped",
          env: { NO_COLOR: "1" },
        }).spawn();
        const reader = child.stdout.getReader();
        await reader.read(); // the first bytes, then go away as `head -c` does
        await reader.cancel();
        const stderr = await new Response(child.stderr).text();
        const { code } = await child.status;
        assert.equal(code, 0, `${args[0]}: ${stderr}`);
        assert.doesNotMatch(stderr, /Unexpected error|Broken pipe/);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});

Deno.test("mass-mailer send --suppress never mails listed addresses (by the duplicate rule)", async () => {
  const list = await tempFile("email\nBOB@Example.com\nnot an address\n", ".txt");
  try {
    const r = await send(
      "email,name\nann@example.com,Ann\nbob@example.com,Bob\ncid@example.com,Cid\n",
      ["--suppress", list],
    );
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.delivered.map((d) => d[1]), ["ann@example.com", "cid@example.com"]);
    assert.equal(r.summary.suppressed, 1);
    assert.equal(r.summary.rows, 3);
  } finally {
    await Deno.remove(list);
  }
});

Deno.test("mass-mailer send: a header-only first run leaves no report, so the filled file sends later", async () => {
  const file = await tempFile("email,name\n");
  try {
    const args = ["send", file, ...FAKE, ...MESSAGE];
    const empty = await runCli(args);
    assert.equal(empty.code, 3, empty.stderr);
    assert.doesNotMatch(empty.stderr, /Per-row report/, "no report is named: none is left");
    await Deno.writeTextFile(file, "a@example.com,Ann\n", { append: true });
    const filled = await runCli(args);
    assert.equal(filled.code, 0, filled.stderr);
    assert.match(filled.stderr, /sent\s+1/);
  } finally {
    await Deno.remove(file);
    await Deno.remove(`${file}.report.csv`).catch(() => {});
  }
});

Deno.test("mass-mailer send warns when two header columns have the same name", async (t) => {
  await t.step("the same name twice: a warning naming both columns", async () => {
    const r = await send("email,name,city,name\na@example.com,Ann,X,Other\n");
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stderr,
      /warning: columns 2 and 4 are both named "name"; \{\{name\}\} takes column 2/,
    );
    assert.equal(r.delivered.length, 1);
  });
  await t.step("distinct names: no warning", async () => {
    const r = await send("email,name,city\na@example.com,Ann,X\n");
    assert.doesNotMatch(r.stderr, /warning/);
  });
});

Deno.test("mass-mailer demo generates a CSV and sends every row through the fake transport", async (t) => {
  await t.step("2,000 rows: all sent, the temporary folder removed", async () => {
    const r = await runCli(["demo", "--rows", "2000"]);
    assert.equal(r.code, 0, r.stderr);
    const generated = /Generated 2,000 recipients in \d+ ms: (\S+)/.exec(r.stderr);
    assert.ok(generated, r.stderr);
    assert.match(r.stderr, /sent\s+2,000/);
    await assert.rejects(Deno.stat(generated[1]), Deno.errors.NotFound);
  });
  await t.step("--help", async () => {
    const r = await runCli(["demo", "--help"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Usage: mass-mailer demo/);
  });
});

Deno.test("a file that is not a report: send says to choose another --report, report just says so", async () => {
  const other = await tempFile("hello,world\n");
  const list = await tempFile("email\nann@example.com\n");
  try {
    const send = await runCli(["send", list, ...FAKE, ...MESSAGE, "--report", other]);
    assert.equal(send.code, 2, send.stderr);
    assert.match(send.stderr, /is not a mass-mailer report .*: choose another --report file\n$/);
    const report = await runCli(["report", other]);
    assert.equal(report.code, 2, report.stderr);
    assert.match(report.stderr, /is not a mass-mailer report/);
    assert.doesNotMatch(report.stderr, /--report/);
    assert.equal(await Deno.readTextFile(other), "hello,world\n", "left unchanged");
  } finally {
    await Deno.remove(other);
    await Deno.remove(list);
  }
});
