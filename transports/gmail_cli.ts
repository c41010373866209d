/**
 * The Gmail transport's command-line flags (`--transport gmail`) and the
 * `mass-mailer gmail login` subcommand.
 *
 * Secrets come from files or the environment, never from argv:
 * `--gmail-credentials FILE` / `GMAIL_CREDENTIALS` (refresh token, as written
 * by `gmail login`), `--gmail-service-account FILE` / `GMAIL_SERVICE_ACCOUNT`
 * (a service account key), or `GMAIL_CLIENT_ID`, `GMAIL_CLIENT_SECRET` and
 * `GMAIL_REFRESH_TOKEN`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  createGmailTransport,
  DEFAULT_BATCH,
  DEFAULT_DAILY,
  DEFAULT_RATE,
  GmailError,
  MAX_BATCH,
} from "./gmail.ts";
import { loginInstalledApp } from "./gmail/login.ts";
import {
  type GmailCredentials,
  readJsonFile,
  refreshCredentialsFromJson,
  serviceAccountFromJson,
} from "./gmail/oauth.ts";
import type { TransportCli, TransportContext } from "./transport_cli.ts";

/** Exit codes of `gmail login` (the CLI's own meanings: ok, usage, transport). */
const EXIT_OK = 0;
const EXIT_USAGE = 2;
const EXIT_TRANSPORT = 4;

/** Default file `gmail login` writes and `--gmail-credentials` names in messages. */
export const DEFAULT_CREDENTIALS_FILE = "gmail-credentials.json";

type Flags = TransportContext["flags"];

function stringFlag(flags: Flags, name: string): string | undefined {
  const v = flags[name];
  if (v === undefined) return undefined;
  if (Array.isArray(v)) return v.join(",");
  if (typeof v !== "string") throw new TypeError(`--${name} needs a value`);
  return v;
}

function wholeFlag(flags: Flags, name: string): number | undefined {
  const v = stringFlag(flags, name);
  if (v === undefined) return undefined;
  if (!/^\s*\d+\s*$/.test(v)) {
    throw new RangeError(`Invalid --${name} ${JSON.stringify(v)}: use a whole number`);
  }
  return Number(v);
}

/** Where the credentials come from: flags first, then the environment. */
async function resolveCredentials(
  flags: Flags,
  env: (name: string) => string | undefined,
): Promise<{ credentials: GmailCredentials; source: string }> {
  const accountFile = stringFlag(flags, "gmail-service-account") ?? env("GMAIL_SERVICE_ACCOUNT");
  const credsFile = stringFlag(flags, "gmail-credentials") ?? env("GMAIL_CREDENTIALS");
  if (stringFlag(flags, "gmail-service-account") && stringFlag(flags, "gmail-credentials")) {
    throw new TypeError("Give either --gmail-service-account or --gmail-credentials, not both");
  }
  if (accountFile && !stringFlag(flags, "gmail-credentials")) {
    const json = await readJsonFile(accountFile);
    return { credentials: serviceAccountFromJson(json, accountFile), source: accountFile };
  }
  if (credsFile) {
    const json = await readJsonFile(credsFile);
    return { credentials: refreshCredentialsFromJson(json, credsFile), source: credsFile };
  }
  const clientId = env("GMAIL_CLIENT_ID");
  const clientSecret = env("GMAIL_CLIENT_SECRET");
  const refreshToken = env("GMAIL_REFRESH_TOKEN");
  if (clientId && clientSecret && refreshToken) {
    return {
      credentials: { kind: "refresh-token", clientId, clientSecret, refreshToken },
      source: "the environment (GMAIL_CLIENT_ID, GMAIL_CLIENT_SECRET, GMAIL_REFRESH_TOKEN)",
    };
  }
  throw new TypeError(
    "No Gmail credentials: pass --gmail-credentials FILE (written by `mass-mailer gmail login`) or --gmail-service-account FILE, or set GMAIL_CLIENT_ID, GMAIL_CLIENT_SECRET and GMAIL_REFRESH_TOKEN",
  );
}

