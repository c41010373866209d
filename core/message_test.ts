import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
// deno-lint-ignore no-import-prefix -- the project imports npm packages inline (no import map)
import { simpleParser } from "npm:mailparser@^3";
import { composeMessage, type ComposeOptions, MessageComposer } from "./message.ts";
import {
  encodeBody,
  formatDate,
  formatMailbox,
  formatUnstructured,
  normalizeNewlines,
} from "./mime.ts";
import {
  bindTemplate,
  escapeHtml,
  type MessageTemplate,
  parseTemplate,
  renderTemplate,
  TemplateError,
} from "./template.ts";
import { detachMessage, joinChunks, type Outgoing, type Recipient } from "./types.ts";
import { seededRandom } from "../tests/_random.ts";

const COLUMNS = ["email", "name", "city"] as const;
const NOW = Date.UTC(2026, 0, 2, 3, 4, 5, 678);
const OPTS: ComposeOptions = { campaignId: "camp1", now: () => NOW };

function recipient(values: string[], line = 2, smtpUtf8 = false): Recipient {
  return { line, address: values[0], values, smtpUtf8 };
}

const decoder = new TextDecoder();

function bytesOf(o: Outgoing): Uint8Array {
  const bytes = joinChunks(o.data, o.size);
  assert.equal(bytes.length, o.size, "size is the total length of data");
  return bytes;
}

/** The raw header lines (unfolded into one string per field), split at the first blank line. */
function rawHeaders(o: Outgoing): string[] {
  const text = decoder.decode(bytesOf(o));
  const head = text.slice(0, text.indexOf("\r\n\r\n"));
  return head.split("\r\n").reduce<string[]>((fields, line) => {
    if (/^[ \t]/.test(line)) fields[fields.length - 1] += "\r\n" + line;
    else fields.push(line);
    return fields;
  }, []);
}

/** Every line ends with CRLF, no bare CR or LF, no line over `limit` octets. */
function assertWellFormedLines(o: Outgoing, limit = 998): void {
  const bytes = bytesOf(o);
  assert.ok(
    bytes.length >= 2 && bytes[bytes.length - 2] === 13 && bytes[bytes.length - 1] === 10,
    "ends with CRLF",
  );
  let col = 0;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    if (b === 13) {
      assert.equal(bytes[i + 1], 10, `bare CR at byte ${i}`);
      assert.ok(col <= limit, `line of ${col} octets ending at byte ${i}`);
      col = 0;
      i++;
    } else {
      assert.notEqual(b, 10, `bare LF at byte ${i}`);
      col++;
    }
  }
}

function parse(o: Outgoing) {
  return simpleParser(Buffer.from(bytesOf(o)));
}

function header(o: Outgoing, name: string): string | undefined {
  const prefix = name.toLowerCase() + ":";
  return rawHeaders(o).find((l) => l.toLowerCase().startsWith(prefix));
}

Deno.test("MIME-1: non-ASCII subject, display name and body round-trip as encoded-words and utf-8 QP/base64", async () => {
  const composer = new MessageComposer(
    {
      from: "Team <team@example.com>",
      toName: "{{name}}",
      subject: "Grüße aus Köln",
      text: "Ça va? 東京",
    },
    COLUMNS,
    OPTS,
  );
  const o = composer.render(recipient(["juergen@example.org", "Jürgen", "Köln"]));
  assertWellFormedLines(o);
  const subject = header(o, "Subject")!;
  assert.match(subject, /=\?utf-8\?[BQ]\?/);
  // deno-lint-ignore no-control-regex -- control characters are what this matches
  assert.doesNotMatch(subject, /[^\x00-\x7f]/);
  assert.match(header(o, "To")!, /^To: =\?utf-8\?[BQ]\?[^ ]+\?= <juergen@example\.org>$/);
  assert.match(header(o, "Content-Type")!, /text\/plain; charset=utf-8/);
  assert.match(header(o, "Content-Transfer-Encoding")!, /quoted-printable|base64/);
  assert.equal(o.eightBit, false);
  assert.ok(bytesOf(o).every((b) => b < 128), "the whole message is ASCII");
  const parsed = await parse(o);
  assert.equal(parsed.subject, "Grüße aus Köln");
  assert.deepEqual(parsed.to && !Array.isArray(parsed.to) ? parsed.to.value : undefined, [
    { address: "juergen@example.org", name: "Jürgen" },
  ]);
  assert.equal(parsed.text, "Ça va? 東京\n");
});

