/**
 * The `mass-mailer` command line. Ships as a single binary with `deno compile`.
 *
 * ```sh
 * mass-mailer send recipients.csv --transport smtp --from "Team <team@example.com>" \
 *   --subject "Hello {{name}}" --text-file body.txt
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { CliError, EXIT } from "./cli/exit_codes.ts";
import { writeGenerated } from "./cli/generate.ts";
import { type CliIo, processIo } from "./cli/io.ts";
import { demoCommand } from "./cli/demo.ts";
import { reportCommand } from "./cli/report.ts";
import { describeFsError } from "./cli/message_flags.ts";
import { sendCommand, toCliError } from "./cli/send.ts";
import { TRANSPORTS } from "./cli/transports.ts";

/** The version printed by `mass-mailer --version`. */
export const VERSION = "0.1.0";

const HELP = `mass-mailer ${VERSION}: send one email to every row of a huge CSV

Usage:
  mass-mailer send <file.csv|-> --transport fake|smtp|gmail [options]   (send --help for all)
  mass-mailer generate <rows> [-o FILE] [--seed N] [--domain D]         write a test CSV
  mass-mailer demo [--rows N]              generate a CSV and send it through the fake transport
  mass-mailer serve --transport fake|smtp|gmail [--port N]   run the HTTP service (serve --help)
  mass-mailer report <report.csv> [--json]  counts by status and code, first failures of a run
  mass-mailer gmail login --gmail-client-secret FILE   store a Gmail refresh token (mode 0600)
  mass-mailer --version | --help

Exit codes: 0 all sent · 1 some failed · 2 usage · 3 bad input · 4 transport error · 5 stopped, resumable
`;

/** Run the command line with `args` (without the program name); resolves to the exit code. */
export async function main(args: string[], io: CliIo = processIo()): Promise<number> {
  try {
    return await dispatch(args, io);
  } catch (error) {
    const e = toCliError(error);
    if (args.includes("--json") && !e.inJson) {
      // A script that asked for JSON gets it for every failure, usage errors included.
      io.stdout(JSON.stringify({ exitCode: e.code, error: e.message }) + "\n");
    }
    io.stderr(`mass-mailer: ${e.message}\n`);
    if (io.env("MASS_MAILER_DEBUG") && e.cause instanceof Error) io.stderr(`${e.cause.stack}\n`);
    return e.code;
  }
}

async function dispatch(args: string[], io: CliIo): Promise<number> {
  const [command, ...rest] = args;
  switch (command) {
    case "send":
      return await sendCommand(rest, io);
    case "generate":
      return await generateCommand(rest, io);
    case "demo":
      return await demoCommand(rest, io);
    case "report":
      return await reportCommand(rest, io);
    case "serve": // loaded on demand: the HTTP stack costs nothing to the other commands
      return await (await import("./cli/serve.ts")).serveCommand(rest, io);
    case "--version":
    case "version":
      io.stdout(`mass-mailer ${VERSION}\n`);
      return EXIT.OK;
    case undefined:
    case "help":
    case "--help":
    case "-h":
      io.stdout(HELP);
      return command === undefined ? EXIT.USAGE : EXIT.OK;
  }
  const transport = TRANSPORTS.find((t) => t.name === command);
  const sub = transport?.commands?.[rest[0]];
  if (sub !== undefined) {
    return await sub(rest.slice(1), {
      env: io.env,
      log: (line) => io.stderr(line + "\n"),
    });
  }
  throw new CliError(`Unknown command "${command}"; see mass-mailer --help`, EXIT.USAGE);
}

async function generateCommand(args: string[], io: CliIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        output: { type: "string", short: "o" },
        seed: { type: "string" },
        domain: { type: "string" },
      },
    });
  } catch (error) {
    throw new CliError(`${(error as Error).message}; see mass-mailer --help`, EXIT.USAGE);
  }
  const [count] = parsed.positionals;
  const rows = Number(count?.replaceAll("_", ""));
  if (parsed.positionals.length !== 1 || !Number.isInteger(rows) || rows < 0) {
    throw new CliError("Usage: mass-mailer generate <rows> [-o FILE]", EXIT.USAGE);
  }
  const out = parsed.values.output ?? "-";
  try {
    await writeGenerated(out, {
      rows,
      seed: parsed.values.seed === undefined ? undefined : Number(parsed.values.seed),
      domain: parsed.values.domain,
    });
  } catch (error) {
    if (error instanceof Deno.errors.BrokenPipe) return EXIT.OK; // `generate ... | head`
    if (out === "-" || !(error instanceof Error) || !("code" in error)) throw error;
    throw new CliError(`Cannot write ${out}: ${describeFsError(error)}`, EXIT.USAGE, {
      cause: error,
    });
  }
  if (out !== "-") io.stderr(`Wrote ${rows} rows to ${out}\n`);
  return EXIT.OK;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
