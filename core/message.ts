/**
 * Recipient + template -> RFC 5322 message bytes (RFC 2045/2047/6532).
 *
 * {@link MessageComposer} checks the template once and encodes every static
 * part once (header block, boundaries, bodies without merge fields) into shared
 * `Uint8Array` chunks; `render()` builds only what varies per row: Date (with
 * the static header block, one shared chunk per second), Message-ID, To, and
 * the merged headers and bodies.
 *
 * Rendering is the hot path of a campaign (a million rows in well under a
 * second), so a row is written straight into a shared slab (`ChunkWriter`):
 * each merged value is classified once per row; printable ASCII values take
 * fast paths that copy bytes, and everything else (encoded-words, folding,
 * quoted-printable or base64 bodies) goes through the per-row writers in
 * mime_writers.ts, which write exactly the bytes of the general formatters in
 * mime.ts without building strings. The differential test in message_test.ts holds
 * the two to the same bytes.
 *
 * @module
 */

import type { Outgoing, Recipient } from "./types.ts";
import {
  base64IsShorter,
  encodeBody,
  escapeCount,
  formatDate,
  formatExtraHeader,
  formatMailbox,
  formatUnstructured,
  HARD_LINE_LIMIT,
  normalizeNewlines,
  SOFT_LINE_LIMIT,
} from "./mime.ts";
import {
  ChunkWriter,
  encodeUtf8Into,
  HeaderWriter,
  Slab,
  writeBody,
  writeEncodedBody,
} from "./mime_writers.ts";
import {
  bindTemplate,
  type BoundTemplate,
  escapeHtml,
  isStatic,
  type MessageTemplate,
  parseTemplate,
  TemplateError,
  type TemplateSource,
} from "./template.ts";
import { type MessageShape, PackedMessages, RenderedMessage } from "./rendered_message.ts";

export { PackedMessages };

/** Options for {@link MessageComposer}. */
export interface ComposeOptions {
  /**
   * Stable id of this campaign; default: 12 random hex characters. The
   * Message-ID is `<{campaignId}.{line}@{domain of from}>`, so a retry or a
   * resume of the same row reuses the same Message-ID (receivers can dedupe)
   * while rows differ. Letters, digits, `.`, `_` and `-`, at most 64.
   */
  campaignId?: string;
  /** Clock for the Date header (ms since the epoch); default `Date.now`. Rendered at most once per second. */
  now?: () => number;
  /**
   * Default false: bodies are 7bit when pure ASCII with lines <= 998, else
   * quoted-printable or base64 (by content); never 8bit unless allowed. When
   * true, non-ASCII bodies with short lines go as 8bit and `Outgoing.eightBit`
   * is set (the server must offer 8BITMIME).
   */
  allow8bit?: boolean;
}

const encoder = new TextEncoder();
const RESERVED_HEADERS = new Set([
  "date",
  "message-id",
  "mime-version",
  "from",
  "sender",
  "reply-to",
  "to",
  "cc",
  "bcc",
  "subject",
  "content-type",
  "content-transfer-encoding",
]);
const HEADER_NAME = /^[\x21-\x39\x3b-\x7e]+$/;
// deno-lint-ignore no-control-regex -- control characters are what this matches
const HEADER_VALUE_UNSAFE = /[\x00-\x08\x0a-\x1f\x7f]/;
const CAMPAIGN_ID = /^[A-Za-z0-9._-]{1,64}$/;
// deno-lint-ignore no-control-regex -- control characters are what this matches
const ADDRESS = /^[^\s<>()[\]\\,;:"@\x00-\x1f\x7f]+@[^\s<>()[\]\\,;:"@\x00-\x1f\x7f]+$/;
// deno-lint-ignore no-control-regex -- control characters are what this matches
const NON_ASCII = /[^\x00-\x7f]/;
const SEVEN_BIT_STATIC = /^[\x20-\x7e\t\r\n]*$/;

interface Mailbox {
  /** Display name template source (may hold merge fields). */
  readonly name: string;
  /** The address, domain in punycode. */
  readonly address: string;
  /** True when the local part is not ASCII. */
  readonly utf8: boolean;
}

/** Split `Name <addr>`, `"Quoted, Name" <addr>`, `<addr>` or `addr`, and check the address. */
function parseMailbox(source: string, where: string): Mailbox {
  if (typeof source !== "string") throw new TypeError(`Template ${where} must be a string`);
  const s = source.trim();
  let name = "";
  let address = s;
  if (s.endsWith(">")) {
    const lt = s.lastIndexOf("<");
    if (lt < 0) {
      throw new TemplateError(
        `Bad ${where} ${JSON.stringify(source)}: write "Name <user@example.com>"`,
      );
    }
    name = s.slice(0, lt).trim();
    address = s.slice(lt + 1, -1).trim();
    if (name.length >= 2 && name.startsWith('"') && name.endsWith('"')) {
      name = name.slice(1, -1).replace(/\\(.)/g, "$1");
    }
  }
  if (address.includes("{{")) {
    throw new TemplateError(
      `Merge fields are allowed only in the display name of ${where}, not in its address ${address}`,
    );
  }
  if (!ADDRESS.test(address)) {
    throw new TemplateError(
      `Bad ${where} address ${
        JSON.stringify(address)
      }: write user@example.com or "Name <user@example.com>"`,
    );
  }
  const at = address.lastIndexOf("@");
  const local = address.slice(0, at);
  let domain = address.slice(at + 1);
  if (NON_ASCII.test(domain) || /[A-Z]/.test(domain)) {
    try {
      domain = new URL(`http://${domain}/`).hostname;
    } catch {
      throw new TemplateError(
        `Bad ${where} address ${JSON.stringify(address)}: the domain is not valid`,
      );
    }
  }
  return { name, address: `${local}@${domain}`, utf8: NON_ASCII.test(local) };
}

function randomHex(chars: number): string {
  const bytes = crypto.getRandomValues(new Uint8Array(Math.ceil(chars / 2)));
  let out = "";
  for (const b of bytes) out += b.toString(16).padStart(2, "0");
  return out.slice(0, chars);
}

