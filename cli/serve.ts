/**
 * `mass-mailer serve`: run the HTTP service (server.ts) on `Deno.serve`.
 *
 * The bearer token comes from `MASS_MAILER_TOKEN` or `--token-file`, never
 * from argv. Without one the server refuses to start, unless `--no-auth` is
 * given and it listens on a loopback address.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { parseRate } from "../core/rate.ts";
import type { MessageTemplate } from "../core/template.ts";
import { createApp } from "../server/app.ts";
import { createIdempotencyStore } from "../server/idempotency.ts";
import { DEFAULT_MAX_BODY_BYTES } from "../server/service.ts";
import { CliError, EXIT } from "./exit_codes.ts";
import type { CliIo } from "./io.ts";
import { describeFsError, loadTemplate, MESSAGE_FLAG_SPECS } from "./message_flags.ts";
import { pickTransport, TRANSPORTS } from "./transports.ts";

/** Default port of `mass-mailer serve`. */
export const DEFAULT_PORT = 8787;

/** The flags of `serve` that are not a transport's own. */
export const SERVE_FLAGS = {
  transport: { type: "string", short: "t" },
  port: { type: "string", short: "p" },
  hostname: { type: "string" },
  "token-file": { type: "string" },
  "no-auth": { type: "boolean" },
  "max-body": { type: "string" },
  "max-runs": { type: "string" },
  "progress-interval": { type: "string" },
  "body-timeout": { type: "string" },
  "idempotency-dir": { type: "string" },
  ...MESSAGE_FLAG_SPECS,
  concurrency: { type: "string" },
  rate: { type: "string" },
  "max-attempts": { type: "string" },
  "max-errors": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

/** Help text of `serve`. */
export const SERVE_HELP = `Usage: mass-mailer serve --transport fake|smtp|gmail [options]

Runs the HTTP service: POST /v1/send (CSV in, NDJSON progress out), GET /healthz, GET /metrics.

Listening:
  --port N              TCP port (default ${DEFAULT_PORT}; 0 picks a free one)
  --hostname H          address to bind (default 127.0.0.1)
  --token-file FILE     bearer token in a file (or env MASS_MAILER_TOKEN); required
  --no-auth             no token; only allowed on a loopback address

Limits:
  --max-body SIZE       largest request body, e.g. 100MB, 512KB, 1GB (default 100MB)
  --max-runs N          campaigns at once; more get 429 (default 4)
  --progress-interval MS   time between NDJSON progress lines (default 1000)
  --body-timeout S      give up on an upload that sends nothing for S seconds (default 60)
  --idempotency-dir DIR    where Idempotency-Key ledgers live (default .mass-mailer/requests)

Default message (for text/csv requests; a multipart "message" part overrides it):
  --from, --subject, --text, --text-file, --html-file, --reply-to, --to-name, --config
                        as for mass-mailer send

Sending (per campaign):
  --concurrency N  --rate LIMITS  --max-attempts N  --max-errors N   as for mass-mailer send
`;

type Flags = Record<string, string | boolean | string[] | undefined>;

const MESSAGE_FLAGS = [
  "config",
  "from",
  "reply-to",
  "to-name",
  "subject",
  "text",
  "text-file",
  "html-file",
];

/** Run `serve` with its argv (after the word `serve`). Resolves with the exit code after shutdown. */
export async function serveCommand(args: string[], io: CliIo): Promise<number> {
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = {
    ...SERVE_FLAGS,
  };
  for (const t of TRANSPORTS) Object.assign(options, t.flags);
  let parsed;
  try {
    parsed = parseArgs({ args, options, allowPositionals: false, strict: true });
  } catch (error) {
    throw new CliError(`${(error as Error).message}; see mass-mailer serve --help`, EXIT.USAGE);
  }
  const flags = parsed.values as Flags;
  if (flags.help) {
    io.stdout(SERVE_HELP + TRANSPORTS.map((t) => `\nTransport ${t.name}:\n${t.help}\n`).join(""));
    return EXIT.OK;
  }
  const transportCli = pickTransport(flags);
  const hostname = String(flags.hostname ?? "127.0.0.1");
  const port = wholeFlag(flags, "port", 0, 65535) ?? DEFAULT_PORT;
  const token = await readToken(flags, io);
  if (token === undefined && !flags["no-auth"]) {
    throw new CliError(
      "No auth token: set MASS_MAILER_TOKEN or --token-file FILE " +
        "(or --no-auth, only on a loopback address)",
      EXIT.USAGE,
    );
  }
  if (token !== undefined && flags["no-auth"]) {
    throw new CliError("Give a token or --no-auth, not both", EXIT.USAGE);
  }
  if (token === undefined && !isLoopback(hostname)) {
    throw new CliError(
      `Refusing --no-auth on ${hostname}: without a token the server listens only on a loopback ` +
        "address (127.0.0.1, ::1, localhost)",
      EXIT.USAGE,
    );
  }
  let message: MessageTemplate | undefined;
  if (MESSAGE_FLAGS.some((f) => flags[f] !== undefined)) message = await loadTemplate(flags);
  const log = (line: string) => io.stderr(line + "\n");
  const ctx = { flags, env: io.env, log };
  // Build one transport now so bad transport flags fail at start, not on the first request.
  try {
    await (await transportCli.create(ctx)).close();
  } catch (error) {
    if (error instanceof TypeError || error instanceof RangeError) {
      throw new CliError(error.message, EXIT.USAGE);
    }
    throw new CliError(
      `Cannot set up the ${transportCli.name} transport: ${(error as Error).message}`,
      EXIT.TRANSPORT,
    );
  }
  let app;
  const idempotencyDir = String(flags["idempotency-dir"] ?? ".mass-mailer/requests");
  try {
    app = createApp({
      transport: { name: transportCli.name, create: () => transportCli.create(ctx) },
      token,
      auth: token === undefined ? "none" : "bearer",
      message,
      maxBodyBytes: flags["max-body"] === undefined
        ? DEFAULT_MAX_BODY_BYTES
        : parseSize(String(flags["max-body"])),
      maxRuns: wholeFlag(flags, "max-runs", 1),
      progressIntervalMs: wholeFlag(flags, "progress-interval", 1),
      bodyIdleTimeoutMs: secondsFlag(flags, "body-timeout"),
      idempotency: createIdempotencyStore(idempotencyDir),
      run: {
        concurrency: wholeFlag(flags, "concurrency", 1),
        rate: flags.rate === undefined ? undefined : parseRate(String(flags.rate)),
        maxAttempts: wholeFlag(flags, "max-attempts", 1),
        maxErrors: wholeFlag(flags, "max-errors", 0),
      },
      log,
    });
  } catch (error) {
    if (error instanceof TypeError || error instanceof RangeError) {
      throw new CliError(error.message, EXIT.USAGE);
    }
    throw error;
  }
  // A directory that cannot hold ledgers would only show at the first keyed request (as a 500).
  try {
    await Deno.mkdir(idempotencyDir, { recursive: true });
    const probe = `${idempotencyDir}/.probe-${Deno.pid}`;
    await Deno.writeTextFile(probe, "");
    await Deno.remove(probe);
  } catch (error) {
    throw new CliError(
      `Cannot keep Idempotency-Key ledgers in --idempotency-dir ${idempotencyDir}: ` +
        `${describeFsError(error)}`,
      EXIT.USAGE,
    );
  }

  const stopped = Promise.withResolvers<void>();
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({
      hostname,
      port,
      onListen(addr) {
        const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
        io.stderr(
          `mass-mailer serve: listening on http://${host}:${addr.port}/ ` +
            `(transport ${transportCli.name}, ${
              token === undefined ? "no auth" : "bearer token"
            })\n`,
        );
      },
    }, app.fetch);
  } catch (error) {
    throw new CliError(
      `Cannot listen on ${hostname}:${port}: ${(error as Error).message}`,
      EXIT.USAGE,
    );
  }
  const unlisten = io.onSignal?.((count) => {
    if (count === 1) {
      io.stderr(
        "mass-mailer serve: stopping: no new runs; running ones finish their in-flight messages " +
          "(signal again to abort them)\n",
      );
      stopped.resolve();
    } else {
      io.stderr("mass-mailer serve: stopping now: in-flight sends are aborted\n");
      app.service.abort();
    }
  });
  await Promise.race([stopped.promise, server.finished]);
  await app.service.shutdown();
  // A client that keeps an upload open after its answer must not hold the exit up.
  let grace: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    server.shutdown(),
    new Promise((resolve) => grace = setTimeout(resolve, 5000)),
  ]);
  clearTimeout(grace);
  unlisten?.();
  return EXIT.OK;
}

