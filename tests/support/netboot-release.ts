/**
 * The stage for a netboot chain, set once: the bootable fixture built by build-images.ts (real
 * nix, offline), published by publish-release.ts to the Forgejo-compatible server, a loopback
 * config server holding the machine's runner.env, and the operator's iPXE script that chains
 * the release from its download URL. tests/netboot-chain.test.ts and bench/netboot.ts boot it
 * (netboot-vm.ts); the demo runs the same steps one by one, visibly.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeFixture, OFFLINE } from "./fixture-flake.ts";
import { startForgejo, type ForgejoServer } from "./forgejo-server.ts";
import { GUEST_MAC_HEXHYP, guestUrl, makeBootFiles, operatorScript, serveFiles } from "./netboot-vm.ts";
import { cleanEnv, runScript } from "./run.ts";

export const STAGE_REPO = "alice/images";
export const STAGE_TAG = "boot-v1.0.0";
/** Where the config server has the machine's runner.env: the runbook's ${net0/mac:hexhyp}.env. */
export const STAGE_ENV_PATH = `/runners/${GUEST_MAC_HEXHYP}.env`;

export interface NetbootStage {
  forge: ForgejoServer;
  config: ReturnType<typeof serveFiles>;
  /** The release's netboot-x86_64.ipxe as a host URL. */
  downloadUrl: string;
  /** runner.config_url as the operator script sets it (guest address, iPXE variable unexpanded). */
  configUrl: string;
  /** The operator's iPXE script (the VM's DHCP boot file). */
  script: string;
  /** The loopback ports the VM may reach. */
  ports: number[];
  /** A scratch directory for the VM; removed by stop(). */
  scratch: string;
  stop(): Promise<void>;
}

export async function stageNetbootRelease(runnerEnv: string): Promise<NetbootStage> {
  const scratch = await mkdtemp(join(tmpdir(), "runner-images-netboot-"));
  const stops: (() => unknown)[] = [() => rm(scratch, { recursive: true, force: true })];
  const stop = async () => {
    for (const s of stops.reverse()) await s();
  };
  try {
    const fixture = await makeFixture("bootable", { parent: scratch, boot: await makeBootFiles(join(scratch, "boot")) });
    const dist = join(scratch, "dist");
    const built = await runScript("build-images.ts", ["--flake", fixture.dir, "--out", dist, "--target", "netboot-x86_64", ...OFFLINE]);
    if (built.code !== 0) throw new Error(`build-images.ts failed:\n${built.stderr}`);

    // Unsigned: what is booted is under test here, not who signed it (the demo signs).
    const token = "fjt_netboot_stage_5a4b3c2d1e0f";
    const [owner, repo] = STAGE_REPO.split("/") as [string, string];
    const forge = await startForgejo({ owner, repo, commits: [fixture.commit], tokens: { [token]: { user: owner, access: "write" } } });
    stops.push(() => forge.stop());
    const published = await runScript("publish-release.ts", ["--dist", dist, "--server", forge.url, "--repo", STAGE_REPO, "--tag", STAGE_TAG, "--unsigned"], {
      env: cleanEnv({ FORGEJO_TOKEN: token }),
    });
    if (published.code !== 0) throw new Error(`publish-release.ts failed:\n${published.stderr}`);

    const config = serveFiles({ [STAGE_ENV_PATH]: runnerEnv });
    stops.push(() => config.stop());
    const downloadUrl = `${forge.url}/${STAGE_REPO}/releases/download/${STAGE_TAG}/netboot-x86_64.ipxe`;
    const configUrl = `${guestUrl(config.url)}/runners/\${net0/mac:hexhyp}.env`;
    return {
      forge,
      config,
      downloadUrl,
      configUrl,
      script: operatorScript(guestUrl(downloadUrl), configUrl),
      ports: [Number(new URL(forge.url).port), config.port],
      scratch,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
