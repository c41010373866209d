/**
 * The Hono app of the HTTP service (see server.ts for the public entry).
 *
 * @module
 */
// deno-lint-ignore no-import-prefix -- the project imports npm packages inline (no import map)
import { Hono } from "npm:hono@^4";
import { errorResponse, HttpError } from "./errors.ts";
import { METRICS_TYPE } from "./metrics.ts";
import { handleSend } from "./send_route.ts";
import { MailerService, type ServerOptions } from "./service.ts";

/** The Hono app of the service, with its shared state (`service.shutdown()` drains runs). */
export type MailerApp = Hono & { readonly service: MailerService };

/** Routes that answer without a token. */
const PUBLIC = new Set(["/healthz"]);

/**
 * Build the app. Throws `TypeError`/`RangeError` for bad options (no token
 * without `auth: "none"`, a short token, bad limits).
 */
export function createApp(options: ServerOptions): MailerApp {
  const service = new MailerService(options);
  const { auth, metrics, log } = service.options;
  const app = new Hono();

  app.use("*", async (c, next) => {
    await next();
    metrics.response(c.res.status);
  });

  app.use("*", async (c, next) => {
    if (auth !== undefined && !PUBLIC.has(c.req.path)) {
      try {
        await auth.require(c.req.header("authorization"));
      } catch (error) {
        // Never read the body of a refused request: answer now, drop the upload.
        c.req.raw.body?.cancel().catch(() => {});
        throw error;
      }
    }
    await next();
  });

  app.get("/healthz", (c) => {
    const closing = service.closing;
    return c.json(
      { status: closing ? "shutting_down" : "ok", runs: service.activeRuns },
      closing ? 503 : 200,
    );
  });

  app.get("/metrics", (c) => c.body(metrics.render(), 200, { "content-type": METRICS_TYPE }));

  app.post("/v1/send", (c) => handleSend(service, c.req.raw));

  for (
    const [path, allow] of [["/v1/send", "POST"], ["/healthz", "GET, HEAD"], [
      "/metrics",
      "GET, HEAD",
    ]]
  ) {
    app.all(path, (c) => {
      c.req.raw.body?.cancel().catch(() => {});
      return errorResponse(
        new HttpError("method_not_allowed", `${c.req.method} is not allowed here; use ${allow}`, {
          headers: { allow },
        }),
      );
    });
  }

  app.notFound((c) => {
    c.req.raw.body?.cancel().catch(() => {});
    return errorResponse(new HttpError("not_found", `No route ${c.req.method} ${c.req.path}`));
  });

  app.onError((error) => {
    if (error instanceof HttpError) return errorResponse(error);
    log(`mass-mailer serve: unexpected error: ${error.stack ?? error.message}`);
    return errorResponse(new HttpError("internal", "Unexpected server error; see the server log"));
  });

  return Object.assign(app, { service });
}
