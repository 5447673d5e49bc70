/**
 * verify-release's way to a published release: the server first (a dead or wrong --server is
 * named within seconds), then the repository, then the release, so that "no repository" and
 * "no release" are different messages.
 */
import { Failure } from "../cli/errors.ts";
import { say } from "../cli/log.ts";
import { ciEnv } from "../cli/ci-env.ts";
import { resolveRepo, resolveServer } from "../cli/server-flags.ts";
import { readToken } from "../cli/token.ts";
import { ForgejoClient } from "./client.ts";
import { tuningFromEnv } from "./http.ts";
import type { Release } from "./types.ts";

export interface FindReleaseFlags {
  server: string | undefined;
  repo: string | undefined;
  insecureHttp: boolean;
  tokenFile: string | undefined;
  /** A writer (promote.ts), like publish-release: FORGEJO_TOKEN/GITHUB_TOKEN count wherever --server points. */
  writing?: boolean;
}

/** `tag` is a tag name or "latest" (the newest published release). */
export async function findRelease(
  flags: FindReleaseFlags,
  tag: string,
): Promise<{ client: ForgejoClient; release: Release; repository: string; newestRelease: string | null }> {
  const ci = ciEnv();
  const server = resolveServer(flags.server, ci, { insecureHttp: flags.insecureHttp, publishing: false });
  // A token goes only where the user sent it (--token-file), or to the server this CI run names:
  // an operator's exported publishing token never reaches a mirror or another --server.
  const ciServer = ci.inCi && ci.serverUrl ? resolveServer(ci.serverUrl, ci, { insecureHttp: true, publishing: false }) : null;
  const token = flags.tokenFile || flags.writing || ciServer === server ? await readToken(flags.tokenFile, { required: false }) : "";
  const { owner, repo } = await resolveRepo(flags.repo, ci);
  const client = new ForgejoClient({ server, owner, repo, token, tuning: tuningFromEnv() });
  // First contact: a dead server is named in seconds, a --server with a path as such (not as --repo's 404).
  await client.probe();
  // Forgejo answers 404 both for a repository that does not exist and for a private one the
  // caller may not see: only the token (or its absence) tells which to suggest.
  if (!(await client.findRepository())) {
    throw new Failure(
      token
        ? `${server} has no repository ${owner}/${repo} that this token can read: check --repo, and that the token's user has read access`
        : `${server} has no public repository ${owner}/${repo}: check --repo; if it is private, give a read token with --token-file (a token in the environment is sent only to the server of the CI run)`,
    );
  }
  const release = tag === "latest" ? await client.latestRelease() : await client.releaseByTag(tag);
  if (!release) throw new Failure(`${owner}/${repo} on ${server} has no ${tag === "latest" ? "published release" : `release ${tag}`}`);
  if (release.draft) say(`note: ${release.tag_name} is a draft: not yet visible to downloaders`);
  // `latest` is a pointer the server controls: the newest published release in its own list is
  // what the answer is held to (a server that also lies in the list is caught by the signed kind
  // only, see docs/verifying.md).
  const newestRelease = tag === "latest" ? await newestPublishedRelease(client) : null;
  return { client, release, repository: `${server}/${owner}/${repo}`, newestRelease };
}

/** boot-vX.Y.Z as numbers, for ordering; null for any other tag (a prerelease has a suffix). */
function releaseVersion(tag: string): number[] | null {
  const m = /^boot-v(\d+)\.(\d+)\.(\d+)$/.exec(tag);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : null;
}

async function newestPublishedRelease(client: ForgejoClient): Promise<string | null> {
  let newest: { tag: string; version: number[] } | null = null;
  for await (const r of client.releases()) {
    const version = r.draft || r.prerelease ? null : releaseVersion(r.tag_name);
    if (!version) continue;
    const [a, b, c] = version as [number, number, number];
    const [x, y, z] = (newest?.version ?? [-1, -1, -1]) as [number, number, number];
    if (a - x || b - y || c - z ? (a - x || b - y || c - z) > 0 : false) newest = { tag: r.tag_name, version };
  }
  return newest?.tag ?? null;
}
