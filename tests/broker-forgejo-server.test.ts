/**
 * The test server's runner block answers as Forgejo v15 does (forgejo-ephemeral-runners.md §1,
 * §2): the broker's tests are only as good as this model.
 */
import { afterEach, expect, test } from "bun:test";
import { startForgejo, type ForgejoServer } from "./support/forgejo-server.ts";

let server: ForgejoServer | undefined;
afterEach(async () => {
  await server?.stop();
  server = undefined;
});
const call = (method: string, path: string, token: string | null, body?: unknown) =>
  fetch(`${server!.apiUrl}/repos/ops/runner-images/actions/runners${path}`, {
    method,
    headers: { ...(token ? { authorization: `token ${token}` } : {}), ...(body === undefined ? {} : { "content-type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });

test("v15: POST 201 {id, uuid, token}; list is a bare array; get; delete 204, then 404", async () => {
  server = await startForgejo({ version: "15.0.0" });
  const created = await call("POST", "", "owner-token", { name: "m-1", ephemeral: true });
  expect(created.status).toBe(201);
  const reg = (await created.json()) as { id: number; uuid: string; token: string };
  expect(Object.keys(reg).sort()).toEqual(["id", "token", "uuid"]);
  expect(reg.token).toMatch(/^[0-9a-f]{40}$/);
  const list = await call("GET", "", "owner-token");
  expect(list.headers.get("x-total-count")).toBe("1");
  const items = (await list.json()) as { id: number; ephemeral: boolean; status: string }[];
  expect(Array.isArray(items)).toBe(true);
  expect(items[0]).toMatchObject({ id: reg.id, ephemeral: true, status: "offline", name: "m-1" });
  expect((await call("GET", `/${reg.id}`, "owner-token")).status).toBe(200);
  expect((await call("DELETE", `/${reg.id}`, "owner-token")).status).toBe(204);
  expect((await call("GET", `/${reg.id}`, "owner-token")).status).toBe(404);
  expect((await call("DELETE", `/${reg.id}`, "owner-token")).status).toBe(404);
});

test("v15: 422 without a name, 401 without a token, 403 for a writer who is not the owner, 404 with Actions off", async () => {
  server = await startForgejo({ version: "15.0.0" });
  expect((await call("POST", "", "owner-token", { ephemeral: true })).status).toBe(422);
  expect((await call("POST", "", null, { name: "x" })).status).toBe(401);
  expect((await call("POST", "", "write-token", { name: "x" })).status).toBe(403);
  server.runners.setActionsEnabled(false);
  expect((await call("POST", "", "owner-token", { name: "x" })).status).toBe(404);
  expect(server.runners.all()).toHaveLength(0);
});

test("v14: the endpoints do not exist (404)", async () => {
  server = await startForgejo({ version: "14.0.0" });
  expect((await call("POST", "", "owner-token", { name: "x", ephemeral: true })).status).toBe(404);
  expect((await call("GET", "", "owner-token")).status).toBe(404);
});

test("an ephemeral registration takes one task, is refused a second, and is deleted when its task ends", async () => {
  server = await startForgejo({ version: "15.0.0" });
  const reg = (await (await call("POST", "", "owner-token", { name: "m-1", ephemeral: true })).json()) as { id: number; uuid: string; token: string };
  expect(server.runners.connect(reg.uuid, "0".repeat(40))).toBe(false);
  expect(server.runners.connect(reg.uuid, reg.token, ["nix-host-one-job"])).toBe(true);
  expect(server.runners.list()[0]).toMatchObject({ status: "idle", labels: ["nix-host-one-job"] });
  expect(server.runners.fetchTask(reg.uuid, reg.token)).toBe(true);
  expect(server.runners.list()[0]!.status).toBe("active");
  expect(server.runners.fetchTask(reg.uuid, reg.token)).toBe(false);
  expect(server.runners.finishTask(reg.uuid, reg.token)).toBe(true);
  expect(server.runners.list()).toHaveLength(0);
  expect((await call("GET", `/${reg.id}`, "owner-token")).status).toBe(404);
  expect(server.runners.connect(reg.uuid, reg.token)).toBe(false);
  // A registration that is not ephemeral stays and keeps taking tasks.
  const kept = (await (await call("POST", "", "owner-token", { name: "m-2" })).json()) as { uuid: string; token: string };
  for (let i = 0; i < 2; i++) {
    expect(server.runners.fetchTask(kept.uuid, kept.token)).toBe(true);
    expect(server.runners.finishTask(kept.uuid, kept.token)).toBe(true);
  }
  expect(server.runners.list()).toHaveLength(1);
});

test("GET /repos/{o}/{r} carries has_pull_requests", async () => {
  server = await startForgejo({ version: "15.0.0", hasPullRequests: false });
  const repo = async () => ((await (await fetch(`${server!.apiUrl}/repos/ops/runner-images`)).json()) as { has_pull_requests: boolean }).has_pull_requests;
  expect(await repo()).toBe(false);
  server.runners.setHasPullRequests(true);
  expect(await repo()).toBe(true);
});
