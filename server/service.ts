/**
 * The HTTP service's options, resolved once, and its shared state: the
 * metrics, the running campaigns, the run slots and the shutdown switch.
 *
 * @module
 */
import type { RateWindow } from "../core/rate.ts";
import type { MessageTemplate } from "../core/template.ts";
import type { Transport } from "../core/types.ts";
import { TokenCheck } from "./auth.ts";
import { HttpError } from "./errors.ts";
import type { IdempotencyStore } from "./idempotency.ts";
import { ServerMetrics } from "./metrics.ts";

/** Default body limit: 100 MiB. */
export const DEFAULT_MAX_BODY_BYTES = 100 * 1024 * 1024;
/** Default limit of the JSON message part: 1 MiB. */
export const DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024;

/** How the service gets a transport: one per run, closed when the run ends. */
export interface TransportFactory {
  /** The transport's name (`"fake"`, `"smtp"`, `"gmail"`), for summaries. */
  readonly name: string;
  /** Build a transport for one run. */
  create(): Transport | Promise<Transport>;
}

/** Engine settings applied to every run (see `CampaignOptions` for each). */
export interface RunDefaults {
  /** Messages in flight per run. Default: the transport's. */
  readonly concurrency?: number;
  /** Rate limits per run. */
  readonly rate?: readonly RateWindow[];
  /** Attempts per message for transient failures. Default 5. */
  readonly maxAttempts?: number;
  /** Pause a run after this many consecutive failures. Default off. */
  readonly maxErrors?: number;
  /** First backoff ceiling in ms. Default 1000. */
  readonly retryBaseMs?: number;
}

/** Options of `createApp`. Only `transport` is required, and `token` unless `auth` is `"none"`. */
export interface ServerOptions {
  /** Creates the transport of each run. */
  readonly transport: TransportFactory;
  /**
   * The bearer token every request except `GET /healthz` must present.
   * Required unless `auth` is `"none"`. At least 16 characters.
   */
  readonly token?: string;
  /**
   * `"bearer"` (default) or `"none"`. Only choose `"none"` for a server bound
   * to loopback; `mass-mailer serve` refuses it for any other address.
   */
  readonly auth?: "bearer" | "none";
  /** The message of `text/csv` requests, and the defaults under a request's own message part. */
  readonly message?: Partial<MessageTemplate>;
  /** Largest request body in bytes. Default 100 MiB. */
  readonly maxBodyBytes?: number;
  /** Largest JSON message part in bytes. Default 1 MiB. */
  readonly maxMessageBytes?: number;
  /** Campaigns running at once; more get 429 `busy`. Default 4. */
  readonly maxRuns?: number;
  /** Milliseconds between NDJSON progress lines. Default 1000. */
  readonly progressIntervalMs?: number;
  /** Give up on an upload that sends no byte for this long, in ms. Default 60000. */
  readonly bodyIdleTimeoutMs?: number;
  /** Where `Idempotency-Key` ledgers live. Without it, a request with the header gets 501. */
  readonly idempotency?: IdempotencyStore;
  /** Engine settings for every run. */
  readonly run?: RunDefaults;
  /** Metrics registry; default a new one. */
  readonly metrics?: ServerMetrics;
  /** Server log for what clients do not see (unexpected errors with their stack). Default stderr. */
  readonly log?: (line: string) => void;
}

/** {@link ServerOptions} with every default applied. */
export interface ResolvedOptions {
  readonly transport: TransportFactory;
  readonly auth: TokenCheck | undefined;
  readonly message: Partial<MessageTemplate> | undefined;
  readonly maxBodyBytes: number;
  readonly maxMessageBytes: number;
  readonly maxRuns: number;
  readonly progressIntervalMs: number;
  readonly bodyIdleTimeoutMs: number;
  readonly idempotency: IdempotencyStore | undefined;
  readonly run: RunDefaults;
  readonly metrics: ServerMetrics;
  readonly log: (line: string) => void;
}