Deno.test("MIME-2: CR/LF in merged values never starts a header line", async () => {
  const evil = "Eve\r\nBcc: spy@example.org";
  const composer = new MessageComposer(
    {
      from: "{{name}} <team@example.com>",
      replyTo: "{{name}} <reply@example.com>",
      toName: "{{name}}",
      subject: "Hi {{name}}",
      text: "Dear {{name}}",
    },
    COLUMNS,
    OPTS,
  );
  for (
    const value of [
      evil,
      "Eve\nBcc: spy@example.org",
      "Eve\rBcc: spy@example.org",
      "Ève\r\nBcc: spy@example.org",
    ]
  ) {
    const o = composer.render(recipient(["victim@example.com", value]));
    assertWellFormedLines(o);
    const fields = rawHeaders(o);
    assert.deepEqual(
      fields.map((f) => f.slice(0, f.indexOf(":"))).sort(),
      [
        "Content-Transfer-Encoding",
        "Content-Type",
        "Date",
        "From",
        "MIME-Version",
        "Message-ID",
        "Reply-To",
        "Subject",
        "To",
      ],
    );
    assert.ok(!fields.some((f) => /^bcc:/im.test(f)), "no Bcc line");
    assert.equal(o.to, "victim@example.com");
    const parsed = await parse(o);
    assert.equal(parsed.headerLines.length, 9);
    assert.equal(parsed.bcc, undefined);
    const flat = value.replace(/\r\n|\r|\n/, " ");
    assert.equal(parsed.subject, "Hi " + flat);
    const to = parsed.to && !Array.isArray(parsed.to) ? parsed.to.value : [];
    assert.deepEqual(to, [{ address: "victim@example.com", name: flat }]);
  }
});

Deno.test("MIME-4: Date, unique Message-ID and MIME-Version on every message, CRLF lines under 998 octets", async () => {
  const long = "x".repeat(5000);
  const longUtf8 = "ü".repeat(2500) + "東".repeat(1000);
  const composer = new MessageComposer(
    {
      from: "Team <team@example.com>",
      toName: "{{name}}",
      subject: "Hello {{name}}",
      text: "Hi {{name}},\nline two\rline three\r\n{{city}}",
      html: "<p>Hi {{name}}</p>\n<p>{{city}}</p>",
    },
    COLUMNS,
    OPTS,
  );
  const ids = new Set<string>();
  const rows = [
    ["a@example.com", "Ann", "Oslo"],
    ["b@example.com", long, long],
    ["c@example.com", longUtf8, longUtf8],
    ["d@example.com", "two\nlines", "x\r\ny\rz"],
  ];
  for (const [i, values] of rows.entries()) {
    const o = composer.render(recipient(values, i + 2));
    assertWellFormedLines(o);
    for (const l of rawHeaders(o).flatMap((f) => f.split("\r\n"))) {
      assert.ok(
        l.length <= 78 || !/\s/.test(l.trim()),
        `header line within 78 characters: ${l.slice(0, 90)}`,
      );
    }
    const parsed = await parse(o);
    assert.equal(parsed.date?.getTime(), Math.floor(NOW / 1000) * 1000);
    assert.equal(parsed.headers.get("mime-version"), "1.0");
    assert.equal(parsed.messageId, o.messageId);
    ids.add(o.messageId);
    assert.equal(parsed.subject, "Hello " + values[1].replace(/\n/g, " "));
    const text = "Hi " + values[1] + ",\nline two\nline three\n" + values[2] + "\n";
    assert.equal(parsed.text, text.replace(/\r\n|\r/g, "\n"));
  }
  assert.equal(ids.size, rows.length);
});

Deno.test("Message-ID is <campaign.line@from-domain>: stable for a row, different between rows", () => {
  const template = { from: "Team <team@Bücher.example>", subject: "s", text: "t" };
  const a = new MessageComposer(template, COLUMNS, { campaignId: "c-1" });
  const b = new MessageComposer(template, COLUMNS, { campaignId: "c-1" });
  const r = recipient(["a@example.com"], 7);
  assert.equal(a.render(r).messageId, "<c-1.7@xn--bcher-kva.example>");
  assert.equal(b.render(r).messageId, a.render(r).messageId);
  assert.notEqual(a.render(recipient(["a@example.com"], 8)).messageId, a.render(r).messageId);
  const random = new MessageComposer(template, COLUMNS);
  assert.match(random.campaignId, /^[0-9a-f]{12}$/);
  assert.throws(() => new MessageComposer(template, COLUMNS, { campaignId: "bad id" }), TypeError);
});

Deno.test("Date follows the injected clock and is formatted once per second", () => {
  let now = Date.UTC(2026, 4, 6, 7, 8, 9, 100);
  let calls = 0;
  const composer = new MessageComposer(
    { from: "a@example.com", subject: "s", text: "t" },
    COLUMNS,
    {
      now: () => (calls++, now),
    },
  );
  const r = recipient(["b@example.com"]);
  assert.equal(header(composer.render(r), "Date"), "Date: Wed, 06 May 2026 07:08:09 +0000");
  now += 800;
  assert.equal(header(composer.render(r), "Date"), "Date: Wed, 06 May 2026 07:08:09 +0000");
  now += 200;
  assert.equal(header(composer.render(r), "Date"), "Date: Wed, 06 May 2026 07:08:10 +0000");
  assert.equal(calls, 3);
});