function ensureFinalNewline(text: string): string {
  return text.length === 0 || text.endsWith("\r\n") ? text : text + "\r\n";
}

/**
 * One per-row step of a composer: writes into the row's chunk or adds a shared
 * chunk. `row` holds the class (and bytes) of each merged value.
 */
type Step = (r: Recipient, row: RowValues) => void;
type Item = string | Uint8Array | Step;

// Per-row header steps write `\r\nName: value`: the CRLF ending the previous
// line joins the next constant, so each header costs fewer writes.
const CRLF = encoder.encode("\r\n");
const TO_PREFIX = encoder.encode("\r\nTo: ");
const ANGLE_OPEN = encoder.encode(" <");
const QUOTE_ANGLE_OPEN = encoder.encode('" <');
const SEVEN_BIT_HEAD = encoder.encode("7bit\r\n\r\n");
/** Static pieces up to this size between two per-row steps are copied into the row's chunk. */
const INLINE_LIMIT = 256;

function concat(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Renders one template for many recipients. The constructor validates
 * everything (merge fields against `columns`, addresses, extra headers,
 * options) and throws {@link TemplateError} or `TypeError` before any send.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MessageComposer } from "./message.ts";
 * import { joinChunks } from "./types.ts";
 *
 * const composer = new MessageComposer(
 *   { from: "Team <team@example.com>", toName: "{{name}}", subject: "Hello {{name}}", text: "Hi {{name}}!" },
 *   ["email", "name"],
 *   { campaignId: "spring-2026" },
 * );
 * const message = composer.render({
 *   line: 2,
 *   address: "ann@example.com",
 *   values: ["ann@example.com", "Ann"],
 *   smtpUtf8: false,
 * });
 * assert.equal(message.messageId, "<spring-2026.2@example.com>");
 * const text = new TextDecoder().decode(joinChunks(message.data));
 * assert.match(text, /\r\nSubject: Hello Ann\r\n/);
 * ```
 */
export class MessageComposer {
  readonly #steps: readonly Step[];
  readonly #from: string;
  readonly #fromUtf8: boolean;
  readonly #now: () => number;
  readonly #allow8bit: boolean;
  readonly #midPrefix: string;
  readonly #midSuffix: string;
  readonly #boundary: string | undefined;
  readonly #staticEightBit: boolean;
  readonly #writer = new ChunkWriter();
  readonly #headers = new HeaderWriter(this.#writer);
  readonly #boundaryBytes: Uint8Array | undefined;
  /** The columns merged anywhere, and their values in the row being rendered. */
  readonly #used: readonly number[];
  readonly #row: RowValues;
  /** The static header block (before Date). */
  #head = "";
  #dateSecond = Number.NaN;
  #dateBytes = new Uint8Array(0);
  // Per-render state (render() is synchronous, so one set is enough).
  // A row's chunks (the first #count entries of #chunks, reused): shared
  // static chunks, and end offsets (numbers) of row bytes in #slab, which run
  // on from #first without gaps. A row whose bytes span two slabs keeps views
  // instead (#slab undefined).
  readonly #chunks: (Uint8Array | number)[] = [];
  #count = 0;
  #segments = 0;
  #slab: Slab | undefined;
  #first = 0;
  #end = 0;
  #compact = true;
  #size = 0;
  /**
   * The chunks of a row whose bytes are one run in one slab (nearly every
   * row), its offset written as -1: shared by all such messages, which keep
   * only their own start and end offsets.
   */
  #layout: readonly (Uint8Array | number)[] | undefined;
  readonly #shape: MessageShape;
  #eightBit = false;
  readonly #scratch: string[] = [];
  /** A merged body as UTF-8 (the general path). */
  #merged = new Uint8Array(1024);

  /** The campaign id used in every Message-ID. */
  readonly campaignId: string;

  /** Check `template` against `columns` and encode its static parts once. */
  constructor(template: MessageTemplate, columns: readonly string[], opts: ComposeOptions = {}) {
    if (template === null || typeof template !== "object") {
      throw new TypeError("Template must be an object");
    }
    if (!Array.isArray(columns) || columns.some((c) => typeof c !== "string")) {
      throw new TypeError("Columns must be an array of strings");
    }
    for (const key of ["subject", "text"] as const) {
      if (typeof template[key] !== "string") {
        throw new TypeError(`Template ${key} must be a string`);
      }
    }
    for (const key of ["replyTo", "toName", "html"] as const) {
      if (template[key] !== undefined && typeof template[key] !== "string") {
        throw new TypeError(`Template ${key} must be a string when given`);
      }
    }
    const campaignId = opts.campaignId ?? randomHex(12);
    if (typeof campaignId !== "string" || !CAMPAIGN_ID.test(campaignId)) {
      throw new TypeError(
        `Option campaignId must be 1 to 64 letters, digits, ".", "_" or "-", got ${
          JSON.stringify(campaignId)
        }`,
      );
    }
    if (opts.now !== undefined && typeof opts.now !== "function") {
      throw new TypeError("Option now must be a function");
    }
    if (opts.allow8bit !== undefined && typeof opts.allow8bit !== "boolean") {
      throw new TypeError("Option allow8bit must be a boolean");
    }
    this.campaignId = campaignId;
    this.#now = opts.now ?? Date.now;
    this.#allow8bit = opts.allow8bit ?? false;

    const from = parseMailbox(template.from, "from");
    const replyTo = template.replyTo === undefined
      ? undefined
      : parseMailbox(template.replyTo, "replyTo");
    this.#from = from.address;
    this.#fromUtf8 = from.utf8;
    this.#midPrefix = `<${campaignId}.`;
    this.#midSuffix = `@${from.address.slice(from.address.lastIndexOf("@") + 1)}>`;
    this.#shape = { from: from.address, midPrefix: this.#midPrefix, midSuffix: this.#midSuffix };

    const extra = this.#extraHeaders(template.headers);

    // Parse and bind every template at once, so one error lists every problem.
    const html = template.html === undefined ? undefined : normalizeNewlines(template.html);
    const sources: TemplateSource[] = [
      { where: "from", parts: parseTemplate(from.name, "from") },
      { where: "replyTo", parts: parseTemplate(replyTo?.name ?? "", "replyTo") },
      { where: "toName", parts: parseTemplate(template.toName ?? "", "toName") },
      { where: "subject", parts: parseTemplate(template.subject, "subject") },
      { where: "text", parts: parseTemplate(normalizeNewlines(template.text), "text") },
      { where: "html", parts: parseTemplate(html ?? "", "html"), allowRaw: true },
    ];
    const bound = bindTemplate(sources, columns);
    const [fromT, replyT, toT, subjectT, textT, htmlT] = bound;
    this.#used = [...new Set(bound.flatMap((t) => t.fields))];
    this.#row = new RowValues(Math.max(0, ...this.#used) + 1);

    let boundary: string | undefined;
    if (html !== undefined) {
      const texts = [...textT.statics, ...htmlT.statics].join("\n");
      do boundary = `=_${campaignId.slice(0, 24)}_${randomHex(16)}`; while (
        texts.includes(boundary)
      );
    }
    this.#boundary = boundary;
    this.#boundaryBytes = boundary === undefined ? undefined : encoder.encode(boundary);

    // The static header block and Date first (one shared chunk per second),
    // then the headers that vary per row, then the content.
    const w = this.#writer;
    const hw = this.#headers;
    const midSuffix = encoder.encode(this.#midSuffix);
    const items: Item[] = [];
    let head = "";
    const dyn: Step[] = [];
    if (isStatic(fromT)) head += formatMailbox("From", fromT.statics[0], from.address);
    else {
      const field = compileHeader("From", fromT);
      dyn.push((r, row) => {
        if (!writeMailbox(w, hw, field, r.values, row, from.address)) badAddress(r);
      });
    }
    if (replyTo !== undefined) {
      if (isStatic(replyT)) head += formatMailbox("Reply-To", replyT.statics[0], replyTo.address);
      else {
        const field = compileHeader("Reply-To", replyT);
        dyn.push((r, row) => {
          if (!writeMailbox(w, hw, field, r.values, row, replyTo.address)) badAddress(r);
        });
      }
    }
    if (template.toName !== undefined && (!isStatic(toT) || toT.statics[0] !== "")) {
      // A recipient with smtpUtf8 has a UTF-8 local part: it goes into To as
      // it is (RFC 6532); such a message travels only with SMTPUTF8. The
      // reader has validated the address; only what could break the header
      // is checked here (a Recipient may come from library code).
      const field = compileHeader("To", toT);
      dyn.push((r, row) => {
        if (!writeMailbox(w, hw, field, r.values, row, r.address)) badAddress(r);
      });
    } else {
      dyn.push((r) => {
        w.bytes(TO_PREFIX);
        if (!w.address(r.address)) badAddress(r);
      });
    }
    if (isStatic(subjectT)) head += formatUnstructured("Subject", subjectT.statics[0]);
    else {
      const field = compileHeader("Subject", subjectT);
      dyn.push((r, row) => writeUnstructured(w, hw, field, r.values, row));
    }
    head += "MIME-Version: 1.0\r\n" + extra;
    this.#head = head;
    items.push((r, row) => {
      this.#shared(this.#date());
      let at = w.reserve(16 + midSuffix.length);
      const buf = w.slab;
      at = putUint(buf, at, r.line);
      w.commit(putBytes(buf, at, midSuffix));
      for (let i = 0; i < dyn.length; i++) dyn[i](r, row);
    }, "\r\n");

    let staticEightBit = false;
    const part = (t: BoundTemplate, isHtml: boolean) => {
      const type = isHtml ? "html" : "plain";
      items.push(`Content-Type: text/${type}; charset=utf-8\r\nContent-Transfer-Encoding: `);
      if (isStatic(t)) {
        const body = encodeBody(ensureFinalNewline(t.statics[0]), this.#allow8bit, boundary);
        if (body.encoding === "8bit") staticEightBit = true;
        items.push(body.encoding + "\r\n\r\n", body.bytes);
      } else {
        const compiled = compileBody(t, isHtml, boundary !== undefined);
        items.push((r, row) => this.#body(compiled, r.values, row));
      }
    };
    if (boundary === undefined) {
      part(textT, false);
    } else {
      items.push(
        `Content-Type: multipart/alternative;\r\n boundary="${boundary}"\r\n\r\n--${boundary}\r\n`,
      );
      part(textT, false);
      // Each body ends with CRLF; the delimiter brings its own CRLF, so the
      // part's content keeps its final line end (as in a single-part message).
      items.push(`\r\n--${boundary}\r\n`);
      part(htmlT, true);
      items.push(`\r\n--${boundary}--\r\n`);
    }
    this.#steps = this.#plan(items);
    this.#staticEightBit = staticEightBit;
  }

  /**
   * Turn build items into steps: adjacent static items are joined; a short
   * static piece between two per-row steps is copied into the row's chunk;
   * every other static piece is one chunk shared by all messages.
   */
  #plan(items: readonly Item[]): Step[] {
    const merged: (Uint8Array[] | Step)[] = [];
    for (const item of items) {
      if (typeof item === "function") {
        merged.push(item);
        continue;
      }
      const bytes = typeof item === "string" ? encoder.encode(item) : item;
      if (bytes.length === 0) continue;
      const last = merged[merged.length - 1];
      if (Array.isArray(last)) last.push(bytes);
      else merged.push([bytes]);
    }
    const w = this.#writer;
    return merged.map((item, i) => {
      if (typeof item === "function") return item;
      const bytes = concat(item);
      const between = typeof merged[i - 1] === "function" && typeof merged[i + 1] === "function";
      if (between && bytes.length <= INLINE_LIMIT) return () => w.bytes(bytes);
      return () => this.#shared(bytes);
    });
  }

  /** Validate and format the extra headers once. */
  #extraHeaders(headers: Record<string, string> | undefined): string {
    if (headers === undefined) return "";
    if (headers === null || typeof headers !== "object") {
      throw new TypeError("Template headers must be an object");
    }
    let out = "";
    const seen = new Set<string>();
    for (const [name, value] of Object.entries(headers)) {
      if (!HEADER_NAME.test(name)) {
        throw new TemplateError(
          `Bad header name ${
            JSON.stringify(name)
          }: use printable ASCII without spaces or ":", e.g. List-Unsubscribe`,
        );
      }
      const key = name.toLowerCase();
      if (RESERVED_HEADERS.has(key)) {
        throw new TemplateError(
          `Header ${name} is set by mass-mailer itself; remove it from the extra headers`,
        );
      }
      if (seen.has(key)) throw new TemplateError(`Header ${name} is given twice; give it once`);
      seen.add(key);
      if (typeof value !== "string") throw new TypeError(`Header ${name} must have a string value`);
      if (HEADER_VALUE_UNSAFE.test(value)) {
        throw new TemplateError(
          `Header ${name} contains a line break or control character; put it on one line`,
        );
      }
      const line = formatExtraHeader(name, value);
      if (line.split("\r\n").some((l) => encoder.encode(l).length > HARD_LINE_LIMIT)) {
        throw new TemplateError(
          `Header ${name} has a word too long for one line (over ${HARD_LINE_LIMIT} octets)`,
        );
      }
      out += line;
    }
    return out;
  }

  /** The static header block and `Date: ...\r\nMessage-ID: <campaign.` as one chunk, made at most once per second. */
  #date(): Uint8Array {
    const second = Math.floor(this.#now() / 1000);
    if (second !== this.#dateSecond) {
      this.#dateBytes = encoder.encode(
        `${this.#head}Date: ${formatDate(second * 1000)}\r\nMessage-ID: ${this.#midPrefix}`,
      );
      this.#dateSecond = second;
      this.#layout = undefined; // its first chunk was the previous second's
    }
    return this.#dateBytes;
  }

  /** Write `<encoding>\r\n\r\n<body>` for a body with merge fields. */
  #body(part: CompiledBody, values: readonly string[], row: RowValues): void {
    const w = this.#writer;
    if (part.fast) {
      // Fast path: every merged value is printable ASCII, so the body stays
      // 7bit unless a line grows past 998 octets or the boundary could form.
      const { fields, raw } = part.bound;
      const { html, multipart, lead, tail, newline, endsEq, startsUnderscore } = part;
      const scratch = this.#scratch;
      const cls = row.cls;
      let col = newline[0] ? tail[0] : lead[0];
      let prevEq = endsEq[0];
      let total = part.staticLength;
      let ok = true;
      let escaped = false;
      for (let i = 0; i < fields.length && ok; i++) {
        let c = cls[fields[i]];
        let n = row.length[fields[i]];
        if (html && !raw[i] && (c & HTML_SPECIAL) !== 0) {
          const v = escapeHtml(values[fields[i]] ?? "");
          c = classifyValue(v, undefined, 0);
          n = v.length;
          scratch[i] = v;
          escaped = true;
        }
        if (n > 0) {
          if ((c & ASCII_TEXT) === 0) ok = false;
          else if (multipart) {
            if ((prevEq && (c & STARTS_UNDERSCORE) !== 0) || (c & HAS_EQ_UNDERSCORE) !== 0) {
              ok = false;
            }
            prevEq = (c & ENDS_EQ) !== 0;
          }
        }
        total += n;
        col += n;
        const k = i + 1;
        if (newline[k]) {
          if (col + lead[k] > HARD_LINE_LIMIT) ok = false;
          col = tail[k];
        } else col += lead[k];
        if (multipart && part.nonEmpty[k]) {
          if (prevEq && startsUnderscore[k]) ok = false;
          prevEq = endsEq[k];
        }
      }
      if (ok && col <= HARD_LINE_LIMIT) {
        if (total === 0) {
          w.bytes(SEVEN_BIT_HEAD);
          return;
        }
        const pieces = part.pieces;
        let at = w.reserve(part.piecesLength + total - part.staticLength);
        const buf = w.slab;
        at = putBytes(buf, at, pieces[0]);
        for (let i = 0; i < fields.length; i++) {
          const field = fields[i];
          at = escaped && html && !raw[i] && (cls[field] & HTML_SPECIAL) !== 0
            ? putAscii(buf, at, scratch[i])
            : row.put(buf, at, field);
          at = putBytes(buf, at, pieces[i + 1]);
        }
        w.commit(at);
        return;
      }
    }
    // General path: merge the body as UTF-8 into a reusable buffer, then
    // encode it straight into the slab.
    const t = part.bound;
    const { fields, raw } = t;
    const scratch = this.#scratch;
    let need = part.staticBytes + 2;
    let junction = part.loneEdges;
    for (let i = 0; i < fields.length; i++) {
      let v = values[fields[i]] ?? "";
      if (part.html && !raw[i] && (row.cls[fields[i]] & HTML_SPECIAL) !== 0) v = escapeHtml(v);
      scratch[i] = v;
      need += 3 * v.length;
      if (
        v.length > 0 &&
        ((v.charCodeAt(0) & 0xfc00) === 0xdc00 || (v.charCodeAt(v.length - 1) & 0xfc00) === 0xd800)
      ) junction = true;
    }
    if (junction) {
      // A lone surrogate at the edge of a piece could pair with its neighbour
      // once merged: encode the merged string as a whole.
      let s = t.statics[0];
      for (let i = 0; i < fields.length; i++) s += normalizeNewlines(scratch[i]) + t.statics[i + 1];
      const bytes = encoder.encode(ensureFinalNewline(s));
      if (writeBody(w, bytes, 0, bytes.length, this.#allow8bit, this.#boundaryBytes) === "8bit") {
        this.#eightBit = true;
      }
      return;
    }
    if (need > this.#merged.length) {
      this.#merged = new Uint8Array(Math.max(need, 2 * this.#merged.length));
    }
    // Without 8bit, a value above ASCII rules out all but quoted-printable
    // and base64, and the escapes decide between them: counted from the
    // values' bytes (the static pieces' are counted once) when no value holds
    // `=` or a control character, instead of scanning the whole body.
    let counted = !this.#allow8bit;
    let high = false;
    for (let i = 0; i < fields.length; i++) {
      const c = row.cls[fields[i]];
      if ((c & ASCII_ESCAPED) !== 0) counted = false;
      if ((c & ABOVE_ASCII) !== 0) high = true;
    }
    counted &&= high;
    let escapes = part.staticEscapes;
    const buf = this.#merged;
    const statics = part.staticPieces;
    let n = putBytes(buf, 0, statics[0]);
    for (let i = 0; i < fields.length; i++) {
      const field = fields[i];
      // Printable ASCII values are copied from the row's bytes (escaped ones are not there).
      const c = row.cls[field];
      if ((c & ASCII_TEXT) !== 0 && !(part.html && !raw[i] && (c & HTML_SPECIAL) !== 0)) {
        n = row.put(buf, n, field);
      } else {
        const from = n;
        n = encodeUtf8Into(scratch[i], buf, n, true);
        // Every byte of a character above ASCII is escaped; nothing else is here.
        if (counted) escapes += n - from - (scratch[i].length - row.high[field]);
      }
      n = putBytes(buf, n, statics[i + 1]);
    }
    if (n > 0 && !(buf[n - 2] === 13 && buf[n - 1] === 10)) {
      buf[n++] = 13;
      buf[n++] = 10;
    }
    if (counted) {
      writeEncodedBody(
        w,
        buf,
        0,
        n,
        base64IsShorter(escapes, n) ? "base64" : "quoted-printable",
      );
    } else if (writeBody(w, buf, 0, n, this.#allow8bit, this.#boundaryBytes) === "8bit") {
      this.#eightBit = true;
    }
  }

  /** End the row's current chunk and add `bytes` as a chunk of its own. */
  #shared(bytes: Uint8Array): void {
    this.#cut();
    this.#chunks[this.#count++] = bytes;
    this.#size += bytes.length;
  }

  /** End the row bytes written so far as one chunk (an offset while they stay in one slab). */
  #cut(): void {
    const w = this.#writer;
    const n = w.length;
    if (n === 0) return;
    const slab = w.current;
    const start = w.start;
    if (this.#compact) {
      if (this.#slab === undefined) {
        // This row holds bytes in the slab from now on (until it is released or made views).
        slab.holders++;
        this.#slab = slab;
        this.#first = start;
      } else if (slab !== this.#slab || start !== this.#end) {
        this.#toViews();
      }
    }
    this.#size += n;
    this.#segments++;
    if (this.#compact) {
      this.#end = w.cut();
      this.#chunks[this.#count++] = this.#end;
    } else {
      this.#chunks[this.#count++] = w.finish();
    }
  }

  /** The slab rolled over mid-row: turn the offsets recorded so far into views. */
  #toViews(): void {
    this.#compact = false;
    const chunks = this.#chunks;
    let at = this.#first;
    for (let i = 0; i < this.#count; i++) {
      const c = chunks[i];
      if (typeof c === "number") {
        chunks[i] = this.#slab!.bytes.subarray(at, c);
        at = c;
      }
    }
    // Views nobody counts: that slab is never reused; the row's hold on it ends.
    this.#slab!.pinned = true;
    this.#writer.release(this.#slab!);
    this.#slab = undefined;
  }

  /** Whether this row's chunks are {@link #layout} (one run of row bytes among the shared chunks). */
  #isLayout(): boolean {
    if (!this.#compact || this.#segments !== 1) return false;
    const chunks = this.#chunks;
    const count = this.#count;
    let layout = this.#layout;
    if (layout === undefined) {
      layout = this.#layout = chunks.slice(0, count).map((c) => typeof c === "number" ? -1 : c);
    }
    if (layout.length !== count) return false;
    for (let i = 0; i < count; i++) {
      const c = chunks[i];
      if (c !== layout[i] && !(typeof c === "number" && layout[i] === -1)) return false;
    }
    return true;
  }

  /**
   * Render the message for one recipient. Only the parts that vary are
   * encoded; static chunks are shared between messages and must not be mutated.
   *
   * For a recipient with `smtpUtf8: true` the To header carries the UTF-8
   * address as it is (RFC 6532); such a message needs an SMTPUTF8 session.
   */
  render(recipient: Recipient): Outgoing {
    this.#writer.discard(); // what a render that threw left behind
    if (this.#slab !== undefined) this.#writer.release(this.#slab);
    this.#count = 0;
    this.#segments = 0;
    this.#slab = undefined;
    this.#compact = true;
    this.#size = 0;
    this.#eightBit = this.#staticEightBit;
    // Classify each merged value once; every header and body uses the classes.
    const row = this.#row;
    row.load(recipient.values, this.#used);
    const steps = this.#steps;
    for (let i = 0; i < steps.length; i++) steps[i](recipient, row);
    this.#cut();
    const layout = this.#isLayout();
    const slab = this.#slab;
    this.#slab = undefined; // the message holds it now
    return new RenderedMessage(
      this.#shape,
      recipient.line,
      recipient.address,
      recipient.smtpUtf8 || this.#fromUtf8,
      this.#eightBit,
      layout ? this.#layout! : this.#chunks.slice(0, this.#count),
      slab,
      this.#first,
      layout ? this.#end : -1,
      this.#size,
    );
  }

  /**
   * Keep `messages` compactly while they wait on a transport (see
   * {@link PackedMessages}); undefined when one of them did not come from
   * {@link render} or was released. Their memory is then the pack's: do not
   * release the messages themselves, but those taken back out with
   * {@link PackedMessages.message}.
   */
  pack(messages: readonly Outgoing[]): PackedMessages | undefined {
    return RenderedMessage.pack(messages);
  }

  /**
   * Say that nothing will read `message` again (it came from {@link render}
   * and its send is over), so its memory may be reused for later messages
   * instead of waiting for the garbage collector. Reading its `data` afterwards
   * throws; a copy made before (`detachMessage`) stays valid. Releasing twice,
   * or a message from elsewhere, does nothing.
   */
  release(message: Outgoing): void {
    if (!(message instanceof RenderedMessage)) return;
    const slab = RenderedMessage.release(message);
    if (slab !== undefined) this.#writer.release(slab);
  }

  /**
   * {@link release} for message `i` of `packed` without taking it out first.
   * Call it at most once per message, and never for one taken out with
   * {@link PackedMessages.message} (release that one instead).
   */
  releasePacked(packed: PackedMessages, i: number): void {
    const slab = packed.slab(i);
    if (slab !== undefined) this.#writer.release(slab);
  }
}

// Writers into a buffer with room reserved; each returns the end offset.

/** Copy `piece` into `dst` at `at`. */
function putBytes(dst: Uint8Array, at: number, piece: Uint8Array): number {
  const n = piece.length;
  if (n < 16) {
    for (let i = 0; i < n; i++) dst[at++] = piece[i];
    return at;
  }
  dst.set(piece, at);
  return at + n;
}

/** Write `s`, known to be ASCII, one byte per character. */
function putAscii(dst: Uint8Array, at: number, s: string): number {
  for (let i = 0; i < s.length; i++) dst[at++] = s.charCodeAt(i);
  return at;
}

/** Write a non-negative safe integer in decimal (at most 16 digits). */
function putUint(dst: Uint8Array, at: number, n: number): number {
  let digits = 1;
  for (let x = n; x >= 10; x = Math.floor(x / 10)) digits++;
  let i = at + digits;
  do {
    dst[--i] = 0x30 + (n % 10);
    n = Math.floor(n / 10);
  } while (n > 0);
  return at + digits;
}

/**
 * Write an address (UTF-8), or return -1 when it is empty or holds a control
 * character or an angle bracket ({@link safeAddress}).
 */
function putAddress(dst: Uint8Array, at: number, s: string): number {
  const start = at;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x3c || c === 0x3e || c >= 0x7f) {
      return safeAddress(s) ? encodeUtf8Into(s, dst, start) : -1;
    }
    dst[at++] = c;
  }
  return s.length > 0 ? at : -1;
}

