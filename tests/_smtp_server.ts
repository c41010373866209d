/**
 * Test helpers for the SMTP transport: a real SMTP server (`npm:smtp-server`)
 * on 127.0.0.1 with TLS, AUTH and scripted faults; a recording TCP proxy that
 * shows how the client grouped its commands; a server that never greets; and
 * a tiny builder of `Outgoing` values.
 *
 * @module
 */
// deno-lint-ignore no-import-prefix -- the project imports npm packages by full specifier (no import map)
import { SMTPServer } from "npm:smtp-server@^3";
// deno-lint-ignore no-import-prefix -- as above
import type * as SS from "npm:smtp-server@^3";
type SMTPServerAddress = SS.SMTPServerAddress;
type SMTPServerAuthentication = SS.SMTPServerAuthentication;
type SMTPServerAuthenticationResponse = SS.SMTPServerAuthenticationResponse;
type SMTPServerDataStream = SS.SMTPServerDataStream;
type SMTPServerSession = SS.SMTPServerSession;
import type { Outgoing } from "../core/types.ts";

const DIR = new URL("./testdata/smtp/", import.meta.url);

/** PEM text of a file in tests/testdata/smtp/. */
export function testCert(
  name: "ca.pem" | "server.pem" | "server-key.pem" | "untrusted.pem" | "untrusted-key.pem",
): string {
  return Deno.readTextFileSync(new URL(name, DIR));
}

/** The test CA that signed server.pem (pass it as the transport's `ca`). */
export const TEST_CA: string = testCert("ca.pem");

/** What the test server received for one message. */
export interface ReceivedMail {
  readonly from: string;
  /** MAIL FROM parameters as the server parsed them (`SMTPUTF8`, `BODY`). */
  readonly fromArgs: Record<string, unknown>;
  readonly to: string[];
  readonly raw: Uint8Array;
  /** Connection number (1-based, in the order they were accepted). */
  readonly connection: number;
  /** Authenticated user, if any. */
  readonly user?: string;
  readonly secure: boolean;
}

/** An error a hook returns: the server answers with `code` and `message`. */
export interface HookError {
  readonly code: number;
  readonly message: string;
}

/** What a hook decides: accept (null), refuse (an error) or never answer ("hang"). */
export type HookReply = HookError | null | "hang";

/** The per-connection view hooks get. */
export interface HookSession {
  /** 1-based connection number. */
  readonly connection: number;
  /** Messages accepted on this connection so far. */
  readonly accepted: number;
}

/** Options of {@link startSmtpServer}. Default: plain, no auth, every extension offered. */
export interface TestSmtpServerOptions {
  /** "implicit" TLS, "starttls" offered, or "none" (no STARTTLS). Default "none". */
  readonly tls?: "implicit" | "starttls" | "none";
  /** Certificate: signed by the test CA (default) or self-signed and untrusted. */
  readonly cert?: "trusted" | "untrusted";
  /** Require AUTH with these credentials. */
  readonly auth?: { readonly user: string; readonly pass?: string; readonly token?: string };
  /** Mechanisms offered. Default PLAIN, LOGIN, XOAUTH2. */
  readonly authMethods?: readonly string[];
  readonly pipelining?: boolean;
  readonly smtpUtf8?: boolean;
  readonly eightBitMime?: boolean;
  /** Answer 421 to connections beyond this many at once. */
  readonly maxClients?: number;
  /** SIZE limit to announce. */
  readonly size?: number;
  /** Script MAIL FROM: return an error to refuse, "hang" to never answer. */
  readonly onMailFrom?: (address: string, session: HookSession) => HookReply;
  /** Script RCPT TO: return an error to refuse, "hang" to never answer. */
  readonly onRcptTo?: (address: string, session: HookSession) => HookReply;
  /** Script the end of DATA: return an error to refuse (not recorded), "hang" to never answer. */
  readonly onData?: (mail: ReceivedMail, session: HookSession) => HookReply;
}

/** A running test server. */
export interface TestSmtpServer {
  readonly port: number;
  /** Messages accepted (2xx at the end of DATA), in order. */
  readonly received: ReceivedMail[];
  /** Connections accepted so far. */
  readonly connections: () => number;
  /** Most connections open at the same time. */
  readonly maxConcurrent: () => number;
  /** AUTH attempts: method and whether they succeeded. */
  readonly auths: { method: string; ok: boolean }[];
  /** MAIL FROM commands seen (including refused ones). */
  readonly mailFroms: string[];
  /** Stop listening and drop connections. */
  close(): Promise<void>;
}

