/**
 * Options of the SMTP transport: what the user passes ({@link SmtpOptions}) and
 * the resolved form every other piece reads ({@link ResolvedSmtpOptions}).
 * Defaults are applied once, here.
 *
 * @module
 */

/** How the connection is protected. */
export type SmtpTlsMode = "implicit" | "starttls" | "none";

/** SASL mechanisms the client speaks. */
export type SmtpAuthMethod = "PLAIN" | "LOGIN" | "XOAUTH2";

/** Returns a current OAuth2 access token (called once per new connection). */
export type TokenProvider = () => Promise<string> | string;

/** Credentials. Give `pass` for PLAIN/LOGIN, or `token` for XOAUTH2. */
export interface SmtpAuth {
  /** The account name (for Gmail, the full address). */
  readonly user: string;
  /** The password (for Gmail, an app password). */
  readonly pass?: string;
  /** An OAuth2 access token, or a function that returns a fresh one (XOAUTH2). */
  readonly token?: string | TokenProvider;
  /**
   * Force a mechanism. Default: XOAUTH2 when `token` is set, else PLAIN when
   * the server offers it, else LOGIN.
   */
  readonly method?: SmtpAuthMethod;
}

/**
 * The socket functions the transport uses; tests and embedders may replace
 * them. Implicit TLS is a TCP connection upgraded at once, so two suffice.
 */
export interface SmtpDialer {
  /** Open a TCP connection; honour `signal` (the connect timeout). Default `Deno.connect`. */
  connect(options: Deno.ConnectOptions): Promise<Deno.TcpConn>;
  /** Start TLS on a TCP connection, verifying the certificate. Default `Deno.startTls`. */
  startTls(conn: Deno.TcpConn, options: Deno.StartTlsOptions): Promise<Deno.TlsConn>;
}

/** Options for `createSmtpTransport()`. Every field but `host` has a default. */
export interface SmtpOptions {
  /** Server host name or IP address. Certificates are verified against it. */
  readonly host: string;
  /** TCP port. Default: 465 for `implicit`, 587 for `starttls`, 25 for `none`. */
  readonly port?: number;
  /**
   * `"implicit"` (TLS from the first byte, port 465), `"starttls"` (plain, then
   * STARTTLS, which must be offered: it is never skipped) or `"none"` (no TLS,
   * only when asked for). Default: `"implicit"` when `port` is 465, else `"starttls"`.
   */
  readonly tls?: SmtpTlsMode;
  /** Extra trusted CA certificates (PEM text), e.g. a private CA. The system roots stay trusted. */
  readonly ca?: string | readonly string[];
  /** Credentials; none by default. Refused over `tls: "none"` unless the host is a loopback address. */
  readonly auth?: SmtpAuth;
  /** The name sent with EHLO. Default: the machine's host name when it is a FQDN, else `[local IP]`. */
  readonly name?: string;
  /** Pool size: connections open at once. Default 5. */
  readonly connections?: number;
  /** Messages per connection before it is closed and replaced (`Infinity` for no cap). Default 100. */
  readonly maxMessages?: number;
  /** Use PIPELINING (RFC 2920) when the server offers it. Default true. */
  readonly pipelining?: boolean;
  /** Milliseconds to open the TCP connection and finish the TLS handshake. Default 30000. */
  readonly connectTimeout?: number;
  /** Milliseconds to wait for the server's 220 greeting. Default 30000. */
  readonly greetingTimeout?: number;
  /** Milliseconds to wait for the reply to each command (EHLO, MAIL, RCPT, DATA...). Default 60000. */
  readonly commandTimeout?: number;
  /** Milliseconds to wait for the reply after the message data is sent. Default 120000. */
  readonly dataTimeout?: number;
  /**
   * Connection attempts that may fail in a row, with growing delays, while no
   * connection works, before `send()` gives up. Default 5. Attempts refused while
   * other connections work (a server's connection limit) never count: the pool
   * shrinks to the connections that work and probes for more now and then.
   */
  readonly reconnectAttempts?: number;
  /**
   * First reconnect delay in milliseconds; it doubles each time, up to 30 s while
   * no connection works, and up to 5 s between probes for one more connection
   * while others work. A connection retired at `maxMessages` is replaced at once.
   * Default 250.
   */
  readonly reconnectDelay?: number;
  /**
   * How many times one message is moved to another connection after its
   * connection closed (421, reset) before it is handed back as `retry`. Default 3.
   */
  readonly maxAttempts?: number;
  /** Receives a transcript of the session (AUTH redacted). Off by default. */
  readonly debug?: (line: string) => void;
  /** Socket functions. Default: Deno's. */
  readonly dialer?: SmtpDialer;
}

/** {@link SmtpOptions} with every default applied and checked. */
export interface ResolvedSmtpOptions {
  readonly host: string;
  readonly port: number;
  readonly tls: SmtpTlsMode;
  readonly caCerts: readonly string[] | undefined;
  readonly auth: SmtpAuth | undefined;
  readonly name: string | undefined;
  readonly connections: number;
  readonly maxMessages: number;
  readonly pipelining: boolean;
  readonly connectTimeout: number;
  readonly greetingTimeout: number;
  readonly commandTimeout: number;
  readonly dataTimeout: number;
  readonly reconnectAttempts: number;
  readonly reconnectDelay: number;
  readonly maxAttempts: number;
  readonly debug: ((line: string) => void) | undefined;
  readonly dialer: SmtpDialer;
}

