/**
 * `POST /v1/send`: the CSV is the request body, read as a stream by the same
 * engine the CLI uses (`startCampaign`); the response streams NDJSON while
 * the body is still being read: a `start` line, `progress` lines, and a final
 * `summary` line with the same keys and counts as `mass-mailer send --json`.
 *
 * Refusals before the first row (auth, limits, a bad message, template or
 * CSV header) are plain JSON errors with a 4xx status; once the `start` line
 * is out the status is 200 and the outcome is in the `summary` line.
 *
 * @module
 */
import {
  type CampaignStart,
  type CampaignSummary,
  emptyRun,
  startCampaign,
  TransportError,
} from "../core/campaign.ts";
import { systemClock } from "../core/clock.ts";
import { type Ledger, LedgerError } from "../core/ledger.ts";
import type { RecipientOptions } from "../core/recipients.ts";
import { TemplateError } from "../core/template.ts";
import type { RowOutcome, Transport } from "../core/types.ts";
import { summaryJson } from "../cli/summary.ts";
import { BodyCutOffError, BodyIntake, type IntakeState } from "./body.ts";
import { type ErrorCode, errorResponse, HttpError } from "./errors.ts";
import { checkIdempotencyKey } from "./idempotency.ts";
import { completeMessage, parseMessagePart } from "./message_part.ts";
import { multipartBoundary, MultipartError, MultipartReader } from "./multipart.ts";
import { NDJSON_TYPE, NdjsonWriter } from "./ndjson.ts";
import type { MailerService } from "./service.ts";

/** The query parameters `POST /v1/send` takes (same meaning as the CLI flags of that name). */
export const SEND_PARAMS = ["column", "header-row", "delimiter", "limit", "dry-run"] as const;

const CSV_TYPES = new Set([
  "text/csv",
  "application/csv",
  "text/plain",
  "text/tab-separated-values",
]);

/** Per-request options from the query string. */
interface RequestOptions {
  readonly recipients: RecipientOptions;
  readonly limit?: number;
  readonly dryRun: boolean;
}

/** Why a run stopped taking rows before the end of the body, as the summary line reports it. */
interface StopCause {
  readonly code: ErrorCode | "client_gone" | "shutting_down";
  readonly message: string;
}

