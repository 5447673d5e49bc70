/** The lib modules that build, publish and verify share: each behaviour a script's user relies on. */
import { afterAll, describe, expect, test } from "bun:test";
import { $ } from "zx/core";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UsageError } from "../scripts/lib/cli/errors.ts";
import { parseCommandLine, type CommandSpec } from "../scripts/lib/cli/command-line.ts";
import { ciEnv } from "../scripts/lib/cli/ci-env.ts";
import { copyAndHash, hashFile } from "../scripts/lib/build/hash.ts";
import { IpxeScriptError, rewriteIpxeScript } from "../scripts/lib/build/ipxe-script.ts";
import { ForgejoClient } from "../scripts/lib/forgejo/client.ts";
import { tuningFromEnv } from "../scripts/lib/forgejo/http.ts";
import { addSecret, progress, redact, say } from "../scripts/lib/cli/log.ts";
import {
  ManifestError, checkDist, formatSums, parseSums, validateManifest, writeManifest, type Manifest,
} from "../scripts/lib/build/manifest.ts";
import { DEFAULT_TARGETS, TARGETS, releaseNames, selectTargets } from "../scripts/lib/build/targets.ts";
import { versionLabel } from "../scripts/lib/build/source.ts";
import { gitRefusal, isPrereleaseTag, tagProblem } from "../scripts/lib/trust/tags.ts";
import { ROOT } from "./support/run.ts";

const scratch = await mkdtemp(join(tmpdir(), "runner-images-lib-"));
afterAll(() => rm(scratch, { recursive: true, force: true }));

describe("targets", () => {
  test("the x86_64 netboot and ISO targets are built by default, under stable release names", () => {
    expect(DEFAULT_TARGETS.map((t) => t.attr)).toEqual(["netboot-x86_64", "iso-x86_64"]);
    expect(releaseNames()).toEqual(["bzImage-x86_64", "initrd-x86_64", "netboot-x86_64.ipxe", "runner-x86_64.iso"]);
  });

  test("release names are unique, version-free and architecture-qualified", () => {
    const names = releaseNames(TARGETS);
    expect(new Set(names).size).toBe(names.length);
    for (const t of TARGETS) {
      const arch = t.system.split("-")[0]!;
      for (const f of t.files) {
        expect(f.name).toContain(arch);
        expect(f.name).not.toMatch(/\d+\.\d+/);
      }
    }
  });

  test("selection keeps table order, accepts comma lists and drops repeats", () => {
    expect(selectTargets(["iso-x86_64", "netboot-x86_64,iso-x86_64"]).map((t) => t.attr)).toEqual(["netboot-x86_64", "iso-x86_64"]);
    expect(() => selectTargets(["iso-x86_64,bogus"])).toThrow("unknown target bogus");
  });
});

describe("hashing", () => {
  test("hashFile and copyAndHash agree with sha256sum on a multi-chunk file, and the copy is identical", async () => {
    const source = join(scratch, "big.bin");
    const data = new Uint8Array(9 * 1024 * 1024 + 123);
    for (let i = 0; i < data.length; i += 4096) data[i] = (i / 4096) % 251;
    await Bun.write(source, data);
    const reference = (await $({ quiet: true })`sha256sum ${source}`).stdout.split(" ")[0]!;
    expect((await hashFile(source)).sha256).toBe(reference);
    const target = join(scratch, "copy.bin");
    let seen = 0;
    const digest = await copyAndHash(source, target, (done) => (seen = done));
    expect(digest).toEqual({ size: data.length, sha256: reference });
    expect(seen).toBe(data.length);
    expect((await $({ quiet: true })`cmp ${source} ${target}`).exitCode).toBe(0);
  });

  test("copyAndHash never overwrites an existing file", async () => {
    // Its own source, which exists: the refusal must come from the target, not a missing source.
    const source = join(scratch, "source.bin");
    await writeFile(source, "new bytes");
    const target = join(scratch, "exists.bin");
    await writeFile(target, "keep me");
    await expect(copyAndHash(source, target)).rejects.toThrow();
    expect(await Bun.file(target).text()).toBe("keep me");
    // The same call with a free target does copy: the refusal above is about the existing file.
    await copyAndHash(source, join(scratch, "free.bin"));
    expect(await Bun.file(join(scratch, "free.bin")).text()).toBe("new bytes");
  });
});

