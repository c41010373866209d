/**
 * The contracts every part of mass-mailer agrees on: what a recipient is, what a
 * rendered message is, and what a transport promises.
 *
 * `core/` declares these; `transports/` implement {@link Transport}. Nothing in
 * `core/` imports a transport.
 *
 * @module
 */

/**
 * One valid recipient read from the CSV.
 *
 * `values` is the whole CSV record (all columns, trimmed); the column names
 * live once on the reader (`RecipientReader.columns`), not on every row.
 */
export interface Recipient {
  /** 1-based line number where this record starts in the input. */
  readonly line: number;
  /**
   * The address as first written (trimmed), with an IDN domain converted to
   * punycode (`user@xn--bcher-kva.example`). This is the envelope recipient.
   */
  readonly address: string;
  /** The whole CSV record; `values[i]` belongs to column `i` (0-based). */
  readonly values: readonly string[];
  /** True when the local part is not ASCII, so delivery needs SMTPUTF8 (RFC 6531). */
  readonly smtpUtf8: boolean;
}

/**
 * One rendered message, ready for any transport. Every transport (the fake one
 * included) receives exactly these bytes.
 */
export interface Outgoing {
  /** The recipient's line number: the key of this message within a run. */
  readonly line: number;
  /** Envelope sender (SMTP `MAIL FROM`), a bare address. */
  readonly from: string;
  /** Envelope recipient (SMTP `RCPT TO`), a bare address, domain in punycode. */
  readonly to: string;
  /** True when the envelope needs SMTPUTF8 (a non-ASCII local part). */
  readonly smtpUtf8: boolean;
  /** True when the body is sent as 8bit, so the server must offer 8BITMIME. */
  readonly eightBit: boolean;
  /** The RFC 5322 Message-ID, with angle brackets: `<...@...>`. */
  readonly messageId: string;
  /**
   * The message as RFC 5322 bytes with CRLF line ends, in order. Chunks may be
   * shared between messages (static parts are encoded once): never mutate them.
   * Not dot-stuffed: SMTP framing is the transport's job.
   */
  readonly data: readonly Uint8Array[];
  /** Total byte length of `data`. */
  readonly size: number;
}

/** The message was accepted by the transport. */
export interface SentResult {
  readonly status: "sent";
  /** The id the far end gave the message (SMTP queue id, Gmail message id). */
  readonly id?: string;
  /** The far end's reply text, for the report. */
  readonly response?: string;
}

/** A transient failure: the engine may try again later. */
export interface RetryResult {
  readonly status: "retry";
  /** A short machine-readable code: `"421"`, `"4.7.1"`, `"429"`, `"ECONNRESET"`, ... */
  readonly code: string;
  /** Human-readable reason, e.g. the server's reply text. */
  readonly reason: string;
  /** The far end asked to wait this long before trying again (Retry-After). */
  readonly retryAfterMs?: number;
  /**
   * The whole sender (mailbox, connection pool) must pause: set when the far
   * end reports that its quota is exhausted, e.g. Gmail's sending limit.
   */
  readonly pauseSender?: boolean;
}

/** A permanent failure for this message; it is recorded once, never retried. */
export interface FailedResult {
  readonly status: "failed";
  /** A short machine-readable code: `"550"`, `"5.1.1"`, `"400"`, `"SMTPUTF8"`, ... */
  readonly code: string;
  /** Human-readable reason, e.g. the server's reply text. */
  readonly reason: string;
}

/** What a transport says about one message. A refused recipient is data, not an exception. */
export type SendResult = SentResult | RetryResult | FailedResult;

/** Options for {@link Transport.send}. */
export interface SendOptions {
  /** Aborted when the run must stop at once (not on a graceful Ctrl-C drain). */
  readonly signal: AbortSignal;
}

