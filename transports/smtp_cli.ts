/**
 * The SMTP transport's command-line flags (`--smtp-*`). Secrets never come
 * from argv: only from environment variables or files they name.
 *
 * @module
 */
import { createSmtpTransport, type SmtpAuth, type SmtpOptions, type SmtpTlsMode } from "./smtp.ts";
import { SMTP_DEFAULTS } from "./smtp/options.ts";
import type { TransportCli, TransportContext } from "./transport_cli.ts";

/** Environment variables the SMTP transport reads. */
export const SMTP_ENV = {
  /** The password (for Gmail: an app password). */
  password: "MASS_MAILER_SMTP_PASSWORD",
  /** A file holding the password (trailing newline ignored). */
  passwordFile: "MASS_MAILER_SMTP_PASSWORD_FILE",
  /** An OAuth2 access token for XOAUTH2. */
  oauthToken: "MASS_MAILER_SMTP_OAUTH_TOKEN",
  /** A file holding the access token; read again for every new connection, so a refresher can rewrite it. */
  oauthTokenFile: "MASS_MAILER_SMTP_OAUTH_TOKEN_FILE",
} as const;

const TLS_MODES: readonly SmtpTlsMode[] = ["implicit", "starttls", "none"];
const AUTH_METHODS = { plain: "PLAIN", login: "LOGIN", xoauth2: "XOAUTH2" } as const;

/** `--transport smtp`: a pooled, pipelined SMTP client with TLS and AUTH. */
export const smtpCli: TransportCli = {
  name: "smtp",
  flags: {
    "smtp-host": { type: "string" },
    "smtp-port": { type: "string" },
    "smtp-tls": { type: "string" },
    "smtp-ca": { type: "string" },
    "smtp-user": { type: "string" },
    "smtp-auth": { type: "string" },
    "smtp-name": { type: "string" },
    "smtp-connections": { type: "string" },
    "smtp-max-messages": { type: "string" },
    "smtp-connect-timeout": { type: "string" },
    "smtp-greeting-timeout": { type: "string" },
    "smtp-command-timeout": { type: "string" },
    "smtp-data-timeout": { type: "string" },
    "smtp-no-pipelining": { type: "boolean" },
    "smtp-debug": { type: "boolean" },
  },
  help: [
    "  --smtp-host HOST            SMTP server (required); its certificate must match it",
    "  --smtp-port N               default 465 for implicit TLS, 587 for starttls, 25 for none",
    "  --smtp-tls MODE             implicit | starttls | none (default: implicit on port 465, else starttls)",
    "  --smtp-ca FILE              extra trusted CA certificate(s), PEM (private CA, test server)",
    "  --smtp-user NAME            log in as NAME; the secret comes from the environment:",
    `                              ${SMTP_ENV.password} or ${SMTP_ENV.passwordFile},`,
    `                              or ${SMTP_ENV.oauthToken} or ${SMTP_ENV.oauthTokenFile} (XOAUTH2)`,
    "  --smtp-auth METHOD          plain | login | xoauth2 (default: xoauth2 with a token, else plain, else login)",
    "  --smtp-name NAME            EHLO name (default: this host's FQDN, else its address literal)",
    `  --smtp-connections N        connections in the pool (default ${SMTP_DEFAULTS.connections})`,
    `  --smtp-max-messages N       messages per connection before reconnecting, or "unlimited" (default ${SMTP_DEFAULTS.maxMessages})`,
    `  --smtp-connect-timeout T    TCP connect + TLS handshake (default ${
      SMTP_DEFAULTS.connectTimeout / 1000
    }s); T is ms or 30s, 2m`,
    `  --smtp-greeting-timeout T   wait for the 220 greeting (default ${
      SMTP_DEFAULTS.greetingTimeout / 1000
    }s)`,
    `  --smtp-command-timeout T    wait for each command's reply (default ${
      SMTP_DEFAULTS.commandTimeout / 1000
    }s)`,
    `  --smtp-data-timeout T       wait for the reply after the message data (default ${
      SMTP_DEFAULTS.dataTimeout / 1000
    }s)`,
    "  --smtp-no-pipelining        send one command at a time even if the server offers PIPELINING",
    "  --smtp-debug                log the SMTP transcript (AUTH redacted, message data not shown)",
  ].join("\n"),
  async create(ctx) {
    return createSmtpTransport(await smtpOptionsFromCli(ctx));
  },
};

