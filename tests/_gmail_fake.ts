/**
 * A local fake of the Gmail API and Google's OAuth2 endpoints, as a Hono app,
 * for tests and benchmarks. It follows the published formats (see
 * ../../shared/gmail-api.md): it parses multipart/mixed batch requests
 * strictly (CRLF, `Content-Type: application/http`, a `Content-ID` per part,
 * a whole inner `POST /gmail/v1/users/{userId}/messages/send` request), and
 * answers multipart/mixed with a boundary of its own, parts shuffled, each
 * with `Content-ID: <response-...>` and a whole inner HTTP response.
 *
 * Also: per-part answers on command ({@link GmailFakeOptions.onPart}), access
 * tokens that expire or are rejected, a per-user token bucket of quota units
 * (`messages.send` costs 100 by default), a per-user mail sending limit
 * answered with Gmail's "(Mail sending)" 429, service-account JWTs verified
 * with the account's public key, and the authorization-code flow with PKCE.
 *
 * {@link startGmailFake} serves it with `Deno.serve` on 127.0.0.1, port 0.
 *
 * @module
 */
// deno-lint-ignore no-import-prefix -- the project imports npm packages inline (no import map)
import { Hono } from "npm:hono@^4";
// deno-lint-ignore no-import-prefix -- the project imports npm packages inline (no import map)
import { decodeJwt, jwtVerify, type KeyLike } from "npm:jose@^5";
import { Buffer } from "node:buffer";

/** A service account the fake trusts. */
export interface FakeServiceAccount {
  /** Its `client_email` (the JWT `iss`). */
  readonly clientEmail: string;
  /** The public half of its key, to verify the RS256 signature. */
  readonly publicKey: CryptoKey | KeyLike;
  /** Mailboxes it may act as (JWT `sub`); default: any. */
  readonly users?: readonly string[];
}

/** One part of a batch as the fake saw it, for {@link GmailFakeOptions.onPart}. */
export interface FakePartInfo {
  /** 1-based number of the batch request (per fake). */
  readonly batch: number;
  /** 1-based position of the part in its batch request, as received. */
  readonly index: number;
  readonly contentId: string;
  /** The mailbox of the access token. */
  readonly user: string;
  /** The To address of the decoded message, when there is one. */
  readonly to: string | undefined;
  /** How many times a message with this Message-ID reached the fake before (0 = first). */
  readonly seen: number;
}

/** An answer chosen by {@link GmailFakeOptions.onPart} instead of the normal one. */
export interface FakeReply {
  readonly status: number;
  readonly message?: string;
  readonly reason?: string;
  readonly headers?: Readonly<Record<string, string>>;
}

/** Options of {@link GmailFake}. */
export interface GmailFakeOptions {
  /** The OAuth client the fake knows. Default `fake-client-id` / `fake-client-secret`. */
  readonly client?: { readonly id: string; readonly secret: string };
  /** Refresh tokens it accepts, mapped to their mailbox. */
  readonly refreshTokens?: Readonly<Record<string, string>>;
  /** Service accounts it trusts. */
  readonly serviceAccounts?: readonly FakeServiceAccount[];
  /** The mailbox an authorization-code login grants. Default `me@login.example`. */
  readonly loginUser?: string;
  /** Lifetime of access tokens in seconds. Default 3600. */
  readonly tokenLifetimeS?: number;
  /**
   * Per-user quota as a token bucket of `units` refilled over `perMs` (so a
   * burst of one window's worth is allowed, a moving average); each send costs
   * `cost`. Default 15,000 units per 60,000 ms, cost 100 (150 sends a minute).
   */
  readonly quota?: { readonly units: number; readonly perMs: number; readonly cost?: number };
  /** Accepted sends per user before Gmail's "(Mail sending)" limit answers. Default unlimited. */
  readonly mailSendingLimit?: number;
  /** Shuffle response parts. Default true. */
  readonly shuffle?: boolean;
  /** Seed of the shuffle. Default 1. */
  readonly seed?: number;
  /** Answer a part yourself: return a reply, or undefined for the normal handling. */
  readonly onPart?: (part: FakePartInfo) => FakeReply | undefined;
  /** Clock in ms. Default `Date.now`. */
  readonly now?: () => number;
}

