/**
 * Gmail batch requests: many `users.messages.send` calls in one
 * `multipart/mixed` HTTP request, and the parser for the `multipart/mixed`
 * response whose parts are whole HTTP responses, matched by `Content-ID`.
 *
 * Format (Google's "Batching requests" guide): each request part carries
 * `Content-Type: application/http` and `Content-ID: <id>`, then a blank line and
 * a whole inner request (request line, headers, blank line, JSON body), CRLF
 * line ends. Each response part carries `Content-ID: <response-id>` and a
 * whole inner response (status line, headers, blank line, body). Responses come
 * in any order and with their own boundary.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import type { Outgoing } from "../../core/types.ts";

/** One `users.messages.send` call to put in a batch. */
export interface SendPart {
  /** The Content-ID without angle brackets; unique within the batch. */
  readonly id: string;
  /** `me` or the mailbox address. */
  readonly userId: string;
  /** The message as base64url (see {@link rawOf}). */
  readonly raw: string;
}

/** A batch request body ready for `fetch`. */
export interface BatchRequest {
  /** The `Content-Type` header value, with the boundary. */
  readonly contentType: string;
  /** The body (ASCII only). */
  readonly body: string;
}

/** One part of a batch response. */
export interface BatchResponsePart {
  /** The part's Content-ID with angle brackets and the `response-` prefix removed. */
  readonly contentId: string | undefined;
  /** The inner HTTP status, e.g. 200 or 429. */
  readonly status: number;
  /** The inner status text, e.g. `"OK"` (may be empty). */
  readonly statusText: string;
  /** The inner response headers. */
  readonly headers: Headers;
  /** The inner response body (usually JSON). */
  readonly body: string;
}

/** Path of a send call inside a batch, relative to the API root. */
export function sendPath(userId: string): string {
  return `/gmail/v1/users/${encodeURIComponent(userId).replaceAll("%40", "@")}/messages/send`;
}

/**
 * The message as Gmail's `raw` field: the RFC 5322 bytes in base64url (the
 * URL-safe alphabet, `-` and `_`, no padding).
 */
export function rawOf(message: Outgoing): string {
  if (message.data.length === 1) {
    const d = message.data[0];
    return Buffer.from(d.buffer, d.byteOffset, d.byteLength).toString("base64url");
  }
  const joined = new Uint8Array(message.size);
  let at = 0;
  for (const chunk of message.data) {
    joined.set(chunk, at);
    at += chunk.length;
  }
  return Buffer.from(joined.buffer).toString("base64url");
}

/** A fresh random boundary: `batch_` and 32 hex digits. */
export function newBoundary(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  let hex = "";
  for (const b of bytes) hex += b.toString(16).padStart(2, "0");
  return `batch_${hex}`;
}

/** Build the batch request for `parts` (at most 100, the caller checks). */
export function buildSendBatch(parts: readonly SendPart[], boundary = newBoundary()): BatchRequest {
  const chunks: string[] = [];
  for (const part of parts) {
    if (/[\s<>]/.test(part.id)) throw new TypeError(`Invalid Content-ID "${part.id}"`);
    const json = `{"raw":"${part.raw}"}`;
    chunks.push(
      `--${boundary}\r\n` +
        "Content-Type: application/http\r\n" +
        "Content-Transfer-Encoding: binary\r\n" +
        `Content-ID: <${part.id}>\r\n` +
        "\r\n" +
        `POST ${sendPath(part.userId)}\r\n` +
        "Content-Type: application/json\r\n" +
        `Content-Length: ${json.length}\r\n` +
        "\r\n" +
        json +
        "\r\n",
    );
  }
  chunks.push(`--${boundary}--\r\n`);
  return { contentType: `multipart/mixed; boundary=${boundary}`, body: chunks.join("") };
}

