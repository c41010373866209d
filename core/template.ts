/**
 * Message templates with `{{field}}` merge fields, checked against the CSV
 * columns before the first message is rendered.
 *
 * Syntax:
 * - `{{name}}` or `{{ name }}`: the value of the column called `name` (exact
 *   match first, then case-insensitive);
 * - `{{2}}`: the value of the 2nd column (1-based); digits always mean an index;
 * - `{{{name}}}`: the raw value, not HTML-escaped (HTML body only);
 * - `\{{`: a literal `{{`.
 *
 * @module
 */

/** What a user wrote for a message; every text field may hold merge fields unless noted. */
export interface MessageTemplate {
  /** `"Team <team@example.com>"` or a bare address; merge fields only in the display name. */
  from: string;
  /** Same form as `from`; merge fields only in the display name. */
  replyTo?: string;
  /** Display name for the To header, e.g. `"{{name}}"`; To is always the recipient address. */
  toName?: string;
  /** The subject. */
  subject: string;
  /** The text body (required). */
  text: string;
  /** An optional HTML body; the message becomes multipart/alternative (text, then html). */
  html?: string;
  /** Extra static headers, e.g. `List-Unsubscribe`; names must be tokens, values one line. */
  headers?: Record<string, string>;
}

/** A template is wrong: an unknown merge field, bad syntax, a bad header or address. */
export class TemplateError extends Error {
  /** The unknown or bad merge fields as written (`{{nmae}}`), when that is the fault. */
  readonly fields: readonly string[];

  /** Create the error; `fields` lists the offending merge fields, if any. */
  constructor(message: string, fields: readonly string[] = []) {
    super(message);
    this.name = "TemplateError";
    this.fields = fields;
  }
}

/** Literal text of a template. */
export interface TextPart {
  readonly type: "text";
  readonly text: string;
}

/** A merge field of a template. */
export interface FieldPart {
  readonly type: "field";
  /** The field as written in the source, e.g. `{{ name }}`. */
  readonly source: string;
  /** The trimmed name (`"name"`, or `"2"` for an index). */
  readonly name: string;
  /** The 1-based column index when the name is all digits. */
  readonly index?: number;
  /** True for `{{{name}}}`: the value is inserted without HTML escaping. */
  readonly raw: boolean;
}

/** One piece of a parsed template. */
export type TemplatePart = TextPart | FieldPart;

/**
 * Parse "{{field}}" placeholders: {{ name }} (whitespace allowed), {{2}}
 * (1-based column index), {{{name}}} raw (HTML only: no escaping); "\{{"
 * escapes a literal. Adjacent text is merged into one part.
 *
 * @param where names the template in error messages (`"subject"`).
 * @throws {TemplateError} on an unclosed or empty field.
 */
export function parseTemplate(source: string, where = "template"): TemplatePart[] {
  const parts: TemplatePart[] = [];
  let text = "";
  let i = 0;
  while (i < source.length) {
    const open = source.indexOf("{{", i);
    if (open < 0) {
      text += source.slice(i);
      break;
    }
    if (open > i && source[open - 1] === "\\") {
      text += source.slice(i, open - 1) + "{{";
      i = open + 2;
      continue;
    }
    text += source.slice(i, open);
    const raw = source.startsWith("{{{", open);
    const close = source.indexOf(raw ? "}}}" : "}}", open + (raw ? 3 : 2));
    if (close < 0) {
      throw new TemplateError(
        `Unclosed ${raw ? "{{{" : "{{"} at character ${open + 1} in ${where}; close it with ${
          raw ? "}}}" : "}}"
        } or write \\{{ for a literal {{`,
      );
    }
    const end = close + (raw ? 3 : 2);
    const fieldSource = source.slice(open, end);
    const name = source.slice(open + (raw ? 3 : 2), close).trim();
    if (name.length === 0 || /[{}\r\n]/.test(name)) {
      throw new TemplateError(
        `Bad merge field ${fieldSource} in ${where}; write {{column}} or {{2}}`,
        [
          fieldSource,
        ],
      );
    }
    if (text.length > 0) parts.push({ type: "text", text });
    text = "";
    if (/^[0-9]+$/.test(name)) {
      parts.push({ type: "field", source: fieldSource, name, index: Number(name), raw });
    } else {
      parts.push({ type: "field", source: fieldSource, name, raw });
    }
    i = end;
  }
  if (text.length > 0) parts.push({ type: "text", text });
  return parts;
}

/**
 * A template bound to columns: `statics[0] + v(fields[0]) + statics[1] + ...`.
 * `statics.length === fields.length + 1`.
 */
export interface BoundTemplate {
  /** Literal text around the fields. */
  readonly statics: readonly string[];
  /** 0-based column index of each field. */
  readonly fields: readonly number[];
  /** Whether each field is raw (`{{{x}}}`). */
  readonly raw: readonly boolean[];
}

