/**
 * The ledger: a durable, append-only record of every row's final outcome,
 * written as the run goes. It is also the per-row report users open.
 *
 * ## The file
 *
 * A CSV file with a header row, one record per line:
 *
 * ```text
 * line,address,status,code,reason,attempts,time,id,failure
 * 0,,meta,ledger/1,"{""campaign"":""3f9c0a1b2d4e"",...}",0,2026-01-05T09:00:00.000Z,3f9c0a1b2d4e,
 * 2,ann@example.com,sent,,250 2.0.0 OK,1,2026-01-05T09:00:01.234Z,<queue id>,
 * 3,not-an-address,invalid,syntax,missing @,0,2026-01-05T09:00:01.234Z,,
 * 4,bob@example.com,retry,4.7.1,451 4.7.1 try later; retry in 812 ms,1,2026-01-05T09:00:01.240Z,,
 * 4,bob@example.com,failed,4.7.1,451 4.7.1 try later (after 5 attempts),5,2026-01-05T09:01:02.000Z,,transient
 * ```
 *
 * - `status` is a final state (`sent`, `failed`, `invalid`, `duplicate`,
 *   `suppressed`), or `retry` for a transient failure that was retried (the
 *   transient history; not final), or `meta` on line 0 (one per run: format
 *   version in `code`, the fingerprints and the campaign id as JSON in
 *   `reason`).
 * - `failure` says, for a failed row, whether its last answer was `permanent`
 *   or `transient` (out of attempts): `--retry-failed` sends the latter again.
 * - The last record of a line wins (a row sent again after `--retry-failed`).
 * - `time` is the wall-clock time (UTC) the outcome was recorded.
 * - Fields are quoted as RFC 4180 says when they hold `,` or `"`; CR and LF in
 *   a field are written as spaces, so every record is exactly one line. A
 *   field that a spreadsheet would run as a formula (it starts with `=`, `+`,
 *   `-`, `@` or a tab, after any `'`) gets one `'` in front, which reading
 *   takes off again.
 *
 * ## Durability
 *
 * Records are appended to a string and written with one `write` at the end of
 * the current task (a microtask), so an outcome reaches the operating system
 * before the engine can dispatch anything else: a kill -9 loses only messages
 * in flight, which are sent again on resume. `fdatasync` runs at checkpoints:
 * at least every `syncIntervalMs` (1 s) or `syncEveryRecords` records, after
 * the meta record, and on {@link Ledger.sync} and {@link Ledger.close}, so a
 * power loss loses at most about a second. A torn last record (a crash in the
 * middle of a write) is dropped when the ledger is opened again.
 *
 * ## Resume
 *
 * {@link openLedger} reads the file into two arrays indexed by line (a status
 * byte and a 53-bit hash of the address: 9 bytes per line), checks the
 * fingerprints of the input and the template against the last meta record,
 * and takes the lock `<path>.lock`. {@link Ledger.previous} then tells the
 * engine which rows are done, and checks every row's address against the hash
 * recorded for its line, so a changed input that could not be hashed up front
 * (stdin, a request body) is caught too. With `force`, a changed input is
 * accepted and rows are matched by address instead of line: an address that
 * was sent (or failed, or suppressed) in any earlier run is not sent again
 * wherever it moved, and its new line gets a record saying so. The addresses
 * are then kept as a hash set of every such record (not just the last record
 * of each line, which a new address on the line replaces).
 *
 * Message-IDs are `<campaign.line@domain>`, so a line must keep its address
 * for as long as a campaign id is used. A forced run that accepts a changed
 * input (or one that cannot be fingerprinted) therefore gets a new campaign
 * id (`<first id>-f<run>`), and later runs keep the id of the last run. Lines
 * whose last record was made under an older campaign id are stale: a plain
 * resume matches them by address, like `force`, never by line.
 *
 * @module
 */
import { dedupeKey } from "./address.ts";
import type { CampaignOptions, CampaignStart } from "./campaign.ts";
import type { Clock } from "./clock.ts";
import { hashAddress } from "./fingerprint.ts";
import { acquireLock, type FileLock, hostName, type LockHolder, type LockOptions } from "./lock.ts";
import type { RetryResult, RowOutcome, RowStatus } from "./types.ts";
import {
  LEDGER_FORMAT,
  LEDGER_HEADER,
  LedgerError,
  type LedgerMeta,
  type LedgerRecord,
  MAX_LINE,
  parseMeta,
  readLedger,
  RecordBuffer,
} from "./ledger_format.ts";

