/**
 * Where the release is, as the public reaches it. FORGEJO_SERVER_URL (so the manifest's ci.server)
 * is the address the runner registered with, and --server is where this run reaches the API;
 * either may be internal (http://forgejo.internal:3000). Forgejo builds every html_url from its
 * ROOT_URL (`setting.AppURL + owner/name`, models/repo/repo.go), the address it publishes itself
 * at, so the repository's html_url (GET /repos/{owner}/{repo}) is what the signed statement and
 * the notes name.
 *
 * But the server's answer is not trusted to choose the host: a lying or tampered answer would
 * have the CI sign a statement for any repository anywhere. The answer must name the repository
 * under an address the operator gave: --server itself, or --public-url (in CI,
 * RUNNER_IMAGES_PUBLIC_URL) when the public reaches Forgejo elsewhere. Anything else stops the
 * run before it writes.
 */
import { Failure, UsageError } from "../cli/errors.ts";
import type { Manifest } from "../build/manifest.ts";

export interface PublicAddress {
  /** The repository's page: html_url, without a trailing slash. */
  repository: string;
  /** ROOT_URL without the trailing slash: what a run's pages in this repository hang under. */
  base: string;
}

/** ASCII-only lower case: Unicode case folding would make the Kelvin sign K equal k. */
const asciiLower = (s: string) => s.replace(/[A-Z]/g, (c) => c.toLowerCase());

/** Forgejo owner and repository names are unique ignoring (ASCII) case (lower_name): so is this comparison of owner/name. */
export const sameName = (a: string, b: string) => asciiLower(a) === asciiLower(b);

/**
 * A plain web address as origin + path without a trailing slash (URL's normal form: host in
 * lower case and punycode, no default port, backslashes read as slashes), or null when it holds
 * anything else: credentials, a query, a fragment, a scheme other than http(s).
 */
export function webBase(raw: string | undefined): string | null {
  if (!raw) return null;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return null;
  }
  const plain = (url.protocol === "https:" || url.protocol === "http:") && !url.username && !url.password && !url.search && !url.hash;
  return plain && !url.pathname.includes("//") ? `${url.origin}${url.pathname.replace(/\/+$/, "")}` : null;
}

/**
 * Two repository URLs name the same repository: the same address exactly (in normal form),
 * and owner/name equal ignoring ASCII case. What verify-release binds a statement with.
 */
export function sameRepository(a: string, b: string): boolean {
  const [x, y] = [webBase(a), webBase(b)];
  if (!x || !y) return a === b;
  const split = (u: string) => {
    const at = u.lastIndexOf("/", u.lastIndexOf("/") - 1);
    return [u.slice(0, at), u.slice(at)] as const;
  };
  const [[xBase, xName], [yBase, yName]] = [split(x), split(y)];
  return xBase === yBase && sameName(xName, yName);
}

/** --public-url (or RUNNER_IMAGES_PUBLIC_URL), checked as input: a plain web address, or nothing. */
export function publicUrlFlag(raw: string | undefined): string | null {
  if (raw === undefined || raw === "") return null;
  const base = webBase(raw);
  if (!base) throw new UsageError(`--public-url ${JSON.stringify(raw)} must be a plain http(s) address, without credentials, query or fragment: https://forgejo.example.org`);
  return base;
}

/**
 * The server's html_url for owner/repo, held to being a plain http(s) address of exactly
 * /owner/repo under --server or --public-url: anything else would put a page that is not this
 * repository's into a signed statement, so the run stops (before it writes anything).
 */
export function publicAddress(htmlUrl: string | undefined, owner: string, repo: string, allowed: { server: string; publicUrl: string | null }): PublicAddress {
  const url = webBase(htmlUrl);
  const suffix = `/${owner}/${repo}`;
  if (!url || !sameName(url.slice(-suffix.length), suffix)) {
    throw new Failure(
      `the server names ${owner}/${repo} at ${JSON.stringify(htmlUrl ?? null)}, which is not a plain http(s) address ending in ${suffix}: ` +
        "the signed statement and the notes cannot name where the release is; check the server's ROOT_URL",
    );
  }
  const base = url.slice(0, -suffix.length);
  const bases = [webBase(allowed.server), allowed.publicUrl];
  if (!bases.includes(base)) {
    throw new Failure(
      `the server says ${owner}/${repo} is public at ${base}, which is neither --server ${allowed.server}${allowed.publicUrl ? ` nor --public-url ${allowed.publicUrl}` : ""}: ` +
        `the signed statement names only an address you gave; if ${base} is where people reach this Forgejo, pass --public-url ${base} (in CI: the repository variable RUNNER_IMAGES_PUBLIC_URL)`,
    );
  }
  return { repository: url, base };
}

/** Before the server has answered: the address this run reaches it at, assumed public until it says otherwise. */
export const assumedAddress = (server: string, owner: string, repo: string): PublicAddress => ({ repository: `${server}/${owner}/${repo}`, base: server });

/**
 * The manifest as the statement and the notes describe it: a run of this repository's CI has its
 * pages under the public base too. A run of another repository keeps the address it recorded,
 * which is all that is known of it. A view: the manifest's bytes (signed by hash) are untouched.
 */
export function asPublished(manifest: Manifest, owner: string, repo: string, address: PublicAddress): Manifest {
  const ci = manifest.ci;
  if (!ci || !sameName(ci.repository, `${owner}/${repo}`)) return manifest;
  return { ...manifest, ci: { ...ci, server: address.base } };
}
