/**
 * Helpers for the resume and lock tests: the CLI as a subprocess that can be
 * killed, CSV inputs with invalid and duplicate rows, and the fake transport's
 * delivery log read as the independent record of what was delivered.
 *
 * @module
 */
import assert from "node:assert/strict";

const CLI = new URL("../cli.ts", import.meta.url).pathname;

/** A running `mass-mailer` subprocess. */
export interface Running {
  readonly pid: number;
  /** True once the process has exited. */
  exited(): boolean;
  kill(signal: Deno.Signal): void;
  /** Exit code (128 + n for a signal), signal, stdout and stderr. */
  readonly done: Promise<
    { code: number; signal: Deno.Signal | null; stdout: string; stderr: string }
  >;
}

/** Start `deno run -A cli.ts ...args` without waiting for it. */
export function spawnCli(args: string[]): Running {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  let exited = false;
  const done = child.output().then((o) => {
    exited = true;
    return {
      code: o.code,
      signal: o.signal,
      stdout: new TextDecoder().decode(o.stdout),
      stderr: new TextDecoder().decode(o.stderr),
    };
  });
  return { pid: child.pid, exited: () => exited, kill: (s) => child.kill(s), done };
}

/** Poll `condition` every 5 ms until it holds; fail after `timeoutMs`. */
export async function waitFor(
  condition: () => boolean,
  what: string,
  timeoutMs = 20_000,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > until) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** One delivery the fake transport logged. */
export interface Delivery {
  readonly line: number;
  readonly address: string;
  readonly messageId: string;
}

/** The delivery log's complete lines (a line being written is left out). */
export function readDeliveries(path: string): Delivery[] {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
  const end = text.lastIndexOf("\n");
  if (end < 0) return [];
  return text.slice(0, end).split("\n").map((l) => {
    const [line, address, messageId] = l.split(",");
    return { line: Number(line), address, messageId };
  });
}

/** Count complete lines of the delivery log cheaply (for polling). */
export function countDeliveries(path: string): number {
  try {
    const bytes = Deno.readFileSync(path);
    let n = 0;
    for (let i = 0; i < bytes.length; i++) if (bytes[i] === 10) n++;
    return n;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return 0;
    throw error;
  }
}

/** A generated CSV and what a correct run must make of it. */
export interface Recipients {
  readonly text: string;
  /** Lines (1-based, header = 1) of the valid, first-seen rows: each must be delivered. */
  readonly valid: ReadonlySet<number>;
  readonly invalid: number;
  readonly duplicates: number;
  readonly rows: number;
}

/**
 * `rows` data rows after a header: `user<i>@example.com`, except every 997th
 * row (not an address) and every 1009th (a case-variant duplicate of row 1).
 */
export function makeRecipients(rows: number, prefix = "user"): Recipients {
  let text = "email,name\n";
  const valid = new Set<number>();
  let invalid = 0;
  let duplicates = 0;
  for (let i = 1; i <= rows; i++) {
    if (i % 997 === 0) {
      text += `not-an-address-${i},Bad ${i}\n`;
      invalid++;
    } else if (i % 1009 === 0 && i > 1) {
      text += `${prefix.toUpperCase()}1@Example.com,Dup ${i}\n`;
      duplicates++;
    } else {
      text += `${prefix}${i}@example.com,Name ${i}\n`;
      valid.add(i + 1);
    }
  }
  return { text, valid, invalid, duplicates, rows };
}

/** A small seeded random generator, so a failing run can be repeated. */
export { seededRandom as seeded } from "./_random.ts";

/**
 * Check a delivery log against the input after a run that finished: every
 * valid row delivered, nothing else delivered, and per segment (a segment is
 * what one run delivered) at most `maxDoubles` rows that an earlier segment
 * already delivered. Returns the number of doubles per segment.
 */
export function checkDeliveries(
  deliveries: readonly Delivery[],
  recipients: Recipients,
  boundaries: readonly number[],
  maxDoubles: number,
): number[] {
  const seen = new Map<number, string>();
  const doubles: number[] = [];
  const ends = [...boundaries, deliveries.length];
  for (let k = 0; k + 1 < ends.length; k++) {
    let d = 0;
    const inThisRun = new Set<number>();
    for (let i = ends[k]; i < ends[k + 1]; i++) {
      const { line, messageId } = deliveries[i];
      assert.ok(recipients.valid.has(line), `line ${line} is not a valid row but was delivered`);
      assert.ok(
        !inThisRun.has(line),
        `line ${line} was delivered twice by the same run (segment ${k})`,
      );
      inThisRun.add(line);
      const before = seen.get(line);
      if (before !== undefined) {
        d++;
        assert.equal(messageId, before, `line ${line} was resent with another Message-ID`);
      }
      seen.set(line, messageId);
    }
    doubles.push(d);
    assert.ok(
      d <= maxDoubles,
      `run ${k} resent ${d} rows, more than the in-flight window ${maxDoubles}`,
    );
  }
  const missing = [...recipients.valid].filter((l) => !seen.has(l));
  assert.deepEqual(missing.slice(0, 10), [], `${missing.length} valid rows were never delivered`);
  return doubles;
}

/** The flags of a minimal valid message (with merge fields). */
export const MESSAGE = [
  "--from",
  "Team <team@example.com>",
  "--subject",
  "Hello {{name}}",
  "--text",
  "Hi {{name}}",
];
