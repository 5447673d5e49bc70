/**
 * build-images' collecting step (collectTarget from scripts/lib/build/collect.ts: resolve the store
 * symlinks, copy each file out under its release name and hash it in the same pass) over a fake
 * store made by bench/run.ts, in its own process.
 *
 *   bun bench/collect-client.ts <store-dir> <out-dir>
 *
 * <store-dir> holds one directory per target, named after the target's attribute
 * (e.g. <store-dir>/netboot-x86_64/bzImage). Prints one JSON line on stdout:
 * { bytes, files, seconds }.
 */
import { join } from "node:path";
import { collectTarget } from "../scripts/lib/build/collect.ts";
import { TARGETS } from "../scripts/lib/build/targets.ts";

const [store, out] = process.argv.slice(2);
if (!store || !out) {
  console.error("usage: bun bench/collect-client.ts <store-dir> <out-dir>");
  process.exit(2);
}
const started = performance.now();
let bytes = 0;
let files = 0;
for (const target of TARGETS) {
  const storePath = join(store, target.attr);
  const artifacts = await collectTarget(target, { attr: target.attr, storePath, drvPath: `${storePath}.drv` }, out);
  for (const a of artifacts) {
    bytes += a.size;
    files++;
  }
}
console.log(JSON.stringify({ bytes, files, seconds: (performance.now() - started) / 1000 }));
