/**
 * `mass-mailer send <file|->`: the main job, from flags to exit code.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { type CampaignSummary, emptyRun, startCampaign, TransportError } from "../core/campaign.ts";
import { systemClock } from "../core/clock.ts";
import { fingerprintFile, fingerprintTemplate } from "../core/fingerprint.ts";
import {
  type Ledger,
  type LedgerCounts,
  LedgerError,
  openLedger,
  type RetryFailed,
} from "../core/ledger.ts";
import { LockError } from "../core/lock.ts";
import { parseRate } from "../core/rate.ts";
import type { RecipientOptions } from "../core/recipients.ts";
import { joinChunks, type Outgoing, type Transport } from "../core/types.ts";
import { CliError, EXIT } from "./exit_codes.ts";
import type { CliIo } from "./io.ts";
import { formatInt } from "./format.ts";
import { describeFsError, loadTemplate, MESSAGE_FLAG_SPECS } from "./message_flags.ts";
import { startProgress } from "./progress.ts";
import { summaryJson, summaryText } from "./summary.ts";
import { loadSuppression } from "./suppress.ts";
import { pickTransport, TRANSPORTS } from "./transports.ts";

/** The flags of `send` that are not a transport's own. */
export const SEND_FLAGS = {
  transport: { type: "string", short: "t" },
  ...MESSAGE_FLAG_SPECS,
  column: { type: "string" },
  "header-row": { type: "string" },
  delimiter: { type: "string" },
  concurrency: { type: "string" },
  limit: { type: "string" },
  rate: { type: "string" },
  "max-attempts": { type: "string" },
  "max-errors": { type: "string" },
  "dry-run": { type: "boolean" },
  suppress: { type: "string" },
  preview: { type: "boolean" },
  json: { type: "boolean" },
  progress: { type: "string" },
  report: { type: "string" },
  "no-report": { type: "boolean" },
  force: { type: "boolean" },
  "retry-failed": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

/** Help text of `send`. */
export const SEND_HELP =
  `Usage: mass-mailer send <recipients.csv | -> --transport fake|smtp|gmail [options]

Sends one message to every row of the CSV (address in the first column unless --column).

Message:
  --from ADDR           sender, e.g. "Team <team@example.com>"
  --subject TEXT        subject; {{column}} merge fields allowed everywhere
  --text TEXT | --text-file FILE     the text body
  --html-file FILE      an HTML body too (multipart/alternative)
  --reply-to ADDR       Reply-To header
  --to-name TEXT        display name in To, e.g. "{{name}}"
  --config FILE         JSON with from, replyTo, toName, subject, text, textFile, html, htmlFile, headers

Recipients:
  --column NAME|N       address column by header name or 1-based index (default 1)
  --header-row auto|yes|no   is the first row a header? (default auto)
  --delimiter C         field delimiter (default ",")

Sending:
  --transport NAME      fake, smtp or gmail (required)
  --concurrency N       messages in flight at most (default: the transport's)
  --rate LIMITS         e.g. 100/s or 100/s,2000/d
  --max-attempts N      tries per message for transient failures (default 5)
  --max-errors N        pause after N consecutive failures (default off)
  --limit N             only the first N rows
  --suppress FILE       never mail these addresses (one a line, or a CSV's first column)
  --dry-run             render everything, send nothing
  --preview             print the first rendered message and exit

Report and resume:
  --report FILE         the per-row report, also the resume ledger (default: INPUT.report.csv
                        next to a file input; none for stdin unless given)
  --no-report           keep no report (no resume)
  --force               resume although the CSV or the message changed (rows are then
                        matched to the report by address: none is mailed twice)
  --retry-failed [transient|all]   send again the rows that failed: transient ones
                        (out of retries; the default) or all, permanent ones too
  Running the same command again resumes: rows with a final outcome in the report are skipped.

Output:
  --json                one JSON summary object on stdout
  --progress MODE       auto, bar, plain or none (default auto: bar on a terminal)
`;

type Flags = Record<string, string | boolean | string[] | undefined>;

/** `--retry-failed` may stand alone: give it its default value so parseArgs accepts it. */
function normaliseArgs(args: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--") {
      out.push(...args.slice(i));
      break;
    }
    if (a === "--retry-failed" && !["transient", "all"].includes(args[i + 1] ?? "")) {
      out.push("--retry-failed=transient");
    } else {
      out.push(a);
    }
  }
  return out;
}

