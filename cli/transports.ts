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

/** Every transport the CLI offers, by `--transport` name. */
export const TRANSPORTS: readonly TransportCli[] = [fakeCli, smtpCli, gmailCli];
