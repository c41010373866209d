/**
 * Fingerprints that tell whether a resumed run has the same input and the same
 * message as the run that wrote the ledger.
 *
 * - {@link fingerprintFile}: SHA-256 of a file's bytes and its size, read once
 *   up front in 1 MiB blocks (about 45 ms for a 42 MB, 1M-row CSV here).
 * - {@link fingerprintTemplate}: SHA-256 of the template and of the options
 *   that decide which row is which (address column, header row, delimiter),
 *   as canonical JSON (keys sorted), so the same message gives the same
 *   fingerprint whatever the flag order or config file layout.
 * - {@link hashAddress}: a 53-bit hash of one address, kept per line in the
 *   ledger so that rows streamed from stdin (which cannot be hashed up front)
 *   are checked one by one against what the ledger recorded for their line.
 *
 * @module
 */
import { createHash } from "node:crypto";

/** Fingerprint of a file: `sha256:<hex>:<size in bytes>`. Throws what `Deno.open` throws. */
export async function fingerprintFile(path: string | URL): Promise<string> {
  const file = await Deno.open(path, { read: true });
  try {
    const hash = createHash("sha256");
    const buffer = new Uint8Array(1 << 20);
    let size = 0;
    for (;;) {
      const n = await file.read(buffer);
      if (n === null) break;
      hash.update(buffer.subarray(0, n));
      size += n;
    }
    return `sha256:${hash.digest("hex")}:${size}`;
  } finally {
    file.close();
  }
}

/** JSON with object keys sorted at every level; `undefined` members are dropped. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v) => {
    if (v === null || typeof v !== "object" || Array.isArray(v)) return v;
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) out[k] = (v as Record<string, unknown>)[k];
    return out;
  });
}

/**
 * Fingerprint of what every message is made from: `sha256:<hex>` of the
 * canonical JSON of `parts` (the template, the recipient options, anything
 * else that changes what a row becomes).
 */
export function fingerprintTemplate(parts: Record<string, unknown>): string {
  return `sha256:${createHash("sha256").update(canonicalJson(parts)).digest("hex")}`;
}

/**
 * A 53-bit hash of `address` (cyrb53: two 32-bit multiply-xor lanes, no
 * allocation), exact as a JS number. CR and LF hash like a space, because the
 * ledger writes them as spaces. For n addresses the chance that any two share
 * a hash is about n² / 2^54 (6e-5 for a million).
 */
export function hashAddress(address: string): number {
  let a = 0xdeadbeef ^ address.length;
  let b = 0x41c6ce57 ^ address.length;
  for (let i = 0; i < address.length; i++) {
    let c = address.charCodeAt(i);
    if (c === 10 || c === 13) c = 32;
    a = Math.imul(a ^ c, 2654435761);
    b = Math.imul(b ^ c, 1597334677);
  }
  a = Math.imul(a ^ (a >>> 16), 2246822507);
  a ^= Math.imul(b ^ (b >>> 13), 3266489909);
  b = Math.imul(b ^ (b >>> 16), 2246822507);
  b ^= Math.imul(a ^ (a >>> 13), 3266489909);
  return 4294967296 * (2097151 & b) + (a >>> 0);
}
