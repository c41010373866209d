/**
 * Helpers for the HTTP service tests: a real server on 127.0.0.1 (port 0)
 * whose transports come from the CLI's own `TransportCli` factory and record
 * what they were handed, an NDJSON line reader, and a raw HTTP/1.1 client for
 * what fetch cannot do (a `Content-Length` that lies, a connection cut
 * mid-body).
 *
 * @module
 */
import { createApp, type MailerApp, type ServerOptions } from "../server.ts";
import { joinChunks, type Outgoing, type SendResult, type Transport } from "../core/types.ts";
import { fakeCli } from "../transports/fake_cli.ts";

/** The bearer token of test servers. */
export const TOKEN = "test-token-0123456789abcdef";
/** Headers that authenticate. */
export const AUTH = { authorization: `Bearer ${TOKEN}` };
/** The default message of test servers. */
export const MESSAGE = {
  from: "Team <team@example.com>",
  subject: "Hello {{name}}",
  text: "Hi {{name}}\n",
};

/** One message a transport was handed, and how it ended. */
export interface Delivery {
  readonly line: number;
  readonly to: string;
  /** The rendered message, when the server was started with `keepData`. */
  readonly data?: string;
  /** The result, or "aborted" when the send was aborted. */
  status: SendResult["status"] | "aborted" | "pending";
}

/** A running test server. */
export interface TestServer {
  readonly url: string;
  readonly port: number;
  readonly app: MailerApp;
  /** Every message handed to any transport of this server, in order. */
  readonly deliveries: Delivery[];
  /** How many transports the server created. */
  readonly created: () => number;
  /** Resolves when no campaign runs any more (polls the service; bounded). */
  idle(timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

/** Options of {@link startServer}: server options, plus the fake transport's CLI flags. */
export interface StartOptions extends Partial<ServerOptions> {
  /** `--latency` etc. of the fake transport, as the CLI takes them. Default latency 1 ms. */
  readonly fake?: Record<string, string>;
  /** Keep each rendered message's text in `deliveries`. */
  readonly keepData?: boolean;
}

/** Start a server on 127.0.0.1 with a recording fake transport. */
export function startServer(options: StartOptions = {}): TestServer {
  const deliveries: Delivery[] = [];
  let created = 0;
  const { fake, keepData, ...rest } = options;
  const flags = { latency: "1", ...fake };
  const app = createApp({
    token: rest.auth === "none" ? undefined : TOKEN,
    message: MESSAGE,
    progressIntervalMs: 10,
    log: () => {},
    ...rest,
    transport: rest.transport ?? {
      name: "fake",
      async create() {
        created++;
        const inner = await fakeCli.create({ flags, env: () => undefined, log: () => {} });
        return recording(inner, deliveries, keepData === true);
      },
    },
  });
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, app.fetch);
  const port = server.addr.port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    app,
    deliveries,
    created: () => created,
    async idle(timeoutMs = 10_000) {
      const until = performance.now() + timeoutMs;
      while (app.service.activeRuns > 0) {
        if (performance.now() > until) throw new Error("The server still runs a campaign");
        await new Promise((r) => setTimeout(r, 5));
      }
    },
    async close() {
      await app.service.shutdown();
      await server.shutdown();
    },
  };
}

function recording(inner: Transport, log: Delivery[], keepData: boolean): Transport {
  const decoder = new TextDecoder();
  return {
    name: inner.name,
    maxBatch: inner.maxBatch,
    defaultConcurrency: inner.defaultConcurrency,
    async send(batch: readonly Outgoing[], opts) {
      const entries = batch.map((m): Delivery => ({
        line: m.line,
        to: m.to,
        status: "pending",
        ...(keepData ? { data: decoder.decode(joinChunks(m.data, m.size)) } : {}),
      }));
      log.push(...entries);
      try {
        const results = await inner.send(batch, opts);
        results.forEach((r, i) => entries[i].status = r.status);
        return results;
      } catch (error) {
        for (const e of entries) e.status = "aborted";
        throw error;
      }
    },
    close: () => inner.close(),
  };
}

/** The NDJSON lines of a response, parsed, as they arrive. */
export async function* ndjson(res: Response): AsyncGenerator<Record<string, unknown>> {
  let buffer = "";
  for await (const text of res.body!.pipeThrough(new TextDecoderStream())) {
    buffer += text;
    let nl;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      if (line !== "") yield JSON.parse(line);
    }
  }
  if (buffer.trim() !== "") throw new Error(`NDJSON ended without a newline: ${buffer}`);
}

