/**
 * Running nix: check that it can build flakes, read a flake's metadata (revision, lock), and run
 * one `nix build` for all chosen targets with the build log streamed live.
 *
 * Written for Nix 2.8 and later: flakes are switched on per call with
 * --extra-experimental-features (no nix.conf change needed), and store paths come from
 * `--json` (`--print-out-paths` only exists from 2.9).
 */
import { $ } from "zx/core";
import { resolve } from "node:path";
import { Failure, UsageError } from "../cli/errors.ts";
import { onInterrupt } from "../cli/run-main.ts";
import type { LockedInput } from "./manifest.ts";

const FLAKES = ["--extra-experimental-features", "nix-command flakes"];

export interface NixInfo {
  version: string;
  /** The system nix builds for here, e.g. x86_64-linux. */
  system: string;
}

/** First line of nix's error output, for a one-line message. */
function firstError(stderr: string): string {
  const line = stderr.split("\n").find((l) => l.startsWith("error:")) ?? stderr.split("\n").find((l) => l.trim() !== "");
  return (line ?? "").replace(/^error:\s*/, "").trim() || "no error message";
}

/** Fails unless a nix that can evaluate and build flakes is on PATH. */
export async function checkNix(): Promise<NixInfo> {
  if (!Bun.which("nix")) {
    throw new Failure("nix is not on PATH: install Nix 2.4 or later (Debian: apt install nix-bin; elsewhere https://nixos.org/download)");
  }
  const probe = await $({ quiet: true, nothrow: true })`nix eval ${FLAKES} --impure --json --expr ${
    "{ version = builtins.nixVersion; system = builtins.currentSystem; flakes = builtins ? getFlake; }"
  }`;
  if (probe.exitCode === 0) {
    const info = JSON.parse(probe.stdout) as NixInfo & { flakes: boolean };
    if (info.flakes) return { version: info.version, system: info.system };
  }
  const version = await $({ quiet: true, nothrow: true })`nix --version`;
  const said = version.stdout.trim() || "this nix";
  throw new Failure(
    `${said} cannot use flakes (${firstError(probe.stderr)}): flakes need Nix 2.4 or later with the nix-command and flakes features`,
  );
}

export interface FlakeMetadata {
  /** The flake reference as nix locked it, e.g. git+file:///src/runner-images?ref=main&rev=<sha>. */
  url: string;
  /** The git revision, absent when the tree has uncommitted changes. */
  revision?: string;
  /** Local source directory, when the flake is a local path. */
  localPath?: string;
  /** Direct inputs as pinned in flake.lock. */
  inputs: Record<string, LockedInput>;
}

/** A flake reference with a scheme (github:…, git+https://…) rather than a directory. */
const hasScheme = (flake: string) => /^[a-z][a-z0-9+.-]*:/i.test(flake);

/** A directory becomes its absolute path, so the manifest records where it came from. */
export function flakeReference(flake: string): string {
  return hasScheme(flake) ? flake : resolve(flake);
}

interface LockFile {
  root: string;
  nodes: Record<string, { inputs?: Record<string, string | string[]>; locked?: LockedInput }>;
}

/** `nix flake metadata`: what nix sees of the flake, without evaluating or fetching inputs. */
export async function flakeMetadata(flake: string): Promise<FlakeMetadata> {
  if (!hasScheme(flake)) {
    if (!(await Bun.file(`${flake}/flake.nix`).exists())) {
      throw new UsageError(`--flake ${flake}: there is no flake.nix in that directory`);
    }
  }
  const meta = await $({ quiet: true, nothrow: true })`nix flake metadata ${FLAKES} --json ${flake}`;
  if (meta.exitCode !== 0) throw new Failure(`cannot read flake ${flake}: ${firstError(meta.stderr)}`);
  const data = JSON.parse(meta.stdout) as { url: string; revision?: string; path?: string; locks: LockFile };
  const locks = data.locks;
  const inputs: Record<string, LockedInput> = {};
  for (const [name, key] of Object.entries(locks.nodes[locks.root]?.inputs ?? {})) {
    // An array is a `follows` of another input: not a pin of its own.
    const locked = typeof key === "string" ? locks.nodes[key]?.locked : undefined;
    if (locked) inputs[name] = locked;
  }
  return {
    url: data.url,
    revision: data.revision,
    localPath: data.url.startsWith("git+file://") ? data.url.slice("git+file://".length).split("?")[0] : undefined,
    inputs,
  };
}

