/**
 * The Nix half, checked without nixpkgs (this runs anywhere `nix-instantiate` does):
 * every .nix file parses, the target names Nix derives from targets.json agree with what
 * scripts/lib/build/targets.ts exports, and the flake is pinned and wired the way the scripts
 * assume. Building and booting the images is `nix flake check`, which needs nixpkgs and KVM.
 */
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { TARGETS } from "../scripts/lib/build/targets.ts";

const ROOT = resolve(import.meta.dir, "..");
const NIXPKGS_REV = "b18a4b905f8d028dc4476412e6d6891728695379";

function run(cmd: string, args: string[]) {
  const result = spawnSync(cmd, args, { cwd: ROOT, encoding: "utf8" });
  if (result.error) throw new Error(`${cmd} could not run (${result.error.message}); use \`nix develop\``);
  return result;
}

/** Every .nix file of the repository, found rather than listed. */
function nixFiles(): string[] {
  return [...new Bun.Glob("**/*.nix").scanSync({ cwd: ROOT, dot: false })]
    .filter((path) => !path.split("/").includes("node_modules"))
    .sort();
}

interface NixTarget {
  attr: string;
  system: string;
  image: string;
  sources: string[];
  baseName: string | null;
}

/** nix/targets.nix, evaluated with plain nix-instantiate: what flake.nix builds its outputs from. */
function evalNixTargets(): { bySystem: Record<string, Record<string, NixTarget>>; systems: string[] } {
  const result = run("nix-instantiate", ["--eval", "--strict", "--json", "nix/targets.nix"]);
  expect(result.stderr).toBe("");
  expect(result.status).toBe(0);
  return JSON.parse(result.stdout);
}

describe("Nix sources", () => {
  const files = nixFiles();

  test("the repository has the flake and its modules", () => {
    for (const expected of ["flake.nix", "nix/runner.nix", "nix/netboot.nix", "nix/iso.nix", "nix/targets.nix"]) {
      expect(files).toContain(expected);
    }
  });

  test.each(files)("%s parses", (file) => {
    const result = run("nix-instantiate", ["--parse", file]);
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
  });
});

describe("targets: Nix and TypeScript agree", () => {
  const nix = evalNixTargets();

  test("the same package attributes, per system", () => {
    const fromTs: Record<string, string[]> = {};
    for (const t of TARGETS) (fromTs[t.system] ??= []).push(t.attr);
    const fromNix = Object.fromEntries(
      Object.entries(nix.bySystem).map(([system, targets]) => [system, Object.keys(targets)]),
    );
    for (const attrs of Object.values(fromTs)) attrs.sort();
    for (const attrs of Object.values(fromNix)) attrs.sort();
    expect(Object.keys(fromTs).length).toBeGreaterThan(0);
    expect(fromNix).toEqual(fromTs);
    expect([...nix.systems].sort()).toEqual(Object.keys(fromTs).sort());
  });

  test("each target has the same image kind and file sources", () => {
    for (const t of TARGETS) {
      const n = nix.bySystem[t.system]?.[t.attr];
      expect(n).toBeDefined();
      expect(n!.image).toBe(t.image);
      expect([...n!.sources].sort()).toEqual(t.files.map((f) => f.source).sort());
    }
  });

  test("the ISO file Nix writes is the file the release publishes", () => {
    const isos = TARGETS.filter((t) => t.image === "iso");
    expect(isos.length).toBeGreaterThan(0);
    for (const t of isos) {
      const published = t.files.filter((f) => f.name.endsWith(".iso"));
      expect(published).toHaveLength(1);
      const n = nix.bySystem[t.system]![t.attr]!;
      // iso-image.nix writes $out/iso/<image.baseName>.iso; nix/iso.nix forces image.baseName to this.
      expect(`${n.baseName}.iso`).toBe(published[0]!.name);
      expect(published[0]!.source).toMatch(/^iso\//);
    }
    for (const t of TARGETS.filter((t) => t.image !== "iso")) {
      expect(nix.bySystem[t.system]![t.attr]!.baseName).toBeNull();
    }
  });
});

describe("flake", () => {
  const flake = readFileSync(join(ROOT, "flake.nix"), "utf8");
  const lock = JSON.parse(readFileSync(join(ROOT, "flake.lock"), "utf8"));

  test("nixpkgs follows nixos-26.05 and flake.lock pins the verified revision", () => {
    expect(flake).toContain('inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";');
    expect(lock.version).toBe(7);
    const rootInputs = lock.nodes[lock.root].inputs;
    const node = lock.nodes[rootInputs.nixpkgs];
    expect(node.original).toEqual({ type: "github", owner: "NixOS", repo: "nixpkgs", ref: "nixos-26.05" });
    expect(node.locked.type).toBe("github");
    expect(node.locked.rev).toBe(NIXPKGS_REV);
    expect(node.locked.narHash).toMatch(/^sha256-[A-Za-z0-9+/]{43}=$/);
    expect(Number.isInteger(node.locked.lastModified)).toBe(true);
  });

  test("outputs are generated from nix/targets.nix", () => {
    expect(flake).toMatch(/inherit \(import \.\/nix\/targets\.nix\) targets bySystem systems;/);
    expect(flake).toMatch(/packages = forSystems/);
    expect(flake).toMatch(/bySystem\.\$\{system\}/);
    expect(flake).toMatch(/nixosConfigurations = lib\.mapAttrs \(_: target: mkMachine target \[ \]\) targets;/);
  });

  test("flake.nix and nix/ spell no target or release name a second time", () => {
    const names = new Set<string>();
    for (const t of TARGETS) {
      names.add(t.attr);
      for (const f of t.files) {
        names.add(f.name);
        if (f.name.endsWith(".iso")) names.add(f.name.slice(0, -".iso".length));
      }
    }
    expect(names.size).toBeGreaterThan(0);
    const offenders: string[] = [];
    // tests/fixtures may spell names on purpose; the image Nix is flake.nix and nix/.
    for (const file of nixFiles().filter((f) => f === "flake.nix" || f.startsWith("nix/"))) {
      const text = readFileSync(join(ROOT, file), "utf8");
      for (const name of names) if (text.includes(name)) offenders.push(`${file}: ${name}`);
    }
    expect(offenders).toEqual([]);
  });
});
