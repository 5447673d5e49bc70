/**
 * publish-release.ts and the signing key: a boot-v release is refused unsigned unless
 * --unsigned, a dev prerelease goes out unsigned with a warning, a key file is checked before
 * any work (a dry run too), and a key given as CI secret text leaves nothing on disk, even when
 * the run is stopped by SIGTERM in the middle of signing.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { makeDist } from "./support/dist.ts";
import { MAIN_SHA, startForgejo, type ForgejoServer } from "./support/forgejo-server.ts";
import { cleanEnv, runScript, type RunOptions } from "./support/run.ts";
import { makeSshKey, type SshKey } from "./support/ssh-keys.ts";
import { redact } from "../scripts/lib/cli/log.ts";
import { SIGNING_KEY_ENV, signingKey } from "../scripts/lib/trust/signing.ts";

const TOKEN = "fjt_signing_0a1b2c3d4e5f6789";
let scratch: string;
let ci: SshKey;
let key: string;
const servers: ForgejoServer[] = [];
const dists: string[] = [];

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "runner-images-signing-"));
  ci = await makeSshKey(join(scratch, "ci"), { comment: "ci@runner-images" });
  key = ci.file;
});
afterAll(async () => {
  for (const dir of [scratch, ...dists]) await rm(dir, { recursive: true, force: true });
});
afterEach(async () => {
  while (servers.length) await servers.pop()!.stop();
});

async function setup() {
  const forge = await startForgejo({ tokens: { [TOKEN]: { user: "ops", access: "write" } } });
  servers.push(forge);
  const d = await makeDist({ commit: MAIN_SHA });
  dists.push(d.dir);
  return { forge, dir: d.dir };
}

const publish = (forge: ForgejoServer, dir: string, args: string[], env: Record<string, string | undefined> = {}, options: RunOptions = {}) =>
  runScript("publish-release.ts", ["--dist", dir, "--server", forge.url, "--repo", "ops/runner-images", ...args], {
    env: cleanEnv({ FORGEJO_TOKEN: TOKEN, ...env }),
    ...options,
  });

/** Every file under `dir`, recursively. */
async function filesUnder(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true, withFileTypes: true })).filter((e) => !e.isDirectory()).map((e) => join(e.parentPath, e.name));
}

