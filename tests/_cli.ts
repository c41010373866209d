/**
 * Run the real `mass-mailer` CLI as a subprocess, as a user does.
 *
 * @module
 */

/** What one CLI run printed and returned. */
export interface CliRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

const CLI = new URL("../cli.ts", import.meta.url).pathname;

/** Run `deno run -A cli.ts ...args`, optionally feeding `stdin`. */
export async function runCli(
  args: string[],
  opts: { stdin?: string | Uint8Array; env?: Record<string, string>; cwd?: string } = {},
): Promise<CliRun> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args],
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", ...opts.env },
    cwd: opts.cwd,
  }).spawn();
  if (opts.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(
      typeof opts.stdin === "string" ? new TextEncoder().encode(opts.stdin) : opts.stdin,
    );
    await w.close();
  }
  const out = await child.output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

/** The flags of a minimal valid message. */
export const MESSAGE = [
  "--from",
  "Team <team@example.com>",
  "--subject",
  "Hello {{name}}",
  "--text",
  "Hi {{name}}",
];

/** Write `text` to a new temp file and return its path. */
export async function tempFile(text: string | Uint8Array, suffix = ".csv"): Promise<string> {
  const path = await Deno.makeTempFile({ prefix: "mass-mailer-test-", suffix });
  if (typeof text === "string") await Deno.writeTextFile(path, text);
  else await Deno.writeFile(path, text);
  return path;
}