/** Run `send` with its argv (after the word `send`). Returns the exit code. */
export async function sendCommand(args: string[], io: CliIo): Promise<number> {
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = {
    ...SEND_FLAGS,
  };
  for (const t of TRANSPORTS) Object.assign(options, t.flags);
  let parsed;
  try {
    parsed = parseArgs({
      args: normaliseArgs(args),
      options,
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    throw new CliError(`${describeArgsError(error)}; see mass-mailer send --help`, EXIT.USAGE);
  }
  const flags = parsed.values as Flags;
  if (flags.help) {
    io.stdout(SEND_HELP + transportHelp());
    return EXIT.OK;
  }
  if (parsed.positionals.length !== 1) {
    // `--retry-failed` takes an optional value; a wrong one reads as a second input.
    const at = args.indexOf("--retry-failed");
    const after = at < 0 ? undefined : args[at + 1];
    if (after !== undefined && parsed.positionals.includes(after)) {
      throw new CliError(
        `Invalid --retry-failed ${after}: use --retry-failed transient, --retry-failed all, ` +
          `or --retry-failed alone (transient)`,
        EXIT.USAGE,
      );
    }
    throw new CliError(
      "Give exactly one input: a CSV file, or - for stdin; see mass-mailer send --help",
      EXIT.USAGE,
    );
  }
  const path = parsed.positionals[0];
  const transportCli = pickTransport(flags);
  const template = await loadTemplate(flags);
  const recipients = recipientOptions(flags);
  const rate = flags.rate === undefined ? undefined : parseRate(String(flags.rate));
  const dryRun = flags["dry-run"] === true || flags.preview === true;
  const concurrency = optionalInt(flags, "concurrency", 1);
  const limit = optionalInt(flags, "limit", 0);
  const maxAttempts = optionalInt(flags, "max-attempts", 1);
  const maxErrors = optionalInt(flags, "max-errors", 0);
  const mode = String(flags.progress ?? "auto");
  if (!["auto", "bar", "plain", "none"].includes(mode)) {
    throw new CliError(`Invalid --progress ${mode}: use auto, bar, plain or none`, EXIT.USAGE);
  }
  const retryFailed = flags["retry-failed"] as RetryFailed | undefined;
  if (retryFailed !== undefined && retryFailed !== "transient" && retryFailed !== "all") {
    throw new CliError(`Invalid --retry-failed ${retryFailed}: use transient or all`, EXIT.USAGE);
  }
  const reportPath = chooseReport(flags, path, dryRun, io);
  const suppress = typeof flags.suppress === "string"
    ? await loadSuppression(flags.suppress)
    : undefined;

  const graceful = new AbortController();
  const hard = new AbortController();
  const input = await openInput(path, io);
  let ledger: Ledger | undefined;
  let transport: Transport;
  try {
    if (reportPath !== undefined) {
      ledger = await openReport(reportPath, path, {
        template,
        recipients,
        force: flags.force === true,
        retryFailed,
        transport: transportCli.name,
        onError: (e) => hard.abort(e),
      });
      describeResume(ledger, retryFailed, io);
    }
    transport = dryRun
      ? dryRunTransport(transportCli.name)
      : await transportCli.create({ flags, env: io.env, log: (l) => io.stderr(l + "\n") });
  } catch (error) {
    await ledger?.close();
    await input.close();
    throw error;
  }

  const unlisten = io.onSignal?.((count) => {
    if (count === 1) {
      io.stderr(
        "\nStopping: no new messages; waiting for those in flight (Ctrl-C again to abort)\n",
      );
      graceful.abort();
    } else {
      hard.abort(new Error("Aborted"));
    }
  });

  const hooks = ledger?.hooks(systemClock);
  let preview: Outgoing | undefined;
  let summary: CampaignSummary;
  let progress: { stop(): void } | undefined;
  try {
    const campaign = startCampaign({
      input: input.stream,
      template,
      transport,
      recipients: { ...recipients, sizeHint: input.size },
      concurrency,
      limit,
      rate,
      maxAttempts,
      maxErrors,
      suppress,
      dryRun,
      signal: graceful.signal,
      abortSignal: hard.signal,
      ...hooks,
      onStart: async (info) => {
        for (const warning of info.warnings) io.stderr(`mass-mailer: warning: ${warning}\n`);
        await hooks?.onStart(info);
        // Only now: a run refused before its first row (template, column) shows no progress line.
        if (mode !== "none" && !flags.preview) {
          progress = startProgress({
            stats: campaign.stats,
            elapsed: campaign.elapsed,
            input: () => ({ read: input.read(), total: input.size, parsed: campaign.parsed() }),
          }, {
            write: io.stderr,
            tty: mode === "bar" || (mode === "auto" && io.stderrIsTty),
          });
        }
      },
      onRendered: flags.preview
        ? (m) => {
          preview = m;
          return false;
        }
        : undefined,
    });
    summary = await campaign.done;
  } catch (error) {
    throw toCliError(error);
  } finally {
    progress?.stop();
    unlisten?.();
    await transport.close();
    await input.close();
    try {
      await ledger?.close();
    } catch {
      // Reported below through ledger.error.
    }
  }
  /** The report as the summary names it: none when it was just removed. */
  let shownReport = reportPath;
  if (ledger !== undefined && !ledger.resumed && summary.rows === 0) {
    // A first run that found no data rows sent nothing: leave no report behind, or the
    // next run on the completed file would be refused as a changed input.
    await Deno.remove(ledger.path).catch(() => {});
    shownReport = undefined;
  }

  if (flags.preview) {
    if (preview === undefined) {
      throw new CliError("Nothing to preview: the input has no valid recipient", EXIT.INPUT);
    }
    io.stderr(
      `Envelope: MAIL FROM:<${preview.from}> RCPT TO:<${preview.to}> (line ${preview.line})\n`,
    );
    io.stdout(new TextDecoder().decode(joinChunks(preview.data, preview.size)));
    return EXIT.OK;
  }

  const ctx = { transport: transportCli.name, report: shownReport };
  const all = ledger?.counts();
  // The exit code first, so that --json can carry it (and the error that goes with it).
  let code: number;
  let failure: CliError | undefined;
  if (ledger?.error !== undefined) {
    code = EXIT.INCOMPLETE;
  } else {
    try {
      code = exitCode(summary, recipients, { path, limit, report: shownReport });
      if (code === EXIT.OK && (all?.failed ?? 0) > 0) code = EXIT.FAILED_ROWS;
    } catch (error) {
      if (!(error instanceof CliError)) throw error;
      failure = error;
      code = error.code;
    }
  }
  if (flags.json) {
    const json: Record<string, unknown> = {
      ...summaryJson(summary, ctx),
      ...(all === undefined || shownReport === undefined ? {} : { report: shownReport, all }),
      exitCode: code,
    };
    const why = failure?.message ?? ledger?.error?.message;
    if (why !== undefined) json.error = why;
    io.stdout(JSON.stringify(json) + "\n");
    if (failure !== undefined) failure.inJson = true;
  }
  io.stderr(summaryText(summary, ctx) + "\n");
  if (ledger !== undefined && all !== undefined && ledger.resumed) {
    io.stderr(`All runs so far: ${describeCounts(all)}\n`);
  }
  if (ledger?.error !== undefined) {
    io.stderr(`mass-mailer: ${ledger.error.message}\n`);
    return code;
  }
  if (summary.error instanceof SyntaxError && shownReport !== undefined) {
    io.stderr(
      `Fix the file at that line, then run the same command with --force to continue ` +
        `(rows already sent are matched by address and not sent again)\n`,
    );
  }
  if (failure !== undefined) throw failure;
  return code;
}

/**
 * parseArgs' message for a bad command line. For an unknown option its advice
 * (put it after "--" as a positional) is dropped, as it never helps here; an
 * option that looks like a secret gets told where secrets go instead.
 */
function describeArgsError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const name = /^Unknown option '([^']+)'/.exec(message)?.[1];
  if (name === undefined) return message;
  if (/pass|secret|token/i.test(name)) {
    return `Unknown option '${name}': secrets are never taken from the command line, ` +
      `only from environment variables or files (each transport's options say which)`;
  }
  return `Unknown option '${name}'`;
}

