#!/usr/bin/env bun
/**
 * verify-release: proves a published release (or a local dist) is what its signed provenance
 * statement says, and prints which commit, which nixpkgs and which builder made it. It fails
 * closed: no signature, no trust anchor, or any disagreement is a failure. Nothing the server
 * says about the files is trusted: every byte is downloaded and hashed.
 *
 * The steps, in order:
 *   1. check the trust anchor (allowed_signers with a key, or a pinned key fingerprint), and that
 *      --download DIR can be written;
 *   2. find the files: contact the server (a dead or wrong --server is named within seconds), look
 *      up the repository, then the release (or read the dist);
 *   3. fetch SHA256SUMS, manifest.json, the statement and its signatures;
 *   4. check the publisher's signature over the statement (and, if required, a maintainer's
 *      countersignature);
 *   5. check the statement against the tag asked for, manifest.json and SHA256SUMS, and the git
 *      tag's commit on the server against the statement's commit;
 *   6. stream every file through SHA-256 and compare (into --download DIR's staging, if given);
 *   7. with --rebuild: from a clean checkout of the statement's commit, evaluate (and with
 *      --rebuild=full, build) every target and compare;
 *   8. print the provenance and every problem; exit 0 only if there is none; only then move the
 *      downloaded files into --download DIR.
 */
import { mkdir, mkdtemp, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Failure, UsageError } from "./lib/cli/errors.ts";
import { onInterrupt, runMain } from "./lib/cli/run-main.ts";
import { parseCommandLine, type CommandSpec } from "./lib/cli/command-line.ts";
import { ciEnv } from "./lib/cli/ci-env.ts";
import { ForgejoClient } from "./lib/forgejo/client.ts";
import type { Release } from "./lib/forgejo/types.ts";
import { TUNING_HELP, tuningFromEnv } from "./lib/forgejo/http.ts";
import { formatBytes, progress, say } from "./lib/cli/log.ts";
import {
  MANIFEST_FILE, SUMS_FILE, ManifestError, compareSumsWithManifest, parseSums, validateManifest, type Manifest,
} from "./lib/build/manifest.ts";
import { STATEMENT_FILE, StatementError, compareStatement, describeStatement, parseStatement, type Statement } from "./lib/trust/provenance.ts";
import { SERVER_FLAGS, resolveRepo, resolveServer } from "./lib/cli/server-flags.ts";
import { readToken } from "./lib/cli/token.ts";
import { rebuild, type RebuildDepth } from "./lib/trust/rebuild.ts";
import { distFiles, releaseFiles, type ReleaseFiles } from "./lib/forgejo/release-files.ts";
import {
  COUNTERSIGNATURE_FILE, NAMESPACE, REPOSITORY_ALLOWED_SIGNERS, STATEMENT_SIGNATURE_FILE, checkTrust, verifySignature, type SignatureCheck, type Trust,
} from "./lib/trust/signing.ts";

const ROOT = join(import.meta.dir, "..");