describe("iPXE script rewrite", () => {
  const renames = new Map([["bzImage", "bzImage-x86_64"], ["initrd", "initrd-x86_64"]]);
  test("a script loading a file the release does not publish is refused, naming the file", () => {
    const script = "#!ipxe\nkernel vmlinuz initrd=initrd\ninitrd initrd\nboot\n";
    expect(() => rewriteIpxeScript(script, renames)).toThrow('loads "vmlinuz"');
  });
  test("a script without a kernel line is refused", () => {
    expect(() => rewriteIpxeScript("#!ipxe\ninitrd initrd\nboot\n", renames)).toThrow(IpxeScriptError);
  });
  test("options before the file name are kept", () => {
    const out = rewriteIpxeScript("#!ipxe\nkernel bzImage initrd=initrd\ninitrd --name initrd initrd\nboot\n", renames);
    expect(out).toContain("initrd --name initrd initrd-x86_64");
  });
  test("on the trust-enforcing iPXE the script drops strays, then verifies every image it loads, by its loaded name and a relative .sig, before boot", () => {
    const script = "#!ipxe\nkernel bzImage init=/x initrd=initrd ${cmdline}\ninitrd --name initrd initrd\ninitrd initrd\nboot\n";
    const lines = rewriteIpxeScript(script, renames).split("\n");
    const at = (l: string) => lines.indexOf(l);
    const boot = at("boot");
    expect(at("imgfree")).toBeGreaterThan(0);
    expect(at("imgfree")).toBeLessThan(lines.findIndex((l) => l.startsWith("kernel ")));
    for (const verify of ["imgverify bzImage-x86_64 bzImage-x86_64.sig || goto refused", "imgverify initrd initrd-x86_64.sig || goto refused", "imgverify initrd-x86_64 initrd-x86_64.sig || goto refused"]) {
      expect(at(verify)).toBeGreaterThan(lines.findLastIndex((l) => l.startsWith("initrd ")));
      expect(at(verify)).toBeLessThan(boot);
    }
    // the skip to boot without verifying is taken only where the enforcing iPXE's variable is unset
    expect(lines.filter((l) => l.includes("goto unverified"))).toEqual(["isset ${runner_images_verify} || goto unverified_load", "isset ${runner_images_verify} || goto unverified_boot"]);
    // a refused image powers off; nothing after it boots
    expect(lines.slice(at(":refused"))).not.toContain("boot");
    expect(lines.slice(at(":refused"))).toContain("poweroff || exit 1");
  });
  test("a script without a boot line is refused: there is nothing to verify before", () => {
    expect(() => rewriteIpxeScript("#!ipxe\nkernel bzImage initrd=initrd\ninitrd initrd\n", renames)).toThrow("no boot line");
  });
});

describe("manifest and SHA256SUMS", () => {
  const sha = (c: string) => c.repeat(64);
  const manifest = (): Manifest => ({
    schemaVersion: 1,
    version: "boot-v1.0.0",
    source: { commit: "a".repeat(40), dirty: false, flake: "git+file:///src" },
    inputs: {},
    nix: { version: "2.8.0", system: "x86_64-linux" },
    builtAt: "2026-11-26T00:00:00.000Z",
    ci: null,
    artifacts: [
      { name: "one.iso", target: "iso-x86_64", source: "iso/x.iso", size: 3, sha256: sha("0"), storePath: "/nix/store/x", drvPath: "/nix/store/x.drv" },
    ],
  });

  test("SHA256SUMS round-trips and rejects malformed lines and repeats", () => {
    const text = formatSums([{ name: "a", sha256: sha("1") }, { name: "b", sha256: sha("2") }]);
    expect(text).toBe(`${sha("1")}  a\n${sha("2")}  b\n`);
    expect([...parseSums(text)]).toEqual([["a", sha("1")], ["b", sha("2")]]);
    expect(() => parseSums(`${sha("1")} a\n`)).toThrow(ManifestError); // one space, no mode char: not coreutils format
    expect(() => parseSums(`${sha("1")}  a\n${sha("2")}  a\n`)).toThrow("lists a twice");
  });

  test.each([
    ["a short commit", (m: Manifest) => (m.source.commit = "abc123"), "source.commit"],
    ["a path as a name", (m: Manifest) => (m.artifacts[0]!.name = "../etc/passwd"), "not a plain file name"],
    ["a repeated name", (m: Manifest) => m.artifacts.push({ ...m.artifacts[0]! }), "listed twice"],
    ["a bad digest", (m: Manifest) => (m.artifacts[0]!.sha256 = "xyz"), "no valid sha256"],
    ["another schema", (m: Manifest) => ((m as { schemaVersion: number }).schemaVersion = 2), "schemaVersion 2"],
  ])("validation refuses %s", (_, spoil, message) => {
    const m = manifest();
    spoil(m);
    expect(() => validateManifest(m)).toThrow(message);
  });

  test("checkDist re-hashes: a tampered file and a SHA256SUMS that disagrees are both named", async () => {
    const dir = await mkdtemp(join(scratch, "dist-"));
    await writeFile(join(dir, "one.iso"), "abc");
    const m = manifest();
    m.artifacts[0]!.sha256 = new Bun.CryptoHasher("sha256").update("abc").digest("hex");
    await writeManifest(dir, m);
    expect((await checkDist(dir)).version).toBe("boot-v1.0.0");

    await writeFile(join(dir, "one.iso"), "abd");
    await expect(checkDist(dir)).rejects.toThrow("one.iso has SHA-256");
    await writeFile(join(dir, "one.iso"), "abc");
    await writeFile(join(dir, "SHA256SUMS"), `${sha("f")}  one.iso\n`);
    await expect(checkDist(dir)).rejects.toThrow("SHA256SUMS and manifest.json disagree on the SHA-256 of one.iso");
    await writeFile(join(dir, "SHA256SUMS"), formatSums(m.artifacts));
    await rm(join(dir, "one.iso"));
    await expect(checkDist(dir)).rejects.toThrow("one.iso is missing");
  });
});

