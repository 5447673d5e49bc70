/**
 * The one rule for the tags releases are published under, used by publish-release.ts and by the
 * workflow (.forgejo/workflows/boot-images.yml runs scripts/check-tag.ts first, so a tag the
 * trigger fires on but the publisher would refuse fails in seconds, not after the build):
 *
 * - boot-v<anything>: a release (the workflow's `boot-v*` trigger); with a "-" in it, a
 *   prerelease (boot-v1.2.0-rc1);
 * - boot-dev-<label>: a dev prerelease, pruned by --keep-dev;
 * - and in both, only names git accepts as a tag (`git check-ref-format refs/tags/<name>`, whose
 *   rules are below): Forgejo creates the tag with `git tag` only when the release is published,
 *   so a name git refuses would upload everything, then fail with a bare 500 (services/release/
 *   release.go createTag, ErrInvalidTagName; forgejo-release-api.md §15a);
 * - no "/": git allows it, but the workflow's `boot-v*` never matches one (a glob's `*` stops at
 *   "/") and Forgejo's release-by-tag route takes one path segment.
 */
import { pushedTag, type CiEnv } from "../cli/ci-env.ts";

export const RELEASE_TAG_PREFIX = "boot-v";
export const DEV_TAG_PREFIX = "boot-dev-";

/** A boot-v tag: a release, never published unsigned. */
export const isReleaseTag = (tag: string) => tag.startsWith(RELEASE_TAG_PREFIX);
export const isDevTag = (tag: string) => tag.startsWith(DEV_TAG_PREFIX) && tag.length > DEV_TAG_PREFIX.length;
/** Dev tags and release tags with a "-" after the prefix (boot-v1.2.0-rc1) are prereleases. */
export const isPrereleaseTag = (tag: string) => isDevTag(tag) || (isReleaseTag(tag) && tag.includes("-", RELEASE_TAG_PREFIX.length));

/** The pushed tag when this run was started by pushing a boot-v tag, else "". */
export function pushedReleaseTag(ci: CiEnv): string {
  const tag = pushedTag(ci);
  return isReleaseTag(tag) ? tag : "";
}

/**
 * Why git refuses `refs/tags/<tag>`, or null if it accepts it: the rules of
 * git-check-ref-format(1), numbered as there; rule 9 (a refname that is just "@") cannot apply under refs/tags/ (refs.c check_refname_component; tests/lib.test.ts holds this against the real git).
 */
export function gitRefusal(tag: string): string | null {
  const parts = tag.split("/");
  if (parts.some((p) => p.startsWith("."))) return "a part of it starts with a dot (rule 1)";
  if (parts.some((p) => p.endsWith(".lock"))) return 'a part of it ends with ".lock" (rule 1)';
  if (tag.includes("..")) return 'it contains ".." (rule 3)';
  if (/[\x00-\x20\x7f~^:]/.test(tag)) return "it contains a space, a control character, ~, ^ or : (rule 4)";
  if (/[?*[]/.test(tag)) return "it contains ?, * or [ (rule 5)";
  if (tag.startsWith("/") || tag.endsWith("/") || tag.includes("//")) return "it starts or ends with / or has // (rule 6)";
  if (tag.endsWith(".")) return "it ends with a dot (rule 7)";
  if (tag.includes("@{")) return 'it contains "@{" (rule 8)';
  if (tag.includes("\\")) return "it contains a backslash (rule 10)";
  return null;
}

/** Why a tag cannot be published under, or null when it can. */
export function tagProblem(tag: string): string | null {
  const released = isReleaseTag(tag) && tag.length > RELEASE_TAG_PREFIX.length;
  if (!released && !isDevTag(tag)) return "a release tag is boot-v<version> (e.g. boot-v1.2.0) or boot-dev-<label>";
  const refused = gitRefusal(tag);
  if (refused) return `git refuses it as a tag name: ${refused}`;
  if (tag.includes("/")) return "it contains /, which the workflow's boot-v* trigger never matches and Forgejo's release look-up cannot take";
  return null;
}