const COMMAND: CommandSpec = {
  name: "verify-release.ts",
  summary: "Check a published release (or a local dist) against its signed provenance statement, byte for byte",
  passThrough: "[-- <nix arguments for --rebuild>]",
  flags: [
    { name: "tag", value: "tag|latest", description: "Required, or --dist: the release to check (with --server and --repo, or their FORGEJO_* defaults); with --dist, the tag its files must be for" },
    { name: "dist", value: "dir", description: "Required, or --tag: check a local directory (a build, or a --download mirror) instead; add --tag to require the statement's tag" },
    ...SERVER_FLAGS,
    { name: "only", value: "name", repeatable: true, description: "Check only this file's bytes (repeatable); the statement, signature, manifest and SHA256SUMS are always checked" },
    { name: "allowed-signers", value: "file", description: "Whose signatures count (default: allowed_signers in this checkout, which anyone who can push may change)" },
    { name: "signer-fingerprint", value: "SHA256:…", description: "Trust exactly this publisher key instead of allowed_signers: the way auditors run it" },
    { name: "allow-unsigned", description: "Skip the signature check (says loudly what that leaves unproven)" },
    { name: "require-countersignature", description: `Also require a maintainer's countersignature (${COUNTERSIGNATURE_FILE})` },
    { name: "countersigner-fingerprint", value: "SHA256:…", description: "Trust exactly this maintainer key for the countersignature instead of allowed_signers" },
    { name: "rebuild", value: "drv|full", description: "Rebuild from the statement's commit and compare: derivation paths (drv, also plain --rebuild), or every byte (full)" },
    { name: "source", value: "git dir|url", description: "Where --rebuild clones the commit from (default: this checkout's repository)" },
    { name: "download", value: "dir", description: "Write the verified files into this directory (only once every check passed): a mirror for PXE/HTTP" },
    { name: "token-file", value: "file", description: "Token for a private repository (default: FORGEJO_TOKEN/GITHUB_TOKEN if set; public releases need none)" },
    { name: "json", description: "Print the result as JSON on stdout" },
    { name: "debug", description: "Log every request and show stack traces" },
  ],
  sections: [
    {
      title: "Environment",
      body: [
        "  FORGEJO_TOKEN, GITHUB_TOKEN   a read token, for a private repository only; never a flag value",
        "  FORGEJO_SERVER_URL, FORGEJO_REPOSITORY   defaults for --server and --repo (set in Forgejo Actions)",
        ...TUNING_HELP,
      ].join("\n"),
    },
    { title: "Exit codes", body: "  0 every check passed, 1 a check failed (each problem is on a FAIL line), 2 bad flags or input (also: no trust anchor)" },
    {
      title: "Examples",
      body: [
        "  bun scripts/verify-release.ts --server https://forge.example --repo ops/runner-images --tag latest",
        "  bun scripts/verify-release.ts --server https://forge.example --repo ops/runner-images --tag boot-v1.2.0 \\",
        "      --signer-fingerprint SHA256:0hC/p0VkCpQti3BAbYXGlsfTIwV7nbJOkiHaOsOZAUg --download /srv/netboot/boot-v1.2.0",
        "  bun scripts/verify-release.ts --dist /srv/netboot/boot-v1.2.0 --tag boot-v1.2.0",
        "  bun scripts/verify-release.ts --dist dist --rebuild=full",
      ].join("\n"),
    },
  ],
};

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

/** Step 2 for a published release: the repository first, so "no repository" and "no release" differ. */
async function findRelease(flags: Record<string, unknown>, tag: string): Promise<{ client: ForgejoClient; release: Release }> {
  const token = await readToken(flags["token-file"] as string | undefined, { required: false });
  const ci = ciEnv();
  const server = resolveServer(flags.server as string | undefined, ci, { insecureHttp: flags["insecure-http"] === true, publishing: false });
  const { owner, repo } = await resolveRepo(flags.repo as string | undefined, ci);
  const client = new ForgejoClient({ server, owner, repo, token, tuning: tuningFromEnv() });
  // First contact: a dead server is named in seconds, a --server with a path as such (not as --repo's 404).
  await client.probe();
  // Forgejo answers 404 both for a repository that does not exist and for a private one the
  // caller may not see: only the token (or its absence) tells which to suggest.
  if (!(await client.findRepository())) {
    throw new Failure(
      token
        ? `${server} has no repository ${owner}/${repo} that this token can read: check --repo, and that the token's user has read access`
        : `${server} has no public repository ${owner}/${repo}: check --repo; if it is private, give a read token (FORGEJO_TOKEN or --token-file)`,
    );
  }
  const release = tag === "latest" ? await client.latestRelease() : await client.releaseByTag(tag);
  if (!release) throw new Failure(`${owner}/${repo} on ${server} has no ${tag === "latest" ? "published release" : `release ${tag}`}`);
  if (release.draft) say(`note: ${release.tag_name} is a draft: not yet visible to downloaders`);
  return { client, release };
}

/** Step 4: one signature over the statement, or the problem with it (`missing` when there is none). */
async function checkSignature(small: Map<string, Uint8Array>, signatureFile: string, namespace: string, trust: Trust, missing: string): Promise<SignatureCheck> {
  const signature = small.get(signatureFile);
  if (!signature) return { ok: false, problem: missing };
  return verifySignature(small.get(STATEMENT_FILE)!, signature, { data: STATEMENT_FILE, signature: signatureFile }, namespace, trust);
}