type Callback = (err?: Error | null) => void;

function hookError(e: HookError): Error {
  const err = new Error(e.message) as Error & { responseCode: number };
  err.responseCode = e.code;
  return err;
}

/** Start `smtp-server` on 127.0.0.1, port 0, with scripted hooks. */
export async function startSmtpServer(opts: TestSmtpServerOptions = {}): Promise<TestSmtpServer> {
  const tls = opts.tls ?? "none";
  const untrusted = opts.cert === "untrusted";
  const received: ReceivedMail[] = [];
  const auths: { method: string; ok: boolean }[] = [];
  const mailFroms: string[] = [];
  let connections = 0;
  let open = 0;
  let maxOpen = 0;
  const ids = new Map<string, { n: number; accepted: number }>();
  const sess = (s: { id: string }) => {
    const v = ids.get(s.id);
    return { connection: v?.n ?? 0, accepted: v?.accepted ?? 0 };
  };
  const disabled: string[] = [];
  if (tls === "none") disabled.push("STARTTLS");
  if (opts.auth === undefined) disabled.push("AUTH");
  const server = new SMTPServer({
    name: "localhost",
    logger: false,
    secure: tls === "implicit",
    key: testCert(untrusted ? "untrusted-key.pem" : "server-key.pem"),
    cert: testCert(untrusted ? "untrusted.pem" : "server.pem"),
    disabledCommands: disabled,
    authMethods: [...(opts.authMethods ?? ["PLAIN", "LOGIN", "XOAUTH2"])],
    authOptional: opts.auth === undefined,
    allowInsecureAuth: tls === "none",
    hidePIPELINING: opts.pipelining === false,
    hideSMTPUTF8: opts.smtpUtf8 === false,
    hide8BITMIME: opts.eightBitMime === false,
    // Hidden, so a hook's text goes out verbatim: hooks write their own enhanced codes.
    hideENHANCEDSTATUSCODES: true,
    maxClients: opts.maxClients,
    size: opts.size,
    closeTimeout: 50,
    socketTimeout: 10_000,
    onConnect(session: { id: string }, cb: Callback) {
      connections++;
      open++;
      maxOpen = Math.max(maxOpen, open);
      ids.set(session.id, { n: connections, accepted: 0 });
      cb();
    },
    onClose(session: { id: string }) {
      if (ids.delete(session.id)) open--;
    },
    onAuth(
      auth: SMTPServerAuthentication,
      _session: SMTPServerSession,
      cb: (err: Error | null | undefined, response?: SMTPServerAuthenticationResponse) => void,
    ) {
      const want = opts.auth!;
      const ok = auth.username === want.user &&
        (auth.method === "XOAUTH2" ? auth.accessToken === want.token : auth.password === want.pass);
      auths.push({ method: auth.method, ok });
      if (ok) return cb(null, { user: auth.username });
      if (auth.method === "XOAUTH2") {
        return cb(null, {
          data: { status: "401", schemes: "bearer", scope: "https://mail.google.com/" },
        });
      }
      cb(hookError({ code: 535, message: "5.7.8 Authentication credentials invalid" }));
    },
    onMailFrom(address: SMTPServerAddress, session: SMTPServerSession, cb: Callback) {
      mailFroms.push(address.address);
      const e = opts.onMailFrom?.(address.address, sess(session)) ?? null;
      if (e !== "hang") cb(e ? hookError(e) : null);
    },
    onRcptTo(address: SMTPServerAddress, session: SMTPServerSession, cb: Callback) {
      const e = opts.onRcptTo?.(address.address, sess(session)) ?? null;
      if (e !== "hang") cb(e ? hookError(e) : null);
    },
    onData(
      stream: SMTPServerDataStream,
      session: SMTPServerSession,
      cb: (err?: Error | null, message?: string) => void,
    ) {
      (async () => {
        const parts: Uint8Array[] = [];
        for await (const c of stream) parts.push(new Uint8Array(c));
        const raw = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
        let at = 0;
        for (const p of parts) {
          raw.set(p, at);
          at += p.length;
        }
        const s = sess(session);
        const mailFrom = session.envelope.mailFrom;
        const mail: ReceivedMail = {
          from: mailFrom === false ? "" : mailFrom.address,
          fromArgs: mailFrom === false ? {} : (mailFrom.args || {}) as Record<string, unknown>,
          to: session.envelope.rcptTo.map((r) => r.address),
          raw,
          connection: s.connection,
          user: typeof session.user === "string" ? session.user : undefined,
          secure: session.secure,
        };
        const e = opts.onData?.(mail, s) ?? null;
        if (e === "hang") return;
        if (e) return cb(hookError(e));
        received.push(mail);
        const v = ids.get(session.id);
        if (v) v.accepted++;
        cb(null, `Ok: queued as Q${received.length}`);
      })().catch((e) => cb(e));
    },
  });
  server.on("error", () => {});
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const port = (server.server.address() as { port: number }).port;
  return {
    port,
    received,
    auths,
    mailFroms,
    connections: () => connections,
    maxConcurrent: () => maxOpen,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** A TCP listener on 127.0.0.1 that accepts connections and never says a word. */
export function startSilentServer(): {
  port: number;
  accepted: () => number;
  close(): Promise<void>;
} {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  let accepted = 0;
  const loop = (async () => {
    try {
      for await (const c of listener) {
        accepted++;
        conns.push(c);
      }
    } catch {
      // listener closed
    }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    accepted: () => accepted,
    async close() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // closed by the client already
        }
      }
      await loop;
    },
  };
}

