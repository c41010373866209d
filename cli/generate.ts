/**
 * `mass-mailer generate`: write a synthetic recipient CSV (for the demo,
 * benchmarks and tests). Addresses are unique and deterministic for a seed.
 *
 * @module
 */

/** Options of {@link generateCsv}. */
export interface GenerateOptions {
  /** Data rows to write (the header row comes on top). */
  readonly rows: number;
  /** Seed for the names; the same seed writes the same file. Default 1. */
  readonly seed?: number;
  /** Domain of the addresses. Default "example.com". */
  readonly domain?: string;
}

const FIRST = [
  "Ann",
  "Bob",
  "Chloé",
  "Dmitri",
  "Eve",
  "Fatima",
  "Grace",
  "Hiro",
  "Ingrid",
  "Jürgen",
  "Kofi",
  "Lena",
  "Mateo",
  "Noor",
  "Olga",
  "Priya",
];
const CITIES = ["Berlin", "Köln", "Lagos", "Lima", "Oslo", "Paris", "São Paulo", "Tokyo"];

/** Yield the CSV as UTF-8 chunks of about 1 MiB: header `email,name,city`, then `rows` rows. */
export async function* generateCsv(options: GenerateOptions): AsyncGenerator<Uint8Array> {
  const { rows } = options;
  if (!Number.isInteger(rows) || rows < 0) {
    throw new RangeError(`Invalid row count ${rows}: use a whole number >= 0`);
  }
  const domain = options.domain ?? "example.com";
  let state = (options.seed ?? 1) >>> 0 || 1;
  const enc = new TextEncoder();
  let text = "email,name,city\n";
  for (let i = 1; i <= rows; i++) {
    // xorshift32: cheap, deterministic names.
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    const r = state >>> 0;
    const first = FIRST[r & 15];
    const city = CITIES[(r >>> 4) & 7];
    text += `user${i}@${domain},${first} ${i},${city}\n`;
    if (text.length > 1 << 20) {
      yield enc.encode(text);
      text = "";
    }
  }
  if (text !== "") yield enc.encode(text);
}

/** Write the generated CSV to a file (or stdout for "-"). */
export async function writeGenerated(path: string, options: GenerateOptions): Promise<void> {
  const file = path === "-"
    ? Deno.stdout
    : await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    for await (const chunk of generateCsv(options)) {
      let at = 0;
      while (at < chunk.length) at += await file.write(chunk.subarray(at));
    }
  } finally {
    if (file !== Deno.stdout) (file as Deno.FsFile).close();
  }
}
