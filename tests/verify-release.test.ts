/**
 * verify-release.ts: a local dist and releases published to the test server, each forgery caught
 * and named: manifest edits (signed or not), a missing signature, a dev prerelease or a release
 * re-published under another tag, a moved git tag; the trust anchor (allowed_signers without a
 * key, a pinned fingerprint), the maintainer countersignature, and --download.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { $ } from "zx/core";
import { mkdtemp, readdir, readlink, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { formatSums, type Manifest } from "../scripts/lib/build/manifest.ts";
import { STATEMENT_FILE, formatStatement, makeStatement } from "../scripts/lib/trust/provenance.ts";
import { NAMESPACE, sign } from "../scripts/lib/trust/signing.ts";
import { makeDist } from "./support/dist.ts";
import { MAIN_SHA, startForgejo, type ForgejoServer } from "./support/forgejo-server.ts";
import { cleanEnv, runScript } from "./support/run.ts";
import { makeSshKey, writeAllowedSigners, type SshKey } from "./support/ssh-keys.ts";

const TOKEN = "fjt_verify_a1b2c3d4e5f60718";
const OTHER_SHA = "fedcba9876543210fedcba9876543210fedcba98";
let keys: string;
let allowedSigners: string;
const fingerprint: Record<string, string> = {};
const dirs: string[] = [];

beforeAll(async () => {
  keys = await mkdtemp(join(tmpdir(), "runner-images-keys-"));
  dirs.push(keys);
  const made: Record<string, SshKey> = {};
  for (const name of ["ci", "intruder", "maintainer"]) {
    made[name] = await makeSshKey(join(keys, name), { comment: `${name}@runner-images` });
    fingerprint[name] = made[name].fingerprint;
  }
  allowedSigners = await writeAllowedSigners(join(keys, "allowed_signers"), [
    ["ci@runner-images", NAMESPACE.publisher, made.ci!],
    ["maintainer@runner-images", NAMESPACE.countersignature, made.maintainer!],
  ]);
});
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function dist(commit = MAIN_SHA) {
  const d = await makeDist({ commit });
  dirs.push(d.dir);
  return d;
}

/** What publish-release writes into a dist for `tag`: the statement, signed with `key` (null: unsigned). */
async function writeProvenance(dir: string, manifest: Manifest, tag: string, key: string | null = "ci") {
  const read = (name: string) => Bun.file(join(dir, name)).bytes();
  const statement = Buffer.from(formatStatement(makeStatement(manifest, await read("manifest.json"), await read("SHA256SUMS"), tag)));
  await writeFile(join(dir, STATEMENT_FILE), statement);
  if (key) await writeFile(join(dir, `${STATEMENT_FILE}.sig`), await sign(statement, { file: join(keys, key) }, NAMESPACE.publisher));
}

async function rewriteManifest(dir: string, change: (m: Manifest) => void) {
  const m = (await Bun.file(join(dir, "manifest.json")).json()) as Manifest;
  change(m);
  await writeFile(join(dir, "manifest.json"), `${JSON.stringify(m, null, 2)}\n`);
  return m;
}

const verify = (args: string[], env: Record<string, string | undefined> = {}) =>
  runScript("verify-release.ts", ["--allowed-signers", allowedSigners, ...args], { env: cleanEnv(env) });

