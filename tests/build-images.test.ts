/**
 * build-images.ts against a real nix and the fixture flake (same attribute names and file shapes
 * as the real images), fully offline.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { $ } from "zx/core";
import { chmod, mkdir, readdir, rm, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { releaseNames, TARGETS } from "../scripts/lib/build/targets.ts";
import type { Manifest } from "../scripts/lib/build/manifest.ts";
import { makeFixture, OFFLINE, type Fixture } from "./support/fixture-flake.ts";
import { cleanEnv, runScript } from "./support/run.ts";

const build = (args: string[], env?: Record<string, string | undefined>) =>
  runScript("build-images.ts", args, env ? { env: cleanEnv(env) } : {});

const readManifest = async (dir: string) => (await Bun.file(join(dir, "manifest.json")).json()) as Manifest;

const cleanups: string[] = [];
afterAll(async () => {
  for (const dir of cleanups) await rm(dir, { recursive: true, force: true });
});
async function fixture(variant: Parameters<typeof makeFixture>[0] = "ok"): Promise<Fixture> {
  const f = await makeFixture(variant);
  cleanups.push(f.scratch);
  return f;
}

describe("a successful build", () => {
  let f: Fixture;
  let out: string;
  let result: Awaited<ReturnType<typeof build>>;
  beforeAll(async () => {
    f = await fixture();
    out = join(f.scratch, "dist");
    result = await build(["--flake", f.dir, "--out", out, "--json", ...OFFLINE]);
  });

  test("exits 0 and holds exactly the release files, SHA256SUMS and manifest.json", async () => {
    expect(result.stderr).not.toContain("error:");
    expect(result.code).toBe(0);
    const files = (await readdir(out)).sort();
    expect(files).toEqual([...releaseNames(), "SHA256SUMS", "manifest.json"].sort());
  });

  test("sha256sum -c --strict accepts SHA256SUMS", async () => {
    const check = await $({ cwd: out, quiet: true, nothrow: true })`sha256sum --check --strict SHA256SUMS`;
    expect(check.exitCode).toBe(0);
    expect(check.stdout.trim().split("\n")).toHaveLength(releaseNames().length);
  });

  test("the manifest names the commit, the flake.lock pins, nix, and each file's store and drv path", async () => {
    const manifest = await readManifest(out);
    const lock = await Bun.file(join(f.dir, "flake.lock")).json();
    expect(manifest.source.commit).toBe(f.commit);
    expect(manifest.source.dirty).toBe(false);
    expect(manifest.version).toBe(`dev-${f.commit.slice(0, 12)}`);
    expect(manifest.inputs.nixpkgs).toEqual(lock.nodes.nixpkgs.locked);
    const nixVersion = (await $({ quiet: true })`nix --version`).stdout;
    expect(nixVersion).toContain(manifest.nix.version);
    expect(manifest.nix.system).toBe("x86_64-linux");
    expect(manifest.ci).toBeNull();
    expect(manifest.artifacts.map((a) => a.name)).toEqual(releaseNames());
    for (const a of manifest.artifacts) {
      const onDisk = Bun.file(join(out, a.name));
      expect(a.size).toBe(onDisk.size);
      expect(a.sha256).toBe(new Bun.CryptoHasher("sha256").update(await onDisk.bytes()).digest("hex"));
      expect(a.drvPath).toMatch(/^\/nix\/store\/[a-z0-9]{32}-.+\.drv$/);
      expect(await Bun.file(a.drvPath).exists()).toBe(true);
      expect(await Bun.file(join(a.storePath, a.source)).exists()).toBe(true);
      expect(a.storePath.endsWith(`-${a.target}`)).toBe(true);
    }
    // The artifact's target is the table row it came from, file for file.
    for (const t of TARGETS) {
      expect(manifest.artifacts.filter((a) => a.target === t.attr).map((a) => a.name)).toEqual(t.files.map((x) => x.name));
    }
    expect(manifest.artifacts.find((a) => a.name === "runner-x86_64.iso")?.source).toBe("iso/nixos-fixture-26.05-x86_64-linux.iso");
  });

  test("--json prints the manifest on stdout and keeps human lines on stderr", async () => {
    expect(JSON.parse(result.stdout)).toEqual(await readManifest(out));
    expect(result.stderr).toContain("collected runner-x86_64.iso");
  });

  test("the iPXE script names the release files by relative URL and keeps the build's init", async () => {
    const script = await Bun.file(join(out, "netboot-x86_64.ipxe")).text();
    const lines = script.split("\n");
    const kernel = lines.find((l) => l.startsWith("kernel "))!;
    expect(kernel.split(" ")[1]).toBe("bzImage-x86_64");
    expect(kernel).toContain(" initrd=initrd-x86_64 ");
    expect(kernel).toContain("init=/nix/store/00000000000000000000000000000000-nixos-system-runner-26.05/init");
    expect(lines).toContain("initrd initrd-x86_64");
    // No line still loads a file under its store name.
    const loaded = lines.filter((l) => /^(kernel|initrd) /.test(l)).map((l) => l.split(" ")[1]);
    expect(loaded).toEqual(["bzImage-x86_64", "initrd-x86_64"]);
  });

  test("files of the store path that are not release files stay out", async () => {
    expect(await Bun.file(join(out, "System.map")).exists()).toBe(false);
    const netboot = (await readManifest(out)).artifacts.find((a) => a.target === "netboot-x86_64")!;
    expect(await Bun.file(join(netboot.storePath, "System.map")).exists()).toBe(true);
  });

  test("a second build replaces the previous dist", async () => {
    const again = await build(["--flake", f.dir, "--out", out, ...OFFLINE]);
    expect(again.code).toBe(0);
    expect((await readdir(out)).length).toBe(releaseNames().length + 2);
  });
});

describe("choosing targets", () => {
  test("--target builds only that target; repeats and comma lists are the same", async () => {
    const f = await fixture();
    const one = join(f.scratch, "one");
    expect((await build(["--flake", f.dir, "--out", one, "--target", "iso-x86_64", ...OFFLINE])).code).toBe(0);
    expect((await readdir(one)).sort()).toEqual(["SHA256SUMS", "manifest.json", "runner-x86_64.iso"]);
    const both = join(f.scratch, "both");
    const r = await build(["--flake", f.dir, "--out", both, "--target", "iso-x86_64,netboot-x86_64", ...OFFLINE]);
    expect(r.code).toBe(0);
    expect((await readManifest(both)).artifacts.map((a) => a.name)).toEqual(releaseNames());
  });

  test("an unknown target is a usage error that lists the known ones, and nothing is built", async () => {
    const f = await fixture();
    const out = join(f.scratch, "dist");
    const r = await build(["--flake", f.dir, "--out", out, "--target", "iso-riscv64", ...OFFLINE]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown target iso-riscv64");
    expect(r.stderr).toContain("netboot-x86_64");
    expect(await Bun.file(join(out, "manifest.json")).exists()).toBe(false);
  });
});

describe("--boot-numbers: what the Forgejo boot test measured, in the manifest", () => {
  test("records the netboot target's numbers from its forgejo-boot check; without the flag, none", async () => {
    const f = await fixture();
    const withNumbers = join(f.scratch, "with");
    const r = await build(["--flake", f.dir, "--out", withNumbers, "--boot-numbers", ...OFFLINE]);
    expect(r.stderr).not.toContain("error:");
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("building forgejo-boot-netboot-x86_64 for the boot numbers");
    const manifest = await readManifest(withNumbers);
    expect(manifest.bootNumbers).toEqual([expect.objectContaining({ target: "netboot-x86_64", powerOnToRunnerOnlineSeconds: 84, initrdBytes: 3145728 })]);
    const without = join(f.scratch, "without");
    expect((await build(["--flake", f.dir, "--out", without, ...OFFLINE])).code).toBe(0);
    expect("bootNumbers" in (await readManifest(without))).toBe(false);
  }, 120_000);

  test("no netboot target built: no check is built and no numbers are recorded", async () => {
    const f = await fixture();
    const out = join(f.scratch, "iso");
    const r = await build(["--flake", f.dir, "--out", out, "--target", "iso-x86_64", "--boot-numbers", ...OFFLINE]);
    expect(r.code).toBe(0);
    expect(r.stderr).not.toContain("forgejo-boot");
    expect("bootNumbers" in (await readManifest(out))).toBe(false);
  }, 120_000);

  test("a check whose numbers claim another target is refused, and nothing is left in --out", async () => {
    const f = await fixture("lying-numbers");
    const out = join(f.scratch, "dist");
    const r = await build(["--flake", f.dir, "--out", out, "--boot-numbers", ...OFFLINE]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error: \/nix\/store\/[a-z0-9]{32}-forgejo-boot-netboot-x86_64\/boot-numbers\.json is for iso-x86_64, not netboot-x86_64/);
    expect(await Bun.file(join(out, "manifest.json")).exists()).toBe(false);
  }, 120_000);
});

describe("provenance", () => {
  test("uncommitted changes are recorded as dirty, on the HEAD commit, with a -dirty label", async () => {
    const f = await fixture();
    await Bun.write(join(f.dir, "flake.nix"), `${await Bun.file(join(f.dir, "flake.nix")).text()}\n# local edit\n`);
    const out = join(f.scratch, "dist");
    expect((await build(["--flake", f.dir, "--out", out, ...OFFLINE])).code).toBe(0);
    const manifest = await readManifest(out);
    expect(manifest.source).toMatchObject({ commit: f.commit, dirty: true });
    expect(manifest.version).toBe(`dev-${f.commit.slice(0, 12)}-dirty`);
  });

  test("a clean build of a boot-v* tag is labelled with the tag", async () => {
    const f = await fixture();
    await $({ cwd: f.dir, quiet: true })`git tag boot-v1.10.0`;
    const out = join(f.scratch, "dist");
    expect((await build(["--flake", f.dir, "--out", out, ...OFFLINE])).code).toBe(0);
    expect((await readManifest(out)).version).toBe("boot-v1.10.0");
  });

  test("in CI the manifest records the run, and a pushed boot-v* tag of that commit names the build", async () => {
    const f = await fixture();
    const out = join(f.scratch, "dist");
    const ci = {
      CI: "true",
      FORGEJO_SERVER_URL: "https://forge.example/",
      FORGEJO_REPOSITORY: "ops/runner-images",
      FORGEJO_RUN_ID: "4711",
      FORGEJO_RUN_NUMBER: "42",
      FORGEJO_WORKFLOW: "boot-images",
      FORGEJO_REF: "refs/tags/boot-v2.0.0",
      FORGEJO_REF_NAME: "boot-v2.0.0",
      FORGEJO_REF_TYPE: "tag",
      FORGEJO_EVENT_NAME: "push",
      FORGEJO_SHA: f.commit,
    };
    expect((await build(["--flake", f.dir, "--out", out, ...OFFLINE], ci)).code).toBe(0);
    const manifest = await readManifest(out);
    expect(manifest.version).toBe("boot-v2.0.0");
    expect(manifest.ci).toEqual({
      server: "https://forge.example",
      repository: "ops/runner-images",
      runId: "4711",
      runNumber: "42",
      workflow: "boot-images",
      ref: "refs/tags/boot-v2.0.0",
      event: "push",
    });
  });

  test("a directory that is not a git checkout is refused: the manifest needs a commit", async () => {
    const f = await fixture();
    await rm(join(f.dir, ".git"), { recursive: true });
    const out = join(f.scratch, "dist");
    const r = await build(["--flake", f.dir, "--out", out, ...OFFLINE]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("not a git checkout");
    expect(await Bun.file(join(out, "manifest.json")).exists()).toBe(false);
  });
});

/** A PATH directory with only what the script needs besides `missing` (bash and git). */
async function pathWithout(f: Fixture, missing: string): Promise<string> {
  const bin = join(f.scratch, `bin-without-${missing}`);
  await mkdir(bin);
  for (const tool of ["bash", "git"]) await symlink(Bun.which(tool)!, join(bin, tool));
  return bin;
}

