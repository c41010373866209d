/**
 * The transports the command line knows. Add a transport by adding its
 * `TransportCli` here.
 *
 * @module
 */
import { fakeCli } from "../transports/fake_cli.ts";
import { gmailCli } from "../transports/gmail_cli.ts";
import { smtpCli } from "../transports/smtp_cli.ts";
import type { TransportCli } from "../transports/transport_cli.ts";
import { CliError, EXIT } from "./exit_codes.ts";

/** Every transport the CLI offers, by `--transport` name. */
export const TRANSPORTS: readonly TransportCli[] = [fakeCli, smtpCli, gmailCli];

/**
 * The transport `--transport` names, refusing a missing or unknown name and
 * flags that belong to another transport (`--smtp-host` with `--transport fake`).
 */
export function pickTransport(flags: Readonly<Record<string, unknown>>): TransportCli {
  const name = flags.transport;
  const names = TRANSPORTS.map((t) => t.name).join(", ");
  if (name === undefined) {
    throw new CliError(`Choose a transport with --transport (${names})`, EXIT.USAGE);
  }
  const chosen = TRANSPORTS.find((t) => t.name === name);
  if (chosen === undefined) {
    throw new CliError(`Unknown transport "${name}"; choose one of ${names}`, EXIT.USAGE);
  }
  for (const other of TRANSPORTS) {
    if (other === chosen) continue;
    for (const flag of Object.keys(other.flags)) {
      if (flags[flag] !== undefined && !(flag in chosen.flags)) {
        throw new CliError(
          `--${flag} belongs to --transport ${other.name}, not ${chosen.name}`,
          EXIT.USAGE,
        );
      }
    }
  }
  return chosen;
}
