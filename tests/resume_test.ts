/**
 * Resume, end to end: the CLI as a subprocess on real files, stopped by
 * kill -9 and SIGTERM at random moments and run again; the fake transport's
 * delivery log is the independent record of what was delivered.
 *
 * Set RESUME_SEED to repeat a run's random stop points.
 */
import assert from "node:assert/strict";
import { runCli } from "./_cli.ts";
import { startSmtpServer } from "./_smtp_server.ts";
import {
  checkDeliveries,
  countDeliveries,
  makeRecipients,
  MESSAGE,
  readDeliveries,
  seeded,
  spawnCli,
  waitFor,
} from "./_resume.ts";

const SEED = Number(Deno.env.get("RESUME_SEED") ?? Math.floor(Math.random() * 1e9));

async function workspace(rows: number) {
  const dir = await Deno.makeTempDir({ prefix: "mass-mailer-resume-" });
  const recipients = makeRecipients(rows);
  const csv = `${dir}/recipients.csv`;
  await Deno.writeTextFile(csv, recipients.text);
  return { dir, csv, log: `${dir}/delivered.log`, report: `${csv}.report.csv`, recipients };
}

function fakeArgs(
  csv: string,
  log: string,
  window: number,
  latencyMs: number,
  extra: string[] = [],
) {
  return [
    "send",
    csv,
    "--transport",
    "fake",
    "--latency",
    String(latencyMs),
    "--concurrency",
    String(window),
    "--delivery-log",
    log,
    "--progress",
    "none",
    "--json",
    ...MESSAGE,
    ...extra,
  ];
}

/** Stop a run with `signal` once the log has grown past a random target; returns the log length after. */
async function stopAt(
  args: string[],
  log: string,
  target: number,
  signal: Deno.Signal,
): Promise<{ code: number; stdout: string; stderr: string; delivered: number }> {
  const run = spawnCli(args);
  try {
    await waitFor(() => countDeliveries(log) >= target || run.exited(), `${target} deliveries`);
  } catch (error) {
    run.kill("SIGKILL");
    await run.done;
    throw error;
  }
  try {
    run.kill(signal);
  } catch {
    const early = await run.done;
    throw new Error(
      `The run ended (exit ${early.code}) before the stop at ${target}:\n${early.stderr}`,
    );
  }
  const out = await run.done;
  return { ...out, delivered: countDeliveries(log) };
}

function summaryOf(stdout: string): Record<string, number | string> {
  return JSON.parse(stdout.trim().split("\n").at(-1)!);
}

function assertAccounted(s: Record<string, number | string>, rows: number): void {
  const sum = (s.sent as number) + (s.failed as number) + (s.invalid as number) +
    (s.duplicates as number) + (s.suppressed as number) + (s.done as number);
  assert.equal(s.status, "finished");
  assert.equal(s.rows, rows);
  assert.equal(s.pending, 0);
  assert.equal(
    sum,
    rows,
    "rows read = sent + failed + invalid + duplicates + suppressed + done before",
  );
}

Deno.test(`kill -9 of a 20,000-row run at random moments, resumed each time: no row skipped, doubles within the window (seed ${SEED})`, async () => {
  const rand = seeded(SEED);
  const window = 200;
  const w = await workspace(20_000);
  const args = fakeArgs(w.csv, w.log, window, 10);
  const boundaries = [0];
  for (let k = 0; k < 4; k++) {
    const target = boundaries[k] + 200 + Math.floor(rand() * 3_500);
    const out = await stopAt(args, w.log, target, "SIGKILL");
    assert.equal(out.code, 137, out.stderr);
    boundaries.push(out.delivered);
  }
  const last = await runCli(args);
  assert.equal(last.code, 0, last.stderr);
  const s = summaryOf(last.stdout);
  assertAccounted(s, 20_000);
  assert.match(last.stderr, /Resuming from .*recipients\.csv\.report\.csv/);
  const doubles = checkDeliveries(readDeliveries(w.log), w.recipients, boundaries, window);
  assert.equal(doubles[0], 0);

  // The report agrees with the delivery log.
  const report = await runCli(["report", w.report, "--json"]);
  assert.equal(report.code, 0, report.stderr);
  const r = JSON.parse(report.stdout);
  assert.deepEqual(
    [r.counts.sent, r.counts.invalid, r.counts.duplicate, r.counts.failed],
    [w.recipients.valid.size, w.recipients.invalid, w.recipients.duplicates, 0],
  );
  assert.equal(r.runs, 5);
  await Deno.remove(w.dir, { recursive: true });
});

