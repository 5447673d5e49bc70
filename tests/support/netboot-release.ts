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
import { GUEST_MAC, GUEST_MAC_HEXHYP, brokerGuestUrl, guestUrl, makeBootFiles, operatorScript, serveFiles } from "./netboot-vm.ts";
import { makeTls, startBroker, type BrokerRun, type Tls } from "./broker.ts";
import { cleanEnv, runScript } from "./run.ts";

export const STAGE_REPO = "alice/images";
export const STAGE_TAG = "boot-v1.0.0";
/** Where the config server has the machine's runner.env: the runbook's ${net0/mac:hexhyp}.env. */
export const STAGE_ENV_PATH = `/runners/${GUEST_MAC_HEXHYP}.env`;

/** The VM's entry in the broker's configuration: QEMU's relay connects from the host's loopback. */
export const STAGE_MACHINE = { name: "vm1", mac: GUEST_MAC, address: "127.0.0.1", mode: "container" as const, labels: ["docker"] };

/** The boot broker the VM asks instead of a file server, and the Forgejo (v15) it mints on. */
export interface BrokerStage {
  run: BrokerRun;
  forge: ForgejoServer;
  tls: Tls;
}

export interface NetbootStage {
  forge: ForgejoServer;
  /** The static file server (stageNetbootRelease with a runner.env), or null with the broker. */
  config: ReturnType<typeof serveFiles> | null;
  broker: BrokerStage | null;
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

/**
 * With a runner.env text, a file server serves it; with `{ broker: true }`, the VM asks the boot
 * broker (scripts/boot-broker.ts over HTTPS, its CA in the initrd) for a credential minted for
 * its boot on a second, v15 test Forgejo.
 */
export async function stageNetbootRelease(source: string | { broker: true }): Promise<NetbootStage> {
  const scratch = await mkdtemp(join(tmpdir(), "runner-images-netboot-"));
  const stops: (() => unknown)[] = [() => rm(scratch, { recursive: true, force: true })];
  const stop = async () => {
    for (const s of stops.reverse()) await s();
  };
  try {
    const tls = typeof source === "string" ? null : await makeTls(join(scratch, "tls-dir"));
    const fixture = await makeFixture("bootable", { parent: scratch, boot: await makeBootFiles(join(scratch, "boot"), tls?.ca) });
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

    const downloadUrl = `${forge.url}/${STAGE_REPO}/releases/download/${STAGE_TAG}/netboot-x86_64.ipxe`;
    let config: ReturnType<typeof serveFiles> | null = null;
    let broker: BrokerStage | null = null;
    let configUrl: string;
    let configPort: number;
    if (typeof source === "string") {
      const files = serveFiles({ [STAGE_ENV_PATH]: source });
      stops.push(() => files.stop());
      config = files;
      configUrl = `${guestUrl(files.url)}/runners/\${net0/mac:hexhyp}.env`;
      configPort = files.port;
    } else {
      const runners = await startForgejo({ version: "15.0.3", hasPullRequests: false });
      stops.push(() => runners.stop());
      const run = await startBroker({ tls: tls!, forgejoUrl: runners.url, machines: [STAGE_MACHINE] }, join(scratch, "broker"));
      stops.push(() => run.stop());
      if (!run.port) throw new Error(`the boot broker did not start:\n${run.output()}`);
      broker = { run, forge: runners, tls: tls! };
      configUrl = brokerGuestUrl(run.port);
      configPort = run.port;
    }
    return {
      forge,
      config,
      broker,
      downloadUrl,
      configUrl,
      script: operatorScript(guestUrl(downloadUrl), configUrl),
      ports: [Number(new URL(forge.url).port), configPort],
      scratch,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
