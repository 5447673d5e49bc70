/**
 * The mirror (verify-release --download): whole releases under releases/<tag>, one pointer moved
 * by one rename; older releases kept (--keep); a downgrade refused unless named; --only refused;
 * a download capped at the signed size; and an interrupted sync (SIGINT, SIGKILL, at several
 * points) leaves current on the whole, verified release it was on.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, readdir, readlink, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ForgejoClient } from "../scripts/lib/forgejo/client.ts";
import { tuningFromEnv } from "../scripts/lib/forgejo/http.ts";
import { releaseFiles } from "../scripts/lib/forgejo/release-files.ts";
import type { Release } from "../scripts/lib/forgejo/types.ts";
import { compareReleaseTags } from "../scripts/lib/trust/mirror-order.ts";
import { cleanEnv, runScript } from "./support/run.ts";
import { signedReleases, type SignedReleases } from "./support/signed-releases.ts";

let s: SignedReleases;
let n = 0;
const fresh = () => join(s.work, `mirror-${++n}`);

beforeAll(async () => {
  s = await signedReleases(["boot-v1.0.0", "boot-v1.1.0", "boot-v1.2.0"]);
}, 120_000);
afterAll(() => s.stop());

const verifyArgs = (tag: string, mirror: string, more: string[] = []) => [
  "--allowed-signers", s.allowedSigners, "--server", s.forge.url, "--repo", "ops/runner-images", "--tag", tag, "--download", mirror, ...more,
];
const download = (tag: string, mirror: string, more: string[] = []) => runScript("verify-release.ts", verifyArgs(tag, mirror, more), { env: cleanEnv() });

/** The pointer names a release whose every file is the published one, and it verifies offline. */
async function expectWhole(mirror: string, tag: string, pointer = "current") {
  expect(await readlink(join(mirror, pointer))).toBe(`releases/${tag}`);
  const dir = s.dists.get(tag)!.dir;
  for (const name of await readdir(dir)) expect(await Bun.file(join(mirror, pointer, name)).bytes()).toEqual(await Bun.file(join(dir, name)).bytes());
  const again = await runScript("verify-release.ts", ["--allowed-signers", s.allowedSigners, "--dist", join(mirror, pointer), "--tag", tag], { env: cleanEnv() });
  expect(again.code).toBe(0);
}