Deno.test(`SIGTERM at random moments drains in-flight messages: resumed runs send no row twice (seed ${SEED})`, async () => {
  const rand = seeded(SEED + 1);
  const w = await workspace(20_000);
  const args = fakeArgs(w.csv, w.log, 200, 10);
  const boundaries = [0];
  for (let k = 0; k < 3; k++) {
    const target = boundaries[k] + 200 + Math.floor(rand() * 4_000);
    const out = await stopAt(args, w.log, target, "SIGTERM");
    assert.equal(out.code, 5, out.stderr);
    const s = summaryOf(out.stdout);
    assert.equal(s.status, "stopped");
    assert.match(out.stderr, /run the same command again to resume/);
    boundaries.push(out.delivered);
  }
  const last = await runCli(args);
  assert.equal(last.code, 0, last.stderr);
  assertAccounted(summaryOf(last.stdout), 20_000);
  const doubles = checkDeliveries(readDeliveries(w.log), w.recipients, boundaries, 0);
  assert.deepEqual(doubles, [0, 0, 0, 0]);
  await Deno.remove(w.dir, { recursive: true });
});

Deno.test("RES-1: SIGTERM after about 5,000 of 10,000 sends, the same command sends exactly the rest; a changed CSV or template is refused unless forced", async (t) => {
  const w = await workspace(10_000);
  const args = fakeArgs(w.csv, w.log, 100, 5);
  const stop = await stopAt(args, w.log, 5_000, "SIGTERM");
  assert.equal(stop.code, 5, stop.stderr);
  const first = readDeliveries(w.log).length;
  assert.ok(first >= 5_000 && first < w.recipients.valid.size, `${first} sent before the stop`);

  await t.step("a changed CSV is refused, nothing sent", async () => {
    const edited = w.recipients.text.replace("Name 7000\n", "Name 7000 (edited)\n");
    assert.notEqual(edited, w.recipients.text);
    await Deno.writeTextFile(w.csv, edited);
    const changed = await runCli(args);
    assert.equal(changed.code, 3, changed.stderr);
    assert.match(changed.stderr, /The input changed since the report .* was written/);
    assert.match(changed.stderr, /--force/);
    assert.equal(countDeliveries(w.log), first);
    await Deno.writeTextFile(w.csv, w.recipients.text);
  });
  await t.step("a changed template is refused, nothing sent", async () => {
    const changed = await runCli([...args, "--subject", "Another subject"]);
    assert.equal(changed.code, 3, changed.stderr);
    assert.match(changed.stderr, /The message or the recipient options changed/);
    assert.equal(countDeliveries(w.log), first);
  });
  await t.step("the same command sends exactly the remaining rows", async () => {
    const again = await runCli(args);
    assert.equal(again.code, 0, again.stderr);
    const s = summaryOf(again.stdout);
    assertAccounted(s, 10_000);
    const deliveries = readDeliveries(w.log);
    assert.equal(s.sent, w.recipients.valid.size - first);
    assert.equal(deliveries.length, w.recipients.valid.size);
    assert.equal(
      new Set(deliveries.map((d) => d.address.toLowerCase())).size,
      w.recipients.valid.size,
    );
    checkDeliveries(deliveries, w.recipients, [0, first], 0);
  });
  await t.step("rows inserted at the top with --force: only the new rows are sent", async () => {
    const lines = w.recipients.text.split("\n");
    const edited = [lines[0], "new1@example.com,New 1", "new2@example.com,New 2", ...lines.slice(1)]
      .join("\n");
    await Deno.writeTextFile(w.csv, edited);
    const refused = await runCli(args);
    assert.equal(refused.code, 3, refused.stderr);
    const forced = await runCli([...args, "--force"]);
    assert.equal(forced.code, 0, forced.stderr);
    const s = summaryOf(forced.stdout);
    assert.equal(s.sent, 2, forced.stderr);
    const tail = readDeliveries(w.log).slice(w.recipients.valid.size);
    assert.deepEqual(tail.map((d) => d.address).sort(), ["new1@example.com", "new2@example.com"]);
    // The forced run re-keyed the report to the new lines: a plain rerun has nothing to do.
    const rerun = await runCli(args);
    assert.equal(rerun.code, 0, rerun.stderr);
    assert.equal(summaryOf(rerun.stdout).sent, 0);
    assert.equal(summaryOf(rerun.stdout).done, 10_002);
    assert.equal(countDeliveries(w.log), w.recipients.valid.size + 2);
  });
  await Deno.remove(w.dir, { recursive: true });
});

