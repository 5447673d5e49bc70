/**
 * Which Forgejo server and repository a script talks to: from the flags, then the Forgejo Actions
 * environment, then the origin remote. The refusals that protect a release live here: plain HTTP
 * off loopback (the token would cross the network in clear), and CI publishing to the Codeberg
 * mirror (mirrors only distribute).
 */
import { $ } from "zx/core";
import type { CiEnv } from "./ci-env.ts";
import type { Flag } from "./command-line.ts";
import { UsageError } from "./errors.ts";
import { isLoopback } from "../forgejo/http.ts";

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