/** Handle one `POST /v1/send`. Never throws: refusals are JSON error responses. */
export async function handleSend(service: MailerService, request: Request): Promise<Response> {
  const o = service.options;
  let freeSlot: (() => void) | undefined;
  let intake: BodyIntake | undefined;
  let journal: Ledger | undefined;
  let transport: Transport | undefined;
  try {
    const opts = requestOptions(new URL(request.url).searchParams);
    const boundary = bodyKind(request.headers.get("content-type"));
    const expected = contentLength(request.headers.get("content-length"));
    if (expected !== undefined && expected > o.maxBodyBytes) {
      throw new HttpError(
        "body_too_large",
        `The body is ${expected} bytes; this server takes at most ${o.maxBodyBytes}`,
      );
    }
    const keyHeader = request.headers.get("idempotency-key");
    const key = keyHeader === null ? undefined : checkIdempotencyKey(keyHeader);
    if (key !== undefined && opts.dryRun) {
      throw new HttpError(
        "bad_request",
        "A dry run keeps no ledger: drop the Idempotency-Key or dry-run",
      );
    }
    if (key !== undefined && o.idempotency === undefined) {
      throw new HttpError(
        "idempotency_unavailable",
        "This server keeps no idempotency ledgers; start it with an idempotency directory",
      );
    }
    freeSlot = service.reserve();

    // Until the run starts, a cut-off body lets its reader fail at once (-> 400/413);
    // after that it stops the run gracefully (in-flight messages finish).
    let onCut: (state: IntakeState, bytes: number) => void = () => intake!.release();
    intake = new BodyIntake(request.body, {
      maxBytes: o.maxBodyBytes,
      expectedBytes: expected,
      idleTimeoutMs: o.bodyIdleTimeoutMs,
      onEnd: (state, bytes) => {
        service.metrics.bodyBytes(bytes);
        if (state !== "complete") onCut(state, bytes);
      },
    });

    // The message and the CSV bytes.
    let template;
    let input: AsyncIterable<Uint8Array>;
    let malformed: MultipartError | undefined;
    let streaming = false;
    let begun = false;
    let cause: StopCause | undefined;
    const runOver = Promise.withResolvers<void>();
    const graceful = new AbortController();
    if (boundary !== undefined) {
      const mp = new MultipartReader(intake.chunks(), boundary);
      let part = await mp.next();
      let messageText: string | undefined;
      if (part?.name === "message") {
        messageText = await mp.text(o.maxMessageBytes);
        part = await mp.next();
      }
      if (part?.name !== "recipients") {
        const what = part === undefined
          ? "has no"
          : part.name === "message"
          ? 'has a second "message" part where it needs its'
          : `has a ${JSON.stringify(part.name)} part where it needs its`;
        throw new HttpError(
          "bad_request",
          `The multipart body ${what} "recipients" part: send an optional "message" part (JSON), ` +
            `then "recipients" (the CSV), and nothing else`,
        );
      }
      template = messageText === undefined
        ? completeMessage(o.message)
        : parseMessagePart(messageText, o.message);
      const stopIntake = intake;
      input = (async function* () {
        try {
          // "recipients" must be the last part: what follows it is known before
          // its last piece reaches the CSV reader, so a later part never leaves
          // the CSV looking complete.
          yield* mp.body(refuseLaterPart);
        } catch (error) {
          if (error instanceof HttpError && begun) {
            // Rows may be sending: take no more, let in-flight messages finish.
            cause ??= { code: error.code, message: error.message };
            stopIntake.stop();
            graceful.abort();
            await runOver.promise;
            throw error;
          }
          if (!(error instanceof MultipartError) || !streaming) throw error;
          // A malformed end is a cut-off body: stop gracefully, never end the CSV early.
          malformed = error;
          graceful.abort();
          await runOver.promise;
          throw error;
        }
        await mp.drain();
      })();
    } else {
      template = completeMessage(o.message);
      input = intake.chunks();
    }

    const hard = new AbortController();
    if (key !== undefined) {
      journal = await o.idempotency!.open({
        key,
        transport: o.transport.name,
        template,
        recipients: opts.recipients,
        onError: (error) => hard.abort(error),
      });
    }
    if (!opts.dryRun) {
      try {
        transport = await o.transport.create();
      } catch (error) {
        o.log(
          `mass-mailer serve: cannot create the ${o.transport.name} transport: ${describe(error)}`,
        );
        throw new HttpError(
          "transport_unavailable",
          `The ${o.transport.name} transport is not available: ${describe(error)}`,
        );
      }
    }

    let clientGone = false;
    let shuttingDown = false;
    // `intake` is cleared once streaming starts; the response may be cancelled after that.
    const reading = intake;
    const ndjson = new NdjsonWriter(() => {
      clientGone = true;
      graceful.abort();
      reading.stop();
    });
    const started = Promise.withResolvers<CampaignStart>();
    const metrics = service.metrics;
    const j = journal;
    const hooks = j?.hooks(systemClock);
    const onOutcome = hooks === undefined
      ? (r: RowOutcome) => {
        if (r.status === "failed") metrics.failed(r.code);
      }
      : (r: RowOutcome, transient: boolean) => {
        hooks.onOutcome(r, transient);
        if (r.status === "failed") metrics.failed(r.code);
      };
    const run = o.run;
    const campaign = startCampaign({
      input,
      template,
      transport: transport === undefined
        ? dryRunTransport(o.transport.name)
        : metrics.timed(transport),
      // The body's announced size sizes the duplicate table once (as a file's size does).
      recipients: { ...opts.recipients, sizeHint: expected },
      limit: opts.limit,
      dryRun: opts.dryRun,
      concurrency: run.concurrency,
      rate: run.rate,
      maxAttempts: run.maxAttempts,
      maxErrors: run.maxErrors,
      retryBaseMs: run.retryBaseMs,
      signal: graceful.signal,
      abortSignal: hard.signal,
      previous: hooks?.previous,
      onRetry: hooks?.onRetry,
      rateHistory: hooks?.rateHistory,
      compose: hooks?.compose,
      onStart: async (info) => {
        await hooks?.onStart(info);
        begun = true;
        started.resolve(info);
      },
      onOutcome,
    });
    metrics.runStarted(campaign);
    let start: CampaignStart;
    try {
      start = await Promise.race([
        started.promise,
        campaign.done.then(() => started.promise),
      ]);
    } catch (error) {
      metrics.runEnded(campaign, "rejected");
      throw error;
    }

    // Streaming from here on: 200, NDJSON.
    streaming = true;
    const bodyState = intake;
    /** The run ended by itself (all rows, a --limit, a pause, a failure): no cut to report. */
    let runEnded = false;
    onCut = (state, bytes) => {
      if (runEnded) return;
      cause ??= cutCause(state, bytes, o.maxBodyBytes, clientGone, shuttingDown, key !== undefined);
      graceful.abort();
    };
    if (bodyState.state !== "reading" && bodyState.state !== "complete") {
      onCut(bodyState.state, bodyState.bytes);
    }
    ndjson.write({
      type: "start",
      columns: start.columns,
      addressColumn: start.addressColumn,
      hasHeader: start.hasHeader,
      ...(start.warnings.length === 0 ? {} : { warnings: start.warnings }),
      ...(j === undefined ? {} : { idempotencyKey: key, resumed: j.resumed, earlier: j.before }),
    });
    const timer = setInterval(() => {
      const s = campaign.stats;
      ndjson.offer({
        type: "progress",
        rows: s.rows,
        sent: s.sent,
        failed: s.failed,
        invalid: s.invalid,
        duplicates: s.duplicates,
        suppressed: s.suppressed,
        done: s.done,
        inFlight: s.inFlight,
        retrying: s.retrying,
        bytesRead: bodyState.bytes,
        elapsedMs: Math.round(campaign.elapsed()),
      });
    }, o.progressIntervalMs);
    const slot = freeSlot;
    const openTransport = transport;
    freeSlot = undefined;
    intake = undefined;
    journal = undefined;
    transport = undefined;

    const ended = (async () => {
      let summary: CampaignSummary | undefined;
      let failure: unknown;
      try {
        summary = await campaign.done;
      } catch (error) {
        failure = error;
      }
      clearInterval(timer);
      // A body the run no longer needs (it took its --limit, paused or failed) stops being
      // read now: intake "stopped", which is not a cut-off body.
      runEnded = true;
      bodyState.release();
      const state = bodyState.state;
      runOver.resolve();
      if (malformed !== undefined) {
        cause ??= {
          code: "bad_request",
          message: `${malformed.message}; rows after the last complete line were not read`,
        };
      }
      try {
        await openTransport?.close();
      } catch (error) {
        o.log(`mass-mailer serve: closing the transport failed: ${describe(error)}`);
      }
      try {
        await j?.close();
      } catch (error) {
        o.log(`mass-mailer serve: closing the idempotency ledger failed: ${describe(error)}`);
        failure ??= error;
      }
      metrics.runEnded(campaign, summary?.status ?? "failed");
      if (summary === undefined) {
        o.log(`mass-mailer serve: a run failed unexpectedly: ${stackOf(failure)}`);
        ndjson.write({
          type: "error",
          code: "internal",
          message: "The run failed unexpectedly; see the server log",
        });
      } else {
        ndjson.write(
          finalLine(summary, o.transport.name, cause, state, bodyState.bytes, j, opts),
        );
      }
      ndjson.close();
      slot();
    })();
    service.track({
      stop() {
        shuttingDown = true;
        graceful.abort();
        bodyState.stop();
      },
      abort() {
        this.stop();
        hard.abort(new Error("The server was stopped at once"));
      },
      ended,
    });
    const headers = {
      "content-type": NDJSON_TYPE,
      "cache-control": "no-store",
      "x-content-type-options": "nosniff",
      "x-accel-buffering": "no",
    };
    // Deno.serve 2.9 drops this streamed response once reading the request
    // body fails (a body shorter than its Content-Length, then the client's
    // FIN): lines not yet sent never go out, it may cancel the body (read here
    // as client_gone) and leave the connection open. The outcome then reaches
    // only /metrics and the idempotency ledger (tests/server_test.ts shows it).
    return new Response(ndjson.readable, { status: 200, headers });
  } catch (error) {
    intake?.release();
    if (intake === undefined) request.body?.cancel().catch(() => {});
    freeSlot?.();
    try {
      await transport?.close();
      await journal?.close();
    } catch (closeError) {
      o.log(`mass-mailer serve: cleanup after a refused request failed: ${describe(closeError)}`);
    }
    return errorResponse(toHttpError(error, o.log));
  }
}