export {
  csvField,
  LEDGER_FORMAT,
  LEDGER_HEADER,
  LedgerError,
  type LedgerFileInfo,
  type LedgerMeta,
  type LedgerRecord,
  readLedger,
  splitRecord,
} from "./ledger_format.ts";

/** Which failed rows `retryFailed` sends again. */
export type RetryFailed = "transient" | "all";

/** Options of {@link openLedger}. Every field has a default. */
export interface LedgerOptions {
  /**
   * What this run is made from (see `fingerprint.ts`). Each one given is
   * compared with the one the ledger recorded last; a difference refuses the
   * open unless `force`. An input without a fingerprint (stdin) is checked row
   * by row instead.
   */
  readonly fingerprint?: { readonly input?: string; readonly template?: string };
  /** Accept a changed input or template; rows are then matched by address. Default false. */
  readonly force?: boolean;
  /** Send failed rows again: `"transient"` (out of retries) or `"all"`. Default: none. */
  readonly retryFailed?: RetryFailed;
  /**
   * Campaign id of a new ledger (it makes Message-IDs); default 12 random hex
   * digits. An existing ledger keeps its own, except that a forced run on a
   * changed input derives a new one from it.
   */
  readonly campaignId?: string;
  /** Take the lock file `<path>.lock` (options for it, or false for none). Default true. */
  readonly lock?: boolean | LockOptions;
  /** Wall clock for the `time` column, in epoch ms. Default `Date.now`. */
  readonly now?: () => number;
  /** fdatasync at least this often while records are written, in ms. Default 1000. */
  readonly syncIntervalMs?: number;
  /** ...or after this many records. Default 100000. */
  readonly syncEveryRecords?: number;
  /** How far back {@link Ledger.sendTimes} looks, in ms. Default 24 h. */
  readonly historyMs?: number;
  /** Called once when a write fails (disk full, file removed); the run should stop. */
  readonly onError?: (error: LedgerError) => void;
  /** Extra JSON-serialisable facts for this run's meta record (e.g. the transport). */
  readonly info?: Readonly<Record<string, unknown>>;
}

/** Rows of a ledger by their latest final status, and the transient history. */
export interface LedgerCounts {
  sent: number;
  failed: number;
  /** Of `failed`: rows whose last answer was transient (out of retries). */
  failedTransient: number;
  invalid: number;
  duplicate: number;
  suppressed: number;
  /** `retry` records: transient failures that were retried. */
  retries: number;
}

/** The campaign options a ledger fills in (see {@link Ledger.hooks}). */
export type LedgerHooks = Required<
  Pick<
    CampaignOptions,
    "previous" | "onOutcome" | "onRetry" | "onStart" | "rateHistory" | "compose"
  >
>;

/** An open ledger: the resume state of earlier runs and the writer of this one. */
export interface Ledger {
  /** The ledger file. */
  readonly path: string;
  /**
   * The campaign id for this run's Message-IDs (pass it to the composer): the
   * last run's, or a new one when a forced run accepts a changed input, so a
   * Message-ID never names two addresses.
   */
  readonly campaignId: string;
  /** True when earlier runs recorded at least one final outcome. */
  readonly resumed: boolean;
  /** Counts of earlier runs (latest record per line). */
  readonly before: Readonly<LedgerCounts>;
  /** The last meta record of earlier runs, if any. */
  readonly meta: LedgerMeta | undefined;
  /** The holder of a stale lock this open took over (a process that died). */
  readonly tookOver: LockHolder | undefined;
  /** The write error that stopped the ledger, if one happened. */
  readonly error: LedgerError | undefined;
  /** Counts over every run so far, this one included (latest record per line), as `report` prints them. */
  counts(): LedgerCounts;
  /**
   * The earlier final status of the row on `line` with `address`, or undefined
   * when it is to be sent (no final record, or a failure `retryFailed` asks
   * for). Throws a `changed` {@link LedgerError} when the line recorded another
   * address (unless `force`).
   */
  previous(line: number, address: string): RowStatus | undefined;
  /** Check the input's columns and write this run's meta record; call before the first outcome. */
  begin(start: Pick<CampaignStart, "columns">): void;
  /** Append one final outcome. Never throws: a write error goes to `onError` and {@link Ledger.error}. */
  record(outcome: RowOutcome, transient?: boolean): void;
  /** Append one transient failure that will be retried (the transient history). */
  recordRetry(
    line: number,
    attempt: number,
    result: RetryResult,
    delayMs: number,
    address?: string,
  ): void;
  /**
   * Times of send attempts recorded within `historyMs`, oldest first, for the
   * rate limiter's `seed`. In epoch ms, or on `clock` when given (for an engine
   * whose clock is not the wall clock).
   */
  sendTimes(clock?: Pick<Clock, "now">): number[];
  /** The engine hooks: previous, onOutcome, onRetry, onStart, rateHistory and compose.campaignId. */
  hooks(clock?: Pick<Clock, "now">): LedgerHooks;
  /** Write what is buffered and fdatasync it. */
  sync(): Promise<void>;
  /** Write, fdatasync, close the file and release the lock. Safe to call twice. */
  close(): Promise<void>;
}

