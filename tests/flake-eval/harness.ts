/**
 * How the flake-eval tests evaluate flake.nix: a copy of what it reads, with test operator keys,
 * evaluated by tests/flake-eval/eval.nix with nixpkgs' real lib and the stand-ins there.
 */
import { spawnSync } from "node:child_process";
import { cp, mkdir, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";

export const ROOT = resolve(import.meta.dir, "..", "..");
export const NIXPKGS_LIB = resolve(ROOT, "..", "shared", "nixpkgs-lib", "lib");
export const HAVE_LIB = existsSync(join(NIXPKGS_LIB, "default.nix"));

/** The fake flake metadata: a clean checkout at a commit, and a nixpkgs revision. */
export const SELF = {
  rev: "5b1c0ffee5b1c0ffee5b1c0ffee5b1c0ffee5b1c",
  shortRev: "5b1c0ff",
  lastModifiedDate: "20261130085500",
};
export const NIXPKGS_REV = "b18a4b905f8d028dc4476412e6d6891728695379";

/** Operator keys for the copy of the flake under test: comments and blank lines are not keys. */
export const KEYS = [
  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFlakeEvalTestKeyOneXXXXXXXXXXXXXXXXXXXXXX alice@ops",
  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFlakeEvalTestKeyTwoXXXXXXXXXXXXXXXXXXXXXX bob@ops",
];

export interface EvalResult {
  ok: boolean;
  value: any;
  stderr: string;
}

export type Part = "machines" | "packages" | "outputNames" | "ipxe" | "ipxeBootTests" | "check" | "bootTests" | "forgejoTests";

export function evalFlake(flakeDir: string, part: Part): EvalResult {
  const result = spawnSync(
    "nix-instantiate",
    [
      "--eval", "--strict", "--json", join(ROOT, "tests", "flake-eval", "eval.nix"),
      "--argstr", "libPath", NIXPKGS_LIB,
      "--argstr", "flakeDir", flakeDir,
      "--argstr", "rev", SELF.rev,
      "--argstr", "shortRev", SELF.shortRev,
      "--argstr", "lastModifiedDate", SELF.lastModifiedDate,
      "--argstr", "nixpkgsRev", NIXPKGS_REV,
      "--argstr", "part", part,
    ],
    { encoding: "utf8" },
  );
  if (result.error) throw new Error(`nix-instantiate could not run (${result.error.message})`);
  return {
    ok: result.status === 0,
    value: result.status === 0 ? JSON.parse(result.stdout) : undefined,
    stderr: result.stderr,
  };
}

export function mustEval(flakeDir: string, part: Part) {
  const result = evalFlake(flakeDir, part);
  if (!result.ok) throw new Error(`evaluating ${part} failed:\n${result.stderr}`);
  return result.value;
}

/** A copy of what flake.nix reads (flake.nix, nix/, targets.json), with test operator keys. */
export async function copyFlake(into: string): Promise<string> {
  await mkdir(join(into, "scripts", "lib", "build"), { recursive: true });
  await cp(join(ROOT, "flake.nix"), join(into, "flake.nix"));
  await cp(join(ROOT, "nix"), join(into, "nix"), { recursive: true });
  await cp(join(ROOT, "scripts", "lib", "build", "targets.json"), join(into, "scripts", "lib", "build", "targets.json"));
  await writeFile(join(into, "nix", "operator-keys.pub"), `# operators\n\n${KEYS[0]}\n# ${KEYS[1]} (revoked)\n${KEYS[1]}\n`);
  return into;
}
