/**
 * The publisher's provenance statement (provenance.ts), in two halves around first contact.
 * The statement names the repository as the server publishes it (its html_url,
 * forgejo/public-address.ts), which only the server's answer tells; everything that can be
 * refused without the server is refused before it is contacted:
 *   - before: a boot-v release without a key; a key that cannot sign (it signs the statement as
 *     it will be if the server names the address this run reaches it at, in memory, a dry run
 *     too); a dist the files cannot be written into;
 *   - after: the statement for the answered address, signed again only if that changed it, and
 *     the plan that writes it into the dist, still before any write to the server.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { UsageError } from "../cli/errors.ts";
import { say } from "../cli/log.ts";
import { hashBytes } from "../build/hash.ts";
import { checkWritable } from "../build/dist-writable.ts";
import { MANIFEST_FILE, SUMS_FILE, type Manifest } from "../build/manifest.ts";
import { asPublished, type PublicAddress } from "../forgejo/public-address.ts";
import { planProvenance, type Plan } from "../forgejo/publish-plan.ts";
import type { LocalFile } from "../forgejo/upload.ts";
import { STATEMENT_FILE, formatStatement, makeStatement } from "./provenance.ts";
import {
  NAMESPACE, REPOSITORY_ALLOWED_SIGNERS, SIGNING_HINT, SIGNING_KEY_ENV, STATEMENT_SIGNATURE_FILE, sign, verifySignature, type SigningKey,
} from "./signing.ts";
import { isReleaseTag } from "./tags.ts";

export interface ProvenanceInputs {
  dist: string;
  manifest: Manifest;
  tag: string;
  owner: string;
  repo: string;
  key: SigningKey | null;
  unsigned: boolean;
  /** The boot files' .sig (boot-signing.ts), covered by the statement and written beside it. */
  bootSigs: { name: string; bytes: Uint8Array }[];
}

/** What goes into the dist and out to the release once the address is known. */
export type Provenance = (address: PublicAddress) => Promise<{ plan: Plan; files: LocalFile[] }>;

/**
 * The signature as verify-release will see it by default: a key missing from the repository's
 * allowed_signers is worth a warning now, not a surprise for every downloader later. (Not an
 * error: auditors may pin the key instead.)
 */
async function checkAgainstRepository(statement: Uint8Array, signature: Uint8Array): Promise<void> {
  const names = { data: STATEMENT_FILE, signature: STATEMENT_SIGNATURE_FILE };
  const check = await verifySignature(statement, signature, names, NAMESPACE.publisher, { allowedSigners: REPOSITORY_ALLOWED_SIGNERS });
  if (check.ok) say(`signed by ${check.signer} (key ${check.fingerprint})`);
  else say(`warning: ${check.problem}: verify-release rejects this release unless that key is added there (docs/RUNNER_IMAGES.md, "Signing releases") or pinned with --signer-fingerprint`);
}

/**
 * Before first contact. A boot-v release without a key is refused: verify-release rejects
 * unsigned releases by default, so it could not be verified, and nothing would bind its files to
 * the tag. `assumed`: the address this run reaches the server at (public-address.ts).
 */
export async function prepareProvenance(p: ProvenanceInputs, assumed: PublicAddress): Promise<Provenance> {
  const { dist, manifest, tag, key } = p;
  if (!key && isReleaseTag(tag) && !p.unsigned) {
    throw new UsageError(
      `refusing to publish ${tag} unsigned: verify-release rejects a release without a signature, and nothing would bind its files to ${tag}; ` +
        `set ${SIGNING_KEY_ENV} (the CI secret) or --signing-key, or give --unsigned to publish it anyway`,
      SIGNING_HINT,
    );
  }
  if (!key) say(`warning: ${tag} goes out unsigned: verify-release rejects it unless run with --allow-unsigned`);
  const write = [...p.bootSigs.map((b) => b.name), STATEMENT_FILE, ...(key ? [STATEMENT_SIGNATURE_FILE] : [])];
  await checkWritable(dist, write, key ? [] : [STATEMENT_SIGNATURE_FILE]);
  const manifestBytes = await readFile(join(dist, MANIFEST_FILE));
  const sums = await readFile(join(dist, SUMS_FILE));
  const statementFor = (address: PublicAddress) =>
    Buffer.from(formatStatement(makeStatement(asPublished(manifest, p.owner, p.repo, address), manifestBytes, sums, tag, p.bootSigs, address.repository)));
  // Signed now, so that a key that cannot sign fails before first contact; usually this is the
  // statement that goes out (the server names the address it was reached at).
  const early = statementFor(assumed);
  const earlySignature = key ? await sign(early, key, NAMESPACE.publisher) : null;
  if (earlySignature) await checkAgainstRepository(early, earlySignature);

  return async (address) => {
    const statement = statementFor(address);
    const signature = key && earlySignature ? (statement.equals(early) ? earlySignature : await sign(statement, key, NAMESPACE.publisher)) : null;
    const what = `${STATEMENT_FILE} for ${tag}${signature ? `, signed into ${STATEMENT_SIGNATURE_FILE}` : " (unsigned)"}`;
    const files = [...p.bootSigs, { name: STATEMENT_FILE, bytes: statement }, ...(signature ? [{ name: STATEMENT_SIGNATURE_FILE, bytes: signature }] : [])];
    const plan = planProvenance(dist, what, files, signature ? [] : [STATEMENT_SIGNATURE_FILE]);
    const small = (name: string, bytes: Uint8Array): LocalFile => ({ name, path: join(dist, name), size: bytes.byteLength, sha256: hashBytes(bytes) });
    // After the artifacts, in order, manifest.json last: a release that has it is complete.
    return { plan, files: [small(SUMS_FILE, sums), ...files.map((f) => small(f.name, f.bytes)), small(MANIFEST_FILE, manifestBytes)] };
  };
}
