/**
 * scripts/setup.sh, the README's first command: on a machine that has everything it does
 * nothing; as a user other than root it says what it needs instead of failing inside apt or nix.
 * The user is simulated with an `id` (and `sudo`) on PATH ahead of the real tools.
 */
import { afterAll, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT } from "./support/run.ts";

const SETUP = join(ROOT, "scripts", "setup.sh");
const scratch = mkdtempSync(join(tmpdir(), "runner-images-setup-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A directory of fake commands, put first on PATH. */
function fakeBin(name: string, tools: Record<string, string>): string {
  const dir = join(scratch, name);
  mkdirSync(dir);
  for (const [tool, body] of Object.entries(tools)) {
    writeFileSync(join(dir, tool), `#!/bin/sh\n${body}\n`);
    chmodSync(join(dir, tool), 0o755);
  }
  return dir;
}

/** `id` as it answers for user "newcomer" (uid 1000), a member of `groups`. */
const fakeId = (groups: string) =>
  `case "$1" in -u) echo 1000;; -un) echo newcomer;; -nG) echo ${groups};; *) echo "uid=1000(newcomer)";; esac`;

const run = (bin?: string) =>
  Bun.spawnSync(["bash", SETUP], {
    cwd: ROOT,
    env: { PATH: bin ? `${bin}:${process.env.PATH}` : process.env.PATH!, HOME: process.env.HOME! },
    stdout: "pipe",
    stderr: "pipe",
  });

const haveNixUsers = Bun.spawnSync(["getent", "group", "nix-users"]).exitCode === 0;

test("on a machine that has everything, setup.sh installs nothing and says nothing", () => {
  // Never installs from a test: an apt-get or npm call fails it, and says what it wanted.
  const result = run(fakeBin("no-installs", { "apt-get": 'echo "would run apt-get $*" >&2; exit 1', npm: 'echo "would run npm $*" >&2; exit 1' }));
  expect(result.stdout.toString() + result.stderr.toString()).toBe("");
  expect(result.exitCode).toBe(0);
});

test.skipIf(!haveNixUsers)("a user outside nix-users, without sudo: one line saying root is needed, exit 1", () => {
  const result = run(fakeBin("no-sudo", { id: fakeId("newcomer") }));
  expect(result.stderr.toString()).toBe("setup.sh: adding newcomer to the group nix-users needs root: run it as root, or with sudo installed\n");
  expect(result.exitCode).toBe(1);
});

test.skipIf(!haveNixUsers)("a user outside nix-users, with sudo: added to the group (Nix's daemon is open to it only), told to log in again", () => {
  const log = join(scratch, "sudo.log");
  const result = run(fakeBin("with-sudo", { id: fakeId("newcomer"), sudo: `echo "$*" >> ${log}` }));
  expect(existsSync(log) && readFileSync(log, "utf8")).toBe("adduser -q newcomer nix-users\n");
  expect(result.stderr.toString()).toContain("setup.sh: added newcomer to the group nix-users (Nix's daemon is open to it only): log in again");
  expect(result.exitCode).toBe(1);
});

/**
 * PATH with every command the machine has except `without`: links to the first of each name on
 * the real PATH, the way a machine that never installed them would look.
 */
function pathWithout(name: string, without: string[], extra: Record<string, string>): string {
  const dir = fakeBin(name, extra);
  for (const source of process.env.PATH!.split(":")) {
    if (!existsSync(source)) continue;
    for (const entry of readdirSync(source)) {
      if (without.includes(entry) || existsSync(join(dir, entry))) continue;
      symlinkSync(join(source, entry), join(dir, entry));
    }
  }
  return dir;
}

test("a machine without go or python3 gets Debian's golang-go and python3, so the Go-encoder and driver-call tests run", () => {
  const log = join(scratch, "apt.log");
  const bin = pathWithout("no-go", ["go", "python3"], { "apt-get": `echo "$*" >> ${log}` });
  const result = Bun.spawnSync(["bash", SETUP], {
    cwd: ROOT,
    env: { PATH: bin, HOME: process.env.HOME! },
    stdout: "pipe",
    stderr: "pipe",
  });
  expect(result.stderr.toString()).toBe("");
  expect(result.stdout.toString()).toBe("installing golang-go python3 from Debian\n");
  expect(readFileSync(log, "utf8")).toBe("update -qq\ninstall -y -qq golang-go python3\n");
  expect(result.exitCode).toBe(0);
});
