/**
 * The one error class of the SMTP transport.
 *
 * @module
 */

/** Machine-readable kinds of {@link SmtpError}. */
export type SmtpErrorCode =
  /** The TCP connection could not be opened, or it broke. */
  | "ECONNECTION"
  /** A named timeout expired (see {@link SmtpError.timeout}). */
  | "ETIMEDOUT"
  /** TLS failed: certificate verification or the handshake. */
  | "ETLS"
  /** STARTTLS was required but the server does not offer it or refused it. */
  | "ESTARTTLS"
  /** The server rejected the credentials or offers no usable mechanism. */
  | "EAUTH"
  /** The server answered something the protocol does not allow. */
  | "EPROTOCOL"
  /** The server refused the session (greeting or EHLO answered with an error). */
  | "EREFUSED"
  /** The transport was closed. */
  | "ECLOSED";

/** Which named timeout expired. */
export type SmtpTimeoutName = "connect" | "greeting" | "command" | "data";

/** Optional details of an {@link SmtpError}. */
export interface SmtpErrorDetails {
  /** The server's reply code, when a reply caused the error. */
  readonly responseCode?: number;
  /** The command that was answered (`"EHLO"`, `"AUTH"`), never its arguments. */
  readonly command?: string;
  /** The named timeout that expired, for `code: "ETIMEDOUT"`. */
  readonly timeout?: SmtpTimeoutName;
  /** True when retrying the same thing later may work (a 4xx, a refused connection). */
  readonly transient?: boolean;
  /** The underlying error. */
  readonly cause?: unknown;
}

/**
 * Raised when the SMTP transport itself cannot work: it cannot connect, TLS
 * verification failed, STARTTLS is missing, the credentials were rejected.
 * A refused message is never an error: it is a `SendResult`.
 */
export class SmtpError extends Error {
  /** What kind of failure this is. */
  readonly code: SmtpErrorCode;
  /** The server's reply code, when a reply caused the error. */
  readonly responseCode?: number;
  /** The SMTP command that failed (`"STARTTLS"`, `"AUTH"`), never with arguments. */
  readonly command?: string;
  /** The named timeout that expired, for `code: "ETIMEDOUT"`. */
  readonly timeout?: SmtpTimeoutName;
  /** True when the same attempt may succeed later (used by the reconnect backoff). */
  readonly transient: boolean;

  /** Build an error; `message` should say what failed and what to do. */
  constructor(code: SmtpErrorCode, message: string, details: SmtpErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = "SmtpError";
    this.code = code;
    this.responseCode = details.responseCode;
    this.command = details.command;
    this.timeout = details.timeout;
    this.transient = details.transient ?? false;
  }
}
