/**
 * The checks verify-release makes of a release (or a local dist), one function each; the script
 * lists them in order and runs them with checklist.ts. Each returns its problems as a result, so
 * one more check is one more entry in that list, and a check that must wait for another names it
 * in `needs`.
 */
import { join } from "node:path";
import { MANIFEST_FILE, compareSumsWithManifest } from "../build/manifest.ts";
import { formatBytes, progress, say } from "../cli/log.ts";
import type { ForgejoClient } from "../forgejo/client.ts";
import { sameRepository } from "../forgejo/public-address.ts";
import type { ReleaseFiles } from "../forgejo/release-files.ts";
import { passed, problemsFound, skipped, type Check } from "./checklist.ts";
import { STATEMENT_FILE, compareStatement } from "./provenance.ts";
import { rebuild, type RebuildDepth } from "./rebuild.ts";
import { DOCUMENT_FILES, type ReleaseDocuments } from "./release-documents.ts";
import { bootSignatureNames } from "./boot-signing.ts";
import { COUNTERSIGNATURE_FILE, NAMESPACE, STATEMENT_SIGNATURE_FILE, verifySignature, type SignatureCheck, type Trust } from "./signing.ts";

/** The checks' names: what the report and --json call them, and what `needs` refers to. */
export const CHECK = {
  asked: "the release is the one asked for",
  sums: `${MANIFEST_FILE} matches SHA256SUMS`,
  statement: "statement parses",
  signature: "publisher's signature",
  countersignature: "maintainer's countersignature",
  statementMatches: `statement matches the tag, ${MANIFEST_FILE} and SHA256SUMS`,
  gitTag: "git tag is at the statement's commit",
  onlyManifestFiles: "release holds only the manifest's files",
  bytes: "every file, byte for byte",
  rebuild: "rebuild from the statement's commit",
} as const;

export interface ReleaseUnderCheck {
  files: ReleaseFiles;
  documents: ReleaseDocuments;
  /** The tag the files must be for; null for a --dist without --tag. */
  expectedTag: string | null;
  /** The server of a published release; null for a local dist. */
  client: ForgejoClient | null;
  /** The --dist directory, if that is what is checked. */
  dist: string | null;
  /**
   * What the user asked for, to hold the server's answer to: the tag ("latest" included), the
   * tag the server answered with and whether it marked it a prerelease, the newest published
   * release in the server's own list (for "latest"), and the repository the statement must name.
   */
  asked: {
    tag: string | null;
    servedTag: string | null;
    servedPrerelease: boolean;
    newestRelease: string | null;
    repository: string | null;
  };
}

/** What the checks learn that the report and the mirror need. */
export interface Findings {
  signature: SignatureCheck | null;
  countersignature: SignatureCheck | null;
  /** The files whose bytes matched, in manifest order. */
  checked: string[];
}

export const newFindings = (): Findings => ({ signature: null, countersignature: null, checked: [] });

const statementCommit = (r: ReleaseUnderCheck) => r.documents.statement!.predicate.buildDefinition.externalParameters.source.commit;
const statementTag = (r: ReleaseUnderCheck) => r.documents.statement!.predicate.buildDefinition.externalParameters.release.tag;

/**
 * The server's answer against the question: a server that hands out a genuine, signed older
 * release (or a dev prerelease) for the tag asked passes every other check, since those files are
 * what they say they are. Only the tag asked for, the signed kind and the signed repository tell.
 */
export const releaseIsTheOneAsked = (r: ReleaseUnderCheck): Check => ({
  name: CHECK.asked,
  needs: [CHECK.statement],
  run() {
    const { tag, servedTag, servedPrerelease, newestRelease, repository } = r.asked;
    const signed = r.documents.statement!.predicate.buildDefinition.externalParameters;
    const problems: string[] = [];
    if (tag !== null && tag !== "latest" && servedTag !== null && servedTag !== tag) {
      problems.push(`asked for ${tag}, the server answered with release ${servedTag}: a server handing out another (older) release is a downgrade`);
    }
    if (tag === "latest") {
      if (signed.release.kind !== "release" || servedPrerelease) {
        problems.push(`latest resolved to ${signed.release.tag}, a ${servedPrerelease ? "prerelease" : signed.release.kind} by its ${servedPrerelease ? "release" : "signed statement"}: latest is only ever a release`);
      }
      if (newestRelease !== null && servedTag !== newestRelease) {
        problems.push(`latest resolved to ${servedTag}, but the newest published release is ${newestRelease}: a downgrade`);
      }
    }
    // Where the publisher signed that it put the release (the server's html_url, so in the
    // server's spelling: Forgejo names are case-insensitive); older statements: the CI source repository.
    const boundTo = signed.release.repository ?? signed.source.repository;
    if (repository !== null && !sameRepository(boundTo, repository)) {
      problems.push(`the signed statement is for repository ${boundTo}, not ${repository} (to verify a copy held elsewhere, name the original: --statement-repo)`);
    }
    return problems.length > 0 ? problemsFound(problems) : passed([`${signed.release.tag} (${signed.release.kind}) in ${signed.release.repository ?? signed.source.repository}`]);
  },
});

