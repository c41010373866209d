/**
 * SMTP replies: an incremental parser for the bytes a server sends (multi-line
 * replies, enhanced status codes, lines split across reads) and the helpers
 * that turn a reply into a result code and a queue id.
 *
 * @module
 */
import { SmtpError } from "./error.ts";

/** One complete server reply (all its lines). */
export interface Reply {
  /** The three-digit reply code, e.g. `250`. */
  readonly code: number;
  /** The RFC 3463 enhanced status code (`"5.1.1"`) when the reply starts with one, else `""`. */
  readonly enhanced: string;
  /** The text of every line without the code prefix, joined with `"\n"`. */
  readonly text: string;
}

/** Longest reply line accepted before the server is deemed broken (RFC 5321 allows 512). */
export const MAX_REPLY_LINE = 16_384;

const LF = 0x0a;
const CR = 0x0d;
const decoder = new TextDecoder();

/**
 * Parses the server's byte stream into {@link Reply} objects. Feed it every
 * chunk read from the socket; it keeps partial lines and multi-line replies
 * between calls.
 */
export class ReplyParser {
  #partial: Uint8Array | null = null;
  #lines: string[] = [];
  #code = 0;

  /** True when bytes of an unfinished reply are buffered. */
  get pending(): boolean {
    return this.#partial !== null || this.#lines.length > 0;
  }

  /** Forget buffered bytes (after STARTTLS: nothing sent in clear text may count). */
  reset(): void {
    this.#partial = null;
    this.#lines = [];
    this.#code = 0;
  }

  /**
   * Parse `bytes[start, end)` and call `onReply` for each complete reply, in
   * order. Throws {@link SmtpError} (`EPROTOCOL`) on a malformed line.
   */
  feed(
    bytes: Uint8Array,
    start: number,
    end: number,
    onReply: (reply: Reply) => void,
  ): void {
    let at = start;
    while (at < end) {
      const lf = bytes.indexOf(LF, at);
      if (lf === -1 || lf >= end) {
        this.#keepPartial(bytes, at, end);
        return;
      }
      let line: Uint8Array;
      let ls: number;
      let le = lf;
      if (this.#partial !== null) {
        line = concat(this.#partial, bytes.subarray(at, lf));
        this.#partial = null;
        ls = 0;
        le = line.length;
      } else {
        line = bytes;
        ls = at;
      }
      if (le > ls && line[le - 1] === CR) le--;
      at = lf + 1;
      const reply = this.#line(line, ls, le);
      if (reply !== null) onReply(reply);
    }
  }

  #keepPartial(bytes: Uint8Array, at: number, end: number): void {
    const rest = bytes.slice(at, end);
    this.#partial = this.#partial === null ? rest : concat(this.#partial, rest);
    if (this.#partial.length > MAX_REPLY_LINE) {
      throw new SmtpError(
        "EPROTOCOL",
        `SMTP server sent a reply line longer than ${MAX_REPLY_LINE} bytes`,
      );
    }
  }

  #line(b: Uint8Array, s: number, e: number): Reply | null {
    const len = e - s;
    const d0 = b[s] - 48, d1 = b[s + 1] - 48, d2 = b[s + 2] - 48;
    const sep = len > 3 ? b[s + 3] : 0x20;
    if (
      len < 3 || d0 < 2 || d0 > 5 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9 ||
      (sep !== 0x20 && sep !== 0x2d)
    ) {
      throw new SmtpError(
        "EPROTOCOL",
        `SMTP server sent a malformed reply line: ${
          JSON.stringify(ascii(b, s, Math.min(e, s + 80)))
        }`,
      );
    }
    const code = d0 * 100 + d1 * 10 + d2;
    if (this.#lines.length > 0 && code !== this.#code) {
      throw new SmtpError(
        "EPROTOCOL",
        `SMTP server changed the reply code inside a multi-line reply (${this.#code} then ${code})`,
      );
    }
    this.#code = code;
    const text = len > 4 ? ascii(b, s + 4, e) : "";
    if (sep === 0x2d) {
      this.#lines.push(text);
      return null;
    }
    let all = text;
    if (this.#lines.length > 0) {
      this.#lines.push(text);
      all = this.#lines.join("\n");
      this.#lines = [];
    }
    return { code, enhanced: enhancedCode(code, all), text: all };
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/** Decode a short line: a fast path for ASCII, UTF-8 otherwise. */
function ascii(b: Uint8Array, s: number, e: number): string {
  if (e - s > 256) return decoder.decode(b.subarray(s, e));
  let out = "";
  for (let i = s; i < e; i++) {
    const c = b[i];
    if (c >= 0x80) return decoder.decode(b.subarray(s, e));
    out += String.fromCharCode(c);
  }
  return out;
}

/** The enhanced status code at the start of `text` when its class matches `code`, else `""`. */
export function enhancedCode(code: number, text: string): string {
  const c = text.charCodeAt(0);
  if (c !== 48 + Math.floor(code / 100) || text.charCodeAt(1) !== 0x2e) return "";
  const m = /^[245]\.\d{1,3}\.\d{1,3}(?=\s|$)/.exec(text);
  return m === null ? "" : m[0];
}

/** The short code of a reply for results: the enhanced code when given, else the basic one. */
export function replyCode(reply: Reply): string {
  return reply.enhanced !== "" ? reply.enhanced : String(reply.code);
}

/** A reply as one line for reports: `550 5.1.1 No such user` (multi-line joined with " / "). */
export function formatReply(reply: Reply): string {
  const text = reply.text.includes("\n") ? reply.text.split("\n").join(" / ") : reply.text;
  return text === "" ? String(reply.code) : `${reply.code} ${text}`;
}

const QUEUE_ID_PATTERNS: readonly RegExp[] = [
  /\bqueued as ([A-Za-z0-9][\w.@<>+=-]*)/i, // Postfix, smtp-sink, many others
  /\bid=([A-Za-z0-9][\w.@<>+=-]*)/i, // Exim
  /^(?:\d\.\d{1,3}\.\d{1,3} )?OK \d+ (\S+) - gsmtp/, // Gmail
  /^(?:\d\.\d{1,3}\.\d{1,3} )?(\S+) Message accepted for delivery/i, // Sendmail
  /^(?:\d\.\d{1,3}\.\d{1,3} )?(<[^>\s]+>) \[InternalId=/, // Exchange / Microsoft 365
];

/**
 * The queue id in a reply to the end of DATA, when a known server format
 * carries one: `250 2.0.0 Ok: queued as 4Xyz` gives `"4Xyz"`.
 */
export function parseQueueId(text: string): string | undefined {
  for (const re of QUEUE_ID_PATTERNS) {
    const m = re.exec(text);
    if (m !== null) return m[1].replace(/[.,;]+$/, "");
  }
  return undefined;
}
