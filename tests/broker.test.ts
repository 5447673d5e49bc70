/**
 * The boot broker (scripts/boot-broker.ts) as an operator runs it: its own process, real HTTPS on
 * loopback (a throw-away CA), machines asking with curl from a chosen source address, and the
 * Forgejo test server in v15 mode (single-use registrations) and v14 mode (no runner endpoints).
 */
import { afterAll, afterEach, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";

setDefaultTimeout(30_000);
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startForgejo, type ForgejoServer } from "./support/forgejo-server.ts";
import { ask, bootId, makeTls, parseEnv, startBroker, type BrokerRun, type BrokerSetup, type Tls } from "./support/broker.ts";

const HOST = { name: "rack1-host", mac: "52:54:00:00:00:01", address: "127.0.0.1", mode: "host" as const, labels: ["nix-host-one-job"] };
const CONTAINER = { name: "rack1-ctr", mac: "52:54:00:00:00:02", address: "127.0.0.1", mode: "container" as const, labels: ["docker"] };
const ELSEWHERE = { name: "rack2-ctr", mac: "52:54:00:00:00:03", address: "127.0.0.2", mode: "container" as const };
const LEGACY_SECRET = "fedcba9876543210fedcba9876543210fedcba98";
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let tls: Tls;
let scratch: string;
const running: { stop(): Promise<void> }[] = [];
beforeAll(async () => {
  tls = await makeTls();
  scratch = mkdtempSync(join(tmpdir(), "broker-test-"));
  writeFileSync(join(scratch, "legacy-secret"), `${LEGACY_SECRET}\n`, { mode: 0o600 });
});
afterEach(async () => {
  for (const r of running.splice(0).reverse()) await r.stop();
});
afterAll(() => {
  rmSync(tls.dir, { recursive: true, force: true });
  rmSync(scratch, { recursive: true, force: true });
});

async function forge(options: Parameters<typeof startForgejo>[0] = {}): Promise<ForgejoServer> {
  const server = await startForgejo({ version: "15.0.3", hasPullRequests: false, ...options });
  running.push(server);
  return server;
}
async function broker(setup: Omit<BrokerSetup, "tls">): Promise<BrokerRun> {
  const run = await startBroker({ tls, ...setup });
  running.push(run);
  if (!run.port) throw new Error(`the broker did not start (exit ${await run.exited}):\n${run.output()}`);
  return run;
}
const events = (run: BrokerRun) => run.log().map((l) => `${l.event}${l.status ? ` ${l.status}` : ""}`);