export const sumsMatchManifest = (r: ReleaseUnderCheck): Check => ({
  name: CHECK.sums,
  run: () => problemsFound(compareSumsWithManifest(r.documents.sumsList, r.documents.manifest)),
});

export const statementParses = (r: ReleaseUnderCheck): Check => ({
  name: CHECK.statement,
  run: () => (r.documents.statementProblem ? problemsFound([r.documents.statementProblem]) : passed()),
});

async function signatureOver(r: ReleaseUnderCheck, signatureFile: string, namespace: string, trust: Trust, missing: string): Promise<SignatureCheck> {
  const signature = r.documents.bytes.get(signatureFile);
  if (!signature) return { ok: false, problem: missing };
  return verifySignature(r.documents.statementBytes!, signature, { data: STATEMENT_FILE, signature: signatureFile }, namespace, trust);
}

/** Who vouches for the statement. It is checked even when the statement does not parse: a bad signature is a second, separate finding. */
export const publisherSignature = (r: ReleaseUnderCheck, options: { allowUnsigned: boolean; trust: Trust }, found: Findings): Check => ({
  name: CHECK.signature,
  async run() {
    if (options.allowUnsigned) {
      say(`WARNING: --allow-unsigned: ${STATEMENT_SIGNATURE_FILE} is not checked, so nothing proves who made these files or for which tag; anyone who can upload to the release could have written all of them`);
      return skipped("--allow-unsigned: nothing proves who made these files");
    }
    if (!r.documents.statementBytes) return skipped(`there is no ${STATEMENT_FILE} to check it against`);
    const unsigned = `there is no ${STATEMENT_SIGNATURE_FILE}: an unsigned release proves nothing about who built it (--allow-unsigned skips this check)`;
    found.signature = await signatureOver(r, STATEMENT_SIGNATURE_FILE, NAMESPACE.publisher, options.trust, unsigned);
    return found.signature.ok ? passed([`by ${found.signature.signer} (key ${found.signature.fingerprint})`]) : problemsFound([found.signature.problem]);
  },
});

export const countersignature = (r: ReleaseUnderCheck, options: { required: boolean; trust: Trust }, found: Findings): Check => ({
  name: CHECK.countersignature,
  async run() {
    if (!options.required) return skipped("not required (--require-countersignature)");
    if (!r.documents.statementBytes) return skipped(`there is no ${STATEMENT_FILE} to check it against`);
    found.countersignature = await signatureOver(r, COUNTERSIGNATURE_FILE, NAMESPACE.countersignature, options.trust, `there is no ${COUNTERSIGNATURE_FILE}`);
    const c = found.countersignature;
    return c.ok ? passed([`by ${c.signer} (key ${c.fingerprint})`]) : problemsFound([`${c.problem} (--require-countersignature)`]);
  },
});

/** The statement against everything else: the tag asked for, the manifest, SHA256SUMS. */
export const statementMatches = (r: ReleaseUnderCheck): Check => ({
  name: CHECK.statementMatches,
  needs: [CHECK.statement],
  run() {
    if (r.expectedTag === null) {
      say(`note: no --tag: the statement's tag ${statementTag(r)} is not compared with the tag you expect (--dist ${r.dist} --tag <tag> does)`);
    }
    const { manifest, manifestBytes, sums } = r.documents;
    return problemsFound(compareStatement(r.documents.statement!, { manifest, manifestBytes, sums, expectedTag: r.expectedTag }));
  },
});

