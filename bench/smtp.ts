/**
 * Benchmark: our SMTP client against Postfix's smtp-source and nodemailer's
 * pooled transport, all sending to Postfix's smtp-sink on 127.0.0.1 in one run;
 * then the same over implicit TLS (stunnel4 in front of smtp-sink), ours
 * against nodemailer.
 *
 * Usage: deno run --allow-all bench/smtp.ts [--messages 100000] [--connections 10] [--no-tls]
 *
 * Needs the Debian packages postfix (smtp-sink, smtp-source; the daemon is not
 * started) and stunnel4: `apt-get install -y postfix stunnel4`. Each client runs
 * in its own process so its CPU time is its own. "ours, 100 msgs/conn" is our
 * client with its default --smtp-max-messages 100 (reconnects 1,000 times). Targets (issue 4): ours >= 0.8x
 * smtp-source and >= 3x nodemailer, over TLS >= 3x nodemailer.
 *
 * @module
 */
import { parseArgs } from "node:util";
import process from "node:process";
import type { Outgoing, SendResult } from "../core/types.ts";
import { BENCH_ARGS } from "./_measure.ts";

const FROM = "bench@example.com";
const TESTDATA = new URL("../tests/testdata/smtp/", import.meta.url).pathname;

interface ClientRun {
  readonly sent: number;
  readonly failed: number;
  readonly wallMs: number;
  readonly cpuMs: number;
}

/** The message every client sends: about 1.2 KB, headers per recipient, a shared body. */
function messageParts(): { body: Uint8Array; header: (to: string, i: number) => Uint8Array } {
  const enc = new TextEncoder();
  const lines: string[] = [];
  for (let i = 0; i < 12; i++) {
    lines.push(`Line ${i} of the benchmark message, long enough to look like real text here.`);
  }
  lines.push(".this line starts with a dot and must be stuffed");
  const body = enc.encode(
    "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n" +
      "Content-Transfer-Encoding: 7bit\r\n\r\n" + lines.join("\r\n") + "\r\n",
  );
  return {
    body,
    header: (to, i) =>
      enc.encode(
        `From: Bench <${FROM}>\r\nTo: <${to}>\r\nSubject: Benchmark ${i}\r\n` +
          `Date: Thu, 03 Dec 2026 17:00:00 +0000\r\nMessage-ID: <bench.${i}@example.com>\r\n`,
      ),
  };
}

function buildOutgoing(n: number): Outgoing[] {
  const { body, header } = messageParts();
  const out: Outgoing[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const to = `user${i}@example.com`;
    const h = header(to, i);
    out[i] = {
      line: i + 1,
      from: FROM,
      to,
      smtpUtf8: false,
      eightBit: false,
      messageId: `<bench.${i}@example.com>`,
      data: [h, body],
      size: h.length + body.length,
    };
  }
  return out;
}

/** Keep `window` sends in flight until every message is done, like the engine. */
async function drive(
  n: number,
  window: number,
  sendOne: (i: number) => Promise<boolean>,
): Promise<{ sent: number; failed: number }> {
  let next = 0;
  let sent = 0;
  let failed = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      if (await sendOne(i)) sent++;
      else failed++;
    }
  };
  await Promise.all(Array.from({ length: Math.min(window, n) }, worker));
  return { sent, failed };
}

function cpuMs(start: NodeJS.CpuUsage): number {
  const u = process.cpuUsage(start);
  return (u.user + u.system) / 1000;
}

