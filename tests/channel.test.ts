/**
 * Signed channels: promote.ts writes and signs a channel statement into the `channels` release;
 * sync-mirror.ts moves <mirror>/<channel> to the release it names, verified whole. A replayed,
 * expired, CI-signed or other-repository statement, one that reuses a serial, or one whose
 * release is not the one named, is refused and leaves the mirror exactly as it was. A rollback
 * is a promotion of the older tag under the next serial.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdir, readlink } from "node:fs/promises";
import { join } from "node:path";
import { CHANNEL_NAMESPACE, CHANNEL_TYPE, formatChannelStatement, type ChannelStatement } from "../scripts/lib/trust/channel.ts";
import { STATEMENT_FILE } from "../scripts/lib/trust/provenance.ts";
import { sign } from "../scripts/lib/trust/signing.ts";
import { cleanEnv, runScript } from "./support/run.ts";
import { TOKEN, signedReleases, type SignedReleases } from "./support/signed-releases.ts";

let s: SignedReleases;
let n = 0;
const fresh = () => join(s.work, `mirror-${++n}`);

beforeAll(async () => {
  s = await signedReleases(["boot-v1.0.0", "boot-v1.1.0"]);
}, 120_000);
afterAll(() => s.stop());

const server = () => ["--server", s.forge.url, "--repo", "ops/runner-images"];
const promote = (channel: string, tag: string, more: string[] = []) =>
  runScript("promote.ts", [...server(), "--channel", channel, "--tag", tag, "--signing-key", s.keys.maintainer.file, ...more], { env: cleanEnv({ FORGEJO_TOKEN: TOKEN }) });
const sync = (mirror: string, channel = "stable") =>
  runScript("sync-mirror.ts", [...server(), "--channel", channel, "--mirror", mirror, "--channel-signers", s.allowedSigners, "--allowed-signers", s.allowedSigners], { env: cleanEnv() });

const api = (method: string, path: string, body?: string | Uint8Array, type = "application/json") =>
  fetch(`${s.forge.apiUrl}/repos/ops/runner-images${path}`, { method, body, headers: { authorization: `token ${TOKEN}`, "content-type": type } });
const channelsRelease = () => s.forge.state().releases.find((r) => r.tagName === "channels")!;

/** The channel statement and signature the server serves now. */
async function served(channel: string): Promise<{ bytes: Uint8Array; signature: Uint8Array }> {
  const assets = channelsRelease().assets;
  const read = (name: string) => Bun.file(assets.find((a) => a.name === name)!.path).bytes();
  return { bytes: await read(`${channel}.json`), signature: await read(`${channel}.json.sig`) };
}

/** What a server that lies (or an attacker with write access) can do: serve other channel files. */
async function serve(channel: string, files: { bytes: Uint8Array; signature: Uint8Array }) {
  const release = channelsRelease();
  for (const [name, data] of [[`${channel}.json`, files.bytes], [`${channel}.json.sig`, files.signature]] as const) {
    for (const a of release.assets.filter((x) => x.name === name)) expect((await api("DELETE", `/releases/${release.id}/assets/${a.id}`)).status).toBe(204);
    expect((await api("POST", `/releases/${release.id}/assets?name=${name}`, data, "application/octet-stream")).status).toBe(201);
  }
}

/** A channel statement made by hand and signed with `key` in the channel namespace. */
async function forged(change: Partial<ChannelStatement>, key = s.keys.maintainer.file) {
  const current = JSON.parse(new TextDecoder().decode((await served("stable")).bytes)) as ChannelStatement;
  const statement: ChannelStatement = { ...current, _type: CHANNEL_TYPE, ...change };
  const bytes = formatChannelStatement(statement);
  return { bytes, signature: await sign(bytes, { file: key }, CHANNEL_NAMESPACE) };
}

const statementSha256 = async (tag: string) => new Bun.CryptoHasher("sha256").update(await Bun.file(join(s.dists.get(tag)!.dir, STATEMENT_FILE)).bytes()).digest("hex");

/** Everything a refused sync must leave alone: the pointer, the releases, the held statement. */
async function snapshot(mirror: string) {
  return {
    pointer: await readlink(join(mirror, "stable")).catch(() => null),
    releases: (await readdir(join(mirror, "releases"))).sort(),
    held: await Bun.file(join(mirror, "channels", "stable.json")).text().catch(() => null),
  };
}

