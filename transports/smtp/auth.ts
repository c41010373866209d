/**
 * SMTP AUTH (RFC 4954): PLAIN, LOGIN and XOAUTH2. Secrets only travel inside
 * commands marked secret, which the transcript redacts.
 *
 * @module
 */
import { SmtpError } from "./error.ts";
import type { SmtpAuth, SmtpAuthMethod } from "./options.ts";
import { formatReply, type Reply } from "./reply.ts";

/** What authentication needs from a connection: send one line, get its reply. */
export interface CommandChannel {
  /** Send `line` (without CRLF) and resolve with the reply; `secret` lines are redacted in transcripts. */
  command(line: string, secret?: boolean): Promise<Reply>;
}

const encoder = new TextEncoder();

/** Base64 of the UTF-8 bytes of `text`. */
export function base64Utf8(text: string): string {
  const bytes = encoder.encode(text);
  let bin = "";
  for (let i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
  return btoa(bin);
}

/**
 * The mechanism to use: the one forced by `auth.method`, else XOAUTH2 with a
 * token, else PLAIN, else LOGIN, whichever the server offers.
 */
export function chooseMechanism(auth: SmtpAuth, offered: ReadonlySet<string>): SmtpAuthMethod {
  const list = [...offered].join(" ") || "none";
  if (offered.size === 0) {
    throw new SmtpError(
      "EAUTH",
      "SMTP server does not offer AUTH, but credentials were given: check the host, port and TLS mode",
    );
  }
  const wanted: SmtpAuthMethod[] = auth.method !== undefined
    ? [auth.method]
    : auth.token !== undefined
    ? ["XOAUTH2"]
    : ["PLAIN", "LOGIN"];
  for (const m of wanted) if (offered.has(m)) return m;
  throw new SmtpError(
    "EAUTH",
    `SMTP server offers AUTH ${list} but not ${wanted.join(" or ")}: choose another method`,
  );
}

/** Authenticate on `channel`; resolves when the server answers 235, throws {@link SmtpError} otherwise. */
export async function authenticate(
  channel: CommandChannel,
  auth: SmtpAuth,
  offered: ReadonlySet<string>,
): Promise<SmtpAuthMethod> {
  const method = chooseMechanism(auth, offered);
  let reply: Reply;
  if (method === "PLAIN") {
    reply = await channel.command(
      `AUTH PLAIN ${base64Utf8(`\0${auth.user}\0${auth.pass ?? ""}`)}`,
      true,
    );
  } else if (method === "LOGIN") {
    reply = await channel.command("AUTH LOGIN");
    if (reply.code === 334) reply = await channel.command(base64Utf8(auth.user), true);
    if (reply.code === 334) reply = await channel.command(base64Utf8(auth.pass ?? ""), true);
  } else {
    const token = typeof auth.token === "function" ? await auth.token() : auth.token;
    // deno-lint-ignore no-control-regex -- a token with CR/LF would break the command line
    if (typeof token !== "string" || token === "" || /[\x00-\x1f]/.test(token)) {
      throw new SmtpError("EAUTH", "The OAuth2 token provider returned no usable access token");
    }
    reply = await channel.command(
      `AUTH XOAUTH2 ${base64Utf8(`user=${auth.user}\x01auth=Bearer ${token}\x01\x01`)}`,
      true,
    );
    // On failure the server sends a 334 with a JSON error; an empty line ends the exchange.
    if (reply.code === 334) reply = await channel.command("", true);
  }
  if (reply.code === 235) return method;
  const transient = reply.code >= 400 && reply.code < 500;
  throw new SmtpError(
    "EAUTH",
    `SMTP server rejected AUTH ${method} for user ${auth.user}: ${formatReply(reply)}` +
      (transient ? "" : "; check the user name and password or token"),
    { responseCode: reply.code, command: "AUTH", transient },
  );
}
