/**
 * The Gmail API transport: each message goes through `users.messages.send`
 * as `raw` (base64url), many of them in one batch request (multipart/mixed,
 * at most 100 parts, 50 by default). Every response part is matched to its
 * message by Content-ID and its own status decides that message's result.
 *
 * Retries: a part answered 429, 5xx (or 408), or 403 `rateLimitExceeded` /
 * `userRateLimitExceeded` comes back as `status: "retry"` (with
 * `retryAfterMs` when Gmail said how long), and the engine retries just those
 * messages with its exponential backoff and jitter, in a later batch. The
 * transport does not sleep and retry on its own: the engine already owns
 * backoff, the attempt limit, the deadline and the ledger's attempt count, and
 * a batch held back inside `send` would pin the in-flight window. 400 and other
 * 403 answers are `failed`. An outer 401 (or 401 parts) triggers one token
 * refresh and a resend; a second 401 throws {@link GmailError}.
 *
 * "User-rate limit exceeded (Mail sending)" means the mailbox hit its sending
 * limit, which can last hours: the mailbox is paused for the rest of the run
 * and its messages come back as `retry`; the engine re-submits them and they
 * go to the other mailboxes. When no mailbox is left they come back with
 * `pauseSender: true`, so the engine stops and leaves the rows for a resume.
 *
 * Quotas are enforced locally per mailbox (Gmail reports over-limit sends
 * late): a paced rate (default `150/min`, i.e. 15,000 units a minute at 100
 * units per send) and a rolling daily cap (default 2,000), both with
 * core/rate.ts. The daily cap, summed over the mailboxes, is also declared in
 * `limits`, so the engine applies it too and seeds it from the ledger after a
 * restart; the per-minute rate is not, so the engine does not pace single
 * messages and break up batches.
 *
 * @module
 */
import type {
  Outgoing,
  SendOptions,
  SendResult,
  Transport,
  TransportLimit,
} from "../core/types.ts";
import { parseRate, type RateWindow } from "../core/rate.ts";
import { buildSendBatch, parseBatchResponse, rawOf, type SendPart } from "./gmail/batch.ts";
import { GmailError } from "./gmail/error.ts";
import {
  fetchAccessToken,
  type GmailCredentials,
  GOOGLE_TOKEN_URL,
  REFRESH_MARGIN_MS,
  TokenCache,
} from "./gmail/oauth.ts";
import { Mailbox, MailboxPool } from "./gmail/quota.ts";

export { GmailError } from "./gmail/error.ts";
export type {
  GmailCredentials,
  RefreshTokenCredentials,
  ServiceAccountCredentials,
} from "./gmail/oauth.ts";

/** Google's Gmail API root. */
export const GMAIL_API_URL = "https://gmail.googleapis.com";
/** Gmail's limit on calls per batch request. */
export const MAX_BATCH = 100;
/** Batch size Google advises (larger batches trigger rate limiting). */
export const DEFAULT_BATCH = 50;
/** Default per-mailbox rate: 15,000 quota units a minute at 100 units per send. */
export const DEFAULT_RATE = "150/min";
/** Default per-mailbox daily cap (Workspace mailboxes, rolling 24 h). */
export const DEFAULT_DAILY = 2000;

/** Options of {@link createGmailTransport}. */
export interface GmailTransportOptions {
  /** Refresh-token or service-account credentials. Required. */
  credentials: GmailCredentials;
  /**
   * Mailboxes to send as. Default `["me"]` (the refresh token's own mailbox).
   * A service account needs at least one (domain-wide delegation acts as
   * each); a refresh token acts as one mailbox only. Several mailboxes split
   * the messages, each with its own quota.
   */
  users?: readonly string[];
  /** Where the credentials came from, for error messages. Default `"the Gmail credentials"`. */
  credentialsSource?: string;
  /** Messages per batch request, 1..100. Default 50. Above 100 is a `RangeError`. */
  batchSize?: number;
  /** Per-mailbox rate, e.g. `"150/min"` or `"60/min"` (sends, paced). Default `"150/min"`. */
  rate?: string | readonly RateWindow[];
  /** Per-mailbox cap per rolling 24 h. Default 2000. */
  daily?: number;
  /** API root. Default `https://gmail.googleapis.com`. */
  apiUrl?: string;
  /** OAuth2 token endpoint. Default `https://oauth2.googleapis.com/token`. */
  tokenUrl?: string;
  /** Past send times (ms, on `now`'s clock) per mailbox, so daily caps survive restarts. */
  seed?: Readonly<Record<string, Iterable<number>>>;
  /** `fetch` for every HTTP request. Default `globalThis.fetch`. */
  fetch?: typeof fetch;
  /** Clock in ms since the epoch. Default `Date.now`. */
  now?: () => number;
  /** Sleep for quota pacing; rejects when `signal` aborts. Default `setTimeout`. */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Diagnostics (a mailbox paused, ...). Never receives tokens. Default: none. */
  log?: (line: string) => void;
}