describe("a mirror of whole releases", () => {
  test("each release goes whole into releases/<tag>; current moves to the newer one; the older stays for a rollback", async () => {
    const m = fresh();
    expect((await download("boot-v1.0.0", m)).code).toBe(0);
    await expectWhole(m, "boot-v1.0.0");
    expect((await download("boot-v1.1.0", m)).code).toBe(0);
    await expectWhole(m, "boot-v1.1.0");
    expect((await readdir(join(m, "releases"))).sort()).toEqual(["boot-v1.0.0", "boot-v1.1.0"]);
    // The boot entry chains the release directory itself: one release per boot, whatever the pointer does meanwhile.
    expect(await Bun.file(join(m, "current.ipxe")).text()).toBe("#!ipxe\n# written by runner-images: current -> releases/boot-v1.1.0\nchain releases/boot-v1.1.0/netboot-x86_64.ipxe\n");
  }, 120_000);

  test("an older release is refused unless the downgrade is named; the pointer stays", async () => {
    const m = fresh();
    expect((await download("boot-v1.1.0", m)).code).toBe(0);
    const from = s.forge.requests.length;
    const refused = await download("boot-v1.0.0", m);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`refusing to move ${join(m, "current")}: boot-v1.0.0 is older than boot-v1.1.0, which current names now; --allow-downgrade moves it anyway`);
    // Refused before a single file was downloaded.
    expect(s.forge.requests.slice(from).filter((q) => q.path.includes("/releases/download/"))).toEqual([]);
    await expectWhole(m, "boot-v1.1.0");
    expect((await download("boot-v1.0.0", m, ["--allow-downgrade"])).code).toBe(0);
    await expectWhole(m, "boot-v1.0.0");
  }, 120_000);

  test("--keep N keeps the N newest releases no pointer names, and removes the rest", async () => {
    const m = fresh();
    for (const tag of ["boot-v1.0.0", "boot-v1.1.0"]) expect((await download(tag, m)).code).toBe(0);
    const r = await download("boot-v1.2.0", m, ["--keep", "0"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("removed 2 older releases");
    expect(await readdir(join(m, "releases"))).toEqual(["boot-v1.2.0"]);
    await expectWhole(m, "boot-v1.2.0");
  }, 120_000);

  test("--only with --download is refused before any request: a mirror holds whole releases", async () => {
    const from = s.forge.requests.length;
    const r = await download("boot-v1.0.0", fresh(), ["--only", "bzImage-x86_64"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--only with --download: a mirror holds whole releases");
    expect(s.forge.requests.length).toBe(from);
  });

  test("tags are ordered as releases are: numbers as numbers, a prerelease before its release, dev runs by number, kinds not at all", () => {
    expect(compareReleaseTags("boot-v1.10.0", "boot-v1.9.0")).toBeGreaterThan(0);
    expect(compareReleaseTags("boot-v1.2.0-rc1", "boot-v1.2.0")).toBeLessThan(0);
    expect(compareReleaseTags("boot-v1.2.0-rc2", "boot-v1.2.0-rc10")).toBeLessThan(0);
    expect(compareReleaseTags("boot-dev-12-0123456789ab", "boot-dev-9-0123456789ab")).toBeGreaterThan(0);
    expect(compareReleaseTags("boot-dev-12-0123456789ab", "boot-v1.0.0")).toBeNaN();
  });
});

describe("a server that streams for ever", () => {
  test("a download stops past the size the manifest names, and never writes more than that", async () => {
    const limit = 1000;
    let sent = 0;
    const endless = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: () =>
        new Response(
          new ReadableStream({
            pull(controller) {
              sent += 64 * 1024;
              controller.enqueue(new Uint8Array(64 * 1024));
            },
          }),
        ),
    });
    const dir = await mkdtemp(join(tmpdir(), "runner-images-endless-"));
    try {
      const client = new ForgejoClient({ server: `http://127.0.0.1:${endless.port}`, owner: "ops", repo: "runner-images", token: "", tuning: tuningFromEnv({}) });
      const release = { tag_name: "boot-v1.0.0", assets: [{ name: "big.iso", size: limit, browser_download_url: `http://127.0.0.1:${endless.port}/big.iso` }] } as unknown as Release;
      const files = releaseFiles(client, release);
      const target = join(dir, "big.iso");
      await expect(files.save("big.iso", target, undefined, limit)).rejects.toThrow("big.iso: the server sent more than the 1000 bytes the manifest says; the download was stopped there");
      expect((await stat(target)).size).toBeLessThanOrEqual(limit);
      await expect(files.digest("big.iso", undefined, limit)).rejects.toThrow("more than the 1000 bytes");
      // The connection was dropped: the server's stream stops being read (it does not go on for ever).
      await Bun.sleep(300);
      const then = sent;
      await Bun.sleep(300);
      expect(sent).toBe(then);
    } finally {
      endless.stop(true);
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("an interrupted sync leaves current on the release it was on", () => {
  // Points in the sync: reading the small files, asking for the git tag, downloading the ISO
  // (with the kernel already staged). The server stalls there; the process is signalled.
  const points: [string, RegExp][] = [
    ["reading manifest.json", /\/releases\/download\/.*manifest\.json$/],
    ["asking for the git tag", /\/tags\//],
    ["downloading the ISO", /\/releases\/download\/.*\.iso$/],
  ];
  for (const signal of ["SIGINT", "SIGKILL"] as const) {
    for (const [point, path] of points) {
      test(`${signal} while ${point}`, async () => {
        const m = fresh();
        expect((await download("boot-v1.0.0", m)).code).toBe(0);
        s.forge.addFault({ kind: "stall", method: "GET", path, ms: 20_000 });
        const from = s.forge.requests.length;
        const r = await runScript("verify-release.ts", verifyArgs("boot-v1.1.0", m), {
          env: cleanEnv(),
          started: async (child) => {
            while (!s.forge.requests.slice(from).some((q) => path.test(q.path))) await Bun.sleep(20);
            child.kill(signal);
          },
        });
        expect(r.code).toBe(signal === "SIGINT" ? 130 : 137);
        await expectWhole(m, "boot-v1.0.0");
        expect(await Bun.file(join(m, "releases", "boot-v1.1.0", "manifest.json")).exists()).toBe(false);
        // SIGINT cleans up its staging directory; SIGKILL cannot, and the next sync goes on regardless.
        if (signal === "SIGINT") expect(await readdir(join(m, "releases"))).toEqual(["boot-v1.0.0"]);
        expect((await download("boot-v1.1.0", m)).code).toBe(0);
        await expectWhole(m, "boot-v1.1.0");
      }, 120_000);
    }
  }
});
