/**
 * `mass-mailer gmail login`: the OAuth2 authorization-code flow for installed
 * apps, with PKCE (S256) and a loopback redirect on 127.0.0.1. It prints a
 * consent URL, receives `?code=` on a one-shot local listener, exchanges the
 * code for tokens and stores the refresh token in a file with mode 0600, in
 * Google's `authorized_user` JSON format (what `--gmail-credentials` reads).
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { GmailError } from "./error.ts";
import { GMAIL_SEND_SCOPE, GOOGLE_TOKEN_URL, postTokenForm } from "./oauth.ts";

/** Google's consent screen. */
export const GOOGLE_AUTH_URL = "https://accounts.google.com/o/oauth2/v2/auth";
/** How long the loopback listener waits for the redirect by default: 5 minutes. */
export const LOGIN_TIMEOUT_MS = 300_000;

/** Options of {@link loginInstalledApp}. */
export interface LoginOptions {
  /** The OAuth client id of a "Desktop app" client. */
  clientId: string;
  /** Its client secret. */
  clientSecret: string;
  /** Credentials file to write (mode 0600). */
  out: string;
  /** Called with the consent URL: print it (CLI) or follow it (tests). */
  onUrl: (url: string) => void | Promise<void>;
  /** Consent screen URL. Default Google's. */
  authUrl?: string;
  /** Token endpoint. Default Google's. */
  tokenUrl?: string;
  /** Loopback port; default 0 (any free port). */
  port?: number;
  /** Give up after this long without a redirect. Default 300,000 ms. */
  timeoutMs?: number;
  /** `fetch` for the code exchange. */
  fetch?: typeof fetch;
  /** Stops the wait early. */
  signal?: AbortSignal;
}

/** What {@link loginInstalledApp} stored. */
export interface LoginResult {
  /** The file written. */
  readonly file: string;
  /** Scopes Google granted, as it reported them. */
  readonly scope: string | undefined;
}

function base64url(bytes: Uint8Array | ArrayBuffer): string {
  return Buffer.from(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes)).toString(
    "base64url",
  );
}

/** A PKCE pair: a 43-character verifier and its S256 challenge (RFC 7636). */
export async function pkcePair(): Promise<{ verifier: string; challenge: string }> {
  const verifier = base64url(crypto.getRandomValues(new Uint8Array(32)));
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return { verifier, challenge: base64url(digest) };
}

const PAGE = (text: string) =>
  new Response(
    `<!doctype html><meta charset="utf-8"><title>mass-mailer</title><p>${text}</p>`,
    { headers: { "content-type": "text/html; charset=utf-8" } },
  );

/** Write `text` to `path` with mode 0600, atomically (temp file then rename). */
export async function writeSecretFile(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp-${Deno.pid}-${Date.now()}`;
  try {
    await Deno.writeTextFile(tmp, text, { mode: 0o600, createNew: true });
    await Deno.chmod(tmp, 0o600);
    await Deno.rename(tmp, path);
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    throw new GmailError(`Cannot write the credentials file ${path}: ${(err as Error).message}`, {
      code: "config",
      cause: err,
    });
  }
}

/**
 * Run the installed-app login: listen on 127.0.0.1, hand the consent URL to
 * `onUrl`, wait for Google's redirect, exchange the code (with the PKCE
 * verifier) and write the refresh token to `out` with mode 0600. Never
 * prints or returns a token.
 */
export async function loginInstalledApp(opts: LoginOptions): Promise<LoginResult> {
  if (!opts.clientId || !opts.clientSecret) {
    throw new TypeError("Gmail login needs the OAuth client id and secret of a Desktop app client");
  }
  const timeoutMs = opts.timeoutMs ?? LOGIN_TIMEOUT_MS;
  const tokenUrl = opts.tokenUrl ?? GOOGLE_TOKEN_URL;
  const { verifier, challenge } = await pkcePair();
  const state = base64url(crypto.getRandomValues(new Uint8Array(16)));

  let settle!: (r: { code: string } | { error: string }) => void;
  const redirected = new Promise<{ code: string } | { error: string }>((r) => settle = r);
  const stop = new AbortController();
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: opts.port ?? 0,
    signal: stop.signal,
    onListen() {},
  }, (req) => {
    const url = new URL(req.url);
    if (url.pathname !== "/") return new Response("Not found", { status: 404 });
    const p = url.searchParams;
    if (p.get("state") !== state) {
      return PAGE(
        "This sign-in link does not belong to the running mass-mailer login; start it again.",
      );
    }
    const error = p.get("error");
    if (error) {
      settle({ error });
      return PAGE("Sign-in was cancelled. You can close this tab.");
    }
    const code = p.get("code");
    if (!code) return new Response("Missing code", { status: 400 });
    settle({ code });
    return PAGE("Signed in. You can close this tab and return to mass-mailer.");
  });
  const redirectUri = `http://127.0.0.1:${server.addr.port}`;
  try {
    const consent = new URL(opts.authUrl ?? GOOGLE_AUTH_URL);
    consent.search = new URLSearchParams({
      client_id: opts.clientId,
      redirect_uri: redirectUri,
      response_type: "code",
      scope: GMAIL_SEND_SCOPE,
      code_challenge: challenge,
      code_challenge_method: "S256",
      state,
      access_type: "offline",
      prompt: "consent",
    }).toString();

    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(
          new GmailError(
            `Gmail login timed out after ${timeoutMs} ms without a redirect to ${redirectUri}; run it again and open the printed URL`,
            { code: "login" },
          ),
        );
      }, timeoutMs);
    });
    const aborted = new Promise<never>((_, reject) => {
      if (opts.signal?.aborted) reject(opts.signal.reason);
      opts.signal?.addEventListener("abort", () => reject(opts.signal!.reason), { once: true });
    });
    const shown = Promise.resolve().then(() => opts.onUrl(consent.toString())).then(
      () => new Promise<never>(() => {}),
    );
    let answer: { code: string } | { error: string };
    try {
      answer = await Promise.race([redirected, timedOut, aborted, shown]);
    } finally {
      clearTimeout(timer);
    }
    if ("error" in answer) {
      throw new GmailError(`Google sign-in did not grant access: ${answer.error}`, {
        code: "login",
      });
    }
    const json = await postTokenForm({
      grant_type: "authorization_code",
      code: answer.code,
      client_id: opts.clientId,
      client_secret: opts.clientSecret,
      redirect_uri: redirectUri,
      code_verifier: verifier,
    }, {
      tokenUrl,
      fetch: opts.fetch ?? globalThis.fetch,
      now: Date.now,
      source: "the OAuth client secret file",
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    const refreshToken = json.refresh_token;
    if (typeof refreshToken !== "string" || refreshToken === "") {
      throw new GmailError(
        "Google returned no refresh token; remove mass-mailer's access at https://myaccount.google.com/permissions and log in again",
        { code: "login" },
      );
    }
    await writeSecretFile(
      opts.out,
      JSON.stringify(
        {
          type: "authorized_user",
          client_id: opts.clientId,
          client_secret: opts.clientSecret,
          refresh_token: refreshToken,
        },
        null,
        2,
      ) + "\n",
    );
    return { file: opts.out, scope: typeof json.scope === "string" ? json.scope : undefined };
  } finally {
    stop.abort();
    await server.finished;
  }
}
