/**
 * flake.nix's composition, evaluated with nixpkgs' real lib (../shared/nixpkgs-lib):
 * tests/flake-eval/eval.nix calls the flake's own `outputs` with a fake `nixpkgs` input (the
 * real lib, lib.nixosSystem = lib.evalModules, a handful of fake packages) and a fake `self`,
 * so the code that composes the machines is the code that runs. The project's modules are
 * evaluated with their own options checked; NixOS's options are freeform stand-ins.
 *
 * What an operator would notice: a machine without the commit it was built from, without the
 * operator keys, booting the wrong image kind, or an ISO file named unlike the release asset.
 * `checks.<system>.image-composition` asserts the same against the pinned nixpkgs.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { cp, mkdir, mkdtemp, readFile, rm, symlink, truncate, writeFile } from "node:fs/promises";
import { existsSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { TARGETS, type ImageKind } from "../scripts/lib/build/targets.ts";
import { checkConfig } from "../scripts/lib/broker/config.ts";
import { copyFlake, evalFlake, HAVE_LIB, KEYS, mustEval, NIXPKGS_REV, ROOT, SELF } from "./flake-eval/harness.ts";
import { makeCredentialsDir } from "./support/broker.ts";


/** The nixpkgs NixOS module that makes each image kind's boot medium. */
const IMAGE_MODULE: Record<ImageKind, string> = {
  netboot: "installer/netboot/netboot.nix",
  iso: "installer/cd-dvd/iso-image.nix",
};

interface MachineFacts {
  release: { revision: string; shortRevision: string; lastModified: string; nixpkgsRevision: string };
  sshAuthorizedKeys: string[];
  isoBaseName: string | null;
  imageBaseName: string | null;
  isoFileName: string | null;
  hostPlatform: string;
  stage1: { systemd: boolean; scriptedHooks: string[] };
  firewall: { interfaces: string[]; nftables: boolean | null };
  nixosModules: string[];
  jobAccess: {
    hostUser: string;
    hostUserGroups: string[];
    hostCredential: string;
    hostAfterJob: string;
    hostBeforeJob: string[];
    hostEnvironment: Record<string, string>;
    hostHome: string;
    hostTokenFile: string;
    containerUser: string;
    containerUserGroups: string[];
    trustedInterfaces: string[];
    ptraceScope: number | null;
  };
  wiring: {
    secretEnv: Record<string, string>;
    runners: Record<"forgejo-runner" | "forgejo-runner-host", { user: string; condition: string; config: any }>;
    host: { ExecStart: string; EnvironmentFile: string; RuntimeMaxSec: string; TimeoutStartSec: string; Restart: string };
    containerPorts: Record<string, number[]>;
  };
  hostKeys: { script: string; environment: Record<string, string>; wantedBy: string[]; after: string[]; StandardOutput: string; Type: string };
  assertions: { assertion: boolean; message: string }[];
  firmware: { redistributable: boolean; packages: string[]; families: string[] };
  runnerImage: Record<string, unknown>;
}

interface FlakeChecks {
  composition: { expected: string; actual: string };
  initrdSize: Record<string, { env: { initrd: string; budgetMiB: number; largestCount: number }; closureRoots: string[]; script: string }>;
}


const scratch = await mkdtemp(join(tmpdir(), "runner-images-flake-eval-"));
afterAll(() => rm(scratch, { recursive: true, force: true }));

const flakeDir = HAVE_LIB ? await copyFlake(join(scratch, "flake")) : "";
// evaluated by the first test that needs it, so that an evaluation error fails named tests
let evaluatedMachines: Record<string, MachineFacts> | undefined;
const machines = (): Record<string, MachineFacts> => (evaluatedMachines ??= mustEval(flakeDir, "machines"));

