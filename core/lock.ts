/**
 * A lock file that keeps two processes off the same ledger.
 *
 * {@link acquireLock} creates `path` atomically (`createNew`, i.e. `O_EXCL`)
 * and writes the holder into it as JSON: pid, host, start time, the process's
 * kernel start tick (Linux) and a random nonce. A second process finds the file
 * and refuses with a {@link LockError} naming the holder's pid and host.
 *
 * A lock left behind by a process that died (kill -9, power loss) is stale and
 * is taken over safely:
 *
 * - Same host: the holder is dead when its pid does not exist, or when the
 *   process with that pid started at another kernel tick than the one written
 *   in the lock (the pid was reused). This needs `/proc` (Linux, with
 *   `--allow-all`) or `--allow-run` (a signal-0 probe); without either, the
 *   age rule below decides.
 * - Otherwise (another host, or liveness cannot be checked): the holder
 *   refreshes the lock's modification time every `heartbeatMs` (default 10 s);
 *   a lock not refreshed for `staleMs` (default 60 s) is stale.
 * - Takeover: the stale file is renamed aside to a unique name, re-read to
 *   make sure it is the same stale lock (not a fresh one another process just
 *   created), removed, and the lock is created again with `createNew`. Of two
 *   processes racing for the same stale lock exactly one wins; the other sees
 *   a live holder and refuses.
 *
 * {@link FileLock.release} deletes the file only while it still holds this
 * process's nonce.
 *
 * @example
 * ```ts
 * import { acquireLock } from "./lock.ts";
 * const dir = await Deno.makeTempDir();
 * const lock = await acquireLock(`${dir}/report.csv.lock`);
 * try {
 *   // ... write the ledger ...
 * } finally {
 *   await lock.release();
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 *
 * @module
 */

/** Who holds a lock, as written in the lock file. */
export interface LockHolder {
  /** The holder's process id. */
  readonly pid: number;
  /** The holder's host name. */
  readonly host: string;
  /** When the lock was taken (ISO 8601). */
  readonly since: string;
  /** Kernel start tick of the holder (Linux `/proc/<pid>/stat` field 22), when known. */
  readonly tick?: string;
  /** Random id of this acquisition. */
  readonly nonce: string;
}

/** Options of {@link acquireLock}. */
export interface LockOptions {
  /** How often the holder refreshes the lock's modification time, in ms. Default 10000. */
  readonly heartbeatMs?: number;
  /** A lock whose holder cannot be checked and that was not refreshed for this long is stale. Default 60000. */
  readonly staleMs?: number;
  /** Name of what the lock protects, for messages. Default: the lock path without `.lock`. */
  readonly what?: string;
}

/** A lock this process holds. */
export interface FileLock {
  /** The lock file's path. */
  readonly path: string;
  /** What this process wrote into the lock file. */
  readonly holder: LockHolder;
  /** True when a stale lock of a dead process was taken over. */
  readonly tookOver: LockHolder | undefined;
  /** Stop the heartbeat and delete the lock file (only if it is still ours). Safe to call twice. */
  release(): Promise<void>;
  /** Same as {@link FileLock.release}, synchronously (for exit paths). */
  releaseSync(): void;
}

/** Another live process holds the lock, or the lock file cannot be created. */
export class LockError extends Error {
  /** The lock file. */
  readonly path: string;
  /** The holder, when the lock file could be read. */
  readonly holder: LockHolder | undefined;
  /** Make a lock error for `path`. */
  constructor(message: string, path: string, holder?: LockHolder, options?: ErrorOptions) {
    super(message, options);
    this.name = "LockError";
    this.path = path;
    this.holder = holder;
  }
}

let cachedHost: string | undefined;

/** This machine's host name, read without asking for extra permissions. */
export function hostName(): string {
  if (cachedHost !== undefined) return cachedHost;
  let host = "";
  try {
    if (Deno.permissions.querySync({ name: "sys", kind: "hostname" }).state === "granted") {
      host = Deno.hostname();
    }
  } catch {
    // Not permitted; try the file below.
  }
  if (host === "") {
    try {
      host = Deno.readTextFileSync("/etc/hostname").trim();
    } catch {
      // No such file or not permitted.
    }
  }
  if (host === "") {
    try {
      host = Deno.env.get("HOSTNAME") ?? "";
    } catch {
      // Not permitted.
    }
  }
  cachedHost = host || "unknown-host";
  return cachedHost;
}

/** Kernel start tick of `pid` from `/proc`, `null` when it has no such process, undefined when unknown. */
function startTick(pid: number): string | null | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      // No /proc at all (not Linux) looks the same as no such process: tell them apart.
      try {
        Deno.statSync("/proc/self");
        return null;
      } catch {
        return undefined;
      }
    }
    return undefined;
  }
  // Fields after the command name, which is in parentheses and may hold spaces.
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // A zombie (exited, not yet reaped by its parent) or a dead task runs no more.
  if (rest[0] === "Z" || rest[0] === "X") return null;
  return rest[19];
}

/** Whether `pid` runs: true, false, or undefined when this process may not check. */
async function pidAlive(pid: number, tick: string | undefined): Promise<boolean | undefined> {
  const now = startTick(pid);
  if (now === null) return false;
  if (now !== undefined) return tick === undefined || tick === now;
  try {
    if (Deno.permissions.querySync({ name: "run" }).state !== "granted") return undefined;
    // Without /proc (not Linux) only: loaded here, it costs every other start-up nothing.
    const { default: process } = await import("node:process");
    process.kill(pid, 0);
    return true;
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === "ESRCH") return false;
    if (code === "EPERM") return true;
    return undefined;
  }
}

