import assert from "node:assert/strict";
import { acquireLock, hostName, LockError, type LockHolder } from "./lock.ts";

async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "lock-test-" });
}

/** The pid of a process that has exited (so no process has it, barring reuse). */
async function deadPid(): Promise<number> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", "0"],
    stdout: "null",
    stderr: "null",
  }).spawn();
  await child.status;
  return child.pid;
}

function writeHolder(path: string, holder: Partial<LockHolder>): void {
  Deno.writeTextFileSync(
    path,
    JSON.stringify({ since: "2026-01-01T00:00:00.000Z", nonce: "0123456789abcdef", ...holder }) +
      "\n",
  );
}

function age(path: string, ms: number): void {
  const then = new Date(Date.now() - ms);
  Deno.utimeSync(path, then, then);
}

Deno.test("acquireLock() creates the lock file with this process's pid and host, and release() removes it", async () => {
  const dir = await tempDir();
  const path = `${dir}/x.lock`;
  const lock = await acquireLock(path);
  const held = JSON.parse(await Deno.readTextFile(path));
  assert.equal(held.pid, Deno.pid);
  assert.equal(held.host, hostName());
  assert.equal(held.nonce, lock.holder.nonce);
  assert.equal(lock.tookOver, undefined);
  await lock.release();
  await assert.rejects(Deno.stat(path), Deno.errors.NotFound);
  await lock.release(); // twice is fine
  await Deno.remove(dir, { recursive: true });
});

Deno.test("acquireLock() refuses while a live process holds the lock, naming its pid and host", async () => {
  const dir = await tempDir();
  const path = `${dir}/x.lock`;
  const lock = await acquireLock(path, { what: "The report r.csv" });
  await assert.rejects(acquireLock(path, { what: "The report r.csv" }), (e: unknown) => {
    assert.ok(e instanceof LockError);
    assert.equal(e.holder?.pid, Deno.pid);
    assert.equal(e.path, path);
    assert.match(e.message, new RegExp(`^The report r\\.csv is in use by process ${Deno.pid} on `));
    assert.match(e.message, /delete .*x\.lock/);
    return true;
  });
  await lock.release();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("acquireLock() takes over a stale lock", async (t) => {
  const dir = await tempDir();
  const path = `${dir}/x.lock`;
  const host = hostName();
  const dead = await deadPid();
  const cases: [string, () => void, number | undefined][] = [
    ["of a dead pid on this host", () => writeHolder(path, { pid: dead, host }), dead],
    [
      "whose pid was reused by another process (other start tick)",
      () => writeHolder(path, { pid: Deno.pid, host, tick: "1" }),
      Deno.pid,
    ],
    [
      "of another host not refreshed for longer than staleMs",
      () => {
        writeHolder(path, { pid: 1, host: "elsewhere.example" });
        age(path, 120_000);
      },
      1,
    ],
    [
      "left empty by a process that died while creating it",
      () => {
        Deno.writeTextFileSync(path, "");
        age(path, 10_000);
      },
      undefined,
    ],
  ];
  for (const [name, setup, tookOverPid] of cases) {
    await t.step(name, async () => {
      setup();
      const lock = await acquireLock(path);
      assert.equal(lock.tookOver?.pid, tookOverPid);
      assert.equal(JSON.parse(await Deno.readTextFile(path)).pid, Deno.pid);
      const leftovers = [...Deno.readDirSync(dir)].map((e) => e.name);
      assert.deepEqual(leftovers, ["x.lock"], "nothing left aside");
      await lock.release();
    });
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("acquireLock() takes over at once from a holder that exited but was not reaped yet (a zombie)", async (t) => {
  try {
    Deno.statSync("/proc/self");
  } catch {
    return; // the zombie check reads /proc (Linux)
  }
  // `sleep 0` exits at once; its parent then becomes `sleep 5`, which never reaps it.
  const parent = new Deno.Command("sh", {
    args: ["-c", "sleep 0 & echo $!; exec sleep 5"],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = parent.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const zombie = Number((await reader.read()).value!.trim());
  reader.releaseLock();
  const dir = await tempDir();
  try {
    let stat = "";
    for (let i = 0; i < 200 && !/\) Z /.test(stat); i++) {
      await new Promise((r) => setTimeout(r, 10));
      stat = Deno.readTextFileSync(`/proc/${zombie}/stat`);
    }
    assert.match(stat, /\) Z /, "the child is a zombie");
    const tick = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
    await t.step("the lock names it, with its own start tick", async () => {
      const path = `${dir}/x.lock`;
      writeHolder(path, { pid: zombie, host: hostName(), tick });
      const lock = await acquireLock(path);
      assert.equal(lock.tookOver?.pid, zombie);
      await lock.release();
    });
  } finally {
    parent.kill("SIGKILL");
    await parent.status;
    await parent.stdout.cancel().catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("acquireLock() refuses a fresh lock of another host it cannot check", async () => {
  const dir = await tempDir();
  const path = `${dir}/x.lock`;
  writeHolder(path, { pid: 4242, host: "elsewhere.example" });
  await assert.rejects(acquireLock(path), /in use by process 4242 on elsewhere\.example/);
  assert.equal(JSON.parse(await Deno.readTextFile(path)).pid, 4242, "the lock is left alone");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("release() leaves a lock that is no longer ours", async () => {
  const dir = await tempDir();
  const path = `${dir}/x.lock`;
  const lock = await acquireLock(path);
  writeHolder(path, { pid: 4242, host: "elsewhere.example", nonce: "ffffffffffffffff" });
  await lock.release();
  assert.equal(JSON.parse(await Deno.readTextFile(path)).pid, 4242);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("acquireLock() lets exactly one of several processes take over the same stale lock", async () => {
  const dir = await tempDir();
  const path = `${dir}/x.lock`;
  writeHolder(path, { pid: await deadPid(), host: hostName() });
  const module = new URL("./lock.ts", import.meta.url).href;
  const code = `
    import { acquireLock } from ${JSON.stringify(module)};
    try {
      const lock = await acquireLock(${JSON.stringify(path)});
      console.log("won");
      await new Promise((r) => setTimeout(r, 1500));
      await lock.release();
    } catch (e) {
      console.log(e.name === "LockError" ? "lost" : "error " + e.message);
    }`;
  const children = Array.from(
    { length: 4 },
    () =>
      new Deno.Command(Deno.execPath(), { args: ["eval", code], stdout: "piped", stderr: "piped" })
        .output(),
  );
  const outputs = (await Promise.all(children)).map((o) =>
    new TextDecoder().decode(o.stdout).trim()
  );
  assert.deepEqual(outputs.filter((o) => o === "won").length, 1, outputs.join(", "));
  assert.deepEqual(outputs.filter((o) => o === "lost").length, 3, outputs.join(", "));
  await Deno.remove(dir, { recursive: true });
});
