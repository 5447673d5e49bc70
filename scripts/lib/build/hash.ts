/**
 * Streaming SHA-256. Images are 1–2 GB and the machine may have little RAM, so files are read in
 * fixed-size chunks through one reused buffer; memory stays flat whatever the size.
 * Bun.CryptoHasher uses the CPU's SHA extensions and runs at openssl speed (bun-runtime.md §1):
 * never shell out to sha256sum, it is several times slower.
 */
import { constants } from "node:fs";
import { copyFile, open } from "node:fs/promises";

const CHUNK = 4 * 1024 * 1024;

export interface FileDigest {
  size: number;
  sha256: string;
}

/**
 * Reads `path` once, feeding every chunk to the hasher and to `each` (e.g. a writer or a
 * progress counter). Two buffers take turns: while one chunk is hashed (synchronously, on this
 * thread) and handed to `each`, the next is already being read (on the I/O thread pool), so
 * reading, hashing and writing overlap instead of taking turns.
 */
async function readChunks(path: string, each?: (chunk: Uint8Array) => Promise<void> | void): Promise<FileDigest> {
  const hasher = new Bun.CryptoHasher("sha256");
  const file = await open(path, "r");
  let here = new Uint8Array(CHUNK);
  let spare = new Uint8Array(CHUNK);
  let size = 0;
  let reading: Promise<{ bytesRead: number }> | undefined;
  try {
    reading = file.read(here, 0, CHUNK, null);
    for (;;) {
      const { bytesRead } = await reading;
      if (bytesRead === 0) break;
      const chunk = here.subarray(0, bytesRead);
      // The spare buffer is free: `each` finished with it (awaited below) one round ago.
      [here, spare] = [spare, here];
      reading = file.read(here, 0, CHUNK, null);
      const handing = each?.(chunk);
      hasher.update(chunk);
      await handing;
      size += bytesRead;
    }
  } finally {
    // A failure in `each` can leave the next read in flight: let it settle before closing.
    await reading?.catch(() => {});
    await file.close();
  }
  return { size, sha256: hasher.digest("hex") };
}

/** SHA-256 and size of a file, streamed. `onProgress` gets the bytes read so far. */
export function hashFile(path: string, onProgress?: (done: number) => void): Promise<FileDigest> {
  let done = 0;
  return readChunks(path, onProgress && ((chunk) => onProgress((done += chunk.byteLength))));
}

/**
 * Copies `source` to a new file `target` (never an overwrite) and hashes it. The copy is the
 * kernel's (copy_file_range, as cp does: no bytes through this process) and runs while the
 * source is hashed, so the two share one pass of the page cache: the disk is read once, and the
 * run takes about as long as hashing alone (bench/). The source must not change meanwhile, which
 * holds for the Nix store paths this is used on.
 */
export async function copyAndHash(source: string, target: string, onProgress?: (done: number) => void): Promise<FileDigest> {
  const [, digest] = await Promise.all([copyFile(source, target, constants.COPYFILE_EXCL), hashFile(source, onProgress)]);
  return digest;
}

/** SHA-256 of bytes already in memory (small files: the iPXE script, the manifest). */
export function hashBytes(data: string | Uint8Array): string {
  return new Bun.CryptoHasher("sha256").update(data).digest("hex");
}