/** The boundary parameter of a `multipart/*` Content-Type, or undefined. */
export function boundaryOf(contentType: string | null | undefined): string | undefined {
  if (!contentType || !/^\s*multipart\//i.test(contentType)) return undefined;
  const match = /;\s*boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
  return match ? (match[1] ?? match[2]) : undefined;
}

/** Split `text` into a header block and the rest at the first blank line (CRLF or LF). */
function splitHead(text: string): [string, string] {
  const m = /\r?\n\r?\n/.exec(text);
  if (!m) return [text, ""];
  return [text.slice(0, m.index), text.slice(m.index + m[0].length)];
}

/** Parse header lines into `Headers`, skipping lines that are not `Name: value`. */
function parseHeaderLines(lines: readonly string[], into: Headers): void {
  for (const line of lines) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim();
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) continue;
    try {
      into.append(name, line.slice(colon + 1).trim());
    } catch {
      // A value Headers refuses (control characters) is dropped, not fatal.
    }
  }
}

/** Unfold and split a header block into logical lines. */
function headerLines(block: string): string[] {
  const out: string[] = [];
  for (const line of block.split(/\r?\n/)) {
    if (/^[ \t]/.test(line) && out.length > 0) out[out.length - 1] += " " + line.trim();
    else if (line !== "") out.push(line);
  }
  return out;
}

/** Content-ID value without angle brackets and without the `response-` prefix. */
export function responseContentId(value: string | null): string | undefined {
  if (value === null) return undefined;
  let id = value.trim();
  if (id.startsWith("<") && id.endsWith(">")) id = id.slice(1, -1).trim();
  if (id.startsWith("response-")) id = id.slice("response-".length);
  return id;
}

/**
 * Parse a batch response body. Throws `SyntaxError` when the body is not a
 * multipart message with the boundary of `contentType`; a part whose inner
 * status line cannot be read is skipped (its message then has no answer).
 */
export function parseBatchResponse(
  contentType: string | null | undefined,
  body: string,
): BatchResponsePart[] {
  const boundary = boundaryOf(contentType);
  if (boundary === undefined) {
    throw new SyntaxError(
      `Gmail's batch response is not multipart (Content-Type: ${contentType ?? "none"})`,
    );
  }
  const delimiter = `--${boundary}`;
  const parts: BatchResponsePart[] = [];
  let at = body.startsWith(delimiter) ? 0 : body.indexOf(`\n${delimiter}`);
  if (at < 0) throw new SyntaxError(`Gmail's batch response has no part with boundary ${boundary}`);
  if (at > 0) at += 1;
  let closed = false;
  while (at >= 0) {
    const afterDelimiter = at + delimiter.length;
    if (body.startsWith("--", afterDelimiter)) {
      closed = true;
      break;
    }
    const lineEnd = body.indexOf("\n", afterDelimiter);
    if (lineEnd < 0) break;
    const next = body.indexOf(`\n${delimiter}`, lineEnd);
    const contentEnd = next < 0 ? body.length : (body[next - 1] === "\r" ? next - 1 : next);
    const part = parsePart(body.slice(lineEnd + 1, contentEnd));
    if (part) parts.push(part);
    at = next < 0 ? -1 : next + 1;
  }
  if (!closed && parts.length === 0) {
    throw new SyntaxError("Gmail's batch response ended before its first part");
  }
  return parts;
}

function parsePart(text: string): BatchResponsePart | undefined {
  const [head, content] = splitHead(text);
  const partHeaders = new Headers();
  parseHeaderLines(headerLines(head), partHeaders);
  const [innerHead, innerBody] = splitHead(content);
  const lines = headerLines(innerHead);
  const status = /^HTTP\/\d(?:\.\d)?\s+(\d{3})(?:\s+(.*))?$/.exec(lines[0] ?? "");
  if (!status) return undefined;
  const headers = new Headers();
  parseHeaderLines(lines.slice(1), headers);
  return {
    contentId: responseContentId(partHeaders.get("content-id")),
    status: Number(status[1]),
    statusText: (status[2] ?? "").trim(),
    headers,
    body: innerBody,
  };
}