describe("Forgejo 15: single-use credentials", () => {
  test("a host machine gets an ephemeral registration minted for its boot, once; a second request in the same boot is refused", async () => {
    const fj = await forge();
    const run = await broker({ forgejoUrl: fj.url, machines: [HOST] });
    const boot = bootId();
    const first = await ask(run, tls, HOST.mac.replaceAll(":", "-"), boot);
    expect(first.status).toBe(200);
    const env = parseEnv(first.body);
    const live = fj.runners.list();
    expect(live).toHaveLength(1);
    expect(env).toEqual({
      FORGEJO_URL: fj.url,
      FORGEJO_RUNNER_NAME: `${HOST.name}-${boot}`,
      FORGEJO_RUNNER_MODE: "host",
      FORGEJO_RUNNER_UUID: live[0]!.uuid,
      FORGEJO_RUNNER_TOKEN: expect.stringMatching(/^[0-9a-f]{40}$/),
      FORGEJO_RUNNER_REGISTRATION_ID: String(live[0]!.id),
      FORGEJO_RUNNER_EPHEMERAL: "1",
      FORGEJO_RUNNER_LABELS: "nix-host-one-job",
    });
    expect(live[0]).toMatchObject({ name: `${HOST.name}-${boot}`, ephemeral: true });
    // What was handed out is the registration's own credential: the runner can connect with it.
    expect(fj.runners.connect(env.FORGEJO_RUNNER_UUID!, env.FORGEJO_RUNNER_TOKEN!)).toBe(true);

    const again = await ask(run, tls, HOST.mac, boot);
    expect(again.status).toBe(409);
    expect(again.body).toContain("already served");
    expect(again.body).not.toContain(env.FORGEJO_RUNNER_TOKEN!);
    expect(fj.runners.all()).toHaveLength(1); // no second mint for the same boot
    expect(run.log().find((l) => l.event === "served")).toMatchObject({ machine: HOST.name, boot, registration: live[0]!.id, credential: "minted", source: "127.0.0.1" });
  });

  test("a container machine gets a per-boot registration that is not ephemeral (the runner's daemon refuses those)", async () => {
    const fj = await forge();
    const run = await broker({ forgejoUrl: fj.url, machines: [CONTAINER] });
    const res = await ask(run, tls, CONTAINER.mac, bootId());
    expect(res.status).toBe(200);
    expect(parseEnv(res.body).FORGEJO_RUNNER_EPHEMERAL).toBe("0");
    expect(fj.runners.list()[0]?.ephemeral).toBe(false);
  });

  test("the next boot's request deletes the previous boot's registration; one whose runner is still online is not replaced", async () => {
    const fj = await forge();
    const run = await broker({ forgejoUrl: fj.url, machines: [HOST] });
    const first = parseEnv((await ask(run, tls, HOST.mac, bootId())).body);
    const second = await ask(run, tls, HOST.mac, bootId());
    expect(second.status).toBe(200);
    expect(fj.runners.list().map((r) => r.id)).toEqual([Number(parseEnv(second.body).FORGEJO_RUNNER_REGISTRATION_ID)]);
    expect(fj.runners.connect(first.FORGEJO_RUNNER_UUID!, first.FORGEJO_RUNNER_TOKEN!)).toBe(false);
    // The current registration's runner is online (connected, then running a job): a "new boot"
    // now is most likely that job imitating one. Told to retry; nothing replaced or minted.
    const current = parseEnv(second.body);
    expect(fj.runners.connect(current.FORGEJO_RUNNER_UUID!, current.FORGEJO_RUNNER_TOKEN!)).toBe(true);
    const whileIdle = await ask(run, tls, HOST.mac, bootId());
    expect(whileIdle.status).toBe(503);
    expect(whileIdle.body).toContain("was online within the last minute (idle)");
    expect(fj.runners.fetchTask(current.FORGEJO_RUNNER_UUID!, current.FORGEJO_RUNNER_TOKEN!)).toBe(true);
    const imitation = await ask(run, tls, HOST.mac, bootId());
    expect(imitation.status).toBe(503);
    expect(imitation.headers).toMatch(/retry-after: 30/i);
    expect(fj.runners.all()).toHaveLength(2);
    // The job ends: Forgejo deletes the ephemeral registration, and the next boot is served.
    expect(fj.runners.finishTask(current.FORGEJO_RUNNER_UUID!, current.FORGEJO_RUNNER_TOKEN!)).toBe(true);
    expect((await ask(run, tls, HOST.mac, bootId())).status).toBe(200);
    expect(fj.runners.list()).toHaveLength(1);
  });

  test("a POST whose answer was lost leaves no registration behind: it is found by name and deleted before the retry", async () => {
    const fj = await forge();
    const run = await broker({ forgejoUrl: fj.url, machines: [HOST] });
    fj.addFault({ kind: "status-after-work", status: 502, method: "POST", path: /actions\/runners$/ });
    const res = await ask(run, tls, HOST.mac, bootId());
    expect(res.status).toBe(200);
    const all = fj.runners.all();
    expect(all).toHaveLength(2);
    expect(all.filter((r) => !r.deleted).map((r) => r.id)).toEqual([Number(parseEnv(res.body).FORGEJO_RUNNER_REGISTRATION_ID)]);
    expect(run.log().some((l) => l.event === "deleted" && l.registration === all[0]!.id)).toBe(true);
  });

  test("an unused registration is deleted at its deadline; a used one is kept", async () => {
    const fj = await forge();
    const run = await broker({ forgejoUrl: fj.url, machines: [HOST, CONTAINER], extra: { credentials: { unusedDeadlineSeconds: 1 } } });
    const unused = parseEnv((await ask(run, tls, HOST.mac, bootId())).body);
    const used = parseEnv((await ask(run, tls, CONTAINER.mac, bootId())).body);
    expect(fj.runners.connect(used.FORGEJO_RUNNER_UUID!, used.FORGEJO_RUNNER_TOKEN!, ["docker"])).toBe(true);
    expect(fj.runners.list()).toHaveLength(2);
    for (let i = 0; i < 50 && fj.runners.list().length > 1; i++) await Bun.sleep(100);
    expect(fj.runners.list().map((r) => r.id)).toEqual([Number(used.FORGEJO_RUNNER_REGISTRATION_ID)]);
    expect(fj.runners.connect(unused.FORGEJO_RUNNER_UUID!, unused.FORGEJO_RUNNER_TOKEN!)).toBe(false);
    await Bun.sleep(300);
    expect(run.log().find((l) => l.event === "deleted")).toMatchObject({ registration: Number(unused.FORGEJO_RUNNER_REGISTRATION_ID), reason: expect.stringContaining("unused at its deadline") });
    expect(run.log().find((l) => l.event === "kept")).toMatchObject({ registration: Number(used.FORGEJO_RUNNER_REGISTRATION_ID) });
  });

  test("registrations an earlier run left unused are deleted at start", async () => {
    const fj = await forge();
    const first = await broker({ forgejoUrl: fj.url, machines: [HOST] });
    await ask(first, tls, HOST.mac, bootId());
    await first.stop();
    expect(fj.runners.list()).toHaveLength(1);
    const second = await broker({ forgejoUrl: fj.url, machines: [HOST] });
    expect(fj.runners.list()).toHaveLength(0);
    expect(second.log()[0]).toMatchObject({ event: "deleted", reason: expect.stringContaining("earlier run") });
  });
});

