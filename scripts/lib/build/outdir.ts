/**
 * The --out directory of a build. Files are collected in a hidden staging directory next to it
 * and renamed into place only when everything is written, so a failed or interrupted build never
 * leaves a directory that looks like a complete dist; a previous dist stays untouched until then,
 * so a failed rebuild leaves the last good one.
 *
 * Replacing is only ever done to a previous dist (a directory holding nothing but what a
 * manifest lists): `--out .` or `--out ~` is refused rather than emptied.
 */
import { rmSync } from "node:fs";
import { chmod, mkdtemp, readdir, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { UsageError } from "../cli/errors.ts";
import { MANIFEST_FILE, SUMS_FILE, readManifest } from "./manifest.ts";
import { STATEMENT_FILE } from "../trust/provenance.ts";
import { COUNTERSIGNATURE_FILE, STATEMENT_SIGNATURE_FILE } from "../trust/signing.ts";

const stagingPrefix = (out: string) => `.${basename(out)}.partial-`;
/** Where commit() puts the previous dist for the moment between its two renames. */
const previousPrefix = (out: string) => `.${basename(out)}.previous-`;

/**
 * Files a dist may hold besides its artifacts: publishing adds the provenance statement and its
 * signatures; SHA256SUMS.sig is what releases before the statement had.
 */
const DIST_EXTRAS = [MANIFEST_FILE, SUMS_FILE, `${SUMS_FILE}.sig`, STATEMENT_FILE, STATEMENT_SIGNATURE_FILE, COUNTERSIGNATURE_FILE];

/** Validates --out before any work: absent, empty, or a previous dist. */
export async function checkOutDir(out: string): Promise<string> {
  const path = resolve(out);
  const info = await stat(path).catch(() => null);
  if (!info) {
    const parent = await stat(dirname(path)).catch(() => null);
    if (!parent?.isDirectory()) throw new UsageError(`--out ${out}: its parent directory does not exist`);
    return path;
  }
  if (!info.isDirectory()) throw new UsageError(`--out ${out} exists and is not a directory`);
  const entries = await readdir(path);
  if (entries.length === 0) return path;
  const manifest = await readManifest(path).catch(() => null);
  const ours = new Set([...DIST_EXTRAS, ...(manifest?.artifacts.map((a) => a.name) ?? [])]);
  const foreign = entries.filter((e) => !ours.has(e));
  if (!manifest || foreign.length > 0) {
    throw new UsageError(
      `--out ${out} holds files that are not a previous build (${(foreign.length ? foreign : entries).slice(0, 3).join(", ")}…); choose an empty or new directory`,
    );
  }
  return path;
}

export interface Staging {
  dir: string;
  /** Moves the staged files into place as the new --out. */
  commit(): Promise<void>;
}

/**
 * Removes staging directories that killed runs left behind and creates a fresh one, removed again
 * unless it is committed. A previous dist is left alone until commit().
 */
export async function startStaging(out: string): Promise<Staging> {
  const parent = dirname(out);
  const outExists = Boolean(await stat(out).catch(() => null));
  for (const entry of await readdir(parent)) {
    if (entry.startsWith(stagingPrefix(out))) await rm(join(parent, entry), { recursive: true, force: true });
    // A run killed between the two renames of commit(): the previous dist is put back.
    else if (entry.startsWith(previousPrefix(out))) {
      if (outExists) await rm(join(parent, entry), { recursive: true, force: true });
      else await rename(join(parent, entry), out);
    }
  }
  const dir = await mkdtemp(join(parent, stagingPrefix(out)));
  await chmod(dir, 0o755); // mkdtemp makes it private; a dist is meant to be read and served
  let committed = false;
  process.once("exit", () => {
    // Every way out ends here, failures and Ctrl-C alike (the signal handler exits once nix has
    // stopped): an uncommitted staging directory never outlives the run. Exit is synchronous.
    if (!committed) rmSync(dir, { recursive: true, force: true });
  });
  return {
    dir,
    async commit() {
      // The previous dist (checkOutDir allowed only that) moves aside, the new one into place,
      // then the old one goes: at every moment one complete dist exists.
      const aside = `${join(parent, previousPrefix(out))}${basename(dir).slice(stagingPrefix(out).length)}`;
      const replacing = Boolean(await stat(out).catch(() => null));
      if (replacing) await rename(out, aside);
      await rename(dir, out);
      committed = true;
      if (replacing) await rm(aside, { recursive: true, force: true });
    },
  };
}
