/**
 * `mass-mailer send --transport smtp` as a user runs it: the real CLI in a
 * subprocess, sending over TLS with AUTH to `smtp-server` (an independent
 * implementation) on 127.0.0.1, the password in the environment. What the
 * server stored is read back with `mailparser`; the per-row report with
 * `csv-parse`.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
// deno-lint-ignore no-import-prefix -- the project imports npm packages by full specifier (no import map)
import { parse as parseCsv } from "npm:csv-parse@^5/sync";
// deno-lint-ignore no-import-prefix -- as above
import { type AddressObject, type ParsedMail, simpleParser } from "npm:mailparser@^3";
import { type CliRun, runCli } from "./_cli.ts";
import {
  type ReceivedMail,
  startRecordingProxy,
  startSmtpServer,
  type TestSmtpServer,
  type TestSmtpServerOptions,
} from "./_smtp_server.ts";

const CA = new URL("./testdata/smtp/ca.pem", import.meta.url).pathname;
const USER = "campaign-user";
const PASSWORD = "Corr3ct-Horse-Battery-Staple";
const ENV = { MASS_MAILER_SMTP_PASSWORD: PASSWORD };
const MESSAGE = [
  "--from",
  "Team <team@example.com>",
  "--subject",
  "Hello {{name}}",
  "--to-name",
  "{{name}}",
  "--text",
  "Hi {{name}} from {{city}}",
];

/** The flags that point the CLI at `server` over `tls`, logging in as USER. */
function smtpFlags(server: TestSmtpServer, tls: "implicit" | "starttls" | "none"): string[] {
  return [
    "--transport",
    "smtp",
    "--smtp-host",
    "127.0.0.1",
    "--smtp-port",
    String(server.port),
    "--smtp-tls",
    tls,
    "--smtp-ca",
    CA,
    "--smtp-user",
    USER,
    "--progress",
    "none",
  ];
}

