/**
 * nixosModules.boot-broker (nix/boot-broker.nix), evaluated from flake.nix with nixpkgs' real lib
 * (tests/flake-eval/broker.nix): its options are type-checked, the unit is hardened, and the
 * configuration file it writes is one scripts/lib/broker/config.ts accepts, with the secrets
 * reaching the broker as systemd credentials only.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { checkConfig } from "../scripts/lib/broker/config.ts";
import { makeCredentialsDir } from "./support/broker.ts";

const ROOT = resolve(import.meta.dir, "..");
const NIXPKGS_LIB = resolve(ROOT, "..", "shared", "nixpkgs-lib", "lib");
const HAVE_LIB = existsSync(join(NIXPKGS_LIB, "default.nix"));

const BASE = {
  enable: true,
  source: "/srv/runner-images",
  forgejo: { url: "https://forge.example", repository: "ops/runner-images", tokenFile: "/run/keys/forgejo-token" },
  tls: { certFile: "/run/keys/broker.pem", keyFile: "/run/keys/broker.key" },
  machines: [
    { name: "rack1-node1", mac: "52:54:00:12:34:56", address: "10.0.0.11", mode: "host", labels: ["nix-host-one-job"] },
    { name: "rack1-node2", mac: "52:54:00:12:34:57", address: "10.0.0.12", legacySecretFile: "/run/keys/node2-secret" },
  ],
};

function evaluate(settings: unknown) {
  const r = spawnSync(
    "nix-instantiate",
    ["--eval", "--strict", "--json", join(ROOT, "tests", "flake-eval", "broker.nix"), "--argstr", "libPath", NIXPKGS_LIB, "--argstr", "flakeDir", ROOT, "--argstr", "settings", JSON.stringify(settings)],
    { encoding: "utf8" },
  );
  return { ok: r.status === 0, value: r.status === 0 ? JSON.parse(r.stdout) : undefined, stderr: r.stderr };
}

const scratch = mkdtempSync(join(tmpdir(), "broker-module-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe.skipIf(!HAVE_LIB)("nixosModules.boot-broker", () => {
  const { ok, value, stderr } = HAVE_LIB ? evaluate(BASE) : { ok: false, value: undefined, stderr: "" };

  test("the unit runs the broker without fetching packages, with no user of its own and no write access", () => {
    expect(stderr).toBe("");
    expect(ok).toBe(true);
    const unit = value.serviceConfig;
    expect(unit.ExecStart).toMatch(/\/bin\/bun --no-install \/srv\/runner-images\/scripts\/boot-broker\.ts --config \/nix\/store\/\S+-boot-broker\.json$/);
    expect(unit).toMatchObject({ DynamicUser: true, ProtectSystem: "strict", ProtectHome: true, PrivateTmp: true, PrivateDevices: true, NoNewPrivileges: true, CapabilityBoundingSet: [""], UMask: "0077" });
    expect(value.wantedBy).toEqual(["multi-user.target"]);
  });

  test("the token, the TLS key and the legacy secrets reach it as credentials, never in argv or the store", () => {
    expect(value.serviceConfig.LoadCredential).toEqual([
      "forgejo-token:/run/keys/forgejo-token",
      "tls-cert:/run/keys/broker.pem",
      "tls-key:/run/keys/broker.key",
      "legacy-secret-rack1-node2:/run/keys/node2-secret",
    ]);
    expect(value.serviceConfig.ExecStart).not.toContain("/run/keys");
    expect(value.configText).not.toContain("/run/keys");
  });

  test("the configuration it writes is one the broker accepts, machine for machine", async () => {
    // The credentials directory as systemd would fill it from LoadCredential=.
    const creds = await makeCredentialsDir(mkdtempSync(join(scratch, "creds-")), { "legacy-secret-rack1-node2": `${"ab".repeat(20)}\n` });
    const config = checkConfig(JSON.parse(value.configText), "boot-broker.json", { CREDENTIALS_DIRECTORY: creds });
    expect(config.forgejo).toMatchObject({ url: "https://forge.example", owner: "ops", repo: "runner-images", token: "a-token", level: "repository" });
    expect(config.listen).toEqual({ host: "0.0.0.0", port: 8443 });
    expect(config.machines.map((m) => [m.name, m.mac, m.address, m.mode, m.legacySecret ?? null])).toEqual([
      ["rack1-node1", "52:54:00:12:34:56", "10.0.0.11", "host", null],
      ["rack1-node2", "52:54:00:12:34:57", "10.0.0.12", "container", "ab".repeat(20)],
    ]);
  });

  test("a mistaken option fails evaluation, naming it; a secret given as a store path is refused", () => {
    const bad = evaluate({ ...BASE, machines: [{ ...BASE.machines[0], mode: "vm" }] });
    expect(bad.ok).toBe(false);
    expect(bad.stderr).toContain("services.runner-boot-broker.machines");
    expect(bad.stderr).toContain("mode");
    const relative = evaluate({ ...BASE, forgejo: { ...BASE.forgejo, tokenFile: "forgejo-token" } });
    expect(relative.ok).toBe(false);
    expect(relative.stderr).toContain("services.runner-boot-broker.forgejo.tokenFile");
  });

  test("the override is passed to the broker and warned about at build time; a port below 1024 gets only CAP_NET_BIND_SERVICE", () => {
    const loud = evaluate({ ...BASE, allowHostWithPullRequests: true, port: 443, openFirewall: true });
    expect(loud.ok).toBe(true);
    expect(loud.value.serviceConfig.ExecStart).toEndWith(" --allow-host-with-pull-requests");
    expect(loud.value.warnings).toEqual([expect.stringContaining("allowHostWithPullRequests")]);
    expect(loud.value.serviceConfig.CapabilityBoundingSet).toEqual(["CAP_NET_BIND_SERVICE"]);
    expect(loud.value.ports).toEqual([443]);
    expect(value.warnings).toEqual([]);
  });

  test("a plain http:// Forgejo (a lab network) is refused by the broker unless forgejo.allowInsecureHttp says so", async () => {
    const creds = await makeCredentialsDir(mkdtempSync(join(scratch, "creds-http-")));
    const lab = { ...BASE, machines: [BASE.machines[0]], forgejo: { ...BASE.forgejo, url: "http://forgejo:3000" } };
    const refused = evaluate(lab);
    expect(refused.ok).toBe(true);
    expect(() => checkConfig(JSON.parse(refused.value.configText), "boot-broker.json", { CREDENTIALS_DIRECTORY: creds })).toThrow("forgejo.url");
    const allowed = evaluate({ ...lab, forgejo: { ...lab.forgejo, allowInsecureHttp: true } });
    const config = checkConfig(JSON.parse(allowed.value.configText), "boot-broker.json", { CREDENTIALS_DIRECTORY: creds });
    expect(config.forgejo.url).toBe("http://forgejo:3000");
  });
});