/** A Gmail transport: a {@link Transport} with its mailboxes' names. */
export interface GmailTransport extends Transport {
  /** The mailboxes it sends as. */
  readonly users: readonly string[];
}

function checkUrl(value: string, what: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new TypeError(`${what} is not a URL: ${value}`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new TypeError(`${what} must be an http or https URL, got ${value}`);
  }
  return value.replace(/\/+$/, "");
}

/** Check a batch size: a whole number from 1 to 100 (Gmail's limit). */
export function checkBatchSize(size: number): number {
  if (!Number.isSafeInteger(size) || size < 1) {
    throw new RangeError(
      `Gmail batch size must be a whole number from 1 to ${MAX_BATCH}, got ${size}`,
    );
  }
  if (size > MAX_BATCH) {
    throw new RangeError(
      `Gmail batch size ${size} is above Gmail's limit of ${MAX_BATCH} calls per batch request; use ${MAX_BATCH} or less (${DEFAULT_BATCH} is advised)`,
    );
  }
  return size;
}

function defaultSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(id);
      reject(signal.reason);
    };
    const id = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Create a Gmail transport. Validates every option at once (`RangeError` /
 * `TypeError`) and makes no request until the first `send`.
 *
 * @example
 * ```ts
 * import { createGmailTransport } from "./gmail.ts";
 * const gmail = createGmailTransport({
 *   credentials: { kind: "refresh-token", clientId: "id", clientSecret: "secret", refreshToken: "token" },
 *   batchSize: 50,
 * });
 * if (gmail.maxBatch !== 50) throw new Error("batch size");
 * await gmail.close();
 * ```
 */
export function createGmailTransport(options: GmailTransportOptions): GmailTransport {
  return new GmailTransportImpl(options);
}

interface PartFailure {
  readonly status: number;
  readonly message: string;
  readonly reason: string;
}

const RETRYABLE_REASONS = new Set(["rateLimitExceeded", "userRateLimitExceeded"]);

class GmailTransportImpl implements GmailTransport {
  readonly name = "gmail";
  /** Each message is turned into its base64url `raw` text before its request goes out. */
  readonly releasesMessages = true;
  readonly maxBatch: number;
  readonly defaultConcurrency: number;
  readonly limits: readonly TransportLimit[];
  readonly users: readonly string[];
  readonly #pool: MailboxPool;
  readonly #tokens = new Map<Mailbox, TokenCache>();
  readonly #fetch: typeof fetch;
  readonly #sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  readonly #log: (line: string) => void;
  readonly #batchUrl: string;
  readonly #source: string;
  readonly #daily: number;
  #closed = false;
  #ids = 0;