/** One template to bind, named for error messages. */
export interface TemplateSource {
  /** Where the template is used: `"subject"`, `"text"`, `"html"`, ... */
  readonly where: string;
  /** The parsed template. */
  readonly parts: readonly TemplatePart[];
  /** Whether `{{{raw}}}` fields are allowed (HTML only). */
  readonly allowRaw?: boolean;
}

/**
 * Resolve field names against the CSV columns (exact match first, then
 * case-insensitive); throws TemplateError listing every unknown field.
 *
 * Pass one template (`parts`, `columns`, `where`) or several at once as
 * {@link TemplateSource} objects, so one error lists every problem.
 */
export function bindTemplate(
  parts: readonly TemplatePart[],
  columns: readonly string[],
  where?: string,
): BoundTemplate;
export function bindTemplate(
  sources: readonly TemplateSource[],
  columns: readonly string[],
): BoundTemplate[];
export function bindTemplate(
  input: readonly TemplatePart[] | readonly TemplateSource[],
  columns: readonly string[],
  where = "template",
): BoundTemplate | BoundTemplate[] {
  const single = input.length === 0 || "type" in input[0];
  const sources: readonly TemplateSource[] = single
    ? [{ where, parts: input as readonly TemplatePart[], allowRaw: true }]
    : input as readonly TemplateSource[];
  const exact = new Map<string, number>();
  const folded = new Map<string, number[]>();
  columns.forEach((c, i) => {
    if (!exact.has(c)) exact.set(c, i);
    const key = c.toLowerCase();
    const list = folded.get(key);
    if (list) list.push(i);
    else folded.set(key, [i]);
  });
  const unknown: string[] = [];
  const problems: string[] = [];
  const badFields: string[] = [];
  const bound = sources.map(({ where, parts, allowRaw }) => {
    const statics: string[] = [""];
    const fields: number[] = [];
    const raw: boolean[] = [];
    for (const part of parts) {
      if (part.type === "text") {
        statics[statics.length - 1] += part.text;
        continue;
      }
      if (part.raw && !allowRaw) {
        badFields.push(part.source);
        problems.push(
          `raw field ${part.source} in ${where} (raw fields work only in html; write {{${part.name}}})`,
        );
        continue;
      }
      let column: number | undefined;
      if (part.index !== undefined) {
        if (part.index >= 1 && part.index <= columns.length) column = part.index - 1;
        else {
          badFields.push(part.source);
          problems.push(
            `${part.source} in ${where} is out of range (there are ${columns.length} columns)`,
          );
          continue;
        }
      } else {
        column = exact.get(part.name);
        if (column === undefined) {
          const matches = folded.get(part.name.toLowerCase());
          if (matches && matches.length > 1) {
            badFields.push(part.source);
            problems.push(
              `${part.source} in ${where} is ambiguous (columns ${
                matches.map((m) => columns[m]).join(", ")
              })`,
            );
            continue;
          }
          column = matches?.[0];
        }
        if (column === undefined) {
          badFields.push(part.source);
          unknown.push(`${part.source} in ${where}`);
          continue;
        }
      }
      fields.push(column);
      raw.push(part.raw);
      statics.push("");
    }
    return { statics, fields, raw };
  });
  if (unknown.length > 0 || problems.length > 0) {
    const messages: string[] = [];
    if (unknown.length > 0) {
      messages.push(`Unknown merge field${unknown.length > 1 ? "s" : ""} ${unknown.join(", ")}`);
    }
    if (problems.length > 0) {
      const text = problems.join(", ");
      messages.push(messages.length > 0 ? text : `Bad merge field ${text}`);
    }
    throw new TemplateError(
      `${messages.join("; ")}; columns are: ${columns.length > 0 ? columns.join(", ") : "(none)"}`,
      badFields,
    );
  }
  return single ? bound[0] : bound;
}

/** Whether a bound template has no fields (the same text for every row). */
export function isStatic(t: BoundTemplate): boolean {
  return t.fields.length === 0;
}

const HTML_SPECIAL = /[&<>"']/;
const HTML_SPECIALS = /[&<>"']/g;
const HTML_ENTITIES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

/** Escape `& < > " '` for HTML text and attribute values. */
export function escapeHtml(value: string): string {
  return HTML_SPECIAL.test(value) ? value.replace(HTML_SPECIALS, (c) => HTML_ENTITIES[c]) : value;
}

/**
 * Render a bound template with one record's values; a missing value is empty.
 * With `html`, values of non-raw fields are HTML-escaped.
 */
export function renderTemplate(t: BoundTemplate, values: readonly string[], html = false): string {
  const { statics, fields } = t;
  let out = statics[0];
  for (let i = 0; i < fields.length; i++) {
    const v = values[fields[i]] ?? "";
    out += (html && !t.raw[i] ? escapeHtml(v) : v) + statics[i + 1];
  }
  return out;
}
