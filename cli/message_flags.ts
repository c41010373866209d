/**
 * The message template from command-line flags and an optional JSON config
 * file. Flags win over the config; file paths in the config are relative to it.
 *
 * @module
 */
import type { MessageTemplate } from "../core/template.ts";
import { CliError, EXIT } from "./exit_codes.ts";

/** The config file's shape (every key optional; flags of the same meaning win). */
export interface ConfigFile {
  from?: string;
  replyTo?: string;
  toName?: string;
  subject?: string;
  text?: string;
  textFile?: string;
  html?: string;
  htmlFile?: string;
  headers?: Record<string, string>;
}

const CONFIG_KEYS = new Set([
  "from",
  "replyTo",
  "toName",
  "subject",
  "text",
  "textFile",
  "html",
  "htmlFile",
  "headers",
]);

/** The `parseArgs` specs of the message flags, shared by `send` and `serve`. */
export const MESSAGE_FLAG_SPECS = {
  config: { type: "string", short: "c" },
  from: { type: "string" },
  "reply-to": { type: "string" },
  "to-name": { type: "string" },
  subject: { type: "string" },
  text: { type: "string" },
  "text-file": { type: "string" },
  "html-file": { type: "string" },
} as const;

/** Flags that describe the message, as parsed by `parseArgs`. */
export interface MessageFlags {
  config?: string;
  from?: string;
  "reply-to"?: string;
  "to-name"?: string;
  subject?: string;
  text?: string;
  "text-file"?: string;
  "html-file"?: string;
}

/** Read the config (if any), apply flags, read body files, and check that the required parts exist. */
export async function loadTemplate(flags: MessageFlags): Promise<MessageTemplate> {
  let config: ConfigFile = {};
  let base = ".";
  if (flags.config !== undefined) {
    config = await readConfig(flags.config);
    const slash = flags.config.lastIndexOf("/");
    base = slash >= 0 ? flags.config.slice(0, slash) || "/" : ".";
  }
  const fromConfig = (path: string | undefined) =>
    path === undefined ? undefined : readText(path.startsWith("/") ? path : `${base}/${path}`);
  if (flags.text !== undefined && flags["text-file"] !== undefined) {
    throw new CliError(
      "Give the text body once: --text or --text-file, not both",
      EXIT.USAGE,
    );
  }
  let text = flags.text;
  if (flags["text-file"] !== undefined) text = await readText(flags["text-file"]);
  if (text === undefined) text = config.text ?? await fromConfig(config.textFile);
  let html: string | undefined;
  if (flags["html-file"] !== undefined) html = await readText(flags["html-file"]);
  if (html === undefined) html = config.html ?? await fromConfig(config.htmlFile);
  const from = flags.from ?? config.from;
  const subject = flags.subject ?? config.subject;
  const missing = [
    from === undefined ? "--from" : "",
    subject === undefined ? "--subject" : "",
    text === undefined ? "--text or --text-file" : "",
  ].filter(Boolean);
  if (missing.length > 0) {
    throw new CliError(
      `The message needs ${missing.join(", ")} (or a --config file that sets them)`,
      EXIT.USAGE,
    );
  }
  return {
    from: from!,
    replyTo: flags["reply-to"] ?? config.replyTo,
    toName: flags["to-name"] ?? config.toName,
    subject: subject!,
    text: text!,
    html,
    headers: config.headers,
  };
}

async function readConfig(path: string): Promise<ConfigFile> {
  const raw = await readText(path);
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (error) {
    throw new CliError(
      `Cannot parse config ${path}: ${(error as Error).message}`,
      EXIT.USAGE,
    );
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new CliError(`Config ${path} must be a JSON object`, EXIT.USAGE);
  }
  for (const [key, value] of Object.entries(parsed)) {
    if (!CONFIG_KEYS.has(key)) {
      throw new CliError(
        `Unknown key "${key}" in config ${path}; known keys: ${[...CONFIG_KEYS].join(", ")}`,
        EXIT.USAGE,
      );
    }
    const ok = key === "headers"
      ? value !== null && typeof value === "object" && !Array.isArray(value) &&
        Object.values(value).every((v) => typeof v === "string")
      : typeof value === "string";
    if (!ok) {
      throw new CliError(
        `Config ${path}: "${key}" must be ${
          key === "headers" ? "an object of strings" : "a string"
        }`,
        EXIT.USAGE,
      );
    }
  }
  return parsed as ConfigFile;
}

async function readText(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    throw new CliError(`Cannot read ${path}: ${describeFsError(error)}`, EXIT.USAGE);
  }
}

/** A short reason for a file-system error ("no such file", "permission denied"). */
export function describeFsError(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "no such file";
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (error instanceof Deno.errors.IsADirectory) return "it is a directory";
  return error instanceof Error ? error.message : String(error);
}
