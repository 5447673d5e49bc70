/**
 * verify-release.ts and signed checksums: a local dist and a release published to the test
 * server, each tampering caught and named, signatures checked against allowed_signers.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { $ } from "zx/core";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { formatSums } from "../scripts/lib/manifest.ts";
import { makeDist } from "./support/dist.ts";
import { MAIN_SHA, startForgejo, type ForgejoServer } from "./support/forgejo-server.ts";
import { cleanEnv, runScript } from "./support/run.ts";

const TOKEN = "fjt_verify_a1b2c3d4e5f60718";
let keys: string;
let allowedSigners: string;
const dirs: string[] = [];

beforeAll(async () => {
  keys = await mkdtemp(join(tmpdir(), "runner-images-keys-"));
  dirs.push(keys);
  for (const name of ["release", "intruder"]) {
    await $({ quiet: true })`ssh-keygen -q -t ed25519 -N ${""} -C ${`${name}@runner-images`} -f ${join(keys, name)}`;
  }
  const pub = (await Bun.file(join(keys, "release.pub")).text()).trim().split(" ");
  allowedSigners = join(keys, "allowed_signers");
  await writeFile(allowedSigners, `release@runner-images namespaces="runner-images" ${pub[0]} ${pub[1]}\n`);
});
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function dist() {
  const d = await makeDist({ commit: MAIN_SHA });
  dirs.push(d.dir);
  return d;
}

/** Signs a dist the way publish-release does, through its --signing-key, without publishing. */
async function sign(dir: string, key = "release") {
  await $({ cwd: dir, quiet: true })`ssh-keygen -Y sign -q -f ${join(keys, key)} -n runner-images SHA256SUMS`;
}

const verify = (args: string[], env: Record<string, string | undefined> = {}) =>
  runScript("verify-release.ts", ["--allowed-signers", allowedSigners, ...args], { env: cleanEnv(env) });

