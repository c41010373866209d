/**
 * One SMTP client connection as an explicit state machine.
 *
 * Setup (greeting, EHLO, STARTTLS, AUTH) is sequential: one command, one
 * awaited reply. The message phase is event-driven so it can pipeline
 * (RFC 2920): a single reader loop matches each reply to the command that
 * expects it (a FIFO of expectations), and whatever the replies allow next is
 * appended to one output buffer and written with one socket write. With
 * PIPELINING, the body of one message, its end marker and the MAIL/RCPT/DATA
 * of the next one leave in the same write, so a message costs one round trip.
 *
 * @module
 */
import type { Outgoing, SendResult } from "../../core/types.ts";
import { authenticate } from "./auth.ts";
import { ByteBuffer } from "./byte_buffer.ts";
import { writeDotStuffed } from "./dot_stuff.ts";
import { SmtpError, type SmtpTimeoutName } from "./error.ts";
import type { ResolvedSmtpOptions } from "./options.ts";
import { formatReply, parseQueueId, type Reply, replyCode, ReplyParser } from "./reply.ts";

/** A message travelling through the pool. */
export interface Job {
  readonly msg: Outgoing;
  /** How many times the message was moved off a connection that closed under it. */
  attempts: number;
  /** The first failing reply of the current transaction. */
  failure: Reply | null;
  /** True once a result was given (or the job was cancelled). */
  done: boolean;
  /** The connection carrying the message, while in flight. */
  conn: SmtpConnection | null;
}

/** What a connection needs from its pool. */
export interface JobSource {
  /** The next message to send, if any. */
  take(): Job | undefined;
  /** Give the final result of a message. */
  finish(job: Job, result: SendResult): void;
  /** The message was not accepted and its connection is gone: send it on another one. */
  requeue(job: Job, code: string, reason: string): void;
  /** The connection closed (`error` is null for an orderly close). */
  closed(conn: SmtpConnection, error: SmtpError | null): void;
}

/** What the server offered in its EHLO reply. */
export interface Capabilities {
  readonly pipelining: boolean;
  readonly eightBitMime: boolean;
  readonly smtpUtf8: boolean;
  readonly enhancedStatusCodes: boolean;
  readonly startTls: boolean;
  /** SIZE limit in bytes, 0 when none was announced. */
  readonly size: number;
  /** SASL mechanisms offered, upper case. */
  readonly auth: ReadonlySet<string>;
}

const NO_CAPABILITIES: Capabilities = {
  pipelining: false,
  eightBitMime: false,
  smtpUtf8: false,
  enhancedStatusCodes: false,
  startTls: false,
  size: 0,
  auth: new Set(),
};

/** Parse the lines of an EHLO reply (the first line is the server's name). */
export function parseCapabilities(text: string): Capabilities {
  const lines = text.split("\n");
  const words = new Map<string, string>();
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i].trim();
    const m = /^([A-Za-z0-9][A-Za-z0-9-]*)(?:[ =](.*))?$/.exec(line);
    if (m === null) continue;
    const key = m[1].toUpperCase();
    const rest = (m[2] ?? "").trim();
    words.set(key, words.has(key) ? `${words.get(key)} ${rest}` : rest);
  }
  const size = Number.parseInt(words.get("SIZE") ?? "", 10);
  const auth = new Set(
    (words.get("AUTH") ?? "").toUpperCase().split(/[\s=]+/).filter((w) => w !== ""),
  );
  return {
    pipelining: words.has("PIPELINING"),
    eightBitMime: words.has("8BITMIME"),
    smtpUtf8: words.has("SMTPUTF8"),
    enhancedStatusCodes: words.has("ENHANCEDSTATUSCODES"),
    startTls: words.has("STARTTLS"),
    size: Number.isFinite(size) && size > 0 ? size : 0,
    auth,
  };
}

