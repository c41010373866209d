/**
 * Microbenchmark: `MessageComposer.render()` alone, on the rows `mass-mailer
 * generate` writes (seed 1: non-ASCII names in 1/8 of the rows, non-ASCII
 * cities in 1/4), with the CLI benchmark's template and with the same
 * template plus an HTML part. Prints ns per row (process CPU: the best and
 * the median of many short samples; wall time for the best) and, with
 * `--v8-flags=--expose-gc`, bytes allocated per row (JS heap and ArrayBuffer
 * memory), split by rows whose merged values are all ASCII and rows with some
 * non-ASCII value (and those again by whether the name or only the city is
 * non-ASCII), and for all rows in CSV order (ns per row is also ms per
 * million rows). Each sample renders `--sample` rows of one kind; samples of
 * the versions alternate, so a burst of load elsewhere hits both.
 *
 * With `--baseline DIR` (a directory holding another version of core/, made by
 * `git archive <rev> core | tar -x -C /tmp/base`, then `--baseline /tmp/base/core`)
 * both versions run in the same process, rounds alternating, after checking
 * that they write the same bytes for a sample of rows.
 *
 * Usage:
 *   deno run -A --v8-flags=--expose-gc bench/render.ts [--rows N] [--rounds N] [--sample N]
 *     [--template text|text+html] [--groups ASCII,non-ASCII,...] [--baseline DIR]
 *
 * The machine may be busy: compare versions within one run, and prefer the
 * CPU column and repeated runs over one wall-time number.
 *
 * @module
 */
import process from "node:process";
import { parseArgs } from "node:util";
import { generateCsv } from "../cli/generate.ts";
import { MessageComposer } from "../core/message.ts";
import { RecipientReader } from "../core/recipients.ts";
import type { MessageTemplate } from "../core/template.ts";
import { joinChunks, type Outgoing, type Recipient } from "../core/types.ts";
import { BENCH_ARGS, table } from "./_measure.ts";

const { values: flags } = parseArgs({
  args: BENCH_ARGS,
  options: {
    rows: { type: "string", default: "1000000" },
    rounds: { type: "string", default: "12" },
    sample: { type: "string", default: "100000" },
    template: { type: "string" },
    groups: { type: "string" },
    baseline: { type: "string" },
  },
});
const ROWS = Number(flags.rows);
const ROUNDS = Number(flags.rounds);
const SAMPLE = Number(flags.sample);
if (!Number.isInteger(ROWS) || ROWS < 1) throw new RangeError(`Bad --rows ${flags.rows}`);
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) throw new RangeError(`Bad --rounds ${flags.rounds}`);
if (!Number.isInteger(SAMPLE) || SAMPLE < 1) throw new RangeError(`Bad --sample ${flags.sample}`);

/** What the benchmark needs of a composer (any version of core/message.ts). */
interface Composer {
  render(r: Recipient): Outgoing;
}
type ComposerClass = new (
  t: MessageTemplate,
  columns: readonly string[],
  opts?: { campaignId?: string; now?: () => number },
) => Composer;

const impls: { name: string; Composer: ComposerClass }[] = [];
if (flags.baseline !== undefined) {
  const dir = flags.baseline.replace(/\/$/, "");
  const url = new URL(`file://${await Deno.realPath(dir)}/message.ts`);
  const mod = await import(url.href);
  impls.push({ name: "baseline", Composer: mod.MessageComposer });
}
impls.push({ name: "current", Composer: MessageComposer });

const TEXT: MessageTemplate = {
  from: "A <a@example.com>",
  subject: "Hello {{name}}",
  toName: "{{name}}",
  text: "Hi {{name}},\n\nGreetings from {{city}}.\n",
};
const templates: { name: string; template: MessageTemplate }[] = [
  { name: "text", template: TEXT },
  {
    name: "text+html",
    template: { ...TEXT, html: "<p>Hi {{name}},</p>\n<p>Greetings from <b>{{city}}</b>.</p>\n" },
  },
].filter((t) => flags.template === undefined || t.name === flags.template);
if (templates.length === 0) {
  throw new RangeError(`Bad --template ${flags.template}: use text or text+html`);
}

