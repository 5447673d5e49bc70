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
import { cp, mkdir, mkdtemp, readFile, rm, truncate, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { TARGETS, type ImageKind } from "../scripts/lib/build/targets.ts";
import { copyFlake, evalFlake, HAVE_LIB, KEYS, mustEval, NIXPKGS_REV, ROOT, SELF } from "./flake-eval/harness.ts";


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
    containerUser: string;
    containerUserGroups: string[];
    trustedInterfaces: string[];
    ptraceScope: number | null;
  };
  wiring: {
    secretEnv: Record<string, string>;
    runners: Record<"forgejo-runner" | "forgejo-runner-host", { user: string; condition: string; config: any }>;
    containerPorts: Record<string, number[]>;
  };
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

    // docs/RUNNER_IMAGES.md, "Threat model". The security-* boot tests check the same on a booted
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

    // systemd runs ExecStopPost with EXIT_CODE and EXIT_STATUS set (systemd.exec(5)); "+" runs it
    // as root. Its commands (stub store paths here) are replaced by recorders.
    describe("after the host runner ends (its ExecStopPost, run under bash)", () => {
      async function afterJob(attr: string, env: Record<string, string>) {
        const { hostAfterJob } = machines()[attr]!.jobAccess;
        expect(hostAfterJob.startsWith("+")).toBe(true);
        const dir = await mkdtemp(join(scratch, "after-job-"));
        const recorded = join(dir, "commands");
        await writeFile(recorded, "");
        const commands = new Set<string>();
        const script = hostAfterJob.slice(1).replace(/\/nix\/store\/[0-9a-z]{32}-[^/\s]+\/bin\/([\w-]+)/g, (_, command: string) => {
          commands.add(command);
          return join(dir, command);
        });
        for (const command of commands) {
          await writeFile(join(dir, command), `#!/bin/bash\nprintf '%s\\n' "${command} $*" >>${recorded}\n`, { mode: 0o755 });
        }
        const result = spawnSync("bash", ["-euo", "pipefail", "-c", script], { encoding: "utf8", env: { PATH: process.env.PATH, ...env } });
        return { ...result, commands: (await readFile(recorded, "utf8")).split("\n").filter(Boolean) };
      }
      const attrs = TARGETS.map((t) => t.attr);

      test.each(attrs)("%s: exit status 1 (one-job took no task): no reboot, the credential stays", async (attr) => {
        const result = await afterJob(attr, { EXIT_CODE: "exited", EXIT_STATUS: "1" });
        expect(result.status).toBe(0);
        expect(result.commands).toEqual([]);
      });

      const afterATask: [string, Record<string, string>][] = [
        ["exit 0 after a task", { EXIT_CODE: "exited", EXIT_STATUS: "0" }],
        ["exit 2 (a Go panic)", { EXIT_CODE: "exited", EXIT_STATUS: "2" }],
        ["killed by a signal", { EXIT_CODE: "killed", EXIT_STATUS: "KILL" }],
        ["a core dump", { EXIT_CODE: "dumped", EXIT_STATUS: "ABRT" }],
        ["no exit information", {}],
      ];
      test.each(attrs.flatMap((attr) => afterATask.map(([what, env]) => [attr, what, env] as const)))(
        "%s: %s: the credential goes, then the machine reboots",
        async (attr, _what, env) => {
          const result = await afterJob(attr, env);
          expect(result.status).toBe(0);
          expect(result.stdout).toContain("rebooting for a clean machine");
          expect(result.commands).toEqual([`rm -f ${machines()[attr]!.jobAccess.hostCredential}`, "systemctl --no-block reboot"]);
        },
      );
    });

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
        const result = spawnSync("bash", ["-euo", "pipefail", "-c", check.script], {
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

    // The credential's path from runner-secret.sh to the runner that reads it: a mismatch
    // anywhere leaves the runner skipped (its condition never met), or reading the other
    // mode's credential, or the file owned by a user the daemon is not.
    test.each(TARGETS.map((t) => t.attr))("%s: each mode's credential is written for, waited for and read by its own runner", async (attr) => {
      const { secretEnv, runners } = machines()[attr]!.wiring;
      // What the script writes, per mode: `<mode>) owner=$<USER VAR> file=$RUNNER_DIR/<name>`.
      const script = await readFile(join(ROOT, "nix", "runner-secret.sh"), "utf8");
      const writes = Object.fromEntries(
        [...script.matchAll(/^\s*(container|host)\) owner=\$(\w+) file=\$RUNNER_DIR\/([\w.]+)/gm)].map((m) => [m[1], { ownerVar: m[2]!, name: m[3]! }]),
      );
      const unitOf = { container: "forgejo-runner", host: "forgejo-runner-host" } as const;
      expect(Object.keys(writes).sort()).toEqual(["container", "host"]);
      for (const [mode, unit] of Object.entries(unitOf)) {
        const { ownerVar, name } = writes[mode]!;
        const runner = runners[unit];
        const file = `${secretEnv.RUNNER_DIR}/${name}`;
        expect({ mode, owner: secretEnv[ownerVar] }).toEqual({ mode, owner: runner.user });
        expect({ mode, condition: runner.condition }).toEqual({ mode, condition: file });
        expect({ mode, runnerFile: runner.config.runner.file }).toEqual({ mode, runnerFile: file });
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
