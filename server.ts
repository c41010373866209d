/**
 * The mass-mailer HTTP service: POST a CSV, get NDJSON progress and a summary
 * back while it is being sent, on the same engine as the CLI.
 *
 * ```ts
 * import { createApp } from "./server.ts";
 * import { createFakeTransport } from "./transports/fake.ts";
 * const app = createApp({
 *   auth: "none",
 *   transport: { name: "fake", create: () => createFakeTransport({ latencyMs: 1 }) },
 *   message: { from: "Team <team@example.com>", subject: "Hi {{name}}", text: "Hello {{name}}" },
 * });
 * const res = await app.request("/healthz");
 * if (res.status !== 200) throw new Error("unhealthy");
 * ```
 *
 * Routes: `POST /v1/send`, `GET /healthz` (no auth), `GET /metrics`. Run it
 * with `mass-mailer serve` (see cli/serve.ts), which is also what
 * `deno run server.ts ...` does.
 *
 * @module
 */
export { createApp, type MailerApp } from "./server/app.ts";
export { MailerService } from "./server/service.ts";
export type { RunDefaults, ServerOptions, TransportFactory } from "./server/service.ts";
export { createIdempotencyStore, type IdempotencyStore } from "./server/idempotency.ts";
export { ServerMetrics } from "./server/metrics.ts";

if (import.meta.main) {
  const { main } = await import("./cli.ts");
  Deno.exit(await main(["serve", ...Deno.args]));
}