// ---------------------------------------------------------------------------
// Header fast paths. Merged header values are usually short printable ASCII;
// for those the header is written piece by piece (never building the merged
// string) and the bytes are exactly what the general formatters in mime.ts
// produce. Anything else takes the general path.

/** Printable ASCII, and no `=?`, no leading, trailing or double space. */
const PRINT = 1;
/** PRINT, and neither `"` nor `\`: fits a quoted-string as it is. */
const QUOTE = 2;
/** QUOTE, and atext only (words of atoms separated by single spaces). */
const ATOM = 4;

const CHAR_CLASS = new Uint8Array(128);
for (let c = 0x20; c <= 0x7e; c++) CHAR_CLASS[c] = PRINT | QUOTE;
for (
  const ch of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-/=?^_`{|}~ "
) {
  CHAR_CLASS[ch.charCodeAt(0)] = PRINT | QUOTE | ATOM;
}
CHAR_CLASS[0x22] = PRINT;
CHAR_CLASS[0x5c] = PRINT;

// More classes of a merged value, for bodies.
/** Printable ASCII only (or empty): a 7bit body carries it as it is. */
const ASCII_TEXT = 8;
/** Ends with `=`. */
const ENDS_EQ = 16;
/** Starts with `_`. */
const STARTS_UNDERSCORE = 32;
/** Holds `=_` (the start of a boundary). */
const HAS_EQ_UNDERSCORE = 64;
/** Holds one of `& < > " '` (HTML escaping changes it). */
const HTML_SPECIAL = 128;
/** Holds a character above ASCII. */
const ABOVE_ASCII = 256;
/** Holds `=` or an ASCII control character (bytes quoted-printable escapes besides 8-bit ones). */
const ASCII_ESCAPED = 512;

/** In {@link VALUE_CHAR} only: the second character of a pair that matters (`=?`, `=_`, two spaces). */
const PAIR_END = 1024;

const HEADER_CLASSES = PRINT | QUOTE | ATOM;
const VALUE_CHAR = new Uint16Array(128);
for (let c = 0x20; c <= 0x7e; c++) VALUE_CHAR[c] = CHAR_CLASS[c] | ASCII_TEXT;
for (const ch of `&<>"'`) VALUE_CHAR[ch.charCodeAt(0)] |= HTML_SPECIAL;
for (const ch of "?_ ") VALUE_CHAR[ch.charCodeAt(0)] |= PAIR_END;
VALUE_CHAR[0x3d] |= ASCII_ESCAPED;
for (let c = 0; c < 0x20; c++) VALUE_CHAR[c] = ASCII_ESCAPED;
VALUE_CHAR[0x7f] = ASCII_ESCAPED;

/**
 * The merged values of the row being rendered: each one's class and length,
 * and the bytes of the printable ASCII ones, copied once so that a value used
 * in several places (a name in To, Subject and body) is read from the string
 * once.
 */
class RowValues {
  /** Class of each column's value ({@link classifyValue}). */
  readonly cls: Uint16Array;
  /** Length of each column's value. */
  readonly length: Int32Array;
  /** How many of each column's UTF-16 units are above ASCII. */
  readonly high: Int32Array;
  /** Where each column's bytes start in {@link bytes}. */
  readonly start: Int32Array;
  bytes = new Uint8Array(256);

  constructor(columns: number) {
    this.cls = new Uint16Array(columns);
    this.length = new Int32Array(columns);
    this.high = new Int32Array(columns);
    this.start = new Int32Array(columns);
  }

  /** Classify and copy the values of the `used` columns of a row. */
  load(values: readonly string[], used: readonly number[]): void {
    let need = 0;
    for (let i = 0; i < used.length; i++) need += (values[used[i]] ?? "").length;
    if (need > this.bytes.length) this.bytes = new Uint8Array(need * 2);
    let at = 0;
    for (let i = 0; i < used.length; i++) {
      const col = used[i];
      const v = values[col] ?? "";
      this.cls[col] = classifyValue(v, this.bytes, at);
      this.high[col] = highUnits;
      this.start[col] = at;
      this.length[col] = v.length;
      at += v.length;
    }
  }

  /** Write column `col`'s value (printable ASCII) into `dst` at `at`; returns the end offset. */
  put(dst: Uint8Array, at: number, col: number): number {
    const src = this.bytes;
    const start = this.start[col];
    const end = start + this.length[col];
    for (let i = start; i < end; i++) dst[at++] = src[i];
    return at;
  }
}

/**
 * Every class of one merged value (a bit set), in one pass: the header
 * classes as {@link classify} gives them for a value (no leading or trailing
 * space, no `?` first, no `=` last), {@link ASCII_TEXT}, and the flags that
 * bodies check. Each row's values are classified once, whatever uses them.
 * With `dst`, the value's characters are copied there from `at` as bytes
 * (meaningful when the value is {@link ASCII_TEXT}; room for all of it).
 * Sets {@link highUnits}.
 */
function classifyValue(v: string, dst: Uint8Array | undefined, at: number): number {
  const n = v.length;
  highUnits = 0;
  if (n === 0) return ASCII_TEXT;
  let all = HEADER_CLASSES | ASCII_TEXT;
  let any = 0;
  let prev = 0;
  let high = 0;
  for (let i = 0; i < n; i++) {
    const c = v.charCodeAt(i);
    if (dst !== undefined) dst[at + i] = c;
    let k = 0;
    if (c < 0x80) k = VALUE_CHAR[c];
    else high++;
    all &= k;
    any |= k;
    // `=?` and double spaces break the header classes; `=_` is noted.
    if ((k & PAIR_END) !== 0 && (prev === 61 || prev === 32)) {
      if (c === 32) {
        if (prev === 32) all &= ~HEADER_CLASSES;
      } else if (prev === 61) {
        if (c === 63) all &= ~HEADER_CLASSES;
        else any |= HAS_EQ_UNDERSCORE;
      }
    }
    prev = c;
  }
  const first = v.charCodeAt(0);
  const last = v.charCodeAt(n - 1);
  if (first === 32 || first === 63 || last === 32 || last === 61) all &= ~HEADER_CLASSES;
  highUnits = high;
  return all | (any & (HTML_SPECIAL | HAS_EQ_UNDERSCORE | ASCII_ESCAPED)) |
    (high > 0 ? ABOVE_ASCII : 0) | (last === 61 ? ENDS_EQ : 0) |
    (first === 95 ? STARTS_UNDERSCORE : 0);
}
/** Units above ASCII in the value last classified. */
let highUnits = 0;

/**
 * The classes (a bit set) a piece of a header value belongs to; 0 for none.
 * A merged value is in a class when every piece is, because a piece may not
 * be empty, start with `?` or end with `=` (no `=?` across a junction), nor
 * start or end with a space unless allowed (a static piece between fields).
 */
function classify(text: string, leadingSpaceOk: boolean, trailingSpaceOk: boolean): number {
  const n = text.length;
  if (n === 0) return 0;
  const first = text.charCodeAt(0);
  const last = text.charCodeAt(n - 1);
  if (
    (first === 32 && !leadingSpaceOk) || (last === 32 && !trailingSpaceOk) || first === 63 ||
    last === 61
  ) {
    return 0;
  }
  let cls = PRINT | QUOTE | ATOM;
  let prev = 0;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c > 127 || (c === 32 && prev === 32) || (c === 63 && prev === 61)) return 0;
    cls &= CHAR_CLASS[c];
    prev = c;
  }
  return cls;
}