describe.skipIf(!HAVE_LIB)(
  `flake composition with nixpkgs' lib${HAVE_LIB ? "" : " (skipped: ../shared/nixpkgs-lib is absent)"}`,
  () => {

    test("there is one machine per target of targets.json, for the target's system", () => {
      expect(Object.keys(machines()).sort()).toEqual(TARGETS.map((t) => t.attr).sort());
      for (const t of TARGETS) expect(machines()[t.attr]!.hostPlatform).toBe(t.system);
    });

    test.each(TARGETS.map((t) => t.attr))("%s carries the commit, the nixpkgs revision and the operator keys", (attr) => {
      const machine = machines()[attr]!;
      expect(machine.release).toEqual({
        revision: SELF.rev,
        shortRevision: SELF.shortRev,
        lastModified: SELF.lastModifiedDate,
        nixpkgsRevision: NIXPKGS_REV,
      });
      expect(machine.sshAuthorizedKeys).toEqual(KEYS);
    });

    test.each(TARGETS.map((t) => t.attr))("%s is built with its own image module and no other", (attr) => {
      const target = TARGETS.find((t) => t.attr === attr)!;
      const modules = machines()[attr]!.nixosModules;
      expect(modules).toContain(IMAGE_MODULE[target.image]);
      expect(modules).toContain("profiles/minimal.nix");
      for (const [kind, module] of Object.entries(IMAGE_MODULE)) {
        if (kind !== target.image) expect(modules).not.toContain(module);
      }
      // the published images carry no test backdoor
      expect(modules).not.toContain("testing/test-instrumentation.nix");
    });

    // nixos-26.05 makes systemd stage 1 the default (NixOS/nixpkgs#435781), and its initrd.nix
    // asserts that no scripted stage-1 hook is set: a machine with one that leaves the default
    // on does not evaluate, so `nix flake check` fails before anything is built.
    test.each(TARGETS.map((t) => t.attr))("%s: a scripted stage-1 hook comes with the scripted stage 1 it needs", (attr) => {
      const { stage1 } = machines()[attr]!;
      // the runner.env hand-over from the initrd (nix/runner.nix) is such a hook
      expect(stage1.scriptedHooks).toContain("postDeviceCommands");
      expect(stage1.systemd).toBe(false);
    });

    // "br-+" is iptables' wildcard; the nftables backend writes the name unquoted after
    // `iifname`, a syntax error there (firewall-nftables.nix). A machine that opens ports per
    // wildcard name states the iptables backend instead of trusting a default that may change.
    test.each(TARGETS.map((t) => t.attr))("%s: ports opened on iptables wildcard interfaces come with the iptables backend", (attr) => {
      const { firewall } = machines()[attr]!;
      expect(firewall.interfaces.some((name) => name.endsWith("+"))).toBe(true);
      expect(firewall.nftables).toBe(false);
    });

    // docs/threat-model.md. The security-* boot tests check the same on a booted
    // machine (Nix runner only); these fail here as soon as the configuration says otherwise.
    test.each(TARGETS.map((t) => t.attr))("%s: a host job's user is in no group; only the container daemon's user reaches the runtime; no interface is trusted", (attr) => {
      const access = machines()[attr]!.jobAccess;
      expect(access.hostUser).toBe("forgejo-runner-host");
      expect(access.hostUserGroups).toEqual([]);
      expect(access.containerUser).not.toBe(access.hostUser);
      expect(access.containerUserGroups).toEqual(["docker"]);
      expect(access.trustedInterfaces).toEqual([]);
      // a host job cannot attach to its runner (an ancestor) to fake the exit status read below
      expect(access.ptraceScope).toBe(1);
    });

    /**
     * Runs one of the project's unit scripts (as evaluated: its text) under bash. Store-path
     * commands in it become recorders in a scratch directory, except those in `real`, which
     * become the command of that name on this machine's PATH; `paths` replaces literal paths.
     */
    async function runUnitScript(script: string, env: Record<string, string>, real: string[] = [], paths: Record<string, string> = {}) {
      const dir = await mkdtemp(join(scratch, "unit-script-"));
      const recorded = join(dir, "commands");
      await writeFile(recorded, "");
      const commands = new Set<string>();
      let text = script.replace(/\/nix\/store\/[0-9a-z]{32}-[^/\s]+\/bin\/([\w-]+)/g, (_, command: string) => {
        if (real.includes(command)) return Bun.which(command) ?? `/nonexistent/${command}`;
        commands.add(command);
        return join(dir, command);
      });
      for (const [from, to] of Object.entries(paths)) text = text.split(from).join(to);
      for (const command of commands) {
        await writeFile(join(dir, command), `#!/bin/bash\nprintf '%s\\n' "${command} $*" >>${recorded}\n`, { mode: 0o755 });
      }
      const child = Bun.spawn(["bash", "-euo", "pipefail", "-c", text], { env: { PATH: process.env.PATH, ...env }, stdout: "pipe", stderr: "pipe" });
      const [stdout, stderr, status] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
      return { status, stdout, stderr, commands: (await readFile(recorded, "utf8")).split("\n").filter(Boolean) };
    }
    const attrs = TARGETS.map((t) => t.attr);

    // docs/machine-credential.md, "One job per boot". systemd runs ExecStopPost with EXIT_CODE,
    // EXIT_STATUS and SERVICE_RESULT set (systemd.exec(5)), after any end of the main process;
    // "+" runs it as root. Its commands (stub store paths here) are replaced by recorders.
    describe("after the host runner's one-job ends, however it ends (its ExecStopPost, run under bash)", () => {
      const ends: [string, Record<string, string>][] = [
        ["exit 0 (after a task, or SIGTERM while waiting)", { EXIT_CODE: "exited", EXIT_STATUS: "0", SERVICE_RESULT: "success" }],
        ["exit 1 (an error, a log.Fatal in a task included)", { EXIT_CODE: "exited", EXIT_STATUS: "1", SERVICE_RESULT: "exit-code" }],
        ["exit 2 (no task received)", { EXIT_CODE: "exited", EXIT_STATUS: "2", SERVICE_RESULT: "exit-code" }],
        ["killed by a signal", { EXIT_CODE: "killed", EXIT_STATUS: "KILL", SERVICE_RESULT: "signal" }],
        ["a core dump", { EXIT_CODE: "dumped", EXIT_STATUS: "ABRT", SERVICE_RESULT: "core-dump" }],
        ["its hard time limit (RuntimeMaxSec=)", { EXIT_CODE: "killed", EXIT_STATUS: "TERM", SERVICE_RESULT: "timeout" }],
        ["no exit information", {}],
      ];
      test.each(attrs.flatMap((attr) => ends.map(([what, env]) => [attr, what, env] as const)))(
        "%s: %s: the credential goes, then the machine reboots",
        async (attr, _what, env) => {
          const { hostAfterJob, hostTokenFile } = machines()[attr]!.jobAccess;
          const { EnvironmentFile } = machines()[attr]!.wiring.host;
          expect(hostAfterJob.startsWith("+")).toBe(true);
          const result = await runUnitScript(hostAfterJob.slice(1), env);
          expect(result.status).toBe(0);
          expect(result.stdout).toContain("rebooting for a clean machine");
          if (env.SERVICE_RESULT) expect(result.stdout).toContain(`result ${env.SERVICE_RESULT}`);
          expect(result.commands).toEqual([`rm -f ${hostTokenFile} ${EnvironmentFile}`, "systemctl --no-block reboot"]);
        },
      );

      test.each(attrs)("%s: the unit never restarts one-job on the same boot, and has a hard time limit", (attr) => {
        const { Restart, RuntimeMaxSec } = machines()[attr]!.wiring.host;
        expect(Restart).toBe("no");
        expect(RuntimeMaxSec).toBe(machines()[attr]!.runnerImage["runnerImage.hostOneJobTimeout"] as string);
        expect(RuntimeMaxSec).toMatch(/^[1-9][0-9]*(s|min|h)$/);
      });
    });

    describe("before the host runner's one-job (its ExecStartPre steps, run under bash)", () => {
      // one-job exits 1 at once when Forgejo does not answer its Declare, and every exit reboots
      test.each(attrs)("%s: it waits, without a time limit, until Forgejo answers, then goes on", async (attr) => {
        const { hostBeforeJob, hostEnvironment } = machines()[attr]!.jobAccess;
        const [wait] = hostBeforeJob;
        expect(wait!.startsWith("+")).toBe(false); // as the runner's user: nothing needs root here
        expect(machines()[attr]!.wiring.host.TimeoutStartSec).toBe("infinity");
        expect(Number(hostEnvironment.WAIT_SECONDS)).toBeGreaterThan(0);
        const probe = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("") });
        const port = probe.port;
        probe.stop(true);
        let late: ReturnType<typeof Bun.serve> | undefined;
        const timer = setTimeout(() => {
          // any answer will do: a 404 from a server that is up
          late = Bun.serve({ hostname: "127.0.0.1", port, fetch: () => new Response("no", { status: 404 }) });
        }, 2500);
        const result = await runUnitScript(wait!, { RUNNER_URL: `http://127.0.0.1:${port}`, WAIT_SECONDS: "1" }, ["curl", "sleep"]);
        clearTimeout(timer);
        late?.stop(true);
        expect(result.status).toBe(0);
        expect(result.stdout).toContain(`forgejo-runner-host: http://127.0.0.1:${port} does not answer (curl exit status 7); waiting 1s before starting one-job`);
        expect(late).toBeDefined();
      }, 30_000);

      test.each(attrs)("%s: HOME is emptied: files, hidden files, directories (one the job made unreadable) and symlinks go; what a symlink points at stays", async (attr) => {
        const { hostHome } = machines()[attr]!.jobAccess;
        const hostBeforeJob = machines()[attr]!.jobAccess.hostBeforeJob.at(-1)!;
        expect(hostBeforeJob.startsWith("+")).toBe(true);
        // HOME holds the work directory and the action cache (the runner's host.workdir_parent)
        const { config } = machines()[attr]!.wiring.runners["forgejo-runner-host"];
        expect(config.host.workdir_parent.startsWith(`${hostHome}/`)).toBe(true);
        const dir = await mkdtemp(join(scratch, "home-"));
        const home = join(dir, "home");
        const outside = join(dir, "outside");
        await mkdir(join(home, "work", "owner", "repo", ".git", "hooks"), { recursive: true });
        await writeFile(join(home, "work", "owner", "repo", ".git", "hooks", "post-checkout"), "#!/bin/sh\n");
        await mkdir(join(home, ".cache", "act"), { recursive: true });
        await writeFile(join(home, ".bashrc"), "planted\n");
        await writeFile(join(home, ".gitconfig"), "[core]\n");
        await mkdir(join(home, "locked"));
        await writeFile(join(home, "locked", "x"), "x");
        await mkdir(outside);
        await writeFile(join(outside, "keep"), "keep");
        await symlink(outside, join(home, "link-to-outside"));
        spawnSync("chmod", ["000", join(home, "locked")]);
        const result = await runUnitScript(hostBeforeJob.slice(1), {}, ["find", "rm", "ls"], { [hostHome]: home });
        expect(result.stderr).toBe("");
        expect(result.status).toBe(0);
        expect(readdirSync(home)).toEqual([]);
        expect(readdirSync(outside)).toEqual(["keep"]);
      });

      test.each(attrs)("%s: a HOME that cannot be emptied fails the start (and the failure reboots)", async (attr) => {
        const { hostHome } = machines()[attr]!.jobAccess;
        const hostBeforeJob = machines()[attr]!.jobAccess.hostBeforeJob.at(-1)!;
        const home = join(await mkdtemp(join(scratch, "home-")), "home");
        await mkdir(home);
        await writeFile(join(home, "stays"), "");
        // rm that removes nothing: as if a file could not be deleted
        const result = await runUnitScript(hostBeforeJob.slice(1), {}, ["find", "ls"], { [hostHome]: home });
        expect(result.status).toBe(1);
        expect(result.stdout).toContain("could not empty");
      });
    });

    // The host runner's connection: what runner-secret.sh writes is what the command line reads.
    test.each(attrs)("%s: host mode runs one-job --wait with the connection runner-secret.sh writes (url, uuid, token file)", async (attr) => {
      const { wiring, jobAccess } = machines()[attr]!;
      const script = await readFile(join(ROOT, "nix", "runner-secret.sh"), "utf8");
      const dir = wiring.secretEnv.RUNNER_DIR!;
      // the environment file: its name and the variables the script writes into it
      const envFile = script.match(/install_file "\$RUNNER_DIR\/([\w.]+)" 0644 root/)?.[1];
      expect(`${dir}/${envFile}`).toBe(wiring.host.EnvironmentFile);
      const written = [...(script.match(/printf '((?:\w+=%s\\n)+)'/)?.[1] ?? "").matchAll(/([A-Z_]+)=%s/g)].map((m) => m[1]);
      expect(written.sort()).toEqual(["RUNNER_URL", "RUNNER_UUID"]);
      const argv = wiring.host.ExecStart.split(" ");
      expect(argv[0]).toMatch(/\/bin\/forgejo-runner$/);
      expect(argv[1]).toBe("one-job");
      const flag = (name: string) => argv[argv.indexOf(name) + 1];
      expect(flag("--url")).toBe("${RUNNER_URL}");
      expect(flag("--uuid")).toBe("${RUNNER_UUID}");
      expect(flag("--token-url")).toBe(`file:${jobAccess.hostTokenFile}`);
      expect(argv).toContain("--wait");
      // no `.runner` file the connection would conflict with: the one the config names is one
      // the script deletes and never writes
      const runnerFile = wiring.runners["forgejo-runner-host"].config.runner.file;
      expect(runnerFile.startsWith(`${dir}/`)).toBe(true);
      const name = runnerFile.slice(dir.length + 1);
      expect(script).toContain(`rm -f "$RUNNER_DIR/container.runner" "$RUNNER_DIR/host.token" "$RUNNER_DIR/host.env" "$RUNNER_DIR/${name}"`);
      expect(script).not.toMatch(new RegExp(`(install_file|>) *"?\\$RUNNER_DIR/${name.replace(".", "\\.")}`));
    });

    test.each(attrs)("%s: an image whose forgejo-runner predates one-job's connection flags (12.8.0) does not build", async (attr) => {
      expect(machines()[attr]!.assertions.map((a) => a.message)).toEqual([expect.stringContaining("forgejo-runner 12.8.0 or later")]);
    });

    test("the runner version assertion holds from 12.8.0 on", async () => {
      const versions = { "12.7.3": false, "12.8.0": true, "12.10.1": true, "13.1.0": true };
      for (const [version, holds] of Object.entries(versions)) {
        const result = await evalWithNetbootDefinition(`runner-${version}`, `runnerImage.package = { type = "derivation"; name = "forgejo-runner-${version}"; version = "${version}"; outPath = "/nix/store/${"0".repeat(32)}-forgejo-runner-${version}"; };`);
        expect(result.ok, result.stderr).toBe(true);
        const machine = Object.values<MachineFacts>(result.value).find((m) => m.isoFileName === null)!;
        expect({ version, holds: machine.assertions[0]!.assertion }).toEqual({ version, holds });
      }
    });

    // issue 20 item 10: the machine's SSH host keys are new at every boot; an operator checks them
    // against the console before trusting a first `ssh`.
    test.each(attrs)("%s: the SSH host key fingerprints are printed to the console and the journal at boot, as ssh-keygen computes them", async (attr) => {
      const { hostKeys } = machines()[attr]!;
      expect(hostKeys.StandardOutput).toBe("journal+console");
      expect(hostKeys.wantedBy).toContain("multi-user.target");
      expect(hostKeys.after).toEqual(expect.arrayContaining(["sshd-keygen.service", "sshd.service"]));
      expect(hostKeys.environment.HOST_KEY_DIR).toBe("/etc/ssh");
      const keyDir = await mkdtemp(join(scratch, "ssh-"));
      const expected: string[] = [];
      for (const type of ["ed25519", "ecdsa"]) {
        const key = join(keyDir, `ssh_host_${type}_key`);
        expect(spawnSync("ssh-keygen", ["-q", "-t", type, "-N", "", "-C", "root@forgejo-runner", "-f", key]).status).toBe(0);
        expected.push(spawnSync("ssh-keygen", ["-l", "-f", `${key}.pub`], { encoding: "utf8" }).stdout.trim());
      }
      const result = await runUnitScript(hostKeys.script, { HOST_KEY_DIR: keyDir }, ["ssh-keygen"]);
      expect(result.status).toBe(0);
      const lines = result.stdout.trim().split("\n");
      expect(lines.sort()).toEqual(expected.map((fp) => `runner-ssh-host-key: ${fp}`).sort());
      for (const line of lines) expect(line).toMatch(/^runner-ssh-host-key: \d+ SHA256:[A-Za-z0-9+/]{43} root@forgejo-runner \((ED25519|ECDSA)\)$/);
      // no keys: a line saying so, and the unit fails (visible in `systemctl --failed`)
      const none = await runUnitScript(hostKeys.script, { HOST_KEY_DIR: await mkdtemp(join(scratch, "ssh-none-")) }, ["ssh-keygen"]);
      expect(none.status).toBe(1);
      expect(none.stdout).toContain("runner-ssh-host-key: no SSH host key in");
    }, 30_000);

    test("the ISO is written under the name targets.json publishes", async () => {
      const packages = mustEval(flakeDir, "packages");
      const isos = TARGETS.filter((t) => t.image === "iso");
      expect(isos.length).toBeGreaterThan(0);
      for (const t of isos) {
        const published = t.files.find((f) => f.name.endsWith(".iso"))!.name;
        const machine = machines()[t.attr]!;
        expect(machine.isoFileName).toBe(published);
        expect(machine.imageBaseName).toBe(published.slice(0, -".iso".length));
        expect(machine.isoBaseName).toBe(published.slice(0, -".iso".length));
        expect(packages[t.system][t.attr].isoName).toBe(published);
      }
    });

    test("the netboot package holds exactly the files targets.json publishes", () => {
      const packages = mustEval(flakeDir, "packages");
      const netboots = TARGETS.filter((t) => t.image === "netboot");
      expect(netboots.length).toBeGreaterThan(0);
      for (const t of netboots) {
        const entries: { name: string; path: string }[] = packages[t.system][t.attr].entries;
        expect(entries.map((e) => e.name).sort()).toEqual(t.files.map((f) => f.source).sort());
        // each entry is the file of the same name inside the build output it comes from
        for (const e of entries) expect(e.path).toEndWith(`/${e.name}`);
      }
    });

    test("checks.<system>.image-composition expects what the machines carry", () => {
      const checks: Record<string, FlakeChecks> = mustEval(flakeDir, "check");
      const systems = [...new Set(TARGETS.map((t) => t.system))].sort();
      expect(Object.keys(checks).sort()).toEqual(systems);
      for (const { composition: { expected, actual } } of Object.values(checks)) {
        const want = JSON.parse(expected);
        // the check's expectations are the release and keys, not defaults
        for (const facts of Object.values<any>(want)) {
          expect(facts.release.revision).toBe(SELF.rev);
          expect(facts.sshAuthorizedKeys).toEqual(KEYS);
        }
        expect(JSON.parse(actual)).toEqual(want);
      }
    });

    describe("checks.<system>.initrd-size-<target>", () => {
      let evaluated: Record<string, FlakeChecks> | undefined;
      const checks = (): Record<string, FlakeChecks> => (evaluated ??= mustEval(flakeDir, "check"));
      const netboots = TARGETS.filter((t) => t.image === "netboot");
      const MiB = 1024 * 1024;

      /**
       * Runs the check's build script under bash with a sparse file of `size` bytes as the
       * initrd and a closure of store paths of the given sizes (directories holding one sparse
       * file each, listed in store-paths as pkgs.closureInfo writes it).
       */
      async function buildWithInitrdOf(attr: string, size: number, paths: Record<string, number> = { "aaa-small": 1 * MiB }) {
        const t = netboots.find((n) => n.attr === attr)!;
        const check = checks()[t.system]!.initrdSize[`initrd-size-${attr}`]!;
        const dir = await mkdtemp(join(scratch, "initrd-"));
        const initrd = join(dir, "initrd");
        await writeFile(initrd, "");
        await truncate(initrd, size);
        const closure = join(dir, "closure");
        await mkdir(closure);
        const listed: string[] = [];
        for (const [name, bytes] of Object.entries(paths)) {
          const path = join(dir, "store", name);
          await mkdir(path, { recursive: true });
          // du -b counts apparent sizes: a written file, so the directory adds little
          await writeFile(join(path, "data"), Buffer.alloc(bytes));
          listed.push(path);
        }
        await writeFile(join(closure, "store-paths"), listed.join("\n") + "\n");
        // in its own directory, as a Nix build runs in its build directory (it writes there)
        const result = spawnSync("bash", ["-euo", "pipefail", "-c", check.script], {
          cwd: dir,
          encoding: "utf8",
          env: { PATH: process.env.PATH, initrd, closure, budgetMiB: String(check.env.budgetMiB), largestCount: String(check.env.largestCount), out: join(dir, "out") },
        });
        return { ...result, check, out: join(dir, "out") };
      }

      test("there is one for every netboot target, reading the initrd of the published package and the closure netboot.nix packs", () => {
        expect(netboots.length).toBeGreaterThan(0);
        const packages = mustEval(flakeDir, "packages");
        for (const t of netboots) {
          const check = checks()[t.system]!.initrdSize[`initrd-size-${t.attr}`];
          expect(check).toBeDefined();
          const initrdEntry = packages[t.system][t.attr].entries.find((e: { name: string }) => e.name === "initrd");
          expect(initrdEntry).toBeDefined();
          expect(check!.env.initrd).toMatch(new RegExp(`^/nix/store/[^/]+-${t.attr}/initrd$`));
          // the budget is the machine's setting (nix/image-size.nix), 1 GiB unless changed
          expect(check!.env.budgetMiB).toBe(1024);
          expect(check!.closureRoots).toEqual([expect.stringMatching(/-nixos-system-toplevel$/)]);
        }
      });

      test.each(netboots.map((t) => t.attr))("%s: an initrd within the budget passes; the log and $out give its size and the largest store paths, largest first", async (attr) => {
        const size = 900 * MiB;
        const result = await buildWithInitrdOf(attr, size, { "aaa-docker": 3 * MiB, "bbb-glibc": 1 * MiB, "ccc-nodejs": 2 * MiB });
        expect(result.stderr).toBe("");
        expect(result.status).toBe(0);
        expect(result.stdout).toContain(`initrd: ${size} bytes (900 MiB), budget 1073741824 bytes (1024 MiB, runnerImage.initrdBudgetMiB)`);
        expect(result.stdout).toMatch(/store in the image: 3 paths, \d+ bytes \(6 MiB\)/);
        expect(result.stdout).toMatch(/ 3 MiB  \S+aaa-docker\n +2 MiB  \S+ccc-nodejs\n +1 MiB  \S+bbb-glibc\n/);
        const numbers = JSON.parse(await readFile(result.out, "utf8"));
        expect(numbers.initrdBytes).toBe(size);
        expect(numbers.budgetBytes).toBe(1024 * MiB);
        expect(numbers.largest.map((p: { path: string }) => p.path.split("/").pop())).toEqual(["aaa-docker", "ccc-nodejs", "bbb-glibc"]);
        expect(numbers.largest[0].bytes).toBeGreaterThanOrEqual(3 * MiB);
      });

      test.each(netboots.map((t) => t.attr))("%s: an initrd over the budget fails the check, naming the setting", async (attr) => {
        const size = 1024 * MiB + 1;
        const result = await buildWithInitrdOf(attr, size);
        expect(result.status).toBe(1);
        expect(result.stdout).toContain(`initrd: ${size} bytes (1024 MiB)`);
        expect(result.stderr).toContain("over its 1024 MiB budget (runnerImage.initrdBudgetMiB)");
        expect(existsSync(result.out)).toBe(false);
      });

      test("the budget is the machine's runnerImage.initrdBudgetMiB", async () => {
        const dir = await copyFlake(join(scratch, "budget-512"));
        const netboot = join(dir, "nix", "netboot.nix");
        await writeFile(netboot, (await readFile(netboot, "utf8")).replace(/\n}\s*$/, "\n  runnerImage.initrdBudgetMiB = 512;\n}\n"));
        const moved: Record<string, FlakeChecks> = mustEval(dir, "check");
        for (const t of netboots) expect(moved[t.system]!.initrdSize[`initrd-size-${t.attr}`]!.env.budgetMiB).toBe(512);
      });
    });

    test.each(TARGETS.map((t) => t.attr))("%s keeps only the NIC firmware families, not all redistributable firmware", (attr) => {
      const { firmware } = machines()[attr]!;
      // all-hardware.nix turns it on; the image turns it off again (mkForce, nix/image-size.nix)
      expect(firmware.redistributable).toBe(false);
      expect(firmware.packages).toEqual(["runner-firmware"]);
      expect(firmware.families).toContain("rtl_nic");
      expect(firmware.families).not.toContain("amdgpu");
      expect(firmware.families).not.toContain("iwlwifi");
    });

    describe("checks.x86_64-linux.{boot,security}-* (evaluated here, booted on the Nix runner)", () => {
      // evaluated in the first test, so that an evaluation error fails a named test
      let evaluated: Record<string, string> | undefined;
      const allScripts = (): Record<string, string> => (evaluated ??= mustEval(flakeDir, "bootTests")["x86_64-linux"] ?? {});
      const only = (prefix: string) => Object.fromEntries(Object.entries(allScripts()).filter(([name]) => name.startsWith(prefix)));
      const scripts = () => only("boot-");
      /** The QEMU command lines a test script boots, in order. */
      const startCommands = (script: string) => [...script.matchAll(/create_machine\("([^"]*)"\)/g)].map((m) => m[1]!);

      test("they evaluate with qemu-common.nix's 25.11+ signature, and every target has its tests", () => {
        const expected = TARGETS.filter((t) => t.system === "x86_64-linux").flatMap((t) =>
          t.image === "netboot"
            ? [`boot-${t.attr}-bios`, `boot-${t.attr}-uefi`]
            : [`boot-${t.attr}-bios-cdrom`, `boot-${t.attr}-uefi-usb`],
        );
        expect(Object.keys(scripts()).sort()).toEqual(expected.sort());
        const security = TARGETS.filter((t) => t.system === "x86_64-linux" && t.image === "iso").flatMap((t) => [
          `security-${t.attr}-container-mode`,
          `security-${t.attr}-host-mode`,
        ]);
        expect(Object.keys(only("security-")).sort()).toEqual(security.sort());
      });

      // The test driver starts QEMU with -no-reboot unless start(allow_reboot=True) (nixpkgs
      // nixos/lib/test-driver/src/test_driver/machine/__init__.py @ 019697db, QemuStartCommand.cmd):
      // a guest that reboots ends QEMU, and the next command fails with "Shell disconnected".
      test("a machine that is expected to reboot is started with allow_reboot=True", () => {
        let rebooting = 0;
        for (const [name, script] of Object.entries(allScripts())) {
          // one segment per machine: from its create_machine to the next
          for (const machine of script.split(/(?=machine = create_machine\()/).slice(1)) {
            if (!/reboot: Restarting system|\.reboot\(\)/.test(machine)) continue;
            rebooting++;
            expect(machine, name).toContain("boot(machine, allow_reboot=True)");
            expect(machine, name).not.toMatch(/^boot\(machine\)/m);
          }
        }
        expect(rebooting).toBeGreaterThan(0);
      });

      test("a BIOS machine with a CD boots the CD first, not the config disk", () => {
        const withCd = Object.values(scripts()).flatMap(startCommands).filter((cmd) => / -cdrom /.test(cmd));
        expect(withCd.length).toBeGreaterThan(0);
        expect(withCd.some((cmd) => / -drive file=[^ ]*runner-config-disk\.img/.test(cmd))).toBe(true);
        for (const cmd of withCd) expect(cmd).toContain(" -boot order=d");
      });

      test("a machine with a USB stick boots the stick first", () => {
        const withUsb = Object.values(scripts()).flatMap(startCommands).filter((cmd) => cmd.includes("usb-storage"));
        expect(withUsb.length).toBeGreaterThan(0);
        for (const cmd of withUsb) expect(cmd).toMatch(/-device usb-storage,drive=usbdisk,bootindex=1( |$)/);
      });

      test("netboot runs under BIOS and under UEFI (OVMF with iPXE's EFI ROM)", () => {
        for (const t of TARGETS.filter((t) => t.image === "netboot" && t.system === "x86_64-linux")) {
          const [bios] = startCommands(scripts()[`boot-${t.attr}-bios`]!);
          const [uefi] = startCommands(scripts()[`boot-${t.attr}-uefi`]!);
          for (const cmd of [bios!, uefi!]) {
            expect(cmd).toMatch(/-netdev user,id=net0,tftp=[^ ]+,bootfile=boot\.ipxe /);
            expect(cmd).toContain(" -boot order=n");
          }
          expect(bios).not.toContain("pflash");
          expect(uefi).toMatch(/-device virtio-net-pci,netdev=net0,romfile=\/nix\/store\/[^ ]+-ipxe\/ipxe\.efirom /);
          expect(uefi).toMatch(/if=pflash,format=raw,unit=0,readonly=on,file=[^ ]+OVMF_CODE\.fd/);
          expect(uefi).toMatch(/if=pflash,format=raw,unit=1,readonly=on,file=[^ ]+OVMF_VARS\.fd/);
          expect(scripts()[`boot-${t.attr}-uefi`]).toContain('machine.succeed("test -d /sys/firmware/efi", timeout=COMMAND_SECONDS)');
        }
      });

      test("every machine that registered also has its store verified", () => {
        for (const [name, script] of Object.entries(scripts())) {
          const body = script.slice(script.indexOf("create_machine("));
          const configured = body.split("assert_runner_configured(machine)").length - 1;
          expect(configured, name).toBeGreaterThan(0);
          expect(body.split("assert_store_intact(machine)").length - 1, name).toBe(configured);
        }
      });
    });

    // nix/forgejo-boot-test.nix: a real Forgejo, the broker and a netbooted runner. It runs only
    // on a Nix runner (checks.x86_64-linux.forgejo-boot-*); here every node is evaluated with
    // the stand-ins (tests/flake-eval/eval.nix evalNode), services.forgejo with its real options.
    describe("checks.x86_64-linux.forgejo-boot-* (evaluated here, run on the Nix runner)", () => {
      let evaluated: Record<string, any> | undefined;
      const tests = (): Record<string, any> => (evaluated ??= mustEval(flakeDir, "forgejoTests")["x86_64-linux"] ?? {});
      /** The configuration file nixosModules.boot-broker writes on the boot server node. */
      const brokerConfig = (test: any) => JSON.parse(test.nodes.bootserver.brokerConfigText);
      const netboots = TARGETS.filter((t) => t.image === "netboot" && t.system === "x86_64-linux");
      const each = () => netboots.map((t) => [t.attr, tests()[`forgejo-boot-${t.attr}`]] as const);
      /** The runner's QEMU command line (create_machine in the script). */
      const runnerCommand = (script: string) => {
        const m = /runner = create_machine\(\s*((?:"[^"]*"\s*)+)\)/.exec(script);
        return m ? [...m[1]!.matchAll(/"([^"]*)"/g)].map((s) => s[1]).join("") : "";
      };

      // NixOS options the nodes set that no stand-in declares: their names rest on memory of the
      // NixOS modules (nix/forgejo-boot-test.nix says so), so each is listed here on purpose.
      const FOREIGN = [
        "environment.systemPackages",
        "networking.firewall",
        "nix.settings",
        "services.dnsmasq",
        "systemd.services",
        "systemd.tmpfiles",
        "virtualisation.memorySize",
        // set by nixosModules.boot-broker (nixos/modules/misc/assertions.nix declares it: memory)
        "warnings",
      ];

      test("one per netboot target: a Forgejo node and a boot server node, every option they set declared by a stand-in or listed as foreign", () => {
        expect(Object.keys(tests()).sort()).toEqual(netboots.map((t) => `forgejo-boot-${t.attr}`).sort());
        for (const [attr, test] of each()) {
          expect(Object.keys(test.nodes).sort(), attr).toEqual(["bootserver", "forgejo"]);
          for (const [name, node] of Object.entries<any>(test.nodes)) {
            for (const path of node.foreign) expect(FOREIGN, `${attr} ${name} sets ${path}`).toContain(path);
          }
          expect(test.nodes.forgejo.declared).toContain("services.forgejo");
          expect(test.globalTimeout).toBeLessThan(60 * 60);
        }
      });

      test("Forgejo serves Actions at the URL the broker and the runner use, on a port its firewall opens", () => {
        for (const [, test] of each()) {
          const { forgejo } = test.nodes.forgejo;
          expect(forgejo.settings.actions.ENABLED).toBe(true);
          expect(forgejo.settings.service.DISABLE_REGISTRATION).toBe(true);
          const url = new URL(forgejo.settings.server.ROOT_URL);
          expect(url.hostname).toBe("forgejo"); // the node's name, in every node's /etc/hosts
          expect(Number(url.port)).toBe(forgejo.settings.server.HTTP_PORT);
          expect(test.nodes.forgejo.tcpPorts).toContain(forgejo.settings.server.HTTP_PORT);
          expect(brokerConfig(test).forgejo.url + "/").toBe(forgejo.settings.server.ROOT_URL);
          expect(brokerConfig(test).forgejo.runnerUrl + "/").toBe(forgejo.settings.server.ROOT_URL);
        }
      });

      test("the broker is nixosModules.boot-broker, and the file it writes is one the broker's own parser accepts, naming this runner: its MAC, its DHCP address, host mode, the workflow's label", async () => {
        for (const [attr, test] of each()) {
          expect(test.nodes.bootserver.declared, attr).toContain("services.runner-boot-broker");
          // The credentials directory as systemd fills it from LoadCredential= (any valid files).
          const creds = await makeCredentialsDir(await mkdtemp(join(scratch, "broker-creds-")));
          const config = checkConfig(brokerConfig(test), "boot-broker.json", { CREDENTIALS_DIRECTORY: creds });
          expect(config.machines).toHaveLength(1);
          const [machine] = config.machines;
          const command = runnerCommand(test.testScript);
          expect(command, attr).toContain(`mac=${machine!.mac} `);
          expect(test.nodes.bootserver.dnsmasq["dhcp-host"]).toEqual([`${machine!.mac},${machine!.address},runner`]);
          expect(machine!.mode).toBe("host");
          // the workflow's jobs run on the label the broker registers the machine with
          const runsOn = [...test.workflow.matchAll(/runs-on: (\S+)/g)].map((m) => m[1]);
          expect(runsOn.length).toBe(2);
          for (const label of runsOn) expect(machine!.labels).toContain(label);
          expect(test.workflow).toMatch(/second:\n\s+needs: first/);
          // where the machine asks: the broker's port, its MAC spelled with hyphens
          expect(test.runnerEnvUrl).toBe(`https://bootserver:${config.listen.port}/v1/machines/${machine!.mac.replaceAll(":", "-")}/runner.env`);
          expect(test.nodes.bootserver.tcpPorts).toContain(config.listen.port);
          expect(test.nodes.bootserver.execStart["runner-boot-broker"]).toMatch(/\/bin\/bun --no-install \/nix\/store\/\S+-runner-images-scripts\/scripts\/boot-broker\.ts --config \/nix\/store\/\S+-boot-broker\.json$/);
        }
      });

      test("the broker starts only when the test has written the token and key it loads as credentials", () => {
        for (const [attr, test] of each()) {
          const loads = test.nodes.bootserver.loadCredential["runner-boot-broker"] as string[];
          expect(loads, attr).toEqual(["forgejo-token:/run/broker/forgejo-token", `tls-cert:${test.pki.path}/bootserver.crt`, "tls-key:/run/broker/bootserver.key"]);
          expect(test.nodes.bootserver.wantedBy["runner-boot-broker"]).toEqual([]);
          const script: string = test.testScript;
          const started = script.indexOf("systemctl start runner-boot-broker.service");
          expect(started).toBeGreaterThan(0);
          for (const file of ["/run/broker/forgejo-token", "/run/broker/bootserver.key"]) {
            const written = script.indexOf(` ${file}`);
            expect(written, file).toBeGreaterThan(0);
            expect(written, file).toBeLessThan(started);
          }
        }
      });

      test("the runner is this flake's instrumented netboot image, PXE-booted on the test VLAN, told the broker's URL, trusting the CA that signed the broker's certificate", () => {
        for (const [attr, test] of each()) {
          expect(test.runnerModules).toEqual(["installer/netboot/netboot.nix", "profiles/minimal.nix", "testing/test-instrumentation.nix"]);
          const command = runnerCommand(test.testScript);
          expect(command).toContain(`-m ${test.memoryMiB} `);
          expect(command).toMatch(/-device virtio-net-pci,netdev=vlan1,mac=\S+ -netdev vde,id=vlan1,sock=\$QEMU_VDE_SOCKET_1 /);
          expect(command).toMatch(/-boot order=n$/);
          expect(command).not.toContain("-kernel"); // a real network boot, not QEMU's direct kernel boot
          expect(test.nodes.bootserver.dnsmasq["dhcp-boot"]).toBe("http://192.168.1.1/boot.ipxe");
          expect(test.nodes.bootserver.execStart["netboot-http"]).toMatch(new RegExp(`--bind 192\\.168\\.1\\.1 --directory ${test.bootFilesPath}$`));
          expect(test.bootFiles).toContain(test.runnerArtifact);
          expect(test.bootIpxe).toBe(`#!ipxe\nset cmdline ${test.runnerCmdlineParam}=${test.runnerEnvUrl}\nchain netboot.ipxe\n`);
          expect(test.runnerCertificates).toEqual([`${test.pki.path}/ca.crt`]);
          expect(test.nodes.bootserver.loadCredential["runner-boot-broker"], attr).toContain(`tls-cert:${test.pki.path}/bootserver.crt`);
        }
      });

      test("the test certificate authority signs a server certificate for the name the runner asks (the PKI script, run with this machine's openssl)", async () => {
        const [, test] = each()[0]!;
        const out = await mkdtemp(join(scratch, "pki-"));
        const work = await mkdtemp(join(scratch, "pki-work-"));
        const built = spawnSync("bash", ["-euo", "pipefail", "-c", test.pki.script], { cwd: work, encoding: "utf8", env: { PATH: process.env.PATH, out } });
        expect(built.stderr).toBe("");
        expect(built.status).toBe(0);
        const verify = spawnSync("openssl", ["verify", "-CAfile", join(out, "ca.crt"), "-verify_hostname", new URL(test.runnerEnvUrl).hostname, join(out, "bootserver.crt")], { encoding: "utf8" });
        expect(verify.stdout.trim()).toBe(`${join(out, "bootserver.crt")}: OK`);
        const other = spawnSync("openssl", ["verify", "-CAfile", join(out, "ca.crt"), "-verify_hostname", "forgejo", join(out, "bootserver.crt")], { encoding: "utf8" });
        expect(other.status).not.toBe(0);
      });

      test("the scripts' npm packages are fetched by the integrity hashes of bun.lock", async () => {
        const lock = await readFile(join(ROOT, "bun.lock"), "utf8");
        for (const [, test] of each()) {
          const names = Object.keys(test.npmPackages).sort();
          const pkg = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8"));
          expect(names).toEqual(Object.keys(pkg.dependencies).sort());
          for (const [name, { url, hash }] of Object.entries<any>(test.npmPackages)) {
            const m = new RegExp(`"${name}": \\["${name}@([^"]+)", "", (.*), "(sha512-[^"]+)"\\]`).exec(lock);
            expect(m, name).not.toBeNull();
            expect(url).toBe(`https://registry.npmjs.org/${name}/-/${name}-${m![1]}.tgz`);
            expect(hash).toBe(m![3]);
            // no dependencies of its own, so these two are the whole node_modules
            expect(m![2]).not.toContain("dependencies");
          }
        }
      });

      /** Evaluates a copy of the flake whose nix/forgejo-boot-test.nix has `from` replaced by `to`. */
      async function evalWithForgejoTest(name: string, from: string, to: string) {
        const dir = await copyFlake(join(scratch, name));
        const file = join(dir, "nix", "forgejo-boot-test.nix");
        const text = await readFile(file, "utf8");
        expect(text).toContain(from);
        await writeFile(file, text.replace(from, to));
        return evalFlake(dir, "forgejoTests");
      }

      test("a services.forgejo option the module does not have, or a value of the wrong type, fails the evaluation", async () => {
        const typo = await evalWithForgejoTest("forgejo-typo", 'database.type = "sqlite3";', 'databse.type = "sqlite3";');
        expect(typo.ok).toBe(false);
        expect(typo.stderr).toContain("services.forgejo.databse' does not exist");
        const badType = await evalWithForgejoTest("forgejo-type", "HTTP_PORT = 3000;", 'HTTP_PORT = "3000";');
        expect(badType.ok).toBe(false);
        expect(badType.stderr).toContain("HTTP_PORT");
      }, 120_000);
    });

    // The credential's path from runner-secret.sh to the runner that reads it: a mismatch
    // anywhere leaves the runner skipped (its condition never met), or reading the other
    // mode's credential, or the file owned by a user the daemon is not.
    test.each(TARGETS.map((t) => t.attr))("%s: each mode's credential is written for, waited for and read by its own runner", async (attr) => {
      const { secretEnv, runners: units, host } = machines()[attr]!.wiring;
      const tokenUrl = host.ExecStart.split(" ")[host.ExecStart.split(" ").indexOf("--token-url") + 1];
      const runners = { ...units, "forgejo-runner-host": { ...units["forgejo-runner-host"], tokenUrl } } as Record<string, (typeof units)["forgejo-runner"] & { tokenUrl?: string }>;
      // What the script writes, per mode: `<mode>) owner=$<USER VAR> file=$RUNNER_DIR/<name>`.
      const script = await readFile(join(ROOT, "nix", "runner-secret.sh"), "utf8");
      const writes = Object.fromEntries(
        [...script.matchAll(/^\s*(container|host)\) owner=\$(\w+) file=\$RUNNER_DIR\/([\w.]+)/gm)].map((m) => [m[1], { ownerVar: m[2]!, name: m[3]! }]),
      );
      const unitOf = { container: "forgejo-runner", host: "forgejo-runner-host" } as const;
      expect(Object.keys(writes).sort()).toEqual(["container", "host"]);
      for (const [mode, unit] of Object.entries(unitOf)) {
        const { ownerVar, name } = writes[mode]!;
        const runner = runners[unit]!;
        const file = `${secretEnv.RUNNER_DIR}/${name}`;
        expect({ mode, owner: secretEnv[ownerVar] }).toEqual({ mode, owner: runner.user });
        expect({ mode, condition: runner.condition }).toEqual({ mode, condition: file });
        // container: the daemon reads the `.runner` file; host: one-job reads the token file
        // (its command line: the test "host mode runs one-job --wait with the connection ...")
        if (mode === "container") expect({ mode, runnerFile: runner.config.runner.file }).toEqual({ mode, runnerFile: file });
        else expect({ mode, tokenUrl: runner.tokenUrl }).toEqual({ mode, tokenUrl: `file:${file}` });
      }
    });

    test.each(TARGETS.map((t) => t.attr))("%s: job containers may reach the runner's cache proxy on the host, and no other port", (attr) => {
      const { runners, containerPorts } = machines()[attr]!.wiring;
      const cache = runners["forgejo-runner"].config.cache;
      expect(cache.enabled).toBe(true);
      expect(Object.keys(containerPorts).length).toBeGreaterThan(0);
      for (const ports of Object.values(containerPorts)) expect(ports).toEqual([cache.proxy_port]);
    });

    test("every runnerImage option the project declares evaluates and type-checks", () => {
      for (const machine of Object.values(machines())) {
        expect(machine.runnerImage["runnerImage.release.revision"]).toBe(SELF.rev);
        expect(machine.runnerImage["runnerImage.sshAuthorizedKeys"]).toEqual(KEYS);
        expect(Object.keys(machine.runnerImage).length).toBeGreaterThan(5);
      }
    });

    /** Evaluates a copy of the flake whose nix/netboot.nix also sets `definition`. */
    async function evalWithNetbootDefinition(name: string, definition: string) {
      const broken = await copyFlake(join(scratch, name));
      const netboot = join(broken, "nix", "netboot.nix");
      const text = await readFile(netboot, "utf8");
      await writeFile(netboot, text.replace(/\n}\s*$/, `\n  ${definition}\n}\n`));
      return evalFlake(broken, "machines");
    }

    test("the stand-ins for NixOS do not hide a mistake in the project's own options", async () => {
      // an option the project never declared, set the way a typo would set it
      const result = await evalWithNetbootDefinition("typo", "runnerImage.sshAuthorisedKeys = [ ];");
      expect(result.ok).toBe(false);
      expect(result.stderr).toContain("runnerImage.sshAuthorisedKeys' does not exist");
    });

    test("a runner label of the other mode fails the evaluation: container labels run only in containers, host labels only on the host", async () => {
      const hostInContainer = await evalWithNetbootDefinition("host-in-container", 'runnerImage.containerLabels = [ "nix:host" ];');
      expect(hostInContainer.ok).toBe(false);
      expect(hostInContainer.stderr).toContain("runnerImage.containerLabels");
      const dockerOnHost = await evalWithNetbootDefinition("docker-on-host", 'runnerImage.hostLabels = [ "ubuntu:docker://node:lts" ];');
      expect(dockerOnHost.ok).toBe(false);
      expect(dockerOnHost.stderr).toContain("runnerImage.hostLabels");
      const fine = await evalWithNetbootDefinition("labels-fine", 'runnerImage.hostLabels = [ "nix:host" "big-nix:host" ];');
      expect(fine.ok).toBe(true);
    });

    test("a value of the wrong type for a project option fails the evaluation", async () => {
      const result = await evalWithNetbootDefinition("badtype", 'runnerImage.secretSource.label = "runner-config";');
      expect(result.ok).toBe(false);
      expect(result.stderr).toContain("runnerImage.secretSource.label");
    });
  },
);

