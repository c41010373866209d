/**
 * Email address checks for recipients read from a CSV: one syntax rule, one
 * normalisation for sending and one for spotting duplicates.
 *
 * What {@link checkAddress} accepts (RFC 5321/5322 `addr-spec` as mail servers
 * take it, plus RFC 6531 UTF-8 local parts):
 * - `local@domain` with exactly one `@`; surrounding whitespace is trimmed, and
 *   whitespace, control characters (CR, LF, tab, ...), invisible formatting
 *   characters and U+FFFD (bad UTF-8 in the input) are refused anywhere.
 * - Local part: a dot-atom (letters, digits and ``!#$%&'*+-/=?^_`{|}~``,
 *   separated by single dots, no dot at either end), at most 64 octets. Any
 *   non-ASCII character is allowed and sets `smtpUtf8` (delivery then needs a
 *   server offering SMTPUTF8). Quoted local parts (`"john doe"@example.com`)
 *   are refused: they are legal but almost never real, and many servers and
 *   APIs mishandle them.
 * - Domain: a host name of at least two labels (`example.com`; a bare
 *   `localhost` is refused as undeliverable on the public Internet). Non-ASCII
 *   (IDN) domains are converted to punycode (`bücher.example` ->
 *   `xn--bcher-kva.example`, UTS #46 via `node:url`). After conversion every
 *   label is 1-63 letters, digits or hyphens, not starting or ending with a
 *   hyphen; the last label is not all digits. Address literals (`[192.0.2.1]`)
 *   are refused.
 * - The whole address as sent (UTF-8 local part, punycode domain) is at most
 *   254 octets (RFC 5321 path limit of 256 minus the angle brackets).
 *
 * Reason codes: `empty`, `syntax` (characters, `@`, dots), `length`, `domain`,
 * `encoding` (U+FFFD or a lone surrogate: the input was not valid UTF-8).
 *
 * @module
 */

import { domainToASCII } from "node:url";

/** The result of {@link checkAddress}. */
export interface AddressCheck {
  /** Whether the address can be sent to. */
  ok: boolean;
  /**
   * The address for sending: trimmed, the domain in punycode when it was an IDN
   * (an ASCII domain is kept as written). For an invalid address, the trimmed input.
   */
  address: string;
  /** True when the local part is not ASCII, so delivery needs SMTPUTF8 (RFC 6531). */
  smtpUtf8: boolean;
  /** Why the address is invalid: `empty`, `syntax`, `length`, `domain` or `encoding`. */
  code?: string;
  /** A sentence saying what is wrong, e.g. `missing "@"`. */
  reason?: string;
}

const DOT = 46;
const HYPHEN = 45;
const MAX_ADDRESS = 254;
const MAX_LOCAL = 64;
const MAX_LABEL = 63;

/** 1 for ASCII `atext` (RFC 5322 3.2.3). */
const ATEXT = new Uint8Array(128);
/** 1 for letters, digits and hyphen (host name labels). */
const LDH = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  const ch = String.fromCharCode(c);
  const alnum = /[A-Za-z0-9]/.test(ch);
  ATEXT[c] = alnum || "!#$%&'*+-/=?^_`{|}~".includes(ch) ? 1 : 0;
  LDH[c] = alnum || c === HYPHEN ? 1 : 0;
}

/** Characters that often separate CSV columns: when one shows up, hint at the delimiter. */
const DELIMITER_HINT = new Set([",", ";", "|", "\t"]);

function invalid(address: string, code: string, reason: string): AddressCheck {
  return { ok: false, address, smtpUtf8: false, code, reason };
}

function charName(c: number): string {
  return `U+${c.toString(16).toUpperCase().padStart(4, "0")}`;
}