Deno.test("long non-ASCII subjects fold into encoded-words of at most 75 characters", async (t) => {
  const subjects = [
    "Grüße aus Köln ".repeat(12).trim(),
    "東京".repeat(80),
    "Ünïcödé-without-any-spaces-".repeat(10),
    "a " + "😀".repeat(60) + " b",
    "plain ascii words ".repeat(20).trim(),
  ];
  const composer = new MessageComposer(
    { from: "a@example.com", subject: "{{name}}", text: "t" },
    COLUMNS,
    OPTS,
  );
  for (const subject of subjects) {
    await t.step(subject.slice(0, 30), async () => {
      const o = composer.render(recipient(["b@example.com", subject]));
      assertWellFormedLines(o);
      const lines = header(o, "Subject")!.split("\r\n");
      assert.ok(lines.length > 1, "folded");
      for (const line of lines) {
        assert.ok(line.length <= 78, `line too long: ${line}`);
        for (const word of line.match(/=\?[^?]+\?[BQ]\?[^?]*\?=/g) ?? []) {
          assert.ok(word.length <= 75);
        }
      }
      assert.equal((await parse(o)).subject, subject);
    });
  }
});

/** Decode the encoded-words of a header value strictly: each word must hold whole UTF-8 sequences. */
function decodeWords(value: string): string {
  const strict = new TextDecoder("utf-8", { fatal: true });
  return value.replace(/\r\n /g, " ").replace(/\?= =\?/g, "?==?").replace(
    /=\?utf-8\?([BQ])\?([^?]*)\?=/g,
    (_, enc: string, data: string) => {
      const binary = enc === "B"
        ? atob(data)
        : data.replace(/_/g, " ").replace(/=([0-9A-F]{2})/g, (_, h) =>
          String.fromCharCode(parseInt(h, 16)));
      return strict.decode(Uint8Array.from(binary, (c) => c.charCodeAt(0)));
    },
  );
}

Deno.test("encoded-words never split a UTF-8 sequence", () => {
  const composer = new MessageComposer(
    { from: "a@example.com", subject: "{{name}}", text: "t" },
    COLUMNS,
    OPTS,
  );
  for (
    const subject of ["é".repeat(100), "東".repeat(100), "😀".repeat(100), "aé東😀".repeat(30)]
  ) {
    const joined = decodeWords(
      header(composer.render(recipient(["b@example.com", subject])), "Subject")!.slice(9),
    );
    assert.equal(joined, subject);
  }
});

Deno.test("html makes multipart/alternative with text first; {{x}} is escaped, {{{x}}} raw", async () => {
  const composer = new MessageComposer(
    {
      from: "a@example.com",
      subject: "s",
      text: "Hi {{name}}",
      html: '<p title="{{name}}">Hi {{name}}</p>{{{city}}}',
    },
    COLUMNS,
    OPTS,
  );
  const o = composer.render(
    recipient(["b@example.com", `<script>"x" & 'y'</script>`, "<b>bold</b>"]),
  );
  assertWellFormedLines(o);
  const raw = decoder.decode(bytesOf(o));
  const boundary = raw.match(/boundary="([^"]+)"/)![1];
  assert.ok(raw.indexOf("text/plain") < raw.indexOf("text/html"));
  assert.equal(raw.split(`--${boundary}`).length, 4);
  const parsed = await parse(o);
  assert.equal(parsed.text, `Hi <script>"x" & 'y'</script>\n`);
  const escaped = escapeHtml(`<script>"x" & 'y'</script>`);
  assert.equal(parsed.html, `<p title="${escaped}">Hi ${escaped}</p><b>bold</b>\n`);
});

Deno.test("a merged value containing the boundary cannot break the multipart structure", async () => {
  const template = {
    from: "a@example.com",
    subject: "s",
    text: "x {{name}}",
    html: "<p>{{name}}</p>",
  };
  const composer = new MessageComposer(template, COLUMNS, OPTS);
  const first = decoder.decode(bytesOf(composer.render(recipient(["b@example.com", "n"]))));
  const boundary = first.match(/boundary="([^"]+)"/)![1];
  const evil = `\n--${boundary}\nContent-Type: text/html\n\nevil\n--${boundary}--\n`;
  const o = composer.render(recipient(["b@example.com", evil]));
  const raw = decoder.decode(bytesOf(o));
  assert.equal(raw.split(`--${boundary}`).length, 4, "only the real delimiters");
  const parsed = await parse(o);
  assert.equal(parsed.text, "x " + evil);
  assert.equal(parsed.html, "<p>" + evil + "</p>\n");
  assert.deepEqual(raw.match(/Content-Transfer-Encoding: \S+/g), [
    "Content-Transfer-Encoding: quoted-printable",
    "Content-Transfer-Encoding: quoted-printable",
  ]);
});

Deno.test("unknown merge fields are reported together by the constructor, before any render", () => {
  assert.throws(
    () =>
      new MessageComposer(
        {
          from: "{{sender}} <a@example.com>",
          subject: "Hello {{nmae}}",
          text: "{{name}} {{cty}}",
          html: "{{{bad}}}",
        },
        ["email", "name"],
        OPTS,
      ),
    (e) =>
      e instanceof TemplateError &&
      e.message ===
        "Unknown merge fields {{sender}} in from, {{nmae}} in subject, {{cty}} in text, {{{bad}}} in html; columns are: email, name",
  );
  assert.throws(
    () => new MessageComposer({ from: "<{{email}}>", subject: "s", text: "t" }, ["email"], OPTS),
    /only in the display name of from/,
  );
});

