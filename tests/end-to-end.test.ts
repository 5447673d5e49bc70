/**
 * The whole path an operator runs: build-images.ts with a real nix (fixture flake), then
 * publish-release.ts to the Forgejo-compatible server, then a download of every published file
 * checked with sha256sum -c, the way an operator verifies a release with no tool of ours.
 */
import { afterAll, expect, test } from "bun:test";
import { $ } from "zx/core";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { makeFixture, OFFLINE } from "./support/fixture-flake.ts";
import { startForgejo } from "./support/forgejo-server.ts";
import { cleanEnv, runScript } from "./support/run.ts";

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups) await c();
});

test("a fixture build published and downloaded again passes sha256sum -c; the iPXE script names files of the same release", async () => {
  const f = await makeFixture();
  cleanups.push(() => rm(f.scratch, { recursive: true, force: true }));
  const out = join(f.scratch, "dist");
  const built = await runScript("build-images.ts", ["--flake", f.dir, "--out", out, ...OFFLINE]);
  expect(built.code).toBe(0);

  const token = "fjt_e2e_0f1e2d3c4b5a69788796";
  const forge = await startForgejo({ commits: [f.commit], tokens: { [token]: { user: "ops", access: "write" } } });
  cleanups.push(() => forge.stop());
  const published = await runScript("publish-release.ts", ["--dist", out, "--server", forge.url, "--repo", "ops/runner-images", "--tag", "boot-v0.1.0", "--unsigned"], {
    env: cleanEnv({ FORGEJO_TOKEN: token }),
  });
  expect(published.stderr).not.toContain("error:");
  expect(published.code).toBe(0);

  // An anonymous operator downloads SHA256SUMS and every file it lists, by their release URLs.
  const base = `${forge.url}/ops/runner-images/releases/download/boot-v0.1.0`;
  const downloads = join(f.scratch, "downloads");
  await mkdir(downloads);
  const sums = await (await fetch(`${base}/SHA256SUMS`)).text();
  await Bun.write(join(downloads, "SHA256SUMS"), sums);
  for (const line of sums.trim().split("\n")) {
    const name = line.split("  ")[1]!;
    const response = await fetch(`${base}/${name}`);
    expect(response.status).toBe(200);
    await Bun.write(join(downloads, name), response);
  }
  const check = await $({ cwd: downloads, quiet: true, nothrow: true })`sha256sum --check --strict SHA256SUMS`;
  expect(check.stdout).not.toContain("FAILED");
  expect(check.exitCode).toBe(0);

  // What iPXE would fetch after chaining the script: the kernel and initrd, relative to its URL.
  const script = await (await fetch(`${base}/netboot-x86_64.ipxe`)).text();
  for (const line of script.split("\n").filter((l) => /^(kernel|initrd) /.test(l))) {
    const file = line.split(" ")[1]!;
    expect((await fetch(new URL(file, `${base}/netboot-x86_64.ipxe`))).status).toBe(200);
  }
  // The manifest on the release names the commit that was built.
  const manifest = (await (await fetch(`${base}/manifest.json`)).json()) as { source: { commit: string } };
  expect(manifest.source.commit).toBe(f.commit);
}, 60_000);
