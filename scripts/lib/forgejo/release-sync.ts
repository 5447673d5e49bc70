/**
 * Makes a draft release hold exactly the dist's files, one asset per name, and proves it.
 *
 * Forgejo accepts duplicate asset names silently and reports no digests
 * (forgejo-release-api.md §9, §3), so the client does what the server does not:
 * - an asset is identical only if its bytes hash to the local file's SHA-256 (downloaded back
 *   when the size matches; nothing is uploaded for it);
 * - a changed or missing file is uploaded under a temporary name, the old asset(s) deleted, then
 *   the temporary one renamed: no wrong bytes ever sit under a final name;
 * - anything else on the release (leftover temporaries of a crashed run, duplicates, files the
 *   dist does not have) is deleted.
 * After a proxy error the upload may or may not have been stored, so a retry first re-lists and
 * removes what the failed attempt left.
 */
import { Failure } from "../cli/errors.ts";
import { HttpError, type ForgejoClient } from "./client.ts";
import type { Attachment, Release } from "./types.ts";
import { NetworkError, retryableStatus } from "./http.ts";
import { formatBytes, progress, say } from "../cli/log.ts";
import { MANIFEST_FILE, type Manifest } from "../build/manifest.ts";
import { COUNTERSIGNATURE_FILE } from "../trust/signing.ts";
import { uploadAsset, type LocalFile } from "./upload.ts";

export interface SyncReport {
  uploaded: string[];
  skipped: string[];
  deleted: string[];
  /** Assets whose stored bytes this run has already downloaded and hashed. */
  verified: Set<number>;
}

/** A line of the plan: printed as it happens, and all a --dry-run does. */
export type PlanLine = (line: string) => void;

const TEMPORARY = ".partial-";

/** Downloads an asset, with progress, and compares its SHA-256 with the local file's. */
export async function sameContent(client: ForgejoClient, asset: Attachment, file: LocalFile, why: string): Promise<boolean> {
  if (asset.size !== file.size) return false;
  const what = `downloading ${asset.name} ${why}`;
  const bar = progress(what, asset.size);
  const digest = await client.downloadDigest(client.assetUrl(asset), what, (done) => bar.update(done));
  bar.finish();
  return digest.size === file.size && digest.sha256 === file.sha256;
}

export async function syncAssets(
  client: ForgejoClient,
  release: Release,
  files: LocalFile[],
  options: { dryRun: boolean; plan: PlanLine },
): Promise<SyncReport> {
  const report: SyncReport = { uploaded: [], skipped: [], deleted: [], verified: new Set() };
  const { plan, dryRun } = options;
  const remove = async (asset: Attachment, why: string) => {
    plan(`${dryRun ? "would delete" : "deleting"} ${asset.name} (${why})`);
    if (!dryRun) await client.deleteAsset(release.id, asset.id, asset.name);
    report.deleted.push(asset.name);
  };

  const remote = await client.assets(release.id);
  const wanted = new Set(files.map((f) => f.name));
  for (const asset of remote.filter((a) => !wanted.has(a.name))) {
    await remove(asset, asset.name.includes(TEMPORARY) ? "left by an interrupted run" : "not in the dist");
  }

  for (const file of files) {
    const candidates = remote.filter((a) => a.name === file.name);
    let keeper: Attachment | undefined;
    for (const candidate of candidates.filter((a) => a.size === file.size)) {
      if (dryRun) {
        keeper = candidate;
        break;
      }
      if (await sameContent(client, candidate, file, "to compare")) {
        keeper = candidate;
        report.verified.add(candidate.id);
        break;
      }
    }
    if (keeper) {
      plan(`${dryRun ? "would skip" : "skipping"} ${file.name}: ${dryRun ? "same size on the server (a real run compares its SHA-256 by download)" : "already there, identical"}`);
      report.skipped.push(file.name);
      for (const duplicate of candidates.filter((a) => a !== keeper)) await remove(duplicate, "duplicate name");
      continue;
    }
    const how = candidates.length > 0 ? "replacing" : "uploading";
    plan(`${dryRun ? `would be ${how}` : how} ${file.name} (${formatBytes(file.size)})`);
    report.uploaded.push(file.name);
    if (dryRun) continue;
    // Not marked verified: the hash taken while sending proves what left here, not what the
    // server stored; --verify full downloads it back.
    const uploaded = await uploadWithRetries(client, release.id, file);
    for (const old of candidates) await client.deleteAsset(release.id, old.id, old.name);
    const renamed = await client.renameAsset(release.id, uploaded.id, file.name);
    if (!renamed) throw new ReleaseDrift(`the uploaded ${file.name} disappeared before it could be renamed (another run at work?)`);
  }
  return report;
}

/**
 * Uploads under a fresh temporary name, retrying what a retry can fix. Before each retry the
 * assets are listed again and whatever the failed attempt left under that name is removed.
 */
async function uploadWithRetries(client: ForgejoClient, releaseId: number, file: LocalFile): Promise<Attachment> {
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
  release: Release,
  files: LocalFile[],
  mode: "full" | "sizes",
  verified: Set<number>,
): Promise<void> {
  const assets = await client.assets(release.id);
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

/**
 * For a published release: the ways it differs from the dist, judged by asset names and sizes
 * and by the SHA-256s in its own uploaded manifest (no image is downloaded). Empty = identical.
 */
export async function publishedDifferences(
  client: ForgejoClient,
  release: Release,
  files: LocalFile[],
  manifest: Manifest,
): Promise<string[]> {
  const assets = release.assets;
  const differences: string[] = [];
  const wanted = new Set(files.map((f) => f.name));
  // A maintainer's countersignature is added to a published release by hand, after this script
  // (docs/signing.md, the countersignature): part of the release, not a difference from it.
  for (const a of assets) if (!wanted.has(a.name) && a.name !== COUNTERSIGNATURE_FILE) differences.push(`it has ${a.name}, the dist does not`);
  for (const file of files) {
    const found = assets.filter((a) => a.name === file.name);
    if (found.length === 0) differences.push(`${file.name} is missing`);
    else if (found.length > 1) differences.push(`${file.name} is there ${found.length} times`);
  }
  const remoteManifestAsset = assets.find((a) => a.name === MANIFEST_FILE);
  let remote: Manifest | null = null;
  if (remoteManifestAsset) {
    try {
      const bytes = await client.downloadSmall(client.assetUrl(remoteManifestAsset), `downloading ${MANIFEST_FILE}`);
      remote = JSON.parse(new TextDecoder().decode(bytes)) as Manifest;
    } catch (error) {
      if (!(error instanceof SyntaxError)) throw error;
      differences.push(`its ${MANIFEST_FILE} is not valid JSON`);
    }
  }
  for (const artifact of manifest.artifacts) {
    const asset = assets.find((a) => a.name === artifact.name);
    if (asset && asset.size !== artifact.size) differences.push(`${artifact.name} is ${asset.size} bytes there, ${artifact.size} here`);
    const theirs = remote?.artifacts?.find((a) => a.name === artifact.name);
    if (remote && theirs?.sha256 !== artifact.sha256) differences.push(`${artifact.name} has another SHA-256 there`);
  }
  if (remote && remote.source?.commit !== manifest.source.commit) {
    differences.push(`it was built from ${remote.source?.commit ?? "an unknown commit"}, the dist from ${manifest.source.commit}`);
  }
  return [...new Set(differences)];
}