export interface BuiltTarget {
  attr: string;
  storePath: string;
  drvPath: string;
}

/** A target or system name as targets.json spells them: a first lock before any name reaches nix. */
const PLAIN_NAME = /^[A-Za-z0-9_][A-Za-z0-9_-]*$/;

/** The flake outputs built here: the images (packages), and the boot tests' numbers (checks). */
export type FlakeOutput = "packages" | "checks";

/**
 * Builds the targets' packages (`packages.<system>.<attr>`, or `checks.<system>.<attr>`) in one
 * nix build and returns their store paths in the targets' order.
 *
 * Two steps, because `nix build --json` lists its results sorted by derivation path, not in the
 * order asked: one `nix eval` turns every attribute into its derivation and output path, then
 * one `nix build` of those derivations lets nix schedule them together, and the results are
 * matched back by derivation path. The log (-L) goes straight to our stderr, so an operator at a
 * terminal sees nix's own progress. Ctrl-C or SIGTERM to this script is forwarded to nix and
 * waited for, so no build is left running.
 *
 * `--keep-going` lets the other targets finish when one fails; the failed ones are then exactly
 * those whose outputs are missing, which is how the error names them.
 */
export async function nixBuild(
  flake: string,
  targets: readonly { attr: string; system: string }[],
  extraArgs: string[],
  output: FlakeOutput = "packages",
): Promise<BuiltTarget[]> {
  const paths = await evalTargets(flake, targets, extraArgs, output);
  const build = $({ stdio: ["inherit", "pipe", "inherit"], quiet: true, nothrow: true })`nix build ${FLAKES} --json --no-link -L --keep-going ${paths.map((p) => p.drv)} ${extraArgs}`;
  let settled = false;
  void build.then(() => (settled = true));
  const forget = onInterrupt(async () => {
    if (settled) return;
    // Signal nix itself, which stops its builders on SIGINT. (zx's kill() walks the process
    // tree with `ps`, and hangs where procps is missing.)
    if (build.pid) process.kill(build.pid, "SIGINT");
    await build;
  });
  const result = await build;
  forget();

  if (result.exitCode !== 0) {
    // A local database query: unlike `nix path-info`, it never asks a binary cache.
    const check = await $({ quiet: true, nothrow: true })`nix-store --check-validity --print-invalid ${paths.map((p) => p.out)}`;
    const invalid = new Set(check.stdout.split("\n").filter(Boolean));
    const failed = targets.filter((_, i) => invalid.has(paths[i]!.out)).map((t) => t.attr);
    const which = failed.length > 0 ? ` for ${failed.join(", ")}` : "";
    throw new Failure(`nix build failed${which} (exit ${result.exitCode}); the nix log above says why`);
  }

  const results = JSON.parse(result.stdout) as { drvPath: string; outputs: { out?: string } }[];
  return targets.map((target, i) => {
    const built = results.find((r) => r.drvPath === paths[i]!.drv)?.outputs.out;
    if (!built) throw new Failure(`${target.attr}: nix build did not report an "out" path for ${paths[i]!.drv}`);
    return { attr: target.attr, storePath: built, drvPath: paths[i]!.drv };
  });
}

/**
 * Each target's derivation path and "out" path, in the targets' order.
 *
 * A first lock: only plain names pass, the same rule as scripts/lib/build/targets.json, and
 * rebuild checks every manifest target against that file before this. Then each name goes to
 * Nix as data (see evalTarget). The evaluations run side by side: each is its own NixOS system.
 */