/** A header with merge fields, prepared for the fast path. */
interface CompiledHeader {
  readonly name: string;
  readonly bound: BoundTemplate;
  /** CRLF, `Name: ` and the first static piece. */
  readonly head: Uint8Array;
  /** CRLF, `Name: "` and the first static piece. */
  readonly headQuoted: Uint8Array;
  /** The static pieces after each field. */
  readonly rest: readonly Uint8Array[];
  readonly staticLength: number;
  /** Class of the static pieces together (all bits when all are empty). */
  readonly cls: number;
}

function compileHeader(name: string, bound: BoundTemplate): CompiledHeader {
  const { statics } = bound;
  let cls = PRINT | QUOTE | ATOM;
  const last = statics.length - 1;
  statics.forEach((piece, i) => {
    if (piece.length > 0) cls &= classify(piece, i > 0, i < last);
  });
  return {
    name,
    bound,
    head: encoder.encode(`\r\n${name}: ${statics[0]}`),
    headQuoted: encoder.encode(`\r\n${name}: "${statics[0]}`),
    rest: statics.slice(1).map((s) => encoder.encode(s)),
    staticLength: statics.reduce((n, s) => n + s.length, 0),
    cls,
  };
}

/** Class and length of a merged header value (`mergedLength` is set). */
let mergedLength = 0;
function mergedClass(f: CompiledHeader, row: RowValues): number {
  const { fields } = f.bound;
  let c = f.cls;
  let length = f.staticLength;
  for (let i = 0; i < fields.length; i++) {
    c &= row.cls[fields[i]];
    length += row.length[fields[i]];
  }
  mergedLength = length;
  return c;
}

