/**
 * The provenance statement of a release: one signed document that says which files, under which
 * tag, from which commit and flake.lock pins, by which builder. publish-release writes it when
 * the tag is known (a build does not know under which tag it will be published) and signs it
 * (signing.ts); verify-release checks every byte of the release against it.
 *
 * Format: an in-toto Statement v1 with an SLSA Provenance v1 predicate. Read for it:
 *   in-toto/attestation spec/v1/statement.md (Version v1.1), spec/v1/resource_descriptor.md,
 *   spec/v1/digest_set.md; slsa-framework/slsa docs/spec/v1.0/provenance.md.
 * Fields filled:
 *   _type, subject[] (name + digest.sha256 of every artifact), predicateType, predicate:
 *   buildDefinition.buildType, .externalParameters (release tag, kind and ref; version label;
 *     source repository and commit; the CI trigger ref and event; the targets),
 *   buildDefinition.internalParameters (nix version and system),
 *   buildDefinition.resolvedDependencies (the source commit as digest.gitCommit; each flake.lock
 *     pin, its rev as gitCommit and its narHash in annotations: a NAR hash is no DigestSet
 *     algorithm),
 *   runDetails.builder.id (the CI workflow, or "by hand"), runDetails.metadata.invocationId and
 *     finishedOn, runDetails.byproducts (manifest.json and SHA256SUMS with their SHA-256).
 *
 * The statement is a pure function of the dist, the tag and the repository's public address
 * (publish-release passes the manifest as forgejo/public-address.ts asPublished() describes it),
 * so re-publishing the same dist under the same tag to the same repository writes the same bytes
 * (and an Ed25519 signature over them is the same too).
 */
import { hashBytes } from "../build/hash.ts";
import { MANIFEST_FILE, SUMS_FILE, type LockedInput, type Manifest } from "../build/manifest.ts";
import { isReleaseTag } from "./tags.ts";

export const STATEMENT_FILE = "provenance.intoto.json";
export const STATEMENT_TYPE = "https://in-toto.io/Statement/v1";
export const PREDICATE_TYPE = "https://slsa.dev/provenance/v1";
/** How to read the parameters: docs/signing.md (what is signed). */
export const BUILD_TYPE = "urn:runner-images:build-images:v1";

/** What a tag promises, as the statement says it: a boot-v release, or a dev prerelease that must never pass for one. */
export type ReleaseKind = "release" | "dev-prerelease";
const kindOfTag = (tag: string): ReleaseKind => (isReleaseTag(tag) ? "release" : "dev-prerelease");

interface ResourceDescriptor {
  name?: string;
  uri?: string;
  digest?: Record<string, string>;
  annotations?: Record<string, unknown>;
}

export interface Statement {
  _type: string;
  subject: { name: string; digest: { sha256: string } }[];
  predicateType: string;
  predicate: {
    buildDefinition: {
      buildType: string;
      externalParameters: {
        /** repository: where the publisher put it, as the server publishes it (its html_url); what verify-release binds to. */
        release: { tag: string; kind: ReleaseKind; ref: string; repository?: string };
        version: string;
        source: { repository: string; commit: string; dirty: boolean };
        trigger: { ref: string; event: string } | null;
        targets: string[];
      };
      internalParameters: { nix: { version: string; system: string } };
      resolvedDependencies: ResourceDescriptor[];
    };
    runDetails: {
      builder: { id: string };
      metadata: { invocationId?: string; finishedOn: string };
      byproducts: ResourceDescriptor[];
    };
  };
}

/** A flake.lock pin as a flake reference, for the dependency's uri. */
function pinUri(input: LockedInput): string {
  if (input.type === "github" && input.owner && input.repo) return `github:${input.owner}/${input.repo}${input.rev ? `/${input.rev}` : ""}`;
  const base = input.url ?? `${input.type}:`;
  return input.rev ? `${base}${base.includes("?") ? "&" : "?"}rev=${input.rev}` : base;
}

/** The statement for `manifest` published under `tag`; `manifestBytes` and `sums` are the files as published. */
/**
 * `bootSignatures`: the boot files' .sig (trust/boot-signing.ts), made at publishing, so not in
 * the manifest; listed with the other byproducts, so the signed statement covers them too.
 */