export async function evalTargets(
  flake: string,
  targets: readonly { attr: string; system: string }[],
  extraArgs: string[],
  output: FlakeOutput = "packages",
): Promise<{ drv: string; out: string }[]> {
  const bad = targets.flatMap((t) => [t.system, t.attr]).find((name) => !PLAIN_NAME.test(name));
  if (bad !== undefined) throw new Failure(`refused to evaluate ${JSON.stringify(bad)}: a target or system name holds more than letters, digits, - and _`);
  return Promise.all(targets.map((target) => evalTarget(flake, target, extraArgs, output)));
}

/**
 * `nix eval <flake>#<path>` tries `packages.<system>.<path>` and `legacyPackages.<system>.<path>`
 * before `<path>` itself (Nix 2.8, tried here), so a flake could shadow the attribute named with
 * a decoy such as `legacyPackages.x86_64-linux.packages.x86_64-linux.<target>`. With the
 * evaluator's system set to a name no flake can know (pure evaluation never sees it), those
 * prefixes cannot exist and the path means itself. Last, so no extra argument overrides it.
 * The system setting names what this machine builds, not what the flake evaluates: it changes
 * no derivation. Only import from derivation would build during evaluation, and would then
 * fail loudly; this flake has none (nixpkgs avoids it too: from memory).
 */
const NO_PREFIX = ["--option", "system", `runner-images-no-prefix-${crypto.randomUUID()}`];

/**
 * One target's derivation and "out" path. The system and attribute are the installable's
 * attribute path (`<flake>#packages."<system>"."<attr>"`), which Nix looks up and never parses
 * as an expression; the --apply code is a constant. (Nix 2.8 refuses --argstr with flakes, and
 * pure evaluation refuses to read a JSON file of values, even one added to the store, so the
 * attribute path is how data reaches a flake evaluation.) Quoting keeps each name one path
 * element; a name holding a quote cannot be quoted and is refused.
 */
export async function evalTarget(
  flake: string,
  target: { attr: string; system: string },
  extraArgs: string[],
  output: FlakeOutput = "packages",
): Promise<{ drv: string; out: string }> {
  const names = [target.system, target.attr];
  if (names.some((name) => name.includes('"'))) throw new Failure(`refused to evaluate ${JSON.stringify(target.attr)}: a name holds a quote`);
  const attrPath = [output, ...names.map((name) => `"${name}"`)].map(encodeURIComponent).join(".");
  // stderr is shown live (evaluation warnings matter to operators) and kept for the error line.
  const evaluated = await $({ nothrow: true })`nix eval ${FLAKES} --json ${`${flake}#${attrPath}`} --apply ${"d: { drv = d.drvPath; out = d.outPath; }"} ${extraArgs} ${NO_PREFIX}`;
  if (evaluated.exitCode !== 0) {
    if (/does not provide attribute/.test(evaluated.stderr)) throw new Failure(`${flake} has no ${output}.${target.system}.${target.attr}`);
    throw new Failure(`nix could not evaluate ${target.attr} (${target.system}) in ${flake}: ${firstError(evaluated.stderr)}`);
  }
  return JSON.parse(evaluated.stdout) as { drv: string; out: string };
}

/** The names of the flake's checks for `system` (attrNames forces none of them). */
export async function checkNames(flake: string, system: string, extraArgs: string[]): Promise<string[]> {
  if (!PLAIN_NAME.test(system)) throw new Failure(`refused to evaluate ${JSON.stringify(system)}: not a system name`);
  const listed = await $({ nothrow: true, quiet: true })`nix eval ${FLAKES} --json ${`${flake}#checks.${system}`} --apply ${"c: builtins.attrNames c"} ${extraArgs} ${NO_PREFIX}`;
  if (listed.exitCode !== 0) {
    // A flake without checks for the system has none to build; any other error is the flake's.
    if (/does not provide attribute/.test(listed.stderr)) return [];
    throw new Failure(`nix could not list the checks of ${flake} for ${system}: ${firstError(listed.stderr)}`);
  }
  return JSON.parse(listed.stdout) as string[];
}
