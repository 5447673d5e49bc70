/**
 * The publisher writes the statement, its signature and the boot files' .sig into the dist, but
 * only once the server has answered (the statement names the repository as the server publishes
 * it). A dist that cannot take them is bad input all the same, and is said before the server is
 * contacted: asked here (no file is created), and said the same way if the write itself fails.
 */
import { access, constants, stat } from "node:fs/promises";
import { join } from "node:path";
import { UsageError } from "../cli/errors.ts";

/** The one way an unwritable dist is named, here and when the write fails (publish-apply.ts). */
export function cannotWrite(dist: string, name: string, code: string | undefined): UsageError {
  return new UsageError(`--dist ${dist}: cannot write ${name} into it (${code ?? "unknown error"})`, "publish a writable copy of the dist (cp -r)");
}

/**
 * Each of `write` can be written into `dist`, and each of `remove` removed from it: none is a
 * directory; a file is written over if it is writable, created if the directory is, and removed
 * if the directory is. access(2) answers EROFS on a read-only mount even for root; a directory in
 * a file's place stops everyone, root included (EISDIR).
 */
export async function checkWritable(dist: string, write: readonly string[], remove: readonly string[] = []): Promise<void> {
  for (const name of [...write, ...remove]) {
    const path = join(dist, name);
    const info = await stat(path).catch(() => null);
    if (info?.isDirectory()) throw cannotWrite(dist, name, "EISDIR");
    await access(info && write.includes(name) ? path : dist, constants.W_OK).catch((error: NodeJS.ErrnoException) => {
      throw cannotWrite(dist, name, error.code);
    });
  }
}
