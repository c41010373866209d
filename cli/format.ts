/**
 * Number and duration formatting for the terminal.
 *
 * @module
 */

/**
 * `1234567` -> `"1,234,567"`. By hand for whole numbers: building an
 * `Intl.NumberFormat` costs ~10 ms at start-up, 0.4% of a million-row run.
 */
export function formatInt(n: number): string {
  if (!Number.isSafeInteger(n)) return n.toLocaleString("en-US");
  const digits = String(Math.abs(n));
  let out = digits.slice(0, ((digits.length - 1) % 3) + 1);
  for (let i = out.length; i < digits.length; i += 3) out += "," + digits.slice(i, i + 3);
  return n < 0 ? "-" + out : out;
}

/** `1234` -> `"1.2 s"`, `75000` -> `"1 min 15 s"`, `450` -> `"450 ms"`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}
