/**
 * The files of a release, wherever they are: the assets of a published Forgejo release, or a
 * local dist/ directory. verify-release checks both the same way through this interface; large
 * files are only ever streamed through a hash, never held in memory.
 */
import { readdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { Failure, UsageError } from "../cli/errors.ts";
import type { ForgejoClient } from "./client.ts";
import type { Release } from "./types.ts";
import { copyAndHash, hashFile, type FileDigest } from "../build/hash.ts";
import { SMALL_FILE_LIMIT } from "../build/manifest.ts";

export interface ReleaseFiles {
  /** For messages: "release boot-v1.2.0 of ops/runner-images" or "dist /srv/dist". */
  description: string;
  /** Every file name present, once per copy (a release may hold duplicates). */
  names: string[];
  size(name: string): number | undefined;
  /** The bytes of a small file, or null when absent. */
  readSmall(name: string): Promise<Uint8Array | null>;
  /** Streams a file through SHA-256; a download stops at `maxBytes` + 1 byte (a server streaming forever). */
  digest(name: string, onProgress?: (done: number) => void, maxBytes?: number): Promise<FileDigest>;
  /** Writes a file to the new file `target` and hashes it, in one pass; a download stops at `maxBytes` + 1 byte, and never writes more than `maxBytes`. */
  save(name: string, target: string, onProgress?: (done: number) => void, maxBytes?: number): Promise<FileDigest>;
}

export async function distFiles(dir: string): Promise<ReleaseFiles> {
  // A directory that is not there is bad input, not a failed check.
  const entries = await readdir(dir).catch((error: NodeJS.ErrnoException) => {
    throw new UsageError(`--dist ${dir} ${error.code === "ENOENT" ? "does not exist" : "is not a readable directory"}`);
  });
  const sizes = new Map<string, number>();
  for (const name of entries) {
    const info = await stat(join(dir, name));
    if (info.isFile()) sizes.set(name, info.size);
  }
  return {
    description: `dist ${dir}`,
    names: [...sizes.keys()],
    size: (name) => sizes.get(name),
    async readSmall(name) {
      const size = sizes.get(name);
      if (size === undefined) return null;
      if (size > SMALL_FILE_LIMIT) throw new Failure(`${name} in ${dir} is ${size} bytes: too large to be what it claims`);
      return Bun.file(join(dir, name)).bytes();
    },
    digest: (name, onProgress) => hashFile(join(dir, name), onProgress),
    save: (name, target, onProgress) => copyAndHash(join(dir, name), target, onProgress),
  };
}

/** A server that sends more than the signed size is cut off there: it cannot fill the disk. */
export const tooLong = (name: string, size: number) =>
  new Failure(`${name}: the server sent more than the ${size} bytes the manifest says; the download was stopped there`);

/** The assets of a published release, downloaded by their public download URLs. */
export function releaseFiles(client: ForgejoClient, release: Release): ReleaseFiles {
  const urlOf = (name: string): string => {
    const found = release.assets.filter((a) => a.name === name);
    if (found.length !== 1) throw new Failure(`release ${release.tag_name} has ${found.length} assets named ${name}`);
    return found[0]!.browser_download_url;
  };
  return {
    description: `release ${release.tag_name} of ${client.repoName} on ${client.origin}`,
    names: release.assets.map((a) => a.name),
    size: (name) => release.assets.find((a) => a.name === name)?.size,
    async readSmall(name) {
      if (!release.assets.some((a) => a.name === name)) return null;
      return client.downloadSmall(urlOf(name), `downloading ${name}`);
    },
    digest: (name, onProgress, maxBytes) => client.downloadDigest(urlOf(name), `downloading ${name}`, onProgress, maxBytes),
    async save(name, target, onProgress, maxBytes) {
      // The same chunks go to the file and through the hash: what is kept is what was checked.
      // A retried download starts a new file (a writer does not truncate) and a new hash.
      const open: { sink: Bun.FileSink | null } = { sink: null };
      let hasher = new Bun.CryptoHasher("sha256");
      try {
        const size = await client.download(urlOf(name), `downloading ${name}`, async () => {
          await open.sink?.end();
          await rm(target, { force: true });
          const writer = (open.sink = Bun.file(target).writer());
          hasher = new Bun.CryptoHasher("sha256");
          let done = 0;
          return (chunk) => {
            if (maxBytes !== undefined && done + chunk.byteLength > maxBytes) throw tooLong(name, maxBytes);
            hasher.update(chunk);
            writer.write(chunk);
            onProgress?.((done += chunk.byteLength));
          };
        });
        return { size, sha256: hasher.digest("hex") };
      } finally {
        await open.sink?.end();
      }
    },
  };
}