export function makeStatement(
  manifest: Manifest,
  manifestBytes: Uint8Array,
  sums: Uint8Array,
  tag: string,
  bootSignatures: readonly { name: string; bytes: Uint8Array }[] = [],
  publishedTo?: string,
): Statement {
  const ci = manifest.ci;
  const repository = ci ? `${ci.server}/${ci.repository}` : manifest.source.flake;
  return {
    _type: STATEMENT_TYPE,
    subject: manifest.artifacts.map((a) => ({ name: a.name, digest: { sha256: a.sha256 } })),
    predicateType: PREDICATE_TYPE,
    predicate: {
      buildDefinition: {
        buildType: BUILD_TYPE,
        externalParameters: {
          // The tag and its ref are signed: the signature holds for this tag and no other.
          // And the repository it is published to: a build made by hand names only its flake path.
          release: { tag, kind: kindOfTag(tag), ref: `refs/tags/${tag}`, ...(publishedTo ? { repository: publishedTo } : {}) },
          version: manifest.version,
          source: { repository, commit: manifest.source.commit, dirty: manifest.source.dirty },
          trigger: ci ? { ref: ci.ref, event: ci.event } : null,
          targets: [...new Set(manifest.artifacts.map((a) => a.target))],
        },
        internalParameters: { nix: { version: manifest.nix.version, system: manifest.nix.system } },
        resolvedDependencies: [
          { uri: `git+${repository}`, digest: { gitCommit: manifest.source.commit } },
          ...Object.entries(manifest.inputs).map(([name, input]) => ({
            name,
            uri: pinUri(input),
            ...(input.rev ? { digest: { gitCommit: input.rev } } : {}),
            annotations: { narHash: input.narHash, ...(input.lastModified !== undefined ? { lastModified: input.lastModified } : {}) },
          })),
        ],
      },
      runDetails: {
        builder: { id: ci ? builderId(ci) : "urn:runner-images:by-hand" },
        metadata: {
          ...(ci ? { invocationId: `${ci.server}/${ci.repository}/actions/runs/${ci.runNumber}` } : {}),
          finishedOn: manifest.builtAt,
        },
        byproducts: [
          { name: MANIFEST_FILE, digest: { sha256: hashBytes(manifestBytes) } },
          { name: SUMS_FILE, digest: { sha256: hashBytes(sums) } },
          ...bootSignatures.map((b) => ({ name: b.name, digest: { sha256: hashBytes(b.bytes) } })),
        ],
      },
    },
  };
}

/**
 * The CI builder: the repository's Actions page filtered to the workflow's file, the way the
 * web's run list filters (`?workflow=boot-images.yml`). GITHUB_WORKFLOW is the workflow's `name:`,
 * which filters that list to nothing; without the file (Forgejo before v14 sends no
 * workflow_ref), the unfiltered page.
 */
export function builderId(ci: { server: string; repository: string; workflowFile?: string }): string {
  const actions = `${ci.server}/${ci.repository}/actions`;
  return ci.workflowFile ? `${actions}?workflow=${encodeURIComponent(ci.workflowFile)}` : actions;
}

/** The statement as written: stable key order, one trailing newline. */
export function formatStatement(statement: Statement): string {
  return `${JSON.stringify(statement, null, 2)}\n`;
}

export class StatementError extends Error {}

/** Parses and shape-checks a statement; anything else is a StatementError naming what is wrong. */
export function parseStatement(text: string): Statement {
  let s: Statement;
  try {
    s = JSON.parse(text) as Statement;
  } catch {
    throw new StatementError(`${STATEMENT_FILE} is not valid JSON`);
  }
  const check = (ok: unknown, what: string) => {
    if (!ok) throw new StatementError(`${STATEMENT_FILE}: ${what}`);
  };
  check(s && typeof s === "object", "not a JSON object");
  check(s._type === STATEMENT_TYPE, `_type is ${JSON.stringify(s._type)}, not ${STATEMENT_TYPE}`);
  check(s.predicateType === PREDICATE_TYPE, `predicateType is ${JSON.stringify(s.predicateType)}, not ${PREDICATE_TYPE}`);
  check(Array.isArray(s.subject) && s.subject.every((x) => typeof x?.name === "string" && typeof x?.digest?.sha256 === "string"), "subject is not a list of names with SHA-256 digests");
  const params = s.predicate?.buildDefinition?.externalParameters;
  check(typeof params?.release?.tag === "string" && typeof params.release.kind === "string" && typeof params.release.ref === "string", "the release tag, kind or ref is missing");
  check(params.release.repository === undefined || typeof params.release.repository === "string", "the release repository is not a string");
  check(typeof params.source?.commit === "string", "the source commit is missing");
  check(Array.isArray(s.predicate.runDetails?.byproducts), "runDetails.byproducts is missing");
  return s;
}

