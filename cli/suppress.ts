/**
 * `--suppress FILE`: addresses never to mail (unsubscribes, hard bounces,
 * complaints). Rows with such an address end as `suppressed`.
 *
 * @module
 */
import { checkAddress, dedupeKey } from "../core/recipients.ts";
import { CliError, EXIT } from "./exit_codes.ts";
import { describeFsError } from "./message_flags.ts";

/**
 * Read a suppression list: one address per line, or a CSV whose first column
 * holds the address (a header line and lines without a valid address are
 * skipped). Returns a test by the same normalisation as duplicates use.
 */
export async function loadSuppression(path: string): Promise<(address: string) => boolean> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    throw new CliError(`Cannot read --suppress ${path}: ${describeFsError(error)}`, EXIT.INPUT);
  }
  const keys = new Set<string>();
  for (const raw of text.split(/\r\n|\r|\n/)) {
    const cell = raw.split(/[,;\t]/, 1)[0].trim().replace(/^"(.*)"$/, "$1");
    if (cell === "") continue;
    const check = checkAddress(cell);
    if (check.ok) keys.add(dedupeKey(check.address));
  }
  return (address: string) => keys.has(dedupeKey(address));
}