/** Why a character cannot appear in an address (`where`: "local part" or "domain"). */
function badChar(address: string, c: number, where: string): AddressCheck {
  const ch = String.fromCharCode(c);
  let reason: string;
  if (c === 13) reason = "contains a carriage return (CR)";
  else if (c === 10) reason = "contains a line feed (LF)";
  else if (c === 9) reason = "contains a tab";
  else if (c === 32) reason = "contains a space";
  else if (c < 32 || (c >= 0x7f && c <= 0x9f)) reason = `contains control character ${charName(c)}`;
  else if (isUnicodeSpace(c)) reason = `contains a space character (${charName(c)})`;
  else if (isInvisible(c)) reason = `contains an invisible formatting character (${charName(c)})`;
  else if (c === 0xfffd || (c >= 0xd800 && c <= 0xdfff)) {
    return invalid(
      address,
      "encoding",
      "contains U+FFFD or a broken character: the file is not valid UTF-8; save it as UTF-8",
    );
  } else if (c === 34 && where === "local part") {
    reason = "quoted local parts are not supported";
  } else reason = `invalid character ${JSON.stringify(ch)} in the ${where}`;
  if (DELIMITER_HINT.has(ch)) {
    reason += ` (if the file separates columns with ${
      JSON.stringify(ch)
    }, set that as the delimiter)`;
  }
  return invalid(address, "syntax", reason);
}

function isUnicodeSpace(c: number): boolean {
  return c === 0xa0 || c === 0x1680 || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 ||
    c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000;
}

function isInvisible(c: number): boolean {
  return c === 0xad || (c >= 0x200b && c <= 0x200f) || (c >= 0x202a && c <= 0x202e) ||
    (c >= 0x2060 && c <= 0x2064) || (c >= 0x2066 && c <= 0x206f) || c === 0xfeff;
}

/** A non-ASCII code unit that is never acceptable (space, control, invisible, broken). */
function isBadNonAscii(c: number): boolean {
  return c <= 0x9f || c === 0xfffd || isUnicodeSpace(c) || isInvisible(c);
}

/** UTF-8 length of a string, counting a well-formed surrogate pair as 4 octets. */
function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

/** Whether the UTF-16 string holds a lone surrogate. */
function hasLoneSurrogate(s: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = i + 1 < to ? s.charCodeAt(i + 1) : 0;
      if (next < 0xdc00 || next > 0xdfff) return true;
      i++;
    } else if (c >= 0xdc00 && c <= 0xdfff) return true;
  }
  return false;
}

/**
 * Check an ASCII host name: labels of letters, digits and hyphens, 1-63 long,
 * no hyphen at either end, at least two labels, the last not all digits.
 * Returns null when it is fine, else the failure.
 */
function checkHost(address: string, domain: string, shown: string): AddressCheck | null {
  const len = domain.length;
  let labelStart = 0;
  let labels = 0;
  let digitsOnly = true;
  for (let i = 0; i <= len; i++) {
    const c = i < len ? domain.charCodeAt(i) : DOT;
    if (c === DOT) {
      const size = i - labelStart;
      if (size === 0) {
        if (i === len && len > 0) {
          return invalid(address, "domain", `domain ${JSON.stringify(shown)} ends with a dot`);
        }
        return invalid(address, "domain", `domain ${JSON.stringify(shown)} has an empty label`);
      }
      if (size > MAX_LABEL) {
        return invalid(
          address,
          "length",
          `domain label ${
            JSON.stringify(domain.slice(labelStart, i))
          } is ${size} characters; the limit is ${MAX_LABEL}`,
        );
      }
      if (domain.charCodeAt(labelStart) === HYPHEN || domain.charCodeAt(i - 1) === HYPHEN) {
        return invalid(
          address,
          "domain",
          `domain label ${
            JSON.stringify(domain.slice(labelStart, i))
          } starts or ends with a hyphen`,
        );
      }
      labels++;
      if (i < len) digitsOnly = true;
      labelStart = i + 1;
      continue;
    }
    if (c >= 128 || LDH[c] === 0) return badChar(address, c, "domain");
    if (c < 48 || c > 57) digitsOnly = false;
  }
  if (labels < 2) {
    return invalid(
      address,
      "domain",
      `domain ${JSON.stringify(shown)} has no dot; a deliverable domain has one (like example.com)`,
    );
  }
  if (digitsOnly) {
    return invalid(
      address,
      "domain",
      `domain ${
        JSON.stringify(shown)
      } ends in a numeric label; IP address domains are not supported`,
    );
  }
  return null;
}

