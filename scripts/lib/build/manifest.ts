/**
 * The dist/ contract shared by build, publish and verify: the artifacts, `SHA256SUMS` (the
 * `sha256sum -c` format, bare file names) and `manifest.json` (provenance: which commit, which
 * nixpkgs, which nix, which CI run made each file). Written by build-images, read and checked by
 * the others.
 */
import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { BootNumbersError, checkBootNumbers, type BootNumbers } from "./boot-numbers.ts";
import { hashFile } from "./hash.ts";

export const MANIFEST_FILE = "manifest.json";
export const SUMS_FILE = "SHA256SUMS";
export const MANIFEST_SCHEMA_VERSION = 1;
/** manifest.json, SHA256SUMS and its signature are small: anything larger is not what it claims. */
export const SMALL_FILE_LIMIT = 4 * 1024 * 1024;

/** A flake input as flake.lock pins it (the `locked` node). */
export interface LockedInput {
  type: string;
  narHash: string;
  lastModified?: number;
  rev?: string;
  owner?: string;
  repo?: string;
  url?: string;
  ref?: string;
}

/** The Forgejo Actions run that built the images (absent for a build by hand). */
export interface CiRun {
  server: string;
  repository: string;
  runId: string;
  runNumber: string;
  workflow: string;
  /** The workflow's file (boot-images.yml), when the runner and server say it (ci-env.ts); absent on Forgejo before v14. */
  workflowFile?: string;
  ref: string;
  event: string;
}

export interface Artifact {
  /** File name in dist/ and in the release. */
  name: string;
  /** Flake package attribute it came from. */
  target: string;
  /** Path of the file inside the target's store path. */
  source: string;
  size: number;
  sha256: string;
  storePath: string;
  drvPath: string;
  /** True when the file was rewritten on the way out (the iPXE script's file names). */
  rewritten?: boolean;
}

export interface Manifest {
  schemaVersion: typeof MANIFEST_SCHEMA_VERSION;
  /** The boot-v* tag when building one, else a dev label such as dev-1a2b3c4d5e6f. */
  version: string;
  source: {
    /** Full commit SHA of the flake's repository. */
    commit: string;
    /** True when uncommitted changes were built: the commit alone does not describe the images. */
    dirty: boolean;
    /** The flake reference as built, e.g. git+file:///src/runner-images. */
    flake: string;
  };
  /** Direct inputs of the flake as pinned in flake.lock (nixpkgs rev, narHash, lastModified). */
  inputs: Record<string, LockedInput>;
  nix: { version: string; system: string };
  builtAt: string;
  ci: CiRun | null;
  artifacts: Artifact[];
  /** What the Forgejo boot test measured for each netboot target, when the build asked for it (build-images --boot-numbers). */
  bootNumbers?: BootNumbers[];
}

export class ManifestError extends Error {}

/** `sha256sum -c` format: "<64 hex>  <name>", one line per artifact, in manifest order. */
export function formatSums(artifacts: readonly Pick<Artifact, "name" | "sha256">[]): string {
  return artifacts.map((a) => `${a.sha256}  ${a.name}\n`).join("");
}

/** Parses SHA256SUMS strictly: any line that is not "<hex>  <name>" (or " *<name>") is an error. */
export function parseSums(text: string): Map<string, string> {
  const sums = new Map<string, string>();
  for (const [i, line] of text.split("\n").entries()) {
    if (line === "") continue;
    const m = /^([0-9a-f]{64}) [ *](.+)$/.exec(line);
    if (!m) throw new ManifestError(`${SUMS_FILE} line ${i + 1} is not "<sha256>  <name>"`);
    if (sums.has(m[2]!)) throw new ManifestError(`${SUMS_FILE} lists ${m[2]} twice`);
    sums.set(m[2]!, m[1]!);
  }
  return sums;
}