/** Child mode: run one client and print its numbers as JSON. */
async function runClient(
  client: string,
  port: number,
  n: number,
  connections: number,
  tls: boolean,
): Promise<ClientRun> {
  if (client === "ours" || client === "ours-default-cap") {
    const { createSmtpTransport } = await import("../transports/smtp.ts");
    const msgs = buildOutgoing(n);
    const t = createSmtpTransport({
      host: tls ? "localhost" : "127.0.0.1",
      port,
      tls: tls ? "implicit" : "none",
      ca: tls ? Deno.readTextFileSync(`${TESTDATA}ca.pem`) : undefined,
      name: "bench.example.com",
      connections,
      maxMessages: client === "ours" ? Infinity : undefined,
    });
    const signal = new AbortController().signal;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const r = await drive(n, t.defaultConcurrency!, async (i) => {
      const [res]: SendResult[] = await t.send([msgs[i]], { signal });
      return res.status === "sent";
    });
    await t.close();
    return { ...r, wallMs: performance.now() - t0, cpuMs: cpuMs(cpu0) };
  }
  // nodemailer: its best case, prebuilt raw messages and a pool that never retires connections.
  // deno-lint-ignore no-import-prefix -- the project imports npm packages by full specifier (no import map)
  const nodemailer = (await import("npm:nodemailer@^10")).default;
  const { Buffer } = await import("node:buffer");
  const { body, header } = messageParts();
  const raws = Array.from(
    { length: n },
    (_, i) => Buffer.concat([header(`user${i}@example.com`, i), body]),
  );
  const transporter = nodemailer.createTransport({
    host: tls ? "localhost" : "127.0.0.1",
    port,
    secure: tls,
    ignoreTLS: !tls,
    tls: tls ? { ca: Deno.readTextFileSync(`${TESTDATA}ca.pem`) } : undefined,
    pool: true,
    maxConnections: connections,
    maxMessages: Infinity,
    name: "bench.example.com",
  });
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const r = await drive(n, connections * 20, async (i) => {
    try {
      await transporter.sendMail({
        envelope: { from: FROM, to: [`user${i}@example.com`] },
        raw: raws[i],
      });
      return true;
    } catch {
      return false;
    }
  });
  transporter.close();
  return { ...r, wallMs: performance.now() - t0, cpuMs: cpuMs(cpu0) };
}

// ------------------------------------------------------------------ driver

