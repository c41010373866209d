/**
 * `Idempotency-Key`: one key, one ledger (core/ledger.ts). A request that
 * carries a key runs on that key's ledger, so the same request sent again
 * (after a dropped connection, a timeout, a server restart) skips every row
 * that already has a final outcome and sends only the rest; a complete replay
 * sends nothing and reports the earlier outcomes.
 *
 * - The ledger file is `<dir>/<sha256(key)>.csv` (the key itself never names a
 *   file), with the ledger's lock beside it: while one run holds a key, a
 *   second request with that key gets 409 `idempotency_in_progress`, in this
 *   process or another one sharing the directory.
 * - The campaign id (and so every Message-ID) is derived from the key, so a
 *   row sent again after a crash carries the same Message-ID.
 * - The message and the recipient options are fingerprinted: the same key
 *   with another message gets 422 `idempotency_mismatch`. The CSV arrives as
 *   a stream and cannot be hashed up front, so the ledger checks every row's
 *   address against the one recorded for its line instead; a different CSV
 *   under the same key stops at its first differing row with that code.
 *
 * @module
 */
import { fingerprintTemplate } from "../core/fingerprint.ts";
import { type Ledger, LedgerError, openLedger } from "../core/ledger.ts";
import { LockError } from "../core/lock.ts";
import type { RecipientOptions } from "../core/recipients.ts";
import type { MessageTemplate } from "../core/template.ts";
import { HttpError } from "./errors.ts";

/** What the store needs to know about the run it opens a ledger for. */
export interface JournalRequest {
  /** The validated key. */
  readonly key: string;
  /** The transport name (recorded in the ledger). */
  readonly transport: string;
  /** The message, fingerprinted with the recipient options. */
  readonly template: MessageTemplate;
  /** The recipient options (column, header, delimiter). */
  readonly recipients: RecipientOptions;
  /** Called once if writing the ledger fails; the run must stop. */
  readonly onError: (error: LedgerError) => void;
}

/** Opens the ledger of a key. */
export interface IdempotencyStore {
  /**
   * Open and lock the ledger of `request.key`. Throws {@link HttpError}
   * `idempotency_in_progress` while another run holds it, and
   * `idempotency_mismatch` when the key was used with another message.
   */
  open(request: JournalRequest): Promise<Ledger>;
}

const KEY = /^[A-Za-z0-9._:\-]{1,128}$/;

/** Check an `Idempotency-Key` header value; throws 400 `bad_idempotency_key`. */
export function checkIdempotencyKey(value: string): string {
  if (!KEY.test(value)) {
    throw new HttpError(
      "bad_idempotency_key",
      "Idempotency-Key must be 1 to 128 characters of letters, digits and . _ : - (a UUID works)",
    );
  }
  return value;
}

/** SHA-256 of the key in hex: the key's file name and campaign id never contain the key itself. */
export async function keyDigest(key: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(key));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** A store of one ledger file per key under `dir` (created when first needed). */
export function createIdempotencyStore(dir: string): IdempotencyStore {
  return {
    async open(request: JournalRequest): Promise<Ledger> {
      const digest = await keyDigest(request.key);
      await Deno.mkdir(dir, { recursive: true });
      const { column, header, delimiter } = request.recipients;
      try {
        return await openLedger(`${dir}/${digest}.csv`, {
          fingerprint: {
            template: fingerprintTemplate({
              template: request.template,
              column,
              header,
              delimiter,
            }),
          },
          campaignId: `k${digest.slice(0, 20)}`,
          onError: request.onError,
          info: { transport: request.transport, via: "http" },
        });
      } catch (error) {
        throw toHttpError(error);
      }
    },
  };
}

/** Map a ledger or lock error to the HTTP refusal a client can act on. */
export function toHttpError(error: unknown): unknown {
  if (error instanceof LockError && error.holder !== undefined) {
    return new HttpError(
      "idempotency_in_progress",
      "A request with this Idempotency-Key is still running; wait for it to end, then retry",
      { headers: { "retry-after": "5" } },
    );
  }
  if (error instanceof LedgerError && error.kind === "changed") {
    return new HttpError(
      "idempotency_mismatch",
      "This Idempotency-Key was used with another message or CSV; use a new key for a new campaign",
    );
  }
  return error;
}