/** Step 6: each file's size and SHA-256 against the manifest; every difference is a problem. */
async function checkArtifacts(
  files: ReleaseFiles,
  manifest: Manifest,
  only: Set<string> | null,
  staging: string | null,
  problems: string[],
): Promise<string[]> {
  const checked: string[] = [];
  for (const artifact of manifest.artifacts) {
    if (only && !only.has(artifact.name)) continue;
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
    const digest = staging ? await files.save(artifact.name, join(staging, artifact.name), onProgress) : await files.digest(artifact.name, onProgress);
    bar.finish();
    if (digest.size !== artifact.size) problems.push(`${artifact.name}: ${digest.size} bytes arrived, the manifest says ${artifact.size}`);
    else if (digest.sha256 !== artifact.sha256) problems.push(`${artifact.name} has SHA-256 ${digest.sha256}, the manifest says ${artifact.sha256}`);
    else {
      say(`ok  ${artifact.name} (${formatBytes(artifact.size)})`);
      checked.push(artifact.name);
    }
  }
  return checked;
}

/**
 * Step 8 with --download: the verified files move from the staging directory into the mirror,
 * the small ones written from the very bytes that were checked. A signature file a previous
 * release left there, and this one lacks, goes: the mirror holds one release, whole.
 */
async function fillMirror(staging: string, mirror: string, small: Map<string, Uint8Array>, checked: string[]): Promise<void> {
  for (const [name, bytes] of small) await writeFile(join(staging, name), bytes);
  for (const name of [...checked, ...small.keys()]) await rename(join(staging, name), join(mirror, name));
  for (const name of [STATEMENT_SIGNATURE_FILE, COUNTERSIGNATURE_FILE]) if (!small.has(name)) await rm(join(mirror, name), { force: true });
  say(`wrote the verified files to ${mirror}`);
}

function describeSignature(check: SignatureCheck | null, skipped: string): string {
  if (check === null) return skipped;
  return check.ok ? `good, by ${check.signer} (key ${check.fingerprint})` : "BAD";
}

function provenanceLines(
  manifest: Manifest,
  statement: Statement | null,
  signature: SignatureCheck | null,
  countersignature: SignatureCheck | null,
  allowUnsigned: boolean,
): string[] {
  const nixpkgs = manifest.inputs.nixpkgs;
  const ci = manifest.ci;
  return [
    ...(statement ? describeStatement(statement) : []),
    `version    ${manifest.version}`,
    `commit     ${manifest.source.commit}${manifest.source.dirty ? " (with uncommitted changes)" : ""}`,
    `nixpkgs    ${nixpkgs ? `${nixpkgs.rev ?? "(no rev)"} ${nixpkgs.narHash}` : "(no nixpkgs input recorded)"}`,
    `built      ${manifest.builtAt} with nix ${manifest.nix.version}${ci ? ` by ${ci.server}/${ci.repository} run ${ci.runNumber} (${ci.workflow})` : " by hand"}`,
    `signature  ${describeSignature(signature, allowUnsigned ? "NOT CHECKED (--allow-unsigned)" : "none: there is no statement to check it against")}`,
    `countersig ${describeSignature(countersignature, "not required")}`,
  ];
}

/** `--rebuild` alone means `--rebuild=drv`; the parser wants a value for a value flag. */
function withRebuildDefault(argv: string[]): string[] {
  const dashDash = argv.indexOf("--");
  return argv.map((arg, i) => {
    if (arg !== "--rebuild" || (dashDash !== -1 && i > dashDash)) return arg;
    const next = argv[i + 1];
    return next === "drv" || next === "full" ? arg : "--rebuild=drv";
  });
}

