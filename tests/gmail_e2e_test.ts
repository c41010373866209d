/**
 * `mass-mailer send --transport gmail` as a user runs it: the real CLI in a
 * subprocess, a refresh-token credentials file, and the local fake of the
 * Gmail API and Google's token endpoint (tests/_gmail_fake.ts). What the fake
 * accepted is decoded from `raw` and read back with `mailparser`.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
// deno-lint-ignore no-import-prefix -- the project imports npm packages by full specifier (no import map)
import { type AddressObject, simpleParser } from "npm:mailparser@^3";
import { type CliRun, runCli } from "./_cli.ts";
import { type RunningGmailFake, startGmailFake } from "./_gmail_fake.ts";

const MAILBOX = "sender@example.com";
const REFRESH_TOKEN = "1//rt-e2e-Refresh-Token-Secret";
const CLIENT = { id: "e2e-client.apps.example", secret: "GOCSPX-e2e-client-secret" };
const MESSAGE = [
  "--from",
  `Team <${MAILBOX}>`,
  "--subject",
  "Hello {{name}}",
  "--to-name",
  "{{name}}",
  "--text",
  "Hi {{name}} from {{city}}",
];

/** A served fake that knows REFRESH_TOKEN, with a quota that never gets in the way. */
async function withFake(
  fn: (server: RunningGmailFake, dir: string) => Promise<void>,
): Promise<void> {
  const server = startGmailFake({
    client: CLIENT,
    refreshTokens: { [REFRESH_TOKEN]: MAILBOX },
    quota: { units: 1e9, perMs: 60_000 },
  });
  const dir = await Deno.makeTempDir({ prefix: "mass-mailer-gmail-e2e-" });
  try {
    await fn(server, dir);
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** Write a credentials file as `mass-mailer gmail login` does; returns its path. */
async function credentials(dir: string, refreshToken: string): Promise<string> {
  const path = `${dir}/gmail-credentials.json`;
  await Deno.writeTextFile(
    path,
    JSON.stringify({
      type: "authorized_user",
      client_id: CLIENT.id,
      client_secret: CLIENT.secret,
      refresh_token: refreshToken,
    }),
    { mode: 0o600 },
  );
  return path;
}

function gmailFlags(server: RunningGmailFake, creds: string): string[] {
  return [
    "--transport",
    "gmail",
    "--gmail-credentials",
    creds,
    "--gmail-api-url",
    server.url,
    "--gmail-token-url",
    server.tokenUrl,
    // Fast enough for a test; the fake's own quota is out of the way too.
    "--gmail-rate",
    "60000/min",
    "--progress",
    "none",
  ];
}

function csvRows(n: number): string {
  let s = "email,name,city\n";
  for (let i = 1; i <= n; i++) s += `user${i}@example.com,Ann ${i},Köln ${i}\n`;
  return s;
}

function assertNoStack(run: CliRun): void {
  const all = run.stdout + run.stderr;
  assert.doesNotMatch(all, /^\s+at /m, `stack trace printed:\n${all}`);
  assert.doesNotMatch(all, /Uncaught|Stack backtrace/);
}

Deno.test("mass-mailer send --transport gmail delivers every row exactly once in batch requests, merge fields right", () =>
  withFake(async (server, dir) => {
    const rows = 300;
    const csv = `${dir}/list.csv`;
    await Deno.writeTextFile(csv, csvRows(rows));
    const creds = await credentials(dir, REFRESH_TOKEN);
    const run = await runCli([
      "send",
      csv,
      ...gmailFlags(server, creds),
      "--gmail-batch-size",
      "50",
      "--json",
      ...MESSAGE,
    ]);
    assert.equal(run.code, 0, run.stderr);
    const summary = JSON.parse(run.stdout);
    assert.deepEqual(
      [summary.status, summary.rows, summary.sent, summary.failed, summary.invalid],
      ["finished", rows, rows, 0, 0],
    );
    assert.equal(summary.transport, "gmail");
    const { fake } = server;
    assert.equal(fake.received.length, rows);
    assert.ok(fake.stats.batchRequests >= rows / 50, `${fake.stats.batchRequests} batch requests`);
    assert.equal(fake.stats.singleRequests, 0);
    assert.equal(fake.stats.tokenRequests, 1, "the access token was not reused");
    const seen = new Set<string>();
    for (const r of fake.received) {
      assert.equal(r.user, MAILBOX);
      assert.match(r.raw, /^[A-Za-z0-9_-]+$/, "raw is not unpadded base64url");
      const parsed = await simpleParser(Buffer.from(r.raw, "base64url"));
      const to = (parsed.to as AddressObject).value[0];
      const i = Number(/^user(\d+)@example\.com$/.exec(to.address ?? "")?.[1]);
      assert.ok(i >= 1 && i <= rows, `unexpected recipient ${to.address}`);
      assert.ok(!seen.has(to.address!), `${to.address} got two messages`);
      seen.add(to.address!);
      assert.equal(to.name, `Ann ${i}`);
      assert.equal(parsed.subject, `Hello Ann ${i}`);
      assert.equal(parsed.text?.trimEnd(), `Hi Ann ${i} from Köln ${i}`);
      assert.equal(parsed.from?.value[0].address, MAILBOX);
    }
    assert.equal(seen.size, rows);
  }));

Deno.test("mass-mailer send --transport gmail refuses --gmail-batch-size 250 with exit 2 before any request (GMAIL-2)", () =>
  withFake(async (server, dir) => {
    const csv = `${dir}/list.csv`;
    await Deno.writeTextFile(csv, csvRows(3));
    const creds = await credentials(dir, REFRESH_TOKEN);
    const run = await runCli([
      "send",
      csv,
      ...gmailFlags(server, creds),
      "--gmail-batch-size",
      "250",
      ...MESSAGE,
    ]);
    assert.equal(run.code, 2, run.stderr);
    assertNoStack(run);
    assert.match(
      run.stderr,
      /Invalid --gmail-batch-size 250: Gmail allows 1 to 100 calls per batch request/,
    );
    const s = server.fake.stats;
    assert.deepEqual([s.tokenRequests, s.batchRequests, s.singleRequests], [0, 0, 0]);
    assert.equal(server.fake.received.length, 0);
  }));

Deno.test("mass-mailer send --transport gmail stops with exit 4 and a clear message when the token endpoint rejects the credentials", () =>
  withFake(async (server, dir) => {
    const csv = `${dir}/list.csv`;
    const report = `${dir}/report.csv`;
    await Deno.writeTextFile(csv, csvRows(3));
    const revoked = "1//rt-revoked-Secret-Value";
    const creds = await credentials(dir, revoked);
    const run = await runCli([
      "send",
      csv,
      ...gmailFlags(server, creds),
      "--report",
      report,
      "--json",
      ...MESSAGE,
    ]);
    assert.equal(run.code, 4, run.stderr);
    assertNoStack(run);
    assert.equal(JSON.parse(run.stdout).status, "failed");
    const reason = run.stderr.split("\n").filter((l) => /invalid_grant/.test(l));
    assert.equal(reason.length, 1, `one line naming the refusal expected:\n${run.stderr}`);
    assert.ok(reason[0].includes(creds), `the message does not name ${creds}: ${reason[0]}`);
    assert.ok(server.fake.stats.tokenRequests >= 1);
    assert.equal(server.fake.stats.batchRequests, 0);
    assert.equal(server.fake.received.length, 0);
    const printed = run.stdout + run.stderr + await Deno.readTextFile(report);
    for (const secret of [revoked, CLIENT.secret, "fake-at-"]) {
      assert.ok(!printed.includes(secret), `printed a secret: ${secret}`);
    }
  }));
