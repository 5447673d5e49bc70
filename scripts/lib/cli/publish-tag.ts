/**
 * The tag a dist is published under: --tag, or in CI the pushed boot-v tag or a boot-dev- label
 * for a dispatch; checked against the one tag rule (trust/tags.ts). A dirty build goes out only
 * as a dev release.
 */
import type { Manifest } from "../build/manifest.ts";
import type { CiEnv } from "./ci-env.ts";
import { UsageError } from "./errors.ts";
import { DEV_TAG_PREFIX, isDevTag, pushedReleaseTag, tagProblem } from "../trust/tags.ts";

/**
 * The tag: --tag; in CI, the pushed boot-v* tag, or boot-dev-<run number>-<short sha> for a
 * dispatch; by hand it must be given.
 */
export function resolveTag(flag: string | undefined, ci: CiEnv, manifest: Manifest): string {
  let tag = flag;
  if (!tag && ci.inCi) {
    tag = pushedReleaseTag(ci) || `${DEV_TAG_PREFIX}${ci.runNumber || ci.runId}-${manifest.source.commit.slice(0, 7)}`;
  }
  if (!tag) throw new UsageError("no tag: give --tag boot-vX.Y.Z (or boot-dev-<label> for a test build)");
  const problem = tagProblem(tag);
  if (problem) throw new UsageError(`--tag ${tag}: ${problem}`);
  return tag;
}

/** A dirty build under a release tag would name a commit that does not describe its images. */
export function checkDirty(manifest: Manifest, tag: string, allowDirty: boolean): void {
  if (manifest.source.dirty && !isDevTag(tag) && !allowDirty) {
    throw new UsageError(
      `the dist was built with uncommitted changes on ${manifest.source.commit.slice(0, 12)}: commit, rebuild, or publish it under a boot-dev- tag (--allow-dirty overrides)`,
    );
  }
}
