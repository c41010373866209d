/**
 * SMTP DATA framing (RFC 5321 §4.5.2): every line that starts with "." gets one
 * more "." in front, and the message ends with CRLF "." CRLF.
 *
 * @module
 */
import type { ByteBuffer } from "./byte_buffer.ts";

const DOT = 0x2e;
const CR = 0x0d;
const LF = 0x0a;
const END = new Uint8Array([DOT, CR, LF]);
const CRLF_END = new Uint8Array([CR, LF, DOT, CR, LF]);

/**
 * Append `data` to `out` dot-stuffed, followed by the end-of-data marker
 * (`.\r\n`, preceded by `\r\n` when the message does not already end with one).
 * A line start split across chunks is handled; the chunks are never modified.
 *
 * It scans for "." rather than for line ends: base64 bodies hold no dots at all,
 * so most messages cost one native scan per chunk.
 */
export function writeDotStuffed(data: readonly Uint8Array[], out: ByteBuffer): void {
  let lineStart = true;
  let last = LF;
  let beforeLast = CR;
  for (let c = 0; c < data.length; c++) {
    const chunk = data[c];
    const n = chunk.length;
    if (n === 0) continue;
    out.reserve(n + 16);
    if (lineStart && chunk[0] === DOT) out.pushByte(DOT);
    let from = 0;
    let i = chunk.indexOf(DOT, 1);
    while (i !== -1) {
      if (chunk[i - 1] === LF) {
        out.push(chunk, from, i);
        out.pushByte(DOT);
        from = i;
      }
      i = chunk.indexOf(DOT, i + 1);
    }
    out.push(chunk, from, n);
    beforeLast = n > 1 ? chunk[n - 2] : last;
    last = chunk[n - 1];
    lineStart = last === LF;
  }
  out.push(last === LF && beforeLast === CR ? END : CRLF_END);
}
