/**
 * Contract test: the fixture's JSON responses, and the exported types in
 * scripts/lib/forgejo/types.ts, against Forgejo's own swagger: the extract kept as test data in
 * tests/fixtures/forgejo-openapi-extract.json (Forgejo 505ab87, v14 dev; its `info` names the
 * source), so the contract is checked in every clone.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { MAIN_SHA, startForgejo, type ForgejoServer } from "./support/forgejo-server.ts";
import { TYPE_KEYS, UNDECLARED_EXTRAS } from "../scripts/lib/forgejo/types.ts";
import { SwaggerChecker, type Spec } from "./support/swagger-check.ts";

const EXTRACT = join(import.meta.dir, "fixtures", "forgejo-openapi-extract.json");
const spec: Spec = JSON.parse(readFileSync(EXTRACT, "utf8"));
const checker = new SwaggerChecker(spec, UNDECLARED_EXTRAS);

/** Operations of the extract the fixture does not implement. */
const NOT_IMPLEMENTED = new Set(["DELETE /repos/{owner}/{repo}", "PATCH /repos/{owner}/{repo}"]);

function templateOf(apiPath: string): string {
  const candidates = Object.keys(spec.paths).filter((t) => {
    const re = new RegExp(
      "^" +
        t
          .replace(/\{(id|attachment_id)\}/g, "\\d+")
          .replace(/\/tags\/\{tag\}$/, "/tags/.+")
          .replace(/\{[^}]+\}/g, "[^/]+") +
        "$",
    );
    return re.test(apiPath);
  });
  // prefer literal segments (/releases/latest over /releases/{id})
  candidates.sort((a, b) => (a.match(/\{/g)?.length ?? 0) - (b.match(/\{/g)?.length ?? 0));
  const best = candidates[0];
  if (best === undefined) throw new Error(`no swagger path for ${apiPath}`);
  return best;
}

interface Seen {
  op: string;
  status: number;
  contentType: string;
  body: unknown;
}

describe("Forgejo swagger contract", () => {
  let srv: ForgejoServer;
  const seen: Seen[] = [];
  const W = "token write-token";

  async function hit(method: string, path: string, opts: { auth?: string; json?: unknown; raw?: Bun.BodyInit; headers?: Record<string, string>; server?: ForgejoServer } = {}) {
    const s = opts.server ?? srv;
    const headers: Record<string, string> = { ...(opts.headers ?? {}) };
    if (opts.auth !== "") headers.authorization = opts.auth ?? W;
    let body = opts.raw;
    if (opts.json !== undefined) {
      body = JSON.stringify(opts.json);
      headers["content-type"] = "application/json";
    }
    const res = await fetch(s.apiUrl + path, { method, headers, body });
    const text = await res.text();
    const entry: Seen = {
      op: `${method} ${templateOf(path.split("?")[0]!)}`,
      status: res.status,
      contentType: res.headers.get("content-type") ?? "",
      body: text ? JSON.parse(text) : undefined,
    };
    seen.push(entry);
    return entry;
  }

  beforeAll(async () => {
    srv = await startForgejo({ protectedTags: ["locked-*"] });
    const R = "/repos/ops/runner-images";
    await hit("GET", "/version");
    await hit("GET", "/settings/attachment");
    await hit("GET", R);
    await hit("GET", R, { auth: "" });
    // releases
    const draft = (await hit("POST", `${R}/releases`, { json: { tag_name: "boot-v1", target_commitish: MAIN_SHA, name: "Boot 1", body: "notes", draft: true } })).body as any;
    await hit("POST", `${R}/releases`, { json: { tag_name: "boot-v1", name: "again" } }); // 409
    await hit("POST", `${R}/releases`, { json: { tag_name: "x", target_commitish: "f".repeat(40) } }); // 404
    await hit("POST", `${R}/releases`, { json: { tag_name: "locked-1" }, auth: "token actions-token" }); // 422
    await hit("POST", `${R}/releases/${draft.id}/assets?name=a.iso`, { raw: new Uint8Array(1000), headers: { "content-type": "application/octet-stream" } });
    const fd = new FormData();
    fd.append("attachment", new File([new Uint8Array(10)], "b.txt"));
    const b = (await hit("POST", `${R}/releases/${draft.id}/assets`, { raw: fd })).body as any;
    const ext = new FormData();
    ext.append("external_url", "https://example.org/c");
    await hit("POST", `${R}/releases/${draft.id}/assets?name=c`, { raw: ext });
    await hit("POST", `${R}/releases/${draft.id}/assets`, { raw: new Uint8Array(1) }); // 400
    await hit("GET", `${R}/releases/${draft.id}/assets`);
    await hit("GET", `${R}/releases/${draft.id}/assets/${b.id}`);
    await hit("PATCH", `${R}/releases/${draft.id}/assets/${b.id}`, { json: { name: "b2.txt" } });
    await hit("GET", `${R}/releases/${draft.id}/assets/999999`); // 404
    await hit("GET", `${R}/releases/tags/boot-v1`);
    await hit("GET", `${R}/releases/${draft.id}`);
    await hit("PATCH", `${R}/releases/${draft.id}`, { json: { draft: false } });
    await hit("POST", `${R}/releases`, { json: { tag_name: "boot-v2", target_commitish: "main", prerelease: true } });
    await hit("GET", `${R}/releases?limit=1`);
    await hit("GET", `${R}/releases?draft=true`);
    await hit("GET", `${R}/releases/latest`);
    await hit("GET", `${R}/releases/tags/nope`); // 404
    // tags
    await hit("POST", `${R}/tags`, { json: { tag_name: "t1", target: MAIN_SHA } });
    await hit("POST", `${R}/tags`, { json: { tag_name: "t2", target: "main", message: "annotated" } });
    await hit("POST", `${R}/tags`, { json: { tag_name: "t1", target: MAIN_SHA } }); // 409
    await hit("POST", `${R}/tags`, { json: { tag_name: "locked-2" }, auth: "token actions-token" }); // 422
    await hit("GET", `${R}/tags/t1`);
    await hit("GET", `${R}/tags`);
    await hit("GET", `${R}/tags/nope`); // 404
    await hit("DELETE", `${R}/tags/boot-v1`); // 409: release attached
    await hit("DELETE", `${R}/releases/${draft.id}/assets/${b.id}`);
    await hit("DELETE", `${R}/releases/tags/boot-v2`);
    await hit("DELETE", `${R}/releases/${draft.id}`);
    await hit("DELETE", `${R}/tags/boot-v1`);
    srv.addFault({ kind: "quota" });
    await hit("POST", `${R}/releases`, { json: { tag_name: "q" } }); // 413 (undocumented there)
    const pub = (await hit("POST", `${R}/releases`, { json: { tag_name: "q2" } })).body as any;
    srv.addFault({ kind: "quota" });
    await hit("POST", `${R}/releases/${pub.id}/assets?name=q`, { raw: new Uint8Array(5), headers: { "content-type": "application/octet-stream" } }); // 413
    const empty = await startForgejo({ branches: {}, commits: [] });
    await hit("POST", `${R}/releases`, { json: { tag_name: "e" }, server: empty }); // 422
    await empty.stop();
  });
  afterAll(async () => {
    await srv?.stop();
  });

  test("the checker itself rejects wrong types, undeclared keys, bad formats and enums", () => {
    const rel = checker.definition("Release");
    expect(checker.check(rel, { id: 1, tag_name: "a", created_at: "2025-01-01T00:00:00Z" }, "$", "Release")).toEqual([]);
    expect(checker.check(rel, { id: "1" }, "$", "Release")).toEqual(["$.id: expected integer, got \"1\""]);
    expect(checker.check(rel, { digest: "x" }, "$", "Release")).toEqual(["$.digest: not declared in Release"]);
    expect(checker.check(rel, { created_at: "2025-01-01 00:00" }, "$", "Release")).toHaveLength(1);
    expect(checker.check(rel, { assets: [{ type: "link" }] }, "$", "Release")).toHaveLength(1);
    expect(checker.check(rel, { author: { login: "x", username: "x" } }, "$", "Release")).toEqual([]);
    expect(new SwaggerChecker(spec).check(rel, { author: { username: "x" } })).toEqual(["$.author.username: not declared in User"]);
    expect(checker.check({ type: "array", items: { $ref: "#/definitions/Tag" } }, [{ name: 1 }])).toEqual(["$[0].name: expected string, got 1"]);
  });

  test("every exported type mirrors its swagger definition (plus documented extras)", () => {
    expect(Object.keys(TYPE_KEYS).length).toBeGreaterThanOrEqual(8);
    for (const [def, keys] of Object.entries(TYPE_KEYS)) {
      const props = Object.keys(checker.definition(def).properties ?? {});
      const extras = UNDECLARED_EXTRAS[def] ?? [];
      expect(keys.filter((k) => !props.includes(k) && !extras.includes(k)), `${def}: keys not in the swagger`).toEqual([]);
      expect(props.filter((p) => !keys.includes(p)), `${def}: swagger properties missing from the type`).toEqual([]);
    }
    for (const name of ["Release", "Attachment", "Tag", "CreateReleaseOption", "EditReleaseOption", "EditAttachmentOptions", "CreateTagOption", "APIError"])
      expect(TYPE_KEYS[name], name).toBeDefined();
  });

  test("every JSON response matches the swagger schema of its operation and status", () => {
    expect(seen.length).toBeGreaterThan(30);
    const problems: string[] = [];
    for (const s of seen) {
      const schema = checker.responseSchema(s.op.split(" ")[0]!, s.op.slice(s.op.indexOf(" ") + 1), s.status);
      const label = `${s.op} -> ${s.status}`;
      if (s.status === 204) {
        if (s.body !== undefined) problems.push(`${label}: 204 with a body`);
        continue;
      }
      if (!s.contentType.startsWith("application/json")) problems.push(`${label}: content-type ${s.contentType}`);
      // Undocumented statuses and body-less documented errors (e.g. 409 "conflict") carry Forgejo's APIError.
      // An undocumented 413 is the quota middleware's body (documented as "quotaExceeded" elsewhere).
      const fallback =
        s.status === 413
          ? checker.responseSchema("POST", "/repos/{owner}/{repo}/releases/{id}/assets", 413)
          : s.status >= 400
            ? { $ref: "#/definitions/APIError" }
            : undefined;
      const effective = schema ?? fallback;
      if (!effective) {
        problems.push(`${label}: no schema for a success response`);
        continue;
      }
      problems.push(...checker.check(effective, s.body).map((p) => `${label}: ${p}`));
    }
    expect(problems).toEqual([]);
  });

  test("the scenario covers every implemented operation of the extract and its documented statuses", () => {
    const ops = new Set(seen.map((s) => s.op));
    const missing: string[] = [];
    for (const [path, item] of Object.entries(spec.paths))
      for (const method of Object.keys(item)) {
        const op = `${method.toUpperCase()} ${path}`;
        if (method !== "parameters" && !NOT_IMPLEMENTED.has(op) && !ops.has(op)) missing.push(op);
      }
    expect(missing).toEqual([]);
    const statuses = new Set(seen.map((s) => `${s.op} ${s.status}`));
    for (const want of [
      "POST /repos/{owner}/{repo}/releases 201",
      "POST /repos/{owner}/{repo}/releases 404",
      "POST /repos/{owner}/{repo}/releases 409",
      "POST /repos/{owner}/{repo}/releases 422",
      "POST /repos/{owner}/{repo}/releases 413",
      "POST /repos/{owner}/{repo}/releases/{id}/assets 201",
      "POST /repos/{owner}/{repo}/releases/{id}/assets 400",
      "POST /repos/{owner}/{repo}/releases/{id}/assets 413",
      "PATCH /repos/{owner}/{repo}/releases/{id}/assets/{attachment_id} 201",
      "POST /repos/{owner}/{repo}/tags 409",
      "POST /repos/{owner}/{repo}/tags 422",
      "DELETE /repos/{owner}/{repo}/tags/{tag} 409",
      "GET /repos/{owner}/{repo}/tags/{tag} 404",
    ])
      expect(statuses.has(want), want).toBe(true);
  });
});