async function expectOn(mirror: string, tag: string) {
  expect(await readlink(join(mirror, "stable"))).toBe(`releases/${tag}`);
  const dir = s.dists.get(tag)!.dir;
  for (const name of await readdir(dir)) expect(await Bun.file(join(mirror, "stable", name)).bytes()).toEqual(await Bun.file(join(dir, name)).bytes());
}

describe("promote and sync", () => {
  test("a mirror follows the channel forward, and back by a rollback promotion under the next serial", async () => {
    const m = fresh();
    const first = await promote("stable", "boot-v1.0.0");
    expect(first.stderr).toContain("promoted boot-v1.0.0 to channel stable: serial 1");
    expect(first.code).toBe(0);
    const r1 = await sync(m);
    expect(r1.stderr).toContain("channel stable: serial 1 names boot-v1.0.0, signed by maintainer@runner-images");
    expect(r1.code).toBe(0);
    await expectOn(m, "boot-v1.0.0");

    expect((await promote("stable", "boot-v1.1.0")).code).toBe(0);
    expect((await sync(m)).code).toBe(0);
    await expectOn(m, "boot-v1.1.0");

    // Rollback: the older tag, promoted again; serial 3 moves the mirror back (no downgrade flag needed: the signature names it).
    const back = await promote("stable", "boot-v1.0.0");
    expect(back.stderr).toContain("serial 3");
    expect((await sync(m)).code).toBe(0);
    await expectOn(m, "boot-v1.0.0");

    const again = await sync(m);
    expect(again.code).toBe(0);
    expect(again.stderr).toContain("is on boot-v1.0.0 already (serial 3): nothing to do");
  }, 180_000);

  test("refused, each leaving the mirror exactly as it was: a replay, a reused serial, an expired channel, the CI key, another repository, a swapped release", async () => {
    const m = fresh();
    expect((await promote("stable", "boot-v1.0.0")).code).toBe(0);
    const old = await served("stable");
    expect((await promote("stable", "boot-v1.1.0")).code).toBe(0);
    const genuine = await served("stable");
    expect((await sync(m)).code).toBe(0);
    await expectOn(m, "boot-v1.1.0");
    const held = JSON.parse(new TextDecoder().decode(genuine.bytes)) as ChannelStatement;
    const before = await snapshot(m);

    const cases: [string, { bytes: Uint8Array; signature: Uint8Array }, string][] = [
      ["a replayed older statement", old, `serial ${held.serial - 1} is lower than the ${held.serial} this mirror holds: a replayed, older channel statement`],
      [
        "the same serial naming another release",
        await forged({ serial: held.serial, tag: "boot-v1.0.0", statement: { name: STATEMENT_FILE, sha256: await statementSha256("boot-v1.0.0") } }),
        `serial ${held.serial} is the one this mirror holds, but it names boot-v1.0.0 (held: boot-v1.1.0): two statements under one serial`,
      ],
      ["an expired statement", await forged({ serial: held.serial + 1, expires: "2020-01-01T00:00:00Z" }), "channel stable expired at 2020-01-01T00:00:00Z"],
      [
        "a statement signed by the CI key",
        await forged({ serial: held.serial + 1, tag: "boot-v1.0.0" }, s.keys.ci.file),
        `was made by ci@runner-images (${s.keys.ci.fingerprint}), whose key ${s.allowedSigners} does not allow for namespace ${CHANNEL_NAMESPACE}`,
      ],
      ["a statement for another repository", await forged({ serial: held.serial + 1, repository: "other/runner-images" }), "the statement is for repository other/runner-images, not ops/runner-images"],
      [
        "a statement naming a release whose provenance is not the one promoted",
        await forged({ serial: held.serial + 1, tag: "boot-v1.0.0", statement: { name: STATEMENT_FILE, sha256: await statementSha256("boot-v1.1.0") } }),
        "the channel statement names",
      ],
    ];
    for (const [what, files, message] of cases) {
      await serve("stable", files);
      const r = await sync(m);
      expect(`${what}: ${r.code}`).toBe(`${what}: 1`);
      expect(r.stderr).toContain(message);
      expect(await snapshot(m)).toEqual(before);
    }
    // The genuine statement served again: the mirror is up to date, and still syncs.
    await serve("stable", genuine);
    expect((await sync(m)).code).toBe(0);
    await expectOn(m, "boot-v1.1.0");
  }, 180_000);

  test("sync-mirror interrupted (SIGINT, SIGKILL) while the new release downloads: the channel pointer and the held serial stay", async () => {
    const m = fresh();
    expect((await promote("stable", "boot-v1.0.0")).code).toBe(0);
    expect((await sync(m)).code).toBe(0);
    expect((await promote("stable", "boot-v1.1.0")).code).toBe(0);
    const before = await snapshot(m);
    for (const signal of ["SIGINT", "SIGKILL"] as const) {
      s.forge.addFault({ kind: "stall", method: "GET", path: /\/releases\/download\/boot-v1\.1\.0\/.*\.iso$/, ms: 5_000 });
      const from = s.forge.requests.length;
      const r = await runScript("sync-mirror.ts", [...server(), "--channel", "stable", "--mirror", m, "--channel-signers", s.allowedSigners, "--allowed-signers", s.allowedSigners], {
        env: cleanEnv(),
        started: async (child) => {
          while (!s.forge.requests.slice(from).some((q) => q.path.endsWith(".iso"))) await Bun.sleep(20);
          child.kill(signal);
        },
      });
      expect(r.code).toBe(signal === "SIGINT" ? 130 : 137);
      // SIGKILL cannot stop the verify-release it started: that one finishes or fails on its own, and moves the pointer only to the whole, verified release.
      if (signal === "SIGKILL") await Bun.sleep(7_000);
      const after = await snapshot(m);
      expect(after.held).toBe(before.held);
      if (signal === "SIGINT") expect(after).toEqual(before);
      else expect([before.pointer, "releases/boot-v1.1.0"]).toContain(after.pointer);
    }
    expect((await sync(m)).code).toBe(0);
    await expectOn(m, "boot-v1.1.0");
  }, 180_000);

  test("--watch follows the channel unattended: a promotion made while it runs reaches the mirror, a bad round does not stop it", async () => {
    const m = fresh();
    expect((await promote("testing", "boot-v1.0.0")).code).toBe(0);
    let stop = () => {};
    const watching = runScript("sync-mirror.ts", [...server(), "--channel", "testing", "--mirror", m, "--channel-signers", s.allowedSigners, "--allowed-signers", s.allowedSigners, "--watch", "1"], {
      env: cleanEnv(),
      started: (child) => {
        stop = () => child.kill("SIGTERM");
      },
    });
    const until = async (tag: string) => {
      for (let i = 0; i < 600 && (await readlink(join(m, "testing")).catch(() => null)) !== `releases/${tag}`; i++) await Bun.sleep(100);
      expect(await readlink(join(m, "testing"))).toBe(`releases/${tag}`);
    };
    try {
      await until("boot-v1.0.0");
      // A round that fails (the channel files withheld for a moment) is reported, and the next one goes on.
      const current = await served("testing");
      const release = channelsRelease();
      for (const a of release.assets.filter((x) => x.name === "testing.json")) await api("DELETE", `/releases/${release.id}/assets/${a.id}`);
      const from = s.forge.requests.length;
      // The next round has looked at the channels release (and found no testing.json).
      while (!s.forge.requests.slice(from).some((q) => q.path.includes("/releases/tags/channels"))) await Bun.sleep(20);
      await Bun.sleep(300);
      await serve("testing", current);
      expect((await promote("testing", "boot-v1.1.0")).code).toBe(0);
      await until("boot-v1.1.0");
    } finally {
      stop();
    }
    const r = await watching;
    expect(r.stderr).toContain("sync failed: the channels release has no testing.json");
    expect(r.code).toBe(143);
  }, 180_000);

  test("bad input: a channel name that is no name, and promote without the maintainer key", async () => {
    const r = await sync(fresh(), "../etc");
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--channel "../etc": a channel is a lowercase name');
    const noKey = await runScript("promote.ts", [...server(), "--channel", "stable", "--tag", "boot-v1.0.0"], { env: cleanEnv({ FORGEJO_TOKEN: TOKEN }) });
    expect(noKey.code).toBe(2);
    expect(noKey.stderr).toContain("--signing-key <file>");
  });
});
