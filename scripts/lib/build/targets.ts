/**
 * The image targets: which flake package to build and which files of its store path are
 * published under which release name.
 *
 * The rows live in targets.json because flake.nix reads them too (builtins.fromJSON): the
 * package attribute names and the ISO's file name are spelled once, there. Adding a target
 * (say an aarch64 SD image) is one more entry, e.g.
 *
 *   "sd-aarch64": { "system": "aarch64-linux", "image": "sd",
 *                   "files": { "sd-image/*.img.zst": "runner-aarch64.img.zst" } }
 *
 * Release names are architecture-qualified and version-free, so the download URL of every file
 * is predictable: <server>/<owner>/<repo>/releases/download/<tag>/<release name>.
 */
import rows from "./targets.json" with { type: "json" };

/** How nix/ builds a target; each kind has its own module in nix/. */
export type ImageKind = "netboot" | "iso";

export interface TargetFile {
  /** Path inside the target's store path. A `*` matches within one path segment and must match exactly one file. */
  source: string;
  /** The file's name in dist/ and in the release. */
  name: string;
}

export interface Target {
  /** Flake package attribute: `nix build <flake>#<attr>`. */
  attr: string;
  /** Nix system the package is built for, e.g. x86_64-linux. */
  system: string;
  image: ImageKind;
  files: TargetFile[];
}

export const TARGETS: readonly Target[] = Object.entries(rows).map(([attr, row]) => ({
  attr,
  system: row.system,
  image: row.image as ImageKind,
  files: Object.entries(row.files).map(([source, name]) => ({ source, name })),
}));

/** Targets built when none are named: every x86_64 image (the runners we ship today). */
export const DEFAULT_TARGETS: readonly Target[] = TARGETS.filter((t) => t.system === "x86_64-linux");

export class UnknownTargetError extends Error {}

/**
 * Resolves target names as given on the command line (repeated flags and/or comma lists).
 * Keeps table order and drops repeats, so `--target iso-x86_64,netboot-x86_64` and the
 * reverse build the same thing.
 */
export function selectTargets(names: readonly string[]): Target[] {
  const wanted = new Set(names.flatMap((n) => n.split(",")).map((n) => n.trim()).filter(Boolean));
  if (wanted.size === 0) return [...DEFAULT_TARGETS];
  const unknown = [...wanted].filter((n) => !TARGETS.some((t) => t.attr === n));
  if (unknown.length > 0) {
    throw new UnknownTargetError(
      `unknown target ${unknown.join(", ")}; known targets: ${TARGETS.map((t) => t.attr).join(", ")}`,
    );
  }
  return TARGETS.filter((t) => wanted.has(t.attr));
}

/** Every release name, in table order: the complete set of files a full build publishes. */
export function releaseNames(targets: readonly Target[] = TARGETS): string[] {
  return targets.flatMap((t) => t.files.map((f) => f.name));
}
