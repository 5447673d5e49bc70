/**
 * `bun run demo`, end to end, as a newcomer runs it: the README's first command must keep
 * working. It builds with real nix, publishes to and verifies against the loopback server, boots
 * the chain when QEMU is installed, and leaves nothing behind.
 */
import { expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { qemuMissing } from "./support/netboot-vm.ts";
import { cleanEnv, ROOT, runBun, runScript } from "./support/run.ts";

const DEMO = join(ROOT, "demo", "demo.ts");

const workDir = (output: string) => /\(working in (\S+);/.exec(output)?.[1];
const serverUrl = (output: string) => /^ {2}(http:\/\/127\.0\.0\.1:\d+), repository/m.exec(output)?.[1];
const serverIsDown = async (url: string) => fetch(`${url}/api/v1/version`).then(() => false, () => true);

/** The commands the demo tells a user to run against a real Forgejo, "script: flags" each. */
function nextCommands(output: string): Map<string, string[]> {
  const commands = new Map<string, string[]>();
  for (const line of output.slice(output.indexOf("What you do next")).split("\n")) {
    const script = /\bbun (?:--smol )?scripts\/([\w-]+\.ts)/.exec(line)?.[1];
    if (script) commands.set(script, line.match(/--[\w-]+/g) ?? []);
  }
  return commands;
}

test("bun run demo builds, publishes, verifies (signed) and boots a release, then cleans up", async () => {
  const { stdout, stderr, code } = await runBun(DEMO, []);
  if (code !== 0) console.error(stderr);
  expect(code).toBe(0);
  expect(stdout).toBe("");
  for (const step of ["[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"]) expect(stderr).toContain(step);
  expect(stderr).toContain("  $ FORGEJO_TOKEN=… bun scripts/publish-release.ts --dist ");
  expect(stderr).toMatch(/published: http:\/\/127\.0\.0\.1:\d+\/demo\/runner-images\/releases\/tag\/boot-v0\.1\.0/);
  expect(stderr).toContain("signature  good, by demo@runner-images");
  expect(stderr).toContain("verified: 4 files match the statement, signed by demo@runner-images");
  if (qemuMissing() === null) {
    expect(stderr).toMatch(/netboot-fixture: cmdline: .* runner\.config_url=https:\/\/10\.0\.2\.100:\d+\/v1\/machines\/52-54-00-12-34-56\/runner\.env/);
    expect(stderr).toContain("the release server saw downloads of: netboot-x86_64.ipxe, bzImage-x86_64, initrd-x86_64");
    expect(stderr).toMatch(/netboot-fixture: \.runner 600 root \/run\/forgejo-runner\/container\.runner \{"uuid":"[0-9a-f-]{36}","name":"demo-vm-[0-9a-f-]{36}","address":"http:\/\/127\.0\.0\.1:\d+","token":"\[redacted\]"\}/);
    expect(stderr).toMatch(/the registration the broker minted for this boot: id \d+, name demo-vm-[0-9a-f-]{36}/);
    expect(stderr).toMatch(/a second request for that boot: 409 /);
    expect(stderr).toMatch(/a request from 127\.0\.0\.2: 403 /);
    expect(stderr).toContain('"event":"served"');
    expect(stderr).toContain("proven:");
  } else {
    expect(stderr).toContain(`skipped: ${qemuMissing()}`);
  }
  // What to run next with a real server: flags the scripts know, and a release verify-release accepts.
  const next = nextCommands(stderr);
  expect([...next.keys()]).toEqual(["build-images.ts", "publish-release.ts", "verify-release.ts"]);
  for (const [script, flags] of next) {
    const help = await runScript(script, ["--help"]);
    expect(help.code).toBe(0);
    for (const flag of flags) expect(`${script}: ${help.stdout}`).toContain(`${flag} `);
  }
  expect(next.get("publish-release.ts")).toEqual(expect.arrayContaining(["--server", "--repo", "--tag", "--signing-key"]));
  // verify-release requires a trust anchor, and the repository's allowed_signers does not know a new key.
  expect(next.get("verify-release.ts")).toEqual(expect.arrayContaining(["--server", "--repo", "--tag", "--signer-fingerprint"]));
  expect(stderr).not.toContain("fjt_demo_"); // the throwaway token is never shown
  expect(existsSync(workDir(stderr)!)).toBe(false);
  expect(await serverIsDown(serverUrl(stderr)!)).toBe(true);
}, 600_000);

test("bun run demo --keep leaves the release downloadable until Ctrl-C, then cleans up (also when the Ctrl-C comes twice)", async () => {
  const child = Bun.spawn([process.execPath, DEMO, "--keep", "--skip-boot"], { cwd: ROOT, env: cleanEnv(), stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  try {
    let stderr = "";
    const decoder = new TextDecoder();
    const reader = child.stderr.getReader();
    while (!stderr.includes("Press Ctrl-C")) {
      const { value, done } = await reader.read();
      if (done) break;
      stderr += decoder.decode(value);
    }
    expect(stderr).toContain("skipped: --skip-boot was given");
    const sumsUrl = /try {2}curl (\S+\/SHA256SUMS)/.exec(stderr)?.[1];
    const response = await fetch(sumsUrl!);
    expect(response.status).toBe(200);
    expect(await response.text()).toContain("  netboot-x86_64.ipxe\n");
    // The page it says to open in a browser is the release's web page, with its download links.
    const pageUrl = /or open (\S+) in a browser/.exec(stderr)?.[1];
    const page = await fetch(pageUrl!);
    expect(page.headers.get("content-type")).toStartWith("text/html");
    expect(await page.text()).toContain(`${sumsUrl!.replace(/SHA256SUMS$/, "netboot-x86_64.ipxe")}"`);

    // Ctrl-C on `bun run demo` reaches the demo twice: from the terminal, and forwarded by
    // `bun run` a moment later, while the first one's clean-up runs. It must still clean up.
    child.kill("SIGINT");
    while (!stderr.includes("interrupted (SIGINT)")) {
      const { value, done } = await reader.read();
      if (done) break;
      stderr += decoder.decode(value);
    }
    child.kill("SIGINT");
    expect(await child.exited).toBe(130);
    expect(existsSync(workDir(stderr)!)).toBe(false);
    expect(await serverIsDown(serverUrl(stderr)!)).toBe(true);
  } finally {
    child.kill();
  }
}, 600_000);

test("a failing step (nix missing) ends the demo with one error line, exit 1, and nothing left behind", async () => {
  const bin = mkdtempSync(join(tmpdir(), "runner-images-demo-bin-"));
  try {
    for (const tool of ["bash", "git"]) symlinkSync(Bun.which(tool)!, join(bin, tool));
    const { stderr, code } = await runBun(DEMO, [], { env: cleanEnv({ PATH: bin }) });
    expect(code).toBe(1);
    expect(stderr).toContain("error: nix is not on PATH");
    expect(stderr).toContain("error: build-images.ts failed (exit 1); its output is above");
    expect(existsSync(workDir(stderr)!)).toBe(false);
  } finally {
    rmSync(bin, { recursive: true, force: true });
  }
}, 60_000);
