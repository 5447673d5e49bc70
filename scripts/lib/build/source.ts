/**
 * Which source a build comes from: the commit, whether the tree was dirty, and the version label
 * that names the build (the boot-v* tag when building one, otherwise a dev label from the
 * commit).
 */
import { $ } from "zx/core";
import type { CiEnv } from "../cli/ci-env.ts";
import { RELEASE_TAG_PREFIX, pushedReleaseTag } from "../trust/tags.ts";

/** The HEAD commit and the boot-v* tags on it, read with git from a local checkout. */
export async function gitHead(dir: string): Promise<{ commit: string; tags: string[] } | null> {
  const head = await $({ cwd: dir, quiet: true, nothrow: true })`git rev-parse HEAD`;
  if (head.exitCode !== 0) return null;
  const tags = await $({ cwd: dir, quiet: true, nothrow: true })`git tag --points-at HEAD --list ${`${RELEASE_TAG_PREFIX}*`}`;
  return { commit: head.stdout.trim(), tags: tags.stdout.split("\n").map((t) => t.trim()).filter(Boolean) };
}

/**
 * The version label. A boot-v* tag names the build only when the tree is clean and the tag is on
 * the built commit (in CI: the pushed tag of this run; by hand: a boot-v* tag at HEAD).
 * Anything else is a dev build: dev-<12 hex of the commit>, plus -dirty for uncommitted changes.
 */
export function versionLabel(commit: string, dirty: boolean, localTags: string[], ci: CiEnv): string {
  if (!dirty) {
    const pushed = pushedReleaseTag(ci);
    if (pushed && ci.sha === commit) return pushed;
    const local = [...localTags].sort().at(-1);
    if (!pushed && local) return local;
  }
  return `dev-${commit.slice(0, 12)}${dirty ? "-dirty" : ""}`;
}
