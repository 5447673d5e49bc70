/**
 * Before the look: the server will take this release at all. The token may write the repository,
 * and the tag, if it exists, is at the dist's commit; if not, the server has that commit.
 */
import { Failure } from "../cli/errors.ts";
import type { ForgejoClient } from "./client.ts";

/** The token must reach the repository and be allowed to write it. */
export async function checkAccess(client: ForgejoClient): Promise<void> {
  const repo = await client.repository();
  if (repo.permissions && !repo.permissions.push) {
    throw new Failure(`the token can read ${client.repoName} but not write it: it needs write access to the repository's releases`);
  }
}

/**
 * The dist's commit is on the server (publishing creates the tag there; an unpushed
 * commit would only fail at the very end, after every upload), and an existing tag names it: a
 * moved tag is never "fixed" here.
 */
export async function checkTag(client: ForgejoClient, tag: string, commit: string): Promise<void> {
  const existing = await client.tag(tag);
  if (existing && existing.commit.sha !== commit) {
    throw new Failure(`tag ${tag} already exists at ${existing.commit.sha}, but the dist was built from ${commit}: build that commit, or use another tag`);
  }
  // A tag at the commit proves the server has it; otherwise ask.
  if (!existing && !(await client.hasCommit(commit))) {
    throw new Failure(`the dist was built from ${commit}, which ${client.repoName} on ${client.options.server} does not have: push it (git push origin ${commit}:refs/heads/<branch>), then re-run`);
  }
}
