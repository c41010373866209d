import assert from "node:assert/strict";
// deno-lint-ignore no-import-prefix -- the project imports npm packages inline (no import map)
import parsePrometheusTextFormat from "npm:parse-prometheus-text-format@^1";
import type { CampaignStats } from "../core/campaign.ts";
import { createFakeTransport } from "../transports/fake.ts";
import { formatLabels, Histogram, ServerMetrics } from "./metrics.ts";

interface Family {
  name: string;
  type: string;
  metrics: {
    value?: string;
    labels?: Record<string, string>;
    buckets?: Record<string, string>;
    count?: string;
    sum?: string;
  }[];
}

function stats(over: Partial<CampaignStats> = {}): CampaignStats {
  return {
    rows: 0,
    sent: 0,
    failed: 0,
    invalid: 0,
    duplicates: 0,
    suppressed: 0,
    done: 0,
    rendered: 0,
    inFlight: 0,
    retrying: 0,
    attempts: 0,
    transient: 0,
    bytes: 0,
    ...over,
  };
}

/** Parse with an independent implementation of the Prometheus text format. */
function parse(text: string): Map<string, Family> {
  const families = parsePrometheusTextFormat(text) as Family[];
  return new Map(families.map((f) => [f.name, f]));
}

Deno.test("ServerMetrics renders text an independent Prometheus parser reads back", () => {
  const m = new ServerMetrics([0.1, 1]);
  const finished = { stats: stats({ rows: 10, sent: 7, failed: 2, invalid: 1, attempts: 9 }) };
  m.runStarted(finished);
  m.failed("5.1.1");
  m.failed('we"ird\\code\nx');
  m.runEnded(finished, "finished");
  const live = { stats: stats({ rows: 5, sent: 1, inFlight: 4, attempts: 5 }) };
  m.runStarted(live);
  m.latency.observe(0.05, 3);
  m.latency.observe(0.5);
  m.latency.observe(7);
  m.response(200);
  m.response(401);
  m.response(401);
  const f = parse(m.render());
  const value = (name: string) => Number(f.get(name)!.metrics[0].value);
  assert.equal(value("mass_mailer_rows_total"), 15, "finished + live rows");
  assert.equal(value("mass_mailer_sent_total"), 8);
  assert.equal(value("mass_mailer_in_flight"), 4);
  assert.equal(value("mass_mailer_runs_active"), 1);
  assert.equal(f.get("mass_mailer_rows_total")!.type, "COUNTER");
  assert.equal(f.get("mass_mailer_in_flight")!.type, "GAUGE");
  const failed = f.get("mass_mailer_failed_total")!.metrics.map((
    s,
  ) => [s.labels!.code, Number(s.value)]);
  assert.deepEqual(failed.sort(), [["5.1.1", 1], ['we"ird\\code\nx', 1]].sort());
  const responses = Object.fromEntries(
    f.get("mass_mailer_http_responses_total")!.metrics.map((
      s,
    ) => [s.labels!.code, Number(s.value)]),
  );
  assert.deepEqual(responses, { "200": 1, "401": 2 });
  const h = f.get("mass_mailer_send_latency_seconds")!;
  assert.equal(h.type, "HISTOGRAM");
  assert.deepEqual(h.metrics[0].buckets, { "0.1": "3", "1": "4", "+Inf": "5" });
  assert.equal(Number(h.metrics[0].count), 5);
  assert.ok(Math.abs(Number(h.metrics[0].sum) - 7.65) < 1e-9);
  // Totals never go down when a live run ends.
  live.stats.rows = 6;
  m.runEnded(live, "stopped");
  assert.equal(Number(parse(m.render()).get("mass_mailer_rows_total")!.metrics[0].value), 16);
});

Deno.test("Histogram counts a value equal to a bound in that bucket and refuses bad bounds", () => {
  const h = new Histogram([1, 2]);
  h.observe(1);
  h.observe(1.5);
  h.observe(3);
  assert.deepEqual(h.cumulative(), [1, 2, 3]);
  assert.throws(() => new Histogram([2, 1]), RangeError);
  assert.throws(() => new Histogram([1, Infinity]), RangeError);
});

Deno.test("ServerMetrics.timed() times each transport call once per message", async () => {
  const m = new ServerMetrics([0.001, 10]);
  const t = m.timed(createFakeTransport({ latencyMs: 3, maxBatch: 10 }));
  const msg = (line: number) => ({
    line,
    from: "a@example.com",
    to: `u${line}@example.com`,
    smtpUtf8: false,
    eightBit: false,
    messageId: `<${line}@example.com>`,
    data: [],
    size: 0,
  });
  const results = await t.send([msg(1), msg(2), msg(3)], { signal: new AbortController().signal });
  assert.equal(results.length, 3);
  assert.equal(m.latency.count, 3);
  assert.deepEqual(m.latency.cumulative(), [0, 3, 3], "3 ms is over the 1 ms bound");
  assert.equal(t.maxBatch, 10);
  assert.equal(t.releasesMessages, true, "the engine may reuse what the fake let go of");
  const unsure = m.timed({ ...createFakeTransport(), releasesMessages: undefined });
  assert.equal(unsure.releasesMessages, undefined);
});

Deno.test("formatLabels() escapes backslash, quote and newline", () => {
  assert.equal(formatLabels({}), "");
  assert.equal(formatLabels({ code: 'a"b\\c\nd' }), '{code="a\\"b\\\\c\\nd"}');
});