describe("who may ask", () => {
  test("an unknown MAC gets 404, another address 403, a request without a boot id 400; each a log line, nothing minted", async () => {
    const fj = await forge();
    const run = await broker({ forgejoUrl: fj.url, machines: [HOST, ELSEWHERE] });
    expect((await ask(run, tls, "52:54:00:99:99:99", bootId())).status).toBe(404);
    const wrongAddress = await ask(run, tls, ELSEWHERE.mac, bootId(), "127.0.0.1");
    expect(wrongAddress.status).toBe(403);
    expect((await ask(run, tls, HOST.mac, bootId(), "127.0.0.3")).status).toBe(403);
    expect((await ask(run, tls, HOST.mac, null)).status).toBe(400);
    expect((await ask(run, tls, HOST.mac, "not-a-boot-id")).status).toBe(400);
    expect(fj.runners.all()).toHaveLength(0);
    expect(events(run)).toEqual(["refused 404", "refused 403", "refused 403", "refused 400", "refused 400"]);
    expect(run.log()[1]).toMatchObject({ machine: ELSEWHERE.name, source: "127.0.0.1" });
    // From its own address the same machine is served.
    expect((await ask(run, tls, ELSEWHERE.mac, bootId(), "127.0.0.2")).status).toBe(200);
  });

  test("a machine asking too often is rate-limited (429 with Retry-After)", async () => {
    const fj = await forge();
    const run = await broker({ forgejoUrl: fj.url, machines: [HOST], extra: { rateLimit: { requests: 2, perSeconds: 600 } } });
    expect((await ask(run, tls, HOST.mac, bootId())).status).toBe(200);
    expect((await ask(run, tls, HOST.mac, bootId())).status).toBe(200);
    const third = await ask(run, tls, HOST.mac, bootId());
    expect(third.status).toBe(429);
    expect(third.headers).toMatch(/retry-after: \d+/i);
    expect(fj.runners.all()).toHaveLength(2);
  });
});

describe("Forgejo down, then up", () => {
  test("a request while Forgejo is down waits and retries, and is served once it is back: one registration", async () => {
    const fj = await forge();
    const port = Number(new URL(fj.url).port);
    const run = await broker({ forgejoUrl: fj.url, machines: [HOST], extra: { credentials: { forgejoWaitSeconds: 15 } } });
    await fj.stop();
    const answer = ask(run, tls, HOST.mac, bootId());
    await Bun.sleep(1500);
    const back = await forge({ port });
    const res = await answer;
    expect(res.status).toBe(200);
    expect(back.runners.all()).toHaveLength(1);
    expect(back.runners.list()[0]!.id).toBe(Number(parseEnv(res.body).FORGEJO_RUNNER_REGISTRATION_ID));
    expect(run.log().some((l) => l.event === "forgejo-retry")).toBe(true);
  });

  test("longer than the wait: 503 with Retry-After and nothing handed out; the same boot asks again later and is served", async () => {
    const fj = await forge();
    const port = Number(new URL(fj.url).port);
    const run = await broker({ forgejoUrl: fj.url, machines: [HOST], extra: { credentials: { forgejoWaitSeconds: 1 } } });
    await fj.stop();
    const boot = bootId();
    const down = await ask(run, tls, HOST.mac, boot);
    expect(down.status).toBe(503);
    expect(down.headers).toMatch(/retry-after: \d+/i);
    expect(down.body).not.toContain("FORGEJO_RUNNER");
    const back = await forge({ port });
    const res = await ask(run, tls, HOST.mac, boot);
    expect(res.status).toBe(200);
    expect(back.runners.all()).toHaveLength(1);
  });
});

