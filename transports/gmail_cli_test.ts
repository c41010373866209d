import assert from "node:assert/strict";
// deno-lint-ignore no-import-prefix -- the project imports npm packages inline (no import map)
import { exportPKCS8, generateKeyPair } from "npm:jose@^5";
import { gmailCli } from "./gmail_cli.ts";
import type { TransportContext } from "./transport_cli.ts";
import type { GmailTransport } from "./gmail.ts";
import { startGmailFake } from "../tests/_gmail_fake.ts";
import { messages } from "../tests/_gmail_messages.ts";

const signal = new AbortController().signal;

function ctx(
  flags: TransportContext["flags"],
  env: Record<string, string> = {},
  logs: string[] = [],
): TransportContext {
  return { flags, env: (name) => env[name], log: (line) => logs.push(line) };
}

async function tempFile(name: string, content: unknown, dir: string): Promise<string> {
  const path = `${dir}/${name}`;
  await Deno.writeTextFile(path, typeof content === "string" ? content : JSON.stringify(content));
  return path;
}

Deno.test("gmailCli declares only gmail- flags and documents each", () => {
  assert.equal(gmailCli.name, "gmail");
  for (const name of Object.keys(gmailCli.flags)) {
    assert.ok(name.startsWith("gmail-"), name);
    assert.ok(gmailCli.help.includes(`--${name} `), `help for --${name}`);
  }
  assert.deepEqual(Object.keys(gmailCli.flags).sort(), [
    "gmail-api-url",
    "gmail-batch-size",
    "gmail-credentials",
    "gmail-daily",
    "gmail-rate",
    "gmail-service-account",
    "gmail-token-url",
    "gmail-user",
  ]);
  assert.ok(gmailCli.commands?.login);
});

Deno.test("GMAIL-2 --gmail-batch-size 250 is refused at start-up, before credentials are read", async (t) => {
  const cases: Array<[string, RegExp]> = [
    [
      "250",
      /^Invalid --gmail-batch-size 250: Gmail allows 1 to 100 calls per batch request \(50 is advised\)$/,
    ],
    ["101", /--gmail-batch-size 101/],
    ["0", /--gmail-batch-size 0/],
    ["ten", /Invalid --gmail-batch-size "ten": use a whole number/],
  ];
  for (const [value, message] of cases) {
    await t.step(value, async () => {
      await assert.rejects(
        async () =>
          await gmailCli.create(ctx({
            "gmail-batch-size": value,
            "gmail-credentials": "/nonexistent/creds.json",
          })),
        (e: Error) => e instanceof RangeError && message.test(e.message),
      );
    });
  }
});