/** `beforeEnd` of the recipients part: any part after it is refused. */
function refuseLaterPart(next: { readonly name: string } | undefined): void {
  if (next === undefined) return;
  if (next.name === "message") {
    throw new HttpError(
      "message_after_recipients",
      'The "message" part must come before the "recipients" part: send it first',
    );
  }
  throw new HttpError(
    "bad_request",
    `The multipart body has a ${
      JSON.stringify(next.name)
    } part after "recipients"; "recipients" must be the last part`,
  );
}

/** The last NDJSON line: the CLI's `--json` summary plus how the body ended. */
function finalLine(
  s: CampaignSummary,
  transport: string,
  cause: StopCause | undefined,
  intake: IntakeState,
  bytes: number,
  journal: Ledger | undefined,
  opts: RequestOptions,
): Record<string, unknown> {
  let code: string | undefined = cause?.code;
  let summary = s;
  const empty = cause === undefined ? emptyRun(s, opts.limit) : undefined;
  if (cause !== undefined && s.status === "stopped") {
    summary = { ...s, reason: cause.message };
  } else if (empty !== undefined) {
    // Finished, but nothing to send: what the CLI refuses with exit code 3.
    code = empty;
    const column = opts.recipients.column ?? 1;
    summary = {
      ...s,
      reason: empty === "no_rows"
        ? "The CSV has no data rows (it is empty or holds only a header row); nothing was sent"
        : `0 valid addresses in column ${column} of ${s.rows} rows; nothing was sent: ` +
          `check the column and delimiter parameters`,
    };
  } else if (s.error instanceof LedgerError && s.error.kind === "changed") {
    // The ledger's own words name its file and CLI flags: not for an HTTP client.
    code = "idempotency_mismatch";
    const at = s.error.line === undefined ? "A row" : `Line ${s.error.line}`;
    summary = {
      ...s,
      reason: `${at} holds another address than the CSV first sent with this Idempotency-Key; ` +
        `the run stopped there. Send that CSV to finish it, or use a new key for another list`,
    };
  } else if (s.status === "failed") {
    code = s.error instanceof TransportError
      ? "transport_error"
      : s.error instanceof SyntaxError
      ? "bad_csv"
      : s.error instanceof LedgerError
      ? (s.error.kind === "changed" ? "idempotency_mismatch" : "ledger_error")
      : "run_failed";
  } else if (s.status === "paused") {
    code = "paused";
  }
  return {
    type: "summary",
    ...summaryJson(summary, { transport }),
    ...(code === undefined ? {} : { code }),
    intake,
    bytesRead: bytes,
    ...(journal === undefined ? {} : { all: journal.counts() }),
  };
}