describe("failures leave nothing in --out", () => {
  async function expectNoDist(scratch: string) {
    expect((await readdir(scratch)).filter((e) => e.includes("dist"))).toEqual([]);
  }

  test("a failed build names the target that failed, and the others still build", async () => {
    const f = await fixture("build-fails");
    const r = await build(["--flake", f.dir, "--out", join(f.scratch, "dist"), ...OFFLINE]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error: nix build failed for netboot-x86_64 \(exit \d+\)/);
    expect(r.stderr).toContain("simulated build failure"); // the live nix log reached the operator
    await expectNoDist(f.scratch);
  });

  test("a failed rebuild keeps the previous good dist: it is replaced only by a complete one", async () => {
    const good = await fixture();
    const out = join(good.scratch, "dist");
    expect((await build(["--flake", good.dir, "--out", out, ...OFFLINE])).code).toBe(0);
    const before = await readManifest(out);
    const failing = await fixture("build-fails");
    const r = await build(["--flake", failing.dir, "--out", out, ...OFFLINE]);
    expect(r.code).toBe(1);
    expect(await readManifest(out)).toEqual(before);
    expect((await $({ cwd: out, nothrow: true, quiet: true })`sha256sum -c --strict SHA256SUMS`).exitCode).toBe(0);
    expect((await readdir(good.scratch)).filter((e) => e.includes("dist"))).toEqual(["dist"]);
  });

  test("a store path without an expected file is named", async () => {
    const f = await fixture("no-ipxe");
    const r = await build(["--flake", f.dir, "--out", join(f.scratch, "dist"), ...OFFLINE]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error: netboot-x86_64: the build output \/nix\/store\/\S+ has no netboot\.ipxe/);
    await expectNoDist(f.scratch);
  });

  test("an ambiguous ISO (two files match iso/*.iso) is refused", async () => {
    const f = await fixture("two-isos");
    const r = await build(["--flake", f.dir, "--out", join(f.scratch, "dist"), ...OFFLINE]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("2 files matching iso/*.iso");
    await expectNoDist(f.scratch);
  });

  test("nix missing from PATH: one line saying so, exit 1", async () => {
    const f = await fixture();
    const bin = await pathWithout(f, "nix");
    const r = await build(["--flake", f.dir, "--out", join(f.scratch, "dist")], { PATH: bin });
    expect(r.code).toBe(1);
    // Not "run inside nix develop": that needs the very nix that is missing.
    expect(r.stderr.trim()).toBe("error: nix is not on PATH: install Nix 2.4 or later (Debian: apt install nix-bin; elsewhere https://nixos.org/download)");
    await expectNoDist(f.scratch);
  });

  test("a nix without flakes is reported as such, exit 1", async () => {
    const f = await fixture();
    const bin = await pathWithout(f, "nix");
    // Nix 2.3 knows neither `nix eval --expr` nor --extra-experimental-features.
    await writeFile(
      join(bin, "nix"),
      `#!/bin/sh\nif [ "$1" = --version ]; then echo 'nix (Nix) 2.3.16'; exit 0; fi\necho "error: unrecognised flag '$1'" >&2\nexit 1\n`,
    );
    await chmod(join(bin, "nix"), 0o755);
    const r = await build(["--flake", f.dir, "--out", join(f.scratch, "dist")], { PATH: bin });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("error: nix (Nix) 2.3.16 cannot use flakes");
    await expectNoDist(f.scratch);
  });

  test("--out naming a file is a usage error", async () => {
    const f = await fixture();
    const file = join(f.scratch, "dist-file");
    await writeFile(file, "not a directory");
    const r = await build(["--flake", f.dir, "--out", file, ...OFFLINE]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("exists and is not a directory");
    expect(await Bun.file(file).text()).toBe("not a directory");
  });

  test("--out naming a directory of other files is refused and left untouched", async () => {
    const f = await fixture();
    const r = await build(["--flake", f.dir, "--out", f.dir, ...OFFLINE]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("holds files that are not a previous build");
    expect(await Bun.file(join(f.dir, "flake.nix")).exists()).toBe(true);
  });

  test("a number-like --out is taken as written, not as a number", async () => {
    const f = await fixture();
    const r = await build(["--flake", f.dir, "--out", "1.10", "--target", "iso-x86_64", ...OFFLINE].map((a) => a), {
      PATH: process.env.PATH,
    });
    // Runs in the repository root: clean up the directory it made there.
    try {
      expect(r.code).toBe(0);
      expect(await Bun.file(join(import.meta.dir, "..", "1.10", "manifest.json")).exists()).toBe(true);
    } finally {
      await rm(join(import.meta.dir, "..", "1.10"), { recursive: true, force: true });
    }
  });
});

describe("interruption", () => {
  const cases = [
    ["SIGINT", 130, "with ps"],
    ["SIGTERM", 143, "with ps"],
    // zx signals process trees through `ps`, which minimal systems lack: nix must stop anyway.
    ["SIGTERM", 143, "without ps on PATH"],
  ] as const;
  for (const [signal, code, how] of cases) {
    test(`${signal} to the script alone stops nix and its builder and leaves no dist (exit ${code}, ${how})`, async () => {
      const f = await fixture("slow");
      const out = join(f.scratch, "dist");
      let child: Bun.Subprocess | undefined;
      let env: Record<string, string | undefined> | undefined;
      if (how === "without ps on PATH") {
        const bin = join(f.scratch, "bin-without-ps");
        await mkdir(bin);
        for (const tool of ["bash", "git", "nix", "nix-store"]) await symlink(Bun.which(tool)!, join(bin, tool));
        env = cleanEnv({ PATH: bin });
      }
      const running = runScript("build-images.ts", ["--flake", f.dir, "--out", out, ...OFFLINE], {
        started: (c) => (child = c),
        ...(env ? { env } : {}),
      });
      const deadline = Date.now() + 20_000;
      while (!(await Bun.file(f.startedMarker).exists())) {
        if (Date.now() > deadline) throw new Error("the slow fixture build never started");
        await Bun.sleep(50);
      }
      // Only the bun process is signalled, as CI runners and systemd do: no terminal group signal.
      child!.kill(signal);
      const r = await running;
      expect(r.code).toBe(code);
      expect(r.stderr).toContain(`interrupted (${signal})`);
      const left = await $({ quiet: true, nothrow: true })`pgrep -af ${f.nonce}`;
      expect(left.stdout.split("\n").filter((l) => l && !l.includes("pgrep"))).toEqual([]);
      const nixLeft = await $({ quiet: true, nothrow: true })`pgrep -af ${`nix.*${f.scratch}`}`;
      expect(nixLeft.stdout.split("\n").filter((l) => l && !l.includes("pgrep"))).toEqual([]);
      expect((await readdir(f.scratch)).filter((e) => e.includes("dist"))).toEqual([]);
    }, 60_000);
  }
});

describe("the command line", () => {
  test("--help explains every flag, the output and the exit codes", async () => {
    const r = await build(["--help"]);
    expect(r.code).toBe(0);
    for (const flag of ["--target", "--flake", "--out", "--boot-numbers", "--json", "--debug"]) expect(r.stdout).toContain(flag);
    expect(r.stdout).toContain("Exit codes");
    expect(r.stdout).toContain("runner-x86_64.iso");
    // The usage line shows the flags, and no line ends in spaces.
    expect(r.stdout).toContain("$ build-images.ts [--target <name>...] [--flake <ref>] [--out <dir>] [--boot-numbers] [--json]");
    expect(r.stdout).not.toMatch(/[ \t]$/m);
  });

  test("an unknown flag is a usage error, exit 2", async () => {
    const r = await build(["--taget", "iso-x86_64"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("error: unknown option --taget");
  });

  test("a stray argument is a usage error, exit 2", async () => {
    const r = await build(["iso-x86_64"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unexpected argument: iso-x86_64");
  });
});
