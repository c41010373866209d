/**
 * The SMTP transport: a pool of pipelined SMTP connections over TLS, written
 * on Deno's TCP/TLS APIs.
 *
 * ```ts ignore
 * import { createSmtpTransport } from "./transports/smtp.ts";
 * const smtp = createSmtpTransport({
 *   host: "smtp.gmail.com",
 *   port: 465,
 *   auth: { user: "me@gmail.com", pass: Deno.env.get("MASS_MAILER_SMTP_PASSWORD") },
 * });
 * ```
 *
 * @module
 */
import type { Outgoing, SendOptions, SendResult, Transport } from "../core/types.ts";
import { SmtpError } from "./smtp/error.ts";
import { resolveSmtpOptions, type SmtpOptions } from "./smtp/options.ts";
import { type PoolStats, SmtpPool } from "./smtp/pool.ts";

export { SmtpError } from "./smtp/error.ts";
export type { SmtpErrorCode, SmtpTimeoutName } from "./smtp/error.ts";
export { SMTP_DEFAULTS } from "./smtp/options.ts";
export type {
  SmtpAuth,
  SmtpAuthMethod,
  SmtpDialer,
  SmtpOptions,
  SmtpTlsMode,
  TokenProvider,
} from "./smtp/options.ts";
export type { PoolStats } from "./smtp/pool.ts";

/** The SMTP transport, with pool counters for diagnostics. */
export interface SmtpTransport extends Transport {
  /** Connections opened, failed opens, messages moved after a 421 or a reset. */
  readonly stats: Readonly<PoolStats>;
}

/**
 * Build an SMTP transport. Options are checked at once (`TypeError`/`RangeError`);
 * nothing connects until the first `send()`.
 *
 * `send()` takes batches of any size (`maxBatch` is 1 so the engine's window
 * maps one-to-one onto messages) and resolves one result per message: a 2xx
 * is `sent` with the server's queue id, 4xx `retry`, 5xx `failed`. A 421 or a
 * dropped connection moves the message to another connection (at most
 * `maxAttempts` times). It rejects with {@link SmtpError} only when the
 * transport cannot work: no connection could be opened after the reconnect
 * backoff, TLS verification failed, STARTTLS is missing, AUTH was refused.
 */
export function createSmtpTransport(options: SmtpOptions): SmtpTransport {
  const resolved = resolveSmtpOptions(options);
  const pool = new SmtpPool(resolved);
  let closed: Promise<void> | null = null;
  return {
    name: "smtp",
    maxBatch: 1,
    defaultConcurrency: resolved.connections * 2,
    // A connection copies the bytes into its own buffer when the server says 354.
    releasesMessages: true,
    stats: pool.stats,
    send(batch: readonly Outgoing[], opts: SendOptions): Promise<SendResult[]> {
      return pool.send(batch, opts.signal);
    },
    close(): Promise<void> {
      closed ??= pool.close();
      return closed;
    },
  };
}

/** True when `error` is an {@link SmtpError} (also across module copies). */
export function isSmtpError(error: unknown): error is SmtpError {
  return error instanceof SmtpError || (error instanceof Error && error.name === "SmtpError");
}