/** Whether an ASCII domain has a label starting with `xn--` (any case). */
function hasAceLabel(domain: string): boolean {
  const lower = domain.toLowerCase();
  return lower.startsWith("xn--") || lower.includes(".xn--");
}

/**
 * Check one address and normalise it for sending. Never throws: a bad address
 * comes back with `ok: false`, a `code` and a `reason`.
 *
 * @example
 * ```ts
 * import { checkAddress } from "./address.ts";
 * const check = checkAddress(" user@bücher.example ");
 * if (check.address !== "user@xn--bcher-kva.example") throw new Error("unexpected");
 * ```
 */
export function checkAddress(raw: string): AddressCheck {
  const n = raw.length;
  let s = raw;
  if (n > 0) {
    const first = raw.charCodeAt(0);
    const last = raw.charCodeAt(n - 1);
    if (first <= 32 || first >= 127 || last <= 32 || last >= 127) s = raw.trim();
  }
  if (isPlainAddress(s)) return { ok: true, address: s, smtpUtf8: false };
  return checkSlowly(s);
}

/**
 * The shape of a common ASCII address: a dot-atom local part, `@`, and labels
 * of letters and digits with inner hyphen runs. Every quantifier is followed by
 * a character its class cannot match, so the match never backtracks more than
 * one step per character (and inputs are at most 254 characters).
 */
const PLAIN =
  /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9]+(?:-+[A-Za-z0-9]+)*(?:\.[A-Za-z0-9]+(?:-+[A-Za-z0-9]+)*)+$/;

/**
 * The fast path of {@link checkAddress}, for callers that check millions: true
 * when the trimmed `s` is a common ASCII address valid by every rule (it is then
 * sent as it is, with `smtpUtf8` false). False means "call checkAddress" (non-ASCII,
 * punycode, long labels, invalid), never "invalid" by itself.
 */
export function isPlainAddress(s: string): boolean {
  const len = s.length;
  if (len < 5 || len > MAX_ADDRESS || !PLAIN.test(s)) return false;
  const at = s.indexOf("@");
  if (at > MAX_LOCAL) return false;
  // The last label must end in a letter (so it is not all digits).
  const last = s.charCodeAt(len - 1) | 32;
  if (last < 97 || last > 122) return false;
  // Long domains may hold a label over 63; hyphens may mean "xn--": look closer.
  return len - at - 1 <= MAX_LABEL && s.indexOf("-", at) < 0;
}

/**
 * The detailed check behind {@link checkAddress}, without the fast path, with a
 * reason for every failure. `s` must be trimmed. Exported for tests that hold
 * the fast path to the same rules.
 */
