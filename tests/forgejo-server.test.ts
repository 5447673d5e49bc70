/**
 * Direct fetch tests of the Forgejo fixture (tests/support/forgejo-server.ts): every quirk from
 * /work/shared/reference/forgejo-release-api.md that the fixture emulates, and every fault kind.
 */
import { afterAll, afterEach, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, rmSync } from "node:fs";
import { connect } from "node:net";
import {
  MAIN_SHA,
  startCaptureServer,
  startForgejo,
  type ForgejoOptions,
  type ForgejoServer,
} from "./support/forgejo-server.ts";

const SHA2 = "1111111111111111111111111111111111111111";
const SHA3 = "2222222222222222222222222222222222222222";
const W = "token write-token";
const R = "token read-token";
const A = "token actions-token";

/** `arr[i]`, failing the test with a clear message when there is no such element. */
function at<T>(arr: readonly T[], i: number, what: string): T {
  const v = arr[i];
  if (v === undefined) throw new Error(`expected ${what}[${i}] to exist (length ${arr.length})`);
  return v;
}

interface Res {
  status: number;
  headers: Headers;
  text: string;
  json: any;
}
async function call(
  srv: ForgejoServer,
  method: string,
  path: string,
  opts: { auth?: string; body?: unknown; headers?: Record<string, string>; raw?: Bun.BodyInit; base?: string } = {},
): Promise<Res> {
  const headers: Record<string, string> = { ...(opts.headers ?? {}) };
  if (opts.auth) headers.authorization = opts.auth;
  let body: Bun.BodyInit | undefined = opts.raw;
  if (opts.body !== undefined) {
    body = JSON.stringify(opts.body);
    headers["content-type"] ??= "application/json";
  }
  const res = await fetch((opts.base ?? srv.apiUrl) + path, { method, headers, body, redirect: "manual" });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}
const REPO = "/repos/ops/runner-images";
const bytes = (n: number, seed = 7) => {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
};
const sha256 = (b: Uint8Array) => new Bun.CryptoHasher("sha256").update(b).digest("hex");

let srv: ForgejoServer;
const extra: { stop(): Promise<void> }[] = [];
async function start(opts: ForgejoOptions = {}) {
  const s = await startForgejo({ commits: [SHA2, SHA3], ...opts });
  extra.push(s);
  return s;
}
beforeEach(async () => {
  srv = await start();
});
afterEach(async () => {
  for (const s of extra.splice(0)) await s.stop();
});

async function createRelease(s: ForgejoServer, body: Record<string, unknown>, auth = W) {
  return call(s, "POST", `${REPO}/releases`, { auth, body: { name: "t", ...body } });
}
async function upload(s: ForgejoServer, id: number, name: string, data: Uint8Array, ct = "application/octet-stream", auth = W) {
  return call(s, "POST", `${REPO}/releases/${id}/assets?name=${encodeURIComponent(name)}`, {
    auth,
    raw: data,
    headers: { "content-type": ct },
  });
}

