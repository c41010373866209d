import assert from "node:assert/strict";
import { BodyCutOffError, BodyIntake, type IntakeState } from "./body.ts";

const enc = new TextEncoder();

/**
 * A body of `pieces`; `end` says how it ends: closed, errored, or never. A
 * byte stream (as Deno's request bodies are) when `bytes`.
 */
function body(
  pieces: string[],
  end: "close" | "error" | "hang",
  bytes = false,
): ReadableStream<Uint8Array> {
  let i = 0;
  if (bytes) {
    return new ReadableStream({
      type: "bytes",
      pull(c) {
        if (i < pieces.length) c.enqueue(enc.encode(pieces[i++]));
        else if (end === "close") {
          c.close();
          c.byobRequest?.respond(0); // A pending BYOB read must be answered on close.
        } else if (end === "error") c.error(new Error("connection reset"));
        else return new Promise(() => {});
        return undefined;
      },
    }) as ReadableStream<Uint8Array>;
  }
  return new ReadableStream({
    pull(c) {
      if (i < pieces.length) c.enqueue(enc.encode(pieces[i++]));
      else if (end === "close") c.close();
      else if (end === "error") c.error(new Error("connection reset"));
      else return new Promise(() => {});
      return undefined;
    },
  });
}

/** Read chunks until the consumer would wait; returns the text, and whether/how the stream ended. */
async function consume(
  intake: BodyIntake,
  releaseAfterMs = 5,
): Promise<{ text: string; end: string }> {
  let text = "";
  const timer = setTimeout(() => intake.release(), releaseAfterMs);
  try {
    for await (const chunk of intake.chunks()) text += new TextDecoder().decode(chunk);
    return { text, end: "eof" };
  } catch (error) {
    return {
      text,
      end: error instanceof BodyCutOffError ? `cut:${error.state}` : `error:${error}`,
    };
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("BodyIntake ends the stream only for a complete body", async (t) => {
  const cases: {
    name: string;
    pieces: string[];
    end: "close" | "error" | "hang";
    expected?: number;
    max?: number;
    want: { text: string; end: string; state: IntakeState };
  }[] = [
    {
      name: "a closed body without Content-Length is complete, last line without newline included",
      pieces: ["email\na@example.com\n", "b@example.com"],
      end: "close",
      want: { text: "email\na@example.com\nb@example.com", end: "eof", state: "complete" },
    },
    {
      name: "a body of exactly Content-Length bytes is complete",
      pieces: ["ab", "cd"],
      end: "close",
      expected: 4,
      want: { text: "abcd", end: "eof", state: "complete" },
    },
    {
      name: "a body that ends short of Content-Length stalls, then throws (never EOF)",
      pieces: ["a@example.com\n", "b@example.co"],
      end: "close",
      expected: 40,
      want: { text: "a@example.com\nb@example.co", end: "cut:truncated", state: "truncated" },
    },
    {
      name: "a body whose stream fails (client died) stalls, then throws",
      pieces: ["a@example.com\n", "b@exa"],
      end: "error",
      want: { text: "a@example.com\nb@exa", end: "cut:truncated", state: "truncated" },
    },
    {
      name: "a body over the limit is cut at the chunk that passes it",
      pieces: ["12345", "67890", "abcde"],
      end: "close",
      max: 8,
      want: { text: "12345", end: "cut:too_large", state: "too_large" },
    },
    {
      name: "a body exactly at the limit is fine",
      pieces: ["1234", "5678"],
      end: "close",
      max: 8,
      want: { text: "12345678", end: "eof", state: "complete" },
    },
  ];
  for (const c of cases) {
    for (const bytes of [false, true]) {
      await t.step(
        `${c.name} (${bytes ? "byte stream" : "default stream"})`,
        async () => {
          const ends: string[] = [];
          const intake = new BodyIntake(body(c.pieces, c.end, bytes), {
            maxBytes: c.max ?? 1000,
            expectedBytes: c.expected,
            onEnd: (s) => ends.push(s),
          });
          const got = await consume(intake);
          assert.deepEqual({ ...got, state: intake.state }, c.want);
          assert.deepEqual(ends, [c.want.state]);
        },
      );
    }
  }
});

Deno.test("BodyIntake.stop() cancels the body and the reader stalls instead of ending", async () => {
  let cancelled = false;
  let i = 0;
  const source = new ReadableStream<Uint8Array>({
    pull(c) {
      if (i++ === 0) c.enqueue(enc.encode("a@example.com\nb@exam"));
      return i > 1 ? new Promise(() => {}) : undefined;
    },
    cancel() {
      cancelled = true;
    },
  });
  const intake = new BodyIntake(source, { maxBytes: 1000 });
  const it = intake.chunks();
  const first = await it.next();
  assert.equal(new TextDecoder().decode(first.value as Uint8Array), "a@example.com\nb@exam");
  const pending = it.next();
  intake.stop();
  assert.equal(intake.state, "stopped");
  assert.ok(cancelled, "the request body was cancelled");
  let settled = false;
  pending.then(() => settled = true, () => settled = true);
  await new Promise((r) => setTimeout(r, 5));
  assert.equal(settled, false, "a stopped body must not read as ended");
  intake.release();
  await assert.rejects(pending, BodyCutOffError);
});

Deno.test("BodyIntake reads a missing body as empty and complete", async () => {
  const intake = new BodyIntake(null, { maxBytes: 10 });
  assert.deepEqual(await consume(intake), { text: "", end: "eof" });
  assert.equal(intake.state, "complete");
});

Deno.test("BodyIntake refuses a second reader and bad limits", async () => {
  const intake = new BodyIntake(body([], "close"), { maxBytes: 1 });
  intake.chunks().next();
  await assert.rejects(() => intake.chunks().next(), /only once/);
  assert.throws(() => new BodyIntake(null, { maxBytes: -1 }), RangeError);
});

Deno.test("BodyIntake gives up on a client that sends nothing for idleTimeoutMs", async () => {
  let cancelled = false;
  let i = 0;
  const source = new ReadableStream<Uint8Array>({
    pull(c) {
      if (i++ === 0) c.enqueue(enc.encode("email\nuser1@example.com\n"));
      return i > 1 ? new Promise(() => {}) : undefined;
    },
    cancel() {
      cancelled = true;
    },
  });
  const ends: string[] = [];
  const intake = new BodyIntake(source, {
    maxBytes: 1000,
    idleTimeoutMs: 20,
    onEnd: (s) => ends.push(s),
  });
  const it = intake.chunks();
  await it.next();
  const pending = it.next();
  await new Promise((r) => setTimeout(r, 40));
  assert.deepEqual(ends, ["timed_out"]);
  assert.ok(cancelled, "the body was cancelled");
  intake.release();
  await assert.rejects(pending, BodyCutOffError);
  assert.throws(() => new BodyIntake(null, { maxBytes: 1, idleTimeoutMs: 0 }), RangeError);
});

Deno.test("BodyIntake lets timers run while it reads a body that arrived faster than it is read", async () => {
  // All 8 MiB are queued already, so every read resolves at once (a microtask): without a
  // pause now and then, a timer (the transport's answers) would wait until the body ended.
  const piece = new Uint8Array(64 * 1024);
  const source = new ReadableStream<Uint8Array>({
    start(c) {
      for (let i = 0; i < 128; i++) c.enqueue(piece.slice());
      c.close();
    },
  });
  const intake = new BodyIntake(source, { maxBytes: 1 << 30 });
  let fired = false;
  const timer = setTimeout(() => fired = true, 0);
  let readBeforeTimer = 0;
  for await (const chunk of intake.chunks()) if (!fired) readBeforeTimer += chunk.length;
  clearTimeout(timer);
  assert.ok(fired);
  assert.ok(readBeforeTimer < 4 << 20, `${readBeforeTimer} bytes read before a timer could run`);
});