Deno.test("gmailCli.create() resolves credentials from files or the environment", async (t) => {
  const server = startGmailFake({
    refreshTokens: { "rt-env": "env@example.com", "rt-file": "file@example.com" },
  });
  const dir = await Deno.makeTempDir();
  const urls = { "gmail-api-url": server.url, "gmail-token-url": server.tokenUrl };
  try {
    await t.step("no credentials: a TypeError saying what to pass", async () => {
      await assert.rejects(
        async () => await gmailCli.create(ctx({ ...urls })),
        (e: Error) =>
          e instanceof TypeError &&
          /--gmail-credentials FILE .*gmail login.*GMAIL_REFRESH_TOKEN/.test(e.message),
      );
    });
    await t.step("environment variables", async () => {
      const transport = await gmailCli.create(ctx({ ...urls }, {
        GMAIL_CLIENT_ID: "fake-client-id",
        GMAIL_CLIENT_SECRET: "fake-client-secret",
        GMAIL_REFRESH_TOKEN: "rt-env",
      }));
      const results = await transport.send(messages(3).out, { signal });
      assert.deepEqual(results.map((r) => r.status), ["sent", "sent", "sent"]);
      assert.equal(server.fake.acceptedBy("env@example.com"), 3);
      assert.equal(transport.maxBatch, 50);
    });
    await t.step("--gmail-credentials file, with rate, daily and batch size", async () => {
      const file = await tempFile("creds.json", {
        type: "authorized_user",
        client_id: "fake-client-id",
        client_secret: "fake-client-secret",
        refresh_token: "rt-file",
      }, dir);
      const transport = await gmailCli.create(ctx({
        ...urls,
        "gmail-credentials": file,
        "gmail-batch-size": "100",
        "gmail-rate": "6000/min",
        "gmail-daily": "500",
      }));
      assert.equal(transport.maxBatch, 100);
      assert.deepEqual(transport.limits, [{ count: 500, perMs: 86_400_000 }]);
      const results = await transport.send(messages(100).out, { signal });
      assert.equal(results.filter((r) => r.status === "sent").length, 100);
      assert.equal(server.fake.acceptedBy("file@example.com"), 100);
    });
    await t.step("a revoked token in the file: the error names the file", async () => {
      const file = await tempFile("revoked.json", {
        type: "authorized_user",
        client_id: "fake-client-id",
        client_secret: "fake-client-secret",
        refresh_token: "rt-revoked",
      }, dir);
      const transport = await gmailCli.create(ctx({ ...urls, "gmail-credentials": file }));
      await assert.rejects(
        transport.send(messages(1).out, { signal }),
        (e: Error) =>
          e.message.endsWith(`check the credentials in ${file}`) &&
          !e.message.includes("rt-revoked"),
      );
    });
    await t.step("bad files and values are refused with the flag named", async () => {
      const account = await tempFile("sa.json", {
        type: "service_account",
        client_email: "x@y.iam.gserviceaccount.com",
        private_key: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
      }, dir);
      const notJson = await tempFile("bad.json", "{not json", dir);
      const cases: Array<[TransportContext["flags"], ErrorConstructor, RegExp]> = [
        [
          { "gmail-credentials": account },
          TypeError,
          /is a service account key: pass it with --gmail-service-account/,
        ],
        [{ "gmail-credentials": notJson }, TypeError, /bad\.json is not valid JSON/],
        [{ "gmail-credentials": `${dir}/missing.json` }, TypeError, /^Cannot read .*missing\.json/],
        [{ "gmail-service-account": account }, TypeError, /--gmail-user/],
        [{ "gmail-service-account": account, "gmail-credentials": notJson }, TypeError, /either/],
        [
          {
            "gmail-service-account": account,
            "gmail-user": ["a@x.example"],
            "gmail-rate": "100/x",
          },
          RangeError,
          /^--gmail-rate: Invalid rate "100\/x"/,
        ],
        [
          { "gmail-service-account": account, "gmail-user": ["a@x.example"], "gmail-daily": "-3" },
          RangeError,
          /Invalid --gmail-daily "-3"/,
        ],
        [
          {
            "gmail-service-account": account,
            "gmail-user": ["a@x.example"],
            "gmail-api-url": "nope",
          },
          TypeError,
          /Gmail API URL is not a URL/,
        ],
      ];
      for (const [flags, type, message] of cases) {
        await assert.rejects(async () => await gmailCli.create(ctx(flags)), (e: Error) => {
          assert.ok(e instanceof type, `${e.name}: ${e.message}`);
          assert.match(e.message, message);
          return true;
        });
      }
    });
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("gmailCli.create() with a service account sends as each --gmail-user", async () => {
  const { publicKey, privateKey } = await generateKeyPair("RS256", { extractable: true });
  const clientEmail = "mailer@project.iam.gserviceaccount.com";
  const server = startGmailFake({ serviceAccounts: [{ clientEmail, publicKey }] });
  const dir = await Deno.makeTempDir();
  try {
    const file = await tempFile("sa.json", {
      type: "service_account",
      client_email: clientEmail,
      private_key: await exportPKCS8(privateKey),
      private_key_id: "k1",
    }, dir);
    const transport = await gmailCli.create(ctx({
      "gmail-service-account": file,
      "gmail-user": ["ann@example.com,bob@example.com", "cy@example.com"],
      "gmail-api-url": server.url,
      "gmail-token-url": server.tokenUrl,
      "gmail-rate": "3000/min",
    })) as GmailTransport;
    assert.deepEqual(transport.users, ["ann@example.com", "bob@example.com", "cy@example.com"]);
    const { out } = messages(150);
    await Promise.all(
      [0, 1, 2].map((k) => transport.send(out.slice(k * 50, k * 50 + 50), { signal })),
    );
    for (const u of transport.users) assert.equal(server.fake.acceptedBy(u), 50);
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("mass-mailer gmail login writes a 0600 credentials file and never prints the token", async (t) => {
  const server = startGmailFake();
  const dir = await Deno.makeTempDir();
  const login = gmailCli.commands!.login;
  try {
    await t.step("end to end", async () => {
      const secret = await tempFile("client_secret.json", {
        installed: {
          client_id: "fake-client-id",
          client_secret: "fake-client-secret",
          redirect_uris: ["http://localhost"],
        },
      }, dir);
      const out = `${dir}/gmail-credentials.json`;
      const logs: string[] = [];
      let browser: Promise<Response> | undefined;
      const code = await login([
        "--gmail-client-secret",
        secret,
        "--gmail-credentials",
        out,
        "--gmail-auth-url",
        server.authUrl,
        "--gmail-token-url",
        server.tokenUrl,
      ], {
        env: () => undefined,
        log(line) {
          logs.push(line);
          const url = /^\s+(http\S+)$/.exec(line)?.[1];
          if (url) browser = fetch(url); // the user opens the printed URL
        },
      });
      assert.equal(code, 0, logs.join("\n"));
      assert.equal((await browser!).status, 200);
      assert.equal((await Deno.stat(out)).mode! & 0o777, 0o600);
      const token = JSON.parse(await Deno.readTextFile(out)).refresh_token;
      assert.match(token, /^fake-rt-/);
      assert.ok(logs.every((l) => !l.includes(token) && !l.includes("fake-client-secret")));
      assert.ok(logs.some((l) => l.includes(`Saved the refresh token to ${out}`)));
    });
    await t.step("usage errors exit 2", async (t) => {
      const cases: Array<[string[], RegExp]> = [
        [[], /needs an OAuth client: pass --gmail-client-secret FILE/],
        [["--nope"], /Unknown option '--nope'/],
        [["--gmail-client-secret", `${dir}/missing.json`], /Cannot read/],
      ];
      for (const [args, message] of cases) {
        await t.step(args.join(" ") || "(none)", async () => {
          const logs: string[] = [];
          assert.equal(await login(args, { env: () => undefined, log: (l) => logs.push(l) }), 2);
          assert.match(logs.join("\n"), message);
        });
      }
    });
    await t.step("a denied sign-in exits 4", async () => {
      server.fake.denyLogin = true;
      const logs: string[] = [];
      const code = await login([
        "--gmail-auth-url",
        server.authUrl,
        "--gmail-credentials",
        `${dir}/x.json`,
      ], {
        env: (n) =>
          ({ GMAIL_CLIENT_ID: "fake-client-id", GMAIL_CLIENT_SECRET: "fake-client-secret" })[n],
        log(line) {
          logs.push(line);
          const url = /^\s+(http\S+)$/.exec(line)?.[1];
          if (url) fetch(url).then((r) => r.text());
        },
      });
      assert.equal(code, 4);
      assert.match(logs.at(-1)!, /access_denied/);
    });
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});