/** A message the fake accepted. */
export interface FakeReceived {
  readonly user: string;
  /** `raw` exactly as received (base64url). */
  readonly raw: string;
  /** The decoded RFC 5322 bytes. */
  readonly bytes: Uint8Array;
  readonly messageId: string | undefined;
  readonly to: string | undefined;
  /** The Gmail id it answered with. */
  readonly id: string;
  /** 1-based batch request number (0 for a single send). */
  readonly batch: number;
  /** When it was accepted (fake clock). */
  readonly at: number;
}

/** Counters the tests and the benchmark read. */
export interface FakeStats {
  batchRequests: number;
  singleRequests: number;
  tokenRequests: number;
  parts: number;
  /** Inner statuses answered, by code. */
  statuses: Record<number, number>;
  /** Outer 401s answered. */
  unauthorized: number;
}

const SEND_PATH = /^POST \/gmail\/v1\/users\/([^/\s]+)\/messages\/send(?: HTTP\/1\.[01])?$/;
const BASE64URL = /^[A-Za-z0-9_-]*={0,2}$/;
const GMAIL_SEND_SCOPE = "https://www.googleapis.com/auth/gmail.send";

interface TokenInfo {
  readonly user: string;
  expiresAt: number;
}

interface InnerRequest {
  readonly contentId: string;
  readonly userId: string;
  readonly json: string;
}

class BadBatch extends Error {}

function errorJson(status: number, message: string, reason: string, extra: string = ""): string {
  const statusName = status === 429
    ? "RESOURCE_EXHAUSTED"
    : status === 401
    ? "UNAUTHENTICATED"
    : status === 403
    ? "PERMISSION_DENIED"
    : status >= 500
    ? "INTERNAL"
    : "INVALID_ARGUMENT";
  return JSON.stringify({
    error: {
      code: status,
      message,
      errors: [{ message, domain: reason === "authError" ? "global" : "usageLimits", reason }],
      status: statusName,
      ...(extra ? { details: extra } : {}),
    },
  });
}