/** The report path: --report, else next to a file input; none for stdin, dry runs or --no-report. */
function chooseReport(flags: Flags, path: string, dryRun: boolean, io: CliIo): string | undefined {
  const needs = flags.force ? "--force" : flags["retry-failed"] ? "--retry-failed" : undefined;
  if (flags["no-report"]) {
    if (flags.report !== undefined) {
      throw new CliError("Give either --report FILE or --no-report, not both", EXIT.USAGE);
    }
    if (needs) throw new CliError(`${needs} needs a report; drop --no-report`, EXIT.USAGE);
    return undefined;
  }
  if (dryRun) return undefined;
  if (typeof flags.report === "string") {
    if (flags.report === "" || flags.report === "-") {
      throw new CliError("Invalid --report: give a file path", EXIT.USAGE);
    }
    return flags.report;
  }
  if (path === "-") {
    if (needs) {
      throw new CliError(
        `${needs} needs the report of the earlier run: give --report FILE`,
        EXIT.USAGE,
      );
    }
    io.stderr(
      "No report is kept for stdin, so this run cannot be resumed; give --report FILE to keep one\n",
    );
    return undefined;
  }
  let regular = true;
  try {
    regular = Deno.statSync(path).isFile;
  } catch {
    // Missing or unreadable: opening the input says so.
  }
  if (!regular) {
    // A device, pipe or process substitution: a report beside it makes no sense.
    if (needs) {
      throw new CliError(
        `${needs} needs the report of the earlier run: give --report FILE`,
        EXIT.USAGE,
      );
    }
    io.stderr(
      `No report is kept for ${path} (not a regular file); give --report FILE to keep one\n`,
    );
    return undefined;
  }
  return `${path}.report.csv`;
}