/** Write the head of `f` (with `head`), then the merged value (known to be ASCII). */
function putMerged(
  buf: Uint8Array,
  at: number,
  head: Uint8Array,
  f: CompiledHeader,
  row: RowValues,
): number {
  at = putBytes(buf, at, head);
  const { fields } = f.bound;
  for (let i = 0; i < fields.length; i++) {
    at = row.put(buf, at, fields[i]);
    at = putBytes(buf, at, f.rest[i]);
  }
  return at;
}

/** Gather the merged value of `f` in the header writer. */
function gather(hw: HeaderWriter, f: CompiledHeader, values: readonly string[]): void {
  const { statics, fields } = f.bound;
  hw.clear();
  hw.append(statics[0]);
  for (let i = 0; i < fields.length; i++) {
    hw.append(values[fields[i]] ?? "");
    hw.append(statics[i + 1]);
  }
}

/** Write an unstructured header (`Subject`) with merge fields. */
function writeUnstructured(
  w: ChunkWriter,
  hw: HeaderWriter,
  f: CompiledHeader,
  values: readonly string[],
  row: RowValues,
): void {
  const c = mergedClass(f, row);
  if ((c & PRINT) !== 0 && f.name.length + 2 + mergedLength <= SOFT_LINE_LIMIT) {
    const at = w.reserve(f.head.length + mergedLength);
    w.commit(putMerged(w.slab, at, f.head, f, row));
  } else {
    w.bytes(CRLF);
    gather(hw, f, values);
    hw.unstructured(f.name);
  }
}

