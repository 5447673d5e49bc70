/**
 * The publisher's look: the server's state as far as the plan (publish-plan.ts) depends on it,
 * read without changing anything. Deciding which assets are identical belongs here: an asset of
 * the right name and size is downloaded and hashed, and only one whose bytes match is reported
 * identical, so the plan (and a dry run) never guesses and the apply step never decides again.
 *
 * It looks no further than the plan needs: a published release that is identical (or will be
 * refused) costs the release lookup and its manifest.json, and nothing is hashed, here or in the
 * dist.
 */
import type { ForgejoClient, RepositoryAccess } from "./client.ts";
import { readBackAccess } from "./read-back.ts";
import type { Attachment, Release } from "./types.ts";
import { MANIFEST_FILE, type Manifest } from "../build/manifest.ts";
import { COUNTERSIGNATURE_FILE } from "../trust/signing.ts";
import { isDevTag } from "../trust/tags.ts";
import { releaseVerdict, type LookedUp, type RemoteAsset } from "./publish-plan.ts";
import { sameContent } from "./release-sync.ts";
import type { LocalFile } from "./upload.ts";

export interface LookInputs {
  tag: string;
  files: LocalFile[];
  manifest: Manifest;
  replacePublished: boolean;
  uploadedThisRun?: boolean;
  verify: "full" | "sizes";
  /** The repository as checkAccess read it: its visibility decides whether assets can be downloaded back. */
  repository: RepositoryAccess;
  /** Re-hashes the dist against its manifest before anything is compared or sent; null once done. */
  rehash: (() => Promise<void>) | null;
}

export async function lookUp(client: ForgejoClient, inputs: LookInputs): Promise<LookedUp> {
  const { tag, files } = inputs;
  // First, before anything is downloaded: can this token read assets back at all?
  const readBack = await readBackAccess(client, inputs.repository);
  const found = await client.findRelease(tag);
  const differences = found && !found.draft ? await publishedDifferences(client, found, files, inputs.manifest, readBack.possible) : [];
  const verdict = releaseVerdict(found, differences, inputs.replacePublished, inputs.uploadedThisRun);
  if (verdict === "identical" || verdict === "refused") {
    return { release: found && released(found, found.assets), differences, identical: [], devReleases: [], readBack };
  }
  // The plan refuses this before any write (publish-plan.ts): no need to re-hash 2 GB first.
  if (!readBack.possible && inputs.verify === "full") {
    return { release: found && released(found, found.assets), differences, identical: [], devReleases: [], readBack };
  }

  await inputs.rehash?.();
  // The release's own list: a lookup by tag may leave out what a draft holds.
  const assets = found ? await client.assets(found.id) : [];
  // Only what this run downloaded and hashed is identical; without read-back, nothing is.
  const identical: number[] = [];
  for (const file of readBack.possible ? files : []) {
    for (const candidate of assets.filter((a) => a.name === file.name && a.size === file.size)) {
      if (await sameContent(client, candidate, file, "to compare")) {
        identical.push(candidate.id);
        break;
      }
    }
  }
  return { release: found && released(found, assets), differences, identical, devReleases: await devReleasesOf(client, tag), readBack };
}

async function devReleasesOf(client: ForgejoClient, tag: string): Promise<LookedUp["devReleases"]> {
  const devReleases: LookedUp["devReleases"] = [];
  for await (const r of client.releases()) {
    if (isDevTag(r.tag_name) && !r.draft && r.tag_name !== tag) devReleases.push({ id: r.id, tag: r.tag_name, createdAt: r.created_at });
  }
  return devReleases;
}

const released = (r: Release, assets: Attachment[]) => ({
  id: r.id,
  draft: r.draft,
  url: r.html_url,
  author: r.author?.login ?? null,
  assets: assets.map((a): RemoteAsset => ({ id: a.id, name: a.name, size: a.size })),
});

/**
 * For a published release: the ways it differs from the dist, judged by asset names and sizes
 * and by the SHA-256s in its own uploaded manifest (no image is downloaded). Empty = identical.
 * When the token cannot read assets back (read-back.ts), names and sizes only.
 */
export async function publishedDifferences(
  client: ForgejoClient,
  release: Release,
  files: LocalFile[],
  manifest: Manifest,
  readable = true,
): Promise<string[]> {
  const assets = release.assets;
  const differences: string[] = [];
  const wanted = new Set(files.map((f) => f.name));
  // A maintainer's countersignature is added to a published release by hand, after this script
  // (docs/RUNNER_IMAGES.md, "Signing releases"): part of the release, not a difference from it.
  for (const a of assets) if (!wanted.has(a.name) && a.name !== COUNTERSIGNATURE_FILE) differences.push(`it has ${a.name}, the dist does not`);
  for (const file of files) {
    const found = assets.filter((a) => a.name === file.name);
    if (found.length === 0) differences.push(`${file.name} is missing`);
    else if (found.length > 1) differences.push(`${file.name} is there ${found.length} times`);
  }
  const remoteManifestAsset = readable ? assets.find((a) => a.name === MANIFEST_FILE) : undefined;
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

