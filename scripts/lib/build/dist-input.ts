/**
 * A dist/ as the publisher's input: missing, or not matching its own manifest, is bad input
 * (exit 2), not a failed publish; what helps is a new build, not the help text.
 */
import { stat } from "node:fs/promises";
import { UsageError } from "../cli/errors.ts";
import { progress, say } from "../cli/log.ts";
import { ManifestError, checkDist, type Manifest } from "./manifest.ts";

export async function checkDistAsInput(dist: string, options: Parameters<typeof checkDist>[1]): Promise<Manifest> {
  const rebuild = "rebuild it with build-images.ts: nix develop -c bun scripts/build-images.ts (see docs/RUNNER_IMAGES.md)";
  if (!(await stat(dist).catch(() => null))?.isDirectory()) {
    throw new UsageError(`--dist ${dist}: no such directory`, "build one with build-images.ts: nix develop -c bun scripts/build-images.ts (it writes dist/)");
  }
  try {
    return await checkDist(dist, options);
  } catch (error) {
    if (error instanceof ManifestError) throw new UsageError(error.message, rebuild);
    throw error;
  }
}

/** Every byte of the dist re-hashed against the manifest, with progress. */
export async function rehashDist(dist: string): Promise<void> {
  say(`re-hashing ${dist} against its manifest`);
  await checkDistAsInput(dist, {
    rehash: true,
    onFile: (name, size) => {
      const bar = progress(`hashing ${name}`, size);
      return (done) => bar.update(done);
    },
  });
}