interface ReportSetup {
  readonly template: unknown;
  readonly recipients: RecipientOptions;
  readonly force: boolean;
  readonly retryFailed: RetryFailed | undefined;
  readonly transport: string;
  readonly onError: (error: LedgerError) => void;
}

/** Fingerprint the input and the message, then open the ledger; errors become one-line CLI errors. */
async function openReport(report: string, input: string, setup: ReportSetup): Promise<Ledger> {
  let inputFingerprint: string | undefined;
  if (input !== "-") {
    try {
      if ((await Deno.stat(input)).isFile) inputFingerprint = await fingerprintFile(input);
    } catch (error) {
      throw new CliError(`Cannot read ${where(input)}: ${describeFsError(error)}`, EXIT.INPUT);
    }
  }
  const { column, header, delimiter } = setup.recipients;
  const template = fingerprintTemplate({ template: setup.template, column, header, delimiter });
  try {
    return await openLedger(report, {
      fingerprint: { input: inputFingerprint, template },
      force: setup.force,
      retryFailed: setup.retryFailed,
      onError: setup.onError,
      info: { transport: setup.transport },
    });
  } catch (error) {
    if (error instanceof LedgerError && error.kind === "foreign") {
      // The file named as the report (or its default) is something else: say how to go on.
      throw new CliError(`${error.message}: choose another --report file`, EXIT.USAGE, {
        cause: error,
      });
    }
    throw toCliError(error);
  }
}