Deno.test("{{2}} index fields and escaped braces render", async () => {
  const composer = new MessageComposer(
    {
      from: "a@example.com",
      subject: "{{2}} \\{{2}}",
      text: "{{ 3 }} and \\{{name}}",
    },
    COLUMNS,
    OPTS,
  );
  const parsed = await parse(composer.render(recipient(["b@example.com", "Ann", "Rome"])));
  assert.equal(parsed.subject, "Ann {{2}}");
  assert.equal(parsed.text, "Rome and {{name}}\n");
});

Deno.test("extra headers are validated and written", async (t) => {
  const base = { from: "a@example.com", subject: "s", text: "t" };
  const bad: [string, Record<string, string>, RegExp][] = [
    ["CRLF in a value", { "X-Test": "a\r\nBcc: spy@example.org" }, /line break/],
    ["LF in a value", { "X-Test": "a\nb" }, /line break/],
    ["space in a name", { "X Test": "a" }, /Bad header name/],
    ["colon in a name", { "X:Test": "a" }, /Bad header name/],
    ["empty name", { "": "a" }, /Bad header name/],
    ["non-ASCII name", { "X-Tëst": "a" }, /Bad header name/],
    ["a header we set", { "subject": "a" }, /set by mass-mailer/],
    ["Bcc", { "BCC": "spy@example.org" }, /set by mass-mailer/],
  ];
  for (const [name, headers, error] of bad) {
    await t.step(`refuses ${name}`, () => {
      assert.throws(
        () => new MessageComposer({ ...base, headers }, COLUMNS, OPTS),
        (e) => e instanceof TemplateError && error.test(e.message),
      );
    });
  }
  await t.step("writes List-Unsubscribe and a non-ASCII value", async () => {
    const unsubscribe =
      "<mailto:unsub@example.com?subject=unsubscribe>, <https://example.com/unsubscribe/" +
      "a".repeat(80) + ">";
    const o = new MessageComposer(
      {
        ...base,
        headers: { "List-Unsubscribe": unsubscribe, "X-Note": "Grüße" },
      },
      COLUMNS,
      OPTS,
    ).render(recipient(["b@example.com"]));
    assertWellFormedLines(o);
    const parsed = await parse(o);
    assert.equal(
      parsed.headerLines.find((h) => h.key === "list-unsubscribe")?.line.replace(/\r\n/g, ""),
      `List-Unsubscribe: ${unsubscribe}`,
    );
    assert.equal(decodeWords(String(parsed.headers.get("x-note"))), "Grüße");
  });
});

Deno.test("an ASCII template with ASCII values stays 7bit; static parts are shared chunks", () => {
  const composer = new MessageComposer(
    {
      from: "Team <team@example.com>",
      subject: "Hello {{name}}",
      text: "Hi {{name}},\nsee you.\n.\n",
      html: "<p>static</p>",
    },
    COLUMNS,
    OPTS,
  );
  const a = composer.render(recipient(["a@example.com", "Ann"], 2));
  const b = composer.render(recipient(["b@example.com", "Bob"], 3));
  const raw = decoder.decode(bytesOf(a));
  assert.deepEqual(raw.match(/Content-Transfer-Encoding: \S+/g), [
    "Content-Transfer-Encoding: 7bit",
    "Content-Transfer-Encoding: 7bit",
  ]);
  assert.match(raw, /\r\nsee you\.\r\n\.\r\n/, "7bit keeps a lone dot for the transport to stuff");
  const shared = a.data.filter((chunk) => b.data.includes(chunk));
  assert.ok(shared.length >= 2, "the static header block and the static html part are shared");
  const before = shared.map((c) => c.slice());
  composer.render(recipient(["c@example.com", "Cy"], 4));
  assert.deepEqual(shared.map((c) => c.slice()), before);
});

Deno.test("quoted-printable bodies encode a leading dot and keep lines within 76 characters", async () => {
  const text = "é\n.signature\n.\n" + "long line ".repeat(30) + "\ntrailing space \nend";
  const o = composeMessage(
    { from: "a@example.com", subject: "s", text },
    recipient(["b@example.com"]),
    COLUMNS,
    OPTS,
  );
  const raw = decoder.decode(bytesOf(o));
  assert.match(raw, /Content-Transfer-Encoding: quoted-printable/);
  const body = raw.slice(raw.indexOf("\r\n\r\n") + 4);
  assert.ok(
    body.split("\r\n").every((l) => l.length <= 76 && !l.startsWith(".") && !/[ \t]$/.test(l)),
  );
  assert.equal((await parse(o)).text, text + "\n");
});

Deno.test("allow8bit sends non-ASCII bodies as 8bit and flags the message", async () => {
  const template = { from: "a@example.com", subject: "Grüße", text: "Ça va? {{name}}" };
  const o = new MessageComposer(template, COLUMNS, { ...OPTS, allow8bit: true }).render(
    recipient(["b@example.com", "東京"]),
  );
  assert.equal(o.eightBit, true);
  assert.match(header(o, "Content-Transfer-Encoding")!, /8bit/);
  assert.match(header(o, "Subject")!, /=\?utf-8\?/);
  assert.equal((await parse(o)).text, "Ça va? 東京\n");
  const ascii = new MessageComposer({ ...template, text: "Hi {{name}}" }, COLUMNS, {
    ...OPTS,
    allow8bit: true,
  })
    .render(recipient(["b@example.com", "x"]));
  assert.equal(ascii.eightBit, false, "an ASCII body stays 7bit");
  assert.match(header(ascii, "Content-Transfer-Encoding")!, /7bit/);
});