const LOGIN_HELP = `Usage: mass-mailer gmail login [options]

Signs in to Google in a browser (OAuth2 with PKCE, redirect to 127.0.0.1) and
stores a refresh token for sending, in a file only you can read (mode 0600).

  --gmail-client-secret FILE  the OAuth client JSON of a "Desktop app" client
                              (or set GMAIL_CLIENT_ID and GMAIL_CLIENT_SECRET)
  --gmail-credentials FILE    where to store the refresh token (default ${DEFAULT_CREDENTIALS_FILE})
  --gmail-login-port N        loopback port to listen on (default: any free port)
  --gmail-login-timeout S     give up after S seconds (default 300)
  --gmail-auth-url URL        consent screen (default Google's)
  --gmail-token-url URL       token endpoint (default Google's)
`;

async function loginCommand(
  args: string[],
  ctx: Omit<TransportContext, "flags">,
): Promise<number> {
  let flags: Flags;
  try {
    flags = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        "gmail-client-secret": { type: "string" },
        "gmail-credentials": { type: "string" },
        "gmail-login-port": { type: "string" },
        "gmail-login-timeout": { type: "string" },
        "gmail-auth-url": { type: "string" },
        "gmail-token-url": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }).values;
  } catch (err) {
    ctx.log(`${(err as Error).message}; see mass-mailer gmail login --help`);
    return EXIT_USAGE;
  }
  if (flags.help) {
    ctx.log(LOGIN_HELP.trimEnd());
    return EXIT_OK;
  }
  let clientId = ctx.env("GMAIL_CLIENT_ID");
  let clientSecret = ctx.env("GMAIL_CLIENT_SECRET");
  const out = stringFlag(flags, "gmail-credentials") ?? DEFAULT_CREDENTIALS_FILE;
  let port: number | undefined;
  let timeoutS: number | undefined;
  try {
    const secretFile = stringFlag(flags, "gmail-client-secret");
    if (secretFile) {
      const json = await readJsonFile(secretFile) as Record<string, unknown>;
      const app = (json?.installed ?? json?.web) as Record<string, unknown> | undefined;
      if (!app || typeof app.client_id !== "string" || typeof app.client_secret !== "string") {
        throw new TypeError(
          `${secretFile} is not an OAuth client file: download the JSON of a "Desktop app" client from the Google Cloud console (APIs & Services > Credentials)`,
        );
      }
      clientId = app.client_id;
      clientSecret = app.client_secret;
    }
    if (!clientId || !clientSecret) {
      throw new TypeError(
        "Gmail login needs an OAuth client: pass --gmail-client-secret FILE or set GMAIL_CLIENT_ID and GMAIL_CLIENT_SECRET",
      );
    }
    port = wholeFlag(flags, "gmail-login-port");
    if (port !== undefined && port > 65535) {
      throw new RangeError(`Invalid --gmail-login-port ${port}`);
    }
    timeoutS = wholeFlag(flags, "gmail-login-timeout");
  } catch (err) {
    ctx.log((err as Error).message);
    return EXIT_USAGE;
  }
  try {
    const result = await loginInstalledApp({
      clientId,
      clientSecret,
      out,
      ...(port !== undefined ? { port } : {}),
      ...(timeoutS !== undefined ? { timeoutMs: timeoutS * 1000 } : {}),
      ...(stringFlag(flags, "gmail-auth-url")
        ? { authUrl: stringFlag(flags, "gmail-auth-url") }
        : {}),
      ...(stringFlag(flags, "gmail-token-url")
        ? { tokenUrl: stringFlag(flags, "gmail-token-url") }
        : {}),
      onUrl(url) {
        ctx.log("Open this URL in a browser and allow mass-mailer to send email as you:");
        ctx.log(`  ${url}`);
        ctx.log("Waiting for Google to redirect back to this machine...");
      },
    });
    ctx.log(`Saved the refresh token to ${result.file} (readable only by you).`);
    ctx.log(
      `Send with: mass-mailer send FILE.csv --transport gmail --gmail-credentials ${result.file}`,
    );
    return EXIT_OK;
  } catch (err) {
    ctx.log((err as Error).message);
    return err instanceof TypeError || err instanceof RangeError ? EXIT_USAGE : EXIT_TRANSPORT;
  }
}