/**
 * Write a mailbox header (`To`) whose display name has merge fields. Returns
 * false when the address is empty or holds a control character or an angle
 * bracket (the render then fails; what was written is discarded).
 */
function writeMailbox(
  w: ChunkWriter,
  hw: HeaderWriter,
  f: CompiledHeader,
  values: readonly string[],
  row: RowValues,
  address: string,
): boolean {
  const c = mergedClass(f, row);
  const room = SOFT_LINE_LIMIT - f.name.length - address.length - mergedLength;
  const atom = (c & ATOM) !== 0 && room >= 5;
  if (atom || ((c & QUOTE) !== 0 && mergedLength <= 60 && room >= 7)) {
    let at = w.reserve(f.headQuoted.length + mergedLength + 3 * address.length + 4);
    const buf = w.slab;
    at = putMerged(buf, at, atom ? f.head : f.headQuoted, f, row);
    at = putBytes(buf, at, atom ? ANGLE_OPEN : QUOTE_ANGLE_OPEN);
    at = putAddress(buf, at, address);
    if (at < 0) return false;
    buf[at++] = 0x3e;
    w.commit(at);
    return true;
  }
  if (!safeAddress(address)) return false;
  w.bytes(CRLF);
  gather(hw, f, values);
  hw.mailbox(f.name, address);
  return true;
}