describe("a local dist", () => {
  test("an untouched build verifies, and its provenance is printed", async () => {
    const d = await dist();
    await sign(d.dir);
    const r = await verify(["--dist", d.dir, "--require-signature", "--json"]);
    expect(r.stderr).not.toContain("FAIL");
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(`commit     ${MAIN_SHA}`);
    expect(r.stderr).toContain("nixpkgs    b18a4b905f8d028dc4476412e6d6891728695379 sha256-gwrPcFf/rDjHPaVflbDZ040ZDmBTRj/7+s8ZmE2SaIM=");
    expect(r.stderr).toContain("signature  good, by release@runner-images");
    const result = JSON.parse(r.stdout);
    expect(result.ok).toBe(true);
    expect(result.checked).toEqual(d.manifest.artifacts.map((a) => a.name));
  });

  test("a tampered image is named with both hashes", async () => {
    const d = await dist();
    const iso = join(d.dir, "runner-x86_64.iso");
    const bytes = await Bun.file(iso).bytes();
    bytes[1000] = bytes[1000]! ^ 1;
    await Bun.write(iso, bytes);
    const r = await verify(["--dist", d.dir]);
    expect(r.code).toBe(1);
    const expected = d.manifest.artifacts.find((a) => a.name === "runner-x86_64.iso")!.sha256;
    expect(r.stderr).toMatch(new RegExp(`FAIL runner-x86_64\\.iso has SHA-256 [0-9a-f]{64}, the manifest says ${expected}`));
    expect(r.stderr).toContain("error: 1 problem with dist");
  });

  test("a tampered SHA256SUMS disagrees with the manifest, and breaks the signature", async () => {
    const d = await dist();
    await sign(d.dir);
    const forged = d.manifest.artifacts.map((a) => (a.name === "initrd-x86_64" ? { ...a, sha256: "0".repeat(64) } : a));
    await writeFile(join(d.dir, "SHA256SUMS"), formatSums(forged));
    const r = await verify(["--dist", d.dir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("FAIL SHA256SUMS and manifest.json disagree on the SHA-256 of initrd-x86_64");
    expect(r.stderr).toContain("FAIL SHA256SUMS.sig does not match SHA256SUMS: the checksums were changed after signing");
  });

  test("manifest and SHA256SUMS listing different files", async () => {
    const d = await dist();
    const extra = [...d.manifest.artifacts, { name: "extra.img", sha256: "1".repeat(64) }];
    await writeFile(join(d.dir, "SHA256SUMS"), formatSums(extra));
    const r = await verify(["--dist", d.dir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("FAIL SHA256SUMS lists extra.img, which manifest.json does not");
  });

  test("a signature by a key that is not in allowed_signers", async () => {
    const d = await dist();
    await sign(d.dir, "intruder");
    const r = await verify(["--dist", d.dir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`FAIL SHA256SUMS.sig was not made by any key in ${allowedSigners}`);
    expect(r.stderr).toContain("signature  BAD");
  });

  test("no signature: fine by default, fatal with --require-signature", async () => {
    const d = await dist();
    const lax = await verify(["--dist", d.dir]);
    expect(lax.code).toBe(0);
    expect(lax.stderr).toContain("signature  none");
    const strict = await verify(["--dist", d.dir, "--require-signature"]);
    expect(strict.code).toBe(1);
    expect(strict.stderr).toContain("FAIL there is no SHA256SUMS.sig and --require-signature was given");
  });

  test("--only checks a subset; a name the manifest lacks is bad input", async () => {
    const d = await dist();
    await writeFile(join(d.dir, "runner-x86_64.iso"), "broken");
    const subset = await verify(["--dist", d.dir, "--only", "bzImage-x86_64", "--json"]);
    expect(subset.code).toBe(0);
    expect(JSON.parse(subset.stdout).checked).toEqual(["bzImage-x86_64"]);
    const unknown = await verify(["--dist", d.dir, "--only", "vmlinuz"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("--only vmlinuz: the manifest has no such file");
  });

  test("--tag and --dist together, or neither, is a usage error", async () => {
    expect((await verify([])).code).toBe(2);
    expect((await verify(["--dist", "x", "--tag", "latest"])).code).toBe(2);
  });
});

describe("a release published to the server", () => {
  let forge: ForgejoServer;
  let published: Awaited<ReturnType<typeof dist>>;
  beforeAll(async () => {
    forge = await startForgejo({ tokens: { [TOKEN]: { user: "ops", access: "write" } } });
    published = await dist();
    const r = await runScript(
      "publish-release.ts",
      ["--dist", published.dir, "--server", forge.url, "--repo", "ops/runner-images", "--tag", "boot-v1.0.0"],
      // The key as a CI secret: its text in the environment, never on a command line.
      { env: cleanEnv({ FORGEJO_TOKEN: TOKEN, RUNNER_IMAGES_SIGNING_KEY: await Bun.file(join(keys, "release")).text() }) },
    );
    expect(r.stderr).toContain("signed SHA256SUMS into SHA256SUMS.sig");
    expect(r.code).toBe(0);
  });
  afterAll(() => forge.stop());

  const remote = (tag: string, more: string[] = []) => verify(["--server", forge.url, "--repo", "ops/runner-images", "--tag", tag, ...more]);

  test("verifies end to end, anonymously, with the signature; `latest` names the same release", async () => {
    const assets = forge.state().releases[0]!.assets.map((a) => a.name);
    expect(assets).toContain("SHA256SUMS.sig");
    const from = forge.requests.length;
    for (const tag of ["boot-v1.0.0", "latest"]) {
      const r = await remote(tag, ["--require-signature"]);
      expect(r.stderr).not.toContain("FAIL");
      expect(r.code).toBe(0);
      expect(r.stderr).toContain("verified: 4 files match the manifest, and its checksums are signed");
    }
    // Anonymously: verify made requests (the look-ups and every download), none with credentials.
    const made = forge.requests.slice(from);
    expect(made.length).toBeGreaterThanOrEqual(2 * assets.length);
    expect(made.filter((q) => q.auth)).toEqual([]);
  });

  test("bytes swapped on the server behind its back are caught: the server is not trusted", async () => {
    const asset = forge.state().releases[0]!.assets.find((a) => a.name === "bzImage-x86_64")!;
    const original = await Bun.file(asset.path).bytes();
    const swapped = original.slice();
    swapped[0] = swapped[0]! ^ 0xff;
    await Bun.write(asset.path, swapped);
    try {
      const r = await remote("boot-v1.0.0");
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/FAIL bzImage-x86_64 has SHA-256 [0-9a-f]{64}, the manifest says/);
    } finally {
      await Bun.write(asset.path, original);
    }
  });

  test("an extra asset on the release is named", async () => {
    const id = forge.state().releases[0]!.id;
    const up = await fetch(`${forge.apiUrl}/repos/ops/runner-images/releases/${id}/assets?name=surprise.bin`, {
      method: "POST",
      headers: { authorization: `token ${TOKEN}`, "content-type": "application/octet-stream" },
      body: "x",
    });
    expect(up.status).toBe(201);
    const r = await remote("boot-v1.0.0");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("FAIL surprise.bin is on the release but not in the manifest");
  });

  test("a release that does not exist", async () => {
    const r = await remote("boot-v9.9.9");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("has no release boot-v9.9.9");
  });
});