/** `--transport gmail`: the Gmail API, batched, OAuth2, quota-aware. */
export const gmailCli: TransportCli = {
  name: "gmail",
  flags: {
    "gmail-batch-size": { type: "string" },
    "gmail-user": { type: "string", multiple: true },
    "gmail-credentials": { type: "string" },
    "gmail-service-account": { type: "string" },
    "gmail-rate": { type: "string" },
    "gmail-daily": { type: "string" },
    "gmail-api-url": { type: "string" },
    "gmail-token-url": { type: "string" },
  },
  help: [
    `  --gmail-batch-size N          messages per batch request, 1..${MAX_BATCH} (default ${DEFAULT_BATCH})`,
    "  --gmail-user A,B              mailboxes to send as (service account: required; default: the token's own)",
    "  --gmail-credentials FILE      refresh-token JSON from `mass-mailer gmail login` (or env GMAIL_CREDENTIALS)",
    "  --gmail-service-account FILE  service account key with domain-wide delegation (or env GMAIL_SERVICE_ACCOUNT)",
    `  --gmail-rate RATE             per-mailbox rate, e.g. 60/min for new projects (default ${DEFAULT_RATE})`,
    `  --gmail-daily N               per-mailbox cap per rolling 24 h (default ${DEFAULT_DAILY})`,
    "  --gmail-api-url URL           API root (default https://gmail.googleapis.com)",
    "  --gmail-token-url URL         OAuth2 token endpoint (default https://oauth2.googleapis.com/token)",
  ].join("\n"),
  async create({ flags, env, log }) {
    // Cheap checks first, so a bad value is refused before any file is read or request made.
    const batchSize = wholeFlag(flags, "gmail-batch-size");
    if (batchSize !== undefined && (batchSize < 1 || batchSize > MAX_BATCH)) {
      throw new RangeError(
        `Invalid --gmail-batch-size ${batchSize}: Gmail allows 1 to ${MAX_BATCH} calls per batch request (${DEFAULT_BATCH} is advised)`,
      );
    }
    const daily = wholeFlag(flags, "gmail-daily");
    const rate = stringFlag(flags, "gmail-rate");
    const users = (stringFlag(flags, "gmail-user") ?? "").split(",").map((u) => u.trim()).filter((
      u,
    ) => u !== "");
    const { credentials, source } = await resolveCredentials(flags, env);
    try {
      return createGmailTransport({
        credentials,
        credentialsSource: source,
        users,
        log,
        ...(batchSize !== undefined ? { batchSize } : {}),
        ...(daily !== undefined ? { daily } : {}),
        ...(rate !== undefined ? { rate } : {}),
        ...(stringFlag(flags, "gmail-api-url")
          ? { apiUrl: stringFlag(flags, "gmail-api-url") }
          : {}),
        ...(stringFlag(flags, "gmail-token-url")
          ? { tokenUrl: stringFlag(flags, "gmail-token-url") }
          : {}),
      });
    } catch (err) {
      if (err instanceof GmailError) throw err;
      const e = err as Error;
      const flag = /rate/i.test(e.message) && rate !== undefined && /Invalid rate/.test(e.message)
        ? "--gmail-rate: "
        : "";
      throw new (err instanceof RangeError ? RangeError : TypeError)(flag + e.message);
    }
  },
  commands: { login: loginCommand },
};