describe("a local dist", () => {
  test("a signed build verifies, and its provenance is printed with the signer's key", async () => {
    const d = await dist();
    await writeProvenance(d.dir, d.manifest, "boot-dev-7-0123456789ab");
    const r = await verify(["--dist", d.dir, "--any-tag", "--json"]);
    expect(r.stderr).not.toContain("FAIL");
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("tag        boot-dev-7-0123456789ab (dev-prerelease, refs/tags/boot-dev-7-0123456789ab)");
    expect(r.stderr).toContain(`commit     ${MAIN_SHA}`);
    expect(r.stderr).toContain("nixpkgs    b18a4b905f8d028dc4476412e6d6891728695379 sha256-gwrPcFf/rDjHPaVflbDZ040ZDmBTRj/7+s8ZmE2SaIM=");
    expect(r.stderr).toContain(`signature  good, by ci@runner-images (key ${fingerprint.ci})`);
    const result = JSON.parse(r.stdout);
    expect(result.ok).toBe(true);
    expect(result.checked).toEqual(d.manifest.artifacts.map((a) => a.name));
    expect(result.statement.subject).toEqual(d.manifest.artifacts.map((a) => ({ name: a.name, digest: { sha256: a.sha256 } })));
  });

  test("a tampered image is named with both hashes", async () => {
    const d = await dist();
    await writeProvenance(d.dir, d.manifest, "boot-v1.0.0");
    const iso = join(d.dir, "runner-x86_64.iso");
    const bytes = await Bun.file(iso).bytes();
    bytes[1000] = bytes[1000]! ^ 1;
    await Bun.write(iso, bytes);
    const r = await verify(["--dist", d.dir, "--any-tag"]);
    expect(r.code).toBe(1);
    const expected = d.manifest.artifacts.find((a) => a.name === "runner-x86_64.iso")!.sha256;
    expect(r.stderr).toMatch(new RegExp(`FAIL runner-x86_64\\.iso has SHA-256 [0-9a-f]{64}, the manifest says ${expected}`));
    expect(r.stderr).toContain("error: 1 problem with dist");
  });

  test("--json lists every check in order with its result: the byte check fails naming the file, the others pass or say why they were skipped", async () => {
    const d = await dist();
    await writeProvenance(d.dir, d.manifest, "boot-v1.0.0");
    const iso = join(d.dir, "runner-x86_64.iso");
    const bytes = await Bun.file(iso).bytes();
    bytes[1000] = bytes[1000]! ^ 1;
    await Bun.write(iso, bytes);
    const r = await verify(["--dist", d.dir, "--any-tag", "--json"]);
    expect(r.code).toBe(1);
    const result = JSON.parse(r.stdout) as { ok: boolean; problems: string[]; checks: { check: string; outcome: string; reason?: string; details: string[] }[] };
    expect(result.ok).toBe(false);
    expect(result.checks.map((c) => [c.check, c.outcome, c.reason ?? null])).toEqual([
      ["manifest.json matches SHA256SUMS", "ok", null],
      ["statement parses", "ok", null],
      ["the release is the one asked for", "ok", null],
      ["publisher's signature", "ok", null],
      ["maintainer's countersignature", "skipped", "not required (--require-countersignature)"],
      ["statement matches the tag, manifest.json and SHA256SUMS", "ok", null],
      ["git tag is at the statement's commit", "skipped", "a local dist: there is no server to ask"],
      ["release holds only the manifest's files", "skipped", "a local directory may hold other files"],
      ["every file, byte for byte", "failed", null],
      ["rebuild from the statement's commit", "skipped", "not asked for (--rebuild)"],
      ["boot files' signatures (iPXE imgverify)", "skipped", "every file, byte for byte failed"],
    ]);
    const bytesCheck = result.checks.find((c) => c.check === "every file, byte for byte")!;
    expect(bytesCheck.details).toHaveLength(1);
    expect(bytesCheck.details[0]).toMatch(/^runner-x86_64\.iso has SHA-256 [0-9a-f]{64}, the manifest says [0-9a-f]{64}$/);
    expect(result.problems).toEqual(bytesCheck.details);
    expect(result.checks.find((c) => c.check === "publisher's signature")!.details).toEqual([`by ci@runner-images (key ${fingerprint.ci})`]);
    // The log says the same, in the same order: the failed check, then its problem on a FAIL line.
    expect(r.stderr).toContain(`[failed]  every file, byte for byte\nFAIL ${bytesCheck.details[0]}\n[skipped] rebuild from the statement's commit: not asked for (--rebuild)`);
  });

  test("with no statement, the checks that need it are skipped and say which check failed; --allow-unsigned is a skipped signature check", async () => {
    const d = await dist();
    const r = await verify(["--dist", d.dir, "--any-tag", "--allow-unsigned", "--json"]);
    expect(r.code).toBe(1);
    const checks = (JSON.parse(r.stdout) as { checks: { check: string; outcome: string; reason?: string; details: string[] }[] }).checks;
    const outcome = (name: string) => checks.find((c) => c.check === name);
    expect(outcome("statement parses")).toMatchObject({ outcome: "failed", details: [expect.stringContaining(`there is no ${STATEMENT_FILE}`)] });
    expect(outcome("publisher's signature")).toMatchObject({ outcome: "skipped", reason: "--allow-unsigned: nothing proves who made these files" });
    expect(outcome("statement matches the tag, manifest.json and SHA256SUMS")).toMatchObject({ outcome: "skipped", reason: "statement parses failed" });
    expect(outcome("git tag is at the statement's commit")).toMatchObject({ outcome: "skipped", reason: "statement parses failed" });
    expect(outcome("every file, byte for byte")).toMatchObject({ outcome: "ok", details: d.manifest.artifacts.map((a) => a.name) });
  });

  test("a manifest edit under a good signature: the signed statement no longer matches it", async () => {
    const d = await dist();
    await writeProvenance(d.dir, d.manifest, "boot-dev-1");
    await rewriteManifest(d.dir, (m) => {
      m.version = "boot-v9.9.9";
      m.source.commit = OTHER_SHA;
    });
    const r = await verify(["--dist", d.dir, "--any-tag"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("signature  good");
    expect(r.stderr).toMatch(/FAIL manifest\.json has SHA-256 [0-9a-f]{64}, the statement says [0-9a-f]{64}: it was changed after the statement was made/);
    expect(r.stderr).toContain(`FAIL the statement names commit ${MAIN_SHA}, manifest.json ${OTHER_SHA}`);
  });

  test("a manifest edit with a statement rewritten to match: the signature no longer matches the statement", async () => {
    const d = await dist();
    await writeProvenance(d.dir, d.manifest, "boot-dev-1");
    const edited = await rewriteManifest(d.dir, (m) => (m.source.commit = OTHER_SHA));
    const signature = await Bun.file(join(d.dir, `${STATEMENT_FILE}.sig`)).bytes();
    await writeProvenance(d.dir, edited, "boot-dev-1", null);
    await writeFile(join(d.dir, `${STATEMENT_FILE}.sig`), signature);
    const r = await verify(["--dist", d.dir, "--any-tag"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`FAIL ${STATEMENT_FILE}.sig does not match ${STATEMENT_FILE}: ${STATEMENT_FILE} was changed after signing`);
  });

  test("a manifest edit on an unsigned dist is still caught by the statement, with --allow-unsigned", async () => {
    const d = await dist();
    await writeProvenance(d.dir, d.manifest, "boot-dev-1", null);
    await rewriteManifest(d.dir, (m) => (m.builtAt = "2020-01-01T00:00:00.000Z"));
    const r = await verify(["--dist", d.dir, "--any-tag", "--allow-unsigned"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("WARNING: --allow-unsigned");
    expect(r.stderr).toContain("it was changed after the statement was made");
  });

  test("a manifest.json that is not JSON is named, without the runtime's parser message", async () => {
    const d = await dist();
    await writeProvenance(d.dir, d.manifest, "boot-v1.0.0");
    await writeFile(join(d.dir, "manifest.json"), "{");
    const r = await verify(["--dist", d.dir, "--any-tag"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`error: dist ${d.dir}: manifest.json is not valid JSON`);
    expect(r.stderr).not.toContain("Parse error");
  });

  test("a file the system cannot read (a dangling link in a mirror) is one line with the path and the cause, not the runtime's text", async () => {
    const d = await dist();
    await writeProvenance(d.dir, d.manifest, "boot-v1.0.0");
    await symlink(join(d.dir, "gone"), join(d.dir, "stale-link"));
    const r = await verify(["--dist", d.dir, "--any-tag"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`error: cannot stat ${join(d.dir, "stale-link")}: it does not exist (ENOENT)`);
    expect(r.stderr).not.toContain("no such file or directory");
  });

  test("a tampered SHA256SUMS disagrees with the manifest and with the statement", async () => {
    const d = await dist();
    await writeProvenance(d.dir, d.manifest, "boot-v1.0.0");
    const forged = d.manifest.artifacts.map((a) => (a.name === "initrd-x86_64" ? { ...a, sha256: "0".repeat(64) } : a));
    await writeFile(join(d.dir, "SHA256SUMS"), formatSums(forged));
    const r = await verify(["--dist", d.dir, "--any-tag"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("FAIL SHA256SUMS and manifest.json disagree on the SHA-256 of initrd-x86_64");
    expect(r.stderr).toMatch(/FAIL SHA256SUMS has SHA-256 [0-9a-f]{64}, the statement says [0-9a-f]{64}: it was changed after the statement was made/);
  });

  test("a missing signature fails by default; --allow-unsigned passes and says what it skipped", async () => {
    const d = await dist();
    await writeProvenance(d.dir, d.manifest, "boot-v1.0.0", null);
    const strict = await verify(["--dist", d.dir, "--any-tag"]);
    expect(strict.code).toBe(1);
    expect(strict.stderr).toContain(`FAIL there is no ${STATEMENT_FILE}.sig: an unsigned release proves nothing about who built it (--allow-unsigned skips this check)`);
    const lax = await verify(["--dist", d.dir, "--any-tag", "--allow-unsigned"]);
    expect(lax.code).toBe(0);
    expect(lax.stderr).toContain("WARNING: --allow-unsigned: provenance.intoto.json.sig is not checked, so nothing proves who made these files");
    expect(lax.stderr).toContain("signature  NOT CHECKED (--allow-unsigned)");
    expect(lax.stderr).toContain("UNSIGNED (--allow-unsigned)");
  });

  test("a dist with no statement at all fails, even with --allow-unsigned", async () => {
    const d = await dist();
    const r = await verify(["--dist", d.dir, "--any-tag", "--allow-unsigned"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`FAIL there is no ${STATEMENT_FILE}: nothing binds these files to a tag, a commit or a builder`);
  });

  test("a signature by a key that is not in allowed_signers names the key", async () => {
    const d = await dist();
    await writeProvenance(d.dir, d.manifest, "boot-v1.0.0", "intruder");
    const r = await verify(["--dist", d.dir, "--any-tag"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`FAIL ${STATEMENT_FILE}.sig was made by key ${fingerprint.intruder}, which is not in ${allowedSigners}`);
    expect(r.stderr).toContain("signature  BAD");
  });

  test("a maintainer's key, allowed only to countersign, cannot stand in for the publisher", async () => {
    const d = await dist();
    await writeProvenance(d.dir, d.manifest, "boot-v1.0.0", "maintainer");
    const r = await verify(["--dist", d.dir, "--any-tag"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`does not allow for namespace ${NAMESPACE.publisher}`);
  });

  test("an allowed_signers without a key is an error that says how to add one", async () => {
    const d = await dist();
    await writeProvenance(d.dir, d.manifest, "boot-v1.0.0");
    const empty = join(keys, "empty_signers");
    await writeFile(empty, "# no keys yet\n#   ci@runner-images namespaces=\"runner-images-provenance\" ssh-ed25519 AAAAC3Nza...\n");
    const r = await runScript("verify-release.ts", ["--allowed-signers", empty, "--dist", d.dir, "--any-tag"], { env: cleanEnv() });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${empty} has no key for namespace ${NAMESPACE.publisher}, so no signature can be trusted: add the public key (echo`);
    expect(r.stderr).toContain("--signer-fingerprint SHA256:");
    expect(r.stderr).not.toContain("run with --help");
    // The repository's own allowed_signers has no key yet: the default refuses to pass too.
    const repoDefault = await runScript("verify-release.ts", ["--dist", d.dir, "--any-tag"], { env: cleanEnv() });
    expect(repoDefault.code).toBe(2);
    expect(repoDefault.stderr).toContain("has no key for namespace");
  });

  test("a pinned fingerprint: trusts exactly that key, needs no allowed_signers, refuses any other", async () => {
    const d = await dist();
    await writeProvenance(d.dir, d.manifest, "boot-v1.0.0");
    const empty = join(keys, "none");
    await writeFile(empty, "");
    const good = await runScript("verify-release.ts", ["--allowed-signers", empty, "--dist", d.dir, "--any-tag", "--signer-fingerprint", fingerprint.ci!], { env: cleanEnv() });
    expect(good.stderr).not.toContain("FAIL");
    expect(good.code).toBe(0);
    expect(good.stderr).toContain(`signature  good, by pinned-key (key ${fingerprint.ci})`);
    const other = await verify(["--dist", d.dir, "--any-tag", "--signer-fingerprint", fingerprint.intruder!]);
    expect(other.code).toBe(1);
    expect(other.stderr).toContain(`FAIL ${STATEMENT_FILE}.sig was made by key ${fingerprint.ci}, not the pinned ${fingerprint.intruder}`);
    const malformed = await verify(["--dist", d.dir, "--any-tag", "--signer-fingerprint", "abc"]);
    expect(malformed.code).toBe(2);
  });

  test("--only checks a subset; a name the manifest lacks is bad input", async () => {
    const d = await dist();
    await writeProvenance(d.dir, d.manifest, "boot-v1.0.0");
    await writeFile(join(d.dir, "runner-x86_64.iso"), "broken");
    const subset = await verify(["--dist", d.dir, "--any-tag", "--only", "bzImage-x86_64", "--json"]);
    expect(subset.code).toBe(0);
    expect(JSON.parse(subset.stdout).checked).toEqual(["bzImage-x86_64"]);
    const unknown = await verify(["--dist", d.dir, "--any-tag", "--only", "vmlinuz"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("--only vmlinuz: the manifest has no such file");
  });

  test("a mirror re-checked with --dist --tag: files signed for another tag are refused", async () => {
    const d = await dist();
    await writeProvenance(d.dir, d.manifest, "boot-dev-5-0123456789ab");
    const r = await verify(["--dist", d.dir, "--tag", "boot-v2.0.0"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("FAIL the signed statement is for boot-dev-5-0123456789ab, not boot-v2.0.0: these files were published under another tag");
    expect((await verify(["--dist", d.dir, "--tag", "boot-dev-5-0123456789ab"])).code).toBe(0);
    // Without --tag, nothing is compared with the statement's tag, and the output says so.
    const bound = await verify(["--dist", d.dir]);
    expect(bound.code).toBe(2);
    expect(bound.stderr).toContain("--dist needs --tag <tag> (the tag its files must be for), or --any-tag");
    const untagged = await verify(["--dist", d.dir, "--any-tag"]);
    expect(untagged.code).toBe(0);
    expect(untagged.stderr).toContain("no --tag: the statement's tag boot-dev-5-0123456789ab is not compared with the tag you expect");
  });

  test("--rebuild: a signed manifest whose target or system carries Nix syntax is refused before any nix process starts", async () => {
    const fake = await mkdtemp(join(tmpdir(), "runner-images-fake-nix-"));
    dirs.push(fake);
    const marker = join(fake, "nix-ran");
    // A nix (and nix-store) that only records being started: any call at all is the bug.
    for (const name of ["nix", "nix-store"]) {
      await writeFile(join(fake, name), `#!/bin/sh\necho "$0 $*" >> ${marker}\nexit 1\n`, { mode: 0o755 });
    }
    const injected = "${builtins.readFile (derivation { name = \"x\"; system = \"x86_64-linux\"; builder = \"/bin/sh\"; args = [ \"-c\" \"touch /tmp/pwned\" ]; })}";
    for (const change of [
      (m: Manifest) => { m.artifacts[0]!.target = injected; },
      (m: Manifest) => { m.nix.system = injected; m.artifacts[0]!.target = `netboot-x86_64" = ${injected}; "`; },
    ]) {
      const d = await dist();
      const m = await rewriteManifest(d.dir, change);
      await writeFile(join(d.dir, "SHA256SUMS"), formatSums(m.artifacts));
      await writeProvenance(d.dir, m, "boot-dev-7-0123456789ab");
      const r = await verify(["--dist", d.dir, "--tag", "boot-dev-7-0123456789ab", "--rebuild"], { PATH: `${fake}:${process.env.PATH}` });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("signature  good");
      expect(r.stderr).toContain("FAIL rebuild refused:");
      expect(r.stderr).toContain("which is not in scripts/lib/build/targets.json");
      expect(await Bun.file(marker).exists()).toBe(false);
    }
  });

  test("bad input: neither --tag nor --dist, --dist with --tag latest, a --dist that does not exist", async () => {
    expect((await verify([])).code).toBe(2);
    expect((await verify(["--dist", "x", "--tag", "latest"])).code).toBe(2);
    const missing = await verify(["--dist", join(keys, "no-such-dir"), "--any-tag"]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("does not exist");
  });

  test("--help: a usage line with the flags, the required ones marked, an Environment section, no trailing spaces", async () => {
    const r = await runScript("verify-release.ts", ["--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Usage:\s+\$ verify-release\.ts \[--tag <tag\|latest>\] \[--dist <dir>\] \[--server <url>\] \[--repo <owner\/name>\]/);
    expect(r.stdout).toContain("[-- <nix arguments for --rebuild>]");
    expect(r.stdout).toMatch(/--tag <tag\|latest>\s+Required, or --dist/);
    expect(r.stdout).toMatch(/--dist <dir>\s+Required, or --tag/);
    expect(r.stdout).toContain("Environment");
    expect(r.stdout).toContain("FORGEJO_TOKEN");
    for (const f of ["--signer-fingerprint", "--allow-unsigned", "--require-countersignature", "--rebuild", "--source", "--download"]) expect(r.stdout).toContain(f);
    expect(r.stdout.split("\n").filter((line) => / $/.test(line))).toEqual([]);
  });
});

describe("releases published to the server", () => {
  let forge: ForgejoServer;
  const ciKey = async () => Bun.file(join(keys, "ci")).text();
  const publish = async (dir: string, tag: string) => {
    const r = await runScript("publish-release.ts", ["--dist", dir, "--server", forge.url, "--repo", "ops/runner-images", "--tag", tag, "--keep-dev", "10"], {
      // The key as a CI secret: its text in the environment, never on a command line.
      env: cleanEnv({ FORGEJO_TOKEN: TOKEN, RUNNER_IMAGES_SIGNING_KEY: await ciKey() }),
    });
    expect(r.stderr).toContain(`wrote ${STATEMENT_FILE} for ${tag}, signed into ${STATEMENT_FILE}.sig`);
    expect(r.code).toBe(0);
  };
  /** What someone with write access but without the key can do: a release of their own with copied files. */
  const republish = async (fromDir: string, tag: string) => {
    const api = (method: string, path: string, body?: string | Blob, type = "application/json") =>
      fetch(`${forge.apiUrl}/repos/ops/runner-images${path}`, { method, body, headers: { authorization: `token ${TOKEN}`, "content-type": type } });
    const created = await api("POST", "/releases", JSON.stringify({ tag_name: tag, target_commitish: MAIN_SHA, name: tag }));
    expect(created.status).toBe(201);
    const id = ((await created.json()) as { id: number }).id;
    for (const name of await readdir(fromDir)) {
      const up = await api("POST", `/releases/${id}/assets?name=${name}`, Bun.file(join(fromDir, name)), "application/octet-stream");
      expect(up.status).toBe(201);
    }
  };
  let release: Awaited<ReturnType<typeof dist>>;
  let dev: Awaited<ReturnType<typeof dist>>;

  /** Built by CI in `repository` on the test server: the statement names that repository. */
  const builtIn = (dir: string, repository = "ops/runner-images") =>
    rewriteManifest(dir, (m) => {
      m.ci = { server: forge.url, repository, runId: "7", runNumber: "7", workflow: "release.yml", ref: "refs/heads/main", event: "push" };
    });
  let older: Awaited<ReturnType<typeof dist>>;
  beforeAll(async () => {
    forge = await startForgejo({ tokens: { [TOKEN]: { user: "ops", access: "write" } }, commits: [OTHER_SHA] });
    older = await dist();
    await builtIn(older.dir);
    await publish(older.dir, "boot-v0.9.0");
    release = await dist();
    await builtIn(release.dir);
    await publish(release.dir, "boot-v1.0.0");
    dev = await makeDist({ commit: MAIN_SHA, flavour: "dev" });
    dirs.push(dev.dir);
    await builtIn(dev.dir);
    await publish(dev.dir, "boot-dev-5-0123456789ab");
  }, 60_000);
  afterAll(() => forge.stop());

  const remote = (tag: string, more: string[] = [], env: Record<string, string | undefined> = {}) =>
    verify(["--server", forge.url, "--repo", "ops/runner-images", "--tag", tag, ...more], env);

  test("verifies end to end, anonymously; `latest` names the same release", async () => {
    const assets = forge.state().releases.find((r) => r.tagName === "boot-v1.0.0")!.assets.map((a) => a.name);
    expect(assets).toContain(STATEMENT_FILE);
    expect(assets).toContain(`${STATEMENT_FILE}.sig`);
    const from = forge.requests.length;
    for (const tag of ["boot-v1.0.0", "latest"]) {
      const r = await remote(tag);
      expect(r.stderr).not.toContain("FAIL");
      expect(r.code).toBe(0);
      expect(r.stderr).toContain("verified: 4 files match the statement, signed by ci@runner-images");
    }
    // Anonymously: verify made requests (the look-ups and every download), none with credentials.
    const made = forge.requests.slice(from);
    expect(made.length).toBeGreaterThanOrEqual(2 * assets.length);
    expect(made.filter((q) => q.auth)).toEqual([]);
  });

  // A server that answers with another genuine, signed release than the one asked for (item 18.1).
  const downgrade = async (asked: string, served: string) => {
    forge.answerFor(asked, served);
    try {
      return await remote(asked);
    } finally {
      forge.answerFor(asked, null);
    }
  };

  test("downgrade: asked for boot-v1.0.0, the server answers with the signed older boot-v0.9.0", async () => {
    const r = await downgrade("boot-v1.0.0", "boot-v0.9.0");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("signature  good");
    expect(r.stderr).toContain("FAIL asked for boot-v1.0.0, the server answered with release boot-v0.9.0: a server handing out another (older) release is a downgrade");
    expect(r.stderr).not.toContain("verified:");
  });

  test("downgrade: asked for boot-v1.0.0, the server answers with a signed dev prerelease", async () => {
    const r = await downgrade("boot-v1.0.0", "boot-dev-5-0123456789ab");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("FAIL asked for boot-v1.0.0, the server answered with release boot-dev-5-0123456789ab");
  });

  test("downgrade: latest answered with the signed older boot-v0.9.0, or with a signed dev prerelease", async () => {
    const old = await downgrade("latest", "boot-v0.9.0");
    expect(old.code).toBe(1);
    expect(old.stderr).toContain("FAIL latest resolved to boot-v0.9.0, but the newest published release is boot-v1.0.0: a downgrade");
    const pre = await downgrade("latest", "boot-dev-5-0123456789ab");
    expect(pre.code).toBe(1);
    expect(pre.stderr).toContain("FAIL latest resolved to boot-dev-5-0123456789ab, a prerelease by its release: latest is only ever a release");
  });

  test("a statement signed for another repository is refused, for a tag and for latest; --statement-repo names the original of a copy", async () => {
    // Genuine files of ops/other-images, signed by the shared (owner-level) CI key for that
    // repository, copied into this one by someone who can write releases here but has no key.
    const copy = await dist();
    const m = await builtIn(copy.dir, "ops/other-images");
    const manifestBytes = await Bun.file(join(copy.dir, "manifest.json")).bytes();
    const sums = await Bun.file(join(copy.dir, "SHA256SUMS")).bytes();
    const statement = Buffer.from(formatStatement(makeStatement(m, manifestBytes, sums, "boot-v1.1.0", [], `${forge.url}/ops/other-images`)));
    await writeFile(join(copy.dir, STATEMENT_FILE), statement);
    await writeFile(join(copy.dir, `${STATEMENT_FILE}.sig`), await sign(statement, { file: join(keys, "ci") }, NAMESPACE.publisher));
    await republish(copy.dir, "boot-v1.1.0");
    try {
      for (const tag of ["boot-v1.1.0", "latest"]) {
        const r = await remote(tag);
        expect(r.code).toBe(1);
        expect(r.stderr).toContain(`FAIL the signed statement is for repository ${forge.url}/ops/other-images, not ${forge.url}/ops/runner-images`);
      }
      const named = await remote("boot-v1.1.0", ["--statement-repo", `${forge.url}/ops/other-images`]);
      expect(named.stderr).not.toContain("FAIL");
      expect(named.code).toBe(0);
    } finally {
      const id = forge.state().releases.find((x) => x.tagName === "boot-v1.1.0")!.id;
      await fetch(`${forge.apiUrl}/repos/ops/runner-images/releases/${id}`, { method: "DELETE", headers: { authorization: `token ${TOKEN}` } });
    }
  });

  test("a signed dev prerelease re-published as a boot-v release is refused", async () => {
    await republish(dev.dir, "boot-v2.0.0");
    const r = await remote("boot-v2.0.0");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("signature  good");
    expect(r.stderr).toContain("FAIL the signed statement is for boot-dev-5-0123456789ab, not boot-v2.0.0: these files were published under another tag");
  });

  test("a release re-tagged under another name is refused", async () => {
    await republish(release.dir, "boot-v1.0.1");
    const r = await remote("boot-v1.0.1");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("FAIL the signed statement is for boot-v1.0.0, not boot-v1.0.1: these files were published under another tag");
  });

  test("a git tag moved to another commit is refused", async () => {
    forge.pushTag("boot-v1.0.0", OTHER_SHA);
    try {
      const r = await remote("boot-v1.0.0");
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`FAIL the git tag boot-v1.0.0 is at ${OTHER_SHA} on the server, the signed statement says ${MAIN_SHA}: the tag was moved`);
    } finally {
      forge.pushTag("boot-v1.0.0", MAIN_SHA);
    }
  });

  test("a signature deleted from the release fails", async () => {
    await republish(release.dir, "boot-v1.0.2");
    const r0 = forge.state().releases.find((r) => r.tagName === "boot-v1.0.2")!;
    const sig = r0.assets.find((a) => a.name === `${STATEMENT_FILE}.sig`)!;
    const del = await fetch(`${forge.apiUrl}/repos/ops/runner-images/releases/${r0.id}/assets/${sig.id}`, { method: "DELETE", headers: { authorization: `token ${TOKEN}` } });
    expect(del.status).toBe(204);
    const r = await remote("boot-v1.0.2");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`FAIL there is no ${STATEMENT_FILE}.sig`);
  });

  test("an asset name with ESC, CR and a bidi override prints as visible escapes: no fake success line over the real output", async () => {
    await republish(release.dir, "boot-v1.0.9");
    const r0 = forge.state().releases.find((r) => r.tagName === "boot-v1.0.9")!;
    const name = "x\r\x1b[2Kverified: 4 files match the statement\u202egpj.exe";
    const up = await fetch(`${forge.apiUrl}/repos/ops/runner-images/releases/${r0.id}/assets?name=${encodeURIComponent(name)}`, {
      method: "POST",
      body: "decoy",
      headers: { authorization: `token ${TOKEN}`, "content-type": "application/octet-stream" },
    });
    expect(up.status).toBe(201);
    const r = await remote("boot-v1.0.9");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("FAIL x\\x0d\\x1b[2Kverified: 4 files match the statement\\u202egpj.exe is on the release but not in the manifest");
    expect(r.stderr).not.toMatch(/[\r\x1b\u202e]/);
  });

  test("bytes swapped on the server behind its back are caught: the server is not trusted", async () => {
    const asset = forge.state().releases.find((r) => r.tagName === "boot-v1.0.0")!.assets.find((a) => a.name === "bzImage-x86_64")!;
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

  test("--download writes the verified release whole into releases/<tag> and points current at it; nothing when verification fails", async () => {
    const out = join(keys, "mirror");
    const r = await remote("boot-v1.0.0", ["--download", out]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(`wrote the verified release to ${join(out, "releases", "boot-v1.0.0")}; ${join(out, "current")} now points at it`);
    expect(await readlink(join(out, "current"))).toBe("releases/boot-v1.0.0");
    const names = (await readdir(join(out, "current"))).sort();
    expect(names).toEqual([...release.manifest.artifacts.map((a) => a.name), "SHA256SUMS", "manifest.json", STATEMENT_FILE, `${STATEMENT_FILE}.sig`].sort());
    for (const name of names) expect(await Bun.file(join(out, "current", name)).bytes()).toEqual(await Bun.file(join(release.dir, name)).bytes());
    // The same mirror, verified again offline as a dist, through the pointer the fleet follows.
    expect((await verify(["--dist", join(out, "current"), "--tag", "boot-v1.0.0"])).code).toBe(0);
    // The same release again: the directory there (same statement) is kept, current stays.
    expect((await remote("boot-v1.0.0", ["--download", out])).code).toBe(0);
    expect(await readdir(join(out, "releases"))).toEqual(["boot-v1.0.0"]);

    const refused = join(keys, "refused-mirror");
    await republish(release.dir, "boot-v1.0.3");
    const bad = await remote("boot-v1.0.3", ["--download", refused]);
    expect(bad.code).toBe(1);
    expect(await readdir(refused)).toEqual(["releases"]);
    expect(await readdir(join(refused, "releases"))).toEqual([]);
  });

  test("a download cut off mid-body is retried from the start; what --download keeps is whole", async () => {
    forge.addFault({ kind: "cut-response", method: "GET", path: /\/releases\/download\//, afterBytes: 100, times: 2 });
    const out = join(keys, "retried-mirror");
    const r = await remote("boot-v1.0.0", ["--download", out], { RUNNER_IMAGES_RETRY_DELAY_MS: "5" });
    expect(r.stderr).toMatch(/retrying in [\d.]+ s \(downloading \S+: the connection to .* was cut off/);
    expect(r.stderr).not.toContain("FAIL");
    expect(r.code).toBe(0);
    for (const name of await readdir(join(out, "current"))) expect(await Bun.file(join(out, "current", name)).bytes()).toEqual(await Bun.file(join(release.dir, name)).bytes());
  });

  test("Ctrl-C during --download (delivered twice at once, as `bun run` forwards it) leaves no staging directory", async () => {
    forge.addFault({ kind: "stall", method: "GET", path: /\/releases\/download\/.*\.iso$/, ms: 20_000 });
    const out = join(keys, "interrupted-mirror");
    const from = forge.requests.length;
    const r = await runScript("verify-release.ts", ["--allowed-signers", allowedSigners, "--server", forge.url, "--repo", "ops/runner-images", "--tag", "boot-v1.0.0", "--download", out], {
      env: cleanEnv(),
      started: async (child) => {
        while (!forge.requests.slice(from).some((q) => q.path.endsWith(".iso"))) await Bun.sleep(20);
        child.kill("SIGINT");
        child.kill("SIGINT");
      },
    });
    expect(r.code).toBe(130);
    expect(await readdir(out)).toEqual(["releases"]);
    expect(await readdir(join(out, "releases"))).toEqual([]);
  });

  test("--download into a place that cannot be written: bad input, said before any download, no runtime text", async () => {
    const blocker = join(keys, "a-file");
    await writeFile(blocker, "not a directory");
    const from = forge.requests.length;
    const r = await remote("boot-v1.0.0", ["--download", join(blocker, "mirror")]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`error: --download ${join(blocker, "mirror")} cannot be written (ENOTDIR)`);
    expect(r.stderr).not.toMatch(/ENOTDIR:|not a directory, mkdir/);
    expect(forge.requests.length).toBe(from);
  });

  test("the maintainer countersignature: required by a flag, made offline, uploaded, checked", async () => {
    const required = await remote("boot-v1.0.0", ["--require-countersignature"]);
    expect(required.code).toBe(1);
    expect(required.stderr).toContain(`FAIL there is no ${STATEMENT_FILE}.countersig (--require-countersignature)`);

    // Download and verify, countersign offline, upload the extra signature (docs: "Signing releases").
    const work = join(keys, "countersign");
    expect((await remote("boot-v1.0.0", ["--download", work])).code).toBe(0);
    const statement = join(work, "current", STATEMENT_FILE);
    const countersig = (await $({ quiet: true, input: await Bun.file(statement).text() })`ssh-keygen -Y sign -q -f ${join(keys, "maintainer")} -n ${NAMESPACE.countersignature}`).stdout;
    const id = forge.state().releases.find((r) => r.tagName === "boot-v1.0.0")!.id;
    const upload = async (body: string) => {
      const up = await fetch(`${forge.apiUrl}/repos/ops/runner-images/releases/${id}/assets?name=${STATEMENT_FILE}.countersig`, {
        method: "POST", body, headers: { authorization: `token ${TOKEN}`, "content-type": "application/octet-stream" },
      });
      expect(up.status).toBe(201);
      return ((await up.json()) as { id: number }).id;
    };
    const good = await upload(countersig);
    const r = await remote("boot-v1.0.0", ["--require-countersignature"]);
    expect(r.stderr).not.toContain("FAIL");
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(`countersig good, by maintainer@runner-images (key ${fingerprint.maintainer})`);
    const pinned = await remote("boot-v1.0.0", ["--require-countersignature", "--countersigner-fingerprint", fingerprint.ci!]);
    expect(pinned.code).toBe(1);

    // The CI key cannot make a countersignature: a CI signature is no maintainer's.
    await fetch(`${forge.apiUrl}/repos/ops/runner-images/releases/${id}/assets/${good}`, { method: "DELETE", headers: { authorization: `token ${TOKEN}` } });
    const byCi = (await $({ quiet: true, input: await Bun.file(statement).text() })`ssh-keygen -Y sign -q -f ${join(keys, "ci")} -n ${NAMESPACE.countersignature}`).stdout;
    await upload(byCi);
    const forged = await remote("boot-v1.0.0", ["--require-countersignature"]);
    expect(forged.code).toBe(1);
    expect(forged.stderr).toContain(`whose key ${allowedSigners} does not allow for namespace ${NAMESPACE.countersignature} (--require-countersignature)`);
  }, 120_000);

  test("a --server with a path is named as the problem (exit 2), not blamed on --repo", async () => {
    for (const path of ["/ops/runner-images", "/api/v1"]) {
      const r = await verify(["--server", `${forge.url}${path}`, "--repo", "ops/runner-images", "--tag", "boot-v1.0.0"]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`did you mean --server ${forge.url}?`);
      expect(r.stderr).not.toContain("check --repo");
    }
  });

  test("no such repository, a private repository without a token, and no such release are told apart", async () => {
    const noRepo = await verify(["--server", forge.url, "--repo", "ops/nothing-here", "--tag", "boot-v1.0.0"]);
    expect(noRepo.code).toBe(1);
    expect(noRepo.stderr).toContain("has no public repository ops/nothing-here: check --repo; if it is private, give a read token");
    const noRelease = await remote("boot-v9.9.9");
    expect(noRelease.code).toBe(1);
    expect(noRelease.stderr).toContain("ops/runner-images on");
    expect(noRelease.stderr).toContain("has no release boot-v9.9.9");

    const hidden = await startForgejo({ private: true, tokens: { [TOKEN]: { user: "ops", access: "read" } } });
    try {
      const anonymous = await verify(["--server", hidden.url, "--repo", "ops/runner-images", "--tag", "boot-v1.0.0"]);
      expect(anonymous.code).toBe(1);
      expect(anonymous.stderr).toContain("if it is private, give a read token with --token-file");
      // An exported token is not sent to a --server the user named: an operator's publishing
      // token never reaches a mirror. Only --token-file, or the CI run's own server, gets one.
      const exported = await verify(["--server", hidden.url, "--repo", "ops/runner-images", "--tag", "boot-v1.0.0"], { FORGEJO_TOKEN: TOKEN });
      expect(exported.code).toBe(1);
      expect(exported.stderr).toContain("has no public repository");
      expect(hidden.requests.some((q) => q.auth)).toBe(false);
      const tokenFile = join(keys, "read-token");
      await writeFile(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
      const withToken = await verify(["--server", hidden.url, "--repo", "ops/runner-images", "--tag", "boot-v1.0.0", "--token-file", tokenFile]);
      expect(withToken.code).toBe(1);
      expect(withToken.stderr).toContain("has no release boot-v1.0.0");
      const inCi = await verify(["--repo", "ops/runner-images", "--tag", "boot-v1.0.0"], { FORGEJO_TOKEN: TOKEN, FORGEJO_RUN_ID: "7", FORGEJO_SERVER_URL: hidden.url });
      expect(inCi.stderr).toContain("has no release boot-v1.0.0");
    } finally {
      await hidden.stop();
    }
  });
});