// ---------------------------------------------------------------------------
// The rows, read the way the CLI reads them.

const t0 = performance.now();
const reader = new RecipientReader(ReadableStream.from(generateCsv({ rows: ROWS })));
const all: Recipient[] = [];
for await (const batch of reader) {
  for (const item of batch) if (item.kind === "recipient") all.push(item.recipient);
}
const columns = reader.columns;
// deno-lint-ignore no-control-regex -- the ASCII range is what this matches
const NON_ASCII = /[^\x00-\x7f]/;
const ascii = all.filter((r) => !r.values.some((v) => NON_ASCII.test(v)));
const nonAscii = all.filter((r) => r.values.some((v) => NON_ASCII.test(v)));
console.log(
  `${all.length} rows (${ascii.length} ASCII, ${nonAscii.length} non-ASCII) read in ${
    Math.round(performance.now() - t0)
  } ms`,
);
const nameColumn = columns.indexOf("name");
const groups = [
  { name: "ASCII", rows: ascii },
  { name: "non-ASCII", rows: nonAscii },
  { name: "  name", rows: nonAscii.filter((r) => NON_ASCII.test(r.values[nameColumn])) },
  { name: "  city only", rows: nonAscii.filter((r) => !NON_ASCII.test(r.values[nameColumn])) },
  { name: "all", rows: all },
].filter((g) => flags.groups === undefined || flags.groups.split(",").includes(g.name.trim()));

// ---------------------------------------------------------------------------
// Same bytes from every version (fixed clock and campaign; boundary normalised).

const decoder = new TextDecoder();
function text(m: Outgoing): string {
  const s = decoder.decode(joinChunks(m.data, m.size));
  const b = /boundary="([^"]+)"/.exec(s)?.[1];
  return b === undefined ? s : s.replaceAll(b, "BOUNDARY");
}
if (impls.length > 1) {
  for (const { name, template } of templates) {
    const opts = { campaignId: "bench", now: () => 1767225600000 };
    const [a, b] = impls.map((i) => new i.Composer(template, columns, opts));
    for (const g of [{ rows: ascii }, { rows: nonAscii }]) {
      for (const r of g.rows.slice(0, 5000)) {
        if (text(a.render(r)) !== text(b.render(r))) {
          throw new Error(`${name}: versions differ on line ${r.line}`);
        }
      }
    }
  }
  console.log("baseline and current write the same bytes for 5000 rows of each kind");
}

// ---------------------------------------------------------------------------
// Allocation per row: heap and ArrayBuffer growth over short blocks that
// start right after a minor GC (so no collection runs inside a block).

type Gc = (opts?: { type: "minor" | "major" }) => void;
const gc = (globalThis as { gc?: Gc }).gc;

function allocated(c: Composer, rows: readonly Recipient[]): [number, number] {
  const BLOCK = 200;
  let heap = 0;
  let external = 0;
  let counted = 0;
  for (let start = 0; start + BLOCK <= Math.min(rows.length, 40 * BLOCK); start += BLOCK) {
    gc!({ type: "minor" });
    const a = Deno.memoryUsage();
    for (let i = start; i < start + BLOCK; i++) c.render(rows[i]);
    const b = Deno.memoryUsage();
    // A collection ran after all (or freed slabs): the block does not count.
    if (b.heapUsed < a.heapUsed || b.external < a.external) continue;
    heap += b.heapUsed - a.heapUsed;
    external += b.external - a.external;
    counted += BLOCK;
  }
  // What two memoryUsage() calls cost by themselves.
  gc!({ type: "minor" });
  const a = Deno.memoryUsage();
  const b = Deno.memoryUsage();
  const blocks = counted / BLOCK;
  return [(heap - blocks * (b.heapUsed - a.heapUsed)) / counted, external / counted];
}

// ---------------------------------------------------------------------------
// Timing.