// Status bytes of the per-line array.
const NONE = 0;
const SENT = 1;
const FAILED = 2;
const FAILED_TRANSIENT = 3;
const INVALID = 4;
const DUPLICATE = 5;
const SUPPRESSED = 6;

const STATUS_CODE: Readonly<Record<string, number>> = {
  sent: SENT,
  failed: FAILED,
  invalid: INVALID,
  duplicate: DUPLICATE,
  suppressed: SUPPRESSED,
};
const STATUS_NAME: readonly (RowStatus | undefined)[] = [
  undefined,
  "sent",
  "failed",
  "failed",
  "invalid",
  "duplicate",
  "suppressed",
];

const CAMPAIGN_ID = /^[A-Za-z0-9._-]{1,64}$/;
const DAY_MS = 86_400_000;

/** Per-line state of a ledger: latest final status and address hash, in growable arrays. */
class LineTable {
  status = new Uint8Array(1024);
  hashes = new Float64Array(1024);
  /**
   * 1 for a line whose latest record was made under an older campaign id (an
   * earlier input); made only when the campaign id changed.
   */
  stale: Uint8Array | undefined;
  maxLine = 0;

  set(line: number, status: number, hash: number): void {
    if (line >= this.status.length) {
      let size = this.status.length;
      while (size <= line) size *= 2;
      const s = new Uint8Array(size);
      s.set(this.status);
      this.status = s;
      const h = new Float64Array(size);
      h.set(this.hashes);
      this.hashes = h;
      if (this.stale !== undefined) {
        const k = new Uint8Array(size);
        k.set(this.stale);
        this.stale = k;
      }
    }
    this.status[line] = status;
    this.hashes[line] = hash;
    if (this.stale !== undefined) this.stale[line] = 0;
    if (line > this.maxLine) this.maxLine = line;
  }

  /** Mark every line recorded so far as stale (a new campaign id begins). */
  markStale(): void {
    this.stale ??= new Uint8Array(this.status.length);
    for (let i = 1; i <= this.maxLine; i++) if (this.status[i] !== NONE) this.stale[i] = 1;
  }

  /** True when `line`'s latest record belongs to the current campaign id (or there is none). */
  current(line: number): boolean {
    return this.stale === undefined || line > this.maxLine || this.stale[line] === 0;
  }

  counts(): LedgerCounts {
    const c: LedgerCounts = {
      sent: 0,
      failed: 0,
      failedTransient: 0,
      invalid: 0,
      duplicate: 0,
      suppressed: 0,
      retries: 0,
    };
    for (let i = 1; i <= this.maxLine; i++) bump(c, this.status[i], 1);
    return c;
  }
}

/**
 * A compact map from a 53-bit address-key hash to the latest mailed status of
 * that address in any earlier run and the line it was recorded on (13 bytes a
 * slot, at most half full): every address ever sent, failed or suppressed.
 */
class KeyTable {
  #keys = new Float64Array(1024);
  #lines = new Uint32Array(1024);
  #status = new Uint8Array(1024);
  #mask = 1023;
  #size = 0;

  #slot(key: number): number {
    let i = (key % 4294967296) & this.#mask;
    while (this.#lines[i] !== 0 && this.#keys[i] !== key) i = (i + 1) & this.#mask;
    return i;
  }

