import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
// deno-lint-ignore no-import-prefix -- the project imports npm packages inline (no import map)
import { simpleParser } from "npm:mailparser@^3";
import {
  boundaryOf,
  buildSendBatch,
  parseBatchResponse,
  rawOf,
  responseContentId,
  sendPath,
} from "./batch.ts";
import type { Outgoing } from "../../core/types.ts";

function out(bytes: Uint8Array[], line = 1): Outgoing {
  return {
    line,
    from: "a@example.com",
    to: "b@example.com",
    smtpUtf8: false,
    eightBit: false,
    messageId: "<x@example.com>",
    data: bytes,
    size: bytes.reduce((n, b) => n + b.length, 0),
  };
}

Deno.test("rawOf() is base64url without + / or padding and decodes to the exact bytes", async (t) => {
  // Bytes chosen so that standard base64 would contain '+' and '/'.
  const tricky = new Uint8Array([0xfb, 0xff, 0xbf, 0xfe, 0x3e, 0x3f, 0x00, 0x80]);
  const text = new TextEncoder().encode("Subject: Grüße — 東京\r\n\r\nÇa va?\r\n");
  const cases: Array<[string, Uint8Array[]]> = [
    ["one chunk", [tricky]],
    ["chunks", [tricky.subarray(0, 3), tricky.subarray(3), text]],
    ["a view into a larger buffer", [new Uint8Array(tricky.buffer, 2, 5)]],
    ["lengths 1..6", [tricky.subarray(0, 1), tricky.subarray(0, 2), tricky.subarray(0, 6)]],
  ];
  for (const [name, chunks] of cases) {
    await t.step(name, () => {
      const raw = rawOf(out(chunks));
      assert.match(raw, /^[A-Za-z0-9_-]+$/);
      const want = Buffer.concat(chunks.map((c) => Buffer.from(c)));
      assert.ok(Buffer.from(raw, "base64url").equals(want));
      assert.equal(raw, want.toString("base64url"));
    });
  }
  assert.ok(Buffer.from([0xfb, 0xff]).toString("base64").match(/[+/]/), "the case is tricky");
});

Deno.test("buildSendBatch() output parses with mailparser into one application/http part per call", async () => {
  const parts = [
    { id: "a.0.2", userId: "me", raw: "SGVsbG8" },
    { id: "a.1.3", userId: "ann@example.com", raw: "V29ybGQ_-w" },
    { id: "a.2.9", userId: "x y@example.com", raw: "QQ" },
  ];
  const req = buildSendBatch(parts, "batch_test123");
  assert.equal(req.contentType, "multipart/mixed; boundary=batch_test123");
  assert.ok(!/(?<!\r)\n/.test(req.body), "every line ends CRLF");
  const parsed = await simpleParser(`Content-Type: ${req.contentType}\r\n\r\n${req.body}`);
  assert.equal(parsed.attachments.length, parts.length);
  parsed.attachments.forEach((a, i) => {
    assert.equal(a.contentType, "application/http");
    assert.equal(a.contentId, `<${parts[i].id}>`);
    const inner = new TextDecoder().decode(a.content);
    const [head, body] = inner.split("\r\n\r\n");
    const [requestLine, ...headers] = head.split("\r\n");
    assert.equal(requestLine, `POST ${sendPath(parts[i].userId)}`);
    assert.ok(headers.includes("Content-Type: application/json"));
    assert.ok(headers.includes(`Content-Length: ${body.length}`));
    assert.deepEqual(JSON.parse(body), { raw: parts[i].raw });
  });
  assert.equal(sendPath("ann@example.com"), "/gmail/v1/users/ann@example.com/messages/send");
  assert.equal(sendPath("x y@example.com"), "/gmail/v1/users/x%20y@example.com/messages/send");
  assert.throws(() => buildSendBatch([{ id: "bad id", userId: "me", raw: "QQ" }]), TypeError);
});

