/**
 * Seeded random inputs for tests, so a failing case can be run again.
 *
 * @module
 */

/** A seeded PRNG (mulberry32): the same seed gives the same numbers in [0, 1). */
export function seededRandom(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A random message body built from the pieces that trip encoders: spaces and
 * tabs at line ends, CRLF, a leading ".", "=", non-ASCII, long runs, controls.
 */
export function randomBodyText(next: () => number): string {
  const pieces = [
    "a",
    "b ",
    " ",
    "\t",
    "\r\n",
    ".",
    "=",
    "é",
    "東",
    "😀",
    "x".repeat(90),
    "\r\n.",
    "\x00",
    "\x7f",
  ];
  let s = "";
  const n = Math.floor(next() * 60);
  for (let i = 0; i < n; i++) s += pieces[Math.floor(next() * pieces.length)];
  return s;
}