  /**
   * Record that `key` got `status` on `line`. A later record wins (a failed
   * address sent by `--retry-failed`), except that a sent address stays sent.
   */
  add(key: number, line: number, status: number): void {
    const i = this.#slot(key);
    if (this.#lines[i] !== 0) {
      if (this.#status[i] === SENT && status !== SENT) return;
      this.#lines[i] = line;
      this.#status[i] = status;
      return;
    }
    if ((this.#size + 1) * 2 > this.#keys.length) {
      this.#grow();
      this.add(key, line, status);
      return;
    }
    this.#keys[i] = key;
    this.#lines[i] = line;
    this.#status[i] = status;
    this.#size++;
  }

  /**
   * `line * 8 + status` of `key` (0 when absent), then forget it, so a second
   * row with the key (a duplicate in the new input) is not matched.
   */
  take(key: number): number {
    const i = this.#slot(key);
    const line = this.#lines[i];
    if (line === 0 || line === MAX_LINE) return 0;
    this.#lines[i] = MAX_LINE; // Tombstone: matched once.
    return line * 8 + this.#status[i];
  }

  #grow(): void {
    const keys = this.#keys;
    const lines = this.#lines;
    const status = this.#status;
    this.#keys = new Float64Array(keys.length * 2);
    this.#lines = new Uint32Array(keys.length * 2);
    this.#status = new Uint8Array(keys.length * 2);
    this.#mask = keys.length * 2 - 1;
    this.#size = 0;
    for (let i = 0; i < keys.length; i++) {
      if (lines[i] !== 0) this.add(keys[i], lines[i], status[i]);
    }
  }
}

function bump(c: LedgerCounts, status: number, by: number): void {
  switch (status) {
    case SENT:
      c.sent += by;
      break;
    case FAILED:
      c.failed += by;
      break;
    case FAILED_TRANSIENT:
      c.failed += by;
      c.failedTransient += by;
      break;
    case INVALID:
      c.invalid += by;
      break;
    case DUPLICATE:
      c.duplicate += by;
      break;
    case SUPPRESSED:
      c.suppressed += by;
  }
}

function randomCampaignId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function sameColumns(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((c, i) => c === b[i]);
}

/**
 * Open (or create) the ledger at `path` for a run: take its lock, read what
 * earlier runs recorded, check the fingerprints, and open it for appending.
 *
 * Throws {@link LedgerError} (`changed` without `force`, `foreign`,
 * `corrupt`, `io`) or a `LockError` when another live process holds it.
 *
 * @example
 * ```ts
 * import { openLedger } from "./ledger.ts";
 * const dir = await Deno.makeTempDir();
 * const ledger = await openLedger(`${dir}/report.csv`, { fingerprint: { template: "t1" } });
 * ledger.begin({ columns: ["email"] });
 * ledger.record({ line: 2, address: "ann@example.com", status: "sent", code: "", reason: "", attempts: 1 });
 * await ledger.close();
 * const again = await openLedger(`${dir}/report.csv`, { fingerprint: { template: "t1" } });
 * if (again.previous(2, "ann@example.com") !== "sent") throw new Error("line 2 is done");
 * await again.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function openLedger(path: string, options: LedgerOptions = {}): Promise<Ledger> {
  const syncIntervalMs = options.syncIntervalMs ?? 1000;
  const syncEveryRecords = options.syncEveryRecords ?? 100_000;
  const historyMs = options.historyMs ?? DAY_MS;
  if (!(syncIntervalMs > 0) || !(syncEveryRecords >= 1) || !(historyMs >= 0)) {
    throw new RangeError(
      "Invalid ledger options: syncIntervalMs and syncEveryRecords must be > 0, historyMs >= 0",
    );
  }
  if (options.retryFailed !== undefined && !["transient", "all"].includes(options.retryFailed)) {
    throw new RangeError(
      `Invalid retryFailed ${JSON.stringify(options.retryFailed)}: use "transient" or "all"`,
    );
  }
  if (options.campaignId !== undefined && !CAMPAIGN_ID.test(options.campaignId)) {
    throw new TypeError(
      `Invalid campaignId ${
        JSON.stringify(options.campaignId)
      }: use 1 to 64 letters, digits, ".", "_" or "-"`,
    );
  }
  const lockOptions = options.lock === false
    ? undefined
    : { what: `The report ${path}`, ...(typeof options.lock === "object" ? options.lock : {}) };
  const lock = lockOptions === undefined
    ? undefined
    : await acquireLock(`${path}.lock`, lockOptions);
  try {
    return await load(path, options, lock, { syncIntervalMs, syncEveryRecords, historyMs });
  } catch (error) {
    await lock?.release();
    throw error;
  }
}

interface Timing {
  readonly syncIntervalMs: number;
  readonly syncEveryRecords: number;
  readonly historyMs: number;
}

async function load(
  path: string,
  options: LedgerOptions,
  lock: FileLock | undefined,
  timing: Timing,
): Promise<Ledger> {
  const now = options.now ?? Date.now;
  const force = options.force === true;
  const table = new LineTable();
  // With force, every mailed address of every run, gathered in the same pass.
  let keys = force ? new KeyTable() : undefined;
  const campaigns = new Set<string>();
  let forcedBefore = false;
  const cutoff = now() - timing.historyMs;
  const cutoffIso = new Date(Math.max(0, cutoff)).toISOString();
  const times: number[] = [];
  let lastTimeText = "";
  let lastTime = 0;
  let meta: LedgerMeta | undefined;
  let firstMeta: LedgerMeta | undefined;
  let runs = 0;
  let retries = 0;
  const info = await readLedger(path, (r) => {
    if (r.status === "meta") {
      const m = parseMeta(r);
      if (m !== undefined) {
        // Records made under an older campaign id belong to an earlier input.
        if (meta !== undefined && m.campaign !== meta.campaign) table.markStale();
        meta = m;
        firstMeta ??= m;
        campaigns.add(m.campaign);
        if (m.forced === true) forcedBefore = true;
        runs++;
      }
      return;
    }
    if (r.attempts > 0 && r.time >= cutoffIso) {
      if (r.time !== lastTimeText) {
        lastTimeText = r.time;
        lastTime = Date.parse(r.time);
      }
      if (!Number.isNaN(lastTime)) times.push(lastTime);
    }
    if (r.status === "retry") {
      retries++;
      return;
    }
    const code = statusCode(r);
    table.set(r.line, code, hashAddress(r.address));
    if (keys !== undefined) addKey(keys, r.line, r.address, code);
  });

  const before = table.counts();
  before.retries = retries;
  const resumed = table.maxLine > 0;
  const recorded = meta as LedgerMeta | undefined;
  const fp = options.fingerprint ?? {};
  if (recorded !== undefined && !force) {
    if (fp.input !== undefined && recorded.input !== undefined && fp.input !== recorded.input) {
      throw new LedgerError(
        "changed",
        path,
        `The input changed since the report ${path} was written (${
          describeFingerprint(recorded.input)
        } ` +
          `then, ${
            describeFingerprint(fp.input)
          } now): resume is refused so that no row is skipped or ` +
          `mailed twice. Restore the input, or rerun with --force to continue with this one ` +
          `(rows are then matched to the report by address), or use another --report file`,
      );
    }
    if (
      fp.template !== undefined && recorded.template !== undefined &&
      fp.template !== recorded.template
    ) {
      throw new LedgerError(
        "changed",
        path,
        `The message or the recipient options changed since the report ${path} was written: resume is ` +
          `refused so that every recipient gets the same message. Restore them, or rerun with --force ` +
          `to send the new message to the rows not done yet, or use another --report file`,
      );
    }
  }

  if (keys === undefined && (forcedBefore || table.stale !== undefined)) {
    // A plain resume after a forced run: lines the forced run did not reach may hold addresses
    // mailed under the older input, so they are matched by address (a second pass, rare).
    const k = new KeyTable();
    await readLedger(path, (r) => {
      if (r.status !== "meta" && r.status !== "retry") addKey(k, r.line, r.address, statusCode(r));
    });
    keys = k;
  }

  let file: Deno.FsFile;
  try {
    if (info.exists && info.goodBytes < info.size) await Deno.truncate(path, info.goodBytes);
    file = await Deno.open(path, { append: true, create: true });
  } catch (error) {
    throw new LedgerError(
      "io",
      path,
      `Cannot write the report ${path}: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
  const campaignId = recorded === undefined
    ? options.campaignId ?? randomCampaignId()
    : force && inputChanged(fp.input, recorded.input)
    ? newCampaignId(
      (firstMeta as LedgerMeta | undefined)?.campaign ?? recorded.campaign,
      runs + 1,
      campaigns,
    )
    : recorded.campaign;
  const writer = new LedgerWriter(path, file, lock, options, timing, {
    table,
    keys,
    before,
    meta: recorded,
    runs,
    resumed,
    campaignId,
    times,
  });
  if (!info.exists || info.goodBytes === 0) writer.writeHeader();
  return writer;
}

/** The status byte of a final record. */
function statusCode(r: LedgerRecord): number {
  const code = STATUS_CODE[r.status];
  return code === FAILED && r.failure === "transient" ? FAILED_TRANSIENT : code;
}

/** Add a mailed (sent, failed, suppressed) record's address to `keys`; invalid and duplicate rows are classified again. */
function addKey(keys: KeyTable, line: number, address: string, code: number): void {
  if (code === INVALID || code === DUPLICATE || code === NONE) return;
  keys.add(hashAddress(dedupeKey(address)), line, code);
}

/** True unless both fingerprints are known and equal (lines may hold other addresses now). */
function inputChanged(now: string | undefined, then: string | undefined): boolean {
  return now === undefined || then === undefined || now !== then;
}

/** `<first>-f<run>`, within 64 characters and unlike every campaign id the ledger used. */
function newCampaignId(first: string, run: number, used: ReadonlySet<string>): string {
  const suffix = `-f${run}`;
  let id = first.slice(0, 64 - suffix.length) + suffix;
  while (used.has(id)) id = randomCampaignId();
  return id;
}

function describeFingerprint(fp: string): string {
  const m = /^sha256:([0-9a-f]{12})[0-9a-f]*:(\d+)$/.exec(fp);
  return m ? `${Number(m[2]).toLocaleString("en-US")} bytes, sha256 ${m[1]}...` : fp;
}

interface LoadedState {
  readonly table: LineTable;
  readonly keys: KeyTable | undefined;
  readonly before: LedgerCounts;
  readonly meta: LedgerMeta | undefined;
  readonly runs: number;
  readonly resumed: boolean;
  readonly campaignId: string;
  readonly times: number[];
}

const encoder = new TextEncoder();

class LedgerWriter implements Ledger {
  readonly path: string;
  readonly campaignId: string;
  readonly resumed: boolean;
  readonly before: Readonly<LedgerCounts>;
  readonly meta: LedgerMeta | undefined;
  readonly tookOver: LockHolder | undefined;
  error: LedgerError | undefined;
  readonly #file: Deno.FsFile;
  readonly #lock: FileLock | undefined;
  readonly #o: LedgerOptions;
  readonly #timing: Timing;
  readonly #state: LoadedState;
  readonly #now: () => number;
  readonly #retryTransient: boolean;
  readonly #retryAll: boolean;
  readonly #force: boolean;
  readonly #buffer = new RecordBuffer();
  #scheduled = false;
  #isoBytes = new Uint8Array(0);
  #unsynced = 0;
  #lastSync = 0;
  #syncing: Promise<void> | undefined;
  #syncTimer: ReturnType<typeof setTimeout> | undefined;
  #counts: LedgerCounts;
  #begun = false;
  #created = false;
  #closed = false;
  #closing: Promise<void> | undefined;