Deno.test("a recipient needing SMTPUTF8 gets the UTF-8 address in To as it is (RFC 6532)", async () => {
  const composer = new MessageComposer(
    { from: "a@example.com", toName: "{{name}}", subject: "s", text: "t" },
    COLUMNS,
    OPTS,
  );
  const o = composer.render(recipient(["jürgen@example.org", "Jürgen"], 2, true));
  assert.equal(o.smtpUtf8, true);
  assert.equal(o.to, "jürgen@example.org");
  assert.match(header(o, "To")!, /<jürgen@example\.org>$/);
  const parsed = await parse(o);
  assert.deepEqual(parsed.to && !Array.isArray(parsed.to) ? parsed.to.value : [], [
    { address: "jürgen@example.org", name: "Jürgen" },
  ]);
});

Deno.test("GMAIL-3: subject Grüße — 東京 and name Jürgen round-trip exactly", async () => {
  const o = composeMessage(
    { from: "Jürgen <j@example.com>", toName: "{{name}}", subject: "Grüße — 東京", text: "t" },
    recipient(["b@example.com", "Jürgen"]),
    COLUMNS,
    OPTS,
  );
  assert.ok(bytesOf(o).every((b) => b < 128));
  const parsed = await parse(o);
  assert.equal(parsed.subject, "Grüße — 東京");
  assert.equal(parsed.from?.value[0].name, "Jürgen");
});

Deno.test("bad templates and options are refused with TypeError or TemplateError", () => {
  const ok: MessageTemplate = { from: "a@example.com", subject: "s", text: "t" };
  assert.throws(
    () => new MessageComposer({ ...ok, text: undefined as unknown as string }, COLUMNS),
    TypeError,
  );
  assert.throws(
    () => new MessageComposer({ ...ok, from: "not an address" }, COLUMNS),
    TemplateError,
  );
  assert.throws(() => new MessageComposer({ ...ok, from: "A <a@>" }, COLUMNS), TemplateError);
  assert.throws(
    () => new MessageComposer(ok, COLUMNS, { now: 5 as unknown as () => number }),
    TypeError,
  );
  assert.throws(
    () =>
      new MessageComposer(ok, COLUMNS).render({
        ...recipient(["a@example.com"]),
        address: "a@example.com\r\nBcc: x@y",
      }),
    TypeError,
  );
});

const POOLS = [
  " abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
  ` !"#$%&'()*+,-./:;<=>?@[\\]^_\`{|}~`,
  "äöüßÄÖÜéèêçñ€£¥©®",
  "αβγδЖЗИКЛ",
  "東京日本語漢字かなカナ",
  "😀🎉👍🏽🇩🇪",
  "e\u0301a\u0308",
  "  ",
  "=??=_",
];

function randomText(next: () => number): string {
  const length = Math.floor(next() * next() * 120);
  let s = "";
  while ([...s].length < length) {
    const pool = [...POOLS[Math.floor(next() * POOLS.length)]];
    s += pool[Math.floor(next() * pool.length)];
  }
  if (next() < 0.05) s = "=?utf-8?q?x?= " + s;
  return s;
}

Deno.test("property: random Unicode subjects, names and bodies round-trip through mailparser", async () => {
  const next = seededRandom(20260102);
  const composer = new MessageComposer(
    {
      from: "{{name}} <team@example.com>",
      toName: "{{name}}",
      subject: "{{name}}",
      text: "{{name}}",
      html: "<p>{{name}}</p>",
    },
    COLUMNS,
    OPTS,
  );
  for (let i = 0; i < 300; i++) {
    const value = randomText(next);
    const o = composer.render(recipient(["b@example.com", value], i + 2));
    assertWellFormedLines(o);
    const parsed = await parse(o);
    const context = JSON.stringify(value);
    assert.equal(parsed.subject ?? "", value, `subject ${context}`);
    assert.equal(parsed.text, value + "\n", `text ${context}`);
    assert.equal(parsed.html, "<p>" + escapeHtml(value) + "</p>\n", `html ${context}`);
    const to = parsed.to && !Array.isArray(parsed.to) ? parsed.to.value : [];
    assert.deepEqual(to, [{ address: "b@example.com", name: value }], `to ${context}`);
    assert.equal(parsed.from?.value[0].name, value, `from ${context}`);
  }
});

Deno.test("the header fast paths write exactly what the general formatters write", async (t) => {
  const next = seededRandom(99);
  const alphabet = [..."abcXYZ019 .,\"\\=?_<>@!#'-:;()[]"];
  const composer = new MessageComposer(
    {
      from: "a@example.com",
      toName: "{{name}}",
      subject: "Hi {{name}}",
      text: "t",
    },
    COLUMNS,
    OPTS,
  );
  for (let i = 0; i < 300; i++) {
    let value = "";
    const n = Math.floor(next() * 90);
    for (let j = 0; j < n; j++) value += alphabet[Math.floor(next() * alphabet.length)];
    await t.step(JSON.stringify(value), () => {
      const o = composer.render(recipient(["b@example.com", value]));
      assert.equal(header(o, "Subject") + "\r\n", formatUnstructured("Subject", "Hi " + value));
      assert.equal(header(o, "To") + "\r\n", formatMailbox("To", value, "b@example.com"));
    });
  }
});

