/**
 * Streaming SHA-256. Images are 1–2 GB and the machine may have little RAM, so files are read in
 * fixed-size chunks through one reused buffer; memory stays flat whatever the size.
 * Bun.CryptoHasher uses the CPU's SHA extensions and runs at openssl speed (bun-runtime.md §1):
 * never shell out to sha256sum, it is several times slower.
 */
import { open } from "node:fs/promises";

const CHUNK = 4 * 1024 * 1024;

export interface FileDigest {
  size: number;
  sha256: string;
}

/**
 * Reads `path` once, feeding every chunk to the hasher and to `each` (e.g. a writer or a
 * progress counter).
 */
async function readChunks(path: string, each?: (chunk: Uint8Array) => Promise<void> | void): Promise<FileDigest> {
  const hasher = new Bun.CryptoHasher("sha256");
  const file = await open(path, "r");
  const buffer = new Uint8Array(CHUNK);
  let size = 0;
  try {
    for (;;) {
      const { bytesRead } = await file.read(buffer, 0, CHUNK, null);
      if (bytesRead === 0) break;
      const chunk = buffer.subarray(0, bytesRead);
      hasher.update(chunk);
      if (each) await each(chunk);
      size += bytesRead;
    }
  } finally {
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
 * Copies `source` to a new file `target` and hashes it in the same pass: every byte is read
 * once. The target must not exist (it is a fresh staging file, never an overwrite).
 */
export async function copyAndHash(source: string, target: string, onProgress?: (done: number) => void): Promise<FileDigest> {
  const out = await open(target, "wx", 0o644);
  let done = 0;
  try {
    return await readChunks(source, async (chunk) => {
      let written = 0;
      while (written < chunk.byteLength) {
        const { bytesWritten } = await out.write(chunk, written, chunk.byteLength - written);
        written += bytesWritten;
      }
      onProgress?.((done += chunk.byteLength));
    });
  } finally {
    await out.close();
  }
}

/** SHA-256 of bytes already in memory (small files: the iPXE script, the manifest). */
export function hashBytes(data: string | Uint8Array): string {
  return new Bun.CryptoHasher("sha256").update(data).digest("hex");
}