describe("the repository's own operator keys", () => {
  test.skipIf(!HAVE_LIB)("every machine carries exactly the keys of nix/operator-keys.pub", async () => {
    const lines = (await readFile(join(ROOT, "nix", "operator-keys.pub"), "utf8")).split("\n");
    const keys = lines.filter((line) => line !== "" && !line.startsWith("#"));
    const machines: Record<string, MachineFacts> = mustEval(ROOT, "machines");
    for (const machine of Object.values(machines)) expect(machine.sshAuthorizedKeys).toEqual(keys);
  });
});

describe.skipIf(!HAVE_LIB)("the trust-enforcing iPXE (nix/ipxe.nix), evaluated against a stand-in of nixpkgs' ipxe", () => {
  const ROOT_PEM = "-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n";
  const BOOT_URL = "https://mirror.example.org/runner-images/stable/netboot-x86_64.ipxe";
  async function configured(name: string, files: Record<string, string>): Promise<string> {
    const dir = await copyFlake(join(scratch, name));
    for (const [file, text] of Object.entries(files)) await writeFile(join(dir, "nix", file), text);
    return dir;
  }

  test("ipxe-x86_64 trusts the repository's root (TRUST= and CERT=), enables image trust and HTTPS, builds snponly.efi, and embeds the boot script", async () => {
    const dir = await configured("ipxe-ok", { "boot-root.pem": ROOT_PEM, "boot-url": `${BOOT_URL}\n`, "boot-signer": "boot-signer\n", "boot-cmdline": "runner.config_url=https://config.example.org/r/${net0/mac:hexhyp}.env\n" });
    const ipxe = mustEval(dir, "ipxe")["x86_64-linux"]["ipxe-x86_64"];
    const trust = ipxe.makeFlags.filter((f: string) => /^(TRUST|CERT)=/.test(f));
    expect(trust).toHaveLength(2);
    for (const flag of trust) expect(flag).toMatch(/^(TRUST|CERT)=\/nix\/store\/[a-z0-9]{32}-boot-root\.pem$/);
    expect(ipxe.makeFlags).toContain("ECHO_E_BIN_ECHO=echo"); // nixpkgs' own flags kept
    expect(ipxe.additionalOptions).toEqual(expect.arrayContaining(["IMAGE_TRUST_CMD", "DOWNLOAD_PROTO_HTTPS"]));
    expect(Object.keys(ipxe.additionalTargets)).toContain("bin-x86_64-efi/snponly.efi");
    const lines: string[] = ipxe.embedScript.split("\n");
    const at = (prefix: string) => lines.findIndex((l) => l.startsWith(prefix));
    // network, then permanent trust, then fetch, verify and only then chain
    expect(at("dhcp")).toBeGreaterThan(0);
    expect(at("imgtrust --permanent")).toBeGreaterThan(at("dhcp"));
    expect(lines[at("imgfetch")]).toBe(`imgfetch --name boot.ipxe ${BOOT_URL} || goto refused`);
    expect(lines[at("imgverify")]).toBe(`imgverify --signer boot-signer boot.ipxe ${BOOT_URL}.sig || goto refused`);
    expect(at("imgverify")).toBeGreaterThan(at("imgtrust --permanent"));
    expect(at("chain")).toBeGreaterThan(at("imgverify"));
    expect(lines).toContain("set runner_images_verify 1");
    expect(lines).toContain("set cmdline runner.config_url=https://config.example.org/r/${net0/mac:hexhyp}.env");
    // a refusal powers off instead of returning to the firmware's next boot device
    expect(lines.slice(at(":refused"))).toContain("poweroff");
  });

  test("without a boot root, evaluation fails saying which file to commit", async () => {
    const dir = await configured("ipxe-no-root", { "boot-url": `${BOOT_URL}\n` });
    const result = evalFlake(dir, "ipxe");
    expect(result.ok).toBe(false);
    expect(result.stderr).toContain("ipxe-x86_64: no boot root configured: commit the fleet's root certificate (PEM) as nix/boot-root.pem");
  });

  test("until the root and URL are committed, ipxe-x86_64 is in legacyPackages only: nix flake check never evaluates it, nix build .#ipxe-x86_64 does", async () => {
    const without = mustEval(await configured("ipxe-names-none", {}), "outputNames");
    expect(without.packages["x86_64-linux"]).not.toContain("ipxe-x86_64");
    expect(without.checks["x86_64-linux"]).not.toContain("package-ipxe-x86_64");
    expect(without.legacyPackages["x86_64-linux"]).toContain("ipxe-x86_64");
    const withRoot = mustEval(await configured("ipxe-names-set", { "boot-root.pem": ROOT_PEM, "boot-url": `${BOOT_URL}\n` }), "outputNames");
    expect(withRoot.packages["x86_64-linux"]).toContain("ipxe-x86_64");
    expect(withRoot.checks["x86_64-linux"]).toContain("package-ipxe-x86_64");
    expect(withRoot.legacyPackages["x86_64-linux"] ?? []).not.toContain("ipxe-x86_64");
  });

  test("without a boot URL, or with one carrying iPXE variables, evaluation fails", async () => {
    const none = evalFlake(await configured("ipxe-no-url", { "boot-root.pem": ROOT_PEM }), "ipxe");
    expect(none.ok).toBe(false);
    expect(none.stderr).toContain("no boot URL configured: write the boot script's URL as the one line of nix/boot-url");
    const bad = evalFlake(await configured("ipxe-bad-url", { "boot-root.pem": ROOT_PEM, "boot-url": "https://x/${evil}\n" }), "ipxe");
    expect(bad.ok).toBe(false);
    expect(bad.stderr).toContain("is not an http(s) URL");
  });
});