const STATUS_TEXT: Record<number, string> = {
  200: "OK",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  429: "Too Many Requests",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

function randomHex(bytes: number): string {
  let out = "";
  for (const b of crypto.getRandomValues(new Uint8Array(bytes))) {
    out += b.toString(16).padStart(2, "0");
  }
  return out;
}

async function sha256Base64url(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Buffer.from(digest).toString("base64url");
}

/**
 * Parse a batch request body strictly: every line break CRLF, every part
 * `application/http` with a Content-ID, every inner request a send call.
 */
function parseBatchRequest(contentType: string, body: string): InnerRequest[] {
  const m = /^multipart\/mixed\s*;\s*boundary=("?)([^";]+)\1\s*$/i.exec(contentType);
  if (!m) {
    throw new BadBatch(`Content-Type must be multipart/mixed with a boundary, got ${contentType}`);
  }
  const delimiter = `--${m[2]}`;
  const pieces = body.split(delimiter);
  if (pieces.length < 3) throw new BadBatch("The batch has no parts");
  if (pieces[0].trim() !== "") throw new BadBatch("Text before the first boundary");
  const last = pieces[pieces.length - 1];
  if (!last.startsWith("--")) {
    throw new BadBatch("The batch does not end with the closing boundary");
  }
  const out: InnerRequest[] = [];
  const ids = new Set<string>();
  for (const piece of pieces.slice(1, -1)) {
    if (!piece.startsWith("\r\n") || !piece.endsWith("\r\n")) {
      throw new BadBatch("A boundary line does not end with CRLF");
    }
    const text = piece.slice(2, -2);
    if (/(?<!\r)\n|\r(?!\n)/.test(text)) {
      throw new BadBatch("A line in a part does not end with CRLF");
    }
    const headEnd = text.indexOf("\r\n\r\n");
    if (headEnd < 0) throw new BadBatch("A part has no blank line after its headers");
    const partHeaders = new Map<string, string>();
    for (const line of text.slice(0, headEnd).split("\r\n")) {
      const colon = line.indexOf(":");
      if (colon <= 0) throw new BadBatch(`Bad part header line: ${line}`);
      partHeaders.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
    if (partHeaders.get("content-type") !== "application/http") {
      throw new BadBatch("Every part must have Content-Type: application/http");
    }
    const cid = /^<([^<>\s]+)>$/.exec(partHeaders.get("content-id") ?? "");
    if (!cid) throw new BadBatch("Every part needs a Content-ID: <...>");
    if (ids.has(cid[1])) throw new BadBatch(`Content-ID <${cid[1]}> is used twice`);
    ids.add(cid[1]);
    const inner = text.slice(headEnd + 4);
    const innerHeadEnd = inner.indexOf("\r\n\r\n");
    if (innerHeadEnd < 0) throw new BadBatch("An inner request has no blank line before its body");
    const [requestLine, ...headerLines] = inner.slice(0, innerHeadEnd).split("\r\n");
    const send = SEND_PATH.exec(requestLine);
    if (!send) throw new BadBatch(`Not a messages.send call: ${requestLine}`);
    const innerHeaders = new Map<string, string>();
    for (const line of headerLines) {
      const colon = line.indexOf(":");
      if (colon <= 0) throw new BadBatch(`Bad inner header line: ${line}`);
      innerHeaders.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
    if (!/^application\/json\b/.test(innerHeaders.get("content-type") ?? "")) {
      throw new BadBatch("An inner request needs Content-Type: application/json");
    }
    const json = inner.slice(innerHeadEnd + 4);
    const length = innerHeaders.get("content-length");
    if (length !== undefined && Number(length) !== new TextEncoder().encode(json).length) {
      throw new BadBatch(`Content-Length ${length} does not match the inner body`);
    }
    out.push({ contentId: cid[1], userId: decodeURIComponent(send[1]), json });
  }
  return out;
}

/** The fake: a Hono app plus what it saw. */
export class GmailFake {
  /** The Hono app (`app.fetch` is the handler). */
  readonly app: Hono;
  /** Every accepted message, in order. */
  readonly received: FakeReceived[] = [];
  /** Counters. */
  readonly stats: FakeStats = {
    batchRequests: 0,
    singleRequests: 0,
    tokenRequests: 0,
    parts: 0,
    statuses: {},
    unauthorized: 0,
  };
  /** Base URL once served (for the JWT audience). */
  baseUrl = "";
  /** When true, every access token is refused (401). */
  rejectAllTokens = false;
  /** When true, the consent screen answers `error=access_denied`. */
  denyLogin = false;
  /** The last `code_challenge` the consent screen received. */
  lastCodeChallenge: string | undefined;

  readonly #o: GmailFakeOptions;
  readonly #now: () => number;
  readonly #client: { readonly id: string; readonly secret: string };
  readonly #refresh = new Map<string, string>();
  readonly #tokens = new Map<string, TokenInfo>();
  readonly #codes = new Map<string, { challenge: string; redirectUri: string }>();
  readonly #buckets = new Map<string, { units: number; at: number }>();
  readonly #accepted = new Map<string, number>();
  readonly #seen = new Map<string, number>();
  #rng: number;
  #ids = 0;

  /** A fake with `options`. */
  constructor(options: GmailFakeOptions = {}) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
    this.#client = options.client ?? { id: "fake-client-id", secret: "fake-client-secret" };
    for (const [token, user] of Object.entries(options.refreshTokens ?? {})) {
      this.#refresh.set(token, user);
    }
    this.#rng = options.seed ?? 1;
    const app = new Hono();
    app.post("/token", (c) => this.#token(c.req.raw));
    app.get("/o/oauth2/v2/auth", (c) => this.#consent(new URL(c.req.url)));
    app.post("/batch/gmail/v1", (c) => this.#batch(c.req.raw));
    app.post("/batch", (c) => this.#batch(c.req.raw));
    app.post(
      "/gmail/v1/users/:userId/messages/send",
      (c) => this.#single(c.req.raw, c.req.param("userId")),
    );
    this.app = app;
  }

  /** Make every access token issued so far expire now. */
  expireTokens(): void {
    for (const info of this.#tokens.values()) info.expiresAt = 0;
  }

  /** Accepted sends per user. */
  acceptedBy(user: string): number {
    return this.#accepted.get(user) ?? 0;
  }

  #random(): number {
    // mulberry32
    let t = (this.#rng = (this.#rng + 0x6d2b79f5) | 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  #issue(user: string): Record<string, unknown> {
    const token = `fake-at-${randomHex(16)}`;
    const lifetime = this.#o.tokenLifetimeS ?? 3600;
    this.#tokens.set(token, { user, expiresAt: this.#now() + lifetime * 1000 });
    return {
      access_token: token,
      expires_in: lifetime,
      token_type: "Bearer",
      scope: GMAIL_SEND_SCOPE,
    };
  }

  async #token(req: Request): Promise<Response> {
    this.stats.tokenRequests++;
    const type = req.headers.get("content-type") ?? "";
    if (!type.startsWith("application/x-www-form-urlencoded")) {
      return Response.json({ error: "invalid_request", error_description: "Form body expected" }, {
        status: 400,
      });
    }
    const form = new URLSearchParams(await req.text());
    const grant = form.get("grant_type");
    const fail = (status: number, error: string, description: string) =>
      Response.json({ error, error_description: description }, { status });
    if (grant === "refresh_token") {
      if (
        form.get("client_id") !== this.#client.id ||
        form.get("client_secret") !== this.#client.secret
      ) {
        return fail(401, "invalid_client", "The OAuth client was not found.");
      }
      const user = this.#refresh.get(form.get("refresh_token") ?? "");
      if (!user) return fail(400, "invalid_grant", "Token has been expired or revoked.");
      return Response.json(this.#issue(user));
    }
    if (grant === "urn:ietf:params:oauth:grant-type:jwt-bearer") {
      const assertion = form.get("assertion") ?? "";
      let iss: unknown;
      try {
        iss = decodeJwt(assertion).iss;
      } catch {
        return fail(400, "invalid_grant", "Invalid JWT.");
      }
      const account = this.#o.serviceAccounts?.find((a) => a.clientEmail === iss);
      if (!account) return fail(401, "invalid_client", "The OAuth client was not found.");
      try {
        const { payload, protectedHeader } = await jwtVerify(assertion, account.publicKey, {
          issuer: account.clientEmail,
          audience: `${this.baseUrl}/token`,
          algorithms: ["RS256"],
          clockTolerance: 5,
          currentDate: new Date(this.#now()),
        });
        if (protectedHeader.typ !== undefined && protectedHeader.typ !== "JWT") {
          return fail(400, "invalid_grant", "Invalid JWT header.");
        }
        const { iat, exp, sub, scope } = payload;
        if (typeof iat !== "number" || typeof exp !== "number" || exp - iat > 3600 || exp <= iat) {
          return fail(
            400,
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.",
          );
        }
        if (typeof scope !== "string" || !scope.split(" ").includes(GMAIL_SEND_SCOPE)) {
          return fail(400, "invalid_scope", "Invalid OAuth scope or ID token audience provided.");
        }
        if (typeof sub !== "string" || (account.users && !account.users.includes(sub))) {
          return fail(
            401,
            "unauthorized_client",
            "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.",
          );
        }
        return Response.json(this.#issue(sub));
      } catch {
        return fail(400, "invalid_grant", "Invalid JWT Signature.");
      }
    }
    if (grant === "authorization_code") {
      if (
        form.get("client_id") !== this.#client.id ||
        form.get("client_secret") !== this.#client.secret
      ) {
        return fail(401, "invalid_client", "The OAuth client was not found.");
      }
      const code = this.#codes.get(form.get("code") ?? "");
      this.#codes.delete(form.get("code") ?? "");
      if (!code) return fail(400, "invalid_grant", "Malformed auth code.");
      if (form.get("redirect_uri") !== code.redirectUri) {
        return fail(400, "redirect_uri_mismatch", "Bad Request");
      }
      const verifier = form.get("code_verifier") ?? "";
      if (
        !/^[A-Za-z0-9._~-]{43,128}$/.test(verifier) ||
        await sha256Base64url(verifier) !== code.challenge
      ) {
        return fail(400, "invalid_grant", "Invalid code verifier.");
      }
      const refreshToken = `fake-rt-${randomHex(16)}`;
      const user = this.#o.loginUser ?? "me@login.example";
      this.#refresh.set(refreshToken, user);
      return Response.json({ ...this.#issue(user), refresh_token: refreshToken });
    }
    return fail(400, "unsupported_grant_type", `Invalid grant_type: ${grant}`);
  }

  #consent(url: URL): Response {
    const p = url.searchParams;
    const redirectUri = p.get("redirect_uri") ?? "";
    let redirect: URL;
    try {
      redirect = new URL(redirectUri);
    } catch {
      return new Response("Error 400: invalid_request (redirect_uri)", { status: 400 });
    }
    if (
      redirect.protocol !== "http:" || redirect.hostname !== "127.0.0.1" || redirect.port === ""
    ) {
      return new Response("Error 400: invalid_request (loopback redirect expected)", {
        status: 400,
      });
    }
    if (p.get("client_id") !== this.#client.id) {
      return new Response("Error 401: invalid_client", { status: 401 });
    }
    if (
      p.get("response_type") !== "code" || p.get("code_challenge_method") !== "S256" ||
      !/^[A-Za-z0-9_-]{43}$/.test(p.get("code_challenge") ?? "") ||
      !(p.get("scope") ?? "").split(" ").includes(GMAIL_SEND_SCOPE)
    ) {
      return new Response("Error 400: invalid_request", { status: 400 });
    }
    this.lastCodeChallenge = p.get("code_challenge")!;
    const state = p.get("state");
    if (state !== null) redirect.searchParams.set("state", state);
    if (this.denyLogin) {
      redirect.searchParams.set("error", "access_denied");
    } else {
      const code = `fake-code-${randomHex(12)}`;
      this.#codes.set(code, { challenge: p.get("code_challenge")!, redirectUri });
      redirect.searchParams.set("code", code);
      redirect.searchParams.set("scope", GMAIL_SEND_SCOPE);
    }
    return new Response(null, { status: 302, headers: { location: redirect.toString() } });
  }

  #authorize(req: Request): TokenInfo | Response {
    const m = /^Bearer (\S+)$/.exec(req.headers.get("authorization") ?? "");
    const info = m ? this.#tokens.get(m[1]) : undefined;
    if (!info || this.rejectAllTokens || info.expiresAt <= this.#now()) {
      this.stats.unauthorized++;
      return new Response(
        errorJson(
          401,
          "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
          "authError",
        ),
        {
          status: 401,
          headers: {
            "content-type": "application/json; charset=UTF-8",
            "www-authenticate":
              'Bearer realm="https://accounts.google.com/", error="invalid_token"',
          },
        },
      );
    }
    return info;
  }

  async #batch(req: Request): Promise<Response> {
    this.stats.batchRequests++;
    const batch = this.stats.batchRequests;
    const auth = this.#authorize(req);
    if (auth instanceof Response) return auth;
    let inner: InnerRequest[];
    try {
      inner = parseBatchRequest(req.headers.get("content-type") ?? "", await req.text());
      if (inner.length > 100) throw new BadBatch("A batch may hold at most 100 calls");
    } catch (err) {
      if (!(err instanceof BadBatch)) throw err;
      return new Response(errorJson(400, err.message, "badRequest"), {
        status: 400,
        headers: { "content-type": "application/json; charset=UTF-8" },
      });
    }
    const answers = inner.map((r, i) => ({
      contentId: r.contentId,
      ...this.#answer(auth.user, r.userId, r.json, batch, i + 1, r.contentId),
    }));
    if (this.#o.shuffle ?? true) {
      for (let i = answers.length - 1; i > 0; i--) {
        const j = Math.floor(this.#random() * (i + 1));
        [answers[i], answers[j]] = [answers[j], answers[i]];
      }
    }
    const boundary = `batch_fake${randomHex(10)}`;
    let body = "";
    for (const a of answers) {
      let headers = "Content-Type: application/json; charset=UTF-8\r\nVary: Origin\r\n";
      for (const [k, v] of Object.entries(a.headers)) headers += `${k}: ${v}\r\n`;
      body +=
        `--${boundary}\r\nContent-Type: application/http\r\nContent-ID: <response-${a.contentId}>\r\n\r\n` +
        `HTTP/1.1 ${a.status} ${STATUS_TEXT[a.status] ?? "Error"}\r\n${headers}\r\n${a.body}\r\n`;
    }
    body += `--${boundary}--\r\n`;
    return new Response(body, {
      status: 200,
      headers: { "content-type": `multipart/mixed; boundary=${boundary}` },
    });
  }

  async #single(req: Request, userId: string): Promise<Response> {
    this.stats.singleRequests++;
    const auth = this.#authorize(req);
    if (auth instanceof Response) return auth;
    const a = this.#answer(auth.user, decodeURIComponent(userId), await req.text(), 0, 1, "single");
    return new Response(a.body, {
      status: a.status,
      headers: { "content-type": "application/json; charset=UTF-8", ...a.headers },
    });
  }

  /** The answer to one send call. */
  #answer(
    user: string,
    userId: string,
    json: string,
    batch: number,
    index: number,
    contentId: string,
  ): { status: number; body: string; headers: Record<string, string> } {
    this.stats.parts++;
    const reply = (status: number, body: string, headers: Record<string, string> = {}) => {
      this.stats.statuses[status] = (this.stats.statuses[status] ?? 0) + 1;
      return { status, body, headers };
    };
    if (userId !== "me" && userId.toLowerCase() !== user.toLowerCase()) {
      return reply(403, errorJson(403, `Delegation denied for ${user}`, "forbidden"));
    }
    let raw: unknown;
    try {
      raw = (JSON.parse(json) as { raw?: unknown }).raw;
    } catch {
      return reply(400, errorJson(400, "Invalid JSON payload received.", "parseError"));
    }
    if (typeof raw !== "string" || raw === "" || !BASE64URL.test(raw)) {
      return reply(
        400,
        errorJson(
          400,
          "Invalid value at 'message.raw' (TYPE_BYTES), Base64 decoding failed",
          "invalidArgument",
        ),
      );
    }
    const bytes = new Uint8Array(Buffer.from(raw, "base64url"));
    const head = new TextDecoder().decode(bytes.subarray(0, Math.min(bytes.length, 8192)));
    const to = /^To:[^\r\n]*?<?([^\s<>]+@[^\s<>]+?)>?\s*$/mi.exec(head)?.[1];
    const messageId = /^Message-ID:\s*(<[^>]+>)/mi.exec(head)?.[1];
    const key = messageId ?? raw;
    const seen = this.#seen.get(key) ?? 0;
    this.#seen.set(key, seen + 1);
    const custom = this.#o.onPart?.({ batch, index, contentId, user, to, seen });
    if (custom) {
      const body = custom.status < 300
        ? JSON.stringify({
          id: `fake${++this.#ids}`,
          threadId: `t${this.#ids}`,
          labelIds: ["SENT"],
        })
        : errorJson(
          custom.status,
          custom.message ?? STATUS_TEXT[custom.status] ?? "Error",
          custom.reason ?? "backendError",
        );
      return reply(custom.status, body, { ...custom.headers });
    }
    const accepted = this.#accepted.get(user) ?? 0;
    const limit = this.#o.mailSendingLimit;
    if (limit !== undefined && accepted >= limit) {
      const retry = new Date(this.#now() + 3_600_000).toISOString();
      return reply(
        429,
        errorJson(
          429,
          `User-rate limit exceeded.  Retry after ${retry} (Mail sending)`,
          "rateLimitExceeded",
        ),
      );
    }
    const quota = this.#o.quota ?? { units: 15_000, perMs: 60_000 };
    const cost = quota.cost ?? 100;
    const now = this.#now();
    const bucket = this.#buckets.get(user) ?? { units: quota.units, at: now };
    bucket.units = Math.min(
      quota.units,
      bucket.units + (now - bucket.at) * quota.units / quota.perMs,
    );
    bucket.at = now;
    this.#buckets.set(user, bucket);
    if (bucket.units < cost) {
      return reply(
        429,
        errorJson(
          429,
          "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user' of service 'gmail.googleapis.com'",
          "rateLimitExceeded",
        ),
      );
    }
    bucket.units -= cost;
    this.#accepted.set(user, accepted + 1);
    const id = `fake${(++this.#ids).toString(16)}`;
    this.received.push({ user, raw, bytes, messageId, to, id, batch, at: now });
    return reply(200, JSON.stringify({ id, threadId: id, labelIds: ["SENT"] }));
  }
}

/** A served fake and its URLs. */
export interface RunningGmailFake extends AsyncDisposable {
  readonly fake: GmailFake;
  /** Base URL: the API root (`--gmail-api-url`). */
  readonly url: string;
  /** Token endpoint (`--gmail-token-url`). */
  readonly tokenUrl: string;
  /** Consent screen for the login flow. */
  readonly authUrl: string;
  /** Stop serving. */
  close(): Promise<void>;
}

/** Serve a {@link GmailFake} on 127.0.0.1, on a free port. */
export function startGmailFake(options: GmailFakeOptions = {}): RunningGmailFake {
  const fake = new GmailFake(options);
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, fake.app.fetch);
  const url = `http://127.0.0.1:${server.addr.port}`;
  fake.baseUrl = url;
  const close = () => server.shutdown();
  return {
    fake,
    url,
    tokenUrl: `${url}/token`,
    authUrl: `${url}/o/oauth2/v2/auth`,
    close,
    [Symbol.asyncDispose]: close,
  };
}
