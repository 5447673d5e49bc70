/**
 * The netboot promise, kept for real: a dist built by build-images.ts (real nix, the bootable
 * fixture: Debian's kernel and a busybox initrd), published by publish-release.ts to the
 * Forgejo-compatible server, booted by real iPXE in QEMU chaining the release's
 * netboot-x86_64.ipxe from its download URL through the operator's script of the runbook.
 * The guest reaches only the two loopback servers (tests/support/netboot-vm.ts says how).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stageNetbootRelease, STAGE_ENV_PATH, STAGE_REPO, STAGE_TAG, type NetbootStage } from "./support/netboot-release.ts";
import { bootChain, cmdlineSeen, GUEST_MAC_HEXHYP, guestUrl, operatorCmdline, operatorScript, qemuMissing, serveFiles, type BootResult } from "./support/netboot-vm.ts";

const cannotBoot = qemuMissing();
const SECRET = "0123456789abcdef0123456789abcdef01234567";
const RUNNER_ENV = `FORGEJO_RUNNER_SECRET=${SECRET}\nFORGEJO_URL=http://forgejo.invalid\nFORGEJO_RUNNER_NAME=vm1\n`;

describe.skipIf(cannotBoot !== null)(`the published netboot chain boots in QEMU${cannotBoot ? ` (skipped: ${cannotBoot})` : ""}`, () => {
  let stage: NetbootStage | undefined;
  let releaseScript: string;
  let boot: BootResult;

  beforeAll(async () => {
    stage = await stageNetbootRelease(RUNNER_ENV);
    releaseScript = await (await fetch(stage.downloadUrl)).text();
    stage.forge.requests.length = 0; // from here on: what the booting machine asked for
    boot = await bootChain({ script: stage.script, ports: stage.ports, workDir: join(stage.scratch, "vm") });
    if (!boot.completed) console.error(`the VM did not finish${boot.timedOut ? " (timed out)" : ""}; its serial console:\n${boot.serial}`);
  }, 600_000);

  afterAll(async () => {
    await stage?.stop();
  });

  test("the machine fetched the release script, then the kernel and initrd by their rewritten relative names", () => {
    const base = `/${STAGE_REPO}/releases/download/${STAGE_TAG}`;
    expect(stage!.forge.requests.map((r) => `${r.method} ${r.path} ${r.status}`)).toEqual([
      `GET ${base}/netboot-x86_64.ipxe 200`,
      `GET ${base}/bzImage-x86_64 200`,
      `GET ${base}/initrd-x86_64 200`,
    ]);
    expect(stage!.forge.requests.some((r) => r.auth)).toBe(false); // anonymous downloads, as iPXE makes them
  });

  test("the kernel command line is the release script's parameters plus the operator's cmdline", () => {
    expect(boot.completed).toBe(true);
    const kernelLine = releaseScript.split("\n").find((l) => l.startsWith("kernel "))!;
    const imageParams = kernelLine.split(" ").slice(2).join(" ");
    expect(imageParams).toContain("${cmdline}");
    const configUrl = stage!.configUrl.replace("${net0/mac:hexhyp}", GUEST_MAC_HEXHYP);
    expect(cmdlineSeen(boot.serial)).toBe(imageParams.replace("${cmdline}", operatorCmdline(configUrl)));
  });

  test("the initrd's registration script fetched the machine's runner.env from runner.config_url", () => {
    expect(boot.serial).toContain("forgejo-runner-secret: fetching the runner configuration named by the runner.config_url kernel parameter");
    expect(stage!.config.requests).toEqual([{ method: "GET", path: STAGE_ENV_PATH, status: 200 }]);
  });

  test("the registration script wrote the runner's credential from the fetched runner.env, mode 0600", () => {
    expect(boot.serial).toContain("netboot-fixture: runner-secret.sh exit 0");
    const line = /^netboot-fixture: \.runner (\d+) (\S+) (\S+) (.*)$/m.exec(boot.serial);
    expect(line?.slice(1, 4)).toEqual(["600", "root", "/run/forgejo-runner/container.runner"]);
    const runner = JSON.parse(line![4]!) as Record<string, unknown>;
    // forgejo-runner's uuidFromSecret: the secret's first 16 characters as the UUID's bytes.
    const hex = Buffer.from(SECRET.slice(0, 16)).toString("hex");
    expect(runner).toMatchObject({
      uuid: `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`,
      name: "vm1",
      token: SECRET,
      address: "http://forgejo.invalid",
    });
  });
});

test.skipIf(cannotBoot !== null)("a chain that cannot load its script ends the VM at once, not at the timeout", async () => {
  const empty = serveFiles({});
  const workDir = mkdtempSync(join(tmpdir(), "runner-images-netboot-"));
  try {
    const script = operatorScript(guestUrl(`${empty.url}/missing/netboot-x86_64.ipxe`), "http://10.0.2.100:1/none.env");
    const result = await bootChain({ script, ports: [empty.port], workDir, timeoutMs: 120_000 });
    expect(result.serial).toContain("netboot-x86_64.ipxe... No such file or directory");
    expect(result).toMatchObject({ completed: false, timedOut: false });
    expect(empty.requests.map((r) => `${r.path} ${r.status}`)).toEqual(["/missing/netboot-x86_64.ipxe 404"]);
  } finally {
    empty.stop();
    rmSync(workDir, { recursive: true, force: true });
  }
}, 300_000);