await runMain(async () => {
  const args = parseCommandLine(COMMAND, withRebuildDefault(process.argv.slice(2)));
  if (!args) return;
  const flags = args.flags;
  const tag = flags.tag as string | undefined;
  const dist = flags.dist as string | undefined;
  if (!tag && !dist) throw new UsageError("give either --tag <tag|latest> (a published release, with --server and --repo) or --dist <dir> (a local directory)");
  if (dist && tag === "latest") throw new UsageError("--dist with --tag latest: name the tag the directory's files must be for");
  const only = flags.only ? new Set(flags.only as string[]) : null;
  const depth = flags.rebuild as RebuildDepth | undefined;
  if (depth !== undefined && depth !== "drv" && depth !== "full") throw new UsageError(`--rebuild=${depth}: choose drv or full`);
  if (args.passThrough.length > 0 && !depth) throw new UsageError("arguments after -- go to nix, which only --rebuild runs");
  const allowUnsigned = flags["allow-unsigned"] === true;
  const requireCountersignature = flags["require-countersignature"] === true;
  const allowedSigners = (flags["allowed-signers"] as string | undefined) ?? REPOSITORY_ALLOWED_SIGNERS;
  const pinned = (name: string): Trust => {
    const fingerprint = flags[name] as string | undefined;
    return fingerprint ? { fingerprint } : { allowedSigners };
  };
  const publisherTrust = pinned("signer-fingerprint");
  const countersignerTrust = pinned("countersigner-fingerprint");

  // 1. A trust anchor that trusts somebody, and a --download DIR to write to, before anything is downloaded.
  if (!allowUnsigned) await checkTrust(publisherTrust, NAMESPACE.publisher, "--signer-fingerprint");
  if (requireCountersignature) await checkTrust(countersignerTrust, NAMESPACE.countersignature, "--countersigner-fingerprint");
  const downloadDir = flags.download as string | undefined;
  if (downloadDir) {
    const info = await stat(downloadDir).catch(() => null);
    if (info && !info.isDirectory()) throw new UsageError(`--download ${downloadDir} exists and is not a directory`);
    // Writable now, not after every byte was downloaded (a read-only mount, a path under a file).
    const cannot = (error: NodeJS.ErrnoException) => {
      throw new UsageError(`--download ${downloadDir} cannot be written (${error.code ?? "unknown error"})`, "give a directory this user can write");
    };
    await mkdir(downloadDir, { recursive: true }).catch(cannot);
    await rm(await mkdtemp(join(downloadDir, ".verifying-")).catch(cannot), { recursive: true });
  }

  // 2. Where the files are.
  let files: ReleaseFiles;
  let client: ForgejoClient | null = null;
  let expectedTag: string | null = null;
  if (dist) {
    files = await distFiles(dist);
    // A mirror's files must be for the tag it is served as: a signed dev prerelease in
    // /srv/netboot/boot-v1.2.0 passes every other check.
    expectedTag = tag ?? null;
  } else {
    const found = await findRelease(flags, tag!);
    client = found.client;
    expectedTag = found.release.tag_name;
    files = releaseFiles(found.client, found.release);
  }
  say(`verifying ${files.description}`);

  // 3. The small files, read once: what is checked is what --download writes.
  const smallFiles = [SUMS_FILE, MANIFEST_FILE, STATEMENT_FILE, STATEMENT_SIGNATURE_FILE, COUNTERSIGNATURE_FILE];
  const small = new Map<string, Uint8Array>();
  for (const name of smallFiles) {
    const bytes = await files.readSmall(name);
    if (bytes) small.set(name, bytes);
  }
  const sums = small.get(SUMS_FILE);
  const manifestBytes = small.get(MANIFEST_FILE);
  if (!sums || !manifestBytes) {
    throw new Failure(`${files.description} has no ${sums ? MANIFEST_FILE : SUMS_FILE}: it was not published by publish-release.ts, or is incomplete`);
  }
  let manifest: Manifest;
  let sumsList: Map<string, string>;
  try {
    manifest = validateManifest(JSON.parse(text(manifestBytes)));
    sumsList = parseSums(text(sums));
  } catch (error) {
    // The parser's own text ("JSON Parse error: …") says nothing to the operator.
    if (error instanceof SyntaxError) throw new Failure(`${files.description}: ${MANIFEST_FILE} is not valid JSON`);
    if (error instanceof ManifestError) throw new Failure(`${files.description}: ${error.message}`);
    throw error;
  }
  for (const name of only ?? []) {
    if (!manifest.artifacts.some((a) => a.name === name)) {
      throw new UsageError(`--only ${name}: the manifest has no such file (it has ${manifest.artifacts.map((a) => a.name).join(", ")})`);
    }
  }
  const problems = compareSumsWithManifest(sumsList, manifest);
  const statementBytes = small.get(STATEMENT_FILE);
  let statement: Statement | null = null;
  if (!statementBytes) {
    problems.push(`there is no ${STATEMENT_FILE}: nothing binds these files to a tag, a commit or a builder (publish-release.ts writes it)`);
  } else {
    try {
      statement = parseStatement(text(statementBytes));
    } catch (error) {
      if (!(error instanceof StatementError)) throw error;
      problems.push(error.message);
    }
  }

  // 4. Who vouches for the statement.
  let signature: SignatureCheck | null = null;
  let countersignature: SignatureCheck | null = null;
  if (allowUnsigned) {
    say(`WARNING: --allow-unsigned: ${STATEMENT_SIGNATURE_FILE} is not checked, so nothing proves who made these files or for which tag; anyone who can upload to the release could have written all of them`);
  } else if (statementBytes) {
    const unsigned = `there is no ${STATEMENT_SIGNATURE_FILE}: an unsigned release proves nothing about who built it (--allow-unsigned skips this check)`;
    signature = await checkSignature(small, STATEMENT_SIGNATURE_FILE, NAMESPACE.publisher, publisherTrust, unsigned);
    if (!signature.ok) problems.push(signature.problem);
  }
  if (requireCountersignature && statementBytes) {
    countersignature = await checkSignature(small, COUNTERSIGNATURE_FILE, NAMESPACE.countersignature, countersignerTrust, `there is no ${COUNTERSIGNATURE_FILE}`);
    if (!countersignature.ok) problems.push(`${countersignature.problem} (--require-countersignature)`);
  }

  // 5. The statement against everything else: the tag asked for, the manifest, SHA256SUMS, the git tag.
  if (statement) {
    if (expectedTag === null) {
      say(`note: no --tag: the statement's tag ${statement.predicate.buildDefinition.externalParameters.release.tag} is not compared with the tag you expect (--dist ${dist} --tag <tag> does)`);
    }
    problems.push(...compareStatement(statement, { manifest, manifestBytes, sums, expectedTag }));
    if (client) {
      const tagName = statement.predicate.buildDefinition.externalParameters.release.tag;
      const commit = statement.predicate.buildDefinition.externalParameters.source.commit;
      const gitTag = await client.tag(tagName);
      if (!gitTag) problems.push(`the git tag ${tagName} does not exist on the server: the statement says it names ${commit}`);
      else if (gitTag.commit.sha !== commit) {
        problems.push(`the git tag ${tagName} is at ${gitTag.commit.sha} on the server, the signed statement says ${commit}: the tag was moved`);
      }
    }
  }

  // 6. Every file, byte for byte; into a staging directory when keeping them.
  const known = new Set([...manifest.artifacts.map((a) => a.name), ...smallFiles]);
  if (!dist) for (const name of new Set(files.names)) if (!known.has(name)) problems.push(`${name} is on the release but not in the manifest`);
  let staging: string | null = null;
  let forgetStaging = () => {};
  if (downloadDir) {
    staging = await mkdtemp(join(downloadDir, ".verifying-"));
    const dir = staging;
    forgetStaging = onInterrupt(() => rm(dir, { recursive: true, force: true }));
  }
  try {
    const checked = await checkArtifacts(files, manifest, only, staging, problems);

    // 7. Trust no signer: the commit itself.
    if (depth) {
      const commit = statement?.predicate.buildDefinition.externalParameters.source.commit ?? manifest.source.commit;
      const localCopy = (name: string) => (staging ? join(staging, name) : dist ? join(dist, name) : null);
      const source = (flags.source as string | undefined) ?? ROOT;
      problems.push(...(await rebuild({ source, commit, manifest, depth, nixArgs: args.passThrough, localCopy })));
    }

    // 8. The verdict.
    for (const line of provenanceLines(manifest, statement, signature, countersignature, allowUnsigned)) say(line);
    if (flags.json) {
      const result = { ok: problems.length === 0, source: files.description, checked, problems, statement, signature, countersignature, manifest };
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    }
    for (const problem of problems) say(`FAIL ${problem}`);
    if (problems.length > 0) throw new Failure(`${problems.length} problem${problems.length === 1 ? "" : "s"} with ${files.description}`);

    if (staging && downloadDir) await fillMirror(staging, downloadDir, small, checked);
    const proven = signature?.ok ? `, signed by ${signature.signer}` : ", UNSIGNED (--allow-unsigned)";
    say(`verified: ${checked.length} files match the statement${proven}${countersignature?.ok ? `, countersigned by ${countersignature.signer}` : ""}${depth ? `, and rebuild (${depth}) agrees` : ""}`);
  } finally {
    forgetStaging();
    if (staging) await rm(staging, { recursive: true, force: true });
  }
});
