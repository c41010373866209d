/**
 * Build the single `mass-mailer` binary with `deno compile`.
 *
 * `deno compile` downloads Deno's runtime (denort) the first time. Where that
 * download is not reachable this says so plainly instead of passing for a build.
 *
 * Usage: deno task compile [-- OUTPUT]
 *
 * @module
 */
import { V8_FLAGS_ARG } from "../cli/v8_flags.ts";

/** The permissions the CLI needs (the `mass-mailer` task in deno.json grants the same). */
export const PERMISSIONS: readonly string[] = [
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-net",
  "--allow-sys=hostname",
  "--allow-run",
];

/** The `deno compile` arguments that build the binary at `output`. */
export function compileArgs(output: string): string[] {
  return [
    "compile",
    // Baked into the binary: the heap settings mass-mailer ships with (cli/v8_flags.ts).
    V8_FLAGS_ARG,
    ...PERMISSIONS,
    // The worker reader's module is loaded by URL at run time, so it must be embedded by name.
    "--include",
    new URL("../core/recipients_worker.ts", import.meta.url).pathname,
    "--output",
    output,
    new URL("../cli.ts", import.meta.url).pathname,
  ];
}

/** Build, check the binary runs, and exit (2 when the runtime download is unreachable). */
async function build(output: string): Promise<never> {
  const args = compileArgs(output);
  console.error(`Running: deno ${args.join(" ")}`);
  const out = await new Deno.Command(Deno.execPath(), { args, stdout: "inherit", stderr: "piped" })
    .output();
  const stderr = new TextDecoder().decode(out.stderr);
  if (out.code === 0) {
    const probe = await new Deno.Command(output, { args: ["--version"] }).output();
    const version = new TextDecoder().decode(probe.stdout).trim();
    if (probe.code !== 0) {
      console.error(`Built ${output}, but it did not run: exit ${probe.code}`);
      Deno.exit(1);
    }
    console.error(`Built ${output}: ${version}`);
    Deno.exit(0);
  }
  if (/dns error|failed to lookup|denort|download/i.test(stderr)) {
    console.error(
      "Cannot build the binary here: deno compile must download Deno's runtime (denort), " +
        "and that download is not reachable from this machine. The code is compile-ready; " +
        "run this task where the download works.",
    );
    Deno.exit(2);
  }
  console.error(stderr.trim());
  Deno.exit(out.code);
}

/** The output path from the script's arguments (`deno task compile -- PATH` passes the `--`). */
export function outputOf(args: readonly string[]): string {
  const rest = args[0] === "--" ? args.slice(1) : args;
  return rest[0] ?? "mass-mailer";
}

if (import.meta.main) await build(outputOf(Deno.args));