  constructor(
    path: string,
    file: Deno.FsFile,
    lock: FileLock | undefined,
    options: LedgerOptions,
    timing: Timing,
    state: LoadedState,
  ) {
    this.path = path;
    this.#file = file;
    this.#lock = lock;
    this.#o = options;
    this.#timing = timing;
    this.#state = state;
    this.campaignId = state.campaignId;
    this.resumed = state.resumed;
    this.before = Object.freeze({ ...state.before });
    this.#counts = { ...state.before };
    this.meta = state.meta;
    this.tookOver = lock?.tookOver;
    this.#now = options.now ?? Date.now;
    this.#retryTransient = options.retryFailed !== undefined;
    this.#retryAll = options.retryFailed === "all";
    this.#force = options.force === true;
    this.#lastSync = this.#now();
  }

  /** Write the header of a new ledger; a ledger that gets nothing more is removed on close. */
  writeHeader(): void {
    this.#created = true;
    this.#buffer.room(LEDGER_HEADER.length + 1);
    this.#buffer.ascii(LEDGER_HEADER + "\n");
    this.#flush();
  }

  previous(line: number, address: string): RowStatus | undefined {
    const { table, keys } = this.#state;
    if (keys !== undefined && (this.#force || !table.current(line) || line > table.maxLine)) {
      return this.#previousByAddress(line, address, keys);
    }
    if (line > table.maxLine) return undefined;
    const s = table.status[line];
    if (s === NONE) {
      return keys === undefined ? undefined : this.#previousByAddress(line, address, keys);
    }
    if (table.hashes[line] !== hashAddress(address)) {
      throw new LedgerError(
        "changed",
        this.path,
        `Line ${line} of the input holds another address than the report ${this.path} recorded for it: ` +
          `the input changed since the last run. Restore it, or rerun with --force to match rows ` +
          `to the report by address, or use another --report file`,
        { line },
      );
    }
    // Matched by line: a later row with the same address (a duplicate) must not match it again.
    keys?.take(hashAddress(dedupeKey(address)));
    if (s === FAILED_TRANSIENT ? this.#retryTransient : s === FAILED && this.#retryAll) {
      return undefined;
    }
    return STATUS_NAME[s];
  }

  /**
   * Match a row by address against every address mailed in earlier runs (with
   * force, and for stale lines); a match on another line, or on a line recorded
   * under an older campaign id, gets a record on this line.
   */
  #previousByAddress(line: number, address: string, keys: KeyTable): RowStatus | undefined {
    const found = keys.take(hashAddress(dedupeKey(address)));
    if (found === 0) return undefined;
    const from = Math.floor(found / 8);
    const s = found % 8;
    if (s === FAILED_TRANSIENT ? this.#retryTransient : s === FAILED && this.#retryAll) {
      return undefined;
    }
    const status = STATUS_NAME[s]!;
    const { table } = this.#state;
    if (from !== line || table.hashes[line] !== hashAddress(address) || !table.current(line)) {
      this.#count(line, s);
      // Re-key the outcome to its new line, so later runs match by line again.
      this.#append(
        line,
        address,
        status,
        "",
        `Same address as line ${from} in an earlier run (the input changed)`,
        0,
        "",
        s === FAILED ? "permanent" : s === FAILED_TRANSIENT ? "transient" : "",
      );
    }
    return status;
  }