describe("older Forgejo: the operator's long-lived secret", () => {
  test("v14 (no runner endpoints): the machine's legacy secret is served, with a warning in the log, and nothing is registered", async () => {
    const fj = await forge({ version: "14.0.0" });
    const run = await broker({ forgejoUrl: fj.url, machines: [{ ...CONTAINER, legacySecretFile: join(scratch, "legacy-secret") }] });
    const res = await ask(run, tls, CONTAINER.mac, bootId());
    expect(res.status).toBe(200);
    expect(parseEnv(res.body)).toEqual({ FORGEJO_URL: fj.url, FORGEJO_RUNNER_NAME: CONTAINER.name, FORGEJO_RUNNER_MODE: "container", FORGEJO_RUNNER_SECRET: LEGACY_SECRET, FORGEJO_RUNNER_LABELS: "docker" });
    expect(run.output()).toContain("WARNING: Forgejo 14.0.0 has no runner registration endpoint (it came in 15.0). Forgejo cannot mint single-use credentials");
    expect(run.log().find((l) => l.event === "long-lived")).toMatchObject({ machine: CONTAINER.name, credential: "long-lived", warning: expect.stringContaining("valid until rotated by hand") });
    expect(fj.requests.some((r) => r.path.includes("/actions/runners"))).toBe(false);
  });

  test("v15 with Actions off answers 404 on the endpoint: the legacy secret, said plainly", async () => {
    const fj = await forge({ actionsEnabled: false });
    const run = await broker({ forgejoUrl: fj.url, machines: [{ ...HOST, legacySecretFile: join(scratch, "legacy-secret") }] });
    const res = await ask(run, tls, HOST.mac, bootId());
    expect(res.status).toBe(200);
    expect(parseEnv(res.body).FORGEJO_RUNNER_SECRET).toBe(LEGACY_SECRET);
    expect(run.output()).toContain("answered 404 on ops/runner-images's runner endpoint: Actions is disabled");
    expect(run.log().find((l) => l.event === "long-lived")).toMatchObject({ machine: HOST.name, credential: "long-lived" });
  });

  test("Actions turned off after the start: the endpoint's 404 at the request falls back, said plainly", async () => {
    const fj = await forge();
    const run = await broker({ forgejoUrl: fj.url, machines: [{ ...HOST, legacySecretFile: join(scratch, "legacy-secret") }] });
    fj.runners.setActionsEnabled(false);
    const res = await ask(run, tls, HOST.mac, bootId());
    expect(parseEnv(res.body).FORGEJO_RUNNER_SECRET).toBe(LEGACY_SECRET);
    expect(run.log().find((l) => l.event === "no-mint-endpoint")).toMatchObject({ machine: HOST.name, warning: expect.stringContaining("404") });
  });

  test("v14 and a machine without a legacy secret: refused at start, exit 1, naming the machine", async () => {
    const fj = await forge({ version: "14.0.0" });
    const run = await startBroker({ tls, forgejoUrl: fj.url, machines: [CONTAINER] });
    running.push(run);
    expect(await run.exited).toBe(1);
    expect(run.output()).toContain(`${CONTAINER.name} has no legacySecretFile`);
  });
});

describe("host mode only where pull requests cannot reach", () => {
  test("a repository with pull requests enabled: host mode refused at start (exit 1) saying why and how to fix", async () => {
    const fj = await forge({ hasPullRequests: true });
    const run = await startBroker({ tls, forgejoUrl: fj.url, machines: [HOST, CONTAINER] });
    running.push(run);
    expect(await run.exited).toBe(1);
    expect(run.output()).toContain("host mode is refused: ops/runner-images accepts pull requests");
    expect(run.output()).toContain("push-only release repository");
  });

  test("pull requests enabled after the start: the next host-mode request is refused (403, saying why); container mode is still served", async () => {
    const fj = await forge();
    const run = await broker({ forgejoUrl: fj.url, machines: [HOST, CONTAINER], extra: { credentials: { pullRequestCheckSeconds: 0 } } });
    fj.runners.setHasPullRequests(true);
    const host = await ask(run, tls, HOST.mac, bootId());
    expect(host.status).toBe(403);
    expect(host.body).toContain("host mode is refused: ops/runner-images accepts pull requests");
    expect((await ask(run, tls, CONTAINER.mac, bootId())).status).toBe(200);
    expect(fj.runners.list().map((r) => r.ephemeral)).toEqual([false]);
  });

  test("container mode is served there; --allow-host-with-pull-requests serves host mode, loudly", async () => {
    const fj = await forge({ hasPullRequests: true });
    const ctr = await broker({ forgejoUrl: fj.url, machines: [CONTAINER] });
    expect((await ask(ctr, tls, CONTAINER.mac, bootId())).status).toBe(200);
    const run = await broker({ forgejoUrl: fj.url, machines: [HOST], flags: ["--allow-host-with-pull-requests"] });
    expect((await ask(run, tls, HOST.mac, bootId())).status).toBe(200);
    expect(run.output()).toContain("WARNING: --allow-host-with-pull-requests");
    expect(run.log().filter((l) => l.event === "override").length).toBe(2); // at start and at the request
  });
});

