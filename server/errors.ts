/**
 * Errors of the HTTP service: every refusal is a JSON body with a stable
 * machine-readable `code` and a one-line `message`, never a stack trace.
 *
 * ```json
 * {"error":{"code":"unauthorized","message":"Missing or wrong bearer token"}}
 * ```
 *
 * @module
 */

/** The stable error codes and the HTTP status each one is sent with. */
export const ERROR_STATUS = {
  /** The request is malformed: a bad query option, a bad multipart body. */
  bad_request: 400,
  /** The message (JSON part or server config) is missing or wrong. */
  bad_message: 400,
  /** The template names a column the CSV lacks, or has bad syntax. */
  template_error: 400,
  /** The CSV cannot be read (e.g. an unterminated quoted field), or the address column is missing. */
  bad_csv: 400,
  /** The body ended before it was complete (the client stopped sending), before any row was taken. */
  body_truncated: 400,
  /** A multipart body has its `message` part after the `recipients` part (message must come first). */
  message_after_recipients: 400,
  /** The `Idempotency-Key` header is not 1-128 characters of `A-Z a-z 0-9 . _ : -`. */
  bad_idempotency_key: 400,
  /** The client sent no body bytes for the server's idle timeout, before any row was taken. */
  body_timeout: 408,
  /** Missing or wrong bearer token. */
  unauthorized: 401,
  /** No such route. */
  not_found: 404,
  /** The route exists but not for this method. */
  method_not_allowed: 405,
  /** A run with the same `Idempotency-Key` is still going. */
  idempotency_in_progress: 409,
  /** The same `Idempotency-Key` was used for a different CSV or message. */
  idempotency_mismatch: 422,
  /** The body is larger than the server's limit (`Content-Length` says so up front). */
  body_too_large: 413,
  /** The body is neither `text/csv` nor `multipart/form-data`. */
  unsupported_media_type: 415,
  /** The server already runs as many campaigns as it allows; try again later. */
  busy: 429,
  /** The server has no `Idempotency-Key` store configured. */
  idempotency_unavailable: 501,
  /** The transport could not be created (bad configuration, unreachable). */
  transport_unavailable: 503,
  /** The server is shutting down. */
  shutting_down: 503,
  /** A bug: the message says what failed, the details are only in the server log. */
  internal: 500,
} as const;

/** One of the stable error codes. */
export type ErrorCode = keyof typeof ERROR_STATUS;

/** A refusal the HTTP layer turns into a JSON error response. */
export class HttpError extends Error {
  /** The stable code (see {@link ERROR_STATUS}). */
  readonly code: ErrorCode;
  /** The HTTP status. */
  readonly status: number;
  /** Extra response headers (`WWW-Authenticate`, `Retry-After`). */
  readonly headers: Readonly<Record<string, string>>;

  /** Make an error with a stable `code`; the status follows from it. */
  constructor(
    code: ErrorCode,
    message: string,
    options?: ErrorOptions & { headers?: Record<string, string> },
  ) {
    super(message, options);
    this.name = "HttpError";
    this.code = code;
    this.status = ERROR_STATUS[code];
    this.headers = options?.headers ?? {};
  }
}

/** The JSON body of an error response. */
export interface ErrorBody {
  readonly error: { readonly code: ErrorCode; readonly message: string };
}

/** Build the JSON response for an error. */
export function errorResponse(error: HttpError): Response {
  const body: ErrorBody = { error: { code: error.code, message: error.message } };
  return new Response(JSON.stringify(body) + "\n", {
    status: error.status,
    headers: {
      "content-type": "application/json; charset=utf-8",
      "cache-control": "no-store",
      ...error.headers,
    },
  });
}