/** Turn the reply to a message's end of data (or its first refusal) into a result. */
export function resultFor(reply: Reply): SendResult {
  const code = reply.code;
  if (code >= 200 && code < 300) {
    return { status: "sent", id: parseQueueId(reply.text), response: formatReply(reply) };
  }
  const reason = formatReply(reply);
  if (code >= 400 && code < 500) return { status: "retry", code: replyCode(reply), reason };
  // Gmail answers 550 5.4.5 when the account's daily sending quota is used up:
  // nothing is wrong with the message, the whole sender must wait.
  if (reply.enhanced === "5.4.5" || /daily (user )?sending (quota|limit)/i.test(reply.text)) {
    return { status: "retry", code: replyCode(reply), reason, pauseSender: true };
  }
  return { status: "failed", code: replyCode(reply), reason };
}

// Kinds of expected replies in the message phase.
const RSET = 0, MAIL = 1, RCPT = 2, DATA = 3, DOT = 4, DOT_ABORT = 5, QUIT = 6;
const KIND_NAMES = ["RSET", "MAIL FROM", "RCPT TO", "DATA", "end of data", "end of data", "QUIT"];

const SETUP = 0, READY = 1, QUITTING = 2, CLOSED = 3;
/** A server that does not answer QUIT is not waited for longer than this (ms). */
const QUIT_TIMEOUT = 2000;

// deno-lint-ignore no-control-regex -- control characters (CR, LF, NUL) must never reach a command
const ENVELOPE_UNSAFE = /[\x00-\x1f\x7f<>]/;
const NON_ASCII = /[\u0080-\uffff]/;
const DOT_CRLF = new Uint8Array([0x2e, 0x0d, 0x0a]);

/** An open, set-up SMTP connection. Create it with {@link SmtpConnection.open}. */
export class SmtpConnection {
  readonly #o: ResolvedSmtpOptions;
  readonly #label: string;
  #conn: Deno.Conn;
  #state = SETUP;
  #caps: Capabilities = NO_CAPABILITIES;
  #pipelining = false;
  #source: JobSource | null = null;

  readonly #parser = new ReplyParser();
  readonly #rbuf = new Uint8Array(16_384);
  #setupReplies: Reply[] = [];
  readonly #onReplyBound = (r: Reply) => this.#onReply(r);
  readonly #pushSetupReply = (r: Reply) => this.#setupReplies.push(r);

  #out = new ByteBuffer();
  #spare = new ByteBuffer();
  #writing = false;
  #inFeed = false;

  // FIFO of expected replies: kinds[i] answers for jobs[i].
  readonly #kinds: number[] = [];
  readonly #jobs: (Job | null)[] = [];
  #awaiting354: Job | null = null;
  #started = 0;
  #sent = 0;

  #timer: ReturnType<typeof setTimeout> | undefined = undefined;
  #deadline = Infinity;
  #timeoutName: SmtpTimeoutName = "command";
  #timeoutMs = 0;
  #timedOut: SmtpError | null = null;
  #setupWaiting = false;

  #runDone: Promise<void> = Promise.resolve();

  private constructor(o: ResolvedSmtpOptions, conn: Deno.Conn) {
    this.#o = o;
    this.#conn = conn;
    this.#label = `${o.host}:${o.port}`;
  }

