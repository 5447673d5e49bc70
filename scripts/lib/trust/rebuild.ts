/**
 * Verification that trusts no signer: rebuild a release from the commit its statement names and
 * compare. Two depths:
 *   drv   evaluate every target of the commit and compare each derivation path with the
 *         manifest's (seconds to minutes; proves the manifest describes what that commit
 *         builds, with those flake.lock pins);
 *   full  also build every target and compare every artifact's SHA-256 (hours for the real
 *         images; proves the bytes are what that commit builds, as far as the build is
 *         reproducible).
 *
 * The source is a fresh clone of the commit in a scratch directory, never the working tree:
 * uncommitted changes, untracked files or another checked-out branch cannot leak in. Nix sees it
 * as a git flake, as build-images did (self.rev and the source's store path are the same).
 * Evaluation and build go through nix.ts, the same code build-images uses; the files come out
 * of the store through collect.ts, the same code that made the release.
 */
import { $ } from "zx/core";
import { mkdtemp, mkdir, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Failure, UsageError } from "../cli/errors.ts";
import { onInterrupt } from "../cli/run-main.ts";
import { collectTarget } from "../build/collect.ts";
import { say } from "../cli/log.ts";
import type { Artifact, Manifest } from "../build/manifest.ts";
import { checkNix, evalTargets, flakeMetadata, nixBuild } from "../build/nix.ts";
import { TARGETS, type Target } from "../build/targets.ts";

export type RebuildDepth = "drv" | "full";

export interface RebuildOptions {
  /** A git repository (directory or URL) that has the commit. */
  source: string;
  commit: string;
  manifest: Manifest;
  depth: RebuildDepth;
  /** Passed to nix evaluate and build, e.g. --option substituters ''. */
  nixArgs: string[];
  /** Where the release's own copy of an artifact is on disk, if it is (for the first differing byte). */
  localCopy: (name: string) => string | null;
}

/** A file name as a release names it: no path, no shell or Nix syntax. */
const FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const COMMIT = /^[0-9a-f]{40}$/;

/**
 * What in the manifest would reach git, Nix or a path, against strict patterns and
 * targets.json, before any of them runs: the manifest is the server's file, and a target named
 * `${builtins.readFile (derivation {…})}` would otherwise be Nix code (import from derivation).
 */
export function unsafeManifestValues(manifest: Manifest, commit: string): string[] {
  const problems: string[] = [];
  const shown = (v: unknown) => JSON.stringify(v);
  if (typeof commit !== "string" || !COMMIT.test(commit)) problems.push(`rebuild refused: the commit ${shown(commit)} is not 40 hex digits`);
  for (const a of manifest.artifacts) {
    const known = TARGETS.find((t) => t.attr === a.target);
    if (!known) {
      problems.push(`rebuild refused: ${shown(a.name)} names target ${shown(a.target)}, which is not in scripts/lib/build/targets.json`);
      continue;
    }
    if (typeof a.name !== "string" || !FILE_NAME.test(a.name)) problems.push(`rebuild refused: the file name ${shown(a.name)} is not a plain file name`);
    // The declared source, with `*` standing for one path segment of plain characters (the ISO's
    // `iso/*.iso` is recorded as the file the build made); never a path out of the store path.
    const declared = known.files.find((f) => f.name === a.name);
    const segment = "[A-Za-z0-9._+-]+";
    const pattern = declared && new RegExp(`^${declared.source.split("*").map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(segment)}$`);
    if (!pattern || typeof a.source !== "string" || !pattern.test(a.source) || a.source.split("/").includes("..")) {
      problems.push(`rebuild refused: ${shown(a.name)} comes from ${shown(a.source)}, which ${a.target} in targets.json does not produce`);
    }
  }
  return problems;
}

/**
 * The release's targets as the manifest records them (checked by unsafeManifestValues first):
 * each target's files under the exact paths they had in its store path. The system comes from
 * the target table, never from the manifest.
 */
function targetsOf(manifest: Manifest): Target[] {
  const byAttr = new Map<string, Artifact[]>();
  for (const a of manifest.artifacts) byAttr.set(a.target, [...(byAttr.get(a.target) ?? []), a]);
  return [...byAttr].map(([attr, artifacts]) => {
    const known = TARGETS.find((t) => t.attr === attr)!;
    return {
      attr,
      system: known.system,
      image: known.image,
      files: artifacts.map((a) => ({ source: a.source, name: a.name })),
    };
  });
}