Deno.test("--force after inputs changed twice: every address is delivered exactly once and no Message-ID names two addresses", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mass-mailer-resume-" });
  const csv = `${dir}/fo.csv`;
  const log = `${dir}/fo.dl`;
  const args = [
    "send",
    csv,
    "--transport",
    "fake",
    "--latency",
    "1",
    "--from",
    "t@example.com",
    "--subject",
    "s",
    "--text",
    "t",
    "--delivery-log",
    log,
    "--progress",
    "none",
  ];
  const inputs: [string[], string[]][] = [
    [["a@example.com", "b@example.com", "c@example.com"], []],
    [["new@example.com", "C@example.com", "b@example.com", "B@Example.com", "d@example.com"], [
      "--force",
    ]],
    [[
      "new@example.com",
      "C@example.com",
      "b@example.com",
      "B@Example.com",
      "d@example.com",
      "a@example.com",
    ], ["--force"]],
  ];
  for (const [rows, extra] of inputs) {
    await Deno.writeTextFile(csv, ["email", ...rows].join("\n") + "\n");
    const run = await runCli([...args, ...extra]);
    assert.equal(run.code, 0, run.stderr);
  }
  const deliveries = readDeliveries(log);
  const perAddress = new Map<string, number>();
  for (const d of deliveries) {
    const key = d.address.toLowerCase();
    perAddress.set(key, (perAddress.get(key) ?? 0) + 1);
  }
  const everyone = new Set(inputs.flatMap(([rows]) => rows.map((r) => r.toLowerCase())));
  assert.deepEqual(
    [...perAddress].sort(),
    [...everyone].sort().map((a) => [a, 1]),
    "each address delivered exactly once",
  );
  const addressOf = new Map<string, string>();
  for (const d of deliveries) {
    const other = addressOf.get(d.messageId);
    assert.ok(
      other === undefined || other === d.address,
      `${d.messageId} was used for ${other} and ${d.address}`,
    );
    addressOf.set(d.messageId, d.address);
  }
  assert.equal(addressOf.size, deliveries.length, "Message-IDs are unique");
  await Deno.remove(dir, { recursive: true });
});

Deno.test(`RES-2: kill -9 with 500 in flight, then resume: no gaps, doubles at most the window, finished only when every row is accounted for (seed ${SEED})`, async () => {
  const rand = seeded(SEED + 2);
  const window = 500;
  const w = await workspace(5_000);
  const args = fakeArgs(w.csv, w.log, window, 150);
  const killed = await stopAt(args, w.log, 1_000 + Math.floor(rand() * 2_000), "SIGKILL");
  assert.equal(killed.code, 137);
  const again = await runCli(args);
  assert.equal(again.code, 0, again.stderr);
  const s = summaryOf(again.stdout);
  assertAccounted(s, 5_000);
  const doubles = checkDeliveries(
    readDeliveries(w.log),
    w.recipients,
    [0, killed.delivered],
    window,
  );
  assert.ok(doubles[1] <= window);
  await Deno.remove(w.dir, { recursive: true });
});

