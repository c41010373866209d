/**
 * How a transport plugs into the command line: its flags, its help text and a
 * factory that builds it from parsed flags. `cli.ts` merges the flags of every
 * transport it knows; each transport module owns its own.
 *
 * @module
 */
import type { Transport } from "../core/types.ts";

/** A flag spec as `parseArgs` from `node:util` takes it. */
export interface FlagSpec {
  readonly type: "string" | "boolean";
  readonly multiple?: boolean;
  readonly short?: string;
}

/** Everything a transport factory may read: parsed flags and the environment. */
export interface TransportContext {
  /** Parsed flag values keyed by long name (`"smtp-host"`), strings or booleans. */
  readonly flags: Readonly<Record<string, string | boolean | string[] | undefined>>;
  /** Environment lookup (secrets come from here or from files, never from argv). */
  readonly env: (name: string) => string | undefined;
  /** Where human diagnostics go (stderr by default). */
  readonly log: (line: string) => void;
}

/** A transport as the CLI sees it. */
export interface TransportCli {
  /** The `--transport` value that selects it. */
  readonly name: string;
  /** Its own flags, all prefixed with its name (`smtp-host`, `gmail-user`). */
  readonly flags: Readonly<Record<string, FlagSpec>>;
  /** Help text for its flags: one flag a line, two leading spaces. */
  readonly help: string;
  /**
   * Build the transport. Throw `TypeError`/`RangeError` with a one-line message
   * for bad flag values; the CLI prints it and exits with the usage code.
   */
  create(ctx: TransportContext): Promise<Transport> | Transport;
  /**
   * Extra subcommands (`mass-mailer gmail login`): name -> handler taking the
   * remaining argv, returning an exit code.
   */
  readonly commands?: Readonly<
    Record<string, (args: string[], ctx: Omit<TransportContext, "flags">) => Promise<number>>
  >;
}