function which(
  names: string[],
  dirs = ["/usr/sbin", "/usr/bin", "/usr/lib/postfix/sbin", "/usr/local/bin"],
): string | null {
  for (const name of names) {
    for (const dir of [...(Deno.env.get("PATH") ?? "").split(":"), ...dirs]) {
      try {
        if (dir !== "" && Deno.statSync(`${dir}/${name}`).isFile) return `${dir}/${name}`;
      } catch {
        // not here
      }
    }
  }
  return null;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function waitForPort(port: number, ms = 5000): Promise<void> {
  const end = performance.now() + ms;
  for (;;) {
    try {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      c.close();
      return;
    } catch (e) {
      if (performance.now() > end) throw new Error(`Nothing listens on 127.0.0.1:${port}: ${e}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

async function child(
  client: string,
  port: number,
  n: number,
  connections: number,
  tls: boolean,
): Promise<ClientRun> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      new URL(import.meta.url).pathname,
      "--client",
      client,
      "--port",
      String(port),
      "--messages",
      String(n),
      "--connections",
      String(connections),
      ...(tls ? ["--tls"] : []),
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim().split("\n").pop() ?? "";
  if (!out.success) throw new Error(`${client} benchmark failed (exit ${out.code})`);
  return JSON.parse(text) as ClientRun;
}

async function smtpSource(
  bin: string,
  port: number,
  n: number,
  sessions: number,
  file: string,
): Promise<ClientRun> {
  const t0 = performance.now();
  const out = await new Deno.Command("/usr/bin/env", {
    args: [
      "bash",
      "-c",
      // `times` prints the child's user and system CPU; smtp-source exits 0 when all went through.
      `${bin} -d -s ${sessions} -m ${n} -F ${file} -f ${FROM} -t user@example.com -M bench.example.com ` +
      `127.0.0.1:${port} && times`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const wallMs = performance.now() - t0;
  if (!out.success) throw new Error(`smtp-source failed: ${new TextDecoder().decode(out.stderr)}`);
  const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
  const child = lines.pop() ?? "";
  const secs = [...child.matchAll(/(\d+)m([\d.]+)s/g)].map((m) => Number(m[1]) * 60 + Number(m[2]));
  return { sent: n, failed: 0, wallMs, cpuMs: (secs[0] + secs[1]) * 1000 };
}

function rate(r: ClientRun): number {
  return (r.sent / r.wallMs) * 1000;
}

function row(name: string, r: ClientRun): string {
  return `${name.padEnd(22)} ${String(r.sent).padStart(8)} ${
    (r.wallMs / 1000).toFixed(2).padStart(8)
  } s ` +
    `${Math.round(rate(r)).toString().padStart(8)} msg/s ${
      ((r.cpuMs * 1000) / r.sent).toFixed(1).padStart(7)
    } us CPU/msg` +
    (r.failed > 0 ? `  (${r.failed} failed)` : "");
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: BENCH_ARGS,
    options: {
      messages: { type: "string", default: "100000" },
      connections: { type: "string", default: "10" },
      client: { type: "string" },
      port: { type: "string" },
      tls: { type: "boolean", default: false },
      "no-tls": { type: "boolean", default: false },
    },
  });
  const n = Number(values.messages);
  const connections = Number(values.connections);
  if (values.client !== undefined) {
    const r = await runClient(values.client, Number(values.port), n, connections, values.tls);
    console.log(JSON.stringify(r));
    return 0;
  }
  const sink = which(["smtp-sink"]);
  const source = which(["smtp-source"]);
  const stunnel = values["no-tls"] ? null : which(["stunnel4", "stunnel"]);
  if (sink === null || source === null) {
    console.error(
      "smtp-sink and smtp-source are missing: install them with `apt-get install -y postfix`",
    );
    return 2;
  }
  if (stunnel === null && !values["no-tls"]) {
    console.error("stunnel4 is missing (`apt-get install -y stunnel4`): the TLS part is skipped");
  }
  const tmp = await Deno.makeTempDir({ prefix: "smtp-bench-" });
  const procs: Deno.ChildProcess[] = [];
  try {
    const sinkPort = freePort();
    // -u nobody: smtp-sink drops root; backlog 1000. No -c: counters would cost it CPU.
    const asRoot = Deno.uid() === 0 ? ["-u", "nobody"] : [];
    procs.push(
      new Deno.Command(sink, {
        args: [...asRoot, `127.0.0.1:${sinkPort}`, "1000"],
        stdout: "null",
        stderr: "piped",
      })
        .spawn(),
    );
    await waitForPort(sinkPort);
    const file = `${tmp}/message.eml`;
    const { body, header } = messageParts();
    const sample = new Uint8Array([...header("user@example.com", 0), ...body]);
    // smtp-source -F appends CRLF to each line and stuffs dots itself: give it LF lines.
    await Deno.writeTextFile(
      file,
      new TextDecoder().decode(sample).replaceAll("\r\n", "\n").replace(/\n$/, ""),
    );
    console.log(
      `SMTP benchmark: ${n} messages of ${sample.length} bytes over ${connections} connections to smtp-sink ` +
        `on 127.0.0.1 (${Deno.build.os}, ${navigator.hardwareConcurrency} cores)\n`,
    );
    const ours = await child("ours", sinkPort, n, connections, false);
    console.log(row("ours (mass-mailer)", ours));
    const capped = await child("ours-default-cap", sinkPort, n, connections, false);
    console.log(row("ours, 100 msgs/conn", capped));
    const src = await smtpSource(source, sinkPort, n, connections, file);
    console.log(row("smtp-source -d", src));
    const nm = await child("nodemailer", sinkPort, n, connections, false);
    console.log(row("nodemailer 10 pool", nm));
    console.log(
      `\nours / smtp-source = ${(rate(ours) / rate(src)).toFixed(2)}x (target >= 0.8)   ` +
        `ours / nodemailer = ${(rate(ours) / rate(nm)).toFixed(2)}x (target >= 3)`,
    );
    if (stunnel !== null) {
      const tlsPort = freePort();
      const conf = `${tmp}/stunnel.conf`;
      await Deno.writeTextFile(
        conf,
        [
          "foreground = yes",
          `pid =`,
          "debug = 3",
          "[smtps]",
          `accept = 127.0.0.1:${tlsPort}`,
          `connect = 127.0.0.1:${sinkPort}`,
          `cert = ${TESTDATA}server.pem`,
          `key = ${TESTDATA}server-key.pem`,
          "",
        ].join("\n"),
      );
      procs.push(
        new Deno.Command(stunnel, { args: [conf], stdout: "null", stderr: "null" }).spawn(),
      );
      await waitForPort(tlsPort);
      console.log(`\nImplicit TLS (stunnel4 in front of smtp-sink):\n`);
      const oursTls = await child("ours", tlsPort, n, connections, true);
      console.log(row("ours (mass-mailer)", oursTls));
      const nmTls = await child("nodemailer", tlsPort, n, connections, true);
      console.log(row("nodemailer 10 pool", nmTls));
      console.log(
        `\nTLS: ours / nodemailer = ${(rate(oursTls) / rate(nmTls)).toFixed(2)}x (target >= 3)`,
      );
    }
    return 0;
  } finally {
    for (const p of procs) {
      try {
        p.kill("SIGTERM");
      } catch {
        // already gone
      }
      await p.status;
    }
    await Deno.remove(tmp, { recursive: true });
  }
}

if (import.meta.main) Deno.exit(await main());
