import assert from "node:assert/strict";
import { isLoopback, resolveSmtpOptions, SMTP_DEFAULTS, type SmtpOptions } from "./options.ts";

Deno.test("resolveSmtpOptions() applies the documented defaults", () => {
  const o = resolveSmtpOptions({ host: "smtp.example.com" });
  assert.equal(o.tls, "starttls");
  assert.equal(o.port, 587);
  assert.equal(o.connections, SMTP_DEFAULTS.connections);
  assert.equal(o.maxMessages, SMTP_DEFAULTS.maxMessages);
  assert.equal(o.commandTimeout, SMTP_DEFAULTS.commandTimeout);
  assert.equal(o.pipelining, true);
  assert.equal(o.caCerts, undefined);
});

Deno.test("resolveSmtpOptions() picks the TLS mode and port from each other", async (t) => {
  const cases: [Partial<SmtpOptions>, string, number][] = [
    [{ port: 465 }, "implicit", 465],
    [{ tls: "implicit" }, "implicit", 465],
    [{ tls: "none" }, "none", 25],
    [{ port: 2525 }, "starttls", 2525],
    [{ tls: "none", port: 2525 }, "none", 2525],
  ];
  for (const [given, tls, port] of cases) {
    await t.step(JSON.stringify(given), () => {
      const o = resolveSmtpOptions({ host: "mx.example.com", ...given });
      assert.equal(o.tls, tls);
      assert.equal(o.port, port);
    });
  }
});

Deno.test("resolveSmtpOptions() refuses bad options with TypeError or RangeError", async (t) => {
  const cases: [string, unknown, ErrorConstructor, RegExp][] = [
    ["no host", {}, TypeError, /host/],
    ["host with a space", { host: "a b" }, TypeError, /host/],
    ["bad tls", { host: "h", tls: "ssl" }, TypeError, /tls/],
    ["port 0", { host: "h", port: 0 }, RangeError, /port/],
    ["connections 0", { host: "h", connections: 0 }, RangeError, /connections/],
    ["maxMessages 1.5", { host: "h", maxMessages: 1.5 }, RangeError, /maxMessages/],
    ["negative timeout", { host: "h", dataTimeout: -1 }, RangeError, /dataTimeout/],
    ["ca not PEM", { host: "h", ca: "hello" }, TypeError, /PEM/],
    ["EHLO name with space", { host: "h", name: "a b" }, TypeError, /EHLO/],
    ["auth without user", { host: "h", auth: { pass: "x" } }, TypeError, /user/],
    ["auth without pass", { host: "h", auth: { user: "u" } }, TypeError, /pass/],
    [
      "XOAUTH2 without token",
      { host: "h", auth: { user: "u", method: "XOAUTH2" } },
      TypeError,
      /token/,
    ],
    [
      "credentials in clear text to a remote host",
      { host: "mx.example.com", tls: "none", auth: { user: "u", pass: "p" } },
      TypeError,
      /without TLS/,
    ],
  ];
  for (const [name, opts, type, message] of cases) {
    await t.step(name, () => {
      assert.throws(() => resolveSmtpOptions(opts as SmtpOptions), (e: Error) => {
        assert.ok(e instanceof type, `${e.name}: ${e.message}`);
        assert.match(e.message, message);
        return true;
      });
    });
  }
});

Deno.test("resolveSmtpOptions() allows credentials without TLS only on loopback", () => {
  const o = resolveSmtpOptions({ host: "127.0.0.1", tls: "none", auth: { user: "u", pass: "p" } });
  assert.equal(o.auth?.user, "u");
  assert.equal(resolveSmtpOptions({ host: "h", maxMessages: Infinity }).maxMessages, Infinity);
  for (const h of ["localhost", "127.0.0.1", "127.1.2.3", "::1"]) assert.ok(isLoopback(h), h);
  for (const h of ["10.0.0.1", "example.com", "128.0.0.1"]) assert.ok(!isLoopback(h), h);
});
