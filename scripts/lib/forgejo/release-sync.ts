/**
 * The mechanics of filling a draft release, one asset per name (what to do is the plan's,
 * publish-plan.ts): comparing an asset's bytes with a local file, uploading under a temporary
 * name with retries, and proving the release holds exactly the dist.
 *
 * Forgejo accepts duplicate asset names silently and reports no digests
 * (forgejo-release-api.md §9, §3): an asset is identical only if its downloaded bytes hash to
 * the local file's SHA-256. After a proxy error an upload may or may not have been stored, so a
 * retry first re-lists and removes what the failed attempt left.
 */
import { Failure } from "../cli/errors.ts";
import { HttpError, type ForgejoClient } from "./client.ts";
import type { Attachment } from "./types.ts";
import { NetworkError, retryableStatus } from "./http.ts";
import { progress, say } from "../cli/log.ts";
import { TEMPORARY } from "./publish-plan.ts";
import { uploadAsset, type LocalFile } from "./upload.ts";

/** Downloads an asset, with progress, and compares its SHA-256 with the local file's. */
export async function sameContent(client: ForgejoClient, asset: Attachment, file: LocalFile, why: string): Promise<boolean> {
  if (asset.size !== file.size) return false;
  const what = `downloading ${asset.name} ${why}`;
  const bar = progress(what, asset.size);
  const digest = await client.downloadDigest(client.assetUrl(asset), what, (done) => bar.update(done));
  bar.finish();
  return digest.size === file.size && digest.sha256 === file.sha256;
}

/**
 * Uploads under a fresh temporary name, retrying what a retry can fix. Before each retry the
 * assets are listed again and whatever the failed attempt left under that name is removed.
 */
export async function uploadWithRetries(client: ForgejoClient, releaseId: number, file: LocalFile): Promise<Attachment> {
  const retries = client.options.tuning.retries;
  for (let attempt = 0; ; attempt++) {
    const temporary = `${file.name}${TEMPORARY}${crypto.randomUUID().slice(0, 8)}`;
    try {
      return await uploadAsset(client, releaseId, temporary, file);
    } catch (error) {
      const transient =
        (error instanceof NetworkError && error.transient) ||
        (error instanceof HttpError && retryableStatus(error.status, false));
      // A refused connection stored nothing; anything else may have stored the upload.
      if (!(error instanceof NetworkError && error.code === "ECONNREFUSED")) await removeLeftovers(client, releaseId, temporary);
      if (!transient || attempt >= retries) throw error;
      await client.pause(attempt + 1, (error as Error).message, error instanceof HttpError ? error.retryAfter : null);
    }
  }
}

/**
 * Removes what a failed upload may have stored under its temporary name. If that fails too (the
 * server is gone), it is a note, never the error: the upload's failure is what the operator must
 * see, and a re-run removes the leftover anyway.
 */
async function removeLeftovers(client: ForgejoClient, releaseId: number, temporary: string): Promise<void> {
  try {
    for (const left of (await client.assets(releaseId)).filter((a) => a.name === temporary)) {
      await client.deleteAsset(releaseId, left.id, left.name);
    }
  } catch (error) {
    if (!(error instanceof Failure)) throw error;
    say(`note: could not remove what the failed upload may have left as ${temporary} (${error.message}); a re-run removes it`);
  }
}

/** The release does not (yet) hold exactly the dist: another round of sync can fix it. */
export class ReleaseDrift extends Failure {}

/**
 * Checks the release holds exactly the dist: every name once, nothing else, sizes equal; with
 * `full`, every asset's bytes hash to the manifest's SHA-256 (downloaded back unless this run
 * already hashed them).
 */
export async function verifyAssets(
  client: ForgejoClient,
  releaseId: number,
  files: LocalFile[],
  mode: "full" | "sizes",
  verified: Set<number>,
): Promise<void> {
  const assets = await client.assets(releaseId);
  const problems: string[] = [];
  const wanted = new Set(files.map((f) => f.name));
  for (const a of assets) if (!wanted.has(a.name)) problems.push(`unexpected asset ${a.name}`);
  for (const file of files) {
    const found = assets.filter((a) => a.name === file.name);
    if (found.length !== 1) {
      problems.push(`${found.length} assets named ${file.name}`);
      continue;
    }
    const asset = found[0]!;
    if (asset.size !== file.size) {
      problems.push(`${file.name} is ${asset.size} bytes on the server, ${file.size} here`);
    } else if (mode === "full" && !verified.has(asset.id)) {
      if (await sameContent(client, asset, file, "back to verify it")) verified.add(asset.id);
      else problems.push(`${file.name} on the server does not hash to ${file.sha256}`);
    }
  }
  if (problems.length > 0) throw new ReleaseDrift(`the release does not match the dist: ${problems.join("; ")}`);
}
