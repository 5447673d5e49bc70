/**
 * A mirror for PXE/HTTP that only ever serves whole, verified releases:
 *
 *   <mirror>/releases/<tag>/      one directory per release, each whole
 *   <mirror>/current -> releases/<tag>    what verify-release --download moved it to
 *   <mirror>/<channel> -> releases/<tag>  what sync-mirror --channel moved it to
 *   <mirror>/<pointer>.ipxe               chains releases/<tag>/netboot-x86_64.ipxe (one release per boot)
 *
 * A release is staged in a new directory under releases/ (the same file system, so the move in
 * is a rename), checked there, renamed to releases/<tag>, and only then does a pointer move: a
 * new symlink beside it renamed over the old one, which rename(2) does atomically. A client
 * that follows a pointer sees the old release or the new one, never a mix; an interruption at
 * any point before that rename leaves the old pointer where it was.
 */
import { lstat, mkdir, mkdtemp, readdir, readlink, rename, rm, stat, symlink, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Failure, UsageError } from "../cli/errors.ts";
import { say } from "../cli/log.ts";
import { compareReleaseTags } from "./mirror-order.ts";

export const RELEASES_DIR = "releases";
export const CURRENT_POINTER = "current";
const STAGING_PREFIX = ".staging-";
/** The netboot entry script of a release (scripts/lib/build/targets.json's netboot target). */
export const BOOT_SCRIPT = "netboot-x86_64.ipxe";

/** Writable now, not after every byte was downloaded (a read-only mount, a path under a file). */
export async function checkMirrorWritable(mirror: string, flag = "--download"): Promise<void> {
  const info = await stat(mirror).catch(() => null);
  if (info && !info.isDirectory()) throw new UsageError(`${flag} ${mirror} exists and is not a directory`);
  const cannot = (error: NodeJS.ErrnoException) => {
    throw new UsageError(`${flag} ${mirror} cannot be written (${error.code ?? "unknown error"})`, "give a directory this user can write");
  };
  await mkdir(join(mirror, RELEASES_DIR), { recursive: true }).catch(cannot);
  await rm(await mkdtemp(join(mirror, RELEASES_DIR, STAGING_PREFIX)).catch(cannot), { recursive: true });
}

/** A new staging directory under releases/, so that moving it in is a rename on one file system. */
export const makeStaging = (mirror: string): Promise<string> => mkdtemp(join(mirror, RELEASES_DIR, STAGING_PREFIX));

/** The tag a pointer names now (releases/<tag>), or null when there is no such pointer. */
export async function pointedTag(mirror: string, pointer: string): Promise<string | null> {
  const target = await readlink(join(mirror, pointer)).catch(() => null);
  if (target === null) return null;
  const match = /^releases\/([^/]+)$/.exec(target);
  if (!match) throw new Failure(`${join(mirror, pointer)} points at ${target}, not at a release under ${RELEASES_DIR}/: this is not a mirror this tool wrote`);
  return match[1]!;
}

/**
 * Moving a pointer to an older release than the one it names is what a server that replays an
 * old (genuine, signed) release wants; it happens only when the operator names it.
 */
export async function refuseDowngrade(mirror: string, pointer: string, tag: string, allowDowngrade: boolean): Promise<void> {
  const held = await pointedTag(mirror, pointer);
  if (held === null || held === tag) return;
  const order = compareReleaseTags(tag, held);
  if (order > 0 || allowDowngrade) return;
  const why = order < 0 ? `${tag} is older than ${held}, which ${pointer} names now` : `${tag} and ${held} (which ${pointer} names now) cannot be ordered`;
  throw new Failure(`refusing to move ${join(mirror, pointer)}: ${why}; --allow-downgrade moves it anyway (a rollback you mean)`);
}

export interface MirrorRelease {
  tag: string;
  /** The small files (manifest, SHA256SUMS, statement, signatures): written from the very bytes that were checked. */
  small: Map<string, Uint8Array>;
  /** The large files already in the staging directory, checked byte for byte. */
  checked: string[];
}

/**
 * Moves a verified staging directory in as releases/<tag> and points `pointer` at it. When
 * releases/<tag> is already there (an earlier sync, or one interrupted after the move), it is
 * kept if it holds the same statement, and refused otherwise: one tag, one release.
 */
