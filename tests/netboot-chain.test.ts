/**
 * The netboot promise, kept for real: a dist built by build-images.ts (real nix, the bootable
 * fixture: Debian's kernel and a busybox initrd), published by publish-release.ts to the
 * Forgejo-compatible server, booted by real iPXE in QEMU chaining the release's
 * netboot-x86_64.ipxe from its download URL through the operator's script of the runbook.
 * The guest reaches only the loopback servers (tests/support/netboot-vm.ts says how): the release's
 * Forgejo and the boot broker (scripts/boot-broker.ts over HTTPS, its CA in the initrd), which
 * mints the machine's credential for this boot on a v15 test Forgejo.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stageNetbootRelease, STAGE_MACHINE, STAGE_REPO, STAGE_TAG, type NetbootStage } from "./support/netboot-release.ts";
import { bootChain, cmdlineSeen, GUEST_MAC, GUEST_MAC_HEXHYP, guestUrl, operatorCmdline, operatorScript, qemuMissing, serveFiles, type BootResult } from "./support/netboot-vm.ts";
import { ask } from "./support/broker.ts";

const cannotBoot = qemuMissing();

describe.skipIf(cannotBoot !== null)(`the published netboot chain boots in QEMU against the boot broker${cannotBoot ? ` (skipped: ${cannotBoot})` : ""}`, () => {
  let stage: NetbootStage | undefined;
  let releaseScript: string;
  let boot: BootResult;

  beforeAll(async () => {
    stage = await stageNetbootRelease({ broker: true });
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

  test("the initrd's registration script asked the broker over HTTPS, and the broker minted one registration for this boot", () => {
    expect(boot.serial).toContain("forgejo-runner-secret: fetching the runner configuration named by the runner.config_url kernel parameter");
    const { run, forge } = stage!.broker!;
    const served = run.log().filter((l) => l.event === "served");
    expect(served).toHaveLength(1);
    const live = forge.runners.list();
    expect(live).toHaveLength(1);
    expect(served[0]).toMatchObject({ machine: STAGE_MACHINE.name, mac: GUEST_MAC, source: "127.0.0.1", credential: "minted", registration: live[0]!.id });
    expect(served[0]!.boot).toMatch(/^[0-9a-f-]{36}$/);
    expect(live[0]!.name).toBe(`${STAGE_MACHINE.name}-${served[0]!.boot}`);
  });

  test("the registration script wrote the minted credential (uuid and token of that registration), mode 0600", () => {
    expect(boot.serial).toContain("netboot-fixture: runner-secret.sh exit 0");
    const line = /^netboot-fixture: \.runner (\d+) (\S+) (\S+) (.*)$/m.exec(boot.serial);
    expect(line?.slice(1, 4)).toEqual(["600", "root", "/run/forgejo-runner/container.runner"]);
    const runner = JSON.parse(line![4]!) as { uuid: string; token: string; id: number; address: string };
    const { forge } = stage!.broker!;
    const registration = forge.runners.list()[0]!;
    expect(runner).toMatchObject({ uuid: registration.uuid, id: registration.id, address: forge.url });
    // The token is the registration's own: Forgejo lets a runner connect with it.
    expect(forge.runners.connect(runner.uuid, runner.token)).toBe(true);
  });

  test("a second request in that boot is refused (409), and one from another address (403); neither mints", async () => {
    const { run, forge, tls } = stage!.broker!;
    const boot = String(run.log().find((l) => l.event === "served")!.boot);
    const again = await ask(run, tls, GUEST_MAC_HEXHYP, boot, "127.0.0.1");
    expect(again.status).toBe(409);
    const elsewhere = await ask(run, tls, GUEST_MAC_HEXHYP, crypto.randomUUID(), "127.0.0.2");
    expect(elsewhere.status).toBe(403);
    expect(forge.runners.all()).toHaveLength(1);
    expect(run.log().filter((l) => l.event === "refused").map((l) => l.status)).toEqual([409, 403]);
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