export function checkSlowly(s: string): AddressCheck {
  const len = s.length;
  if (len === 0) return invalid(s, "empty", "address is empty");
  if (s.charCodeAt(len - 1) === 62 /* > */ && s.includes("<")) {
    return invalid(
      s,
      "syntax",
      "a display name or angle brackets; give the bare address (like ann@example.com)",
    );
  }
  const at = s.indexOf("@");
  if (at < 0) {
    if (s.charCodeAt(0) === 34) return invalid(s, "syntax", "quoted local parts are not supported");
    return invalid(s, "syntax", 'missing "@"');
  }
  if (s.charCodeAt(0) === 34) return invalid(s, "syntax", "quoted local parts are not supported");
  if (s.indexOf("@", at + 1) >= 0) return invalid(s, "syntax", 'more than one "@"');
  if (at === 0) return invalid(s, "syntax", 'nothing before the "@"');
  if (at === len - 1) return invalid(s, "syntax", 'nothing after the "@"');

  // Local part: dot-atom; non-ASCII allowed (SMTPUTF8).
  let ascii = true;
  for (let i = 0; i < at; i++) {
    const c = s.charCodeAt(i);
    if (c < 128) {
      if (c === DOT) {
        if (i === 0 || i === at - 1) {
          return invalid(s, "syntax", "local part starts or ends with a dot");
        }
        if (s.charCodeAt(i + 1) === DOT) {
          return invalid(s, "syntax", 'local part has two dots in a row ("..")');
        }
      } else if (ATEXT[c] === 0) return badChar(s, c, "local part");
    } else {
      ascii = false;
      if (isBadNonAscii(c)) return badChar(s, c, "local part");
    }
  }
  if (!ascii && hasLoneSurrogate(s, 0, at)) return badChar(s, 0xfffd, "local part");
  const localOctets = ascii ? at : utf8Length(s.slice(0, at));
  if (localOctets > MAX_LOCAL) {
    return invalid(
      s,
      "length",
      `local part is ${localOctets} octets; the limit is ${MAX_LOCAL}`,
    );
  }

  // Domain: ASCII host name, or an IDN converted to punycode.
  let domain = s.slice(at + 1);
  let address = s;
  let asciiDomain = true;
  for (let i = 0; i < domain.length; i++) {
    if (domain.charCodeAt(i) >= 128) {
      asciiDomain = false;
      break;
    }
  }
  if (domain.charCodeAt(0) === 91 /* [ */) {
    return invalid(s, "domain", "address literals ([...]) are not supported; use a domain name");
  }
  if (asciiDomain) {
    const bad = checkHost(s, domain, domain);
    if (bad !== null) return bad;
    if (hasAceLabel(domain) && domainToASCII(domain) === "") {
      return invalid(s, "domain", `domain ${JSON.stringify(domain)} holds invalid punycode`);
    }
  } else {
    for (let i = 0; i < domain.length; i++) {
      const c = domain.charCodeAt(i);
      if (c >= 128 ? isBadNonAscii(c) : c <= 32 || c === 127) return badChar(s, c, "domain");
    }
    if (hasLoneSurrogate(domain, 0, domain.length)) return badChar(s, 0xfffd, "domain");
    const converted = domainToASCII(domain);
    if (converted === "") {
      return invalid(
        s,
        "domain",
        `domain ${JSON.stringify(domain)} is not a valid international domain name (IDNA)`,
      );
    }
    const bad = checkHost(s, converted, domain);
    if (bad !== null) return bad;
    domain = converted;
    address = s.slice(0, at + 1) + converted;
  }
  const total = localOctets + 1 + domain.length;
  if (total > MAX_ADDRESS) {
    return invalid(s, "length", `address is ${total} octets; the limit is ${MAX_ADDRESS}`);
  }
  return { ok: true, address, smtpUtf8: !ascii };
}

/**
 * The key two addresses share when they reach the same mailbox, used to drop
 * duplicates. The rule: trim; split at the last `@`; local part lower-cased
 * (ASCII letters, and for a non-ASCII local part Unicode NFC then lower case);
 * domain lower-cased and, when non-ASCII, converted to punycode. Nothing else
 * (no removal of dots or `+tags`: providers differ on those).
 *
 * `Alice@Example.com`, `alice@example.COM` -> `alice@example.com`.
 */
export function dedupeKey(address: string): string {
  const s = address.trim();
  const at = s.lastIndexOf("@");
  if (at < 0) return s.toLowerCase();
  let local = s.slice(0, at);
  let domain = s.slice(at + 1);
  if (!isAscii(local)) local = local.normalize("NFC");
  local = local.toLowerCase();
  if (!isAscii(domain)) domain = domainToASCII(domain) || domain;
  return `${local}@${domain.toLowerCase()}`;
}

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) >= 128) return false;
  return true;
}
