/**
 * Worker entry of {@link ParallelRecipientReader} (`parallel_reader.ts`): runs
 * the ordinary {@link RecipientReader} on bytes the main thread sends, and
 * posts each batch back in the compact form of `row_codec.ts`.
 *
 * Protocol (main -> worker): `start` (the options), then one `chunk`, `end` or
 * `fail` (the input threw; the main thread keeps the error) per `read` the
 * worker asked for, and `more` each time the consumer took a batch.
 * Worker -> main: `read` (send one more input chunk), `rows` (a batch; the
 * first `rows`, `done` or `error` also carries the header facts), `done`,
 * `error` (class name and message; `input` when it is the input's own error).
 *
 * Flow control: at most `INPUT_AHEAD` input chunks asked for or held, and at
 * most `BATCHES_AHEAD` batches posted that the consumer has not taken yet;
 * the reader is not pulled further until one is taken. (Measured: 2 and 3
 * left the worker waiting more often when the main thread is busy.)
 *
 * @module
 */

import { type RecipientOptions, RecipientReader } from "./recipients.ts";
import { encodeRows, type FromWorker, type Meta, type ToWorker } from "./row_codec.ts";

/** The worker's global scope, as far as this module uses it. */
const scope = globalThis as unknown as {
  postMessage(message: FromWorker, transfer: Transferable[]): void;
  onmessage: ((event: MessageEvent<ToWorker>) => void) | null;
};

/** Input chunks asked for or held by the worker at most. */
const INPUT_AHEAD = 4;
/** Batches posted but not yet taken by the consumer, at most. */
const BATCHES_AHEAD = 4;

/** Stands in for the input's error, which stays on the main thread. */
class InputFailed extends Error {}

const END = Symbol("end");
const FAIL = Symbol("fail");
type Slot = Uint8Array | typeof END | typeof FAIL;

const chunks: Slot[] = [];
let chunkWaiter: ((slot: Slot) => void) | undefined;
/** `read` requests not yet answered. */
let asked = 0;
/** The input ended (or failed): ask for nothing more. */
let over = false;
let credit = BATCHES_AHEAD;
let creditWaiter: (() => void) | undefined;
let started = false;

function post(message: FromWorker, transfer: Transferable[] = []): void {
  scope.postMessage(message, transfer);
}

/** Ask for input until INPUT_AHEAD chunks are asked for or held. */
function askForInput(): void {
  while (!over && asked + chunks.length < INPUT_AHEAD) {
    asked++;
    post({ t: "read" });
  }
}

function deliver(slot: Slot): void {
  asked--;
  if (slot === END || slot === FAIL) over = true;
  if (chunkWaiter !== undefined) {
    const w = chunkWaiter;
    chunkWaiter = undefined;
    w(slot);
  } else chunks.push(slot);
}

/** The reader's input: the chunks the main thread sends, in order. */
async function* input(): AsyncGenerator<Uint8Array> {
  for (;;) {
    const slot = chunks.length > 0
      ? chunks.shift()!
      : await new Promise<Slot>((resolve) => chunkWaiter = resolve);
    askForInput();
    if (slot === END) return;
    if (slot === FAIL) throw new InputFailed("The input failed");
    yield slot;
  }
}

function meta(reader: RecipientReader): Meta {
  return {
    columns: [...reader.columns],
    hasHeader: reader.hasHeader,
    addressColumn: reader.addressColumn,
  };
}

async function run(opts: RecipientOptions): Promise<void> {
  let reader: RecipientReader | undefined;
  let sentMeta = false;
  const first = (): Meta | undefined => {
    if (sentMeta || reader === undefined) return undefined;
    sentMeta = true;
    return meta(reader);
  };
  try {
    reader = new RecipientReader(input(), opts);
    askForInput();
    for await (const batch of reader) {
      if (credit === 0) await new Promise<void>((resolve) => creditWaiter = resolve);
      credit--;
      const rows = encodeRows(batch, reader.addressColumn);
      post({ t: "rows", rows, meta: first() }, [rows.ends.buffer, rows.rows.buffer]);
    }
    post({ t: "done", meta: first() });
  } catch (e) {
    const error = e instanceof Error ? e : new Error(String(e));
    post({
      t: "error",
      name: error.name,
      message: error.message,
      input: e instanceof InputFailed,
      meta: first(),
    });
  }
}

scope.onmessage = (event: MessageEvent<ToWorker>) => {
  const m = event.data;
  switch (m.t) {
    case "start":
      if (!started) {
        started = true;
        void run(m.opts);
      }
      break;
    case "chunk":
      deliver(m.bytes);
      break;
    case "end":
      deliver(END);
      break;
    case "fail":
      deliver(FAIL);
      break;
    case "more":
      credit++;
      if (creditWaiter !== undefined) {
        const w = creditWaiter;
        creditWaiter = undefined;
        w();
      }
      break;
  }
};
