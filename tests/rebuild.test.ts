/**
 * verify-release --rebuild with real Nix, offline, on the fixture flake (tests/fixtures/flake),
 * whose builds are deterministic: a dist reproduces from its commit (derivations, then bytes),
 * and an artifact swapped for one built from another commit is caught, even under a good
 * signature, with the first difference named.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { $ } from "zx/core";
import { cp, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { formatSums, type Manifest } from "../scripts/lib/build/manifest.ts";
import { STATEMENT_FILE, formatStatement, makeStatement } from "../scripts/lib/trust/provenance.ts";
import { NAMESPACE, sign } from "../scripts/lib/trust/signing.ts";
import { OFFLINE, makeFixture, type Fixture } from "./support/fixture-flake.ts";
import { cleanEnv, runScript } from "./support/run.ts";
import { makeSshKey, writeAllowedSigners } from "./support/ssh-keys.ts";

let fixture: Fixture;
let keys: string;
let allowedSigners: string;
/** dist of the fixture's first commit, and of a second commit that changes the kernel. */
let distA: string;
let distB: string;
let commitB: string;

beforeAll(async () => {
  fixture = await makeFixture();
  keys = await mkdtemp(join(tmpdir(), "runner-images-rebuild-keys-"));
  allowedSigners = await writeAllowedSigners(join(keys, "allowed_signers"), [["ci", NAMESPACE.publisher, await makeSshKey(join(keys, "ci"))]]);

  distA = join(fixture.scratch, "dist-a");
  expect((await runScript("build-images.ts", ["--flake", fixture.dir, "--out", distA, ...OFFLINE])).code).toBe(0);
  // Another commit of the same repository: a kernel with other bytes.
  const flakeNix = join(fixture.dir, "flake.nix");
  await writeFile(flakeNix, (await Bun.file(flakeNix).text()).replace("fixture kernel for", "another kernel for"));
  const git = $({ cwd: fixture.dir, quiet: true });
  await git`git -c user.name=test -c user.email=test@invalid commit -qam ${"another kernel"}`;
  commitB = (await git`git rev-parse HEAD`).stdout.trim();
  distB = join(fixture.scratch, "dist-b");
  expect((await runScript("build-images.ts", ["--flake", fixture.dir, "--out", distB, ...OFFLINE])).code).toBe(0);
  for (const dir of [distA, distB]) await signAs(dir, "boot-v1.0.0");
}, 120_000);
afterAll(async () => {
  await rm(fixture.scratch, { recursive: true, force: true });
  await rm(keys, { recursive: true, force: true });
});

/** The publisher's statement and signature, as publish-release writes them. */
async function signAs(dir: string, tag: string) {
  const read = (name: string) => Bun.file(join(dir, name)).bytes();
  const manifest = (await Bun.file(join(dir, "manifest.json")).json()) as Manifest;
  const statement = Buffer.from(formatStatement(makeStatement(manifest, await read("manifest.json"), await read("SHA256SUMS"), tag)));
  await writeFile(join(dir, STATEMENT_FILE), statement);
  await writeFile(join(dir, `${STATEMENT_FILE}.sig`), await sign(statement, { file: join(keys, "ci") }, NAMESPACE.publisher));
}

/**
 * A forgery by someone who holds the signing key: dist A with `name` taken from dist B, the
 * manifest and SHA256SUMS rewritten to match, re-signed. `withDrv` also copies B's derivation.
 */
async function swapped(name: string, withDrv: boolean): Promise<string> {
  const dir = await mkdtemp(join(fixture.scratch, "forged-"));
  await cp(distA, dir, { recursive: true });
  await cp(join(distB, name), join(dir, name));
  const manifest = (await Bun.file(join(dir, "manifest.json")).json()) as Manifest;
  const theirs = ((await Bun.file(join(distB, "manifest.json")).json()) as Manifest).artifacts.find((a) => a.name === name)!;
  const ours = manifest.artifacts.find((a) => a.name === name)!;
  Object.assign(ours, { size: theirs.size, sha256: theirs.sha256 }, withDrv ? { drvPath: theirs.drvPath, storePath: theirs.storePath } : {});
  await writeFile(join(dir, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
  await writeFile(join(dir, "SHA256SUMS"), formatSums(manifest.artifacts));
  await signAs(dir, "boot-v1.0.0");
  return dir;
}

const verify = (dir: string, rebuild: string[]) =>
  runScript("verify-release.ts", ["--allowed-signers", allowedSigners, "--dist", dir, "--any-tag", ...rebuild, "--source", fixture.dir, ...OFFLINE], { env: cleanEnv() });

describe("verify-release --rebuild", () => {
  test("the dist of a commit reproduces from a clean checkout: derivations, then every byte", async () => {
    // The working tree is at the second commit, with an uncommitted change too: neither may leak in.
    await writeFile(join(fixture.dir, "flake.nix"), `${await Bun.file(join(fixture.dir, "flake.nix")).text()}\n# uncommitted\n`);
    try {
      const drv = await verify(distA, ["--rebuild"]);
      expect(drv.stderr).not.toContain("FAIL");
      expect(drv.code).toBe(0);
      expect(drv.stderr).toContain("and rebuild (drv) agrees");
      const full = await verify(distA, ["--rebuild=full"]);
      expect(full.stderr).not.toContain("FAIL");
      expect(full.code).toBe(0);
      expect(full.stderr).toContain("and rebuild (full) agrees");
    } finally {
      await $({ cwd: fixture.dir, quiet: true })`git checkout -- flake.nix`;
    }
  }, 120_000);

  test("an artifact from another commit, under its own derivation: the derivation comparison catches it", async () => {
    const forged = await swapped("bzImage-x86_64", true);
    const r = await verify(forged, ["--rebuild"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("signature  good");
    expect(r.stderr).toMatch(/FAIL rebuild: bzImage-x86_64 \(netboot-x86_64\): the manifest says \/nix\/store\/\S+-netboot-x86_64\.drv, commit [0-9a-f]{12} evaluates to \/nix\/store\/\S+-netboot-x86_64\.drv/);
  }, 120_000);

  test("an artifact from another commit under the right derivation: only the bytes tell, and --rebuild=full finds the first difference", async () => {
    const forged = await swapped("bzImage-x86_64", false);
    const drv = await verify(forged, ["--rebuild", "drv"]);
    expect(drv.code).toBe(0); // what a derivation comparison cannot see
    const full = await verify(forged, ["--rebuild=full"]);
    expect(full.code).toBe(1);
    // "fixture kernel for" vs "another kernel for": the first byte differs.
    expect(full.stderr).toMatch(/FAIL rebuild: bzImage-x86_64 rebuilt from [0-9a-f]{12} has SHA-256 [0-9a-f]{64} \(\d+ bytes\), the release [0-9a-f]{64} \(\d+ bytes\); the first difference is at byte 0/);
  }, 120_000);

  test("a commit the source repository does not have is named", async () => {
    const forged = await mkdtemp(join(fixture.scratch, "unknown-"));
    await cp(distA, forged, { recursive: true });
    const manifest = (await Bun.file(join(forged, "manifest.json")).json()) as Manifest;
    manifest.source.commit = "ab".repeat(20);
    await writeFile(join(forged, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
    await signAs(forged, "boot-v1.0.0");
    const r = await verify(forged, ["--rebuild"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`error: commit ${"ab".repeat(20)} is not in ${fixture.dir}: fetch it there`);
    expect(commitB).not.toBe(manifest.source.commit);
  }, 60_000);
});
