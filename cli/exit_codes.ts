/**
 * The exit codes of the `mass-mailer` command, one place for the code and the README.
 *
 * @module
 */

/** Exit codes; the README's table is generated from the same meanings. */
export const EXIT = {
  /** The run finished and every valid recipient was sent (invalid and duplicate rows are reported, not errors). */
  OK: 0,
  /** The run finished but some messages failed permanently (see the report). */
  FAILED_ROWS: 1,
  /** Bad command line, options, template or config: nothing was sent. */
  USAGE: 2,
  /** Bad input: the CSV cannot be read, or it has no valid address at all. */
  INPUT: 3,
  /** The transport could not work (connection, TLS, credentials). */
  TRANSPORT: 4,
  /** Stopped before the end (Ctrl-C, SIGTERM, error budget, quota): run the same command again to resume. */
  INCOMPLETE: 5,
} as const;

/** An error the CLI reports as one line with a chosen exit code. */
export class CliError extends Error {
  /** The exit code to use. */
  readonly code: number;
  /** Set once the command has printed its `--json` object (which carries this error). */
  inJson = false;
  /** Make an error that ends the command with `code`. */
  constructor(message: string, code: number, options?: ErrorOptions) {
    super(message, options);
    this.name = "CliError";
    this.code = code;
  }
}