describe("command line", () => {
  const spec: CommandSpec = {
    name: "t.ts",
    summary: "test",
    flags: [
      { name: "title", value: "text", description: "" },
      { name: "target", value: "name", repeatable: true, description: "" },
      { name: "json", description: "" },
    ],
  };
  test("number-like values arrive exactly as typed", () => {
    expect(parseCommandLine(spec, ["--title", "1.10"])!.flags.title).toBe("1.10");
    expect(parseCommandLine(spec, ["--title=007"])!.flags.title).toBe("007");
    expect(parseCommandLine(spec, ["--target", "0x10", "--target", "1e3"])!.flags.target).toEqual(["0x10", "1e3"]);
  });
  test("a value flag without a value, a repeated single flag and a valued switch are usage errors", () => {
    expect(() => parseCommandLine(spec, ["--title"])).toThrow(UsageError);
    expect(() => parseCommandLine(spec, ["--title", "a", "--title", "b"])).toThrow("given more than once");
    expect(() => parseCommandLine(spec, ["--json=yes"])).toThrow(UsageError);
  });
  test("`--` is refused by a script that passes nothing through", () => {
    expect(() => parseCommandLine(spec, ["--", "x"])).toThrow('unexpected "--"');
  });
});

describe("secrets", () => {
  test("a registered secret is masked wherever it appears in a line", () => {
    addSecret("tok_0123456789abcdef");
    expect(redact("GET /x with token tok_0123456789abcdef failed")).toBe("GET /x with token [redacted] failed");
  });
});

describe("CI environment", () => {
  test("FORGEJO_* wins over GITHUB_*, the server URL loses its trailing slash, and REF_TYPE is derived if absent", () => {
    const ci = ciEnv({ GITHUB_RUN_ID: "1", GITHUB_SERVER_URL: "https://a.example/", FORGEJO_SERVER_URL: "https://b.example//", GITHUB_REF: "refs/tags/boot-v1.0.0" });
    expect(ci).toMatchObject({ inCi: true, serverUrl: "https://b.example", refType: "tag" });
    expect(ciEnv({}).inCi).toBe(false);
  });
  test("a pushed boot-v* tag names the build only for its own commit and a clean tree", () => {
    const commit = "c".repeat(40);
    const run = { FORGEJO_RUN_ID: "1", FORGEJO_REF_TYPE: "tag", FORGEJO_REF_NAME: "boot-v3.0.0", FORGEJO_SHA: commit };
    const ci = ciEnv({ ...run, FORGEJO_EVENT_NAME: "push" });
    expect(versionLabel(commit, false, [], ci)).toBe("boot-v3.0.0");
    expect(versionLabel("d".repeat(40), false, [], ci)).toBe("dev-dddddddddddd");
    expect(versionLabel(commit, true, [], ci)).toBe("dev-cccccccccccc-dirty");
    // Dispatched on that tag: a dev build (published as boot-dev-), whose manifest must not claim the tag.
    expect(versionLabel(commit, false, [], ciEnv({ ...run, FORGEJO_EVENT_NAME: "workflow_dispatch" }))).toBe("dev-cccccccccccc");
  });
});

