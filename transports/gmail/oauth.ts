/**
 * OAuth2 for the Gmail transport: access tokens from a refresh token or from
 * a service account with domain-wide delegation (a JWT signed with RS256 via
 * WebCrypto, through `jose`), cached and refreshed before they expire.
 *
 * Tokens and secrets never appear in messages or logs.
 *
 * @module
 */
// deno-lint-ignore no-import-prefix -- the project imports npm packages inline (no import map)
import { importPKCS8, SignJWT } from "npm:jose@^5";
import { GmailError } from "./error.ts";

/** Google's OAuth2 token endpoint. */
export const GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token";
/** The only scope the transport needs. */
export const GMAIL_SEND_SCOPE = "https://www.googleapis.com/auth/gmail.send";
/** Refresh a cached token this long before it expires. */
export const REFRESH_MARGIN_MS = 60_000;

/** Installed-app credentials with a refresh token (`authorized_user` JSON). */
export interface RefreshTokenCredentials {
  readonly kind: "refresh-token";
  readonly clientId: string;
  readonly clientSecret: string;
  readonly refreshToken: string;
}

/** A service account key with domain-wide delegation (`service_account` JSON). */
export interface ServiceAccountCredentials {
  readonly kind: "service-account";
  /** The account's `client_email`: the JWT issuer. */
  readonly clientEmail: string;
  /** PKCS#8 PEM private key (`private_key`). */
  readonly privateKey: string;
  /** `private_key_id`, sent as the JWT `kid`. */
  readonly privateKeyId?: string;
}

/** Either kind of Gmail credentials. */
export type GmailCredentials = RefreshTokenCredentials | ServiceAccountCredentials;

/** What a token request needs besides the credentials. */
export interface TokenRequestContext {
  /** Token endpoint URL. */
  readonly tokenUrl: string;
  /** `fetch` to use. */
  readonly fetch: typeof fetch;
  /** Clock in ms since the epoch (JWT `iat`/`exp`). */
  readonly now: () => number;
  /** Where the credentials came from, for messages: `"the file creds.json"`. */
  readonly source: string;
  readonly signal?: AbortSignal;
}

/** A fresh access token and how long it lives. */
export interface AccessToken {
  readonly token: string;
  /** Expiry, on the context's clock (ms). */
  readonly expiresAt: number;
}

function asObject(value: unknown): Record<string, unknown> | undefined {
  return value !== null && typeof value === "object" && !Array.isArray(value)
    ? value as Record<string, unknown>
    : undefined;
}

function stringField(obj: Record<string, unknown>, key: string, where: string): string {
  const value = obj[key];
  if (typeof value !== "string" || value === "") {
    throw new TypeError(`${where} has no "${key}" string`);
  }
  return value;
}

/**
 * Read refresh-token credentials from parsed JSON: Google's `authorized_user`
 * format (`client_id`, `client_secret`, `refresh_token`), as written by
 * `mass-mailer gmail login`. `where` names the source in errors.
 */
export function refreshCredentialsFromJson(json: unknown, where: string): RefreshTokenCredentials {
  const obj = asObject(json);
  if (!obj) throw new TypeError(`${where} is not a JSON object`);
  if (obj.type === "service_account") {
    throw new TypeError(`${where} is a service account key: pass it with --gmail-service-account`);
  }
  return {
    kind: "refresh-token",
    clientId: stringField(obj, "client_id", where),
    clientSecret: stringField(obj, "client_secret", where),
    refreshToken: stringField(obj, "refresh_token", where),
  };
}

/** Read a service account key from parsed JSON (`type: "service_account"`). */
export function serviceAccountFromJson(json: unknown, where: string): ServiceAccountCredentials {
  const obj = asObject(json);
  if (!obj) throw new TypeError(`${where} is not a JSON object`);
  if (obj.type !== "service_account") {
    throw new TypeError(
      `${where} is not a service account key (its "type" is not "service_account")`,
    );
  }
  const privateKey = stringField(obj, "private_key", where);
  if (!privateKey.includes("-----BEGIN PRIVATE KEY-----")) {
    throw new TypeError(`${where} has a "private_key" that is not a PKCS#8 PEM key`);
  }
  const id = obj.private_key_id;
  return {
    kind: "service-account",
    clientEmail: stringField(obj, "client_email", where),
    privateKey,
    ...(typeof id === "string" && id !== "" ? { privateKeyId: id } : {}),
  };
}

/** Read and parse a JSON credentials file; errors name the file, never its content. */
export async function readJsonFile(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    throw new TypeError(`Cannot read ${path}: ${(err as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new TypeError(`${path} is not valid JSON`);
  }
}

/** Sign the service-account assertion for `user` (RS256, at most one hour). */
export async function signServiceAccountJwt(
  creds: ServiceAccountCredentials,
  user: string,
  audience: string,
  nowMs: number,
): Promise<string> {
  let key: CryptoKey;
  try {
    key = await importPKCS8(creds.privateKey, "RS256");
  } catch (err) {
    throw new GmailError(
      `Cannot read the service account's private key: ${(err as Error).message}`,
      { code: "config", cause: err },
    );
  }
  const iat = Math.floor(nowMs / 1000);
  return await new SignJWT({ scope: GMAIL_SEND_SCOPE })
    .setProtectedHeader({
      alg: "RS256",
      typ: "JWT",
      ...(creds.privateKeyId ? { kid: creds.privateKeyId } : {}),
    })
    .setIssuer(creds.clientEmail)
    .setSubject(user)
    .setAudience(audience)
    .setIssuedAt(iat)
    .setExpirationTime(iat + 3600)
    .sign(key);
}

