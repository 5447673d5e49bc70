/**
 * verify-release --download DIR: a mirror for PXE/HTTP that only ever holds verified files.
 * The directory is checked before anything is downloaded; the files are staged in it while
 * they are checked, and moved in only once every check passed.
 */
import { mkdir, mkdtemp, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { UsageError } from "../cli/errors.ts";
import { say } from "../cli/log.ts";
import { COUNTERSIGNATURE_FILE, STATEMENT_SIGNATURE_FILE } from "./signing.ts";

/** Writable now, not after every byte was downloaded (a read-only mount, a path under a file). */
export async function checkMirrorWritable(mirror: string): Promise<void> {
  const info = await stat(mirror).catch(() => null);
  if (info && !info.isDirectory()) throw new UsageError(`--download ${mirror} exists and is not a directory`);
  const cannot = (error: NodeJS.ErrnoException) => {
    throw new UsageError(`--download ${mirror} cannot be written (${error.code ?? "unknown error"})`, "give a directory this user can write");
  };
  await mkdir(mirror, { recursive: true }).catch(cannot);
  await rm(await mkdtemp(join(mirror, ".verifying-")).catch(cannot), { recursive: true });
}

/** The staging directory inside the mirror, so that the final move is a rename on one file system. */
export const makeStaging = (mirror: string): Promise<string> => mkdtemp(join(mirror, ".verifying-"));

/**
 * The verified files move from the staging directory into the mirror, the small ones written
 * from the very bytes that were checked. A signature file a previous release left there, and
 * this one lacks, goes: the mirror holds one release, whole.
 */
export async function fillMirror(staging: string, mirror: string, small: Map<string, Uint8Array>, checked: string[]): Promise<void> {
  for (const [name, bytes] of small) await writeFile(join(staging, name), bytes);
  for (const name of [...checked, ...small.keys()]) await rename(join(staging, name), join(mirror, name));
  for (const name of [STATEMENT_SIGNATURE_FILE, COUNTERSIGNATURE_FILE]) if (!small.has(name)) await rm(join(mirror, name), { force: true });
  say(`wrote the verified files to ${mirror}`);
}