Deno.test("--retry-failed resends only transiently failed rows, --retry-failed all the permanent ones too", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mass-mailer-resume-" });
  const recipients = makeRecipients(300);
  const csv = `${dir}/r.csv`;
  const log = `${dir}/log`;
  await Deno.writeTextFile(csv, recipients.text);
  const base = fakeArgs(csv, log, 50, 0, ["--max-attempts", "2"]);
  const first = await runCli([
    ...base,
    "--fail-rate",
    "0.3",
    "--fail-kind",
    "mixed",
    "--seed",
    "3",
  ]);
  assert.equal(first.code, 1, first.stderr);
  const report = JSON.parse((await runCli(["report", `${csv}.report.csv`, "--json"])).stdout);
  const transient: number = report.counts.failedTransient;
  const permanent: number = report.counts.failed - transient;
  assert.ok(transient > 0 && permanent > 0, JSON.stringify(report.counts));
  assert.ok(report.retries.total > 0, "the transient history is in the report");
  assert.equal(report.byCode.find((g: { transient: boolean }) => g.transient)?.code, "4.3.0");

  const sentBefore = countDeliveries(log);
  const retryTransient = await runCli([...base, "--retry-failed"]);
  assert.equal(retryTransient.code, 1, "permanent failures remain: " + retryTransient.stderr);
  assert.match(
    retryTransient.stderr,
    new RegExp(`sending the ${transient} transiently failed rows again`),
  );
  assert.equal(countDeliveries(log) - sentBefore, transient);

  const retryAll = await runCli([...base, "--retry-failed", "all"]);
  assert.equal(retryAll.code, 0, retryAll.stderr);
  assert.equal(countDeliveries(log) - sentBefore, transient + permanent);
  checkDeliveries(readDeliveries(log), recipients, [0], 0);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a daily rate limit survives a restart through the report", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mass-mailer-resume-" });
  const csv = `${dir}/r.csv`;
  const log = `${dir}/log`;
  await Deno.writeTextFile(csv, makeRecipients(6).text);
  const args = fakeArgs(csv, log, 10, 0, ["--rate", "3/d"]);
  const lock = `${csv}.report.csv.lock`;
  const exists = (path: string) => {
    try {
      return Deno.statSync(path).isFile;
    } catch {
      return false;
    }
  };
  for (let run = 1; run <= 2; run++) {
    const r = spawnCli(args);
    try {
      // The lock is taken just before the engine starts; a limiter without history would send at once.
      await waitFor(() => exists(lock) || r.exited(), "the run to start");
      if (run === 1) await waitFor(() => countDeliveries(log) >= 3, "3 deliveries");
      await new Promise((resolve) => setTimeout(resolve, 400));
      assert.ok(!r.exited(), "the run waits for the daily window");
    } finally {
      if (!r.exited()) r.kill("SIGTERM");
    }
    const out = await r.done;
    assert.equal(out.code, 5, out.stderr);
    assert.equal(countDeliveries(log), 3, `run ${run}: the 3/d cap holds across restarts`);
  }
  const wider = await runCli(fakeArgs(csv, log, 10, 0, ["--rate", "6/d"]));
  assert.equal(wider.code, 0, wider.stderr);
  assert.equal(countDeliveries(log), 6, "a 6/d cap lets the other 3 through");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("stdin keeps no report unless --report is given, and resumes with it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mass-mailer-resume-" });
  const recipients = makeRecipients(50);
  const log = `${dir}/log`;
  const args = [
    "send",
    "-",
    "--transport",
    "fake",
    "--latency",
    "0",
    "--delivery-log",
    log,
    "--json",
    ...MESSAGE,
  ];
  const none = await runCli(args, { stdin: recipients.text });
  assert.equal(none.code, 0, none.stderr);
  assert.match(none.stderr, /No report is kept for stdin/);
  const needs = await runCli([...args, "--retry-failed"], { stdin: recipients.text });
  assert.equal(needs.code, 2);
  assert.match(
    needs.stderr,
    /--retry-failed needs the report of the earlier run: give --report FILE/,
  );

  const report = `${dir}/stdin.report.csv`;
  const first = await runCli([...args, "--report", report, "--limit", "20"], {
    stdin: recipients.text,
  });
  assert.equal(first.code, 0, first.stderr);
  const second = await runCli([...args, "--report", report], { stdin: recipients.text });
  assert.equal(second.code, 0, second.stderr);
  assert.equal(summaryOf(second.stdout).done, 20);
  // A stream cannot be hashed up front: each row's address is checked against its line.
  const other = recipients.text.replace("user30@", "someone30@");
  const changed = await runCli([...args, "--report", report], { stdin: other });
  assert.equal(changed.code, 3, changed.stderr);
  assert.match(changed.stderr, /Line 31 of the input holds another address/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("RES-1 over SMTP: SIGTERM after about 5,000 of 10,000 sends, the same command delivers exactly the rest to the server", async () => {
  const server = await startSmtpServer();
  const dir = await Deno.makeTempDir({ prefix: "mass-mailer-resume-" });
  try {
    const recipients = makeRecipients(10_000);
    const csv = `${dir}/r.csv`;
    await Deno.writeTextFile(csv, recipients.text);
    const args = [
      "send",
      csv,
      "--transport",
      "smtp",
      "--smtp-host",
      "127.0.0.1",
      "--smtp-port",
      String(server.port),
      "--smtp-tls",
      "none",
      "--progress",
      "none",
      "--json",
      ...MESSAGE,
    ];
    const run = spawnCli(args);
    try {
      await waitFor(
        () => server.received.length >= 5_000 || run.exited(),
        "5,000 messages at the server",
      );
    } finally {
      if (!run.exited()) run.kill("SIGTERM");
    }
    const stopped = await run.done;
    assert.equal(stopped.code, 5, stopped.stderr);
    const first = server.received.length;
    assert.ok(first < recipients.valid.size, `${first} delivered before the stop`);
    const again = await runCli(args);
    assert.equal(again.code, 0, again.stderr);
    assertAccounted(summaryOf(again.stdout), 10_000);
    const to = server.received.map((m) => m.to.join(",").toLowerCase());
    assert.equal(to.length, recipients.valid.size, "every valid row once, none twice");
    assert.equal(new Set(to).size, recipients.valid.size);
    assert.equal(summaryOf(again.stdout).sent, recipients.valid.size - first);
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});