describe("the configuration", () => {
  test("mistakes are listed at once with where they are, exit 2, before anything listens", async () => {
    const fj = await forge();
    const run = await startBroker({
      tls,
      forgejoUrl: fj.url,
      machines: [
        { ...HOST, mac: "52:54:00:zz:00:01" },
        { ...CONTAINER, name: HOST.name, address: "somewhere" },
        { ...CONTAINER, name: "third", mac: CONTAINER.mac, mode: "vm" as "host" },
      ],
      extra: { credentials: { unusedDeadline: 5 } },
    });
    running.push(run);
    expect(await run.exited).toBe(2);
    const out = run.output();
    expect(out).toContain("6 mistakes");
    expect(out).toContain("machines[2] (third).mac: the same as machines[1]'s");
    expect(out).toContain('machines[0] (rack1-host).mac: "52:54:00:zz:00:01" is not a MAC address');
    expect(out).toContain("machines[1] (rack1-host).address");
    expect(out).toContain("machines[1] (rack1-host).name: the same as machines[0]'s");
    expect(out).toContain("machines[2] (third).mode: must be container or host");
    expect(out).toContain("credentials.unusedDeadline: unknown setting");
    expect(fj.requests).toHaveLength(0); // not even Forgejo was asked
  });

  test("a token file that cannot be read, and a YAML file, are read as the operator wrote them", async () => {
    const fj = await forge();
    const dir = mkdtempSync(join(tmpdir(), "broker-yaml-"));
    const { writeConfig } = await import("./support/broker.ts");
    const yaml = writeConfig(dir, { tls, forgejoUrl: fj.url, machines: [HOST] }, "yaml");
    const ok = Bun.spawn(["bun", "scripts/boot-broker.ts", "--config", yaml, "--check"], { stderr: "pipe", env: { ...process.env, BROKER_FORGEJO_WAIT: "5" } });
    expect(await ok.exited).toBe(0);
    rmSync(join(dir, "forgejo-token"));
    const bad = Bun.spawn(["bun", "scripts/boot-broker.ts", "--config", yaml, "--check"], { stderr: "pipe" });
    expect(await bad.exited).toBe(2);
    expect(await new Response(bad.stderr).text()).toContain(`forgejo.tokenFile: ${join(dir, "forgejo-token")} cannot be read`);
    rmSync(dir, { recursive: true, force: true });
  });
});

test("no credential ever reaches the log or the broker's output: tokens, uuids, the legacy secret, the broker's own token", async () => {
  const fj = await forge();
  const legacy = await forge({ version: "14.0.0" });
  const run = await broker({ forgejoUrl: fj.url, machines: [HOST, CONTAINER], extra: { credentials: { unusedDeadlineSeconds: 1 } }, token: "owner-token" });
  const old = await broker({ forgejoUrl: legacy.url, machines: [{ ...CONTAINER, legacySecretFile: join(scratch, "legacy-secret") }] });
  const handed: string[] = [];
  for (const [mac, boot] of [[HOST.mac, bootId()], [CONTAINER.mac, bootId()], [HOST.mac, bootId()]] as const) {
    const env = parseEnv((await ask(run, tls, mac, boot)).body);
    handed.push(env.FORGEJO_RUNNER_TOKEN!, env.FORGEJO_RUNNER_UUID!);
    await ask(run, tls, mac, boot); // refused: already served
  }
  expect(parseEnv((await ask(old, tls, CONTAINER.mac, bootId())).body).FORGEJO_RUNNER_SECRET).toBe(LEGACY_SECRET);
  await Bun.sleep(1500); // the deadline sweep writes lines too
  expect(handed.every((v) => UUID.test(v) || /^[0-9a-f]{40}$/.test(v))).toBe(true);
  const lines = [...run.log(), ...old.log()].map((l) => JSON.stringify(l));
  expect(lines.length).toBeGreaterThan(8);
  for (const text of [...lines, run.output(), old.output()]) {
    for (const secret of [...handed, LEGACY_SECRET, "owner-token"]) expect(text).not.toContain(secret);
  }
}, 30_000);
