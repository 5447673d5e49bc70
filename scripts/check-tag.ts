#!/usr/bin/env bun
/**
 * check-tag: can this tag be published? The workflow's first step on a tag push, so a tag the
 * `boot-v*` trigger fires on but publish-release.ts would refuse fails in seconds, not after the
 * build.
 *
 *   1. the tag: the one given, or in CI the tag whose push started the run (a dispatch publishes
 *      under boot-dev-<run>-<sha>, valid by construction, so there is nothing to check);
 *   2. the one tag rule (lib/trust/tags.ts): exit 2 naming the rule broken;
 *   3. for a boot-v tag in CI, the signing secret is set (the workflow says only whether, never
 *      the key): a boot-v release is never published unsigned.
 */
import { ciEnv, pushedTag } from "./lib/cli/ci-env.ts";
import { isReleaseTag, tagProblem } from "./lib/trust/tags.ts";

/** Set by the workflow's tag check to whether the signing secret is set: "true" or "false". */
export const SIGNING_KEY_IS_SET_ENV = "RUNNER_IMAGES_SIGNING_KEY_IS_SET";

const USAGE = `usage: bun scripts/check-tag.ts [<tag>]
  Checks that <tag> (default: the tag whose push started this CI run) can be published: the
  one tag rule of publish-release.ts and the workflow. Exit 0 it can, 2 it cannot.`;

function refuse(line: string): never {
  console.error(line);
  process.exit(2);
}

if (import.meta.main) {
  const arg = process.argv[2];
  if (arg === "--help" || arg === "-h") {
    console.log(USAGE);
    process.exit(0);
  }
  if (arg?.startsWith("-") || process.argv.length > 3) refuse(`error: check-tag.ts takes one tag name and no flags\n${USAGE}`);

  // 1. The tag.
  const tag = arg ?? pushedTag(ciEnv());
  if (!tag) {
    console.error("check-tag.ts: not a tag push; a dispatch publishes under boot-dev-<run>-<sha>, valid by construction");
    process.exit(0);
  }

  // 2. The rule.
  const problem = tagProblem(tag);
  if (problem) refuse(`error: tag ${tag} cannot be published: ${problem}; delete it (git push --delete origin ${tag}) and push a tag that follows the rule`);

  // 3. The signing secret, for a release.
  if (isReleaseTag(tag) && process.env[SIGNING_KEY_IS_SET_ENV] === "false") {
    refuse(
      `error: tag ${tag} cannot be published: the repository secret RUNNER_IMAGES_SIGNING_KEY is not set, and a boot-v release is never ` +
        `published unsigned; add it (docs/RUNNER_IMAGES.md, "Signing releases"), then re-run this workflow`,
    );
  }
  console.error(`tag ${tag} can be published`);
}