  constructor(o: GmailTransportOptions) {
    if (o === null || typeof o !== "object") throw new TypeError("Gmail options must be an object");
    const creds = o.credentials;
    if (!creds || (creds.kind !== "refresh-token" && creds.kind !== "service-account")) {
      throw new TypeError('Gmail credentials must have kind "refresh-token" or "service-account"');
    }
    const users = [...(o.users ?? [])].map((u) => u.trim()).filter((u) => u !== "");
    if (creds.kind === "service-account" && users.length === 0) {
      throw new TypeError(
        "A service account sends as the mailboxes of its domain: give them with --gmail-user a@example.com,b@example.com",
      );
    }
    if (creds.kind === "refresh-token" && users.length > 1) {
      throw new RangeError(
        "A refresh token acts as one mailbox: give one --gmail-user, or use a service account with domain-wide delegation for several",
      );
    }
    if (new Set(users.map((u) => u.toLowerCase())).size !== users.length) {
      throw new RangeError(`A Gmail mailbox is listed twice in ${users.join(",")}`);
    }
    for (const u of users) {
      if (u !== "me" && !/^[^\s@]+@[^\s@]+$/.test(u)) {
        throw new TypeError(`Gmail user "${u}" is not an email address`);
      }
    }
    if (users.length === 0) users.push("me");
    const batchSize = checkBatchSize(o.batchSize ?? DEFAULT_BATCH);
    const rate = typeof o.rate === "string" || o.rate === undefined
      ? parseRate(o.rate ?? DEFAULT_RATE)
      : [...o.rate];
    const daily = o.daily ?? DEFAULT_DAILY;
    if (!Number.isSafeInteger(daily) || daily < 1) {
      throw new RangeError(`Gmail daily cap must be a whole number of at least 1, got ${daily}`);
    }
    const apiUrl = checkUrl(o.apiUrl ?? GMAIL_API_URL, "Gmail API URL");
    const tokenUrl = checkUrl(o.tokenUrl ?? GOOGLE_TOKEN_URL, "Gmail token URL");
    const now = o.now ?? Date.now;
    this.#fetch = o.fetch ?? globalThis.fetch;
    this.#sleep = o.sleep ?? defaultSleep;
    this.#log = o.log ?? (() => {});
    this.#source = o.credentialsSource ?? "the Gmail credentials";
    this.#batchUrl = `${apiUrl}/batch/gmail/v1`;
    this.#daily = daily;
    this.users = Object.freeze(users);
    const mailboxes = users.map((u) => new Mailbox(u, rate, daily, now));
    for (const mailbox of mailboxes) {
      const seed = o.seed?.[mailbox.user];
      if (seed) {
        const times = [...seed];
        mailbox.pace.seed(times);
        mailbox.cap.seed(times);
      }
      const ctx = { tokenUrl, fetch: this.#fetch, now, source: this.#source };
      this.#tokens.set(
        mailbox,
        new TokenCache(
          (signal) => fetchAccessToken(creds, mailbox.user, { ...ctx, signal }),
          now,
          REFRESH_MARGIN_MS,
        ),
      );
    }
    this.#pool = new MailboxPool(mailboxes);
    this.maxBatch = Math.min(batchSize, daily, ...rate.map((w) => w.count));
    this.defaultConcurrency = this.maxBatch * users.length * 2;
    this.limits = Object.freeze([{ count: daily * users.length, perMs: 86_400_000 }]);
  }

