/**
 * Two processes on the same report, end to end: the second refuses and names
 * the first; a lock left by a killed process is taken over.
 */
import assert from "node:assert/strict";
import { runCli } from "./_cli.ts";
import {
  checkDeliveries,
  countDeliveries,
  makeRecipients,
  MESSAGE,
  readDeliveries,
  spawnCli,
  waitFor,
} from "./_resume.ts";

async function setup(rows: number) {
  const dir = await Deno.makeTempDir({ prefix: "mass-mailer-lock-" });
  const recipients = makeRecipients(rows);
  const csv = `${dir}/recipients.csv`;
  await Deno.writeTextFile(csv, recipients.text);
  const log = `${dir}/delivered.log`;
  const args = [
    "send",
    csv,
    "--transport",
    "fake",
    "--latency",
    "100",
    "--concurrency",
    "50",
    "--delivery-log",
    log,
    "--progress",
    "none",
    ...MESSAGE,
  ];
  return { dir, csv, log, args, recipients, lock: `${csv}.report.csv.lock` };
}

Deno.test("a second process on the same report refuses, naming the first one's pid; nothing is sent twice", async () => {
  const s = await setup(2_000);
  const first = spawnCli(s.args);
  try {
    await waitFor(() => countDeliveries(s.log) >= 50 || first.exited(), "the first run to send");
    const second = await runCli(s.args);
    assert.equal(second.code, 2, second.stderr);
    assert.match(
      second.stderr,
      new RegExp(
        `The report .*recipients\\.csv\\.report\\.csv is in use by process ${first.pid} on `,
      ),
    );
    assert.match(second.stderr, /delete .*recipients\.csv\.report\.csv\.lock/);
    // The same report through another path to the same input is the same lock.
    const alias = `${s.dir}/../${s.dir.split("/").pop()}/recipients.csv`;
    const other = await runCli(["send", alias, ...s.args.slice(2)]);
    assert.equal(other.code, 2, other.stderr);
  } finally {
    first.kill("SIGTERM");
  }
  const out = await first.done;
  assert.equal(out.code, 5, out.stderr);
  const deliveries = readDeliveries(s.log);
  assert.equal(new Set(deliveries.map((d) => d.line)).size, deliveries.length, "no row sent twice");
  await assert.rejects(
    Deno.stat(s.lock),
    Deno.errors.NotFound,
    "a graceful stop releases the lock",
  );
  await Deno.remove(s.dir, { recursive: true });
});

Deno.test("a lock left by a process killed with -9 is taken over by the next run, which finishes the job", async () => {
  const s = await setup(1_500);
  const first = spawnCli(s.args);
  await waitFor(() => countDeliveries(s.log) >= 100 || first.exited(), "the first run to send");
  first.kill("SIGKILL");
  await first.done;
  const killedAt = countDeliveries(s.log);
  const stale = JSON.parse(await Deno.readTextFile(s.lock));
  assert.equal(stale.pid, first.pid, "the dead process's lock is still there");

  const second = await runCli(s.args);
  assert.equal(second.code, 0, second.stderr);
  assert.match(
    second.stderr,
    new RegExp(`Took over the lock of process ${first.pid} on .*no longer running`),
  );
  checkDeliveries(readDeliveries(s.log), s.recipients, [0, killedAt], 50);
  await assert.rejects(Deno.stat(s.lock), Deno.errors.NotFound);
  await Deno.remove(s.dir, { recursive: true });
});