describe("who may publish unsigned", () => {
  test("a boot-v release without a key is refused before anything is uploaded, and says why", async () => {
    const { forge, dir } = await setup();
    const r = await publish(forge, dir, ["--tag", "boot-v1.0.0"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("error: refusing to publish boot-v1.0.0 unsigned: verify-release rejects a release without a signature");
    expect(r.stderr).toContain("--unsigned");
    // The next line says where keys are set up; the help text cannot.
    expect(r.stderr).toContain('docs/RUNNER_IMAGES.md, "Signing releases"');
    expect(r.stderr).not.toContain("run with --help");
    expect(forge.state().releases).toHaveLength(0);
    expect(forge.requests.every((q) => q.method === "GET")).toBe(true);
  });

  test("--unsigned publishes it, with a warning; so does a dev prerelease without any flag", async () => {
    const { forge, dir } = await setup();
    const release = await publish(forge, dir, ["--tag", "boot-v1.0.0", "--unsigned"]);
    expect(release.code).toBe(0);
    expect(release.stderr).toContain("warning: boot-v1.0.0 goes out unsigned: verify-release rejects it unless run with --allow-unsigned");
    const dev = await publish(forge, dir, ["--tag", "boot-dev-1"]);
    expect(dev.code).toBe(0);
    expect(dev.stderr).toContain("warning: boot-dev-1 goes out unsigned");
    const names = forge.state().releases.find((x) => x.tagName === "boot-dev-1")!.assets.map((a) => a.name);
    expect(names).toContain("provenance.intoto.json");
    expect(names).not.toContain("provenance.intoto.json.sig");
  });

  test("with a key, the statement is signed and both are published", async () => {
    const { forge, dir } = await setup();
    const r = await publish(forge, dir, ["--tag", "boot-v1.0.0", "--signing-key", key]);
    expect(r.code).toBe(0);
    // The repository's allowed_signers has no key yet: the publisher says so, with the fingerprint to add.
    expect(r.stderr).toContain(`warning: provenance.intoto.json.sig was made by key ${ci.fingerprint}, which is not in `);
    const names = forge.state().releases[0]!.assets.map((a) => a.name);
    expect(names).toEqual(expect.arrayContaining(["provenance.intoto.json", "provenance.intoto.json.sig"]));
    // Re-running with the same dist and tag writes the same bytes: the release is identical.
    const again = await publish(forge, dir, ["--tag", "boot-v1.0.0", "--signing-key", key]);
    expect(again.code).toBe(0);
    expect(again.stderr).toContain("is already published with exactly these files");
  });
});

describe("the key as the CI secret", () => {
  test("is taken out of the environment, and no line of it can be printed", async () => {
    const text = await readFile(key, "utf8");
    const env: Record<string, string | undefined> = { [SIGNING_KEY_ENV]: text };
    expect(await signingKey(undefined, env)).toEqual({ text: `${text.trim()}\n` });
    expect(env[SIGNING_KEY_ENV]).toBeUndefined();
    const body = text.split("\n").filter((l) => l && !l.startsWith("-----"));
    expect(body.length).toBeGreaterThan(0);
    for (const line of body) expect(redact(`ssh-keygen: bad line ${line}`)).toBe("ssh-keygen: bad line [redacted]");
  });
});

describe("the key file", () => {
  test("missing, readable by others, or encrypted: refused, in a dry run too", async () => {
    const { forge, dir } = await setup();
    const missing = await publish(forge, dir, ["--tag", "boot-v1.0.0", "--dry-run", "--signing-key", join(scratch, "nope")]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("does not exist");
    const directory = await publish(forge, dir, ["--tag", "boot-v1.0.0", "--dry-run", "--signing-key", scratch]);
    expect(directory.code).toBe(2);
    expect(directory.stderr).toContain(`--signing-key ${scratch} is a directory, not a key file`);

    const open = join(scratch, "open");
    await writeFile(open, await readFile(key));
    await chmod(open, 0o644);
    const shared = await publish(forge, dir, ["--tag", "boot-v1.0.0", "--dry-run", "--signing-key", open]);
    expect(shared.code).toBe(2);
    expect(shared.stderr).toContain("is readable by others: chmod 600 it");

    const locked = join(scratch, "locked");
    await makeSshKey(locked, { passphrase: "a passphrase" });
    const encrypted = await publish(forge, dir, ["--tag", "boot-v1.0.0", "--dry-run", "--signing-key", locked]);
    expect(encrypted.code).toBe(1);
    expect(encrypted.stderr).toContain("signing provenance.intoto.json failed");
    expect(forge.state().releases).toHaveLength(0);
  });

  /**
   * Starts a publish whose ssh-keygen stalls `stall` seconds before signing, with the key as
   * secret text and a TMPDIR of its own; resolves once signing has begun.
   */
  async function publishStalledInSigning(stall: number) {
    const { forge, dir } = await setup();
    const bin = await mkdtemp(join(scratch, "bin-"));
    const marker = join(bin, "signing-started");
    const real = Bun.which("ssh-keygen")!;
    // The marker holds the agent's socket: where the key is while the signer runs.
    await writeFile(join(bin, "ssh-keygen"), `#!/bin/sh\ncase "$*" in *"-Y sign"*) echo "$SSH_AUTH_SOCK" > "${marker}"; sleep ${stall};; esac\nexec ${real} "$@"\n`, { mode: 0o755 });
    const tmp = await mkdtemp(join(scratch, "tmp-"));
    const keyText = await readFile(key, "utf8");
    let child: Bun.Subprocess | undefined;
    const running = publish(forge, dir, ["--tag", "boot-v1.0.0"], { RUNNER_IMAGES_SIGNING_KEY: keyText, TMPDIR: tmp, PATH: `${bin}:${process.env.PATH}` }, {
      started: (c) => (child = c),
    });
    for (let i = 0; i < 200 && !(await Bun.file(marker).exists()); i++) await Bun.sleep(50);
    expect(await Bun.file(marker).exists()).toBe(true);
    const agentSocket = (await readFile(marker, "utf8")).trim();
    expect(existsSync(agentSocket)).toBe(true);
    return { forge, dir, tmp, child: child!, running, keyBody: keyText.split("\n")[1]!, agentSocket };
  }

  /** ssh-agent checks every 10 s whether the command it runs is still there. */
  async function agentGone(socket: string): Promise<boolean> {
    for (let i = 0; i < 150 && existsSync(socket); i++) await Bun.sleep(100);
    return !existsSync(socket);
  }

  /** Files under `dir` whose bytes contain the private key's text (sockets and the like read as empty). */
  const holdingKey = async (dir: string, keyBody: string) =>
    (await Promise.all((await filesUnder(dir)).map(async (f) => ((await readFile(f, "latin1").catch(() => "")).includes(keyBody) ? f : null)))).filter(Boolean);

  test("SIGKILL mid-signing: no file ever holds the key, and the agent goes away with the signer", async () => {
    const { tmp, child, running, keyBody, agentSocket } = await publishStalledInSigning(2);
    child.kill("SIGKILL");
    expect((await running).code).toBe(137);
    expect(await holdingKey(tmp, keyBody)).toEqual([]);
    // Nothing cleans up after SIGKILL: the orphaned signer finishes, and its agent exits with it.
    expect(await agentGone(agentSocket)).toBe(true);
    expect(await holdingKey(tmp, keyBody)).toEqual([]);
  }, 30_000);

  test("a key given as secret text never lands on disk, even when SIGTERM stops the run mid-signing", async () => {
    const { forge, dir, tmp, child, running, keyBody, agentSocket } = await publishStalledInSigning(20);
    child.kill("SIGTERM");
    const r = await running;
    expect(r.code).toBe(143);
    // The agent exits once the command it ran is gone (ssh-agent checks within 10 s), and takes its socket with it.
    for (let i = 0; i < 150 && (await filesUnder(tmp)).length > 0; i++) await Bun.sleep(100);
    expect(await filesUnder(tmp)).toEqual([]);
    expect(await holdingKey(dir, keyBody)).toEqual([]);
    expect(await agentGone(agentSocket)).toBe(true);
    expect(forge.state().releases).toHaveLength(0);
  }, 30_000);

  test("the agent's socket sits in the signing scratch directory, mode 0700, which is gone once the run ends", async () => {
    const { tmp, running, agentSocket } = await publishStalledInSigning(1);
    const dir = dirname(agentSocket);
    expect(dirname(dir)).toBe(tmp);
    expect(basename(dir)).toStartWith("runner-images-sign-");
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    expect((await running).code).toBe(0);
    expect(existsSync(dir)).toBe(false);
    expect(await filesUnder(tmp)).toEqual([]);
  }, 30_000);
});