/** Check and complete the options. Throws `TypeError`/`RangeError` for bad ones. */
export function resolveOptions(o: ServerOptions): ResolvedOptions {
  if (o === null || typeof o !== "object") {
    throw new TypeError("createApp() needs an options object");
  }
  if (
    !o.transport || typeof o.transport.create !== "function" || typeof o.transport.name !== "string"
  ) {
    throw new TypeError("Option transport must be { name, create() }");
  }
  const auth = o.auth ?? "bearer";
  if (auth !== "bearer" && auth !== "none") {
    throw new TypeError(`Invalid auth ${JSON.stringify(auth)}: use "bearer" or "none"`);
  }
  let check: TokenCheck | undefined;
  if (auth === "bearer") {
    if (typeof o.token !== "string" || o.token === "") {
      throw new TypeError(
        'The server needs a bearer token (option token), or auth: "none" on a loopback address',
      );
    }
    check = new TokenCheck(o.token);
  } else if (o.token !== undefined) {
    throw new TypeError('Give either a token or auth: "none", not both');
  }
  return {
    transport: o.transport,
    auth: check,
    message: o.message,
    maxBodyBytes: whole("maxBodyBytes", o.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES, 0),
    maxMessageBytes: whole("maxMessageBytes", o.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES, 1),
    maxRuns: whole("maxRuns", o.maxRuns ?? 4, 1),
    progressIntervalMs: whole("progressIntervalMs", o.progressIntervalMs ?? 1000, 1),
    bodyIdleTimeoutMs: whole("bodyIdleTimeoutMs", o.bodyIdleTimeoutMs ?? 60_000, 1),
    idempotency: o.idempotency,
    run: o.run ?? {},
    metrics: o.metrics ?? new ServerMetrics(),
    log: o.log ?? ((line) => console.error(line)),
  };
}

function whole(name: string, value: number, min: number): number {
  if (!Number.isSafeInteger(value) || value < min) {
    throw new RangeError(`Invalid ${name} ${value}: use a whole number >= ${min}`);
  }
  return value;
}

/** A run the service tracks until it ends. */
export interface ActiveRun {
  /** Stop taking rows; let in-flight messages finish. */
  stop(): void;
  /** Stop at once: in-flight sends are aborted (they are sent again on a resume). */
  abort(): void;
  /** Resolves when the run has ended and cleaned up. */
  readonly ended: Promise<void>;
}

/** Shared state of one app: options, metrics, run slots, shutdown. */
export class MailerService {
  /** The resolved options. */
  readonly options: ResolvedOptions;
  readonly #runs = new Set<ActiveRun>();
  #reserved = 0;
  #closing = false;

  /** Resolve `options` (throws for bad ones). */
  constructor(options: ServerOptions) {
    this.options = resolveOptions(options);
  }

  /** The metrics registry. */
  get metrics(): ServerMetrics {
    return this.options.metrics;
  }

  /** Campaigns running now. */
  get activeRuns(): number {
    return this.#reserved;
  }

  /** True once {@link shutdown} was called. */
  get closing(): boolean {
    return this.#closing;
  }

  /**
   * Reserve a run slot; throws 429 `busy` when all are taken and 503
   * `shutting_down` after shutdown. Call the returned function to free it.
   */
  reserve(): () => void {
    if (this.#closing) {
      throw new HttpError("shutting_down", "The server is shutting down; try another instance");
    }
    if (this.#reserved >= this.options.maxRuns) {
      throw new HttpError(
        "busy",
        `The server already runs ${this.options.maxRuns} campaigns; try again later`,
        { headers: { "retry-after": "5" } },
      );
    }
    this.#reserved++;
    let freed = false;
    return () => {
      if (!freed) {
        freed = true;
        this.#reserved--;
      }
    };
  }

  /** Track a run until it ends; a shutdown stops it. */
  track(run: ActiveRun): void {
    this.#runs.add(run);
    run.ended.finally(() => this.#runs.delete(run));
    if (this.#closing) run.stop();
  }

  /**
   * Refuse new runs, stop every running one (in-flight messages finish and
   * are recorded) and resolve when all have ended.
   */
  async shutdown(): Promise<void> {
    this.#closing = true;
    const runs = [...this.#runs];
    for (const run of runs) run.stop();
    await Promise.allSettled(runs.map((r) => r.ended));
  }

  /** Like {@link shutdown}, but abort in-flight sends instead of waiting for them. */
  async abort(): Promise<void> {
    this.#closing = true;
    const runs = [...this.#runs];
    for (const run of runs) run.abort();
    await Promise.allSettled(runs.map((r) => r.ended));
  }
}