Deno.test("a merged body line of 998 octets stays 7bit, 999 does not", async (t) => {
  const composer = new MessageComposer(
    { from: "a@example.com", subject: "s", text: "ab{{name}}cd\nx{{city}}" },
    COLUMNS,
    OPTS,
  );
  const cases: [number, number, string][] = [
    [994, 1, "7bit"],
    [995, 1, "quoted-printable"],
    [1, 997, "7bit"],
    [1, 998, "quoted-printable"],
  ];
  for (const [first, second, want] of cases) {
    await t.step(`${first} + ${second}`, async () => {
      const values = ["b@example.com", "n".repeat(first), "c".repeat(second)];
      const o = composer.render(recipient(values));
      assert.equal(header(o, "Content-Transfer-Encoding"), `Content-Transfer-Encoding: ${want}`);
      assertWellFormedLines(o);
      assert.equal((await parse(o)).text, `ab${values[1]}cd\nx${values[2]}\n`);
    });
  }
});

Deno.test("a render that throws leaves nothing behind for the next message", () => {
  const template = {
    from: "a@example.com",
    toName: "{{name}}",
    subject: "Hi {{name}}",
    text: "t {{name}}",
  };
  const composer = new MessageComposer(template, COLUMNS, OPTS);
  const good = recipient(["b@example.com", "Bob"], 3);
  assert.throws(
    () => composer.render({ ...recipient(["x@example.com", "X"]), address: "x@example.com>" }),
    TypeError,
  );
  assert.throws(
    () => composer.render({ ...recipient(["y@example.com", "Y"]), address: "" }),
    TypeError,
  );
  const fresh = new MessageComposer(template, COLUMNS, OPTS).render(good);
  assert.deepEqual(bytesOf(composer.render(good)), bytesOf(fresh));
});

// ---------------------------------------------------------------------------
// Differential: render() (fast paths, slab writers) against a message built
// only from the general formatters in mime.ts, byte for byte.

/** Values of every kind: ASCII, Latin-1, CJK, emoji, lone surrogates, controls, specials, long. */
function diffValue(next: () => number): string {
  const r = next();
  if (r < 0.3) {
    return ["Ann", "Bob", "Chloé", "Jürgen", "São Paulo", "Köln"][Math.floor(next() * 6)] +
      " " + Math.floor(next() * 1e6);
  }
  if (r < 0.35) return "";
  if (r < 0.5) {
    // ASCII with the characters that matter at piece edges, or words of a
    // length near where a header must fold (atoms, or a quoted-string).
    const kind = next();
    const alphabet = kind < 0.4
      ? 'ab _=?"\\<>&.,'
      : kind < 0.6
      ? "abcdefgh "
      : kind < 0.8
      ? "abc d,."
      : 'abc d,"\\';
    const length = kind < 0.4 ? Math.floor(next() * 8) : 45 + Math.floor(next() * 30);
    let v = "";
    for (let i = 0; i < length; i++) v += alphabet[Math.floor(next() * alphabet.length)];
    return kind < 0.4 ? v : v.replace(/^ +| +$/g, "x").replace(/ {2,}/g, " ");
  }
  if (r < 0.4) return "x".repeat(Math.floor(next() * 1100)); // 7bit line limits
  if (r < 0.43) return "ü".repeat(Math.floor(next() * 3000)); // slab changes mid-row
  const pieces = [
    ...POOLS,
    "\r\n",
    "\r",
    "\n",
    "\t",
    "\x00",
    "\x7f",
    "\u0085",
    "\u2028",
    "é\x7fé",
    "ü=ü=ü",
    "\ud800",
    "\udc00",
    "=_",
    "&<>\"'",
    ".",
    "\r\n.",
  ];
  let v = "";
  const n = Math.floor(next() * 12);
  for (let i = 0; i < n; i++) {
    const pool = [...pieces[Math.floor(next() * pieces.length)]];
    v += next() < 0.3 ? pool.join("") : pool[Math.floor(next() * pool.length)];
  }
  return v;
}

