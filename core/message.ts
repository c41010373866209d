/**
 * Recipient + template -> RFC 5322 message bytes (RFC 2045/2047/6532).
 *
 * {@link MessageComposer} checks the template once and encodes every static
 * part once (header block, boundaries, bodies without merge fields) into shared
 * `Uint8Array` chunks; `render()` builds only what varies per row: Date (cached
 * per second), Message-ID, To, and the merged headers and bodies.
 *
 * @module
 */

import type { Outgoing, Recipient } from "./types.ts";
import {
  encodeBody,
  formatDate,
  formatExtraHeader,
  formatMailbox,
  formatUnstructured,
  HARD_LINE_LIMIT,
  isPrintableAscii,
  normalizeNewlines,
  SOFT_LINE_LIMIT,
} from "./mime.ts";
import {
  bindTemplate,
  type BoundTemplate,
  escapeHtml,
  isStatic,
  type MessageTemplate,
  parseTemplate,
  renderTemplate,
  TemplateError,
  type TemplateSource,
} from "./template.ts";

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

const SLAB_SIZE = 256 * 1024;

/** A chunk shared by every message, a short constant appended to the row's text, or a per-row function. */
type Step = Uint8Array | string | ((r: Recipient) => void);

/**
 * Turn build items into render steps: adjacent static strings are joined; a
 * short static string between two per-row items stays a string (appended to
 * the row's text, so the row is encoded in one call); every other static
 * string is encoded once into a shared chunk.
 */