  /**
   * Connect, read the greeting, EHLO, STARTTLS (when asked), EHLO again and
   * AUTH. Rejects with {@link SmtpError}; `transient` says whether a later
   * attempt may work.
   */
  static async open(o: ResolvedSmtpOptions): Promise<SmtpConnection> {
    const label = `${o.host}:${o.port}`;
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), o.connectTimeout);
    let tcp: Deno.TcpConn;
    try {
      tcp = await o.dialer.connect({ hostname: o.host, port: o.port, signal: ac.signal });
    } catch (e) {
      if (ac.signal.aborted) {
        throw new SmtpError(
          "ETIMEDOUT",
          `Cannot connect to ${label}: timed out after ${o.connectTimeout} ms (connectTimeout)`,
          { timeout: "connect", transient: true, cause: e },
        );
      }
      throw new SmtpError("ECONNECTION", `Cannot connect to ${label}: ${errorText(e)}`, {
        transient: true,
        cause: e,
      });
    } finally {
      clearTimeout(timer);
    }
    const c = new SmtpConnection(o, tcp);
    try {
      await c.#setup(tcp);
    } catch (e) {
      c.#closeSocket();
      throw c.#asSetupError(e);
    }
    return c;
  }

  /** What the server offered. */
  get capabilities(): Capabilities {
    return this.#caps;
  }

  /** True while PIPELINING is in use on this connection. */
  get pipelining(): boolean {
    return this.#pipelining;
  }

  /** True when the connection takes no more messages (closing, closed or at its cap). */
  get retiring(): boolean {
    return this.#state !== READY || this.#started >= this.#o.maxMessages;
  }

  /** True when no command is waiting for a reply. */
  get idle(): boolean {
    return this.#kinds.length === 0;
  }

  /** Messages that got a 2xx on this connection. */
  get sentCount(): number {
    return this.#sent;
  }

  /** Resolves when the connection's reader has stopped (after close). */
  get finished(): Promise<void> {
    return this.#runDone;
  }

  /** Enter the message phase: take messages from `source` until the cap, then QUIT. */
  start(source: JobSource): void {
    this.#source = source;
    this.#state = READY;
    this.#runDone = this.#run();
    this.pump();
  }

  /** Take and send messages if the protocol allows it now. Called when work arrives. */
  pump(): void {
    this.#pump();
    if (!this.#inFeed) this.#flush();
  }

  #pump(): void {
    if (this.#state !== READY || this.#awaiting354 !== null) return;
    if (!this.#pipelining && this.#kinds.length > 0) return;
    const source = this.#source!;
    while (this.#started < this.#o.maxMessages) {
      const job = source.take();
      if (job === undefined) break;
      if (this.#refuse(job)) continue;
      this.#begin(job);
      break;
    }
    if (this.#started >= this.#o.maxMessages && this.#kinds.length === 0) this.#quit();
  }

  /** Send QUIT once in-flight messages are done; resolves when the socket is closed. */
  async close(): Promise<void> {
    if (this.#state === READY) {
      this.#state = QUITTING;
      if (this.#kinds.length === 0) this.#quit();
    }
    await this.#runDone;
  }

  /** Close at once: messages in flight are moved elsewhere or reported as retry. */
  destroy(reason: SmtpError): void {
    this.#fail(reason);
  }

  // ---------------------------------------------------------------- setup

  async #setup(tcp: Deno.TcpConn): Promise<void> {
    const o = this.#o;
    if (o.tls === "implicit") await this.#startTls(tcp);
    const greeting = await this.#readSetup(o.greetingTimeout, "greeting");
    if (greeting.code !== 220) {
      throw new SmtpError(
        "EREFUSED",
        `SMTP server ${this.#label} refused the session: ${formatReply(greeting)}`,
        { responseCode: greeting.code, command: "greeting", transient: greeting.code < 500 },
      );
    }
    await this.#ehlo(tcp);
    if (o.tls === "starttls") {
      if (!this.#caps.startTls) {
        throw new SmtpError(
          "ESTARTTLS",
          `SMTP server ${this.#label} does not offer STARTTLS, which --smtp-tls starttls requires: ` +
            `use implicit TLS (port 465) if it has it; the message is never sent in clear text`,
          { command: "STARTTLS" },
        );
      }
      const r = await this.#command("STARTTLS");
      if (r.code !== 220) {
        throw new SmtpError(
          "ESTARTTLS",
          `SMTP server ${this.#label} refused STARTTLS: ${formatReply(r)}`,
          { responseCode: r.code, command: "STARTTLS", transient: r.code < 500 },
        );
      }
      // Anything the server sent after its 220 came in clear text: drop it.
      this.#parser.reset();
      this.#setupReplies = [];
      await this.#startTls(tcp);
      await this.#ehlo(tcp);
    }
    if (o.auth !== undefined) {
      await authenticate(
        { command: (line, secret) => this.#command(line, secret) },
        o.auth,
        this.#caps.auth,
      );
    }
    this.#pipelining = o.pipelining && this.#caps.pipelining;
  }

  async #startTls(tcp: Deno.TcpConn): Promise<void> {
    const o = this.#o;
    const tls = await o.dialer.startTls(tcp, {
      hostname: o.host,
      caCerts: o.caCerts === undefined ? undefined : [...o.caCerts],
    });
    this.#conn = tls;
    this.#arm(o.connectTimeout, "connect");
    this.#setupWaiting = true;
    try {
      await tls.handshake();
    } catch (e) {
      if (this.#timedOut !== null) throw this.#timedOut;
      const text = errorText(e);
      const cert = /certificate|UnknownIssuer|NotValidForName|Expired|BadSignature|UnsupportedCert/i
        .test(text);
      throw new SmtpError(
        "ETLS",
        cert
          ? `TLS certificate of ${this.#label} was rejected (${text}): it must be valid for ` +
            `${o.host}; for a private CA pass its certificate with --smtp-ca`
          : `TLS handshake with ${this.#label} failed: ${text}`,
        { transient: !cert, cause: e },
      );
    } finally {
      this.#setupWaiting = false;
      this.#deadline = Infinity;
    }
  }

  async #ehlo(tcp: Deno.TcpConn): Promise<void> {
    const name = this.#o.name ?? defaultEhloName(tcp);
    let r = await this.#command(`EHLO ${name}`);
    if (r.code >= 500) {
      r = await this.#command(`HELO ${name}`);
      this.#caps = NO_CAPABILITIES;
    } else if (r.code === 250) {
      this.#caps = parseCapabilities(r.text);
    }
    if (r.code !== 250) {
      throw new SmtpError(
        "EREFUSED",
        `SMTP server ${this.#label} refused EHLO: ${formatReply(r)}`,
        { responseCode: r.code, command: "EHLO", transient: r.code < 500 },
      );
    }
  }

  /** Send one setup command and await its reply. */
  async #command(line: string, secret = false): Promise<Reply> {
    if (this.#o.debug) this.#o.debug(`C: ${secret ? redact(line) : line}`);
    const bytes = new TextEncoder().encode(`${line}\r\n`);
    let off = 0;
    while (off < bytes.length) off += await this.#conn.write(bytes.subarray(off));
    return await this.#readSetup(this.#o.commandTimeout, "command", line.split(" ", 1)[0]);
  }

  async #readSetup(ms: number, name: SmtpTimeoutName, what = "greeting"): Promise<Reply> {
    this.#arm(ms, name, what);
    this.#setupWaiting = true;
    try {
      while (this.#setupReplies.length === 0) {
        let n: number | null;
        try {
          n = await this.#conn.read(this.#rbuf);
        } catch (e) {
          if (this.#timedOut !== null) throw this.#timedOut;
          throw this.#connectionError(e);
        }
        if (n === null) {
          throw new SmtpError(
            "ECONNECTION",
            `SMTP server ${this.#label} closed the connection while we waited for the ${what} reply`,
            { transient: true },
          );
        }
        this.#parser.feed(this.#rbuf, 0, n, this.#pushSetupReply);
      }
    } finally {
      this.#setupWaiting = false;
      this.#deadline = Infinity;
    }
    const r = this.#setupReplies.shift()!;
    if (this.#o.debug) this.#o.debug(`S: ${formatReply(r)}`);
    return r;
  }

  #asSetupError(e: unknown): SmtpError {
    if (e instanceof SmtpError) return e;
    return this.#connectionError(e);
  }

  #connectionError(e: unknown): SmtpError {
    return new SmtpError(
      "ECONNECTION",
      `Connection to ${this.#label} failed: ${errorText(e)}`,
      { transient: true, cause: e },
    );
  }

  // --------------------------------------------------------- message phase

  /** Fail a message at once when this server cannot take it. Returns true when refused. */
  #refuse(job: Job): boolean {
    const m = job.msg;
    let code = "";
    let reason = "";
    if (ENVELOPE_UNSAFE.test(m.from) || ENVELOPE_UNSAFE.test(m.to) || m.to === "") {
      code = "ENVELOPE";
      reason = `Envelope address contains characters SMTP cannot carry: ${JSON.stringify(m.to)}`;
    } else if (
      (m.smtpUtf8 || NON_ASCII.test(m.to) || NON_ASCII.test(m.from)) && !this.#caps.smtpUtf8
    ) {
      code = "SMTPUTF8";
      reason =
        `The server does not offer SMTPUTF8, which the non-ASCII address ${m.to} needs (RFC 6531)`;
    } else if (m.eightBit && !this.#caps.eightBitMime) {
      code = "8BITMIME";
      reason = "The server does not offer 8BITMIME, which this 8bit message needs";
    } else if (this.#caps.size > 0 && m.size > this.#caps.size) {
      code = "5.3.4";
      reason =
        `Message of ${m.size} bytes is larger than the server's limit of ${this.#caps.size} bytes`;
    } else {
      return false;
    }
    this.#source!.finish(job, { status: "failed", code, reason });
    return true;
  }

  /** Write the envelope of `job` (all of it with PIPELINING, else MAIL FROM only). */
  #begin(job: Job): void {
    const m = job.msg;
    job.conn = this;
    job.failure = null;
    this.#started++;
    const utf8 = m.smtpUtf8 || NON_ASCII.test(m.to) || NON_ASCII.test(m.from);
    const params = m.eightBit
      ? (utf8 ? " BODY=8BITMIME SMTPUTF8" : " BODY=8BITMIME")
      : utf8
      ? " SMTPUTF8"
      : "";
    if (this.#pipelining) {
      this.#write(`MAIL FROM:<${m.from}>${params}\r\nRCPT TO:<${m.to}>\r\nDATA\r\n`);
      this.#expect(MAIL, job);
      this.#expect(RCPT, job);
      this.#expect(DATA, job);
      this.#awaiting354 = job;
    } else {
      this.#write(`MAIL FROM:<${m.from}>${params}\r\n`);
      this.#expect(MAIL, job);
    }
  }

  #write(text: string): void {
    if (this.#o.debug) {
      for (const l of text.split("\r\n")) {
        if (l !== "") this.#o.debug(`C: ${l}`);
      }
    }
    this.#out.pushString(text);
  }

  #expect(kind: number, job: Job | null): void {
    if (kind === QUIT && this.#kinds.length === 0) {
      this.#arm(Math.min(this.#o.commandTimeout, QUIT_TIMEOUT), "command", "QUIT");
    } else if (this.#kinds.length === 0) {
      this.#arm(
        kind === DOT || kind === DOT_ABORT ? this.#o.dataTimeout : this.#o.commandTimeout,
        kind === DOT ? "data" : "command",
        KIND_NAMES[kind],
      );
    }
    this.#kinds.push(kind);
    this.#jobs.push(job);
  }

  async #run(): Promise<void> {
    const buf = this.#rbuf;
    while (this.#state !== CLOSED) {
      let n: number | null;
      try {
        n = await this.#conn.read(buf);
      } catch (e) {
        if (this.#state !== CLOSED) this.#fail(this.#timedOut ?? this.#connectionError(e));
        break;
      }
      if (n === null) {
        if (this.#state === QUITTING && this.#kinds.length <= 1) {
          this.#closeOrderly();
        } else {
          this.#fail(
            new SmtpError("ECONNECTION", `SMTP server ${this.#label} closed the connection`, {
              transient: true,
            }),
          );
        }
        break;
      }
      this.#inFeed = true;
      try {
        this.#parser.feed(buf, 0, n, this.#onReplyBound);
      } catch (e) {
        this.#fail(e instanceof SmtpError ? e : this.#connectionError(e));
        break;
      } finally {
        this.#inFeed = false;
      }
      this.#flush();
    }
  }

  #onReply(r: Reply): void {
    if (this.#state === CLOSED) return;
    const debug = this.#o.debug;
    if (debug) debug(`S: ${formatReply(r)}`);
    if (this.#kinds.length === 0) {
      // Unsolicited: a 421 before an idle close, or garbage. Either way, this connection is done.
      if (r.code === 421) this.#closeOrderly();
      else {
        this.#fail(
          new SmtpError(
            "EPROTOCOL",
            `SMTP server ${this.#label} sent an unexpected reply: ${formatReply(r)}`,
          ),
        );
      }
      return;
    }
    const kind = this.#kinds.shift()!;
    const job = this.#jobs.shift()!;
    if (this.#kinds.length > 0) {
      const head = this.#kinds[0];
      this.#arm(
        head === DOT || head === DOT_ABORT ? this.#o.dataTimeout : this.#o.commandTimeout,
        head === DOT ? "data" : "command",
        KIND_NAMES[head],
      );
    } else {
      this.#deadline = Infinity;
    }
    if (r.code === 421 && kind !== QUIT) {
      this.#on421(r, job);
      return;
    }
    const ok = r.code >= 200 && r.code < 300;
    switch (kind) {
      case MAIL:
        if (!ok) job!.failure ??= r;
        if (!this.#pipelining) {
          if (ok) {
            this.#write(`RCPT TO:<${job!.msg.to}>\r\n`);
            this.#expect(RCPT, job);
          } else {
            this.#end(job!, r, false);
          }
        }
        return;
      case RCPT:
        if (!ok) job!.failure ??= r;
        if (!this.#pipelining) {
          if (ok) {
            this.#write("DATA\r\n");
            this.#expect(DATA, job);
            this.#awaiting354 = job;
          } else {
            this.#end(job!, r, true);
          }
        }
        return;
      case DATA:
        this.#awaiting354 = null;
        if (r.code === 354) {
          if (job!.failure !== null) {
            // A server that starts DATA after refusing the envelope: send an empty message.
            this.#out.push(DOT_CRLF);
            this.#expect(DOT_ABORT, job);
          } else {
            if (this.#o.debug) this.#o.debug(`C: <message data, ${job!.msg.size} bytes>`);
            writeDotStuffed(job!.msg.data, this.#out);
            this.#expect(DOT, job);
          }
          if (this.#pipelining) this.#pump();
        } else {
          this.#end(job!, job!.failure ?? r, true);
        }
        return;
      case DOT:
        if (ok) this.#sent++;
        this.#end(job!, r, false);
        return;
      case DOT_ABORT:
        this.#end(job!, job!.failure!, true);
        return;
      case RSET:
        if (!ok) {
          this.#fail(
            new SmtpError(
              "EPROTOCOL",
              `SMTP server ${this.#label} refused RSET: ${formatReply(r)}`,
              {
                responseCode: r.code,
                command: "RSET",
                transient: true,
              },
            ),
          );
          return;
        }
        this.#next();
        return;
      case QUIT:
        this.#closeOrderly();
        return;
    }
  }

  /** A transaction ended: give the result, RSET when the server may hold state, go on. */
  #end(job: Job, reply: Reply, rset: boolean): void {
    job.conn = null;
    this.#source!.finish(job, resultFor(reply));
    if (rset) {
      this.#write("RSET\r\n");
      this.#expect(RSET, null);
    }
    this.#next();
  }

  /** After a reply: QUIT when closing and nothing is pending, else take more work. */
  #next(): void {
    if (this.#state === QUITTING) {
      if (this.#kinds.length === 0) this.#quit();
    } else {
      this.#pump();
    }
  }

  /** 421: the server is closing. Nothing after it was accepted, so every message in flight moves. */
  #on421(r: Reply, head: Job | null): void {
    const code = replyCode(r);
    const reason = formatReply(r);
    const jobs = this.#takeInFlight(head);
    this.#closeSocket();
    for (const j of jobs) this.#source!.requeue(j, code, reason);
    this.#source!.closed(this, null);
  }

  /** Every unfinished job still expecting a reply, each once, with `head` first. */
  #takeInFlight(head: Job | null): Job[] {
    const out: Job[] = [];
    if (head !== null && !head.done) out.push(head);
    for (const j of this.#jobs) if (j !== null && !j.done && !out.includes(j)) out.push(j);
    this.#kinds.length = 0;
    this.#jobs.length = 0;
    this.#awaiting354 = null;
    for (const j of out) j.conn = null;
    return out;
  }

  /** The connection broke: messages whose end of data went out are unknown (retry), the rest move. */
  #fail(error: SmtpError): void {
    if (this.#state === CLOSED) return;
    const ambiguous = new Set<Job>();
    for (let i = 0; i < this.#kinds.length; i++) {
      const j = this.#jobs[i];
      if (this.#kinds[i] === DOT && j !== null) ambiguous.add(j);
    }
    const jobs = this.#takeInFlight(null);
    this.#closeSocket();
    const code = error.code === "ETIMEDOUT" ? "ETIMEDOUT" : "ECONNRESET";
    for (const j of jobs) {
      if (ambiguous.has(j)) {
        this.#source!.finish(j, {
          status: "retry",
          code,
          reason: `${error.message}; the server may or may not have accepted the message`,
        });
      } else {
        this.#source!.requeue(j, code, error.message);
      }
    }
    this.#source?.closed(this, error);
  }

  #quit(): void {
    if (this.#state === CLOSED) return;
    this.#state = QUITTING;
    this.#write("QUIT\r\n");
    this.#expect(QUIT, null);
    if (!this.#inFeed) this.#flush();
  }

  #closeOrderly(): void {
    if (this.#state === CLOSED) return;
    const jobs = this.#takeInFlight(null);
    this.#closeSocket();
    for (const j of jobs) this.#source!.requeue(j, "ECONNRESET", "Connection closed");
    this.#source?.closed(this, null);
  }

  #closeSocket(): void {
    if (this.#state === CLOSED) return;
    this.#state = CLOSED;
    this.#deadline = Infinity;
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }

  #flush(): void {
    if (this.#writing || this.#out.length === 0 || this.#state === CLOSED) return;
    this.#writing = true;
    this.#writeLoop();
  }

  async #writeLoop(): Promise<void> {
    try {
      while (this.#out.length > 0 && this.#state !== CLOSED) {
        const buf = this.#out;
        this.#out = this.#spare;
        this.#spare = buf;
        const data = buf.view();
        let off = 0;
        while (off < data.length) {
          off += await this.#conn.write(off === 0 ? data : data.subarray(off));
        }
        buf.clear();
      }
    } catch (e) {
      this.#fail(this.#timedOut ?? this.#connectionError(e));
    } finally {
      this.#writing = false;
    }
  }

  // ---------------------------------------------------------------- timers

  /** Expect an answer within `ms`; one lazily re-armed timer per connection. */
  #arm(ms: number, name: SmtpTimeoutName, what = ""): void {
    this.#deadline = performance.now() + ms;
    this.#timeoutName = name;
    this.#timeoutMs = ms;
    this.#timeoutWhat = what;
    if (this.#timer !== undefined && this.#deadline + 1 < this.#timerAt) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    if (this.#timer === undefined) {
      this.#timerAt = this.#deadline;
      this.#timer = setTimeout(this.#onTimer, ms);
    }
  }

  #timerAt = 0;

  #timeoutWhat = "";

  readonly #onTimer = (): void => {
    this.#timer = undefined;
    if (this.#state === CLOSED || this.#deadline === Infinity) return;
    const left = this.#deadline - performance.now();
    if (left > 0) {
      this.#timerAt = this.#deadline;
      this.#timer = setTimeout(this.#onTimer, Math.ceil(left));
      return;
    }
    const name = this.#timeoutName;
    const what = name === "greeting"
      ? "the greeting"
      : name === "connect"
      ? "the TLS handshake"
      : name === "data"
      ? "the end of the message data"
      : `${this.#timeoutWhat || "a command"}`;
    const err = new SmtpError(
      "ETIMEDOUT",
      `SMTP server ${this.#label} did not answer ${what} within ${this.#timeoutMs} ms (${name}Timeout)`,
      { timeout: name, transient: true },
    );
    this.#timedOut = err;
    if (this.#setupWaiting || this.#state === SETUP) this.#closeSocket();
    else this.#fail(err);
  };
}

function redact(line: string): string {
  const m = /^(AUTH \S+)/i.exec(line);
  return m !== null ? `${m[1]} <redacted>` : "<redacted>";
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** EHLO argument: the host name when it is a FQDN, else the local address literal (RFC 5321 §4.1.4). */
function defaultEhloName(tcp: Deno.TcpConn): string {
  try {
    if (Deno.permissions.querySync({ name: "sys", kind: "hostname" }).state === "granted") {
      const h = Deno.hostname();
      if (/^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$/.test(h)) return h;
    }
  } catch {
    // no permission API or no host name: use the address
  }
  const addr = tcp.localAddr as Deno.NetAddr;
  return addr.hostname.includes(":") ? `[IPv6:${addr.hostname}]` : `[${addr.hostname}]`;
}
