/**
 * The QEMU tests of `nix flake check` (nix/boot-tests.nix, nix/forgejo-boot-test.nix) end in
 * minutes when something is missing, never at the driver's one-hour global timeout: no command
 * can block on a process it leaves behind, and no wait is without a bound. The scripts are
 * evaluated from the flake here (tests/flake-eval/eval.nix) and read with Python's own parser
 * (tests/support/driver-calls.py, which names the driver source the rules come from).
 *
 * What a maintainer would notice: a check that hangs for an hour, then fails saying nothing.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { copyFlake, HAVE_LIB, mustEval, ROOT } from "./flake-eval/harness.ts";

const HAVE_PYTHON = Bun.which("python3") !== null;
const CHECKER = join(ROOT, "tests", "support", "driver-calls.py");
/** Each test evaluates the flake once or twice (seconds each, more on a loaded machine). */
const EVAL_MS = 120_000;

interface Problem {
  where: string;
  rule: "timeout" | "detached" | "unbounded" | "console";
  call: string;
  command?: string;
}

/** Every NixOS test script of checks.x86_64-linux, by check name. */
function scriptsOf(flakeDir: string): Record<string, string> {
  return mustEval(flakeDir, "bootTests")["x86_64-linux"] ?? {};
}

function problemsIn(scripts: Record<string, string>): Record<string, Problem[]> {
  const result = spawnSync("python3", [CHECKER], { input: JSON.stringify(scripts), encoding: "utf8" });
  if (result.status !== 0) throw new Error(`driver-calls.py failed (status ${result.status}, ${result.signal ?? "no signal"}, ${result.error?.message ?? "no error"}):\n${result.stderr}`);
  return JSON.parse(result.stdout);
}

const scratch = await mkdtemp(join(tmpdir(), "runner-images-waits-"));
afterAll(() => rm(scratch, { recursive: true, force: true }));

/** A copy of the flake whose nix/<file> has `from` replaced by `to` (exactly once). */
async function mutated(name: string, from: string, to: string, file = "boot-tests.nix") {
  const dir = await copyFlake(join(scratch, name));
  const path = join(dir, "nix", file);
  const text = await readFile(path, "utf8");
  expect(text.split(from).length - 1, `${from} occurs once in nix/${file}`).toBe(1);
  await writeFile(path, text.replace(from, to));
  return dir;
}

describe.skipIf(!HAVE_LIB || !HAVE_PYTHON)(
  `the boot tests' driver calls${HAVE_LIB && HAVE_PYTHON ? "" : " (skipped: needs ../shared/nixpkgs-lib and python3)"}`,
  () => {
    test("no command can block on a process it leaves behind, and every wait has a bound", async () => {
      const scripts = scriptsOf(await copyFlake(join(scratch, "as-is")));
      expect(Object.keys(scripts).length).toBeGreaterThan(0);
      const problems = problemsIn(scripts);
      expect(Object.values(problems).flat()).toEqual([]);
      // the host-mode test does leave a process behind, on purpose, and it is checked
      const host = Object.entries(scripts).find(([name]) => name.startsWith("security-") && name.endsWith("-host-mode"));
      expect(host?.[1]).toContain("setsid -f sleep");
    }, EVAL_MS);

    test("a detached command without its redirects is found (the hang of issue 22)", async () => {
      const dir = await mutated("no-redirect", "setsid -f sleep 100000 </dev/null >/dev/null 2>&1", "setsid -f sleep 100000");
      const found = Object.values(problemsIn(scriptsOf(dir))).flat();
      expect(found).toEqual([expect.objectContaining({ rule: "detached", call: "succeed", command: expect.stringContaining("setsid -f sleep 100000") })]);
    }, EVAL_MS);

    test("a background job with only stdout redirected is found", async () => {
      const dir = await mutated("half-redirect", "setsid -f sleep 100000 </dev/null >/dev/null 2>&1", "sleep 100000 >/dev/null &");
      const found = Object.values(problemsIn(scriptsOf(dir))).flat();
      expect(found.map((p) => p.rule)).toEqual(["detached"]);
    }, EVAL_MS);

    test("a command without a timeout is found", async () => {
      const dir = await mutated("no-timeout", 'machine.succeed("test -S /run/docker.sock", timeout=COMMAND_SECONDS)', 'machine.succeed("test -S /run/docker.sock")');
      const found = Object.values(problemsIn(scriptsOf(dir))).flat();
      expect(found).toEqual([expect.objectContaining({ rule: "timeout", call: "succeed" })]);
    }, EVAL_MS);

    test("wait_for_console_text, and a bare connect or shutdown, are found", async () => {
      const console = await mutated(
        "console-text",
        'wait_for_console(machine, r"reboot: Restarting system", timeout=BOOT_SECONDS, since=before_reboot)',
        'machine.wait_for_console_text("reboot: Restarting system")',
      );
      expect(Object.values(problemsIn(scriptsOf(console))).flat().map((p) => p.rule)).toEqual(["console"]);
      const shutdown = await mutated("bare-shutdown", 'within(COMMAND_SECONDS, f"{machine.name}: power off", machine.shutdown)', "machine.shutdown()", "boot-test-helpers.py");
      // power_off is shared, so every test script that powers off has the problem
      const rules = Object.values(problemsIn(scriptsOf(shutdown))).flat().map((p) => p.rule);
      expect(rules.length).toBeGreaterThan(0);
      expect(new Set(rules)).toEqual(new Set(["unbounded"]));
    }, EVAL_MS);
  },
);
