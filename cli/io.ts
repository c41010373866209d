/**
 * The command line's connection to the world, injectable so tests can call
 * `main()` in-process and still see what a user sees.
 *
 * @module
 */

/** Where the CLI reads and writes. */
export interface CliIo {
  /** Write to standard output. */
  stdout(text: string): void;
  /** Write to standard error (progress, summary, errors). */
  stderr(text: string): void;
  /** Whether stderr is a terminal (a redrawn progress bar instead of plain lines). */
  readonly stderrIsTty: boolean;
  /** Standard input as a stream (for `-`). */
  stdin(): ReadableStream<Uint8Array>;
  /** Environment lookup. */
  env(name: string): string | undefined;
  /**
   * Subscribe to Ctrl-C / SIGTERM; the handler gets the count of signals so
   * far. Returns an unsubscribe function. Absent in tests that do not need it.
   */
  onSignal?(handler: (count: number) => void): () => void;
}

/**
 * A writer of `file` that stops writing, without an error, once the reader has
 * gone (`mass-mailer send --preview ... | head`): what was left to say has no
 * reader, and the command's own exit code is the one that counts.
 */
function writerOf(file: { writeSync(p: Uint8Array): number }): (text: string) => void {
  let gone = false;
  return (text) => {
    if (gone) return;
    const bytes = new TextEncoder().encode(text);
    let at = 0;
    try {
      while (at < bytes.length) at += file.writeSync(bytes.subarray(at));
    } catch (error) {
      if (!(error instanceof Deno.errors.BrokenPipe)) throw error;
      gone = true;
    }
  };
}

/** The real process: Deno's stdio, environment and signals. */
export function processIo(): CliIo {
  return {
    stdout: writerOf(Deno.stdout),
    stderr: writerOf(Deno.stderr),
    stderrIsTty: Deno.stderr.isTerminal(),
    stdin: () => Deno.stdin.readable,
    env: (name) => Deno.env.get(name),
    onSignal(handler) {
      let count = 0;
      const on = () => handler(++count);
      const signals: Deno.Signal[] = Deno.build.os === "windows"
        ? ["SIGINT"]
        : ["SIGINT", "SIGTERM"];
      for (const s of signals) Deno.addSignalListener(s, on);
      return () => {
        for (const s of signals) Deno.removeSignalListener(s, on);
      };
    },
  };
}