function plan(items: readonly (string | Uint8Array | ((r: Recipient) => void))[]): Step[] {
  const merged: (string | Uint8Array | ((r: Recipient) => void))[] = [];
  for (const item of items) {
    const last = merged.length - 1;
    if (typeof item === "string" && typeof merged[last] === "string") merged[last] += item;
    else if (item !== "") merged.push(item);
  }
  return merged.map((item, i) => {
    if (typeof item !== "string") return item;
    const between = typeof merged[i - 1] === "function" && typeof merged[i + 1] === "function";
    return between && item.length <= 256 ? item : encoder.encode(item);
  });
}

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
 * Renders one template for many recipients. The constructor validates
 * everything (merge fields against `columns`, addresses, extra headers,
 * options) and throws {@link TemplateError} or `TypeError` before any send.
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
  #dateSecond = Number.NaN;
  #dateLine = "";
  // Per-render state (render() is synchronous, so one set is enough).
  #data: Uint8Array[] = [];
  #size = 0;
  #pending = "";
  #eightBit = false;
  #messageId = "";
  #slab = new Uint8Array(0);
  #slabAt = SLAB_SIZE;

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
    const [fromT, replyT, toT, subjectT, textT, htmlT] = bindTemplate(sources, columns);

    let boundary: string | undefined;
    if (html !== undefined) {
      const texts = [...textT.statics, ...htmlT.statics].join("\n");
      do boundary = `=_${campaignId.slice(0, 24)}_${randomHex(16)}`; while (
        texts.includes(boundary)
      );
    }
    this.#boundary = boundary;

    // The static header block first, then the headers that vary per row, then
    // the content. Items are static strings or per-row functions; see #plan().
    const items: (string | Uint8Array | ((r: Recipient) => void))[] = [];
    let head = "";
    const dyn: ((r: Recipient) => string)[] = [];
    if (isStatic(fromT)) head += formatMailbox("From", fromT.statics[0], from.address);
    else {
      const field = compileField(fromT);
      dyn.push((r) => mailboxHeader("From", field, r.values, from.address));
    }
    if (replyTo !== undefined) {
      if (isStatic(replyT)) head += formatMailbox("Reply-To", replyT.statics[0], replyTo.address);
      else {
        const field = compileField(replyT);
        dyn.push((r) => mailboxHeader("Reply-To", field, r.values, replyTo.address));
      }
    }
    if (template.toName !== undefined && (!isStatic(toT) || toT.statics[0] !== "")) {
      const field = compileField(toT);
      dyn.push((r) => mailboxHeader("To", field, r.values, checkAddress(r)));
    } else {
      dyn.push((r) => "To: " + checkAddress(r) + "\r\n");
    }
    if (isStatic(subjectT)) head += formatUnstructured("Subject", subjectT.statics[0]);
    else {
      const field = compileField(subjectT);
      dyn.push((r) => unstructuredHeader("Subject", field, r.values));
    }
    head += "MIME-Version: 1.0\r\n" + extra;
    items.push(head);
    items.push((r) => {
      let s = this.#date() + "Message-ID: " + this.#messageId + "\r\n";
      for (let i = 0; i < dyn.length; i++) s += dyn[i](r);
      this.#pending += s;
    });

    let staticEightBit = false;
    const part = (t: BoundTemplate, isHtml: boolean) => {
      const type = isHtml ? "html" : "plain";
      items.push(`Content-Type: text/${type}; charset=utf-8\r\nContent-Transfer-Encoding: `);
      if (isStatic(t)) {
        const body = encodeBody(ensureFinalNewline(t.statics[0]), this.#allow8bit, boundary);
        if (body.encoding === "8bit") staticEightBit = true;
        items.push(body.encoding + "\r\n\r\n", body.bytes);
      } else {
        const sevenBit = t.statics.every((x) => SEVEN_BIT_STATIC.test(x));
        items.push((r) => this.#body(t, sevenBit, r.values, isHtml));
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
    this.#steps = plan(items);
    this.#staticEightBit = staticEightBit;
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

  /** `Date: ...\r\n`, formatted at most once per second. */
  #date(): string {
    const ms = this.#now();
    const second = Math.floor(ms / 1000);
    if (second !== this.#dateSecond) {
      this.#dateLine = "Date: " + formatDate(second * 1000) + "\r\n";
      this.#dateSecond = second;
    }
    return this.#dateLine;
  }

  /** Emit `<encoding>\r\n\r\n<body>` for a body with merge fields. */
  #body(
    t: BoundTemplate,
    sevenBitStatics: boolean,
    values: readonly string[],
    isHtml: boolean,
  ): void {
    // Fast path: every merged value is printable ASCII, so the body stays 7bit
    // (the static text was checked) unless a line grows past 998 octets.
    const { fields } = t;
    let plain = true;
    for (let i = 0; i < fields.length; i++) {
      const v = values[fields[i]];
      if (v !== undefined && !isPrintableAscii(v)) {
        plain = false;
        break;
      }
    }
    if (plain && sevenBitStatics) {
      const s = ensureFinalNewline(renderTemplate(t, values, isHtml));
      if (
        (s.length <= HARD_LINE_LIMIT || linesWithin(s)) &&
        (this.#boundary === undefined || !s.includes(this.#boundary))
      ) {
        this.#pending += "7bit\r\n\r\n" + s;
        return;
      }
    }
    let s = t.statics[0];
    for (let i = 0; i < fields.length; i++) {
      let v = values[fields[i]] ?? "";
      if (isHtml && !t.raw[i]) v = escapeHtml(v);
      s += normalizeNewlines(v) + t.statics[i + 1];
    }
    const body = encodeBody(ensureFinalNewline(s), this.#allow8bit, this.#boundary);
    if (body.encoding === "8bit") this.#eightBit = true;
    this.#pending += body.encoding + "\r\n\r\n";
    this.#flush();
    this.#push(body.bytes);
  }

  #push(bytes: Uint8Array): void {
    this.#data.push(bytes);
    this.#size += bytes.length;
  }

  /**
   * Encode the pending text. Small texts are encoded into a shared slab and
   * handed out as views: allocating one small ArrayBuffer per row costs more
   * than encoding the row. A slab region is written once and never reused, so
   * chunks stay immutable; a slab is freed when its last message is.
   */
  #flush(): void {
    const s = this.#pending;
    if (s.length === 0) return;
    this.#pending = "";
    const max = s.length * 3;
    if (max > SLAB_SIZE >> 3) {
      this.#push(encoder.encode(s));
      return;
    }
    if (this.#slabAt + max > SLAB_SIZE) {
      this.#slab = new Uint8Array(SLAB_SIZE);
      this.#slabAt = 0;
    }
    const at = this.#slabAt;
    const { written } = encoder.encodeInto(s, this.#slab.subarray(at));
    this.#slabAt = at + written;
    this.#push(this.#slab.subarray(at, at + written));
  }

  /**
   * Render the message for one recipient. Only the parts that vary are
   * encoded; static chunks are shared between messages and must not be mutated.
   *
   * For a recipient with `smtpUtf8: true` the To header carries the UTF-8
   * address as it is (RFC 6532); such a message needs an SMTPUTF8 session.
   */
  render(recipient: Recipient): Outgoing {
    this.#data = [];
    this.#size = 0;
    this.#pending = "";
    this.#eightBit = this.#staticEightBit;
    const messageId = this.#midPrefix + recipient.line + this.#midSuffix;
    this.#messageId = messageId;
    const steps = this.#steps;
    for (let i = 0; i < steps.length; i++) {
      const step = steps[i];
      if (typeof step === "function") step(recipient);
      else if (typeof step === "string") this.#pending += step;
      else {
        this.#flush();
        this.#push(step);
      }
    }
    this.#flush();
    const out: Outgoing = {
      line: recipient.line,
      from: this.#from,
      to: recipient.address,
      smtpUtf8: recipient.smtpUtf8 || this.#fromUtf8,
      eightBit: this.#eightBit,
      messageId,
      data: this.#data,
      size: this.#size,
    };
    this.#data = [];
    return out;
  }
}

// ---------------------------------------------------------------------------
// Header fast paths. Merged header values are usually short printable ASCII;
// for those the header is assembled without reading the merged string (which
// V8 would have to flatten) and the result is exactly what the general
// formatter in mime.ts would produce. Anything else takes the general path.

/** Printable ASCII, and no `=?`, no leading, trailing or double space. */
const PRINT = 1;
/** PRINT, and neither `"` nor `\\`: fits a quoted-string as it is. */
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

/**
 * The classes (bit set) a piece of a header value belongs to, 0 for none. A
 * merged value (pieces of statics and values) is in a class when every piece
 * is, because pieces may not start with a space or `?`, end with a space or
 * `=`, or be empty, except where noted: junctions cannot form `=?` or a
 * double space.
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

/** A header template prepared for the fast path. */
interface CompiledField {
  readonly statics: readonly string[];
  readonly fields: readonly number[];
  /** Class of the static pieces together (all bits when there are none). */
  readonly cls: number;
}

function compileField(t: BoundTemplate): CompiledField {
  const { statics, fields } = t;
  let cls = PRINT | QUOTE | ATOM;
  const last = statics.length - 1;
  statics.forEach((piece, i) => {
    if (piece.length === 0) return; // an empty static joins two values (or is an end)
    cls &= classify(piece, i > 0, i < last);
  });
  return { statics, fields, cls };
}

/** Merge a compiled field; `mergedClass` is set to the class of the result. */
let mergedClass = 0;
function mergeField(f: CompiledField, values: readonly string[]): string {
  const { statics, fields } = f;
  let cls = f.cls;
  let s = statics[0];
  for (let i = 0; i < fields.length; i++) {
    const v = values[fields[i]] ?? "";
    if (cls !== 0) cls &= classify(v, false, false);
    s += v + statics[i + 1];
  }
  mergedClass = cls;
  return s;
}

/** `Name: value` for an unstructured header with merge fields. */
function unstructuredHeader(name: string, f: CompiledField, values: readonly string[]): string {
  const s = mergeField(f, values);
  if ((mergedClass & PRINT) !== 0 && name.length + 2 + s.length <= SOFT_LINE_LIMIT) {
    return name + ": " + s + "\r\n";
  }
  return formatUnstructured(name, s);
}

/** `Name: display name <address>` for a mailbox header whose display name has merge fields. */
function mailboxHeader(
  name: string,
  f: CompiledField,
  values: readonly string[],
  address: string,
): string {
  const s = mergeField(f, values);
  const cls = mergedClass;
  if ((cls & ATOM) !== 0) {
    if (name.length + s.length + address.length + 5 <= SOFT_LINE_LIMIT) {
      return name + ": " + s + " <" + address + ">\r\n";
    }
  } else if ((cls & QUOTE) !== 0 && s.length <= 60) {
    if (name.length + s.length + address.length + 7 <= SOFT_LINE_LIMIT) {
      return name + ': "' + s + '" <' + address + ">\r\n";
    }
  }
  return formatMailbox(name, s, address);
}

/** The recipient address, refused if it could break the To header. */
function checkAddress(r: Recipient): string {
  const a = r.address;
  let bad = a.length === 0;
  for (let i = 0; i < a.length && !bad; i++) {
    const c = a.charCodeAt(i);
    bad = c < 0x20 || c === 0x7f || c === 0x3c || c === 0x3e;
  }
  if (bad) {
    throw new TypeError(
      `Recipient on line ${r.line} has a control character or angle bracket in its address`,
    );
  }
  return r.address;
}

/** True when no CRLF-separated line of `text` is longer than 998 characters. */
function linesWithin(text: string): boolean {
  let start = 0;
  for (;;) {
    const at = text.indexOf("\r\n", start);
    const end = at < 0 ? text.length : at;
    if (end - start > HARD_LINE_LIMIT) return false;
    if (at < 0) return true;
    start = at + 2;
  }
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