// The example response of Google's "Batching requests" guide, typed from its
// published format: the same boundary scheme, a header line without a colon
// ("Content-Type application/json", a slip in the guide), and a 304 part
// without body.
const GOOGLE_EXAMPLE = [
  "--batch_foobarbaz",
  "Content-Type: application/http",
  "Content-ID: <response-item1:12930812@barnyard.example.com>",
  "",
  "HTTP/1.1 200 OK",
  "Content-Type application/json",
  "Content-Length: response_part_1_content_length",
  'ETag: "etag/pony"',
  "",
  "{",
  '  "kind": "farm#animal",',
  '  "etag": "etag/pony",',
  '  "selfLink": "/farm/v1/animals/pony",',
  '  "animalName": "pony",',
  '  "animalAge": 34,',
  '  "peltColor": "white"',
  "}",
  "",
  "--batch_foobarbaz",
  "Content-Type: application/http",
  "Content-ID: <response-item2:12930812@barnyard.example.com>",
  "",
  "HTTP/1.1 200 OK",
  "Content-Type: application/json",
  "Content-Length: response_part_2_content_length",
  'ETag: "etag/sheepv2"',
  "",
  "{",
  '  "kind": "farm#animal",',
  '  "etag": "etag/sheepv2",',
  '  "animalName": "sheep",',
  '  "animalAge": 5,',
  '  "peltColor": "green"',
  "}",
  "",
  "--batch_foobarbaz",
  "Content-Type: application/http",
  "Content-ID: <response-item3:12930812@barnyard.example.com>",
  "",
  "HTTP/1.1 304 Not Modified",
  'ETag: "etag/animals"',
  "",
  "--batch_foobarbaz--",
  "",
].join("\r\n");

Deno.test("parseBatchResponse() reads the example response of Google's batch guide", () => {
  const parts = parseBatchResponse("multipart/mixed; boundary=batch_foobarbaz", GOOGLE_EXAMPLE);
  assert.deepEqual(parts.map((p) => [p.contentId, p.status, p.statusText]), [
    ["item1:12930812@barnyard.example.com", 200, "OK"],
    ["item2:12930812@barnyard.example.com", 200, "OK"],
    ["item3:12930812@barnyard.example.com", 304, "Not Modified"],
  ]);
  assert.equal(JSON.parse(parts[0].body).animalName, "pony");
  assert.equal(JSON.parse(parts[1].body).peltColor, "green");
  assert.equal(parts[1].headers.get("etag"), '"etag/sheepv2"');
  assert.equal(parts[0].headers.get("content-type"), null, "the colon-less line is skipped");
  assert.equal(parts[2].body, "");
});

Deno.test("parseBatchResponse() tolerates LF line ends, quoted boundaries, preamble and epilogue", async (t) => {
  const body = (eol: string) =>
    [
      "preamble text",
      "--b'1",
      "Content-Type: application/http",
      "Content-ID: <response-x.1>",
      "",
      "HTTP/1.1 429 Too Many Requests",
      "Retry-After: 7",
      "",
      '{"error":{"code":429}}',
      "--b'1",
      "content-id:   <response-x.2>  ",
      "",
      "HTTP/1.1 200",
      "",
      '{"id":"m2"}',
      "--b'1--",
      "epilogue",
    ].join(eol);
  for (const eol of ["\r\n", "\n"]) {
    await t.step(JSON.stringify(eol), () => {
      const parts = parseBatchResponse('multipart/mixed; boundary="b\'1"', body(eol));
      assert.equal(parts.length, 2);
      assert.equal(parts[0].contentId, "x.1");
      assert.equal(parts[0].status, 429);
      assert.equal(parts[0].headers.get("retry-after"), "7");
      assert.equal(parts[0].body, '{"error":{"code":429}}');
      assert.equal(parts[1].contentId, "x.2");
      assert.equal(parts[1].statusText, "");
      assert.equal(parts[1].body, '{"id":"m2"}');
    });
  }
});

Deno.test("parseBatchResponse() refuses a body that is not the announced multipart", async (t) => {
  const cases: Array<[string, string | null, string]> = [
    ["JSON content type", "application/json", '{"error":{}}'],
    ["no content type", null, "--b\r\n"],
    ["missing boundary parameter", "multipart/mixed", "--b\r\n"],
    [
      "boundary not in body",
      "multipart/mixed; boundary=zz",
      "--b\r\n\r\nHTTP/1.1 200 OK\r\n\r\n{}\r\n--b--",
    ],
  ];
  for (const [name, type, body] of cases) {
    await t.step(name, () => assert.throws(() => parseBatchResponse(type, body), SyntaxError));
  }
});

Deno.test("boundaryOf() and responseContentId() read the header forms", () => {
  assert.equal(boundaryOf("multipart/mixed; boundary=batch_abc"), "batch_abc");
  assert.equal(boundaryOf('Multipart/Mixed; charset=x; Boundary="a b"'), "a b");
  assert.equal(boundaryOf("text/plain; boundary=x"), undefined);
  assert.equal(responseContentId("<response-7.1.2>"), "7.1.2");
  assert.equal(responseContentId(" <item1> "), "item1");
  assert.equal(responseContentId(null), undefined);
});
