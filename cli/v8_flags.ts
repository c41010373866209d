/**
 * The V8 heap settings `mass-mailer` ships with.
 *
 * V8 sizes its heap for the machine, not the job: on a 24 GiB machine its
 * semi-spaces grow to 32 MiB each, and after each full GC the old generation may
 * grow to up to 4x its live size before the next one. A big run keeps a quarter
 * of a million messages waiting at once, so much of what it allocates outlives
 * two scavenges: that is what makes V8 grow both, and most of a million-row
 * run's peak was that room, not live data (~30 MB live at a ~113 MB heap peak).
 * These two settings bound it (figures: README, Benchmarks).
 *
 * - `--max-semi-space-size=16`: semi-spaces of at most 16 MiB, what V8 itself
 *   picks for a 2 GiB heap limit (and Node.js documented as the 64-bit default
 *   for years). Smaller costs time: 8 MiB took ~0.1 s more per million rows, in
 *   scavenges.
 * - `--heap-growing-percent=20`: after a full GC, let the old generation grow by
 *   20% (or V8's minimum step) before the next, instead of up to 300%. The live
 *   heap is small (the duplicate table and message bytes are outside it), so
 *   full GCs stay short.
 *
 * A runtime flag cannot be set by the program once V8 runs (`node:v8`
 * `setFlagsFromString` of these was measured to change nothing), so every
 * launcher passes them: `deno task compile` bakes them into the binary, the
 * `deno task` entries pass `--v8-flags`, and the benchmarks measure with them (and
 * without, for comparison). A test checks that all of these agree with this list.
 *
 * @module
 */

/** V8 flags every `mass-mailer` launcher passes (see the module doc for why). */
export const V8_FLAGS: readonly string[] = [
  "--max-semi-space-size=16",
  "--heap-growing-percent=20",
];

/** `V8_FLAGS` as one `deno run` / `deno compile` argument. */
export const V8_FLAGS_ARG = `--v8-flags=${V8_FLAGS.join(",")}`;
