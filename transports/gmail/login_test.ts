import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { loginInstalledApp, pkcePair, writeSecretFile } from "./login.ts";
import { GmailError } from "./error.ts";
import { refreshCredentialsFromJson } from "./oauth.ts";
import { createGmailTransport } from "../gmail.ts";
import { startGmailFake } from "../../tests/_gmail_fake.ts";
import { messages } from "../../tests/_gmail_messages.ts";

const CLIENT = { clientId: "fake-client-id", clientSecret: "fake-client-secret" };

Deno.test("pkcePair() makes a 43-character verifier and its S256 challenge", async () => {
  const seen = new Set<string>();
  for (let i = 0; i < 20; i++) {
    const { verifier, challenge } = await pkcePair();
    assert.match(verifier, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(challenge, createHash("sha256").update(verifier).digest("base64url"));
    seen.add(verifier);
  }
  assert.equal(seen.size, 20);
});

Deno.test("loginInstalledApp() runs the PKCE flow end to end and stores the refresh token with mode 0600", async () => {
  const server = startGmailFake({ loginUser: "ann@example.com" });
  const dir = await Deno.makeTempDir();
  const out = `${dir}/gmail-credentials.json`;
  await Deno.writeTextFile(out, "old content", { mode: 0o644 });
  let redirectUri = "";
  try {
    const result = await loginInstalledApp({
      ...CLIENT,
      out,
      authUrl: server.authUrl,
      tokenUrl: server.tokenUrl,
      async onUrl(url) {
        const consent = new URL(url);
        redirectUri = consent.searchParams.get("redirect_uri")!;
        assert.match(redirectUri, /^http:\/\/127\.0\.0\.1:\d+$/);
        assert.equal(consent.searchParams.get("code_challenge_method"), "S256");
        assert.equal(consent.searchParams.get("access_type"), "offline");
        // A redirect carrying someone else's state is not accepted.
        const stray = await fetch(`${redirectUri}/?code=stolen&state=wrong`);
        assert.match(await stray.text(), /does not belong/);
        // The browser: the consent screen redirects to the loopback listener.
        const res = await fetch(url);
        assert.equal(res.status, 200);
        assert.match(await res.text(), /Signed in/);
      },
    });
    assert.equal(result.file, out);
    const info = await Deno.stat(out);
    assert.equal(info.mode! & 0o777, 0o600);
    const json = JSON.parse(await Deno.readTextFile(out));
    assert.equal(json.type, "authorized_user");
    assert.equal(json.client_id, CLIENT.clientId);
    assert.match(json.refresh_token, /^fake-rt-/);
    // The listener is gone.
    await assert.rejects(fetch(redirectUri));
    // The stored refresh token sends mail.
    const transport = createGmailTransport({
      credentials: refreshCredentialsFromJson(json, out),
      apiUrl: server.url,
      tokenUrl: server.tokenUrl,
    });
    const results = await transport.send(messages(2).out, { signal: new AbortController().signal });
    assert.deepEqual(results.map((r) => r.status), ["sent", "sent"]);
    assert.equal(server.fake.acceptedBy("ann@example.com"), 2);
    assert.deepEqual((await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name), [
      "gmail-credentials.json",
    ]);
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loginInstalledApp() fails clearly when access is denied, times out or the code is refused", async (t) => {
  const server = startGmailFake();
  const dir = await Deno.makeTempDir();
  const out = `${dir}/creds.json`;
  const base = { ...CLIENT, out, authUrl: server.authUrl, tokenUrl: server.tokenUrl };
  try {
    await t.step("denied", async () => {
      server.fake.denyLogin = true;
      await assert.rejects(
        loginInstalledApp({ ...base, onUrl: async (url) => void await (await fetch(url)).text() }),
        (e: Error) =>
          e instanceof GmailError && /did not grant access: access_denied/.test(e.message),
      );
      server.fake.denyLogin = false;
    });
    await t.step("timeout", async () => {
      await assert.rejects(
        loginInstalledApp({ ...base, timeoutMs: 30, onUrl: () => {} }),
        (e: Error) => e instanceof GmailError && /timed out after 30 ms/.test(e.message),
      );
    });
    await t.step("wrong client secret at the exchange", async () => {
      await assert.rejects(
        loginInstalledApp({
          ...base,
          clientSecret: "wrong",
          onUrl: async (url) => void await (await fetch(url)).text(),
        }),
        (e: Error) =>
          e instanceof GmailError && /invalid_client/.test(e.message) && !/wrong/.test(e.message),
      );
    });
    await t.step("onUrl throwing stops the login", async () => {
      await assert.rejects(
        loginInstalledApp({ ...base, onUrl: () => Promise.reject(new Error("no browser")) }),
        /no browser/,
      );
    });
    assert.equal((await Array.fromAsync(Deno.readDir(dir))).length, 0, "nothing written");
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeSecretFile() refuses a path it cannot write, naming it", async () => {
  await assert.rejects(
    writeSecretFile("/nonexistent-dir/creds.json", "{}"),
    (e: Error) =>
      e instanceof GmailError &&
      e.message.startsWith("Cannot write the credentials file /nonexistent-dir/creds.json"),
  );
});
