/**
 * The project's hashFile (scripts/lib/build/hash.ts) on one file, in its own process, like the
 * reference tools it is compared with (openssl dgst, sha256sum).
 *
 *   bun bench/hash-client.ts <file>
 *
 * Prints one JSON line on stdout: { sha256, size, seconds }.
 */
import { hashFile } from "../scripts/lib/build/hash.ts";

const path = process.argv[2];
if (!path) {
  console.error("usage: bun bench/hash-client.ts <file>");
  process.exit(2);
}
const started = performance.now();
const digest = await hashFile(path);
console.log(JSON.stringify({ ...digest, seconds: (performance.now() - started) / 1000 }));
