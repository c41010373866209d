/**
 * Outgoing messages for the Gmail tests and benchmark, with what each was
 * meant to say, so a received `raw` can be parsed and compared.
 *
 * Rendered by core/message.ts (`MessageComposer`), so the Gmail transport is
 * tested with the very bytes every transport receives.
 *
 * @module
 */
import { MessageComposer } from "../core/message.ts";
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

const COLUMNS = ["email", "name", "subject", "text"] as const;
const composers = new Map<string, MessageComposer>();

/** Render `m` with the project's composer (core/message.ts), as every transport receives it. */
export function outgoing(m: MeantMessage): Outgoing {
  const from = `${m.fromName} <${m.from}>`;
  let composer = composers.get(from);
  if (!composer) {
    composer = new MessageComposer(
      { from, toName: "{{name}}", subject: "{{subject}}", text: "{{text}}" },
      COLUMNS,
      { campaignId: "test" },
    );
    composers.set(from, composer);
  }
  const out = composer.render({
    line: m.line,
    address: m.to,
    values: [m.to, m.name, m.subject, m.text],
    smtpUtf8: false,
  });
  if (out.messageId !== m.messageId) {
    throw new Error(`Composer Message-ID ${out.messageId} differs from ${m.messageId}`);
  }
  return out;
}

/** Messages 1..n (or `first`..`first+n-1`) and what each means. */
export function messages(n: number, first = 1): { meant: MeantMessage[]; out: Outgoing[] } {
  const list = Array.from({ length: n }, (_, i) => meant(first + i));
  return { meant: list, out: list.map(outgoing) };
}
