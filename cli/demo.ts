/**
 * `mass-mailer demo`: generate a CSV and send it through the fake transport,
 * so a new user sees the whole thing work in seconds.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { CliError, EXIT } from "./exit_codes.ts";
import { writeGenerated } from "./generate.ts";
import type { CliIo } from "./io.ts";
import { sendCommand } from "./send.ts";

/** Run the demo: `--rows N` (default 1,000,000) through the fake transport at 500 ms latency. */
export async function demoCommand(args: string[], io: CliIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: { rows: { type: "string" }, keep: { type: "boolean" } },
    });
  } catch (error) {
    throw new CliError(
      `${(error as Error).message}; usage: mass-mailer demo [--rows N]`,
      EXIT.USAGE,
    );
  }
  const rows = Number((parsed.values.rows ?? "1000000").replaceAll("_", ""));
  if (!Number.isInteger(rows) || rows < 0) {
    throw new CliError(`Invalid --rows ${parsed.values.rows}: use a whole number`, EXIT.USAGE);
  }
  const dir = await Deno.makeTempDir({ prefix: "mass-mailer-demo-" });
  const csv = `${dir}/recipients.csv`;
  try {
    const t0 = performance.now();
    await writeGenerated(csv, { rows });
    io.stderr(
      `Generated ${rows.toLocaleString("en-US")} recipients in ${
        Math.round(performance.now() - t0)
      } ms: ${csv}\n`,
    );
    const send = [
      csv,
      "--transport",
      "fake",
      "--from",
      "Demo <demo@example.com>",
      "--subject",
      "Hello {{name}}",
      "--to-name",
      "{{name}}",
      "--text",
      "Hi {{name}},\n\nGreetings from {{city}}. This message went through the fake transport.\n",
    ];
    // The demo's folder is removed afterwards: keep its report only with --keep.
    if (!parsed.values.keep) send.push("--no-report");
    io.stderr(`Running: mass-mailer send ${send.map(quote).join(" ")}\n`);
    return await sendCommand(send, io);
  } finally {
    if (!parsed.values.keep) await Deno.remove(dir, { recursive: true });
  }
}

function quote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg)
    ? arg
    : `'${arg.replaceAll("'", "'\\''").replaceAll("\n", "\\n")}'`;
}