/** The message as the general formatters write it, in the composer's field order. */
function referenceMessage(
  template: MessageTemplate,
  r: Recipient,
  opts: { campaignId: string; now: number; allow8bit: boolean; boundary?: string },
): { bytes: Uint8Array; eightBit: boolean } {
  const columns = [...COLUMNS];
  const merge = (source: string) =>
    renderTemplate(bindTemplate(parseTemplate(source), columns), r.values);
  const mailbox = (source: string) => {
    const lt = source.lastIndexOf("<");
    if (lt < 0) return { name: "", address: source };
    let name = source.slice(0, lt).trim();
    if (name.startsWith('"') && name.endsWith('"')) name = name.slice(1, -1);
    return { name, address: source.slice(lt + 1, -1) };
  };
  const from = mailbox(template.from);
  const replyTo = template.replyTo === undefined ? undefined : mailbox(template.replyTo);
  const isStatic = (source: string) => !source.includes("{{");
  let head = "";
  let dynamic = "";
  const add = (source: string, line: () => string) => {
    if (isStatic(source)) head += line();
    else dynamic += line();
  };
  add(from.name, () => formatMailbox("From", merge(from.name), from.address));
  if (replyTo) {
    add(replyTo.name, () => formatMailbox("Reply-To", merge(replyTo.name), replyTo.address));
  }
  dynamic += template.toName === undefined
    ? `To: ${r.address}\r\n`
    : formatMailbox("To", merge(template.toName), r.address);
  add(template.subject, () => formatUnstructured("Subject", merge(template.subject)));
  head += "MIME-Version: 1.0\r\n";
  const domain = from.address.slice(from.address.indexOf("@") + 1);
  const parts: Uint8Array[] = [
    encoder.encode(
      head +
        `Date: ${
          formatDate(opts.now)
        }\r\nMessage-ID: <${opts.campaignId}.${r.line}@${domain}>\r\n` +
        dynamic,
    ),
  ];
  let eightBit = false;
  const body = (source: string, html: boolean) => {
    const bound = bindTemplate(parseTemplate(normalizeNewlines(source)), columns);
    let text = bound.statics[0];
    bound.fields.forEach((f, i) => {
      const v = r.values[f] ?? "";
      text += normalizeNewlines(html && !bound.raw[i] ? escapeHtml(v) : v) + bound.statics[i + 1];
    });
    if (text.length > 0 && !text.endsWith("\r\n")) text += "\r\n";
    const encoded = encodeBody(text, opts.allow8bit, opts.boundary);
    if (encoded.encoding === "8bit") eightBit = true;
    parts.push(
      encoder.encode(
        `Content-Type: text/${html ? "html" : "plain"}; charset=utf-8\r\n` +
          `Content-Transfer-Encoding: ${encoded.encoding}\r\n\r\n`,
      ),
      encoded.bytes,
    );
  };
  if (opts.boundary === undefined) body(template.text, false);
  else {
    const b = opts.boundary;
    parts.push(
      encoder.encode(`Content-Type: multipart/alternative;\r\n boundary="${b}"\r\n\r\n--${b}\r\n`),
    );
    body(template.text, false);
    parts.push(encoder.encode(`\r\n--${b}\r\n`));
    body(template.html!, true);
    parts.push(encoder.encode(`\r\n--${b}--\r\n`));
  }
  return { bytes: joinChunks(parts), eightBit };
}

const encoder = new TextEncoder();

Deno.test("render() writes byte for byte what the general formatters write, for random rows", async (t) => {
  const base = {
    from: "A <a@example.com>",
    subject: "Hello {{name}}",
    toName: "{{name}}",
    text: "Hi {{name}},\n\nGreetings from {{city}}.\n",
  };
  const templates: [string, MessageTemplate, boolean][] = [
    ["the CLI benchmark's template", base, false],
    ["with an HTML part", {
      ...base,
      html: "<p>Hi {{name}},</p>\n<p>{{{city}}} <b>{{name}}</b></p>",
    }, false],
    ["with 8bit allowed", { ...base, html: "<i>{{city}}</i>=" }, true],
    ["with non-ASCII statics and adjacent fields", {
      from: "Grüße Team <team@example.com>",
      subject: "Grüße, {{name}}{{city}}! ={{city}}?",
      toName: "{{name}} ({{city}})",
      text: "Ça va? {{name}}{{city}}\r\n.{{name}}=\n_{{city}}",
      html: "{{name}}_=<b>{{{name}}}</b>",
    }, false],
    ["with merge fields in From and Reply-To, no To name", {
      from: "{{name}} via Team <team@example.com>",
      replyTo: '"{{city}}" <reply@example.com>',
      subject: "{{city}}",
      text: "{{name}}",
    }, false],
    ["with ASCII statics that could join a value into =? or =_", {
      from: "a@example.com",
      subject: "={{name}}? {{city}}=",
      toName: "{{name}}={{city}}",
      text: "={{name}}_\n{{city}}=",
      html: "_{{name}}={{city}}",
    }, false],
    ["with a static text part between two parts of row bytes", {
      from: "a@example.com",
      toName: "{{name}}",
      subject: "Hello {{name}}",
      text: "static ".repeat(60),
      html: "<p>{{name}} {{city}}</p>",
    }, false],
    ["with lone surrogates at the edges of static pieces", {
      from: "a@example.com",
      toName: "\udc00{{name}}\ud800",
      subject: "\ud800{{name}}\udc00",
      text: "a\ud800{{name}}\udc00b{{city}}",
    }, false],
  ];
  const addresses = [
    "b@example.com",
    "a@b.co",
    "jürgen@example.org",
    `${"l".repeat(70)}@example.com`,
  ];
  for (const [name, template, allow8bit] of templates) {
    await t.step(name, () => {
      const next = seededRandom(name.length);
      const campaignId = "diff";
      let now = NOW;
      const composer = new MessageComposer(template, COLUMNS, {
        campaignId,
        now: () => now,
        allow8bit,
      });
      for (let i = 0; i < 2000; i++) {
        now = NOW + i * 400; // a new second every two or three rows
        const address = addresses[Math.floor(next() * next() * addresses.length)];
        const row = recipient(
          [address, diffValue(next), diffValue(next)],
          i + 2,
          /ü/.test(address),
        );
        const got = composer.render(row);
        const bytes = bytesOf(got);
        const boundary = /boundary="([^"]+)"/.exec(decoder.decode(bytes))?.[1];
        const want = referenceMessage(template, row, { campaignId, now, allow8bit, boundary });
        if (!bytes.every((b, j) => b === want.bytes[j]) || bytes.length !== want.bytes.length) {
          assert.equal(
            decoder.decode(bytes),
            decoder.decode(want.bytes),
            JSON.stringify(row.values),
          );
          assert.deepEqual(bytes, want.bytes, JSON.stringify(row.values));
        }
        assert.equal(got.eightBit, want.eightBit, JSON.stringify(row.values));
      }
    });
  }
  await t.step("values that complete the boundary across a junction", () => {
    const template = {
      from: "a@example.com",
      subject: "s",
      text: "a={{name}}\n{{name}}{{city}}\n",
      html: "{{{city}}}",
    };
    const composer = new MessageComposer(template, COLUMNS, { campaignId: "diff", now: () => NOW });
    const first = decoder.decode(bytesOf(composer.render(recipient(["b@example.com", "x", "y"]))));
    const boundary = /boundary="([^"]+)"/.exec(first)![1];
    const rows = [
      ["b@example.com", boundary.slice(1), "y"],
      ["b@example.com", "x=", boundary.slice(1)],
      ["b@example.com", "x", boundary],
      ["b@example.com", "=", "_" + boundary.slice(2)],
    ];
    for (const values of rows) {
      const row = recipient(values);
      const got = bytesOf(composer.render(row));
      const want = referenceMessage(template, row, {
        campaignId: "diff",
        now: NOW,
        allow8bit: false,
        boundary,
      });
      assert.equal(decoder.decode(got), decoder.decode(want.bytes), JSON.stringify(values));
    }
  });
});

