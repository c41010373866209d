/**
 * `Idempotency-Key`: one key, one ledger. A request that carries a key runs
 * on that key's ledger, so the same request sent again (after a dropped
 * connection, a timeout, a crash) skips every row that already has a final
 * outcome and sends only the rest; a complete replay sends nothing and reports
 * the earlier outcomes.
 *
 * @module
 */
import type { CampaignStart, CampaignSummary } from "../core/campaign.ts";
import type { RowOutcome, RowStatus } from "../core/types.ts";
import { HttpError } from "./errors.ts";

/** Counts of rows by final status. */
export type StatusCounts = Record<RowStatus, number>;

/** What the store needs to know about the run it opens a journal for. */
export interface JournalRequest {
  /** The validated key. */
  readonly key: string;
  /** The transport name (recorded in the ledger). */
  readonly transport: string;
}

/** The ledger of one key, open (and locked) for one run. */
export interface RunJournal {
  /**
   * A stable campaign id derived from the key, so a resumed row gets the same
   * Message-ID as in the first attempt (receivers can drop the copy).
   */
  readonly campaignId: string;
  /** The earlier final status of a row, if any. */
  previous(line: number): RowStatus | undefined;
  /** Rows that had a final outcome before this run, by status. */
  readonly earlier: Readonly<StatusCounts>;
  /**
   * Called when the columns are known, before any send: refuse (throw
   * {@link HttpError} `idempotency_mismatch`) when the key was used for a
   * different message or CSV layout.
   */
  begin(start: CampaignStart): Promise<void> | void;
  /** Record one final outcome (durably, in batches). */
  record(outcome: RowOutcome): void;
  /** Flush, sync and unlock. */
  close(summary?: CampaignSummary): Promise<void>;
}

/** Opens the journal of a key. */
export interface IdempotencyStore {
  /**
   * Open and lock the journal of `request.key`. Throws {@link HttpError}
   * `idempotency_in_progress` while another run holds it.
   */
  open(request: JournalRequest): Promise<RunJournal>;
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

/** Zero counts for every status. */
export function emptyCounts(): StatusCounts {
  return { sent: 0, failed: 0, invalid: 0, duplicate: 0, suppressed: 0 };
}
