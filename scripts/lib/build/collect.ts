/**
 * Collects a built target's files out of the Nix store into the staging directory under their
 * release names, hashing each in the same pass. The netboot iPXE script is rewritten on the way
 * to name the release files (ipxe.ts).
 */
import { realpath, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Failure } from "../cli/errors.ts";
import { copyAndHash, hashBytes } from "./hash.ts";
import { IpxeScriptError, rewriteIpxeScript } from "./ipxe-script.ts";
import { formatBytes, progress, say } from "../cli/log.ts";
import type { Artifact } from "./manifest.ts";
import type { BuiltTarget } from "./nix.ts";
import type { Target } from "./targets.ts";

/** The one file in `storePath` that `pattern` names; a `*` must match exactly one file. */
async function findFile(target: Target, storePath: string, pattern: string): Promise<string> {
  const matches: string[] = [];
  for await (const match of new Bun.Glob(pattern).scan({ cwd: storePath, onlyFiles: true, followSymlinks: true })) {
    matches.push(match);
  }
  if (matches.length === 0) throw new Failure(`${target.attr}: the build output ${storePath} has no ${pattern}`);
  if (matches.length > 1) {
    throw new Failure(`${target.attr}: the build output ${storePath} has ${matches.length} files matching ${pattern} (${matches.join(", ")}); expected one`);
  }
  return matches[0]!;
}

export async function collectTarget(target: Target, built: BuiltTarget, into: string): Promise<Artifact[]> {
  const renames = new Map(target.files.map((f) => [f.source.split("/").at(-1)!, f.name]));
  const artifacts: Artifact[] = [];
  for (const file of target.files) {
    const source = await findFile(target, built.storePath, file.source);
    // Entries of the netboot directory are symlinks into other store paths: copy what they point at.
    const real = await realpath(join(built.storePath, source));
    const destination = join(into, file.name);
    const record = { name: file.name, target: target.attr, source, storePath: built.storePath, drvPath: built.drvPath };

    if (file.name.endsWith(".ipxe")) {
      let script: string;
      try {
        script = rewriteIpxeScript(await Bun.file(real).text(), renames);
      } catch (error) {
        if (error instanceof IpxeScriptError) throw new Failure(`${target.attr}: ${error.message}`);
        throw error;
      }
      await writeFile(destination, script, { flag: "wx" });
      artifacts.push({ ...record, size: Buffer.byteLength(script), sha256: hashBytes(script), rewritten: true });
    } else {
      const size = Bun.file(real).size;
      const bar = progress(`collecting ${file.name}`, size);
      const digest = await copyAndHash(real, destination, (done) => bar.update(done));
      bar.finish();
      artifacts.push({ ...record, ...digest });
    }
    say(`collected ${file.name} (${formatBytes(artifacts.at(-1)!.size)}) from ${target.attr}:${source}`);
  }
  return artifacts;
}