/** POST a form to the token endpoint and read `access_token` and `expires_in`. */
export async function postTokenForm(
  form: Record<string, string>,
  ctx: TokenRequestContext,
  user?: string,
): Promise<Record<string, unknown>> {
  let res: Response;
  try {
    res = await ctx.fetch(ctx.tokenUrl, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", accept: "application/json" },
      body: new URLSearchParams(form).toString(),
      signal: ctx.signal,
    });
  } catch (err) {
    if (ctx.signal?.aborted) throw err;
    throw new GmailError(
      `Cannot reach the token endpoint ${ctx.tokenUrl}: ${(err as Error).message}`,
      { code: "token", cause: err, ...(user ? { user } : {}) },
    );
  }
  const text = await res.text();
  let json: Record<string, unknown> | undefined;
  try {
    json = asObject(JSON.parse(text));
  } catch {
    json = undefined;
  }
  if (!res.ok || !json) {
    const error = typeof json?.error === "string" ? json.error : `HTTP ${res.status}`;
    const detail = typeof json?.error_description === "string"
      ? ` (${json.error_description})`
      : "";
    const forUser = user ? ` for ${user}` : "";
    throw new GmailError(
      `Google refused the access token request${forUser}: ${error}${detail}; check the credentials in ${ctx.source}`,
      { code: "auth", status: res.status, ...(user ? { user } : {}) },
    );
  }
  return json;
}

/** Exchange credentials for a fresh access token acting as `user`. */
export async function fetchAccessToken(
  creds: GmailCredentials,
  user: string,
  ctx: TokenRequestContext,
): Promise<AccessToken> {
  const started = ctx.now();
  const form: Record<string, string> = creds.kind === "refresh-token"
    ? {
      grant_type: "refresh_token",
      client_id: creds.clientId,
      client_secret: creds.clientSecret,
      refresh_token: creds.refreshToken,
    }
    : {
      grant_type: "urn:ietf:params:oauth:grant-type:jwt-bearer",
      assertion: await signServiceAccountJwt(creds, user, ctx.tokenUrl, started),
    };
  const json = await postTokenForm(form, ctx, creds.kind === "service-account" ? user : undefined);
  const token = json.access_token;
  if (typeof token !== "string" || token === "") {
    throw new GmailError(
      `The token endpoint ${ctx.tokenUrl} answered without an access_token; check --gmail-token-url`,
      { code: "token" },
    );
  }
  const expiresIn = typeof json.expires_in === "number" && json.expires_in > 0
    ? json.expires_in
    : 3600;
  return { token, expiresAt: started + expiresIn * 1000 };
}

/**
 * One mailbox's access token, fetched on first use, reused until shortly
 * before it expires, and refreshed once for any number of concurrent callers.
 */
export class TokenCache {
  readonly #fetch: (signal?: AbortSignal) => Promise<AccessToken>;
  readonly #now: () => number;
  readonly #marginMs: number;
  #current: AccessToken | undefined;
  #pending: Promise<AccessToken> | undefined;

  /** Cache tokens from `fetchToken`; refresh `marginMs` (default 60 s) before expiry. */
  constructor(
    fetchToken: (signal?: AbortSignal) => Promise<AccessToken>,
    now: () => number,
    marginMs = REFRESH_MARGIN_MS,
  ) {
    this.#fetch = fetchToken;
    this.#now = now;
    this.#marginMs = marginMs;
  }

  /** A token valid for at least the margin, fetching one if needed. */
  async token(signal?: AbortSignal): Promise<string> {
    const current = this.#current;
    if (current && current.expiresAt - this.#marginMs > this.#now()) return current.token;
    return (await this.#refresh(signal)).token;
  }

  /**
   * Replace `rejected` (a token the API refused) with a fresh one. Callers that
   * hold the same rejected token share one refresh; a token already replaced is
   * not refreshed again.
   */
  async refresh(rejected: string, signal?: AbortSignal): Promise<string> {
    if (this.#current && this.#current.token !== rejected) return this.#current.token;
    return (await this.#refresh(signal)).token;
  }

  #refresh(signal?: AbortSignal): Promise<AccessToken> {
    if (!this.#pending) {
      this.#pending = this.#fetch(signal).then(
        (fresh) => {
          this.#current = fresh;
          this.#pending = undefined;
          return fresh;
        },
        (err) => {
          this.#pending = undefined;
          throw err;
        },
      );
    }
    return this.#pending;
  }
}