function describeCounts(c: LedgerCounts): string {
  const transient = c.failedTransient ? ` (${formatInt(c.failedTransient)} of them transient)` : "";
  const parts = [
    `${formatInt(c.sent)} sent`,
    `${formatInt(c.failed)} failed${transient}`,
    `${formatInt(c.invalid)} invalid`,
    `${formatInt(c.duplicate)} duplicates`,
  ];
  if (c.suppressed) parts.push(`${formatInt(c.suppressed)} suppressed`);
  return parts.join(", ");
}

function describeResume(ledger: Ledger, retryFailed: RetryFailed | undefined, io: CliIo): void {
  const t = ledger.tookOver;
  if (t !== undefined) {
    io.stderr(`Took over the lock of process ${t.pid} on ${t.host}, which is no longer running\n`);
  }
  if (!ledger.resumed) return;
  const b = ledger.before;
  const done = b.sent + b.failed + b.invalid + b.duplicate + b.suppressed;
  let again = "";
  if (retryFailed === "all") again = `; sending the ${formatInt(b.failed)} failed rows again`;
  else if (retryFailed) {
    again = `; sending the ${formatInt(b.failedTransient)} transiently failed rows again`;
  }
  io.stderr(
    `Resuming from ${ledger.path}: ${formatInt(done)} rows already have an outcome ` +
      `(${describeCounts(b)})${again}\n`,
  );
}

/** Map a finished run to its exit code (see EXIT). */
function exitCode(
  s: CampaignSummary,
  recipients: RecipientOptions,
  input: { path: string; limit?: number; report?: string },
): number {
  if (s.status === "failed") {
    if (s.error instanceof TransportError) return EXIT.TRANSPORT;
    if (s.error instanceof LedgerError) return s.error.kind === "io" ? EXIT.INCOMPLETE : EXIT.INPUT;
    if (s.error instanceof SyntaxError) return EXIT.INPUT;
    return EXIT.TRANSPORT;
  }
  if (s.status !== "finished") return EXIT.INCOMPLETE;
  const empty = emptyRun(s, input.limit);
  if (empty === "no_rows") {
    throw new CliError(
      `Nothing to send: ${input.path === "-" ? "stdin" : input.path} has no data rows ` +
        `(it is empty or holds only a header row)`,
      EXIT.INPUT,
    );
  }
  if (empty === "no_valid_addresses") {
    const column = recipients.column ?? 1;
    throw new CliError(
      `0 valid addresses in column ${column} of ${s.rows} rows: check --column and --delimiter` +
        (input.report ? ` (${input.report} lists each row's reason)` : ""),
      EXIT.INPUT,
    );
  }
  return s.failed > 0 ? EXIT.FAILED_ROWS : EXIT.OK;
}

function recipientOptions(flags: Flags): RecipientOptions {
  const out: { column?: string | number; header?: boolean | "auto"; delimiter?: string } = {};
  if (typeof flags.column === "string") {
    out.column = /^\d+$/.test(flags.column) ? Number(flags.column) : flags.column;
  }
  const header = flags["header-row"];
  if (header !== undefined) {
    const map: Record<string, boolean | "auto"> = { auto: "auto", yes: true, no: false };
    if (!(String(header) in map)) {
      throw new CliError(`Invalid --header-row ${header}: use auto, yes or no`, EXIT.USAGE);
    }
    out.header = map[String(header)];
  }
  if (typeof flags.delimiter === "string") {
    out.delimiter = flags.delimiter === "\\t" || flags.delimiter === "tab" ? "\t" : flags.delimiter;
  }
  return out;
}