/** Whether `address` is not empty and holds no control character or angle bracket. */
function safeAddress(address: string): boolean {
  for (let i = 0; i < address.length; i++) {
    const c = address.charCodeAt(i);
    if (
      c < 0x20 || c === 0x3c || c === 0x3e || (c >= 0x7f && c <= 0x9f) || c === 0x2028 ||
      c === 0x2029
    ) return false;
  }
  return address.length > 0;
}

/** A body with merge fields, prepared for the 7bit fast path. */
interface CompiledBody {
  readonly bound: BoundTemplate;
  readonly html: boolean;
  readonly multipart: boolean;
  /** False when the static text alone rules out the fast path. */
  readonly fast: boolean;
  /**
   * The static pieces as bytes; the first starts with `7bit` CRLF CRLF, the
   * last ends with the body's final CRLF when the template lacks one.
   */
  readonly pieces: readonly Uint8Array[];
  /** Their total length in bytes. */
  readonly piecesLength: number;
  readonly nonEmpty: readonly boolean[];
  readonly staticLength: number;
  /** The static pieces as UTF-8, as they are (for the general path). */
  readonly staticPieces: readonly Uint8Array[];
  /** Their total length in bytes. */
  readonly staticBytes: number;
  /** Their escapes ({@link escapeCount}). */
  readonly staticEscapes: number;
  /** Whether a static piece starts with a low or ends with a high surrogate (which could pair across a field). */
  readonly loneEdges: boolean;
  /** Per static piece: length up to its first CRLF (all of it when it has none). */
  readonly lead: readonly number[];
  /** Per static piece: length after its last CRLF. */
  readonly tail: readonly number[];
  /** Per static piece: whether it holds a CRLF. */
  readonly newline: readonly boolean[];
  /** Per static piece (multipart): ends with `=` / starts with `_` (a boundary could form). */
  readonly endsEq: readonly boolean[];
  readonly startsUnderscore: readonly boolean[];
}

