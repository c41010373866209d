import assert from "node:assert/strict";
import { parseDuration, SMTP_ENV, smtpCli, smtpOptionsFromCli } from "./smtp_cli.ts";
import type { TransportContext } from "./transport_cli.ts";
import { makeOutgoing, startSmtpServer } from "../tests/_smtp_server.ts";

const CA_FILE = new URL("../tests/testdata/smtp/ca.pem", import.meta.url).pathname;

function ctx(
  flags: TransportContext["flags"],
  env: Record<string, string> = {},
  log: string[] = [],
): TransportContext {
  return { flags, env: (n) => env[n], log: (l) => log.push(l) };
}

Deno.test("smtpCli flags map to SMTP options", async (t) => {
  await t.step("every flag is prefixed and documented", () => {
    for (const name of Object.keys(smtpCli.flags)) {
      assert.ok(name.startsWith("smtp-"), name);
      assert.match(smtpCli.help, new RegExp(`  --${name}\\b`));
    }
    assert.ok(smtpCli.help.split("\n").every((l) => l.startsWith("  ")));
  });
  await t.step("all flags", async () => {
    const o = await smtpOptionsFromCli(ctx({
      "smtp-host": "mail.example.com",
      "smtp-port": "2525",
      "smtp-tls": "implicit",
      "smtp-ca": CA_FILE,
      "smtp-name": "mailer.example.com",
      "smtp-connections": "10",
      "smtp-max-messages": "unlimited",
      "smtp-connect-timeout": "5s",
      "smtp-greeting-timeout": "1500",
      "smtp-command-timeout": "2m",
      "smtp-data-timeout": "250ms",
      "smtp-no-pipelining": true,
    }));
    assert.equal(o.host, "mail.example.com");
    assert.equal(o.port, 2525);
    assert.equal(o.tls, "implicit");
    assert.match(String(o.ca), /BEGIN CERTIFICATE/);
    assert.equal(o.name, "mailer.example.com");
    assert.equal(o.connections, 10);
    assert.equal(o.maxMessages, Infinity);
    assert.deepEqual(
      [o.connectTimeout, o.greetingTimeout, o.commandTimeout, o.dataTimeout],
      [5000, 1500, 120_000, 250],
    );
    assert.equal(o.pipelining, false);
    assert.equal(o.auth, undefined);
  });
  await t.step("defaults stay to the transport", async () => {
    const o = await smtpOptionsFromCli(ctx({ "smtp-host": "h" }));
    assert.equal(o.port, undefined);
    assert.equal(o.connections, undefined);
    assert.equal(o.pipelining, undefined);
  });
});

Deno.test("smtpCli reads secrets from the environment only", async (t) => {
  const dir = await Deno.makeTempDir();
  const passFile = `${dir}/pass`;
  const tokenFile = `${dir}/token`;
  await Deno.writeTextFile(passFile, "from-file\n");
  await Deno.writeTextFile(tokenFile, "tok-1\n");
  try {
    await t.step("password variable", async () => {
      const o = await smtpOptionsFromCli(
        ctx({ "smtp-host": "h", "smtp-user": "ann" }, { [SMTP_ENV.password]: "pw" }),
      );
      assert.deepEqual(o.auth, { user: "ann", pass: "pw", method: undefined });
    });
    await t.step("password file", async () => {
      const o = await smtpOptionsFromCli(
        ctx({ "smtp-host": "h", "smtp-user": "ann", "smtp-auth": "login" }, {
          [SMTP_ENV.passwordFile]: passFile,
        }),
      );
      assert.deepEqual(o.auth, { user: "ann", pass: "from-file", method: "LOGIN" });
    });
    await t.step("token file, read again for each connection", async () => {
      const o = await smtpOptionsFromCli(
        ctx({ "smtp-host": "h", "smtp-user": "ann" }, { [SMTP_ENV.oauthTokenFile]: tokenFile }),
      );
      assert.equal(o.auth?.method, "XOAUTH2");
      const provider = o.auth?.token as () => Promise<string>;
      assert.equal(await provider(), "tok-1");
      await Deno.writeTextFile(tokenFile, "tok-2\n");
      assert.equal(await provider(), "tok-2");
    });
    const bad: [string, TransportContext["flags"], Record<string, string>, RegExp][] = [
      ["no host", {}, {}, /--smtp-host/],
      ["bad tls", { "smtp-host": "h", "smtp-tls": "ssl" }, {}, /--smtp-tls/],
      ["bad port", { "smtp-host": "h", "smtp-port": "x" }, {}, /--smtp-port/],
      ["bad timeout", { "smtp-host": "h", "smtp-data-timeout": "soon" }, {}, /--smtp-data-timeout/],
      [
        "user without secret",
        { "smtp-host": "h", "smtp-user": "ann" },
        {},
        /MASS_MAILER_SMTP_PASSWORD/,
      ],
      ["secret without user", { "smtp-host": "h" }, { [SMTP_ENV.password]: "pw" }, /--smtp-user/],
      [
        "both password and token",
        { "smtp-host": "h", "smtp-user": "ann" },
        { [SMTP_ENV.password]: "pw", [SMTP_ENV.oauthToken]: "t" },
        /--smtp-auth/,
      ],
      [
        "xoauth2 without token",
        { "smtp-host": "h", "smtp-user": "a", "smtp-auth": "xoauth2" },
        {},
        /OAUTH_TOKEN/,
      ],
      [
        "bad method",
        { "smtp-host": "h", "smtp-user": "a", "smtp-auth": "cram" },
        {},
        /--smtp-auth/,
      ],
      ["missing CA file", { "smtp-host": "h", "smtp-ca": `${dir}/nope.pem` }, {}, /--smtp-ca/],
    ];
    for (const [name, flags, env, message] of bad) {
      await t.step(`refused: ${name}`, async () => {
        await assert.rejects(() => smtpOptionsFromCli(ctx(flags, env)), (e: Error) => {
          assert.ok(e instanceof TypeError || e instanceof RangeError, e.name);
          assert.match(e.message, message);
          assert.doesNotMatch(e.message, /\bpw\b/);
          return true;
        });
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("smtpCli.create() builds a working transport (STARTTLS, --smtp-ca, AUTH from env)", async () => {
  const server = await startSmtpServer({ tls: "starttls", auth: { user: "ann", pass: "pw" } });
  const log: string[] = [];
  const t = await smtpCli.create(ctx(
    {
      "smtp-host": "127.0.0.1",
      "smtp-port": String(server.port),
      "smtp-tls": "starttls",
      "smtp-ca": CA_FILE,
      "smtp-user": "ann",
      "smtp-debug": true,
    },
    { [SMTP_ENV.password]: "pw" },
    log,
  ));
  try {
    const [r] = await t.send([makeOutgoing()], { signal: new AbortController().signal });
    assert.equal(r.status, "sent");
    assert.equal(server.received[0].user, "ann");
    assert.ok(log.some((l) => l.startsWith("smtp: C: AUTH PLAIN <redacted>")));
    assert.ok(!log.some((l) => l.includes(btoa("\0ann\0pw"))));
  } finally {
    await t.close();
    await server.close();
  }
});

Deno.test("parseDuration() reads ms, s and m", () => {
  assert.equal(parseDuration("1500"), 1500);
  assert.equal(parseDuration("30s"), 30_000);
  assert.equal(parseDuration("0.5s"), 500);
  assert.equal(parseDuration("2m"), 120_000);
  assert.equal(parseDuration("0"), undefined);
  assert.equal(parseDuration("-1"), undefined);
  assert.equal(parseDuration("1h"), undefined);
});