/** A TCP proxy on 127.0.0.1 that records every chunk the client sent, per connection. */
export interface RecordingProxy {
  readonly port: number;
  /** Client-to-server reads, as text, one array per connection. */
  readonly chunks: string[][];
  close(): Promise<void>;
}

/** Start a {@link RecordingProxy} in front of `127.0.0.1:targetPort`. */
export function startRecordingProxy(targetPort: number): RecordingProxy {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const chunks: string[][] = [];
  const open = new Set<Deno.Conn>();
  const pumps: Promise<void>[] = [];
  const decoder = new TextDecoder();
  const pipe = async (from: Deno.Conn, to: Deno.Conn, record: string[] | null) => {
    const buf = new Uint8Array(65_536);
    try {
      for (;;) {
        const n = await from.read(buf);
        if (n === null) break;
        if (record) record.push(decoder.decode(buf.subarray(0, n)));
        let off = 0;
        while (off < n) off += await to.write(buf.subarray(off, n));
      }
    } catch {
      // either side closed
    }
    for (const c of [from, to]) {
      if (open.delete(c)) c.close();
    }
  };
  const loop = (async () => {
    try {
      for await (const client of listener) {
        const server = await Deno.connect({ hostname: "127.0.0.1", port: targetPort });
        open.add(client);
        open.add(server);
        const record: string[] = [];
        chunks.push(record);
        pumps.push(pipe(client, server, record), pipe(server, client, null));
      }
    } catch {
      // listener closed
    }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    chunks,
    async close() {
      listener.close();
      await loop;
      for (const c of open) c.close();
      open.clear();
      await Promise.all(pumps);
    },
  };
}

const encoder = new TextEncoder();
let nextLine = 1;

/** Fields of {@link makeOutgoing}; everything has a default. */
export interface OutgoingFields {
  readonly to?: string;
  readonly from?: string;
  readonly subject?: string;
  /** Body lines, joined with CRLF. */
  readonly body?: string;
  readonly smtpUtf8?: boolean;
  readonly eightBit?: boolean;
  readonly line?: number;
  /** Split the bytes into chunks of this size (to exercise chunk boundaries). */
  readonly chunk?: number;
}

/** Build an `Outgoing` by hand: a small RFC 5322 message with CRLF line ends. */
export function makeOutgoing(f: OutgoingFields = {}): Outgoing {
  const line = f.line ?? nextLine++;
  const from = f.from ?? "sender@example.com";
  const to = f.to ?? `user${line}@example.com`;
  const messageId = `<test.${line}@example.com>`;
  const text = [
    `From: ${from}`,
    `To: ${to}`,
    `Subject: ${f.subject ?? `Test ${line}`}`,
    `Message-ID: ${messageId}`,
    "Date: Thu, 03 Dec 2026 17:00:00 +0000",
    "MIME-Version: 1.0",
    `Content-Type: text/plain; charset=${f.eightBit ? "utf-8" : "us-ascii"}`,
    `Content-Transfer-Encoding: ${f.eightBit ? "8bit" : "7bit"}`,
    "",
    f.body ?? `Hello ${line}`,
    "",
  ].join("\r\n");
  const bytes = encoder.encode(text);
  const data: Uint8Array[] = [];
  const step = f.chunk ?? bytes.length;
  for (let i = 0; i < bytes.length; i += step) data.push(bytes.subarray(i, i + step));
  return {
    line,
    from,
    to,
    smtpUtf8: f.smtpUtf8 ?? false,
    eightBit: f.eightBit ?? false,
    messageId,
    data,
    size: bytes.length,
  };
}