/** All lines of an NDJSON response. */
export async function allLines(res: Response): Promise<Record<string, unknown>[]> {
  const out = [];
  for await (const line of ndjson(res)) out.push(line);
  return out;
}

/** A CSV with header `email,name` and `n` rows `user<i>@example.com,N<i>`. */
export function rowsCsv(n: number, from = 1): string {
  let s = "email,name\n";
  for (let i = from; i < from + n; i++) s += `user${i}@example.com,N${i}\n`;
  return s;
}

/** A request body the test feeds by hand: push text, then close or fail it. */
export interface Feeder {
  readonly body: ReadableStream<Uint8Array>;
  push(text: string): void;
  close(): void;
  fail(reason?: unknown): void;
}

/**
 * A hand-fed request body, starting with `initial`. The server answers once
 * it has read the CSV header and the first rows, so give those up front.
 */
export function feeder(initial: string): Feeder {
  const enc = new TextEncoder();
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const body = new ReadableStream<Uint8Array>({
    start: (c) => {
      controller = c;
      c.enqueue(enc.encode(initial));
    },
  });
  return {
    body,
    push: (text) => controller.enqueue(enc.encode(text)),
    close: () => controller.close(),
    fail: (reason) => controller.error(reason ?? new Error("client died")),
  };
}

/** What a raw exchange produced. */
export interface RawResult {
  /** Status code of the response, 0 if none came. */
  readonly status: number;
  /** The whole response as text (head and body, chunk framing included). */
  readonly text: string;
  /** Body bytes written before the server stopped taking them. */
  readonly wrote: number;
  /** The write error that ended the upload, if one did. */
  readonly writeError?: string;
  /** Body bytes written when the first byte of the response arrived (Infinity: none came). */
  readonly answeredAfter: number;
}

/**
 * Send `head` (request line and headers, without the blank line) and then the
 * `body` pieces over a raw TCP connection while reading the response. With
 * `halfClose`, the write side is shut after the body (the client "dies" but
 * can still read). Stops writing at the first write error. Bounded by `timeoutMs`.
 */
export async function rawExchange(
  port: number,
  head: string,
  body: Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
  opts: { halfClose?: boolean; timeoutMs?: number } = {},
): Promise<RawResult> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const enc = new TextEncoder();
  let text = "";
  let wrote = 0;
  let answeredAfter = Infinity;
  const reading = (async () => {
    const decoder = new TextDecoder();
    const buf = new Uint8Array(64 * 1024);
    try {
      while (!responseComplete(text)) {
        const n = await conn.read(buf);
        if (n === null) break;
        if (text === "") answeredAfter = wrote;
        text += decoder.decode(buf.subarray(0, n), { stream: true });
      }
    } catch {
      // Reset by the server: keep what arrived.
    }
  })();
  let writeError: string | undefined;
  try {
    await writeAll(conn, enc.encode(head + "\r\n\r\n"));
    for await (const piece of body) {
      await writeAll(conn, piece);
      wrote += piece.length;
    }
    if (opts.halfClose) await conn.closeWrite();
  } catch (error) {
    writeError = String(error);
  }
  const timeout = setTimeout(() => conn.close(), opts.timeoutMs ?? 10_000);
  await reading;
  clearTimeout(timeout);
  try {
    conn.close();
  } catch {
    // Already closed by the timeout.
  }
  const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
  return { status: m ? Number(m[1]) : 0, text, wrote, writeError, answeredAfter };
}

/** True once `text` holds a whole HTTP/1.1 response (Content-Length or chunked; ASCII bodies). */
function responseComplete(text: string): boolean {
  const end = text.indexOf("\r\n\r\n");
  if (end < 0) return false;
  const head = text.slice(0, end).toLowerCase();
  const length = /\r\ncontent-length: *(\d+)/.exec(head);
  if (length) return text.length - end - 4 >= Number(length[1]);
  if (/\r\ntransfer-encoding: *chunked/.test(head)) return text.endsWith("\r\n0\r\n\r\n");
  return false;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let at = 0;
  while (at < bytes.length) at += await conn.write(bytes.subarray(at));
}

/** The JSON objects found on lines of a raw (possibly chunked) response body. */
export function jsonLinesOf(raw: string): Record<string, unknown>[] {
  const out = [];
  for (const line of raw.split(/\r?\n/)) {
    if (line.startsWith("{")) {
      try {
        out.push(JSON.parse(line));
      } catch {
        // A line split by chunk framing; the tests look only at whole ones.
      }
    }
  }
  return out;
}