/** Build {@link SmtpOptions} from `--smtp-*` flags and the environment. Throws TypeError/RangeError. */
export async function smtpOptionsFromCli(ctx: TransportContext): Promise<SmtpOptions> {
  const { flags, env } = ctx;
  const str = (name: string): string | undefined => {
    const v = flags[name];
    if (v === undefined) return undefined;
    if (typeof v !== "string" || v.trim() === "") {
      throw new TypeError(`--${name} needs a value`);
    }
    return v.trim();
  };
  const host = str("smtp-host");
  if (host === undefined) {
    throw new TypeError("--transport smtp needs --smtp-host (e.g. --smtp-host smtp.gmail.com)");
  }
  const tls = str("smtp-tls");
  if (tls !== undefined && !TLS_MODES.includes(tls as SmtpTlsMode)) {
    throw new TypeError(`Invalid --smtp-tls ${JSON.stringify(tls)}: use ${TLS_MODES.join(", ")}`);
  }
  const caFile = str("smtp-ca");
  let ca: string | undefined;
  if (caFile !== undefined) {
    try {
      ca = await Deno.readTextFile(caFile);
    } catch (e) {
      throw new TypeError(`Cannot read --smtp-ca ${caFile}: ${e instanceof Error ? e.message : e}`);
    }
  }
  const maxText = str("smtp-max-messages");
  const debug = flags["smtp-debug"] === true
    ? (line: string) => ctx.log(`smtp: ${line}`)
    : undefined;
  return {
    host,
    port: int(str("smtp-port"), "smtp-port"),
    tls: tls as SmtpTlsMode | undefined,
    ca,
    auth: await authFromCli(str("smtp-user"), str("smtp-auth"), env),
    name: str("smtp-name"),
    connections: int(str("smtp-connections"), "smtp-connections"),
    maxMessages: maxText === "unlimited" || maxText === "0"
      ? Infinity
      : int(maxText, "smtp-max-messages"),
    pipelining: flags["smtp-no-pipelining"] === true ? false : undefined,
    connectTimeout: duration(str("smtp-connect-timeout"), "smtp-connect-timeout"),
    greetingTimeout: duration(str("smtp-greeting-timeout"), "smtp-greeting-timeout"),
    commandTimeout: duration(str("smtp-command-timeout"), "smtp-command-timeout"),
    dataTimeout: duration(str("smtp-data-timeout"), "smtp-data-timeout"),
    debug,
  };
}

async function authFromCli(
  user: string | undefined,
  method: string | undefined,
  env: (name: string) => string | undefined,
): Promise<SmtpAuth | undefined> {
  const password = env(SMTP_ENV.password);
  const passwordFile = env(SMTP_ENV.passwordFile);
  const token = env(SMTP_ENV.oauthToken);
  const tokenFile = env(SMTP_ENV.oauthTokenFile);
  const hasPassword = !!password || !!passwordFile;
  const hasToken = !!token || !!tokenFile;
  if (method !== undefined && !(method.toLowerCase() in AUTH_METHODS)) {
    throw new TypeError(
      `Invalid --smtp-auth ${JSON.stringify(method)}: use plain, login or xoauth2`,
    );
  }
  const forced = method === undefined
    ? undefined
    : AUTH_METHODS[method.toLowerCase() as keyof typeof AUTH_METHODS];
  if (user === undefined) {
    if (forced !== undefined) throw new TypeError("--smtp-auth needs --smtp-user");
    if (hasPassword || hasToken) {
      throw new TypeError(
        "An SMTP password or token is set in the environment but --smtp-user is missing",
      );
    }
    return undefined;
  }
  const useToken = forced === "XOAUTH2" || (forced === undefined && hasToken && !hasPassword);
  if (useToken) {
    if (!hasToken) {
      throw new TypeError(
        `--smtp-auth xoauth2 needs ${SMTP_ENV.oauthToken} or ${SMTP_ENV.oauthTokenFile} in the environment`,
      );
    }
    if (token) return { user, token, method: "XOAUTH2" };
    const file = tokenFile!;
    await readSecret(file, SMTP_ENV.oauthTokenFile); // fail early when unreadable
    return { user, token: () => readSecret(file, SMTP_ENV.oauthTokenFile), method: "XOAUTH2" };
  }
  if (hasToken && forced === undefined) {
    throw new TypeError(
      "Both an SMTP password and an OAuth token are set in the environment: choose with --smtp-auth",
    );
  }
  if (!hasPassword) {
    throw new TypeError(
      `--smtp-user ${user} needs ${SMTP_ENV.password} or ${SMTP_ENV.passwordFile} in the environment ` +
        `(or ${SMTP_ENV.oauthToken} for XOAUTH2); secrets are never taken from the command line`,
    );
  }
  const pass = password ? password : await readSecret(passwordFile!, SMTP_ENV.passwordFile);
  return { user, pass, method: forced };
}

async function readSecret(file: string, variable: string): Promise<string> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    throw new TypeError(
      `Cannot read ${variable} file ${file}: ${e instanceof Error ? e.message : e}`,
    );
  }
  const secret = text.replace(/\r?\n$/, "");
  if (secret === "") throw new TypeError(`${variable} file ${file} is empty`);
  return secret;
}

function int(text: string | undefined, name: string): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text)) {
    throw new RangeError(`Invalid --${name} ${JSON.stringify(text)}: use a whole number`);
  }
  return Number(text);
}

/** `"1500"` or `"1500ms"` -> 1500, `"30s"` -> 30000, `"2m"` -> 120000. */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m)?$/.exec(text);
  if (m === null) return undefined;
  const n = Number(m[1]) * (m[2] === "s" ? 1000 : m[2] === "m" ? 60_000 : 1);
  return Number.isFinite(n) && n >= 1 ? Math.round(n) : undefined;
}

function duration(text: string | undefined, name: string): number | undefined {
  if (text === undefined) return undefined;
  const ms = parseDuration(text);
  if (ms === undefined) {
    throw new RangeError(`Invalid --${name} ${JSON.stringify(text)}: use milliseconds or 30s, 2m`);
  }
  return ms;
}
