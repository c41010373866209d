/**
 * Number and duration formatting for the terminal.
 *
 * @module
 */

const intFormat = new Intl.NumberFormat("en-US");

/** `1234567` -> `"1,234,567"`. */
export function formatInt(n: number): string {
  return intFormat.format(n);
}

/** `1234` -> `"1.2 s"`, `75000` -> `"1 min 15 s"`, `450` -> `"450 ms"`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}
