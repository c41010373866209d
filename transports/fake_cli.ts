/**
 * The fake transport's command-line flags.
 *
 * @module
 */
import { createFakeTransport, type FailKind } from "./fake.ts";
import type { TransportCli } from "./transport_cli.ts";

const FAIL_KINDS: readonly FailKind[] = ["permanent", "transient", "mixed"];

/** `--transport fake`: every message is accepted after `--latency` ms; nothing leaves the machine. */
export const fakeCli: TransportCli = {
  name: "fake",
  flags: {
    "latency": { type: "string" },
    "fail-rate": { type: "string" },
    "fail-kind": { type: "string" },
    "fail-lines": { type: "string" },
    "seed": { type: "string" },
    "batch-size": { type: "string" },
    "delivery-log": { type: "string" },
  },
  help: [
    "  --latency MS          time each message takes (default 500)",
    "  --fail-rate F         fraction of attempts that fail, 0..1 (default 0)",
    "  --fail-kind K         permanent | transient | mixed (default permanent)",
    "  --fail-lines N,N      these CSV lines are always refused with 550 5.1.1",
    "  --seed N              seed of the failure pattern (default 1)",
    "  --batch-size N        messages per transport call (default 100)",
    "  --delivery-log FILE   append 'line,address,message-id' per accepted message",
  ].join("\n"),
  create({ flags }) {
    const num = (name: string): number | undefined => {
      const v = flags[name];
      if (v === undefined) return undefined;
      const n = Number(v);
      if (typeof v !== "string" || v.trim() === "" || !Number.isFinite(n)) {
        throw new RangeError(`Invalid --${name} ${JSON.stringify(v)}: use a number`);
      }
      return n;
    };
    const kind = flags["fail-kind"];
    if (kind !== undefined && !FAIL_KINDS.includes(kind as FailKind)) {
      throw new RangeError(
        `Invalid --fail-kind ${JSON.stringify(kind)}: use ${FAIL_KINDS.join(", ")}`,
      );
    }
    const lines = typeof flags["fail-lines"] === "string"
      ? flags["fail-lines"].split(",").map((s) => {
        const n = Number(s.trim());
        if (!Number.isInteger(n) || n < 1) {
          throw new RangeError(`Invalid --fail-lines entry ${JSON.stringify(s)}: use line numbers`);
        }
        return n;
      })
      : undefined;
    return createFakeTransport({
      latencyMs: num("latency"),
      failRate: num("fail-rate"),
      failKind: kind as FailKind | undefined,
      failLines: lines,
      seed: num("seed"),
      maxBatch: num("batch-size"),
      deliveryLog: flags["delivery-log"] as string | undefined,
    });
  },
};
