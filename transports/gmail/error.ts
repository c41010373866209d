/**
 * The one error class of the Gmail transport.
 *
 * @module
 */

/** Options of {@link GmailError}. */
export interface GmailErrorOptions {
  /** Short machine-readable code: `"auth"`, `"token"`, `"batch"`, `"closed"`, `"config"`. */
  code: string;
  /** HTTP status that caused it, when there was one. */
  status?: number;
  /** The mailbox concerned, when there is one. */
  user?: string;
  /** The underlying error. */
  cause?: unknown;
}

/**
 * The Gmail transport cannot work: credentials refused, the token endpoint or
 * the API unusable, the transport closed. A refused message is never a
 * `GmailError`: it is a `failed` or `retry` result. Messages never contain tokens.
 */
export class GmailError extends Error {
  /** Short machine-readable code, see {@link GmailErrorOptions.code}. */
  readonly code: string;
  /** HTTP status that caused it, when there was one. */
  readonly status?: number;
  /** The mailbox concerned, when there is one. */
  readonly user?: string;

  /** Create the error; `opts.code` says which kind. */
  constructor(message: string, opts: GmailErrorOptions) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "GmailError";
    this.code = opts.code;
    if (opts.status !== undefined) this.status = opts.status;
    if (opts.user !== undefined) this.user = opts.user;
  }
}