export const byproduct = (s: Statement, name: string) => s.predicate.runDetails.byproducts.find((b) => b.name === name)?.digest?.sha256;

/**
 * Where the statement and the release's own files disagree. `expectedTag` is the tag the
 * release was asked for (null for a local dist: then the statement's tag is only reported).
 */
export function compareStatement(
  s: Statement,
  release: { manifest: Manifest; manifestBytes: Uint8Array; sums: Uint8Array; expectedTag: string | null },
): string[] {
  const problems: string[] = [];
  const { manifest } = release;
  const params = s.predicate.buildDefinition.externalParameters;
  const { tag, kind, ref } = params.release;

  // The tag: the one asked for, and consistent within the statement.
  if (release.expectedTag !== null && tag !== release.expectedTag) {
    problems.push(`the signed statement is for ${tag}, not ${release.expectedTag}: these files were published under another tag`);
  }
  if (kind !== kindOfTag(tag) || ref !== `refs/tags/${tag}`) {
    problems.push(`the statement's tag ${tag} does not match its kind ${kind} and ref ${ref}`);
  }
  if (isReleaseTag(manifest.version) && manifest.version !== tag) {
    problems.push(`${MANIFEST_FILE} names version ${manifest.version}, the statement tag ${tag}`);
  }
  if (params.version !== manifest.version) problems.push(`the statement names version ${params.version}, ${MANIFEST_FILE} ${manifest.version}`);
  if (params.source.commit !== manifest.source.commit) {
    problems.push(`the statement names commit ${params.source.commit}, ${MANIFEST_FILE} ${manifest.source.commit}`);
  }

  // The two small files, byte for byte.
  const manifestSha = hashBytes(release.manifestBytes);
  if (byproduct(s, MANIFEST_FILE) !== manifestSha) {
    problems.push(`${MANIFEST_FILE} has SHA-256 ${manifestSha}, the statement says ${byproduct(s, MANIFEST_FILE) ?? "nothing"}: it was changed after the statement was made`);
  }
  const sumsSha = hashBytes(release.sums);
  if (byproduct(s, SUMS_FILE) !== sumsSha) {
    problems.push(`${SUMS_FILE} has SHA-256 ${sumsSha}, the statement says ${byproduct(s, SUMS_FILE) ?? "nothing"}: it was changed after the statement was made`);
  }

  // Every artifact, both ways.
  const subjects = new Map(s.subject.map((x) => [x.name, x.digest.sha256]));
  for (const a of manifest.artifacts) {
    const signed = subjects.get(a.name);
    if (signed === undefined) problems.push(`${MANIFEST_FILE} lists ${a.name}, the statement does not`);
    else if (signed !== a.sha256) problems.push(`the statement says ${a.name} has SHA-256 ${signed}, ${MANIFEST_FILE} says ${a.sha256}`);
  }
  for (const name of subjects.keys()) {
    if (!manifest.artifacts.some((a) => a.name === name)) problems.push(`the statement lists ${name}, ${MANIFEST_FILE} does not`);
  }
  return problems;
}

/** The statement's claims, one line each, for the verdict. */
export function describeStatement(s: Statement): string[] {
  const { release, trigger } = s.predicate.buildDefinition.externalParameters;
  const run = s.predicate.runDetails;
  return [
    `tag        ${release.tag} (${release.kind}, ${release.ref})`,
    `builder    ${run.builder.id}${run.metadata.invocationId ? `, run ${run.metadata.invocationId}` : ""}${trigger ? ` (${trigger.event} of ${trigger.ref})` : ""}`,
  ];
}
