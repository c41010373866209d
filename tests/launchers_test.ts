/**
 * Every way mass-mailer is launched passes the same V8 heap settings
 * (cli/v8_flags.ts), and this Deno's V8 accepts them and honours them.
 */
import assert from "node:assert/strict";
import { V8_FLAGS, V8_FLAGS_ARG } from "../cli/v8_flags.ts";
import { compileArgs, outputOf, PERMISSIONS } from "../scripts/compile.ts";

const config = JSON.parse(
  await Deno.readTextFile(new URL("../deno.json", import.meta.url)),
) as { tasks: Record<string, string> };

Deno.test("launchers pass the V8 heap settings", async (t) => {
  await t.step("the binary bakes them in", () => {
    assert.ok(compileArgs("out").includes(V8_FLAGS_ARG));
  });
  await t.step("deno task compile -- PATH writes PATH (the task passes the -- through)", () => {
    assert.equal(outputOf(["--", "/tmp/bin"]), "/tmp/bin");
    assert.equal(outputOf(["/tmp/bin"]), "/tmp/bin");
    assert.equal(outputOf([]), "mass-mailer");
  });
  for (const task of ["demo", "mass-mailer"]) {
    await t.step(`deno task ${task}`, () => {
      const words = runCommand(config.tasks[task]);
      assert.equal(words[0], "deno");
      assert.equal(words[1], "run");
      assert.ok(words.includes(V8_FLAGS_ARG), `${task}: ${config.tasks[task]}`);
    });
  }
  await t.step("deno task mass-mailer grants what the binary grants", () => {
    const words = runCommand(config.tasks["mass-mailer"]);
    assert.deepEqual(words.filter((w) => w.startsWith("--allow")), [...PERMISSIONS]);
    assert.equal(words.at(-1), '"$MASS_MAILER_ROOT/cli.ts"');
  });
});

/** This process's environment without INIT_CWD. */
function withoutInitCwd(): Record<string, string> {
  const env = Deno.env.toObject();
  delete env.INIT_CWD;
  return env;
}

/** The words of the `deno run ...` command in a task (after any `cd ... &&`). */
function runCommand(task: string): string[] {
  const commands = task.split(" && ");
  return commands.find((c) => c.startsWith("deno run"))!.split(" ");
}

Deno.test("deno task mass-mailer runs in the caller's directory: relative paths are the caller's", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mass-mailer-task-" });
  try {
    await Deno.writeTextFile(`${dir}/list.csv`, "email,name\nann@example.com,Ann\n");
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "task",
        "--quiet",
        "--config",
        new URL("../deno.json", import.meta.url).pathname,
        "mass-mailer",
        "send",
        "list.csv",
        "--transport",
        "fake",
        "--latency",
        "1",
        "--from",
        "team@example.com",
        "--subject",
        "Hi {{name}}",
        "--text",
        "Hello",
        "--json",
        "--progress",
        "none",
      ],
      cwd: dir,
      // As a user's shell would: `deno task` sets INIT_CWD only when it is not set yet, and
      // this test may itself run under `deno task test`, which set it to the checkout.
      env: withoutInitCwd(),
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    const summary = JSON.parse(new TextDecoder().decode(out.stdout));
    assert.equal(summary.sent, 1);
    // The report lands beside the CSV, in the caller's directory.
    assert.ok((await Deno.stat(`${dir}/list.csv.report.csv`)).isFile);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("this Deno's V8 knows the heap settings and keeps the young generation to them", async () => {
  // Objects that outlive scavenges make V8 grow the young generation to its limit.
  const code = `
    import v8 from "node:v8";
    const keep = [];
    for (let i = 0; i < 4e6; i++) {
      keep.push({ i, s: "x" + i });
      if (keep.length > 400000) keep.length = 0;
    }
    const s = v8.getHeapSpaceStatistics().find((x) => x.space_name === "new_space");
    console.log(s.space_size);
  `;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", V8_FLAGS_ARG, code],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  // An unknown flag makes Deno exit 1 with "V8 did not recognize flag".
  assert.equal(out.code, 0, stderr);
  const newSpace = Number(new TextDecoder().decode(out.stdout).trim());
  const semi = Number(
    V8_FLAGS.find((f) => f.startsWith("--max-semi-space-size="))!.split("=")[1],
  );
  // V8's young generation is up to three semi-spaces (see YoungGenerationSizeFromSemiSpaceSize).
  assert.ok(newSpace > 0 && newSpace <= 3 * semi * 2 ** 20, `new space ${newSpace} bytes`);
});