function cutCause(
  state: IntakeState,
  bytes: number,
  limit: number,
  clientGone: boolean,
  shuttingDown: boolean,
  keyed: boolean,
): StopCause {
  // Without a key, the same request again would mail the rows already sent a second time.
  const resume = keyed
    ? "send the same request again with the same Idempotency-Key to finish"
    : "the rows after those counted were not sent: send only them (the same request again " +
      "would mail the sent rows twice; an Idempotency-Key makes such retries safe)";
  if (state === "too_large") {
    return {
      code: "body_too_large",
      message:
        `The body passed this server's limit of ${limit} bytes; no rows after that were read`,
    };
  }
  if (state === "timed_out") {
    return {
      code: "body_timeout",
      message:
        `The client sent nothing for the server's idle timeout after ${bytes} bytes; ${resume}`,
    };
  }
  if (shuttingDown) {
    return { code: "shutting_down", message: `The server is shutting down; ${resume}` };
  }
  if (clientGone) {
    return {
      code: "client_gone",
      message: `The client went away; in-flight messages finished; ${resume}`,
    };
  }
  return {
    code: "body_truncated",
    message:
      `The body was cut off after ${bytes} bytes; its partial last line was not used; ${resume}`,
  };
}

/** Map what was thrown before streaming began to a JSON error. */
function toHttpError(error: unknown, log: (line: string) => void): HttpError {
  if (error instanceof HttpError) return error;
  if (error instanceof BodyCutOffError) {
    if (error.state === "too_large") {
      return new HttpError("body_too_large", "The body is larger than this server takes");
    }
    if (error.state === "timed_out") {
      return new HttpError(
        "body_timeout",
        "The client sent no body bytes for too long; nothing was sent",
      );
    }
    return new HttpError(
      "body_truncated",
      "The body ended before it was complete; nothing was sent",
    );
  }
  if (error instanceof LedgerError && error.kind === "changed") {
    return new HttpError(
      "idempotency_mismatch",
      "This Idempotency-Key was used with another message or CSV; use a new key for a new campaign",
    );
  }
  if (error instanceof TemplateError) return new HttpError("template_error", error.message);
  if (error instanceof SyntaxError) return new HttpError("bad_csv", error.message);
  if (error instanceof MultipartError) return new HttpError("bad_request", error.message);
  if (error instanceof RangeError || error instanceof TypeError) {
    return new HttpError("bad_request", error.message);
  }
  log(`mass-mailer serve: unexpected error: ${stackOf(error)}`);
  return new HttpError("internal", "Unexpected server error; see the server log");
}