describe("downloads", () => {
  test("follow redirects only to https, plain http on loopback or the server itself: never file:, data: or http elsewhere", async () => {
    const where: Record<string, string> = {
      "/to-file": "file:///etc/hostname",
      "/to-data": "data:text/plain,forged",
      "/to-ftp": "ftp://127.0.0.1/x",
      "/to-http-elsewhere": "http://downloads.example/x",
      "/to-loopback": "/final",
    };
    const srv = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch(req) {
        const path = new URL(req.url).pathname;
        if (path === "/final") return new Response("the bytes");
        return new Response(null, { status: 302, headers: { location: where[path]! } });
      },
    });
    try {
      const base = `http://127.0.0.1:${srv.port}`;
      const client = new ForgejoClient({ server: base, owner: "o", repo: "r", token: "", tuning: tuningFromEnv({}) });
      const text = async (url: string) => new TextDecoder().decode(await client.downloadSmall(url, "downloading x"));
      expect(await text(`${base}/to-loopback`)).toBe("the bytes");
      for (const path of ["/to-file", "/to-data", "/to-ftp", "/to-http-elsewhere"]) {
        await expect(text(`${base}${path}`)).rejects.toThrow("downloading x: refusing to fetch");
      }
      // A download URL the server handed out is held to the same rule.
      await expect(text("file:///etc/hostname")).rejects.toThrow("refusing to fetch file:");
    } finally {
      srv.stop(true);
    }
  });
});

describe("release tags: one rule for the workflow and the publisher", () => {
  const NAMES = [
    "boot-v1.2.0", "boot-v1.10", "boot-v2026.11.30", "boot-v1.0.0-rc1", "boot-v1", "boot-dev-42-abc1234", "boot-dev-feature_x",
    "boot-v1.0.0-rc.", "boot-v1.0.0-x.lock", "boot-dev-a..b", "boot-v1 2", "boot-v1~1", "boot-v1^", "boot-v1:2", "boot-v1?",
    "boot-v1*", "boot-v1[2", "boot-v1\\2", "boot-v1@{2", "boot-v1/.x", "boot-v1//x", "boot-v1/", "boot-v1\t", "boot-v1\x7f",
    "boot-v1/x", "boot-v.x", "boot-vé", "@", "boot-v@",
  ];

  test("git's own verdict: gitRefusal agrees with `git check-ref-format refs/tags/<name>` on every name", () => {
    for (const name of NAMES) {
      const git = Bun.spawnSync(["git", "check-ref-format", `refs/tags/${name}`]).exitCode === 0;
      expect({ name, accepted: gitRefusal(name) === null }).toEqual({ name, accepted: git });
    }
  });

  test("every boot-v* and boot-dev- name git accepts is publishable (no \"/\"); others are refused, naming the rule", () => {
    for (const ok of ["boot-v1.2.0", "boot-v1.10", "boot-v2026.11.30", "boot-v1.0.0-rc1", "boot-dev-42-abc1234", "boot-vé"]) expect({ ok, problem: tagProblem(ok) }).toEqual({ ok, problem: null });
    expect(tagProblem("v1.0")).toContain("boot-v<version>");
    expect(tagProblem("boot-v")).toContain("boot-v<version>");
    expect(tagProblem("boot-v1.0.0-x.lock")).toContain('ends with ".lock"');
    expect(tagProblem("boot-dev-a..b")).toContain('contains ".."');
    expect(tagProblem("boot-v1.0.0-rc.")).toContain("ends with a dot");
    expect(tagProblem("boot-v1/x")).toContain("contains /");
  });

  test("prereleases: dev tags and boot-v tags with a suffix", () => {
    expect([isPrereleaseTag("boot-dev-1"), isPrereleaseTag("boot-v1.0.0-rc1"), isPrereleaseTag("boot-v1.10"), isPrereleaseTag("boot-v2026.11.30")]).toEqual([true, true, false, false]);
  });

  /** Runs scripts/lib/trust/tags.ts as the workflow (a push of `ref`, with `env`) or a person (args) does. */
  const tagsScript = (args: string[], env: Record<string, string> = {}) =>
    Bun.spawnSync([process.execPath, join(ROOT, "scripts", "check-tag.ts"), ...args], { env: { PATH: process.env.PATH, ...env }, stdout: "pipe", stderr: "pipe" });
  const pushOf = (ref: string, event = "push") => ({
    FORGEJO_RUN_ID: "7", FORGEJO_REF: `refs/tags/${ref}`, FORGEJO_REF_NAME: ref, FORGEJO_REF_TYPE: "tag", FORGEJO_EVENT_NAME: event,
  });

  test("run as the workflow's first step, it refuses the pushed tag in seconds, exit 2, and lets a good one through", () => {
    const bad = tagsScript([], pushOf("boot-v1.0.0-x.lock"));
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr.toString()).toContain('error: tag boot-v1.0.0-x.lock cannot be published: git refuses it as a tag name: a part of it ends with ".lock"');
    expect(tagsScript([], pushOf("boot-v1.10")).exitCode).toBe(0);
    // A dispatch run on a tag (Forgejo's dispatch expands a tag name too) publishes a boot-dev-
    // prerelease, never under that tag: there is no pushed tag to refuse.
    expect(tagsScript([], pushOf("v0.9", "workflow_dispatch")).exitCode).toBe(0);
  });

  test("by hand: --help explains it, a flag is bad input, a tag given checks that tag", () => {
    const help = tagsScript(["--help"]);
    expect(help.exitCode).toBe(0);
    expect(help.stdout.toString()).toContain("usage: bun scripts/check-tag.ts [<tag>]");
    expect(tagsScript(["--bogus"]).exitCode).toBe(2);
    expect(tagsScript(["boot-v1.2"]).exitCode).toBe(0);
    expect(tagsScript(["v1.2"]).exitCode).toBe(2);
  });

  test("on a boot-v tag push without the signing secret, it refuses in seconds, exit 2, naming the secret", () => {
    const unsigned = tagsScript([], { ...pushOf("boot-v1.2.0"), RUNNER_IMAGES_SIGNING_KEY_IS_SET: "false" });
    expect(unsigned.exitCode).toBe(2);
    expect(unsigned.stderr.toString()).toContain("the repository secret RUNNER_IMAGES_SIGNING_KEY is not set");
    expect(tagsScript([], { ...pushOf("boot-v1.2.0"), RUNNER_IMAGES_SIGNING_KEY_IS_SET: "true" }).exitCode).toBe(0);
  });
});