  begin(start: Pick<CampaignStart, "columns">): void {
    const recorded = this.#state.meta;
    if (
      !this.#force && recorded?.columns !== undefined &&
      !sameColumns(recorded.columns, start.columns)
    ) {
      throw new LedgerError(
        "changed",
        this.path,
        `The input's columns changed since the report ${this.path} was written ` +
          `(${recorded.columns.join(",") || "no header"} then, ${
            start.columns.join(",") || "no header"
          } now): ` +
          `restore the input, or rerun with --force, or use another --report file`,
      );
    }
    if (this.#begun) return;
    this.#begun = true;
    const fp = this.#o.fingerprint ?? {};
    const meta: LedgerMeta = {
      ...this.#o.info,
      campaign: this.campaignId,
      run: this.#state.runs + 1,
      ...(fp.input === undefined ? {} : { input: fp.input }),
      ...(fp.template === undefined ? {} : { template: fp.template }),
      columns: start.columns,
      ...(this.#force ? { forced: true } : {}),
      ...(this.#o.retryFailed === undefined ? {} : { retryFailed: this.#o.retryFailed }),
      pid: Deno.pid,
      host: hostName(),
    };
    this.#append(0, "", "meta", LEDGER_FORMAT, JSON.stringify(meta), 0, this.campaignId, "");
    this.#flush();
    this.#startSync();
  }

  record(o: RowOutcome, transient = false): void {
    const s = STATUS_CODE[o.status];
    this.#count(o.line, s === FAILED && transient ? FAILED_TRANSIENT : s);
    this.#append(
      o.line,
      o.address,
      o.status,
      o.code,
      o.reason,
      o.attempts,
      o.id ?? "",
      o.status === "failed" ? (transient ? "transient" : "permanent") : "",
    );
  }

  recordRetry(
    line: number,
    attempt: number,
    result: RetryResult,
    delayMs: number,
    address = "",
  ): void {
    this.#counts.retries++;
    this.#append(
      line,
      address,
      "retry",
      result.code,
      `${result.reason}; retry in ${Math.round(delayMs)} ms`,
      attempt,
      "",
      "",
    );
  }

  /**
   * Move `line` from its status before this run to `status` in the counts. The
   * engine gives each row one final outcome per run, and the table keeps the
   * earlier runs' state (a forced run still looks up old lines in it).
   */
  #count(line: number, status: number): void {
    const { table } = this.#state;
    if (line <= table.maxLine) bump(this.#counts, table.status[line], -1);
    bump(this.#counts, status, 1);
  }

  counts(): LedgerCounts {
    return { ...this.#counts };
  }

  #append(
    line: number,
    address: string,
    status: string,
    code: string,
    reason: string,
    attempts: number,
    id: string,
    failure: string,
  ): void {
    if (this.#closed || this.error !== undefined) return;
    const b = this.#buffer;
    if (b.length === 0) this.#isoBytes = encoder.encode(new Date(this.#now()).toISOString());
    b.room(80 + 3 * (address.length + code.length + reason.length + id.length));
    b.int(line);
    b.byte(44);
    b.field(address);
    b.byte(44);
    b.ascii(status);
    b.byte(44);
    b.field(code);
    b.byte(44);
    b.field(reason);
    b.byte(44);
    b.int(attempts);
    b.byte(44);
    b.bytes.set(this.#isoBytes, b.length);
    b.length += this.#isoBytes.length;
    b.byte(44);
    b.field(id);
    b.byte(44);
    b.ascii(failure);
    b.byte(10);
    this.#unsynced++;
    if (!this.#scheduled) {
      this.#scheduled = true;
      queueMicrotask(() => this.#flush());
    }
    if (b.length > (1 << 20)) this.#flush();
  }

  /** Write what is pending to the file (one write), and start a sync when a checkpoint is due. */
  #flush(): void {
    this.#scheduled = false;
    const b = this.#buffer;
    const written = b.length;
    if (written === 0 || this.error !== undefined) return;
    b.length = 0;
    try {
      let at = 0;
      while (at < written) at += this.#file.writeSync(b.bytes.subarray(at, written));
    } catch (error) {
      this.#fail(error);
      return;
    }
    if (
      this.#unsynced >= this.#timing.syncEveryRecords ||
      this.#now() - this.#lastSync >= this.#timing.syncIntervalMs
    ) {
      this.#startSync();
    } else if (this.#syncTimer === undefined) {
      const timer = setTimeout(() => {
        this.#syncTimer = undefined;
        this.#flush();
        this.#startSync();
      }, this.#timing.syncIntervalMs);
      Deno.unrefTimer(timer as unknown as number);
      this.#syncTimer = timer;
    }
  }

  #fail(error: unknown): void {
    if (this.error !== undefined) return;
    this.error = new LedgerError(
      "io",
      this.path,
      `Cannot write the report ${this.path}: ${(error as Error).message}; ` +
        `the run was stopped: fix this, then run the same command again to resume`,
      { cause: error },
    );
    this.#o.onError?.(this.error);
  }

  /** Start an fdatasync unless one is running. */
  #startSync(): void {
    if (this.#syncing !== undefined || this.#unsynced === 0 || this.error !== undefined) return;
    this.#unsynced = 0;
    this.#lastSync = this.#now();
    this.#syncing = this.#file.syncData().then(
      () => {
        this.#syncing = undefined;
      },
      (error) => {
        this.#syncing = undefined;
        this.#fail(error);
      },
    );
  }

  sendTimes(clock?: Pick<Clock, "now">): number[] {
    const times = [...this.#state.times].sort((a, b) => a - b);
    if (clock === undefined) return times;
    const shift = clock.now() - this.#now();
    return times.map((t) => t + shift);
  }

  hooks(clock?: Pick<Clock, "now">): LedgerHooks {
    return {
      previous: (line, address) => this.previous(line, address),
      onOutcome: (outcome, transient) => this.record(outcome, transient),
      onRetry: (line, attempt, result, delayMs, address) =>
        this.recordRetry(line, attempt, result, delayMs, address),
      onStart: (start) => this.begin(start),
      // Lazy: read only when the run has a rate limit to seed.
      rateHistory: { [Symbol.iterator]: () => this.sendTimes(clock)[Symbol.iterator]() },
      compose: { campaignId: this.campaignId },
    };
  }

  async sync(): Promise<void> {
    this.#flush();
    while (this.#syncing !== undefined) await this.#syncing;
    this.#startSync();
    while (this.#syncing !== undefined) await this.#syncing;
    if (this.error !== undefined) throw this.error;
  }

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    try {
      this.#flush();
      if (this.#syncTimer !== undefined) clearTimeout(this.#syncTimer);
      while (this.#syncing !== undefined) await this.#syncing;
      this.#unsynced = Math.max(this.#unsynced, 1);
      this.#startSync();
      while (this.#syncing !== undefined) await this.#syncing;
    } finally {
      this.#closed = true;
      try {
        this.#file.close();
      } catch {
        // Already closed.
      }
      // A run refused before it began (bad template, changed columns) leaves no empty report behind.
      if (this.#created && !this.#begun && this.error === undefined) {
        try {
          await Deno.remove(this.path);
        } catch {
          // Already gone, or not ours to remove any more.
        }
      }
      await this.#lock?.release();
    }
  }
}
