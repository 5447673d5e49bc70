/**
 * A test server with signed releases published the way CI publishes them (publish-release.ts,
 * the CI key as RUNNER_IMAGES_SIGNING_KEY), and the keys: ci (provenance), maintainer (channels
 * and countersignatures), each limited to its namespaces in allowed_signers. For the mirror and
 * channel tests.
 */
import { expect } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CHANNEL_NAMESPACE } from "../../scripts/lib/trust/channel.ts";
import { NAMESPACE } from "../../scripts/lib/trust/signing.ts";
import { makeDist } from "./dist.ts";
import { MAIN_SHA, startForgejo, type ForgejoServer } from "./forgejo-server.ts";
import { cleanEnv, runScript } from "./run.ts";
import { makeSshKey, writeAllowedSigners, type SshKey } from "./ssh-keys.ts";

export const TOKEN = "fjt_mirror_a1b2c3d4e5f60718";

export interface SignedReleases {
  forge: ForgejoServer;
  work: string;
  keys: { ci: SshKey; maintainer: SshKey };
  allowedSigners: string;
  /** The manifest of each published tag, by tag. */
  dists: Map<string, { dir: string }>;
  stop(): Promise<void>;
}

/** Publishes each of `tags` (different bytes each) to a fresh test server. */
export async function signedReleases(tags: string[]): Promise<SignedReleases> {
  const work = await mkdtemp(join(tmpdir(), "runner-images-mirror-"));
  const ci = await makeSshKey(join(work, "ci"), { comment: "ci@runner-images" });
  const maintainer = await makeSshKey(join(work, "maintainer"), { comment: "maintainer@runner-images" });
  const allowedSigners = await writeAllowedSigners(join(work, "allowed_signers"), [
    ["ci@runner-images", NAMESPACE.publisher, ci],
    ["maintainer@runner-images", NAMESPACE.countersignature, maintainer],
    ["maintainer@runner-images", CHANNEL_NAMESPACE, maintainer],
  ]);
  const forge = await startForgejo({ tokens: { [TOKEN]: { user: "ops", access: "write" } } });
  const dists = new Map<string, { dir: string }>();
  for (const tag of tags) {
    // Built by CI in ops/runner-images on this server: the statement names the repository verified.
    const builtBy = { server: forge.url, repository: "ops/runner-images", runId: "7", runNumber: "7", workflow: "boot-images", workflowFile: "boot-images.yml", ref: `refs/tags/${tag}`, event: "push" };
    const d = await makeDist({ commit: MAIN_SHA, flavour: tag, ci: builtBy });
    dists.set(tag, d);
    const r = await runScript("publish-release.ts", ["--dist", d.dir, "--server", forge.url, "--repo", "ops/runner-images", "--tag", tag], {
      env: cleanEnv({ FORGEJO_TOKEN: TOKEN, RUNNER_IMAGES_SIGNING_KEY: await Bun.file(ci.file).text() }),
    });
    expect(r.stderr).not.toContain("error:");
    expect(r.code).toBe(0);
  }
  return {
    forge, work, keys: { ci, maintainer }, allowedSigners, dists,
    async stop() {
      await forge.stop();
      await rm(work, { recursive: true, force: true });
      for (const d of dists.values()) await rm(d.dir, { recursive: true, force: true });
    },
  };
}
