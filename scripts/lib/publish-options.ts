/**
 * Where and what publish-release publishes: the server, repository, tag and token, from the
 * flags, then the Forgejo Actions environment, then git (verify-release reads the server,
 * repository and token the same way). Every refusal that protects the release lives here: plain
 * HTTP off loopback, CI publishing to the Codeberg mirror, a dirty build under a release tag, a
 * token on the command line.
 */
import { $ } from "zx/core";
import { readFile } from "node:fs/promises";
import { UsageError, type Flag } from "./cli.ts";
import type { CiEnv } from "./ci.ts";
import { isLoopback } from "./http.ts";
import { addSecret } from "./log.ts";
import type { Manifest } from "./manifest.ts";
import { DEV_TAG_PREFIX, isDevTag, pushedReleaseTag, tagProblem } from "./tags.ts";

/** The flags that say which server and repository, shared by publish and verify. */
export const SERVER_FLAGS: Flag[] = [
  { name: "server", value: "url", description: "Forgejo server, e.g. https://forge.example (default: FORGEJO_SERVER_URL, then GITHUB_SERVER_URL)" },
  { name: "repo", value: "owner/name", description: "Repository (default: FORGEJO_REPOSITORY/GITHUB_REPOSITORY, then the origin remote)" },
  { name: "insecure-http", description: "Allow a plain http:// server that is not on loopback" },
];

/** The mirror: it distributes the repository, never builds or publishes (docs/decisions/0001). */
const MIRROR_HOST = "codeberg.org";


export function resolveServer(flag: string | undefined, ci: CiEnv, options: { insecureHttp: boolean; publishing: boolean }): string {
  const raw = flag ?? ci.serverUrl;
  if (!raw) throw new UsageError("no server: give --server https://<forgejo host> (in CI it comes from FORGEJO_SERVER_URL)");
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UsageError(`--server ${raw} is not a URL`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") throw new UsageError(`--server ${raw} must be an https:// URL`);
  if (url.protocol === "http:" && !isLoopback(url) && !options.insecureHttp) {
    throw new UsageError(`--server ${raw} is plain http: the token would cross the network unencrypted; use https:// (or --insecure-http if you really mean it)`);
  }
  if (url.username || url.password || url.search || url.hash) throw new UsageError(`--server ${raw} must be a plain URL, without credentials or query`);
  if (options.publishing && ci.inCi && url.hostname.toLowerCase() === MIRROR_HOST) {
    throw new UsageError(`refusing to publish to ${MIRROR_HOST} from CI: the Codeberg mirror only distributes; releases are published on the primary host`);
  }
  // A trailing slash gives //api/v1 paths, which Forgejo answers with 401.
  return `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
}

/** owner/name from --repo, the CI environment, or the origin remote's URL. */
export async function resolveRepo(flag: string | undefined, ci: CiEnv): Promise<{ owner: string; repo: string }> {
  let full = flag ?? ci.repository;
  if (!full) {
    const remote = await $({ quiet: true, nothrow: true })`git remote get-url origin`;
    const m = /[:/]([^/:]+)\/([^/]+?)(?:\.git)?\/?$/.exec(remote.stdout.trim());
    if (remote.exitCode !== 0 || !m) throw new UsageError("no repository: give --repo owner/name (no origin remote to read it from)");
    full = `${m[1]}/${m[2]}`;
  }
  const m = /^([A-Za-z0-9_.-]+)\/([A-Za-z0-9_.-]+)$/.exec(full);
  if (!m) throw new UsageError(`--repo ${full} is not owner/name`);
  return { owner: m[1]!, repo: m[2]! };
}

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

/**
 * The token, from --token-file or the environment (FORGEJO_TOKEN, then GITHUB_TOKEN), trimmed.
 * Never from a flag value: argv is visible to every process on the machine. It is registered as
 * a secret at once, so no output can show it.
 */
export async function readToken(
  tokenFile: string | undefined,
  options: { required: boolean },
  env: Record<string, string | undefined> = process.env,
): Promise<string> {
  let token: string;
  if (tokenFile) {
    try {
      token = (await readFile(tokenFile, "utf8")).trim();
    } catch {
      throw new UsageError(`--token-file ${tokenFile} cannot be read`);
    }
  } else {
    token = (env.FORGEJO_TOKEN || env.GITHUB_TOKEN || "").trim();
  }
  if (!token && !options.required) return "";
  if (!token) throw new UsageError("no token: set FORGEJO_TOKEN (CI sets it from the workflow token) or give --token-file");
  if (/\s/.test(token)) throw new UsageError("the token contains white space; is the token file right?");
  addSecret(token);
  return token;
}