function compileBody(bound: BoundTemplate, html: boolean, multipart: boolean): CompiledBody {
  const { statics } = bound;
  const staticPieces = statics.map((s) => encoder.encode(s));
  const pieces = statics.map((s, i) =>
    encoder.encode(
      (i === 0 ? "7bit\r\n\r\n" : "") + s +
        (i === statics.length - 1 && !s.endsWith("\r\n") ? "\r\n" : ""),
    )
  );
  let fast = statics.every((s) => SEVEN_BIT_STATIC.test(s)) &&
    !(multipart && statics.some((s) => s.includes("=_")));
  const lead: number[] = [];
  const tail: number[] = [];
  const newline: boolean[] = [];
  statics.forEach((s, i) => {
    const lines = s.split("\r\n");
    lead.push(lines[0].length);
    tail.push(lines[lines.length - 1].length);
    newline.push(lines.length > 1);
    const inner = i === 0 ? lines.slice(0, -1) : lines.slice(1, -1);
    if (inner.some((l) => l.length > HARD_LINE_LIMIT)) fast = false;
  });
  return {
    bound,
    html,
    multipart,
    fast,
    pieces,
    piecesLength: pieces.reduce((n, p) => n + p.length, 0),
    nonEmpty: statics.map((s) => s.length > 0),
    staticLength: statics.reduce((n, s) => n + s.length, 0),
    staticPieces,
    staticBytes: staticPieces.reduce((n, p) => n + p.length, 0),
    staticEscapes: staticPieces.reduce((n, p) => n + escapeCount(p), 0),
    loneEdges: statics.some((s) =>
      s.length > 0 &&
      ((s.charCodeAt(0) & 0xfc00) === 0xdc00 || (s.charCodeAt(s.length - 1) & 0xfc00) === 0xd800)
    ),
    lead,
    tail,
    newline,
    endsEq: statics.map((s) => s.endsWith("=")),
    startsUnderscore: statics.map((s) => s.startsWith("_")),
  };
}

function badAddress(r: Recipient): never {
  throw new TypeError(
    `Recipient on line ${r.line} has an empty address or a control character or angle bracket in it`,
  );
}

/**
 * Render one message (convenience; builds a {@link MessageComposer} each call,
 * so use the class for many recipients).
 */
export function composeMessage(
  template: MessageTemplate,
  recipient: Recipient,
  columns: readonly string[],
  opts?: ComposeOptions,
): Outgoing {
  return new MessageComposer(template, columns, opts).render(recipient);
}