function optionalInt(flags: Flags, name: string, min: number): number | undefined {
  const v = flags[name];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== "string" || !/^\d+$/.test(v.trim()) || n < min) {
    throw new CliError(
      `Invalid --${name} ${JSON.stringify(v)}: use a whole number >= ${min}`,
      EXIT.USAGE,
    );
  }
  return n;
}

interface Input {
  readonly stream: AsyncIterable<Uint8Array>;
  readonly size?: number;
  read(): number;
  close(): Promise<void>;
}

async function openInput(path: string, io: CliIo): Promise<Input> {
  let source: ReadableStream<Uint8Array>;
  let size: number | undefined;
  let file: Deno.FsFile | undefined;
  if (path === "-") {
    source = io.stdin();
  } else {
    try {
      file = await Deno.open(path, { read: true });
      const info = await file.stat();
      if (info.isDirectory) throw new Deno.errors.IsADirectory(path);
      if (info.isFile) size = info.size;
    } catch (error) {
      file?.close();
      throw new CliError(`Cannot read ${where(path)}: ${describeFsError(error)}`, EXIT.INPUT);
    }
    if (size === 0) {
      file.close();
      throw new CliError(`Nothing to send: ${path} is empty`, EXIT.INPUT);
    }
    source = file.readable;
  }
  let read = 0;
  /** Count bytes, and ask for the next chunk before handing out this one: the disk read
   * overlaps with parsing, and at most one chunk (64 KiB) is read ahead. */
  async function* counted(): AsyncGenerator<Uint8Array> {
    const reader = source.getReader();
    let next = reader.read();
    try {
      while (true) {
        const r = await next;
        if (r.done) return;
        next = reader.read();
        read += r.value.length;
        yield r.value;
      }
    } finally {
      next.catch(() => {}); // a read still pending when the consumer stops early
      reader.releaseLock();
    }
  }
  return {
    stream: counted(),
    size,
    read: () => read,
    async close() {
      try {
        await source.cancel();
      } catch {
        // Already closed or consumed.
      }
    },
  };
}

/** Stands in for the transport in `--dry-run` and `--preview`: the engine never calls it. */
function dryRunTransport(name: string): Transport {
  return {
    name,
    maxBatch: 1000,
    defaultConcurrency: 1000,
    send() {
      return Promise.reject(new Error("Dry run: nothing may be sent"));
    },
    close: () => Promise.resolve(),
  };
}

function transportHelp(): string {
  return TRANSPORTS.map((t) => `\nTransport ${t.name}:\n${t.help}\n`).join("");
}

/** Turn what the engine or a transport threw into a one-line CLI error. */
export function toCliError(error: unknown): CliError {
  if (error instanceof CliError) return error;
  if (error instanceof TransportError) {
    return new CliError(error.message, EXIT.TRANSPORT, { cause: error });
  }
  if (error instanceof SyntaxError) {
    return new CliError(error.message, EXIT.INPUT, { cause: error });
  }
  if (error instanceof LockError) return new CliError(error.message, EXIT.USAGE, { cause: error });
  if (error instanceof LedgerError) {
    const code = error.kind === "io"
      ? EXIT.INCOMPLETE
      : error.kind === "foreign"
      ? EXIT.USAGE
      : EXIT.INPUT;
    return new CliError(error.message, code, { cause: error });
  }
  if (error instanceof TypeError || error instanceof RangeError) {
    return new CliError(error.message, EXIT.USAGE, { cause: error });
  }
  if (error instanceof Error && /Template|Compose/.test(error.name)) {
    return new CliError(error.message, EXIT.USAGE, { cause: error });
  }
  const message = error instanceof Error ? error.message : String(error);
  return new CliError(`Unexpected error: ${message}`, EXIT.TRANSPORT, { cause: error });
}

/** `path`, and for a relative one the directory it was looked for in: `list.csv (in /home/ann)`. */
function where(path: string): string {
  return path.startsWith("/") || /^[A-Za-z]:[\\/]/.test(path) ? path : `${path} (in ${Deno.cwd()})`;
}