  async send(batch: readonly Outgoing[], opts: SendOptions): Promise<SendResult[]> {
    if (this.#closed) throw new GmailError("The Gmail transport is closed", { code: "closed" });
    if (batch.length > this.maxBatch) {
      throw new RangeError(
        `A Gmail batch holds at most ${this.maxBatch} messages, got ${batch.length}`,
      );
    }
    if (batch.length === 0) return [];
    const signal = opts.signal;
    while (true) {
      signal.throwIfAborted();
      const got = this.#pool.acquire(batch.length);
      if (got.kind === "wait") {
        await this.#sleep(got.ms, signal);
        continue;
      }
      if (got.kind === "paused") return batch.map(() => this.#allPausedResult());
      if (got.kind === "capped") return batch.map(() => this.#cappedResult(got.ms));
      const results = await this.#exchange(got.mailbox, batch.slice(0, got.count), signal);
      for (let i = got.count; i < batch.length; i++) {
        results.push({
          status: "retry",
          code: "daily-cap",
          reason:
            `Mailbox ${got.mailbox.user} had only ${got.count} sends left under its daily cap of ${this.#daily}; this one waits for another mailbox or a later run`,
        });
      }
      return results;
    }
  }

  async #exchange(
    mailbox: Mailbox,
    batch: readonly Outgoing[],
    signal: AbortSignal,
  ): Promise<SendResult[]> {
    const tokens = this.#tokens.get(mailbox)!;
    const runId = (this.#ids++).toString(36);
    const parts: SendPart[] = batch.map((m, i) => ({
      id: `${runId}.${i}.${m.line}`,
      userId: mailbox.user,
      raw: rawOf(m),
    }));
    const results: (SendResult | undefined)[] = new Array(batch.length);
    const limited: number[] = [];
    let pending = parts.map((_, i) => i);
    let refreshed = false;
    while (pending.length > 0) {
      const token = await tokens.token(signal);
      const request = buildSendBatch(pending.map((i) => parts[i]));
      let res: Response;
      try {
        res = await this.#fetch(this.#batchUrl, {
          method: "POST",
          headers: { authorization: `Bearer ${token}`, "content-type": request.contentType },
          body: request.body,
          signal,
        });
      } catch (err) {
        if (signal.aborted) throw signal.reason ?? err;
        const reason = `Cannot reach ${this.#batchUrl}: ${(err as Error).message}`;
        for (const i of pending) results[i] = { status: "retry", code: "network", reason };
        break;
      }
      if (res.status === 401) {
        await res.body?.cancel();
        if (refreshed) throw this.#rejectedTwice(mailbox);
        refreshed = true;
        await tokens.refresh(token, signal);
        continue;
      }
      if (!res.ok) {
        const failure = failureOf(res.status, res.statusText, await res.text());
        if (!isRetryable(failure)) throw this.#outerError(failure, mailbox);
        const retryAfterMs = retryAfterOf(res.headers, failure.message, Date.now());
        for (const i of pending) results[i] = retryResult(failure, retryAfterMs);
        break;
      }
      const text = await res.text();
      let answers;
      try {
        answers = parseBatchResponse(res.headers.get("content-type"), text);
      } catch (err) {
        const reason = `${(err as Error).message}; the message may or may not have been sent`;
        for (const i of pending) results[i] = { status: "retry", code: "bad-response", reason };
        break;
      }
      const byId = new Map<string, (typeof answers)[number]>();
      for (const a of answers) {
        if (a.contentId !== undefined && !byId.has(a.contentId)) byId.set(a.contentId, a);
      }
      const unauthorized: number[] = [];
      for (const i of pending) {
        const answer = byId.get(parts[i].id);
        if (!answer) {
          results[i] = {
            status: "retry",
            code: "no-answer",
            reason: `Gmail's batch response has no part for Content-ID <${
              parts[i].id
            }>; the message may or may not have been sent`,
          };
        } else if (answer.status >= 200 && answer.status < 300) {
          results[i] = sentResult(answer.status, answer.statusText, answer.body);
        } else if (answer.status === 401) {
          unauthorized.push(i);
        } else {
          const failure = failureOf(answer.status, answer.statusText, answer.body);
          if (isMailSendingLimit(failure)) {
            limited.push(i);
            results[i] = retryResult(
              failure,
              retryAfterOf(answer.headers, failure.message, Date.now()),
            );
          } else if (isRetryable(failure)) {
            results[i] = retryResult(
              failure,
              retryAfterOf(answer.headers, failure.message, Date.now()),
            );
          } else {
            results[i] = {
              status: "failed",
              code: String(failure.status),
              reason: describe(failure),
            };
          }
        }
      }
      if (unauthorized.length > 0) {
        if (refreshed) throw this.#rejectedTwice(mailbox);
        refreshed = true;
        await tokens.refresh(token, signal);
        pending = unauthorized;
        continue;
      }
      break;
    }
    if (limited.length > 0) this.#pauseMailbox(mailbox, limited, results);
    return results.map((r) =>
      r ?? { status: "retry", code: "no-answer", reason: "No answer from Gmail for this message" }
    );
  }

  /** Gmail says `mailbox` hit its sending limit: pause it, reroute or stop. */
  #pauseMailbox(mailbox: Mailbox, limited: readonly number[], results: (SendResult | undefined)[]) {
    const first = results[limited[0]] as Extract<SendResult, { status: "retry" }>;
    if (mailbox.pausedReason === undefined) {
      mailbox.pausedReason = first.reason;
      const others = this.#pool.active.length;
      this.#log(
        others > 0
          ? `Gmail mailbox ${mailbox.user} reached its sending limit (${first.reason}); it is paused for this run and its messages go to the ${others} other mailbox${
            others === 1 ? "" : "es"
          }`
          : `Gmail mailbox ${mailbox.user} reached its sending limit (${first.reason}); no mailbox is left, so sending stops and the remaining rows stay for a later resume: run the same command again once the limit has reset (it can take up to 24 h)`,
      );
    }
    const stop = this.#pool.active.length === 0;
    for (const i of limited) {
      // No retryAfterMs: rerouted messages should go to another mailbox at once, and
      // paused ones wait for a resume, not for a timer (the reason says why).
      const { retryAfterMs: _hours, ...r } = results[i] as Extract<SendResult, { status: "retry" }>;
      results[i] = stop
        ? {
          ...r,
          pauseSender: true,
          reason:
            `Gmail mailbox ${mailbox.user} reached its sending limit (${r.reason}); left for a later resume`,
        }
        : {
          ...r,
          reason:
            `Gmail mailbox ${mailbox.user} reached its sending limit (${r.reason}); sent again from another mailbox`,
        };
    }
  }

  #allPausedResult(): SendResult {
    const reasons = this.#pool.mailboxes.map((m) => `${m.user}: ${m.pausedReason}`).join("; ");
    return {
      status: "retry",
      code: "mailbox-limit",
      pauseSender: true,
      reason:
        `Every Gmail mailbox reached its sending limit (${reasons}); left for a later resume: run the same command again once the limit has reset`,
    };
  }

  #cappedResult(ms: number): SendResult {
    const users = this.#pool.active.map((m) => m.user).join(", ");
    return {
      status: "retry",
      code: "daily-cap",
      pauseSender: true,
      reason:
        `The local daily cap of ${this.#daily} sends per mailbox in 24 h (--gmail-daily) is used up for ${users}; left for a later resume in about ${
          formatDuration(ms)
        }`,
    };
  }

  #rejectedTwice(mailbox: Mailbox): GmailError {
    return new GmailError(
      `Gmail rejected the access token twice${
        mailbox.user === "me" ? "" : ` for ${mailbox.user}`
      }; check the credentials in ${this.#source}`,
      { code: "auth", status: 401, user: mailbox.user },
    );
  }

  #outerError(failure: PartFailure, mailbox: Mailbox): GmailError {
    const hint = failure.status === 403
      ? "check that the Gmail API is enabled for the project and that the credentials allow the gmail.send scope (domain-wide delegation for a service account)"
      : failure.status === 404
      ? "check --gmail-api-url"
      : "this is a bug in the batch request, please report it";
    return new GmailError(`Gmail refused the batch request: ${describe(failure)}; ${hint}`, {
      code: "batch",
      status: failure.status,
      user: mailbox.user,
    });
  }

  close(): Promise<void> {
    this.#closed = true;
    return Promise.resolve();
  }
}