describe.skipIf(!HAVE_LIB)("checks.x86_64-linux.ipxe-trust-* (nix/ipxe-boot-tests.nix: evaluated here, booted on the Nix runner)", () => {
  test("one boots the flake's trust-enforcing iPXE against a signed release, the other against a tampered initrd and expects a refusal and power-off", () => {
    const tests = mustEval(flakeDir, "ipxeBootTests")["x86_64-linux"] as Record<string, { testScript: string }>;
    expect(Object.keys(tests).sort()).toEqual(["ipxe-trust-signed-boots", "ipxe-trust-tampered-initrd-refused"]);
    for (const { testScript } of Object.values(tests)) {
      // the flake's iPXE build (nix/ipxe.nix through the ipxe stand-in), not Debian's or nixpkgs' stock ROM
      expect(testScript).toMatch(/create_machine\("[^"]* -kernel \/nix\/store\/[a-z0-9]{32}-ipxe\/ipxe\.lkrn"\)/);
      expect(testScript).toContain('"--bind", "127.0.0.1"');
    }
    const good = tests["ipxe-trust-signed-boots"]!.testScript;
    expect(good).toContain("-ipxe-signed-release");
    expect(good).toContain('machine.wait_for_unit("multi-user.target")');
    const bad = tests["ipxe-trust-tampered-initrd-refused"]!.testScript;
    expect(bad).toContain("-ipxe-tampered-release");
    expect(bad).toContain("a boot file failed its signature check; not booting");
    expect(bad).toContain("machine.wait_for_shutdown()");
    expect(bad).not.toContain("multi-user.target");
  });
});