function requestOptions(params: URLSearchParams): RequestOptions {
  for (const name of params.keys()) {
    if (!(SEND_PARAMS as readonly string[]).includes(name)) {
      throw new HttpError(
        "bad_request",
        `Unknown query parameter "${name}"; known: ${SEND_PARAMS.join(", ")}`,
      );
    }
  }
  const recipients: { column?: string | number; header?: boolean | "auto"; delimiter?: string } =
    {};
  const column = params.get("column");
  if (column !== null) recipients.column = /^\d+$/.test(column) ? Number(column) : column;
  const header = params.get("header-row");
  if (header !== null) {
    const map: Record<string, boolean | "auto"> = { auto: "auto", yes: true, no: false };
    if (!(header in map)) {
      throw new HttpError(
        "bad_request",
        `Invalid header-row ${JSON.stringify(header)}: use auto, yes or no`,
      );
    }
    recipients.header = map[header];
  }
  const delimiter = params.get("delimiter");
  if (delimiter !== null) {
    recipients.delimiter = delimiter === "tab" || delimiter === "\\t" ? "\t" : delimiter;
  }
  let limit: number | undefined;
  const rawLimit = params.get("limit");
  if (rawLimit !== null) {
    if (!/^\d+$/.test(rawLimit)) {
      throw new HttpError(
        "bad_request",
        `Invalid limit ${JSON.stringify(rawLimit)}: use a whole number >= 0`,
      );
    }
    limit = Number(rawLimit);
  }
  const dry = params.get("dry-run");
  if (dry !== null && !["", "1", "true", "0", "false"].includes(dry)) {
    throw new HttpError("bad_request", `Invalid dry-run ${JSON.stringify(dry)}: use true or false`);
  }
  return { recipients, limit, dryRun: dry !== null && dry !== "0" && dry !== "false" };
}

/** The multipart boundary, or undefined for a CSV body; throws 415 for other types. */
function bodyKind(contentType: string | null): string | undefined {
  const type = (contentType ?? "").split(";")[0].trim().toLowerCase();
  if (CSV_TYPES.has(type)) return undefined;
  if (type === "multipart/form-data") {
    const boundary = multipartBoundary(contentType!);
    if (boundary === undefined) {
      throw new HttpError("bad_request", "multipart/form-data without a valid boundary");
    }
    return boundary;
  }
  throw new HttpError(
    "unsupported_media_type",
    `Send the CSV as text/csv, or as multipart/form-data with "message" and "recipients" parts (got ${
      type === "" ? "no Content-Type" : type
    })`,
  );
}

function contentLength(value: string | null): number | undefined {
  if (value === null) return undefined;
  if (!/^\d+$/.test(value.trim())) throw new HttpError("bad_request", "Invalid Content-Length");
  return Number(value.trim());
}

/** Stands in for the transport in a dry run: the engine never calls it. */
function dryRunTransport(name: string): Transport {
  return {
    name,
    maxBatch: 1000,
    defaultConcurrency: 1000,
    send: () => Promise.reject(new Error("Dry run: nothing may be sent")),
    close: () => Promise.resolve(),
  };
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function stackOf(error: unknown): string {
  return error instanceof Error ? (error.stack ?? error.message) : String(error);
}
