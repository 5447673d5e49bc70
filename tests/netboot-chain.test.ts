/**
 * The netboot promise, kept for real: a dist built by build-images.ts (real nix, the bootable
 * fixture: Debian's kernel and a busybox initrd), published by publish-release.ts to the
 * Forgejo-compatible server, booted by real iPXE in QEMU chaining the release's
 * netboot-x86_64.ipxe from its download URL through the operator's script of the runbook.
 * The guest reaches only the two loopback servers (tests/support/netboot-vm.ts says how).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeFixture, OFFLINE } from "./support/fixture-flake.ts";
import { startForgejo, type ForgejoServer } from "./support/forgejo-server.ts";
import {
  bootChain, cmdlineSeen, GUEST_MAC, guestUrl, makeBootFiles, operatorScript, qemuMissing, serveFiles, type BootResult,
} from "./support/netboot-vm.ts";
import { cleanEnv, runScript } from "./support/run.ts";

const cannotBoot = qemuMissing();
const TOKEN = "fjt_netboot_5a4b3c2d1e0f";
const REPO = "alice/images";
const TAG = "boot-v1.0.0";
const SECRET = "0123456789abcdef0123456789abcdef01234567";
// The runbook's per-machine file name: ${net0/mac:hexhyp}.env
const ENV_PATH = `/runners/${GUEST_MAC.replaceAll(":", "-")}.env`;

describe.skipIf(cannotBoot !== null)(`the published netboot chain boots in QEMU${cannotBoot ? ` (skipped: ${cannotBoot})` : ""}`, () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  let forge: ForgejoServer;
  let config: ReturnType<typeof serveFiles>;
  let releaseScript: string;
  let configUrl: string;
  let boot: BootResult;

  beforeAll(async () => {
    const bootDir = await mkdtemp(join(tmpdir(), "runner-images-boot-"));
    cleanups.push(() => rm(bootDir, { recursive: true, force: true }));
    const f = await makeFixture("bootable", { boot: await makeBootFiles(bootDir) });
    cleanups.push(() => rm(f.scratch, { recursive: true, force: true }));
    const dist = join(f.scratch, "dist");
    const built = await runScript("build-images.ts", ["--flake", f.dir, "--out", dist, "--target", "netboot-x86_64", ...OFFLINE]);
    if (built.code !== 0) throw new Error(`build-images.ts failed:\n${built.stderr}`);

    forge = await startForgejo({ owner: "alice", repo: "images", commits: [f.commit], tokens: { [TOKEN]: { user: "alice", access: "write" } } });
    cleanups.push(() => forge.stop());
    const published = await runScript("publish-release.ts", ["--dist", dist, "--server", forge.url, "--repo", REPO, "--tag", TAG], {
      env: cleanEnv({ FORGEJO_TOKEN: TOKEN }),
    });
    if (published.code !== 0) throw new Error(`publish-release.ts failed:\n${published.stderr}`);
    const downloadUrl = `${forge.url}/${REPO}/releases/download/${TAG}/netboot-x86_64.ipxe`;
    releaseScript = await (await fetch(downloadUrl)).text();

    config = serveFiles({ [ENV_PATH]: `FORGEJO_RUNNER_SECRET=${SECRET}\nFORGEJO_URL=http://forgejo.invalid\nFORGEJO_RUNNER_NAME=vm1\n` });
    cleanups.push(() => config.stop());
    configUrl = `${guestUrl(config.url)}/runners/\${net0/mac:hexhyp}.env`;
    forge.requests.length = 0; // from here on: what the booting machine asked for
    boot = await bootChain({
      script: operatorScript(guestUrl(downloadUrl), configUrl),
      ports: [new URL(forge.url).port, new URL(config.url).port].map(Number),
      workDir: join(f.scratch, "vm"),
    });
    if (!boot.completed) console.error(`the VM did not finish${boot.timedOut ? " (timed out)" : ""}; its serial console:\n${boot.serial}`);
  }, 600_000);

  afterAll(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  test("the machine fetched the release script, then the kernel and initrd by their rewritten relative names", () => {
    const base = `/${REPO}/releases/download/${TAG}`;
    expect(forge.requests.map((r) => `${r.method} ${r.path} ${r.status}`)).toEqual([
      `GET ${base}/netboot-x86_64.ipxe 200`,
      `GET ${base}/bzImage-x86_64 200`,
      `GET ${base}/initrd-x86_64 200`,
    ]);
    expect(forge.requests.some((r) => r.auth)).toBe(false); // anonymous downloads, as iPXE makes them
  });

  test("the kernel command line is the release script's parameters plus the operator's cmdline", () => {
    expect(boot.completed).toBe(true);
    const kernelLine = releaseScript.split("\n").find((l) => l.startsWith("kernel "))!;
    const imageParams = kernelLine.split(" ").slice(2).join(" ");
    expect(imageParams).toContain("${cmdline}");
    const operatorParams = `console=ttyS0 runner.config_url=${configUrl.replace("${net0/mac:hexhyp}", GUEST_MAC.replaceAll(":", "-"))}`;
    expect(cmdlineSeen(boot.serial)).toBe(imageParams.replace("${cmdline}", operatorParams));
  });

  test("the initrd's registration script fetched the machine's runner.env from runner.config_url", () => {
    expect(boot.serial).toContain("forgejo-runner-secret: fetching the runner configuration named by the runner.config_url kernel parameter");
    expect(config.requests).toEqual([{ method: "GET", path: ENV_PATH, status: 200 }]);
  });

  // Until nix/runner-secret.sh writes .runner itself (it calls forgejo-runner, which the fixture
  // initrd does not have), the script stops there; tests/fixtures/netboot/register.sh prints the
  // file as "netboot-fixture: .runner <mode> <owner> <json>" once it exists.
  test.todo("the registration script wrote .runner for the fetched secret, mode 0600", () => {
    const line = /^netboot-fixture: \.runner (\d+) (\S+) (.*)$/m.exec(boot.serial);
    expect(line?.[1]).toBe("600");
    const runner = JSON.parse(line![3]!) as { address: string; name: string; uuid: string };
    expect(runner.address).toBe("http://forgejo.invalid");
    expect(runner.name).toBe("vm1");
  });
});
