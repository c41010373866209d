/**
 * mass-mailer: send one email to every row of a huge CSV, fast, without
 * skipping or doubling anyone, through a pluggable transport.
 *
 * ```ts
 * import { createFakeTransport, runCampaign } from "./mod.ts";
 *
 * const csv = "email,name\nann@example.com,Ann\nbob@example.com,Bob\n";
 * const summary = await runCampaign({
 *   input: new Blob([csv]).stream(),
 *   template: { from: "Team <team@example.com>", subject: "Hello {{name}}", text: "Hi {{name}}!" },
 *   transport: createFakeTransport({ latencyMs: 1 }),
 * });
 * if (summary.sent !== 2) throw new Error("expected 2 sent");
 * ```
 *
 * The core imports no transport; transports implement {@link Transport}.
 *
 * @module
 */
export * from "./core/types.ts";
export {
  type Campaign,
  type CampaignOptions,
  type CampaignStart,
  type CampaignStats,
  type CampaignStatus,
  type CampaignSummary,
  emptyRun,
  runCampaign,
  startCampaign,
  TransportError,
} from "./core/campaign.ts";
export { type Clock, ManualClock, systemClock } from "./core/clock.ts";
export { type CsvOptions, CsvParser, type CsvRecord, readCsvRecords } from "./core/csv.ts";
export {
  type AddressCheck,
  checkAddress,
  dedupeKey,
  readRecipients,
  type RecipientOptions,
  RecipientReader,
  type RowItem,
} from "./core/recipients.ts";
export {
  createRecipientReader,
  ParallelRecipientReader,
  type ReaderChoiceOptions,
  type RowSource,
} from "./core/parallel_reader.ts";
export { type MessageTemplate, TemplateError } from "./core/template.ts";
export {
  composeMessage,
  type ComposeOptions,
  MessageComposer,
  type PackedMessages,
} from "./core/message.ts";
export { parseRate, RateLimiter, type RateWindow } from "./core/rate.ts";
export { createFakeTransport, type FakeTransportOptions } from "./transports/fake.ts";
