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

const DEMO_HELP = `Usage: mass-mailer demo [--rows N] [--keep]

Generates a CSV of N recipients (default 1,000,000) in a temporary directory and sends it
through the fake transport (500 ms per message, nothing leaves this machine), with a progress
bar and a summary. --keep leaves the CSV and its report in place (their path is printed).
`;

/** Run the demo: `--rows N` (default 1,000,000) through the fake transport at 500 ms latency. */
export async function demoCommand(args: string[], io: CliIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: {
        rows: { type: "string" },
        keep: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (error) {
    throw new CliError(
      `${(error as Error).message}; usage: mass-mailer demo [--rows N]`,
      EXIT.USAGE,
    );
  }
  if (parsed.values.help) {
    io.stdout(DEMO_HELP);
    return EXIT.OK;
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