function randomNonce(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function parseHolder(text: string): LockHolder | undefined {
  try {
    const v = JSON.parse(text);
    if (
      v && typeof v === "object" && Number.isInteger(v.pid) && typeof v.host === "string" &&
      typeof v.nonce === "string"
    ) {
      return {
        pid: v.pid,
        host: v.host,
        since: String(v.since ?? ""),
        tick: typeof v.tick === "string" ? v.tick : undefined,
        nonce: v.nonce,
      };
    }
  } catch {
    // Not JSON: a torn write by a process that died while creating the lock.
  }
  return undefined;
}

function readOrNull(path: string): string | null {
  try {
    return Deno.readTextFileSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

function describe(h: LockHolder): string {
  return `process ${h.pid} on ${h.host}${h.since ? ` (since ${h.since})` : ""}`;
}

/**
 * Take the lock at `path`, or throw {@link LockError} naming the live holder.
 * A stale lock of a dead process is taken over (see the module doc).
 */
export async function acquireLock(path: string, options: LockOptions = {}): Promise<FileLock> {
  const heartbeatMs = options.heartbeatMs ?? 10_000;
  const staleMs = options.staleMs ?? 60_000;
  if (!(heartbeatMs > 0) || !(staleMs > heartbeatMs)) {
    throw new RangeError(
      `Invalid lock timing: heartbeatMs ${heartbeatMs} must be > 0 and below staleMs ${staleMs}`,
    );
  }
  const what = options.what ?? path.replace(/\.lock$/, "");
  const host = hostName();
  const tick = startTick(Deno.pid) ?? undefined;
  const holder: LockHolder = {
    pid: Deno.pid,
    host,
    since: new Date().toISOString(),
    ...(tick === undefined ? {} : { tick }),
    nonce: randomNonce(),
  };
  const body = JSON.stringify(holder) + "\n";
  let tookOver: LockHolder | undefined;

  for (let attempt = 0; attempt < 20; attempt++) {
    try {
      const file = Deno.openSync(path, { write: true, createNew: true });
      try {
        file.writeSync(new TextEncoder().encode(body));
      } finally {
        file.close();
      }
      return held(path, holder, tookOver, heartbeatMs);
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists)) {
        throw new LockError(
          `Cannot create the lock ${path}: ${(error as Error).message}`,
          path,
          undefined,
          { cause: error },
        );
      }
    }
    const text = readOrNull(path);
    if (text === null) continue; // Released meanwhile: try again.
    const other = parseHolder(text);
    let ageMs = 0;
    try {
      ageMs = Date.now() - (Deno.statSync(path).mtime?.getTime() ?? Date.now());
    } catch {
      continue; // Gone meanwhile.
    }
    if (other === undefined) {
      // Empty or torn: its creator may be writing it right now; give it a moment.
      if (ageMs < 2_000) {
        await new Promise((r) => setTimeout(r, 20));
        continue;
      }
    } else {
      const alive = other.host === host ? await pidAlive(other.pid, other.tick) : undefined;
      const stale = alive === false || (alive === undefined && ageMs > staleMs);
      if (!stale) {
        const self = other.pid === Deno.pid && other.host === host ? " (this process)" : "";
        throw new LockError(
          `${what} is in use by ${describe(other)}${self}: wait for it to finish or stop it; ` +
            `if that process is gone, delete ${path}`,
          path,
          other,
        );
      }
    }
    // Stale: move it aside, make sure it is the one we judged, then create ours.
    const aside = `${path}.stale-${Deno.pid}-${randomNonce()}`;
    try {
      Deno.renameSync(path, aside);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) continue;
      throw new LockError(
        `Cannot take over the stale lock ${path}: ${(error as Error).message}`,
        path,
        other,
        {
          cause: error,
        },
      );
    }
    const moved = readOrNull(aside);
    if (moved === text) {
      Deno.removeSync(aside);
      tookOver = other;
      continue;
    }
    // We moved a lock that another process created in between: put it back.
    try {
      Deno.linkSync(aside, path);
    } catch {
      // A third process created one meanwhile; theirs stands.
    }
    try {
      Deno.removeSync(aside);
    } catch {
      // Already gone.
    }
  }
  throw new LockError(
    `Cannot take the lock ${path}: other processes keep taking it; try again`,
    path,
  );
}

function held(
  path: string,
  holder: LockHolder,
  tookOver: LockHolder | undefined,
  heartbeatMs: number,
): FileLock {
  let released = false;
  const timer = setInterval(() => {
    try {
      const now = new Date();
      Deno.utimeSync(path, now, now);
    } catch {
      // Removed by someone; release() will notice.
    }
  }, heartbeatMs);
  Deno.unrefTimer(timer);
  const releaseSync = () => {
    if (released) return;
    released = true;
    clearInterval(timer);
    const text = readOrNull(path);
    if (text !== null && parseHolder(text)?.nonce === holder.nonce) {
      try {
        Deno.removeSync(path);
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      }
    }
  };
  return {
    path,
    holder,
    tookOver,
    releaseSync,
    release: () => Promise.resolve(releaseSync()),
  };
}