/** `100MB`, `512KB`, `1GB`, `64MiB` or plain bytes -> bytes (KB = 1024 bytes). */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?\s*$/i.exec(text);
  if (m === null) {
    throw new CliError(
      `Invalid size ${JSON.stringify(text)}: write e.g. 100MB, 512KB or 1GB`,
      EXIT.USAGE,
    );
  }
  const unit = (m[2] ?? "b").toLowerCase()[0];
  const scale = unit === "k" ? 1024 : unit === "m" ? 1024 ** 2 : unit === "g" ? 1024 ** 3 : 1;
  return Math.floor(Number(m[1]) * scale);
}

/** True for 127.0.0.0/8, ::1 and localhost. */
export function isLoopback(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

async function readToken(flags: Flags, io: CliIo): Promise<string | undefined> {
  const file = flags["token-file"];
  if (typeof file === "string") {
    let text;
    try {
      text = await Deno.readTextFile(file);
    } catch (error) {
      throw new CliError(`Cannot read --token-file ${file}: ${describeFsError(error)}`, EXIT.USAGE);
    }
    const token = text.trim();
    if (token === "") throw new CliError(`--token-file ${file} is empty`, EXIT.USAGE);
    return token;
  }
  const env = io.env("MASS_MAILER_TOKEN");
  return env === undefined || env.trim() === "" ? undefined : env.trim();
}

function secondsFlag(flags: Flags, name: string): number | undefined {
  const s = wholeFlag(flags, name, 1);
  return s === undefined ? undefined : s * 1000;
}

function wholeFlag(
  flags: Flags,
  name: string,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number | undefined {
  const v = flags[name];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== "string" || !/^\d+$/.test(v.trim()) || n < min || n > max) {
    throw new CliError(
      `Invalid --${name} ${JSON.stringify(v)}: use a whole number from ${min} to ${max}`,
      EXIT.USAGE,
    );
  }
  return n;
}