let sink = 0;
function time(c: Composer, rows: readonly Recipient[]): [number, number] {
  const cpu0 = process.cpuUsage();
  const w0 = performance.now();
  for (let i = 0; i < rows.length; i++) sink += c.render(rows[i]).size;
  const wall = performance.now() - w0;
  const cpu = process.cpuUsage(cpu0);
  return [(wall * 1e6) / rows.length, ((cpu.user + cpu.system) * 1e3) / rows.length];
}

interface Result {
  wall: number[];
  cpu: number[];
  heap: number;
  external: number;
}
const results = new Map<string, Result>();
const key = (impl: string, tpl: string, group: string) => `${impl}|${tpl}|${group}`;

for (const impl of impls) {
  for (const { name } of templates) {
    for (const g of groups) {
      results.set(key(impl.name, name, g.name), { wall: [], cpu: [], heap: NaN, external: NaN });
    }
  }
}

const composers = new Map<string, Composer>();
for (const impl of impls) {
  for (const { name, template } of templates) {
    const c = new impl.Composer(template, columns);
    for (const g of groups) time(c, g.rows.slice(0, 20000)); // warm up every shape
    composers.set(`${impl.name}|${name}`, c);
  }
}
for (let round = 0; round < ROUNDS; round++) {
  for (const { name } of templates) {
    for (const g of groups) {
      // A different stretch of rows each round, the same for every version.
      const from = (round * SAMPLE) % Math.max(1, g.rows.length - SAMPLE + 1);
      const rows = g.rows.slice(from, from + SAMPLE);
      const order = round % 2 === 0 ? impls : [...impls].reverse();
      for (const impl of order) {
        const [wall, cpu] = time(composers.get(`${impl.name}|${name}`)!, rows);
        const r = results.get(key(impl.name, name, g.name))!;
        r.wall.push(wall);
        r.cpu.push(cpu);
      }
    }
  }
}
// Allocation, measured last, with warm (optimised) code.
if (gc !== undefined) {
  for (const impl of impls) {
    for (const { name } of templates) {
      for (const g of groups) {
        const r = results.get(key(impl.name, name, g.name))!;
        [r.heap, r.external] = allocated(composers.get(`${impl.name}|${name}`)!, g.rows);
      }
    }
  }
}

const min = (xs: number[]) => Math.min(...xs);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rows: (string | number)[][] = [[
  "version",
  "template",
  "rows",
  "cpu ns/row",
  "cpu median",
  "wall ns/row",
  "heap B/row",
  "buffer B/row",
]];
for (const impl of impls) {
  for (const { name } of templates) {
    for (const g of groups) {
      const r = results.get(key(impl.name, name, g.name))!;
      rows.push([
        impl.name,
        name,
        g.name,
        Math.round(min(r.cpu)),
        Math.round(median(r.cpu)),
        Math.round(min(r.wall)),
        Number.isNaN(r.heap) ? "-" : Math.round(r.heap),
        Number.isNaN(r.external) ? "-" : Math.round(r.external),
      ]);
    }
  }
}
console.log();
console.log(table(rows));
console.log();
const has = (group: string) => groups.some((g) => g.name === group);
for (const { name } of templates) {
  if (has("ASCII") && has("non-ASCII")) {
    for (const impl of impls) {
      const a = min(results.get(key(impl.name, name, "ASCII"))!.cpu);
      const n = min(results.get(key(impl.name, name, "non-ASCII"))!.cpu);
      console.log(`${impl.name} ${name}: non-ASCII / ASCII = ${(n / a).toFixed(2)} (cpu, best)`);
    }
  }
  if (impls.length > 1) {
    for (const g of groups) {
      const base = results.get(key("baseline", name, g.name))!.cpu;
      const cur = results.get(key("current", name, g.name))!.cpu;
      console.log(
        `${name} ${g.name.trim()}: current / baseline = ${
          (min(cur) / min(base)).toFixed(2)
        } best, ${(median(cur) / median(base)).toFixed(2)} median`,
      );
    }
  }
}
if (gc === undefined) console.log("(run with --v8-flags=--expose-gc for bytes per row)");
if (sink === 0) console.log("");
