/**
 * How target names reach Nix (issue 18, item 2): as data, never as code. A name is looked up
 * as an attribute path of the installable; the only Nix code passed (--apply) is a constant.
 * So a name that is Nix syntax is an attribute that does not exist, or, here, one that does:
 * the fixture flake below really has an attribute whose name is Nix syntax. And the attribute
 * named is the one evaluated, never a decoy under the prefixes nix eval tries first.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { $ } from "zx/core";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkNames, evalTarget, evalTargets } from "../scripts/lib/build/nix.ts";

const OFFLINE = ["--option", "substituters", ""];
/** Spliced into Nix code, this name aborts evaluation with {"spliced":1}; as data it is a name. */
const NIX_SYNTAX = "${let spliced = 1; in builtins.abort (builtins.toJSON { inherit spliced; })}";
let flake: string;

beforeAll(async () => {
  flake = await mkdtemp(join(tmpdir(), "runner-images-nix-eval-"));
  const nixName = NIX_SYNTAX.replaceAll("$", "\\$");
  await writeFile(
    join(flake, "flake.nix"),
    `{
  outputs = { self }: let
    drv = name: derivation { inherit name; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; };
  in {
    packages.x86_64-linux = {
      first = drv "first"; second = drv "second"; "${nixName}" = drv "named-with-nix-syntax";
      # decoys: what \`nix eval flake#packages.x86_64-linux.second\` finds first by its default prefix
      packages.x86_64-linux.second = drv "decoy-second";
    };
    checks.x86_64-linux.forgejo-boot-first = drv "real-check";
    # decoys under the other default prefix
    legacyPackages.x86_64-linux = {
      packages.x86_64-linux.first = drv "decoy-first";
      checks.x86_64-linux.forgejo-boot-decoy = drv "decoy-check";
    };
  };
}
`,
  );
  await $({ cwd: flake, quiet: true })`git init -q && git add flake.nix && git -c user.name=test -c user.email=test@invalid commit -qm flake`;
});

afterAll(async () => {
  await rm(flake, { recursive: true, force: true });
});

describe("target names reach Nix as data", () => {
  test("each target's derivation and out path, in the order asked", async () => {
    const paths = await evalTargets(flake, [
      { system: "x86_64-linux", attr: "second" },
      { system: "x86_64-linux", attr: "first" },
    ], OFFLINE);
    expect(paths.map((p) => p.drv)).toEqual([expect.stringMatching(/^\/nix\/store\/[a-z0-9]{32}-second\.drv$/), expect.stringMatching(/-first\.drv$/)]);
    expect(paths.map((p) => p.out)).toEqual([expect.stringMatching(/^\/nix\/store\/[a-z0-9]{32}-second$/), expect.stringMatching(/-first$/)]);
  }, 60_000);

  test("the attribute named is the one evaluated: a decoy under nix's default prefixes (packages.<system>., legacyPackages.<system>.) is never picked", async () => {
    const paths = await evalTargets(flake, [
      { system: "x86_64-linux", attr: "first" },
      { system: "x86_64-linux", attr: "second" },
    ], OFFLINE);
    expect(paths.map((p) => p.drv)).toEqual([expect.stringMatching(/-first\.drv$/), expect.stringMatching(/-second\.drv$/)]);
    expect(await checkNames(flake, "x86_64-linux", OFFLINE)).toEqual(["forgejo-boot-first"]);
  }, 60_000);

  test("a target the flake lacks is named as such", async () => {
    await expect(evalTargets(flake, [{ system: "x86_64-linux", attr: "third" }], OFFLINE)).rejects.toThrow(`${flake} has no packages.x86_64-linux.third`);
  }, 60_000);

  test("a name that is Nix syntax is looked up as a name, not evaluated", async () => {
    // Spliced into the --apply code (the old way), this aborted with {"spliced":1}.
    const found = await evalTarget(flake, { system: "x86_64-linux", attr: NIX_SYNTAX }, OFFLINE);
    expect(found.drv).toMatch(/-named-with-nix-syntax\.drv$/);
  }, 60_000);

  test("evalTargets refuses such a name before nix runs: only plain names are targets", async () => {
    await expect(evalTargets(flake, [{ system: "x86_64-linux", attr: NIX_SYNTAX }], OFFLINE)).rejects.toThrow(
      /refused to evaluate .*: a target or system name holds more than letters, digits, - and _/,
    );
  });
});