/** Documented defaults, in one place. */
export const SMTP_DEFAULTS = {
  connections: 5,
  maxMessages: 100,
  connectTimeout: 30_000,
  greetingTimeout: 30_000,
  commandTimeout: 60_000,
  dataTimeout: 120_000,
  reconnectAttempts: 5,
  reconnectDelay: 250,
  maxAttempts: 3,
} as const;

const DENO_DIALER: SmtpDialer = {
  connect: (o) => Deno.connect(o),
  startTls: (c, o) => Deno.startTls(c, o),
};

/** Check `options` and apply the defaults. Throws `TypeError`/`RangeError` naming the bad option. */
export function resolveSmtpOptions(options: SmtpOptions): ResolvedSmtpOptions {
  if (options === null || typeof options !== "object") {
    throw new TypeError("SMTP options must be an object with at least `host`");
  }
  const host = options.host;
  if (typeof host !== "string" || host.trim() === "" || /[\s\/]/.test(host)) {
    throw new TypeError(`SMTP host must be a host name or IP address, got ${JSON.stringify(host)}`);
  }
  const tls = options.tls ?? (options.port === 465 ? "implicit" : "starttls");
  if (tls !== "implicit" && tls !== "starttls" && tls !== "none") {
    throw new TypeError(
      `SMTP tls must be "implicit", "starttls" or "none", got ${JSON.stringify(tls)}`,
    );
  }
  const port = options.port ?? (tls === "implicit" ? 465 : tls === "starttls" ? 587 : 25);
  integer("port", port, 1, 65_535);
  const ca = options.ca;
  const caCerts = ca === undefined ? undefined : typeof ca === "string" ? [ca] : [...ca];
  for (const pem of caCerts ?? []) {
    if (typeof pem !== "string" || !pem.includes("-----BEGIN CERTIFICATE-----")) {
      throw new TypeError("SMTP ca must be PEM text containing -----BEGIN CERTIFICATE-----");
    }
  }
  const auth = options.auth;
  if (auth !== undefined) checkAuth(auth, tls, host);
  const name = options.name;
  if (name !== undefined && (typeof name !== "string" || !/^[\x21-\x7e]+$/.test(name))) {
    throw new TypeError(
      `SMTP name (EHLO) must be printable ASCII without spaces, got ${JSON.stringify(name)}`,
    );
  }
  const maxMessages = options.maxMessages ?? SMTP_DEFAULTS.maxMessages;
  if (maxMessages !== Infinity) integer("maxMessages", maxMessages, 1, Number.MAX_SAFE_INTEGER);
  const resolved: ResolvedSmtpOptions = {
    host,
    port,
    tls,
    caCerts,
    auth,
    name,
    connections: integer("connections", options.connections ?? SMTP_DEFAULTS.connections, 1, 1000),
    maxMessages,
    pipelining: options.pipelining ?? true,
    connectTimeout: timeout("connectTimeout", options.connectTimeout, SMTP_DEFAULTS.connectTimeout),
    greetingTimeout: timeout(
      "greetingTimeout",
      options.greetingTimeout,
      SMTP_DEFAULTS.greetingTimeout,
    ),
    commandTimeout: timeout("commandTimeout", options.commandTimeout, SMTP_DEFAULTS.commandTimeout),
    dataTimeout: timeout("dataTimeout", options.dataTimeout, SMTP_DEFAULTS.dataTimeout),
    reconnectAttempts: integer(
      "reconnectAttempts",
      options.reconnectAttempts ?? SMTP_DEFAULTS.reconnectAttempts,
      0,
      1000,
    ),
    reconnectDelay: integer(
      "reconnectDelay",
      options.reconnectDelay ?? SMTP_DEFAULTS.reconnectDelay,
      0,
      3_600_000,
    ),
    maxAttempts: integer("maxAttempts", options.maxAttempts ?? SMTP_DEFAULTS.maxAttempts, 1, 100),
    debug: options.debug,
    dialer: options.dialer ?? DENO_DIALER,
  };
  return resolved;
}

function checkAuth(auth: SmtpAuth, tls: SmtpTlsMode, host: string): void {
  if (
    typeof auth !== "object" || auth === null || typeof auth.user !== "string" || auth.user === ""
  ) {
    throw new TypeError("SMTP auth needs a non-empty `user`");
  }
  const method = auth.method;
  if (method !== undefined && method !== "PLAIN" && method !== "LOGIN" && method !== "XOAUTH2") {
    throw new TypeError(
      `SMTP auth method must be PLAIN, LOGIN or XOAUTH2, got ${JSON.stringify(method)}`,
    );
  }
  const wantsToken = method === "XOAUTH2" || (method === undefined && auth.token !== undefined);
  if (wantsToken && auth.token === undefined) {
    throw new TypeError("SMTP auth method XOAUTH2 needs a `token` (a string or a token provider)");
  }
  if (!wantsToken && typeof auth.pass !== "string") {
    throw new TypeError(`SMTP auth method ${method ?? "PLAIN/LOGIN"} needs a \`pass\``);
  }
  if (/[\r\n]/.test(auth.user)) throw new TypeError("SMTP auth user must not contain CR or LF");
  if (tls === "none" && !isLoopback(host)) {
    throw new TypeError(
      `Refusing to send SMTP credentials to ${host} without TLS: use tls "starttls" or "implicit"`,
    );
  }
}

/** True for `localhost`, 127.0.0.0/8 and ::1. */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host === "[::1]" ||
    /^127\.\d+\.\d+\.\d+$/.test(host);
}

function integer(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(
      `SMTP ${name} must be an integer from ${min} to ${max}, got ${String(value)}`,
    );
  }
  return value;
}

function timeout(name: string, value: number | undefined, fallback: number): number {
  return integer(name, value ?? fallback, 1, 86_400_000);
}
