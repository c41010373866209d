/**
 * Bearer-token authentication for the HTTP service.
 *
 * The presented token and the configured one are both hashed with SHA-256 and
 * the two digests compared in constant time, so neither the content nor the
 * length of the token leaks through timing.
 *
 * @module
 */
import { HttpError } from "./errors.ts";

/** The shortest token the server accepts (a 32-hex-digit random value is 32 characters). */
export const MIN_TOKEN_LENGTH = 16;

const encoder = new TextEncoder();

async function sha256(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(text)));
}

/** Compare two byte arrays in time that depends only on their lengths. */
export function timingSafeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

/** Checks `Authorization` header values against one configured token. */
export class TokenCheck {
  readonly #expected: Promise<Uint8Array>;

  /**
   * @throws {RangeError} when the token is shorter than {@link MIN_TOKEN_LENGTH}
   *   or has characters a bearer token cannot carry.
   */
  constructor(token: string) {
    if (token.length < MIN_TOKEN_LENGTH) {
      throw new RangeError(
        `The auth token is ${token.length} characters; use at least ${MIN_TOKEN_LENGTH} ` +
          `(e.g. the output of: openssl rand -hex 32)`,
      );
    }
    if (!/^[A-Za-z0-9\-._~+/]+=*$/.test(token)) {
      throw new RangeError(
        "The auth token has characters a bearer token cannot carry; " +
          "use letters, digits and - . _ ~ + / (e.g. the output of: openssl rand -hex 32)",
      );
    }
    this.#expected = sha256(token);
  }

  /** True when `authorization` is `Bearer <the token>` (scheme case-insensitive). */
  async verify(authorization: string | null | undefined): Promise<boolean> {
    const presented = parseBearer(authorization);
    // Hash even when absent so the work done does not depend on the input.
    const digest = await sha256(presented ?? "");
    const expected = await this.#expected;
    return timingSafeEqual(digest, expected) && presented !== undefined;
  }

  /** Resolve when the request is authorised; otherwise throw a 401 `unauthorized`. */
  async require(authorization: string | null | undefined): Promise<void> {
    if (await this.verify(authorization)) return;
    throw new HttpError(
      "unauthorized",
      authorization
        ? "Wrong bearer token"
        : "Missing bearer token: send Authorization: Bearer <token>",
      { headers: { "www-authenticate": 'Bearer realm="mass-mailer"' } },
    );
  }
}

/** The token of an `Authorization: Bearer <token>` value, or undefined. */
export function parseBearer(authorization: string | null | undefined): string | undefined {
  if (!authorization) return undefined;
  const m = /^Bearer +(\S+) *$/i.exec(authorization);
  return m === null ? undefined : m[1];
}