/** Read `{"error": {...}}` from an error body, tolerating anything else. */
function failureOf(status: number, statusText: string, body: string): PartFailure {
  let message = statusText || `HTTP ${status}`;
  let reason = "";
  try {
    const json = JSON.parse(body) as { error?: unknown };
    const error = json?.error as
      | { message?: unknown; errors?: Array<{ reason?: unknown }>; status?: unknown }
      | undefined;
    if (error && typeof error === "object") {
      if (typeof error.message === "string" && error.message !== "") message = error.message;
      const first = Array.isArray(error.errors) ? error.errors[0] : undefined;
      if (first && typeof first.reason === "string") reason = first.reason;
      else if (typeof error.status === "string") reason = error.status;
    }
  } catch {
    // Not JSON: keep the status text.
  }
  return { status, message: message.replace(/\s+/g, " ").trim(), reason };
}

function isRetryable(f: PartFailure): boolean {
  if (f.status === 429 || f.status === 408 || f.status >= 500) return true;
  return f.status === 403 && RETRYABLE_REASONS.has(f.reason);
}

/** "User-rate limit exceeded ... (Mail sending)": the mailbox's own sending limit. */
function isMailSendingLimit(f: PartFailure): boolean {
  return (f.status === 429 || f.status === 403) && /\(\s*mail sending\s*\)/i.test(f.message);
}

function describe(f: PartFailure): string {
  return f.reason ? `${f.message} (${f.reason})` : f.message;
}

function retryResult(f: PartFailure, retryAfterMs: number | undefined): SendResult {
  return {
    status: "retry",
    code: String(f.status),
    reason: describe(f),
    ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
  };
}

function sentResult(status: number, statusText: string, body: string): SendResult {
  try {
    const json = JSON.parse(body) as { id?: unknown; threadId?: unknown };
    if (typeof json.id === "string") {
      return { status: "sent", id: json.id, response: `${status} ${statusText}`.trim() };
    }
  } catch {
    // A 2xx without JSON is still accepted.
  }
  return { status: "sent", response: `${status} ${statusText}`.trim() };
}

/** Retry-After (seconds or HTTP date) or Gmail's "Retry after <ISO time>" in the message. */
export function retryAfterOf(headers: Headers, message: string, now: number): number | undefined {
  const header = headers.get("retry-after");
  if (header) {
    if (/^\d+$/.test(header.trim())) return Number(header.trim()) * 1000;
    const at = Date.parse(header);
    if (!Number.isNaN(at)) return Math.max(0, at - now);
  }
  const m = /retry after (\d{4}-\d\d-\d\dT[0-9:.]+Z)/i.exec(message);
  if (m) {
    const at = Date.parse(m[1]);
    if (!Number.isNaN(at)) return Math.max(0, at - now);
  }
  return undefined;
}

function formatDuration(ms: number): string {
  if (ms < 60_000) return `${Math.ceil(ms / 1000)} s`;
  if (ms < 3_600_000) return `${Math.ceil(ms / 60_000)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}