export async function installRelease(mirror: string, staging: string, release: MirrorRelease, pointer: string): Promise<string> {
  for (const [name, bytes] of release.small) await writeFile(join(staging, name), bytes);
  const target = join(mirror, RELEASES_DIR, release.tag);
  const existing = await lstat(target).catch(() => null);
  if (existing) {
    const statementName = [...release.small.keys()].find((n) => n.endsWith(".intoto.json"));
    const same = statementName && (await Bun.file(join(target, statementName)).exists()) &&
      Buffer.from(await Bun.file(join(target, statementName)).bytes()).equals(Buffer.from(release.small.get(statementName)!));
    if (!same) throw new Failure(`${target} already holds a release with another statement: one tag, one release (move it away to replace it)`);
    await rm(staging, { recursive: true, force: true });
  } else {
    await rename(staging, target);
  }
  const now = new Date();
  await utimes(target, now, now); // the newest release, for --keep
  await switchPointer(mirror, pointer, release.tag);
  await writeBootScript(mirror, pointer, release.tag);
  return target;
}

/**
 * <mirror>/<pointer>.ipxe chains releases/<tag>/netboot-x86_64.ipxe: iPXE resolves the
 * script's relative kernel and initrd against the URL it chained, so a machine that boots
 * this file loads all three from one release directory, even if the pointer moves mid-boot
 * (the old directory stays: --keep). The tag goes into an iPXE script, where ${…} expands:
 * only letters, digits, dots, dashes and underscores get there.
 */
export async function writeBootScript(mirror: string, pointer: string, tag: string): Promise<void> {
  if (!/^[A-Za-z0-9._-]+$/.test(tag)) throw new Failure(`${JSON.stringify(tag)} cannot go into an iPXE script (only letters, digits, . _ -)`);
  const temporary = join(mirror, `.${pointer}.ipxe.${process.pid}`);
  await writeFile(temporary, `#!ipxe\n# written by runner-images: ${pointer} -> ${RELEASES_DIR}/${tag}\nchain ${RELEASES_DIR}/${tag}/${BOOT_SCRIPT}\n`);
  await rename(temporary, join(mirror, `${pointer}.ipxe`));
}

/** A temporary symlink renamed over the pointer: rename(2) replaces it atomically. */
export async function switchPointer(mirror: string, pointer: string, tag: string): Promise<void> {
  const temporary = join(mirror, `.${pointer}.${process.pid}.${Date.now()}`);
  await symlink(join(RELEASES_DIR, tag), temporary);
  try {
    await rename(temporary, join(mirror, pointer));
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}

/**
 * Keeps every release a pointer names and the `keep` newest others (for a rollback without a
 * download); removes older ones and staging directories an interruption left.
 */
export async function pruneReleases(mirror: string, keep: number): Promise<string[]> {
  const named = new Set<string>();
  for (const entry of await readdir(mirror)) {
    const tag = await pointedTag(mirror, entry).catch(() => null);
    if (tag) named.add(tag);
  }
  const dir = join(mirror, RELEASES_DIR);
  const others: { name: string; mtime: number }[] = [];
  const removed: string[] = [];
  for (const name of await readdir(dir)) {
    if (name.startsWith(STAGING_PREFIX)) {
      // Another sync may be staging right now: only a staging directory an hour old is left over.
      const info = await stat(join(dir, name));
      if (Date.now() - info.mtimeMs > 3600_000) await rm(join(dir, name), { recursive: true, force: true });
      continue;
    }
    if (!named.has(name)) others.push({ name, mtime: (await stat(join(dir, name))).mtimeMs });
  }
  others.sort((a, b) => b.mtime - a.mtime);
  for (const { name } of others.slice(keep)) {
    await rm(join(dir, name), { recursive: true, force: true });
    removed.push(name);
  }
  if (removed.length > 0) say(`removed ${removed.length} older release${removed.length === 1 ? "" : "s"} from ${mirror}: ${removed.join(", ")} (--keep ${keep})`);
  return removed;
}

/** --keep N: a count, checked before any work. */
export function parseKeep(value: string | undefined, fallback = 2): number {
  if (value === undefined) return fallback;
  if (!/^\d{1,3}$/.test(value)) throw new UsageError(`--keep ${value}: give how many previous releases to keep, e.g. --keep 2`);
  return Number(value);
}
