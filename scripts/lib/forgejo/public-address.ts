/**
 * Where the release is, as the public reaches it. FORGEJO_SERVER_URL (so the manifest's ci.server)
 * is the address the runner registered with, and --server is where this run reaches the API;
 * either may be internal (http://forgejo.internal:3000). Forgejo builds every html_url from its
 * ROOT_URL, the address it publishes itself at, so the repository's html_url (GET
 * /repos/{owner}/{repo}) is what the signed statement and the notes name.
 */
import { Failure } from "../cli/errors.ts";
import type { Manifest } from "../build/manifest.ts";
import { webAddress } from "./release-fields.ts";

export interface PublicAddress {
  /** The repository's page: html_url, without a trailing slash. */
  repository: string;
  /** ROOT_URL without the trailing slash: what a run's pages in this repository hang under. */
  base: string;
}

/** Forgejo owner and repository names are unique case-insensitively (lower_name): so is this comparison. */
export const sameRepository = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();

/**
 * The server's html_url for owner/repo, held to being a plain http(s) address that ends in
 * /owner/repo: anything else would put a page that is not this repository's into a signed
 * statement, so the run stops (before it writes anything) rather than guess.
 */
export function publicAddress(htmlUrl: string | undefined, owner: string, repo: string): PublicAddress {
  const url = webAddress(htmlUrl);
  const suffix = `/${owner}/${repo}`;
  if (!url || !sameRepository(url.slice(-suffix.length), suffix)) {
    throw new Failure(
      `the server names ${owner}/${repo} at ${JSON.stringify(htmlUrl ?? null)}, which is not a plain http(s) address ending in ${suffix}: ` +
        "the signed statement and the notes cannot name where the release is; check the server's ROOT_URL",
    );
  }
  return { repository: url, base: url.slice(0, -suffix.length) };
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
  if (!ci || !sameRepository(ci.repository, `${owner}/${repo}`)) return manifest;
  return { ...manifest, ci: { ...ci, server: address.base } };
}
