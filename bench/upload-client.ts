/**
 * One upload through the publisher's own code path (uploadAsset from scripts/lib/forgejo/upload.ts), in
 * its own process so its peak RSS is its own.
 *
 *   bun bench/upload-client.ts <server-url> <file> <sha256>
 *
 * Prints one JSON line on stdout: { bytes, seconds, calls }. The server must answer the asset
 * upload with 201 and an Attachment whose size equals the file's (bench/sink.ts does).
 */
import { basename } from "node:path";
import { ForgejoClient } from "../scripts/lib/forgejo/client.ts";
import { tuningFromEnv } from "../scripts/lib/forgejo/http.ts";
import { uploadAsset } from "../scripts/lib/forgejo/upload.ts";

const [server, path, sha256] = process.argv.slice(2);
if (!server || !path || !sha256) {
  console.error("usage: bun bench/upload-client.ts <server-url> <file> <sha256>");
  process.exit(2);
}
const client = new ForgejoClient({ server, owner: "bench", repo: "sink", token: "bench-token", tuning: tuningFromEnv() });
const file = { name: basename(path), path, size: Bun.file(path).size, sha256 };
const started = performance.now();
const asset = await uploadAsset(client, 1, file.name, file);
const seconds = (performance.now() - started) / 1000;
console.log(JSON.stringify({ bytes: client.stats.bytesUploaded, stored: asset.size, seconds, calls: client.stats.calls }));