/** The git tag on the server still names the signed commit (a moved tag would build something else). */
export const gitTagMatches = (r: ReleaseUnderCheck): Check => ({
  name: CHECK.gitTag,
  needs: [CHECK.statement],
  async run() {
    if (!r.client) return skipped("a local dist: there is no server to ask");
    const tagName = statementTag(r);
    const commit = statementCommit(r);
    const gitTag = await r.client.tag(tagName);
    if (!gitTag) return problemsFound([`the git tag ${tagName} does not exist on the server: the statement says it names ${commit}`]);
    if (gitTag.commit.sha !== commit) {
      return problemsFound([`the git tag ${tagName} is at ${gitTag.commit.sha} on the server, the signed statement says ${commit}: the tag was moved`]);
    }
    return passed([`${tagName} is at ${commit}`]);
  },
});

export const onlyManifestFiles = (r: ReleaseUnderCheck): Check => ({
  name: CHECK.onlyManifestFiles,
  run() {
    // A dist or a mirror directory may hold other files (a build log, an index): nobody downloads them as part of the release.
    if (r.dist !== null) return skipped("a local directory may hold other files");
    const known = new Set([...r.documents.manifest.artifacts.map((a) => a.name), ...DOCUMENT_FILES, ...bootSignatureNames(r.documents.manifest)]);
    return problemsFound([...new Set(r.files.names)].filter((name) => !known.has(name)).map((name) => `${name} is on the release but not in the manifest`));
  },
});

/** Each file's size and SHA-256 against the manifest, streamed (into `staging` when keeping them). */
export const everyFileByteForByte = (r: ReleaseUnderCheck, options: { only: Set<string> | null; staging: string | null }, found: Findings): Check => ({
  name: CHECK.bytes,
  async run() {
    const { files } = r;
    const problems: string[] = [];
    for (const artifact of r.documents.manifest.artifacts) {
      if (options.only && !options.only.has(artifact.name)) continue;
      const copies = files.names.filter((n) => n === artifact.name).length;
      if (copies === 0) {
        problems.push(`${artifact.name} is missing`);
        continue;
      }
      if (copies > 1) {
        problems.push(`${artifact.name} is there ${copies} times: which one a download gets is arbitrary`);
        continue;
      }
      if (files.size(artifact.name) !== artifact.size) {
        problems.push(`${artifact.name} is ${files.size(artifact.name)} bytes, the manifest says ${artifact.size}`);
        continue;
      }
      const bar = progress(`checking ${artifact.name}`, artifact.size);
      const onProgress = (done: number) => bar.update(done);
      const digest = options.staging
        ? await files.save(artifact.name, join(options.staging, artifact.name), onProgress, artifact.size)
        : await files.digest(artifact.name, onProgress, artifact.size);
      bar.finish();
      if (digest.size !== artifact.size) problems.push(`${artifact.name}: ${digest.size} bytes arrived, the manifest says ${artifact.size}`);
      else if (digest.sha256 !== artifact.sha256) problems.push(`${artifact.name} has SHA-256 ${digest.sha256}, the manifest says ${artifact.sha256}`);
      else {
        say(`ok  ${artifact.name} (${formatBytes(artifact.size)})`);
        found.checked.push(artifact.name);
      }
    }
    return problemsFound(problems, found.checked);
  },
});

/** Trust no signer: evaluate (or build) the commit itself and compare. */
export const rebuiltFromCommit = (
  r: ReleaseUnderCheck,
  options: { depth: RebuildDepth | undefined; source: string; nixArgs: string[]; staging: string | null },
): Check => ({
  name: CHECK.rebuild,
  // Nix evaluates (and, with full, builds) what the manifest names: only once the statement is
  // signed, is the one asked for and matches the manifest (docs/verifying.md).
  needs: [CHECK.signature, CHECK.asked, CHECK.statementMatches, CHECK.sums],
  async run() {
    if (!options.depth) return skipped("not asked for (--rebuild)");
    const { manifest } = r.documents;
    const commit = r.documents.statement ? statementCommit(r) : manifest.source.commit;
    const { staging, depth } = options;
    const localCopy = (name: string) => (staging ? join(staging, name) : r.dist ? join(r.dist, name) : null);
    return problemsFound(await rebuild({ source: options.source, commit, manifest, depth, nixArgs: options.nixArgs, localCopy }));
  },
});