/** Writes manifest.json and SHA256SUMS into `dir`. */
export async function writeManifest(dir: string, manifest: Manifest): Promise<void> {
  await writeFile(join(dir, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
  await writeFile(join(dir, SUMS_FILE), formatSums(manifest.artifacts));
}

const SHA256_HEX = /^[0-9a-f]{64}$/;
const COMMIT = /^[0-9a-f]{40}$/;
/** A release asset name: no path separators, no hidden files, nothing a shell or URL mangles. */
const ASSET_NAME = /^[A-Za-z0-9][A-Za-z0-9._+-]*$/;

function check(condition: unknown, what: string): asserts condition {
  if (!condition) throw new ManifestError(`${MANIFEST_FILE}: ${what}`);
}

/** Validates the shape of a parsed manifest; every problem is named. */
export function validateManifest(value: unknown): Manifest {
  const m = value as Manifest;
  check(m && typeof m === "object", "not a JSON object");
  check(m.schemaVersion === MANIFEST_SCHEMA_VERSION, `schemaVersion ${String(m.schemaVersion)} is not ${MANIFEST_SCHEMA_VERSION}`);
  check(typeof m.version === "string" && m.version !== "", "version is missing");
  check(m.source && COMMIT.test(m.source.commit), "source.commit is not a full 40-hex commit SHA");
  check(typeof m.source.dirty === "boolean", "source.dirty is missing");
  check(m.inputs && typeof m.inputs === "object", "inputs is missing");
  check(m.nix && typeof m.nix.version === "string", "nix.version is missing");
  check(Array.isArray(m.artifacts) && m.artifacts.length > 0, "artifacts is empty");
  const names = new Set<string>();
  for (const a of m.artifacts) {
    check(typeof a.name === "string" && ASSET_NAME.test(a.name), `artifact name ${JSON.stringify(a.name)} is not a plain file name`);
    check(a.name !== MANIFEST_FILE && a.name !== SUMS_FILE, `artifact ${a.name} clashes with the manifest files`);
    check(!names.has(a.name), `artifact ${a.name} is listed twice`);
    names.add(a.name);
    check(Number.isSafeInteger(a.size) && a.size >= 0, `artifact ${a.name} has no valid size`);
    check(typeof a.sha256 === "string" && SHA256_HEX.test(a.sha256), `artifact ${a.name} has no valid sha256`);
  }
  if (m.bootNumbers !== undefined) {
    // The numbers reach the release notes: each must be a record the boot test writes, for a
    // target this manifest built.
    check(Array.isArray(m.bootNumbers), "bootNumbers is not a list");
    for (const [i, numbers] of m.bootNumbers.entries()) {
      try {
        checkBootNumbers(numbers, `bootNumbers[${i}]`);
      } catch (error) {
        if (error instanceof BootNumbersError) check(false, error.message);
        throw error;
      }
      check(m.artifacts.some((a) => a.target === numbers.target), `bootNumbers[${i}] is for ${numbers.target}, which this manifest did not build`);
      check(m.bootNumbers.findIndex((other) => other.target === numbers.target) === i, `bootNumbers lists ${numbers.target} twice`);
    }
  }
  return m;
}

/** Reads and validates `dir`/manifest.json. */
export async function readManifest(dir: string): Promise<Manifest> {
  const path = join(dir, MANIFEST_FILE);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch {
    throw new ManifestError(`no ${MANIFEST_FILE} in ${dir}: is it a dist/ written by build-images.ts?`);
  }
  try {
    return validateManifest(JSON.parse(text));
  } catch (error) {
    if (error instanceof ManifestError) throw error;
    throw new ManifestError(`${path} is not valid JSON`);
  }
}

/** Where SHA256SUMS and the manifest disagree (they are written together and must not). */
export function compareSumsWithManifest(sums: ReadonlyMap<string, string>, manifest: Manifest): string[] {
  const problems: string[] = [];
  for (const a of manifest.artifacts) {
    if (!sums.has(a.name)) problems.push(`${SUMS_FILE} does not list ${a.name}, which ${MANIFEST_FILE} does`);
    else if (sums.get(a.name) !== a.sha256) problems.push(`${SUMS_FILE} and ${MANIFEST_FILE} disagree on the SHA-256 of ${a.name}`);
  }
  for (const name of sums.keys()) {
    if (!manifest.artifacts.some((a) => a.name === name)) problems.push(`${SUMS_FILE} lists ${name}, which ${MANIFEST_FILE} does not`);
  }
  return problems;
}

/**
 * Checks a dist directory against its own manifest: SHA256SUMS agrees with the manifest, and
 * every artifact is present with the recorded size and (with `rehash`) SHA-256, re-hashed from
 * disk.
 * Returns the manifest; throws ManifestError naming every file that does not check.
 */
export async function checkDist(
  dir: string,
  options: { rehash: boolean; onFile?: (name: string, size: number) => (done: number) => void } = { rehash: true },
): Promise<Manifest> {
  const manifest = await readManifest(dir);
  let sums: Map<string, string>;
  try {
    sums = parseSums(await readFile(join(dir, SUMS_FILE), "utf8"));
  } catch (error) {
    if (error instanceof ManifestError) throw error;
    throw new ManifestError(`no ${SUMS_FILE} in ${dir}`);
  }
  const problems = compareSumsWithManifest(sums, manifest);
  for (const a of manifest.artifacts) {
    const path = join(dir, a.name);
    const info = await stat(path).catch(() => null);
    if (!info?.isFile()) {
      problems.push(`${a.name} is missing`);
      continue;
    }
    if (info.size !== a.size) {
      problems.push(`${a.name} is ${info.size} bytes, the manifest says ${a.size}`);
      continue;
    }
    if (!options.rehash) continue;
    const digest = await hashFile(path, options.onFile?.(a.name, a.size));
    if (digest.sha256 !== a.sha256) problems.push(`${a.name} has SHA-256 ${digest.sha256}, the manifest says ${a.sha256}`);
  }
  if (problems.length > 0) throw new ManifestError(`${dir} does not match its manifest: ${problems.join("; ")}`);
  return manifest;
}
