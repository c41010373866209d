/**
 * The message of a request: a JSON object (the `message` part of a multipart
 * request) laid over the server's default message.
 *
 * Request values reach message headers only through `core/message.ts`, which
 * encodes them; on top of that, a single-line field (from, replyTo, toName,
 * subject, a header value) holding a line break or another control character
 * is refused here with a clear error instead of being quietly rewritten.
 *
 * @module
 */
import type { MessageTemplate } from "../core/template.ts";
import { HttpError } from "./errors.ts";

const STRING_KEYS = ["from", "replyTo", "toName", "subject", "text", "html"] as const;
const SINGLE_LINE = new Set(["from", "replyTo", "toName", "subject"]);
// C0 controls except tab, DEL, C1 controls, and the Unicode line/paragraph separators.
// deno-lint-ignore no-control-regex -- matching control characters is the point
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]/;

/** The JSON keys a message part may have. */
export const MESSAGE_KEYS: readonly string[] = [...STRING_KEYS, "headers"];

/**
 * Parse a message part and lay it over `defaults`: keys given in the request
 * win. Throws a 400 `bad_message` naming the problem.
 */
export function parseMessagePart(
  text: string,
  defaults?: Partial<MessageTemplate>,
): MessageTemplate {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new HttpError(
      "bad_message",
      `The message part is not valid JSON: ${(error as Error).message}`,
    );
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new HttpError("bad_message", "The message part must be a JSON object");
  }
  const given = value as Record<string, unknown>;
  const out: Record<string, unknown> = { ...defaults };
  for (const [key, v] of Object.entries(given)) {
    if (!MESSAGE_KEYS.includes(key)) {
      throw new HttpError(
        "bad_message",
        `Unknown key "${key}" in the message; known keys: ${MESSAGE_KEYS.join(", ")}`,
      );
    }
    if (key === "headers") {
      out.headers = checkHeaders(v);
      continue;
    }
    if (typeof v !== "string") {
      throw new HttpError("bad_message", `Message key "${key}" must be a string`);
    }
    if (SINGLE_LINE.has(key) && CONTROL.test(v)) {
      throw new HttpError(
        "bad_message",
        `Message key "${key}" contains a line break or control character; put it on one line`,
      );
    }
    out[key] = v;
  }
  return completeMessage(out);
}

/** Check that a message has what every message needs; throws a 400 `bad_message`. */
export function completeMessage(m: Partial<MessageTemplate> | undefined): MessageTemplate {
  const missing = ["from", "subject", "text"].filter((k) =>
    typeof (m as Record<string, unknown> | undefined)?.[k] !== "string"
  );
  if (m === undefined || missing.length > 0) {
    throw new HttpError(
      "bad_message",
      `The message needs ${missing.join(", ")}: send them in a "message" JSON part ` +
        `(multipart/form-data), or start the server with a default message`,
    );
  }
  return m as MessageTemplate;
}

function checkHeaders(v: unknown): Record<string, string> {
  if (v === null || typeof v !== "object" || Array.isArray(v)) {
    throw new HttpError("bad_message", 'Message key "headers" must be an object of strings');
  }
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(v as Record<string, unknown>)) {
    if (typeof value !== "string") {
      throw new HttpError("bad_message", `Header ${JSON.stringify(name)} must have a string value`);
    }
    if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(name)) {
      throw new HttpError(
        "bad_message",
        `Header name ${JSON.stringify(name)} is not a valid token`,
      );
    }
    if (CONTROL.test(value)) {
      throw new HttpError(
        "bad_message",
        `Header ${name} contains a line break or control character; put it on one line`,
      );
    }
    out[name] = value;
  }
  return out;
}