describe("terminal output", () => {
  /** What the functions write to a terminal's stderr. */
  function onTerminal(run: () => void): string {
    const stderr = process.stderr as unknown as { isTTY: boolean; write: (chunk: string) => boolean };
    const [tty, write] = [stderr.isTTY, stderr.write];
    let out = "";
    stderr.isTTY = true;
    stderr.write = (chunk: string) => ((out += chunk), true);
    try {
      run();
    } finally {
      stderr.isTTY = tty;
      stderr.write = write;
    }
    return out;
  }
  /** The lines as a terminal shows them: each \r redraws its line. */
  const shown = (out: string) => out.split("\n").map((l) => l.split("\r").at(-1)!.replace(/\x1b\[2K/g, ""));

  test("a message after a progress line starts on a line of its own, also when the bar was never finished", () => {
    const out = onTerminal(() => {
      const bar = progress("hashing runner-x86_64.iso", 300 * 1024 * 1024);
      bar.update(100 * 1024 * 1024);
      say("error: interrupted");
    });
    expect(shown(out)).toContain("error: interrupted");
    expect(shown(out).find((l) => l.startsWith("hashing"))).toMatch(/^hashing runner-x86_64\.iso: 33% of 300\.0 MiB/);
  });

  test("the last byte ends the line: the next message is never glued to 100%", () => {
    const out = onTerminal(() => {
      const bar = progress("hashing runner-x86_64.iso", 300 * 1024 * 1024);
      bar.update(300 * 1024 * 1024);
      say("creating draft release boot-v1.2.0");
    });
    expect(shown(out)).toContain("creating draft release boot-v1.2.0");
  });
});

describe("server strings on the terminal", () => {
  // An asset name a lying server could send: a carriage return and an erase-line sequence that
  // would print a fake success over the real output, and a right-to-left override.
  const NAME = "x\r\x1b[2Kverified: 4 files match the statement\u202egpj.exe";
  test("a name with ESC, CR and a bidi override prints as visible escapes, on every line say() writes", () => {
    const script = `import { say } from ${JSON.stringify(join(ROOT, "scripts", "lib", "cli", "log.ts"))}; say(${JSON.stringify(`FAIL it has ${NAME}, the manifest does not`)});`;
    const r = Bun.spawnSync([process.execPath, "-e", script], { stdout: "pipe", stderr: "pipe" });
    const out = r.stderr.toString();
    expect(out).toBe("FAIL it has x\\x0d\\x1b[2Kverified: 4 files match the statement\\u202egpj.exe, the manifest does not\n");
    expect(out).not.toMatch(/[\r\x1b\u202e]/);
  });
});