describe("basics and auth", () => {
  test("version and settings", async () => {
    const s = await start({ version: "11.0.7+gitea-1.22.0", maxResponseItems: 20, defaultPagingNum: 7 });
    expect((await call(s, "GET", "/version")).json).toEqual({ version: "11.0.7+gitea-1.22.0" });
    const api = (await call(s, "GET", "/settings/api")).json;
    expect(api.max_response_items).toBe(20);
    expect(api.default_paging_num).toBe(7);
    expect((await call(s, "GET", "/settings/attachment")).json.max_size).toBe(2048);
  });

  test("token, bearer, case-insensitive scheme and basic auth variants", async () => {
    const b64 = (s: string) => Buffer.from(s).toString("base64");
    for (const auth of [W, "Bearer write-token", "TOKEN write-token", "bEaReR write-token", `Basic ${b64("someone:write-token")}`, `Basic ${b64("write-token:")}`, `Basic ${b64("write-token:x-oauth-basic")}`]) {
      const r = await call(srv, "GET", REPO, { auth });
      expect(r.status, auth).toBe(200);
      expect(r.json.permissions).toEqual({ admin: false, push: true, pull: true });
    }
    expect((await call(srv, "GET", REPO, { auth: R })).json.permissions).toEqual({ admin: false, push: false, pull: true });
    expect((await call(srv, "GET", REPO)).json.permissions.push).toBe(false);
    expect((await call(srv, "GET", REPO, { auth: "token nope" })).status).toBe(401);
    expect((await call(srv, "GET", REPO, { auth: "Basic " + b64("someone:wrong") })).status).toBe(401);
  });

  test("write routes: no token 401, read token 403, error body shape", async () => {
    const anon = await createRelease(srv, { tag_name: "boot-v1" }, "");
    expect(anon.status).toBe(401);
    const ro = await createRelease(srv, { tag_name: "boot-v1" }, R);
    expect(ro.status).toBe(403);
    expect(ro.json).toEqual({ message: expect.any(String), url: `${srv.url}/api/swagger` });
    const nf = await call(srv, "GET", `${REPO}/releases/999`);
    expect(nf.status).toBe(404);
    expect(Object.keys(nf.json).sort()).toEqual(["errors", "message", "url"]);
  });

  test("private repo: anonymous and no-access tokens get 404; query tokens are ignored", async () => {
    const s = await start({ private: true });
    expect((await call(s, "GET", REPO)).status).toBe(404);
    expect((await call(s, "GET", REPO, { auth: "token none-token" })).status).toBe(404);
    expect((await call(s, "GET", `${REPO}?token=write-token`)).status).toBe(404);
    expect((await call(s, "GET", `${REPO}?access_token=write-token`)).status).toBe(404);
    expect((await call(s, "POST", `${REPO}/releases`, { body: { tag_name: "x" } })).status).toBe(404);
    expect((await call(s, "GET", REPO, { auth: R })).status).toBe(200);
    // public repo: a no-access token still reads
    expect((await call(srv, "GET", REPO, { auth: "token none-token" })).status).toBe(200);
  });

  test("a double slash before api/v1 gives 401 (sent raw: Bun's fetch collapses the `//`)", async () => {
    const { port } = new URL(srv.url);
    const head = await new Promise<string>((resolve, reject) => {
      const sock = connect(Number(port), "127.0.0.1", () => sock.write("GET //api/v1/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
      let got = "";
      sock.on("data", (d) => (got += d.toString()));
      sock.on("end", () => resolve(got));
      sock.on("error", reject);
    });
    expect(head).toStartWith("HTTP/1.1 401");
    expect((await call(srv, "GET", "/version")).status).toBe(200);
  });
});

describe("create, publish, tags", () => {
  test("a draft creates no git tag; publishing creates it at the branch head at publish time", async () => {
    const c = await createRelease(srv, { tag_name: "boot-v1", target_commitish: "main", draft: true });
    expect(c.status).toBe(201);
    expect(c.json.draft).toBe(true);
    expect(srv.state().tags).toEqual({});
    expect((await call(srv, "GET", `${REPO}/tags/boot-v1`)).status).toBe(404);
    srv.setBranch("main", SHA2); // the branch moves between draft and publish
    const p = await call(srv, "PATCH", `${REPO}/releases/${c.json.id}`, { auth: W, body: { draft: false } });
    expect(p.status).toBe(200);
    expect(p.json.draft).toBe(false);
    const t = await call(srv, "GET", `${REPO}/tags/boot-v1`);
    expect(t.status).toBe(200);
    expect(t.json.commit.sha).toBe(SHA2);
    expect(t.json.id).toBe(SHA2); // lightweight
  });

  test("draft:false creates the tag at once; an empty target means the default branch", async () => {
    const c = await createRelease(srv, { tag_name: "boot-v1" });
    expect(c.status).toBe(201);
    expect(c.json.target_commitish).toBe("main");
    expect(srv.state().tags["boot-v1"]).toBe(MAIN_SHA);
  });

  test("unknown target: 404 on create; a draft accepts it and publishing fails with 500", async () => {
    const bad = await createRelease(srv, { tag_name: "boot-v1", target_commitish: "f".repeat(40) });
    expect(bad.status).toBe(404);
    expect(bad.json.errors).toBeUndefined(); // ctx.Error, not ctx.NotFound
    const d = await createRelease(srv, { tag_name: "boot-v1", target_commitish: "nosuchbranch", draft: true });
    expect(d.status).toBe(201);
    const p = await call(srv, "PATCH", `${REPO}/releases/${d.json.id}`, { auth: W, body: { draft: false } });
    expect(p.status).toBe(500);
    expect(p.json.message).toBe(""); // hidden in production
    expect(at(srv.state().releases, 0, "releases").draft).toBe(true); // nothing persisted
    // v8 had no 404 mapping
    const old = await start({ version: "8.0.3", commits: [] });
    expect((await createRelease(old, { tag_name: "x", target_commitish: "f".repeat(40) })).status).toBe(500);
  });

  test("a second POST for the same tag is 409, draft or not, case-insensitively", async () => {
    await createRelease(srv, { tag_name: "boot-v1", draft: true });
    const again = await createRelease(srv, { tag_name: "BOOT-V1", draft: true });
    expect(again.status).toBe(409);
    expect(again.json.message).toBe("Release has no Tag");
    await createRelease(srv, { tag_name: "boot-v2" });
    expect((await createRelease(srv, { tag_name: "boot-v2" })).status).toBe(409);
    const old = await start({ version: "11.0.3" });
    await createRelease(old, { tag_name: "a" });
    expect((await createRelease(old, { tag_name: "a" })).json.message).toBe("Release is has no Tag");
  });

  test("a pushed (bare) tag is converted by POST /releases; the tag keeps its commit", async () => {
    srv.pushTag("boot-v1", SHA3);
    expect((await call(srv, "GET", `${REPO}/releases/tags/boot-v1`, { auth: W })).status).toBe(404); // bare tag
    const c = await createRelease(srv, { tag_name: "boot-v1", target_commitish: SHA2, name: "Boot 1" });
    expect(c.status).toBe(201);
    expect(c.json.target_commitish).toBe(SHA2);
    expect(srv.state().tags["boot-v1"]).toBe(SHA3);
    expect(srv.state().releases.filter((r) => r.tagName === "boot-v1")).toHaveLength(1);
  });

  test("empty repo: 422; missing tag_name: 422; wrong JSON types: 422", async () => {
    const empty = await start({ branches: {}, commits: [] });
    expect((await createRelease(empty, { tag_name: "x" })).status).toBe(422);
    expect((await call(empty, "GET", REPO)).json.empty).toBe(true);
    expect((await createRelease(srv, { tag_name: "" })).status).toBe(422);
    expect((await createRelease(srv, { tag_name: "x", draft: "false" })).status).toBe(422);
  });

  test("protected tags: the actions token gets 422 on create, 500 on publish; an allow-listed personal token may", async () => {
    const s = await start({ protectedTags: [{ pattern: "boot-v*", allow: ["publisher"] }] });
    expect((await createRelease(s, { tag_name: "boot-v1", target_commitish: MAIN_SHA }, A)).status).toBe(422);
    expect((await call(s, "POST", `${REPO}/tags`, { auth: A, body: { tag_name: "boot-v1", target: MAIN_SHA } })).status).toBe(422);
    const d = await createRelease(s, { tag_name: "boot-v1", target_commitish: MAIN_SHA, draft: true }, A);
    expect(d.status).toBe(201);
    expect((await call(s, "PATCH", `${REPO}/releases/${d.json.id}`, { auth: A, body: { draft: false } })).status).toBe(500);
    expect(s.state().tags).toEqual({});
    // unprotected names and converting a pushed protected tag are fine for the actions token
    expect((await createRelease(s, { tag_name: "other-1" }, A)).status).toBe(201);
    s.pushTag("boot-v2", SHA2);
    expect((await createRelease(s, { tag_name: "boot-v2", target_commitish: SHA2 }, A)).status).toBe(201);
    // the allow-listed user creates and publishes
    expect((await createRelease(s, { tag_name: "boot-v3", target_commitish: MAIN_SHA }, W)).status).toBe(201);
    expect(s.state().tags["boot-v3"]).toBe(MAIN_SHA);
  });

  test("K2: a protected pattern with an empty allow-list blocks everyone, the owner's write token included", async () => {
    // models/git/protected_tag.go IsUserAllowedToControlTag: no owner or admin exception.
    const s = await start({ protectedTags: ["boot-v*"] });
    expect((await createRelease(s, { tag_name: "boot-v1", target_commitish: MAIN_SHA }, W)).status).toBe(422);
    expect((await call(s, "POST", `${REPO}/tags`, { auth: W, body: { tag_name: "boot-v1", target: MAIN_SHA } })).status).toBe(422);
    const d = await createRelease(s, { tag_name: "boot-v1", target_commitish: MAIN_SHA, draft: true }, W);
    expect(d.status).toBe(201);
    expect((await call(s, "PATCH", `${REPO}/releases/${d.json.id}`, { auth: W, body: { draft: false } })).status).toBe(500);
    expect(s.state().tags).toEqual({});
  });

  test("K2b: publishing a protected tag is decided by the draft's creator, not by the caller of the PATCH", async () => {
    const s = await start({ protectedTags: [{ pattern: "boot-v*", allow: ["publisher"] }] });
    const byActions = await createRelease(s, { tag_name: "boot-v1", target_commitish: MAIN_SHA, draft: true }, A);
    expect((await call(s, "PATCH", `${REPO}/releases/${byActions.json.id}`, { auth: W, body: { draft: false } })).status).toBe(500);
    expect(s.state().tags["boot-v1"]).toBeUndefined();
    const byPublisher = await createRelease(s, { tag_name: "boot-v2", target_commitish: MAIN_SHA, draft: true }, W);
    expect((await call(s, "PATCH", `${REPO}/releases/${byPublisher.json.id}`, { auth: A, body: { draft: false } })).status).toBe(200);
    expect(s.state().tags["boot-v2"]).toBe(MAIN_SHA);
  });

  test("K1: a tag name git refuses: the draft is created, publishing is 500 and makes no tag", async () => {
    // services/release/release.go createTag: `git tag` refuses, ErrInvalidTagName, 500 from the handlers.
    for (const bad of ["boot-v1.0.0-rc.", "boot-v1.0.0-x.lock", "boot-dev-a..b"]) {
      const d = await createRelease(srv, { tag_name: bad, target_commitish: MAIN_SHA, draft: true });
      expect(d.status).toBe(201);
      expect((await call(srv, "PATCH", `${REPO}/releases/${d.json.id}`, { auth: W, body: { draft: false } })).status).toBe(500);
      expect(srv.state().tags[bad]).toBeUndefined();
    }
    expect((await createRelease(srv, { tag_name: "boot-v1.0.0-rc.1.", target_commitish: MAIN_SHA })).status).toBe(500);
  });

  test("K3: a JSON body without Content-Type: application/json is 422, and changes nothing", async () => {
    for (const headers of [{}, { "content-type": "text/plain" }] as Record<string, string>[]) {
      const r = await call(srv, "POST", `${REPO}/releases`, { auth: W, raw: JSON.stringify({ tag_name: "boot-v1" }), headers });
      expect(r.status).toBe(422);
    }
    expect(srv.state().releases).toHaveLength(0);
  });

  test("D1: a write user's read-scoped token shows push: true, but every write is 403", async () => {
    const s = await start({ tokens: { "scoped-token": { user: "publisher", access: "write", scope: "read" } } });
    const repo = await call(s, "GET", REPO, { auth: "token scoped-token" });
    expect(repo.json.permissions.push).toBe(true);
    const r = await createRelease(s, { tag_name: "boot-v1" }, "token scoped-token");
    expect(r.status).toBe(403);
    expect(r.json.message).toContain("write:repository");
    expect(s.state().releases).toHaveLength(0);
  });

  test("PATCH tag_name onto another release's tag: 500 (the unique index), nothing changes", async () => {
    await createRelease(srv, { tag_name: "boot-v1", draft: true });
    const b = await createRelease(srv, { tag_name: "boot-v2", draft: true });
    expect((await call(srv, "PATCH", `${REPO}/releases/${b.json.id}`, { auth: W, body: { tag_name: "boot-v1" } })).status).toBe(500);
    expect(srv.state().releases.map((r) => r.tagName).sort()).toEqual(["boot-v1", "boot-v2"]);
  });

  test("titles over 255 bytes are cut at a character boundary, with an ellipsis", async () => {
    // modules/util SplitStringAtByteN(title, 255)
    const long = "é".repeat(200); // 400 bytes
    const r = await createRelease(srv, { tag_name: "boot-v1", name: long, draft: true });
    expect(r.json.name).toBe("é".repeat(126) + "…");
    expect(new TextEncoder().encode(r.json.name).byteLength).toBeLessThanOrEqual(255);
    const exact = "a".repeat(255);
    const p = await call(srv, "PATCH", `${REPO}/releases/${r.json.id}`, { auth: W, body: { name: exact } });
    expect(p.json.name).toBe(exact);
    const over = await call(srv, "PATCH", `${REPO}/releases/${r.json.id}`, { auth: W, body: { name: `${exact}b` } });
    expect(over.json.name).toBe(`${"a".repeat(252)}…`);
  });

  test("PATCH does not clear string fields given empty; PATCH of a bare tag row is 404", async () => {
    const c = await createRelease(srv, { tag_name: "boot-v1", name: "Title", body: "Notes", draft: true });
    const p = await call(srv, "PATCH", `${REPO}/releases/${c.json.id}`, { auth: W, body: { name: "", body: "" } });
    expect(p.status).toBe(200);
    expect(p.json.name).toBe("Title");
    expect(p.json.body).toBe("Notes");
    srv.pushTag("bare", SHA2);
    const bare = srv.state().releases.find((r) => r.tagName === "bare")!;
    expect((await call(srv, "PATCH", `${REPO}/releases/${bare.id}`, { auth: W, body: { name: "x" } })).status).toBe(404);
    expect((await call(srv, "GET", `${REPO}/releases/${bare.id}`)).status).toBe(404);
  });

  test("DELETE of a release keeps the git tag and leaves a bare-tag row; DELETE /tags then removes it", async () => {
    const c = await createRelease(srv, { tag_name: "boot-v1" });
    await upload(srv, c.json.id, "a.bin", bytes(10));
    const assetPath = at(at(srv.state().releases, 0, "releases").assets, 0, "assets").path;
    expect(existsSync(assetPath)).toBe(true);
    expect((await call(srv, "DELETE", `${REPO}/tags/boot-v1`, { auth: W })).status).toBe(409); // release attached
    expect((await call(srv, "DELETE", `${REPO}/releases/${c.json.id}`, { auth: W })).status).toBe(204);
    expect((await call(srv, "DELETE", `${REPO}/releases/${c.json.id}`, { auth: W })).status).toBe(404);
    expect(existsSync(assetPath)).toBe(false);
    expect(srv.state().tags["boot-v1"]).toBe(MAIN_SHA);
    expect(srv.state().releases[0]).toMatchObject({ tagName: "boot-v1", isTag: true, assets: [] });
    expect((await call(srv, "GET", `${REPO}/releases`, { auth: W })).json).toEqual([]);
    expect((await call(srv, "DELETE", `${REPO}/tags/boot-v1`, { auth: W })).status).toBe(204);
    expect(srv.state()).toEqual({ releases: [], tags: {} });
    expect((await call(srv, "DELETE", `${REPO}/tags/boot-v1`, { auth: W })).status).toBe(404);
  });

  test("DELETE /releases/tags/{tag} works like DELETE by id", async () => {
    await createRelease(srv, { tag_name: "boot-v1" });
    expect((await call(srv, "DELETE", `${REPO}/releases/tags/boot-v1`, { auth: W })).status).toBe(204);
    expect((await call(srv, "DELETE", `${REPO}/releases/tags/boot-v1`, { auth: W })).status).toBe(404);
    expect(srv.state().tags["boot-v1"]).toBe(MAIN_SHA);
  });

  test("ghost row after deleting a never-published draft", async () => {
    const d = await createRelease(srv, { tag_name: "boot-v1", draft: true });
    await call(srv, "DELETE", `${REPO}/releases/${d.json.id}`, { auth: W });
    expect(srv.state().tags).toEqual({});
    expect(at(srv.state().releases, 0, "releases").isTag).toBe(true);
    expect((await call(srv, "POST", `${REPO}/tags`, { auth: W, body: { tag_name: "boot-v1", target: MAIN_SHA } })).status).toBe(409);
    // convert path with draft:false and no target: GetCommit("") fails -> 500
    expect((await createRelease(srv, { tag_name: "boot-v1" })).status).toBe(500);
    const ok = await createRelease(srv, { tag_name: "boot-v1", target_commitish: SHA2 });
    expect(ok.status).toBe(201);
    expect(srv.state().tags["boot-v1"]).toBe(SHA2);
    // a second ghost, removed by DELETE /tags
    const d2 = await createRelease(srv, { tag_name: "boot-v2", draft: true });
    await call(srv, "DELETE", `${REPO}/releases/${d2.json.id}`, { auth: W });
    expect((await call(srv, "DELETE", `${REPO}/tags/boot-v2`, { auth: W })).status).toBe(204);
    expect(srv.state().releases.some((r) => r.tagName === "boot-v2")).toBe(false);
  });

  test("POST /tags: 201 at the target, 409 while any release row exists, 404 unknown target, annotated tags", async () => {
    const t = await call(srv, "POST", `${REPO}/tags`, { auth: W, body: { tag_name: "boot-v1", target: SHA2 } });
    expect(t.status).toBe(201);
    expect(t.json.commit.sha).toBe(SHA2);
    expect((await call(srv, "POST", `${REPO}/tags`, { auth: W, body: { tag_name: "boot-v1", target: SHA2 } })).status).toBe(409);
    expect((await call(srv, "POST", `${REPO}/tags`, { auth: W, body: { tag_name: "x", target: "e".repeat(40) } })).status).toBe(404);
    await createRelease(srv, { tag_name: "draft-1", draft: true });
    expect((await call(srv, "POST", `${REPO}/tags`, { auth: W, body: { tag_name: "draft-1", target: SHA2 } })).status).toBe(409);
    const an = await call(srv, "POST", `${REPO}/tags`, { auth: W, body: { tag_name: "v/2", target: "main", message: "hello\n" } });
    expect(an.json.id).not.toBe(MAIN_SHA);
    expect(an.json.commit.sha).toBe(MAIN_SHA);
    expect(an.json.message).toBe("hello");
    expect((await call(srv, "GET", `${REPO}/tags/v/2`)).status).toBe(200); // wildcard route
    expect((await call(srv, "POST", `${REPO}/tags`, { auth: R, body: { tag_name: "y" } })).status).toBe(403);
  });

  test("pushTag auto-publishes a draft of that name with created_at = now", async () => {
    const d = await createRelease(srv, { tag_name: "boot-v1", draft: true });
    const before = at(srv.state().releases, 0, "releases").createdUnix;
    await Bun.sleep(1100);
    srv.pushTag("boot-v1", SHA3);
    const r = (await call(srv, "GET", `${REPO}/releases/${d.json.id}`)).json;
    expect(r.draft).toBe(false);
    expect(Date.parse(r.created_at) / 1000).toBeGreaterThan(before);
    expect(srv.state().tags["boot-v1"]).toBe(SHA3);
    srv.pushDeleteTag("boot-v1");
    expect((await call(srv, "GET", `${REPO}/releases/${d.json.id}`)).json.draft).toBe(true);
  });
});

describe("look-ups and drafts", () => {
  async function withDraft(s: ForgejoServer) {
    const d = await createRelease(s, { tag_name: "boot-v1", draft: true });
    await upload(s, d.json.id, "a.bin", bytes(100));
    return d.json;
  }
  test("v14: drafts by tag only for writers; by id and assets for anyone; list hides them", async () => {
    const d = await withDraft(srv);
    expect((await call(srv, "GET", `${REPO}/releases/tags/boot-v1`, { auth: R })).status).toBe(404);
    expect((await call(srv, "GET", `${REPO}/releases/tags/boot-v1`)).status).toBe(404);
    expect((await call(srv, "GET", `${REPO}/releases/tags/BOOT-v1`, { auth: W })).status).toBe(200);
    expect((await call(srv, "GET", `${REPO}/releases/${d.id}`)).status).toBe(200);
    expect((await call(srv, "GET", `${REPO}/releases/${d.id}/assets`)).json).toHaveLength(1);
    expect((await call(srv, "GET", `${REPO}/releases`, { auth: R })).json).toEqual([]);
    expect((await call(srv, "GET", `${REPO}/releases?draft=true`, { auth: R })).json).toEqual([]);
    expect((await call(srv, "GET", `${REPO}/releases?draft=true`, { auth: W })).json).toHaveLength(1);
    expect((await call(srv, "GET", `${REPO}/releases?draft=false`, { auth: W })).json).toHaveLength(0);
    // downloads: the tag URL hides drafts from readers, the uuid URL does not
    const dl = `/ops/runner-images/releases/download/boot-v1/a.bin`;
    expect((await call(srv, "GET", dl, { base: srv.url })).status).toBe(404);
    expect((await call(srv, "GET", dl, { base: srv.url, auth: W })).status).toBe(200);
    const uuid = at(at(srv.state().releases, 0, "releases").assets, 0, "assets").uuid;
    const byUuid = await fetch(`${srv.url}/attachments/${uuid}`);
    expect(byUuid.status).toBe(200);
    expect(sha256(new Uint8Array(await byUuid.arrayBuffer()))).toBe(sha256(bytes(100)));
  });

  test.each([
    ["13.0.2", 200],
    ["13.0.3", 404],
    ["12.0.4", 200],
    ["11.0.7", 200],
    ["11.0.8", 404],
    ["14.0.0", 404],
  ])("draft tag lookup for readers on %p: %p", async (version, status) => {
    const s = await start({ version });
    await withDraft(s);
    expect((await call(s, "GET", `${REPO}/releases/tags/boot-v1`, { auth: R })).status).toBe(status);
  });

  test("draftTagLookup none: even writers must page through the list", async () => {
    const s = await start({ draftTagLookup: "none" });
    await withDraft(s);
    expect((await call(s, "GET", `${REPO}/releases/tags/boot-v1`, { auth: W })).status).toBe(404);
    expect((await call(s, "GET", `${REPO}/releases?draft=true`, { auth: W })).json[0].tag_name).toBe("boot-v1");
  });

  test("pagination: clamp, default page size, Link and X-Total-Count, order id DESC", async () => {
    const s = await start({ maxResponseItems: 5, defaultPagingNum: 3 });
    for (let i = 1; i <= 12; i++) await createRelease(s, { tag_name: `r${i}`, draft: i % 4 === 0 });
    const first = await call(s, "GET", `${REPO}/releases?limit=100`, { auth: W });
    expect(first.json).toHaveLength(5); // clamped silently
    expect(first.headers.get("x-total-count")).toBe("12");
    expect(first.json.map((r: any) => r.tag_name)).toEqual(["r12", "r11", "r10", "r9", "r8"]);
    expect(first.headers.get("link")).toBe(
      `<${s.apiUrl}${REPO}/releases?limit=100&page=2>; rel="next",<${s.apiUrl}${REPO}/releases?limit=100&page=3>; rel="last"`,
    );
    const dflt = await call(s, "GET", `${REPO}/releases?limit=0`, { auth: W });
    expect(dflt.json).toHaveLength(3);
    // follow rel="next" to the end
    const seen: string[] = [];
    let next: string | null = `${s.apiUrl}${REPO}/releases?limit=100`;
    while (next) {
      const r: Response = await fetch(next, { headers: { authorization: W } });
      seen.push(...((await r.json()) as any[]).map((x) => x.tag_name));
      next = /<([^>]+)>; rel="next"/.exec(r.headers.get("link") ?? "")?.[1] ?? null;
    }
    expect(seen).toHaveLength(12);
    expect(new Set(seen).size).toBe(12);
    const last = await call(s, "GET", `${REPO}/releases?limit=5&page=3`, { auth: W });
    expect(last.json).toHaveLength(2);
    expect(last.headers.get("link")).not.toContain('rel="next"');
    expect(last.headers.get("link")).toContain('rel="prev"');
    // readers: drafts are not counted
    expect((await call(s, "GET", `${REPO}/releases`, { auth: R })).headers.get("x-total-count")).toBe("9");
    // filters
    expect((await call(s, "GET", `${REPO}/releases?q=R1&limit=50`, { auth: W })).json.map((r: any) => r.tag_name).sort()).toEqual(["r1", "r10", "r11", "r12"]);
  });

  test("latest ignores drafts, prereleases and bare tags; the download alias `latest` follows it", async () => {
    expect((await call(srv, "GET", `${REPO}/releases/latest`)).status).toBe(404);
    const a = await createRelease(srv, { tag_name: "a" });
    await upload(srv, a.json.id, "f.bin", bytes(5, 1));
    await createRelease(srv, { tag_name: "b", prerelease: true });
    await createRelease(srv, { tag_name: "c", draft: true });
    srv.pushTag("d", SHA2);
    expect((await call(srv, "GET", `${REPO}/releases/latest`)).json.tag_name).toBe("a");
    const dl = await fetch(`${srv.url}/ops/runner-images/releases/download/latest/f.bin`);
    expect(dl.status).toBe(200);
    expect(sha256(new Uint8Array(await dl.arrayBuffer()))).toBe(sha256(bytes(5, 1)));
  });

  test("a draft's files by name: a writer's token downloads them, the Actions token cannot", async () => {
    const d = await createRelease(srv, { tag_name: "boot-v1", draft: true });
    await upload(srv, d.json.id, "f.bin", bytes(5, 1));
    const get = (auth: string) => fetch(`${srv.url}/ops/runner-images/releases/download/boot-v1/f.bin`, { headers: { authorization: auth } });
    expect((await get(W)).status).toBe(200);
    expect((await get(A)).status).toBe(404);
  });

  test("a release's html_url is its web page, with a link per file; a draft's page only for a writer", async () => {
    const pub = await createRelease(srv, { tag_name: "boot-v2" });
    await upload(srv, pub.json.id, "runner x86_64.iso", bytes(5, 1));
    const published = (await call(srv, "GET", `${REPO}/releases/${pub.json.id}`)).json;
    const page = await fetch(published.html_url);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toStartWith("text/html");
    expect(await page.text()).toContain(`href="${published.assets[0].browser_download_url}"`);
    const draft = await createRelease(srv, { tag_name: "boot-v3", draft: true });
    const draftUrl = (await call(srv, "GET", `${REPO}/releases/${draft.json.id}`)).json.html_url;
    expect((await fetch(draftUrl)).status).toBe(404);
    expect((await fetch(draftUrl, { headers: { authorization: W } })).status).toBe(200);
  });

  test("upload_url: GitHub form only with Accept vnd.github+json on v13+", async () => {
    const c = await createRelease(srv, { tag_name: "a" });
    expect(c.json.upload_url).toBe(`${srv.apiUrl}${REPO}/releases/${c.json.id}/assets`);
    const gh = await call(srv, "GET", `${REPO}/releases/${c.json.id}`, { headers: { accept: "application/vnd.github+json" } });
    expect(gh.json.upload_url).toEndWith("/assets{?name,label}");
    const old = await start({ version: "12.1.0" });
    const o = await createRelease(old, { tag_name: "a" });
    expect((await call(old, "GET", `${REPO}/releases/${o.json.id}`, { headers: { accept: "application/vnd.github+json" } })).json.upload_url).toEndWith("/assets");
  });
});

describe("assets", () => {
  let rel: any;
  beforeEach(async () => {
    rel = (await createRelease(srv, { tag_name: "boot-v1", draft: true })).json;
  });

  test("raw upload: stored byte-exact, 201 with an /attachments/ URL; download and Range work", async () => {
    const data = bytes(300_000);
    const r = await upload(srv, rel.id, "runner x86_64.iso", data);
    expect(r.status).toBe(201);
    expect(r.json).toMatchObject({ name: "runner x86_64.iso", size: 300_000, type: "attachment" });
    expect(r.json.browser_download_url).toBe(`${srv.url}/attachments/${r.json.uuid}`);
    const st = at(at(srv.state().releases, 0, "releases").assets, 0, "assets");
    expect(st).toMatchObject({ size: 300_000, sha256: sha256(data), uuid: r.json.uuid });
    const list = (await call(srv, "GET", `${REPO}/releases/${rel.id}/assets`)).json;
    expect(list[0].browser_download_url).toBe(`${srv.url}/ops/runner-images/releases/download/boot-v1/runner%20x86_64.iso`);
    const dl = await fetch(list[0].browser_download_url, { headers: { authorization: W } });
    expect(sha256(new Uint8Array(await dl.arrayBuffer()))).toBe(sha256(data));
    const part = await fetch(`${srv.url}/attachments/${r.json.uuid}`, { headers: { range: "bytes=100-199" } });
    expect(part.status).toBe(206);
    expect(new Uint8Array(await part.arrayBuffer())).toEqual(data.slice(100, 200));
    expect(at(at(srv.state().releases, 0, "releases").assets, 0, "assets").downloadCount).toBe(2);
  });

  test("raw upload needs ?name= (400, v7-v8 wording differs); no Content-Type is raw; empty body makes a 0-byte asset", async () => {
    const noName = await call(srv, "POST", `${REPO}/releases/${rel.id}/assets`, { auth: W, raw: bytes(10) });
    expect(noName.status).toBe(400);
    expect(noName.json.message).toBe("Missing 'name' parameter");
    const noCt = await fetch(`${srv.apiUrl}${REPO}/releases/${rel.id}/assets?name=a`, { method: "POST", headers: { authorization: W }, body: bytes(10).buffer as ArrayBuffer });
    expect(noCt.status).toBe(201);
    expect((await call(srv, "POST", `${REPO}/releases/${rel.id}/assets?name=empty`, { auth: W })).status).toBe(201);
    expect(at(srv.state().releases, 0, "releases").assets.map((a) => [a.name, a.size])).toEqual([["a", 10], ["empty", 0]]);
    const v8 = await start({ version: "8.0.0" });
    const r8 = (await createRelease(v8, { tag_name: "a" })).json;
    expect((await call(v8, "POST", `${REPO}/releases/${r8.id}/assets`, { auth: W, raw: bytes(1) })).json.message).toBe("Could not determine name of attachment.");
    const v6 = await start({ version: "6.0.0" });
    const r6 = (await createRelease(v6, { tag_name: "a" })).json;
    expect((await upload(v6, r6.id, "x", bytes(10))).status).toBe(500); // no raw upload before v7
  });

  test("application/x-www-form-urlencoded bodies are eaten by ParseForm: empty or truncated asset", async () => {
    const small = await upload(srv, rel.id, "small", bytes(1000), "application/x-www-form-urlencoded");
    expect(small.status).toBe(201);
    expect(small.json.size).toBe(0);
    const big = bytes(11 * 1024 * 1024);
    const r = await upload(srv, rel.id, "big", big, "application/x-www-form-urlencoded");
    expect(r.json.size).toBe(big.length - (10 * 1024 * 1024 + 1));
    expect(at(srv.state().releases, 0, "releases").assets.find((a) => a.name === "big")!.sha256).toBe(sha256(big.subarray(10 * 1024 * 1024 + 1)));
  });

  test("multipart field `attachment` (name from ?name= or the filename); external assets", async () => {
    const fd = new FormData();
    fd.append("attachment", new File([bytes(64)], "from-part.txt"));
    const r = await fetch(`${srv.apiUrl}${REPO}/releases/${rel.id}/assets`, { method: "POST", headers: { authorization: W }, body: fd });
    expect(r.status).toBe(201);
    expect(((await r.json()) as any).name).toBe("from-part.txt");
    const ext = new FormData();
    ext.append("external_url", "https://example.org/x.iso");
    const e = await fetch(`${srv.apiUrl}${REPO}/releases/${rel.id}/assets?name=link`, { method: "POST", headers: { authorization: W }, body: ext });
    expect(e.status).toBe(201);
    expect(await e.json()).toMatchObject({ type: "external", size: 0, browser_download_url: "https://example.org/x.iso" });
    const both = new FormData();
    both.append("attachment", new File([bytes(4)], "f"));
    both.append("external_url", "https://example.org/");
    expect((await fetch(`${srv.apiUrl}${REPO}/releases/${rel.id}/assets`, { method: "POST", headers: { authorization: W }, body: both })).status).toBe(400);
    // a multipart file name is reduced to its base name
    const nested = new FormData();
    nested.append("attachment", new File([bytes(8)], "../../dir/inner.txt"));
    const n = await fetch(`${srv.apiUrl}${REPO}/releases/${rel.id}/assets`, { method: "POST", headers: { authorization: W }, body: nested });
    expect(((await n.json()) as any).name).toBe("inner.txt");
    // raw body + external_url: the body counts as a file
    expect((await call(srv, "POST", `${REPO}/releases/${rel.id}/assets?name=n&external_url=https://x.org/`, { auth: W })).status).toBe(400);
  });

  test("duplicate names: accepted; every URL switches to /attachments/; rename answers 201 without a uniqueness check", async () => {
    const a = (await upload(srv, rel.id, "x.iso", bytes(10, 1))).json;
    const other = (await upload(srv, rel.id, "y.iso", bytes(10, 2))).json;
    let list = (await call(srv, "GET", `${REPO}/releases/${rel.id}/assets`)).json;
    expect(list.every((x: any) => x.browser_download_url.includes("/releases/download/"))).toBe(true);
    const b = await upload(srv, rel.id, "x.iso", bytes(10, 3));
    expect(b.status).toBe(201);
    list = (await call(srv, "GET", `${REPO}/releases/${rel.id}/assets`)).json;
    expect(list).toHaveLength(3);
    expect(list.every((x: any) => x.browser_download_url === `${srv.url}/attachments/${x.uuid}`)).toBe(true);
    const inRelease = (await call(srv, "GET", `${REPO}/releases/${rel.id}`)).json.assets;
    expect(inRelease.find((x: any) => x.id === other.id).browser_download_url).toContain("/attachments/");
    const ren = await call(srv, "PATCH", `${REPO}/releases/${rel.id}/assets/${other.id}`, { auth: W, body: { name: "x.iso" } });
    expect(ren.status).toBe(201);
    expect(ren.json.browser_download_url).toBe(`${srv.url}/attachments/${other.uuid}`);
    expect(at(srv.state().releases, 0, "releases").assets.filter((x) => x.name === "x.iso")).toHaveLength(3);
    expect((await call(srv, "PATCH", `${REPO}/releases/${rel.id}/assets/${a.id}`, { auth: W, body: { browser_download_url: "https://e.org/" } })).status).toBe(400);
    // single GET: /attachments/ URL; asset of another release: 404
    expect((await call(srv, "GET", `${REPO}/releases/${rel.id}/assets/${a.id}`)).json.browser_download_url).toContain("/attachments/");
    const rel2 = (await createRelease(srv, { tag_name: "boot-v2", draft: true })).json;
    expect((await call(srv, "GET", `${REPO}/releases/${rel2.id}/assets/${a.id}`)).status).toBe(404);
    expect((await call(srv, "DELETE", `${REPO}/releases/${rel.id}/assets/${a.id}`, { auth: W })).status).toBe(204);
    expect((await call(srv, "GET", `${REPO}/releases/${rel.id}/assets/${a.id}`)).status).toBe(404);
  });

  test("an external URL edit is echoed but not persisted", async () => {
    const ext = new FormData();
    ext.append("external_url", "https://example.org/1");
    const e = (await (await fetch(`${srv.apiUrl}${REPO}/releases/${rel.id}/assets?name=link`, { method: "POST", headers: { authorization: W }, body: ext })).json()) as any;
    const p = await call(srv, "PATCH", `${REPO}/releases/${rel.id}/assets/${e.id}`, { auth: W, body: { browser_download_url: "https://example.org/2" } });
    expect(p.status).toBe(201);
    expect(p.json.browser_download_url).toBe("https://example.org/2");
    expect((await call(srv, "GET", `${REPO}/releases/${rel.id}/assets/${e.id}`)).json.browser_download_url).toBe("https://example.org/1");
  });

  test("a body shorter than Content-Length does not create an asset", async () => {
    let sent = 0;
    const ac = new AbortController();
    const body = new ReadableStream({
      async pull(c) {
        if (sent >= 200_000) {
          ac.abort();
          c.error(new Error("client died"));
          return;
        }
        c.enqueue(bytes(50_000));
        sent += 50_000;
      },
    });
    await expect(
      fetch(`${srv.apiUrl}${REPO}/releases/${rel.id}/assets?name=cut`, {
        method: "POST",
        headers: { authorization: W, "content-type": "application/octet-stream", "content-length": "1000000" },
        body,
        signal: ac.signal,
        duplex: "half",
      } as RequestInit),
    ).rejects.toThrow();
    await Bun.sleep(100);
    expect(at(srv.state().releases, 0, "releases").assets).toEqual([]);
  });

  test("a 50 MiB upload is streamed to disk, never held whole in memory", async () => {
    const chunk = bytes(256 * 1024);
    const send = async (name: string, total: number) => {
      let sent = 0;
      const body = new ReadableStream({
        pull(c) {
          if (sent >= total) return c.close();
          c.enqueue(chunk);
          sent += chunk.length;
        },
      });
      return fetch(`${srv.apiUrl}${REPO}/releases/${rel.id}/assets?name=${name}`, {
        method: "POST",
        headers: { authorization: W, "content-type": "application/octet-stream", "content-length": String(total) },
        body,
        duplex: "half",
      } as RequestInit);
    };
    expect((await send("warmup", 4 * 1024 * 1024)).status).toBe(201);
    Bun.gc(true);
    const before = process.memoryUsage().rss;
    const r = await send("big.iso", 50 * 1024 * 1024);
    const after = process.memoryUsage().rss;
    expect(r.status).toBe(201);
    expect(((await r.json()) as any).size).toBe(50 * 1024 * 1024);
    expect(srv.requests.at(-1)!.bytesIn).toBe(50 * 1024 * 1024);
    // Not a memory target (those live in bench/): a server that buffered the body would grow by all
    // of it; a streaming one grows by a few MiB, more under a loaded machine.
    expect(after - before).toBeLessThan(45 * 1024 * 1024);
  }, 20_000);
});

describe("faults", () => {
  let rel: any;
  beforeEach(async () => {
    rel = (await createRelease(srv, { tag_name: "boot-v1", draft: true })).json;
  });
  const assets = () => at(srv.state().releases, 0, "releases").assets;

  test("status: no work done, html or JSON, Retry-After; consumed after `times`", async () => {
    srv.addFault({ kind: "status", status: 503, retryAfter: 7, html: true, method: "POST", path: /\/assets$/, times: 2 });
    for (let i = 0; i < 2; i++) {
      const r = await upload(srv, rel.id, "a", bytes(10));
      expect(r.status).toBe(503);
      expect(r.headers.get("content-type")).toStartWith("text/html");
      expect(r.headers.get("retry-after")).toBe("7");
    }
    expect(assets()).toEqual([]);
    expect((await upload(srv, rel.id, "a", bytes(10))).status).toBe(201);
    srv.addFault({ kind: "status", status: 500, path: "^/repos/[^/]+/[^/]+/releases$" });
    const r = await call(srv, "GET", `${REPO}/releases`, { auth: W });
    expect(r.status).toBe(500);
    expect(r.json).toEqual({ message: "", url: `${srv.url}/api/swagger` });
    srv.addFault({ kind: "status", status: 429, retryAfter: 1 });
    srv.clearFaults();
    expect((await call(srv, "GET", `${REPO}/releases`, { auth: W })).status).toBe(200);
  });

  test("status-after-work: the asset exists although the client saw a 502", async () => {
    srv.addFault({ kind: "status-after-work", status: 502, html: true, method: "POST", path: /assets/ });
    const r = await upload(srv, rel.id, "a", bytes(1000));
    expect(r.status).toBe(502);
    expect(r.text).toContain("502 Bad Gateway");
    expect(assets().map((a) => [a.name, a.size])).toEqual([["a", 1000]]);
  });

  test("reset after N bytes: connection error, no asset, bytes counted", async () => {
    srv.addFault({ kind: "reset", afterBytes: 100_000, method: "POST" });
    await expect(upload(srv, rel.id, "a", bytes(1_000_000))).rejects.toThrow();
    expect(assets()).toEqual([]);
    const rec = srv.requests.at(-1)!;
    expect(rec.status).toBe(0);
    expect(rec.bytesIn).toBe(100_000);
    expect((await upload(srv, rel.id, "a", bytes(10))).status).toBe(201);
  });

  test("close: a connection error before any response, no work done", async () => {
    // times: 2, because Bun's fetch silently retries an idempotent request once when a reused
    // keep-alive connection dies before the response.
    srv.addFault({ kind: "close", method: "DELETE", times: 2 });
    await expect(call(srv, "DELETE", `${REPO}/releases/${rel.id}`, { auth: W })).rejects.toThrow();
    expect(srv.requests.filter((r) => r.method === "DELETE").every((r) => r.status === 0)).toBe(true);
    expect(at(srv.state().releases, 0, "releases").isTag).toBe(false);
    expect((await call(srv, "DELETE", `${REPO}/releases/${rel.id}`, { auth: W })).status).toBe(204);
  });

  test("stall: delays the response; a client timeout aborts", async () => {
    // Behaviour, not a duration: a client that waits less than the stall gives up; the same
    // call without the fault answers.
    srv.addFault({ kind: "stall", ms: 2000, path: /\/version$/ });
    await expect(fetch(`${srv.apiUrl}/version`, { signal: AbortSignal.timeout(200) })).rejects.toThrow();
    expect((await call(srv, "GET", "/version")).status).toBe(200);
    srv.addFault({ kind: "stall", afterBytes: 1000, ms: 2000, method: "POST" });
    await expect(
      fetch(`${srv.apiUrl}${REPO}/releases/${rel.id}/assets?name=s`, {
        method: "POST",
        headers: { authorization: W, "content-type": "application/octet-stream" },
        // More than socket buffers hold: the aborted body can never arrive whole.
        body: bytes(16 * 1024 * 1024),
        signal: AbortSignal.timeout(200),
      }),
    ).rejects.toThrow();
    await Bun.sleep(2100);
    expect(assets()).toEqual([]); // the body never completed
  }, 10_000);

  test("proxy413: HTML 413 without reading the body, only above maxBody", async () => {
    srv.addFault({ kind: "proxy413", maxBody: 1000, times: Infinity });
    expect((await upload(srv, rel.id, "small", bytes(500))).status).toBe(201);
    const r = await upload(srv, rel.id, "big", bytes(5000));
    expect(r.status).toBe(413);
    expect(r.headers.get("content-type")).toStartWith("text/html");
    expect(srv.requests.at(-1)!.bytesIn).toBe(0);
    expect(assets().map((a) => a.name)).toEqual(["small"]);
  });

  test("proxy413 with a chunked body: 413 once the limit is passed, no asset", async () => {
    srv.addFault({ kind: "proxy413", maxBody: 1000, times: Infinity });
    const chunked = (n: number) =>
      new ReadableStream({
        start(c) {
          c.enqueue(bytes(n));
          c.close();
        },
      });
    const r = await fetch(`${srv.apiUrl}${REPO}/releases/${rel.id}/assets?name=big`, {
      method: "POST",
      headers: { authorization: W, "content-type": "application/octet-stream" },
      body: chunked(5000),
    });
    expect(r.status).toBe(413);
    expect(assets()).toEqual([]);
  });

  test("quota: JSON 413 before the upload, only on quota-checked routes", async () => {
    srv.addFault({ kind: "quota" });
    expect((await call(srv, "GET", `${REPO}/releases`, { auth: W })).status).toBe(200); // not consumed by a GET
    const r = await upload(srv, rel.id, "a", bytes(100));
    expect(r.status).toBe(413);
    expect(r.json).toEqual({ message: "quota exceeded", user_id: expect.any(Number), username: "publisher" });
    expect(assets()).toEqual([]);
  });

  test("redirect to another origin: Location on the capture server, which records headers", async () => {
    const cap = await startCaptureServer();
    extra.push(cap);
    srv.addFault({ kind: "redirect", location: cap.url, status: 307, method: "GET", path: /\/releases$/ });
    const r = await call(srv, "GET", `${REPO}/releases`, { auth: W });
    expect(r.status).toBe(307);
    expect(r.headers.get("location")).toBe(`${cap.url}/api/v1${REPO}/releases`);
    srv.addFault({ kind: "redirect", location: cap.url + "/elsewhere", method: "GET" });
    const followed = await fetch(`${srv.apiUrl}${REPO}`, { headers: { authorization: W } });
    expect(followed.status).toBe(200);
    expect(cap.seen).toHaveLength(1);
    expect(at(cap.seen, 0, "cap.seen").path).toBe("/elsewhere");
    expect(at(cap.seen, 0, "cap.seen").headers.authorization).toBeUndefined(); // fetch drops it across origins
  });

  test("requests log counts calls, auth and uploaded bytes", async () => {
    await upload(srv, rel.id, "a", bytes(12345));
    await call(srv, "GET", "/version");
    const recs = srv.requests.slice(-2);
    expect(recs[0]).toMatchObject({ method: "POST", path: `/api/v1${REPO}/releases/${rel.id}/assets`, query: "?name=a", status: 201, bytesIn: 12345, auth: true });
    expect(recs[1]).toMatchObject({ method: "GET", status: 200, bytesIn: 0, auth: false });
  });
});

afterAll(async () => {
  for (const s of extra.splice(0)) await s.stop();
});

test("stop() removes the temp data dir", async () => {
  const s = await startForgejo();
  const rel = (await createRelease(s, { tag_name: "x", draft: true })).json;
  await upload(s, rel.id, "a", bytes(10));
  const dir = s.options.dataDir;
  expect(existsSync(dir)).toBe(true);
  await s.stop();
  expect(existsSync(dir)).toBe(false);
});

describe("stopping, and the fixture's own errors", () => {
  const uploads = (s: ForgejoServer) => s.requests.filter((q) => q.method === "POST" && q.path.endsWith("/assets"));

  test("stop() mid-upload: the upload is cut, and nothing of it runs on after stop() returns", async () => {
    // A test that stops the server while a stalled upload is in flight (as publish-release's
    // Ctrl-C and server-going-away tests do): the handler must not wake up later and store the
    // body into the data dir stop() removed (an ENOENT "internal error" printed into the run).
    const s = await start();
    const rel = (await createRelease(s, { tag_name: "boot-v1", draft: true })).json;
    s.addFault({ kind: "stall", afterBytes: 1000, ms: 1000, method: "POST" });
    const uploading = upload(s, rel.id, "a", bytes(5000)).then(
      (r) => r.status,
      () => "cut",
    );
    while (uploads(s).length === 0) await Bun.sleep(10);
    await Bun.sleep(100);
    await s.stop();
    expect(await uploading).toBe("cut");
    expect(at(uploads(s), 0, "uploads")).toMatchObject({ status: 0 });
    await Bun.sleep(1200); // past the end of the stall
    expect(at(uploads(s), 0, "uploads")).toMatchObject({ status: 0 });
    expect(at(s.state().releases, 0, "releases").assets).toEqual([]);
  });

  test("an internal error (a bug of the fixture, not a fault a test asked for) is a 500 and fails stop(), naming the request", async () => {
    const s = await start();
    const rel = (await createRelease(s, { tag_name: "boot-v1", draft: true })).json;
    rmSync(s.options.dataDir, { recursive: true }); // the storage gone under the running server
    const r = await upload(s, rel.id, "a", bytes(10));
    expect(r.status).toBe(500);
    await expect(s.stop()).rejects.toThrow(new RegExp(`internal error on POST /api/v1${REPO}/releases/${rel.id}/assets: .*ENOENT`));
  });

  test("a test that provokes an internal error on purpose takes it: then stop() succeeds", async () => {
    const s = await start();
    const rel = (await createRelease(s, { tag_name: "boot-v1", draft: true })).json;
    rmSync(s.options.dataDir, { recursive: true });
    expect((await upload(s, rel.id, "a", bytes(10))).status).toBe(500);
    const errors = s.takeInternalErrors();
    expect(errors).toHaveLength(1);
    expect(at(errors, 0, "errors")).toContain(`internal error on POST /api/v1${REPO}/releases/${rel.id}/assets: `);
    expect(at(errors, 0, "errors")).toContain("ENOENT");
    await s.stop();
  });
});

describe("the Actions token on web routes is the bare Actions user (forgejo-release-api.md §12, corrected)", () => {
  const RUNTIME = "token eyJhbGciOiJIUzI1NiJ9.eyJUYXNrSUQiOjF9.runtime-signature";
  async function releaseWithAsset(s: ForgejoServer, draft: boolean) {
    const rel = await createRelease(s, { tag_name: draft ? "boot-dev-d" : "boot-v1", target_commitish: MAIN_SHA, draft });
    const up = await upload(s, rel.json.id, "a.bin", bytes(100));
    expect(up.status).toBe(201);
    return { id: rel.json.id as number, uuid: up.json.uuid as string, tag: rel.json.tag_name as string };
  }

  test("private repository: the API serves the Actions token (job token and ACTIONS_RUNTIME_TOKEN), the web downloads answer 404; a writer's token is served", async () => {
    const s = await start({ private: true });
    const pub = await releaseWithAsset(s, false);
    for (const auth of [A, RUNTIME]) {
      expect((await call(s, "GET", `${REPO}/releases/${pub.id}/assets`, { auth })).status).toBe(200);
      expect((await call(s, "GET", `/attachments/${pub.uuid}`, { auth, base: s.url })).status).toBe(404);
      expect((await call(s, "GET", `/ops/runner-images/releases/download/${pub.tag}/a.bin`, { auth, base: s.url })).status).toBe(404);
      // Who it is: the Actions user, id -2, whatever the token's shape.
      expect((await call(s, "GET", "/user", { auth })).json.id).toBe(-2);
    }
    expect((await call(s, "GET", `/attachments/${pub.uuid}`, { auth: W, base: s.url })).status).toBe(200);
  });

  test("owner visibility: a private owner hides a public repository from the Actions user, a limited owner does not (but from anonymous readers)", async () => {
    const hidden = await start({ ownerVisibility: "private" });
    const h = await releaseWithAsset(hidden, false);
    expect((await call(hidden, "GET", REPO, { auth: A })).json.owner.visibility).toBe("private");
    expect((await call(hidden, "GET", `/attachments/${h.uuid}`, { auth: A, base: hidden.url })).status).toBe(404);
    const limited = await start({ ownerVisibility: "limited" });
    const l = await releaseWithAsset(limited, false);
    expect((await call(limited, "GET", `/attachments/${l.uuid}`, { auth: A, base: limited.url })).status).toBe(200);
    expect((await call(limited, "GET", `/ops/runner-images/releases/download/${l.tag}/a.bin`, { auth: A, base: limited.url })).status).toBe(200);
    expect((await call(limited, "GET", `/attachments/${l.uuid}`, { base: limited.url })).status).toBe(404);
  });

  test("public repository: the Actions token reads published assets, a draft's only by uuid, never by tag", async () => {
    const d = await releaseWithAsset(srv, true);
    expect((await call(srv, "GET", `/attachments/${d.uuid}`, { auth: A, base: srv.url })).status).toBe(200);
    expect((await call(srv, "GET", `/ops/runner-images/releases/download/${d.tag}/a.bin`, { auth: A, base: srv.url })).status).toBe(404);
    expect((await call(srv, "GET", `/ops/runner-images/releases/download/${d.tag}/a.bin`, { auth: W, base: srv.url })).status).toBe(200);
  });

  test("GET /user: a personal token without read:user scope gets 403, no token 401", async () => {
    expect((await call(srv, "GET", "/user", { auth: W })).status).toBe(403);
    expect((await call(srv, "GET", "/user")).status).toBe(401);
  });
});