/** Rows with ASCII and non-ASCII values of varied lengths, lines from 2. */
function variedRows(n: number, seed: number): Recipient[] {
  const next = seededRandom(seed);
  const names = ["Ann", "Jürgen", "東京 Taro", "O'Brien", 'Zoë "Z" Smith', "x".repeat(90)];
  const rows: Recipient[] = [];
  for (let i = 0; i < n; i++) {
    const name = names[Math.floor(next() * names.length)] + " " + i;
    const local = next() < 0.05 ? `jörg${i}` : `user${i}`;
    rows.push(recipient([`${local}@example.com`, name, "Köln"], i + 2, local.startsWith("j")));
  }
  return rows;
}

const RELEASE_TEMPLATE = {
  from: "Team <team@example.com>",
  toName: "{{name}}",
  subject: "Hello {{name}}",
  text: "Hi {{name}},\nsee you in {{city}}.\n",
};

Deno.test("MessageComposer.release() lets later messages reuse a sent message's memory, never a held one's", () => {
  const composer = new MessageComposer(RELEASE_TEMPLATE, COLUMNS, OPTS);
  const rows = variedRows(6000, 7);
  const held: [Outgoing, Uint8Array][] = [];
  const releasedBuffers = new Set<ArrayBufferLike>();
  let reused = 0;
  const next = seededRandom(8);
  for (const r of rows) {
    const m = composer.render(r);
    const bytes = bytesOf(m).slice();
    for (const c of m.data) if (releasedBuffers.has(c.buffer)) reused++;
    if (next() < 0.9) {
      for (const c of m.data) if (c.length > 100) releasedBuffers.add(c.buffer);
      composer.release(m);
      composer.release(m); // twice does nothing
      assert.throws(() => m.data, TypeError);
    } else held.push([m, bytes]);
  }
  assert.ok(reused > 0, "some later message was written into released memory");
  for (const [m, bytes] of held) {
    assert.deepEqual(bytesOf(m), bytes, `line ${m.line} unchanged while held`);
  }
});

Deno.test("MessageComposer.pack() keeps a batch compactly and gives back the same messages", () => {
  const composer = new MessageComposer(RELEASE_TEMPLATE, COLUMNS, OPTS);
  const rows = variedRows(1000, 9);
  for (let at = 0; at < rows.length; at += 100) {
    const batch = rows.slice(at, at + 100).map((r) => composer.render(r));
    const fields = (m: Outgoing) => ({
      line: m.line,
      from: m.from,
      to: m.to,
      smtpUtf8: m.smtpUtf8,
      eightBit: m.eightBit,
      messageId: m.messageId,
      size: m.size,
      bytes: bytesOf(m).slice(),
    });
    const want = batch.map(fields);
    const packed = composer.pack(batch)!;
    assert.equal(packed.length, batch.length);
    for (let i = 0; i < packed.length; i++) {
      const m = packed.message(i);
      assert.equal(packed.line(i), want[i].line);
      assert.equal(packed.to(i), want[i].to);
      assert.deepEqual(fields(m), want[i]);
      composer.release(m);
    }
  }
  const copy = detachMessage(composer.render(rows[0]));
  assert.equal(composer.pack([copy]), undefined, "only messages the composer rendered");
});
