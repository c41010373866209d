import assert from "node:assert/strict";
import {
  bindTemplate,
  escapeHtml,
  parseTemplate,
  renderTemplate,
  TemplateError,
  type TemplatePart,
} from "./template.ts";

Deno.test("parseTemplate() splits text and fields", async (t) => {
  const cases: [string, TemplatePart[]][] = [
    ["", []],
    ["plain", [{ type: "text", text: "plain" }]],
    ["Hi {{name}}!", [
      { type: "text", text: "Hi " },
      { type: "field", source: "{{name}}", name: "name", raw: false },
      { type: "text", text: "!" },
    ]],
    ["{{ first name }}", [{
      type: "field",
      source: "{{ first name }}",
      name: "first name",
      raw: false,
    }]],
    ["{{2}}", [{ type: "field", source: "{{2}}", name: "2", index: 2, raw: false }]],
    ["{{{html}}}", [{ type: "field", source: "{{{html}}}", name: "html", raw: true }]],
    ["a \\{{b}} c", [{ type: "text", text: "a {{b}} c" }]],
    ["\\{{x}}{{x}}", [
      { type: "text", text: "{{x}}" },
      { type: "field", source: "{{x}}", name: "x", raw: false },
    ]],
    ["} }} {", [{ type: "text", text: "} }} {" }]],
  ];
  for (const [source, want] of cases) {
    await t.step(JSON.stringify(source), () => assert.deepEqual(parseTemplate(source), want));
  }
});

Deno.test("parseTemplate() rejects unclosed and empty fields", async (t) => {
  for (const source of ["Hi {{name", "{{}}", "{{ }}", "{{{raw}}", "{{a{b}}"]) {
    await t.step(JSON.stringify(source), () => {
      assert.throws(
        () => parseTemplate(source, "subject"),
        (e) => e instanceof TemplateError && /subject/.test(e.message),
      );
    });
  }
});

Deno.test("bindTemplate() resolves names exactly, then case-insensitively, and indexes", async (t) => {
  const columns = ["email", "Name", "name", "City"];
  const cases: [string, number][] = [
    ["{{Name}}", 1],
    ["{{name}}", 2],
    ["{{city}}", 3],
    ["{{ CITY }}", 3],
    ["{{1}}", 0],
    ["{{4}}", 3],
  ];
  for (const [source, column] of cases) {
    await t.step(source, () => {
      const bound = bindTemplate(parseTemplate(source), columns);
      assert.deepEqual(bound.fields, [column]);
    });
  }
});

Deno.test("bindTemplate() lists every unknown field with where it is and the columns", () => {
  const columns = ["email", "name"];
  let error: unknown;
  try {
    bindTemplate([
      { where: "subject", parts: parseTemplate("Hi {{nmae}}") },
      { where: "text", parts: parseTemplate("{{name}} from {{city}} {{9}}") },
    ], columns);
  } catch (e) {
    error = e;
  }
  assert.ok(error instanceof TemplateError);
  assert.match(
    error.message,
    /^Unknown merge fields \{\{nmae\}\} in subject, \{\{city\}\} in text/,
  );
  assert.match(error.message, /\{\{9\}\} in text is out of range \(there are 2 columns\)/);
  assert.match(error.message, /columns are: email, name$/);
  assert.deepEqual(error.fields, ["{{nmae}}", "{{city}}", "{{9}}"]);
});

Deno.test("bindTemplate() names one unknown field in the documented form", () => {
  assert.throws(
    () => bindTemplate(parseTemplate("Hello {{nmae}}"), ["email", "name"], "subject"),
    {
      name: "TemplateError",
      message: "Unknown merge field {{nmae}} in subject; columns are: email, name",
    },
  );
});

Deno.test("bindTemplate() refuses an ambiguous case-insensitive match and raw fields outside html", () => {
  assert.throws(() => bindTemplate(parseTemplate("{{NAME}}"), ["Name", "name"]), /ambiguous/);
  assert.throws(
    () => bindTemplate([{ where: "subject", parts: parseTemplate("{{{name}}}") }], ["name"]),
    /raw field \{\{\{name\}\}\} in subject/,
  );
  assert.throws(() => bindTemplate(parseTemplate("{{0}}"), ["a"]), /out of range/);
});

Deno.test("renderTemplate() fills values, escapes HTML for {{x}} only, and treats missing values as empty", () => {
  const bound = bindTemplate(parseTemplate("<b>{{name}}</b> {{{name}}} [{{3}}]"), [
    "email",
    "name",
    "extra",
  ]);
  assert.equal(
    renderTemplate(bound, ["a@example.com", '<Tom & "Jo">']),
    '<b><Tom & "Jo"></b> <Tom & "Jo"> []',
  );
  assert.equal(
    renderTemplate(bound, ["a@example.com", "<Tom & 'Jo'>", "x"], true),
    "<b>&lt;Tom &amp; &#39;Jo&#39;&gt;</b> <Tom & 'Jo'> [x]",
  );
  assert.equal(escapeHtml(`&<>"'`), "&amp;&lt;&gt;&quot;&#39;");
});