/** A rate limit a transport declares for itself (e.g. Gmail's per-user quota). */
export interface TransportLimit {
  /** Messages allowed per window. */
  readonly count: number;
  /** Window length in milliseconds. */
  readonly perMs: number;
}

/**
 * A way to deliver messages. `send` resolves one {@link SendResult} per message,
 * in the order of `batch`; it rejects only when the transport itself cannot work
 * (bad credentials, TLS failure, closed), and the engine then stops the run.
 */
export interface Transport {
  /** Short name for logs and reports: `"fake"`, `"smtp"`, `"gmail"`. */
  readonly name: string;
  /** The largest batch `send` accepts (1 for SMTP, at most 100 for Gmail). */
  readonly maxBatch: number;
  /**
   * How many messages this transport can usefully have in flight when the user
   * does not say (`--concurrency`); the engine uses it as its default window.
   */
  readonly defaultConcurrency?: number;
  /** Rate limits the transport imposes on itself; the engine enforces them too. */
  readonly limits?: readonly TransportLimit[];
  /**
   * True when `send` keeps no reference to a message, nor to the views its
   * `data` returned, once its promise has settled with a `sent` or `failed`
   * result for it. The engine then reuses that message's memory for later
   * messages at once instead of waiting for the garbage collector (a large
   * saving when hundreds of thousands are in flight). Leave it unset when
   * unsure: messages are then only freed by the garbage collector.
   */
  readonly releasesMessages?: boolean;
  /**
   * True when `send` reads all it needs of every message (its `data` included)
   * before it returns, and never touches the messages again: an HTTP API that
   * serialises the batch into a request body at once, or the fake transport.
   * The engine then reuses the messages' memory as soon as `send` returns and
   * keeps only the recipients while it waits; a message that has to be tried
   * again is rendered again (the same Message-ID, a new Date). Implies
   * `releasesMessages`.
   */
  readonly consumesOnSend?: boolean;
  /** Send a batch; one result per message, in order. */
  send(batch: readonly Outgoing[], opts: SendOptions): Promise<SendResult[]>;
  /** Finish in-flight work and release connections, timers and files. */
  close(): Promise<void>;
}

/** The final state of one CSV row. Rows read = the sum of all of them. */
export type RowStatus = "sent" | "failed" | "invalid" | "duplicate" | "suppressed";

/** The final outcome of one row, as the ledger and the per-row report record it. */
export interface RowOutcome {
  /** 1-based line number where the record starts. */
  readonly line: number;
  /** The address as written (may be empty or garbage for invalid rows). */
  readonly address: string;
  readonly status: RowStatus;
  /** Machine-readable code (`"550"`, `"5.1.1"`, `"syntax"`, `"duplicate"`, ...); empty when sent. */
  readonly code: string;
  /** Why: the server's reply, the validation error, `"duplicate of line 3"`. */
  readonly reason: string;
  /** How many send attempts were made (0 for invalid and duplicate rows). */
  readonly attempts: number;
  /** The transport's id for a sent message, when it gave one. */
  readonly id?: string;
}

/** Concatenate a message's chunks into one buffer (for transports that need it whole). */
export function joinChunks(data: readonly Uint8Array[], size?: number): Uint8Array {
  if (data.length === 1) return data[0];
  const total = size ?? data.reduce((n, c) => n + c.length, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const chunk of data) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

/**
 * A copy of `message` that owns its bytes (one chunk) and shares nothing with
 * the renderer's buffers. The engine keeps a message waiting for a retry this
 * way, so that a few held messages never keep whole shared slabs alive.
 */
export function detachMessage(message: Outgoing): Outgoing {
  const data = message.data;
  const bytes = data.length === 1 ? data[0].slice() : joinChunks(data, message.size);
  return {
    line: message.line,
    from: message.from,
    to: message.to,
    smtpUtf8: message.smtpUtf8,
    eightBit: message.eightBit,
    messageId: message.messageId,
    data: [bytes],
    size: bytes.length,
  };
}