/** A server with TLS and AUTH (USER / PASSWORD) plus `extra` options; closed by `fn`'s end. */
async function withServer(
  opts: TestSmtpServerOptions,
  fn: (server: TestSmtpServer, dir: string) => Promise<void>,
): Promise<void> {
  const server = await startSmtpServer({ auth: { user: USER, pass: PASSWORD }, ...opts });
  const dir = await Deno.makeTempDir({ prefix: "mass-mailer-smtp-e2e-" });
  try {
    await fn(server, dir);
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
}

function parse(mail: ReceivedMail): Promise<ParsedMail> {
  return simpleParser(Buffer.from(mail.raw));
}

function firstTo(parsed: ParsedMail): { address?: string; name: string } {
  const to = parsed.to as AddressObject;
  return to.value[0];
}

function summaryOf(run: CliRun): Record<string, unknown> {
  assert.equal(run.stdout.trim().split("\n").length, 1, `one JSON line expected:\n${run.stdout}`);
  return JSON.parse(run.stdout);
}

function assertNoStack(run: CliRun): void {
  const all = run.stdout + run.stderr;
  assert.doesNotMatch(all, /^\s+at /m, `stack trace printed:\n${all}`);
  assert.doesNotMatch(all, /Uncaught|Stack backtrace/);
}

/** The report's data rows (meta row dropped), by CSV line number. */
async function reportRows(path: string): Promise<Map<number, Record<string, string>>> {
  const rows = parseCsv(await Deno.readTextFile(path), {
    columns: true,
    relax_column_count: true,
  }) as Record<string, string>[];
  return new Map(rows.filter((r) => r.status !== "meta").map((r) => [Number(r.line), r]));
}

/** Every way a secret could show up in a transcript: as is, base64, or in an AUTH PLAIN blob. */
function secretForms(user: string, secret: string): string[] {
  const b64 = (s: string) => btoa(String.fromCharCode(...new TextEncoder().encode(s)));
  return [secret, b64(secret), b64(`\0${user}\0${secret}`), b64(`${user}\0${user}\0${secret}`)];
}

function csvRows(n: number): string {
  let s = "email,name,city\n";
  for (let i = 1; i <= n; i++) s += `user${i}@example.com,"Doe, Ann ${i}",City ${i}\n`;
  return s;
}

Deno.test("mass-mailer send --transport smtp delivers every row exactly once over TLS with AUTH, merge fields right", async (t) => {
  const rows = 300;
  const cases = [
    // 300 rows over 3 connections kept open for the whole run.
    { tls: "starttls", connections: 3, maxMessages: "unlimited" },
    // Each connection retires after 50 messages: at least 6 connections, none over 50.
    { tls: "implicit", connections: 3, maxMessages: "50" },
  ] as const;
  for (const c of cases) {
    await t.step(
      `${c.tls}, ${c.connections} connections, --smtp-max-messages ${c.maxMessages}`,
      () =>
        withServer({ tls: c.tls }, async (server, dir) => {
          const csv = `${dir}/list.csv`;
          await Deno.writeTextFile(csv, csvRows(rows));
          const run = await runCli([
            "send",
            csv,
            ...smtpFlags(server, c.tls),
            "--smtp-connections",
            String(c.connections),
            "--smtp-max-messages",
            c.maxMessages,
            "--json",
            ...MESSAGE,
          ], { env: ENV });
          assert.equal(run.code, 0, run.stderr);
          const summary = summaryOf(run);
          assert.deepEqual(
            [summary.status, summary.rows, summary.sent, summary.failed, summary.invalid],
            ["finished", rows, rows, 0, 0],
          );
          assert.equal(summary.pending, 0);
          assert.equal(summary.transport, "smtp");

          assert.equal(server.received.length, rows, "messages stored by the server");
          const envelopeTo = server.received.map((m) => m.to.join(","));
          assert.equal(new Set(envelopeTo).size, rows, "a recipient got two messages");
          for (let i = 1; i <= rows; i++) {
            assert.ok(envelopeTo.includes(`user${i}@example.com`), `user${i} missing`);
          }
          assert.ok(
            server.maxConcurrent() <= c.connections,
            `${server.maxConcurrent()} open at once`,
          );
          if (c.maxMessages === "unlimited") {
            assert.equal(server.connections(), c.connections);
          } else {
            const cap = Number(c.maxMessages);
            assert.ok(server.connections() >= rows / cap, `${server.connections()} connections`);
            const perConnection = new Map<number, number>();
            for (const m of server.received) {
              perConnection.set(m.connection, (perConnection.get(m.connection) ?? 0) + 1);
            }
            assert.ok(Math.max(...perConnection.values()) <= cap, "a connection went over its cap");
          }

          const ids = new Set<string>();
          for (const mail of server.received) {
            assert.equal(mail.secure, true, "sent in the clear");
            assert.equal(mail.user, USER);
            assert.equal(mail.from, "team@example.com");
            const i = Number(/^user(\d+)@/.exec(mail.to[0])![1]);
            const parsed = await parse(mail);
            assert.equal(parsed.subject, `Hello Doe, Ann ${i}`);
            assert.deepEqual(firstTo(parsed), {
              address: `user${i}@example.com`,
              name: `Doe, Ann ${i}`,
            });
            assert.equal(parsed.text?.trimEnd(), `Hi Doe, Ann ${i} from City ${i}`);
            assert.ok(parsed.messageId, "no Message-ID");
            ids.add(parsed.messageId);
          }
          assert.equal(ids.size, rows, "Message-IDs are not unique");
        }),
    );
  }
});

Deno.test("mass-mailer send --transport smtp goes on past a bad row and a refused recipient (ADDR-3)", () =>
  withServer({
    tls: "starttls",
    onRcptTo: (address) =>
      address === "user4@example.com" ? { code: 550, message: "5.1.1 No such user here" } : null,
  }, async (server, dir) => {
    const csv = `${dir}/list.csv`;
    const report = `${dir}/report.csv`;
    await Deno.writeTextFile(
      csv,
      "email,name,city\nuser1@example.com,A,X\nnot-an-address,B,X\nuser3@example.com,C,X\n" +
        "user4@example.com,D,X\nuser5@example.com,E,X\n",
    );
    const run = await runCli(
      ["send", csv, ...smtpFlags(server, "starttls"), "--report", report, "--json", ...MESSAGE],
      { env: ENV },
    );
    assert.equal(run.code, 1, run.stderr);
    const summary = summaryOf(run);
    assert.deepEqual(
      [summary.status, summary.rows, summary.sent, summary.failed, summary.invalid],
      ["finished", 5, 3, 1, 1],
    );
    assert.match(run.stderr, /failed\s+1\s+\(permanent/);
    assert.match(run.stderr, /invalid\s+1\s+\(bad address/);
    assert.deepEqual(server.received.map((m) => m.to[0]).sort(), [
      "user1@example.com",
      "user3@example.com",
      "user5@example.com",
    ]);
    // Row 2 is CSV line 3, row 4 is line 5 (the header is line 1).
    const rows = await reportRows(report);
    assert.equal(rows.size, 5);
    assert.equal(rows.get(3)?.status, "invalid");
    assert.equal(rows.get(3)?.address, "not-an-address");
    assert.match(rows.get(3)!.reason, /@/);
    assert.equal(rows.get(5)?.status, "failed");
    assert.equal(rows.get(5)?.code, "5.1.1");
    assert.match(rows.get(5)!.reason, /^550 5\.1\.1 No such user here/);
    for (const line of [2, 4, 6]) assert.equal(rows.get(line)?.status, "sent", `line ${line}`);
  }));

Deno.test("mass-mailer send --transport smtp sends an IDN domain as punycode and needs SMTPUTF8 for a UTF-8 local part (ADDR-2)", async (t) => {
  const csvText = "email,name,city\nuser@bücher.example,A,X\njürgen@example.org,B,X\n" +
    "ann@example.com,C,X\n";
  await t.step(
    "server without SMTPUTF8: that row fails with a clear reason, the run goes on",
    () =>
      // Plain SMTP through a recording proxy, to see the envelope as it went on the wire
      // (smtp-server itself turns a punycode domain back into Unicode).
      withServer({ tls: "none", smtpUtf8: false, auth: undefined }, async (server, dir) => {
        const proxy = startRecordingProxy(server.port);
        try {
          const csv = `${dir}/list.csv`;
          const report = `${dir}/report.csv`;
          await Deno.writeTextFile(csv, csvText);
          const run = await runCli([
            "send",
            csv,
            "--transport",
            "smtp",
            "--smtp-host",
            "127.0.0.1",
            "--smtp-port",
            String(proxy.port),
            "--smtp-tls",
            "none",
            "--progress",
            "none",
            "--report",
            report,
            "--json",
            ...MESSAGE,
          ]);
          assert.equal(run.code, 1, run.stderr);
          const summary = summaryOf(run);
          assert.deepEqual([summary.sent, summary.failed, summary.invalid], [2, 1, 0]);
          const wire = proxy.chunks.flat().join("");
          assert.match(wire, /^RCPT TO:<user@xn--bcher-kva\.example>\r$/m);
          assert.match(wire, /^RCPT TO:<ann@example\.com>\r$/m);
          assert.doesNotMatch(wire, /bücher|jürgen/, "a non-ASCII address went on the wire");
          assert.equal(server.received.length, 2);
          const idn = server.received.find((m) => m.to[0] !== "ann@example.com")!;
          const header = new TextDecoder().decode(idn.raw).split("\r\n\r\n")[0];
          assert.match(header, /^To: .*<user@xn--bcher-kva\.example>\r?$/m);
          const failed = (await reportRows(report)).get(3)!;
          assert.equal(failed.status, "failed");
          assert.equal(failed.address, "jürgen@example.org");
          assert.match(failed.reason, /SMTPUTF8/);
          assert.match(failed.reason, /jürgen@example\.org/);
        } finally {
          await proxy.close();
        }
      }),
  );
  await t.step(
    "server with SMTPUTF8: MAIL FROM carries SMTPUTF8 and the UTF-8 address arrives",
    () =>
      withServer({ tls: "starttls", smtpUtf8: true }, async (server, dir) => {
        const csv = `${dir}/list.csv`;
        await Deno.writeTextFile(csv, csvText);
        const run = await runCli(
          ["send", csv, ...smtpFlags(server, "starttls"), "--no-report", "--json", ...MESSAGE],
          { env: ENV },
        );
        assert.equal(run.code, 0, run.stderr);
        assert.equal(summaryOf(run).sent, 3);
        const utf8 = server.received.find((m) => m.to[0] === "jürgen@example.org");
        assert.ok(utf8, "the UTF-8 address did not arrive");
        assert.ok(utf8.fromArgs.SMTPUTF8, "MAIL FROM without SMTPUTF8");
        const plain = server.received.find((m) => m.to[0] === "ann@example.com")!;
        assert.ok(!plain.fromArgs.SMTPUTF8, "SMTPUTF8 asked for an ASCII envelope");
      }),
  );
});

Deno.test("mass-mailer send --transport smtp stops with exit 4 and never shows the secret when the password is wrong", () =>
  withServer({ tls: "starttls" }, async (server, dir) => {
    const csv = `${dir}/list.csv`;
    const report = `${dir}/report.csv`;
    const wrong = "Wr0ng-Secret-Pa55word";
    await Deno.writeTextFile(csv, csvRows(5));
    const run = await runCli(
      [
        "send",
        csv,
        ...smtpFlags(server, "starttls"),
        "--smtp-debug",
        "--report",
        report,
        ...MESSAGE,
      ],
      { env: { MASS_MAILER_SMTP_PASSWORD: wrong } },
    );
    assert.equal(run.code, 4, run.stderr);
    assertNoStack(run);
    const error = run.stderr.split("\n").filter((l) => /rejected AUTH/.test(l));
    assert.equal(error.length, 1, run.stderr);
    assert.match(error[0], /for user campaign-user: 535 5\.7\.8/);
    assert.match(error[0], /check the user name and password/);
    assert.ok(server.auths.length > 0 && server.auths.every((a) => !a.ok));
    assert.equal(server.received.length, 0);
    const printed = run.stdout + run.stderr + await Deno.readTextFile(report);
    for (const form of secretForms(USER, wrong)) {
      assert.ok(!printed.includes(form), `the secret was printed as ${form}`);
    }
  }));

Deno.test("mass-mailer send --transport smtp refuses an untrusted certificate or a missing STARTTLS before sending the password", async (t) => {
  const cases = [
    { name: "implicit TLS, self-signed certificate", tls: "implicit", cert: "untrusted" },
    { name: "STARTTLS, self-signed certificate", tls: "starttls", cert: "untrusted" },
    { name: "--smtp-tls starttls, server without STARTTLS", tls: "none", cert: "trusted" },
  ] as const;
  for (const c of cases) {
    await t.step(c.name, () =>
      withServer({ tls: c.tls, cert: c.cert }, async (server, dir) => {
        const csv = `${dir}/list.csv`;
        await Deno.writeTextFile(csv, csvRows(3));
        const mode = c.tls === "none" ? "starttls" : c.tls;
        const run = await runCli(
          ["send", csv, ...smtpFlags(server, mode), "--no-report", ...MESSAGE],
          { env: ENV },
        );
        assert.equal(run.code, 4, run.stderr);
        assertNoStack(run);
        assert.match(run.stderr, c.tls === "none" ? /STARTTLS/ : /certificate/i);
        if (c.cert === "untrusted") assert.match(run.stderr, /--smtp-ca/);
        assert.equal(server.received.length, 0);
        assert.equal(server.mailFroms.length, 0);
        assert.deepEqual(server.auths, [], "credentials went over an unverified channel");
        assert.ok(!(run.stdout + run.stderr).includes(PASSWORD));
      }));
  }
});

Deno.test("mass-mailer send has no flag for the SMTP password: --smtp-password is an unknown option", () =>
  withServer({ tls: "starttls" }, async (server, dir) => {
    const csv = `${dir}/list.csv`;
    await Deno.writeTextFile(csv, csvRows(1));
    const run = await runCli([
      "send",
      csv,
      ...smtpFlags(server, "starttls"),
      "--smtp-password",
      PASSWORD,
      ...MESSAGE,
    ]);
    assert.equal(run.code, 2, run.stderr);
    assert.match(
      run.stderr,
      /Unknown option '--smtp-password': secrets are never taken from the command line/,
    );
    assert.doesNotMatch(run.stderr, /after '--'/, "parseArgs' advice to pass it as a positional");
    assert.ok(!(run.stdout + run.stderr).includes(PASSWORD), "the password was echoed");
    assertNoStack(run);
    assert.equal(server.connections(), 0);
  }));

/** Drop the Date line; the Message-ID's random campaign part differs between runs. */
function comparable(raw: string): string {
  return raw
    .replace(/^Date: [^\r\n]*\r\n/m, "")
    .replace(/^Message-ID: <[^.>]+\./m, "Message-ID: <CAMPAIGN.");
}

Deno.test("mass-mailer send --transport smtp delivers non-ASCII subject, name and body exactly, the same bytes --preview shows (MIME-1)", () =>
  withServer({ tls: "implicit" }, async (server, dir) => {
    const csv = `${dir}/list.csv`;
    await Deno.writeTextFile(csv, "email,name\nuser1@example.com,Jürgen\n");
    const message = [
      "--from",
      "Team <team@example.com>",
      "--subject",
      "Grüße aus Köln",
      "--to-name",
      "{{name}}",
      "--text",
      "Ça va? 東京",
    ];
    const run = await runCli(
      ["send", csv, ...smtpFlags(server, "implicit"), "--no-report", ...message],
      { env: ENV },
    );
    assert.equal(run.code, 0, run.stderr);
    assert.equal(server.received.length, 1);
    const mail = server.received[0];
    const parsed = await parse(mail);
    assert.equal(parsed.subject, "Grüße aus Köln");
    assert.deepEqual(firstTo(parsed), { address: "user1@example.com", name: "Jürgen" });
    assert.equal(parsed.text?.replace(/\r?\n$/, ""), "Ça va? 東京");
    assert.ok(mail.raw.every((b) => b < 0x80), "8bit data sent without asking for it");
    const text = new TextDecoder().decode(mail.raw);
    assert.match(text, /^Subject: =\?UTF-8\?[BQ]\?/im);
    assert.match(text, /^Content-Type: text\/plain; charset=utf-8/im);

    const preview = await runCli(["send", csv, "--transport", "fake", "--preview", ...message]);
    assert.equal(preview.code, 0, preview.stderr);
    assert.match(
      preview.stderr,
      new RegExp(`MAIL FROM:<${mail.from}> RCPT TO:<${mail.to[0]}> \\(line 2\\)`),
    );
    // smtp-server hands over the data with the dot-stuffing already removed.
    assert.equal(comparable(text), comparable(preview.stdout));
    assert.match(preview.stdout, /^Date: /m);
  }));