/** The first byte at which two files differ, or null when they are the same. */
export async function firstDifference(a: string, b: string): Promise<number | null> {
  const [fa, fb] = await Promise.all([open(a), open(b)]);
  try {
    const size = 1024 * 1024;
    const ba = Buffer.alloc(size);
    const bb = Buffer.alloc(size);
    for (let offset = 0; ; offset += size) {
      const [ra, rb] = await Promise.all([fa.read(ba, 0, size, offset), fb.read(bb, 0, size, offset)]);
      const n = Math.min(ra.bytesRead, rb.bytesRead);
      // Equal chunks (nearly all of a 2 GB ISO) are compared natively; bytes only in the one that differs.
      if (!ba.subarray(0, n).equals(bb.subarray(0, n))) for (let i = 0; i < n; i++) if (ba[i] !== bb[i]) return offset + i;
      if (ra.bytesRead !== rb.bytesRead) return offset + n;
      if (ra.bytesRead === 0) return null;
    }
  } finally {
    await Promise.all([fa.close(), fb.close()]);
  }
}

/** A clean checkout of `commit` from `source` in `dir`. */
async function checkout(source: string, commit: string, dir: string): Promise<void> {
  const cloned = await $({ quiet: true, nothrow: true })`git clone --quiet --no-checkout ${source} ${dir}`;
  if (cloned.exitCode !== 0) throw new UsageError(`--source ${source}: git cannot clone it (${cloned.stderr.trim().split("\n").at(-1)})`);
  const checked = await $({ cwd: dir, quiet: true, nothrow: true })`git -c advice.detachedHead=false checkout --quiet --detach ${commit}`;
  if (checked.exitCode !== 0) {
    throw new Failure(`commit ${commit} is not in ${source}: fetch it there (git fetch --tags origin), or give --source the repository's URL`);
  }
}

/** Rebuilds and compares; returns every difference, the first one first. */
export async function rebuild(options: RebuildOptions): Promise<string[]> {
  const { manifest, commit } = options;
  const unsafe = unsafeManifestValues(manifest, commit);
  if (unsafe.length > 0) return unsafe;
  await checkNix();
  const scratch = await mkdtemp(join(tmpdir(), "runner-images-rebuild-"));
  const forget = onInterrupt(() => rm(scratch, { recursive: true, force: true }));
  try {
    const dir = join(scratch, "source");
    say(`rebuild: checking out ${commit} from ${options.source} into a scratch directory`);
    await checkout(options.source, commit, dir);
    const meta = await flakeMetadata(dir);
    if (meta.revision !== commit) throw new Failure(`rebuild: nix sees revision ${meta.revision ?? "(none: dirty)"} in the checkout, not ${commit}`);

    const problems: string[] = [];
    // The flake.lock pins the commit has must be the ones the manifest recorded.
    for (const [name, pinned] of Object.entries(manifest.inputs)) {
      const here = meta.inputs[name];
      if (!here) problems.push(`rebuild: the commit's flake.lock has no input ${name}, the manifest pins ${pinned.rev ?? pinned.narHash}`);
      else if (here.narHash !== pinned.narHash) problems.push(`rebuild: input ${name} is ${here.narHash} in the commit's flake.lock, ${pinned.narHash} in the manifest`);
    }

    const targets = targetsOf(manifest);
    say(`rebuild: evaluating ${targets.map((t) => t.attr).join(", ")}`);
    const evaluated = await evalTargets(dir, targets, options.nixArgs);
    for (const [i, target] of targets.entries()) {
      for (const a of manifest.artifacts.filter((x) => x.target === target.attr)) {
        if (a.drvPath !== evaluated[i]!.drv) {
          problems.push(`rebuild: ${a.name} (${target.attr}): the manifest says ${a.drvPath}, commit ${commit.slice(0, 12)} evaluates to ${evaluated[i]!.drv}`);
        }
      }
    }
    if (options.depth === "drv" || problems.length > 0) return problems;

    say(`rebuild: building ${targets.map((t) => t.attr).join(", ")} (outputs already in the local store are reused)`);
    const built = await nixBuild(dir, targets, options.nixArgs);
    const out = join(scratch, "out");
    await mkdir(out);
    for (const [i, target] of targets.entries()) {
      for (const rebuilt of await collectTarget(target, built[i]!, out)) {
        const published = manifest.artifacts.find((a) => a.name === rebuilt.name)!;
        if (rebuilt.sha256 === published.sha256) continue;
        const named = options.localCopy(rebuilt.name);
        const copy = named && (await Bun.file(named).exists()) ? named : null;
        const at = copy ? await firstDifference(join(out, rebuilt.name), copy) : null;
        problems.push(
          `rebuild: ${rebuilt.name} rebuilt from ${commit.slice(0, 12)} has SHA-256 ${rebuilt.sha256} (${rebuilt.size} bytes), the release ${published.sha256} (${published.size} bytes)` +
            (at !== null ? `; the first difference is at byte ${at}` : copy ? "" : "; keep the files with --download to see the first differing byte"),
        );
      }
    }
    return problems;
  } finally {
    forget();
    await rm(scratch, { recursive: true, force: true });
  }
}
