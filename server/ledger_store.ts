/**
 * Idempotency ledgers on disk (placeholder until core/ledger.ts lands).
 *
 * @module
 */
import { HttpError } from "./errors.ts";
import type { IdempotencyStore } from "./idempotency.ts";

/** An idempotency store keeping one ledger per key under `dir`. */
export function createIdempotencyStore(dir: string): IdempotencyStore {
  return {
    open() {
      return Promise.reject(
        new HttpError(
          "idempotency_unavailable",
          `Idempotency ledgers in ${dir} are not available yet`,
        ),
      );
    },
  };
}
