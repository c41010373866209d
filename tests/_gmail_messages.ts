/**
 * Outgoing messages for the Gmail tests and benchmark, with what each was
 * meant to say, so a received `raw` can be parsed and compared.
 *
 * Built by hand (RFC 2047 B-encoded headers, base64 UTF-8 body) until
 * core/message.ts lands; then this switches to `MessageComposer`.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import type { Outgoing } from "../core/types.ts";

/** What a test message is meant to carry. */
export interface MeantMessage {
  readonly line: number;
  readonly to: string;
  readonly name: string;
  readonly subject: string;
  readonly text: string;
  readonly from: string;
  readonly fromName: string;
  readonly messageId: string;
}

const encoder = new TextEncoder();

/** RFC 2047 encoded words (B encoding, UTF-8) for non-ASCII text, split at characters. */
function encodeWords(text: string): string {
  if (/^[\x20-\x7e]*$/.test(text)) return text;
  const words: string[] = [];
  let chunk = "";
  for (const ch of text) {
    if (encoder.encode(chunk + ch).length > 45) {
      words.push(chunk);
      chunk = "";
    }
    chunk += ch;
  }
  if (chunk) words.push(chunk);
  return words.map((w) => `=?UTF-8?B?${Buffer.from(w, "utf8").toString("base64")}?=`).join("\r\n ");
}

function base64Lines(text: string): string {
  const b64 = Buffer.from(text, "utf8").toString("base64");
  return (b64.match(/.{1,76}/g) ?? []).join("\r\n");
}

/** The meant content of message number `line` (deterministic, some non-ASCII). */
export function meant(line: number, overrides: Partial<MeantMessage> = {}): MeantMessage {
  return {
    line,
    to: `user${line}@example.com`,
    name: line % 3 === 0 ? "Jürgen" : `User ${line}`,
    subject: line % 2 === 0 ? `Grüße — 東京 #${line}` : `Hello #${line}`,
    text: `Hallo ${line}, ça va? 東京\nsecond line\n`,
    from: "sender@example.org",
    fromName: "Sender Team",
    messageId: `<test.${line}@example.org>`,
    ...overrides,
  };
}

/** Render `m` as RFC 5322 bytes in an {@link Outgoing}. */
export function outgoing(m: MeantMessage): Outgoing {
  const head = [
    `From: ${encodeWords(m.fromName)} <${m.from}>`,
    `To: ${encodeWords(m.name)} <${m.to}>`,
    `Subject: ${encodeWords(m.subject)}`,
    "Date: Mon, 01 Jun 2026 12:00:00 +0000",
    `Message-ID: ${m.messageId}`,
    "MIME-Version: 1.0",
    "Content-Type: text/plain; charset=utf-8",
    "Content-Transfer-Encoding: base64",
  ].join("\r\n");
  const data = encoder.encode(`${head}\r\n\r\n${base64Lines(m.text.replaceAll("\n", "\r\n"))}\r\n`);
  // Two chunks, as the composer shares static parts: the transport must join them.
  const cut = Math.floor(data.length / 2);
  return {
    line: m.line,
    from: m.from,
    to: m.to,
    smtpUtf8: false,
    eightBit: false,
    messageId: m.messageId,
    data: [data.subarray(0, cut), data.subarray(cut)],
    size: data.length,
  };
}

/** Messages 1..n (or `first`..`first+n-1`) and what each means. */
export function messages(n: number, first = 1): { meant: MeantMessage[]; out: Outgoing[] } {
  const list = Array.from({ length: n }, (_, i) => meant(first + i));
  return { meant: list, out: list.map(outgoing) };
}
