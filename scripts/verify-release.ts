#!/usr/bin/env bun
/**
 * verify-release: proves a published release (or a local dist) is what its signed provenance
 * statement says, and prints which commit, which nixpkgs and which builder made it. It fails
 * closed: no signature, no trust anchor, or any disagreement is a failure. Nothing the server
 * says about the files is trusted: every byte is downloaded and hashed.
 *
 * The steps, in order:
 *   1. check the trust anchor (allowed_signers with a key, or a pinned key fingerprint), and that
 *      --download DIR can be written (--only is refused with it: a mirror holds whole releases);
 *   2. find the files: contact the server (a dead or wrong --server is named within seconds), look
 *      up the repository, then the release (or read the dist); with --download, refuse to move
 *      the mirror's pointer to an older release than it names (unless --allow-downgrade);
 *   3. read SHA256SUMS, manifest.json, the statement and its signatures;
 *   4. run the checks, in order, each with a result (ok, failed with its problems, or skipped
 *      with the reason): SHA256SUMS against the manifest; the statement parses; the publisher's
 *      signature (and, if required, a maintainer's countersignature); the statement against the
 *      tag asked for, manifest.json and SHA256SUMS; the git tag on the server against the
 *      statement's commit; no files beyond the manifest's; every file streamed through SHA-256
 *      (into --download DIR's staging, if given, each download cut off past the manifest's size);
 *      with --statement-sha256, the statement is the one a channel names; with --rebuild, the statement's commit
 *      evaluated (--rebuild=full: built) from a clean checkout and compared;
 *   5. print the provenance and each check's result (each problem on a FAIL line); exit 0 only
 *      if no check failed; only then move the staged release in as DIR/releases/<tag> and switch
 *      DIR/current (or --pointer) to it with one rename (trust/mirror.ts).
 */
import { join } from "node:path";
import { rm } from "node:fs/promises";
import { Failure, UsageError } from "./lib/cli/errors.ts";
import { onInterrupt, runMain } from "./lib/cli/run-main.ts";
import { parseCommandLine, type CommandSpec } from "./lib/cli/command-line.ts";
import { say } from "./lib/cli/log.ts";
import { SERVER_FLAGS } from "./lib/cli/server-flags.ts";
import { TUNING_HELP } from "./lib/forgejo/http.ts";
import { findRelease } from "./lib/forgejo/find-release.ts";
import { distFiles, releaseFiles } from "./lib/forgejo/release-files.ts";
import { problemsOf, resultLines, runChecklist } from "./lib/trust/checklist.ts";
import { CURRENT_POINTER, checkMirrorWritable, installRelease, makeStaging, parseKeep, pruneReleases, refuseDowngrade } from "./lib/trust/mirror.ts";
import { checkPointerName, statementIsNamed } from "./lib/trust/channel.ts";
import { tagProblem } from "./lib/trust/tags.ts";
import { provenanceLines } from "./lib/trust/provenance-summary.ts";
import type { RebuildDepth } from "./lib/trust/rebuild.ts";
import {
  CHECK,
  countersignature, everyFileByteForByte, releaseIsTheOneAsked, gitTagMatches, newFindings, onlyManifestFiles, publisherSignature, rebuiltFromCommit,
  statementMatches, statementParses, sumsMatchManifest, type ReleaseUnderCheck,
} from "./lib/trust/release-checks.ts";
import { readDocuments } from "./lib/trust/release-documents.ts";
import { bootRoot, bootSignatures } from "./lib/trust/boot-signature-check.ts";
import { COUNTERSIGNATURE_FILE, NAMESPACE, REPOSITORY_ALLOWED_SIGNERS, checkTrust, type Trust } from "./lib/trust/signing.ts";

const ROOT = join(import.meta.dir, "..");

const COMMAND: CommandSpec = {
  name: "verify-release.ts",
  summary: "Check a published release (or a local dist) against its signed provenance statement, byte for byte",
  passThrough: "[-- <nix arguments for --rebuild>]",
  flags: [
    { name: "tag", value: "tag|latest", description: "Required, or --dist: the release to check (with --server and --repo, or their FORGEJO_* defaults); with --dist, the tag its files must be for" },
    { name: "dist", value: "dir", description: "Required, or --tag: check a local directory (a build, or a --download mirror) instead; needs --tag (the statement's tag) or --any-tag" },
    ...SERVER_FLAGS,
    { name: "any-tag", description: "With --dist: accept whichever tag the statement names (nothing binds the files to a release)" },
    { name: "statement-repo", value: "url", description: "The repository the statement must name, when verifying a copy held on another server or mirror (default: --server/--repo)" },
    { name: "only", value: "name", repeatable: true, description: "Check only this file's bytes (repeatable); the statement, signature, manifest and SHA256SUMS are always checked" },
    { name: "allowed-signers", value: "file", description: "Whose signatures count (default: allowed_signers in this checkout, which anyone who can push may change)" },
    { name: "signer-fingerprint", value: "SHA256:…", description: "Trust exactly this publisher key instead of allowed_signers: the way auditors run it" },
    { name: "allow-unsigned", description: "Skip the signature check (says loudly what that leaves unproven)" },
    { name: "require-countersignature", description: `Also require a maintainer's countersignature (${COUNTERSIGNATURE_FILE})` },
    { name: "countersigner-fingerprint", value: "SHA256:…", description: "Trust exactly this maintainer key for the countersignature instead of allowed_signers" },
    { name: "rebuild", value: "drv|full", description: "Rebuild from the statement's commit and compare: derivation paths (drv, also plain --rebuild), or every byte (full)" },
    { name: "source", value: "git dir|url", description: "Where --rebuild clones the commit from (default: this checkout's repository)" },
    { name: "download", value: "dir", description: "A mirror for PXE/HTTP: the release goes into DIR/releases/<tag>, and DIR/current moves to it in one rename, only once every check passed" },
    { name: "keep", value: "n", description: "With --download: keep the N newest releases no pointer names, for a rollback (default 2)" },
    { name: "allow-downgrade", description: "With --download: move the pointer even to an older release than it names now (a rollback you mean)" },
    { name: "pointer", value: "name", description: "With --download: the pointer to move instead of current (sync-mirror moves a channel's)" },
    { name: "statement-sha256", value: "hex", description: "Also require the statement to have this SHA-256 (what a channel statement names)" },
    { name: "token-file", value: "file", description: "Token for a private repository (public releases need none); FORGEJO_TOKEN/GITHUB_TOKEN are sent only to the server of the CI run itself" },
    { name: "boot-root", value: "file", description: "The fleet's boot root (PEM): every boot file must carry a .sig by a code-signing certificate under it, as the trust-enforcing iPXE requires (default: nix/boot-root.pem in this checkout, if present)" },
    { name: "json", description: "Print the result as JSON on stdout" },
    { name: "debug", description: "Log every request and show stack traces" },
  ],
  sections: [
    {
      title: "Environment",
      body: [
        "  FORGEJO_TOKEN, GITHUB_TOKEN   in CI only, and only to the run's own server (FORGEJO_SERVER_URL); elsewhere give --token-file",
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
        "      --signer-fingerprint SHA256:0hC/p0VkCpQti3BAbYXGlsfTIwV7nbJOkiHaOsOZAUg --download /srv/netboot",
        "  bun scripts/verify-release.ts --dist /srv/netboot/current --tag boot-v1.2.0",
        "  bun scripts/verify-release.ts --dist dist --tag boot-v1.2.0 --rebuild=full   # a published dist: rebuild it from its commit",
      ].join("\n"),
    },
  ],
};

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
  // A directory proves nothing about which release it holds unless a tag is bound (or the user says none is).
  if (dist && !tag && flags["any-tag"] !== true) throw new UsageError("--dist needs --tag <tag> (the tag its files must be for), or --any-tag to accept whichever tag the statement names");
  const statementRepo = flags["statement-repo"] as string | undefined;
  if (statementRepo !== undefined && !/^[a-z][a-z0-9+.-]*:\/\/[^\s]+\/[\w.-]+\/[\w.-]+$/i.test(statementRepo)) {
    throw new UsageError(`--statement-repo ${JSON.stringify(statementRepo)}: give the original repository as the statement names it, https://forge.example/owner/name`);
  }
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
  const downloadDir = flags.download as string | undefined;
  // A mirror holds whole releases: a checked kernel beside an unchecked initrd is no release.
  if (downloadDir && only) throw new UsageError("--only with --download: a mirror holds whole releases, so every file is checked (drop --only)");
  for (const flag of ["keep", "allow-downgrade", "pointer"]) if (flags[flag] !== undefined && !downloadDir) throw new UsageError(`--${flag} goes with --download`);
  const keep = parseKeep(flags.keep as string | undefined);
  const pointer = (flags.pointer as string | undefined) ?? CURRENT_POINTER;
  checkPointerName(pointer);
  const statementSha256 = flags["statement-sha256"] as string | undefined;
  if (statementSha256 !== undefined && !/^[0-9a-f]{64}$/.test(statementSha256)) throw new UsageError(`--statement-sha256 ${statementSha256}: give 64 lowercase hex digits`);

  // 1. A trust anchor that trusts somebody, and a --download DIR to write to, before anything is downloaded.
  if (!allowUnsigned) await checkTrust(publisherTrust, NAMESPACE.publisher, "--signer-fingerprint");
  if (requireCountersignature) await checkTrust(countersignerTrust, NAMESPACE.countersignature, "--countersigner-fingerprint");
  if (downloadDir) await checkMirrorWritable(downloadDir);

  // 2. Where the files are.
  const server = { server: flags.server as string | undefined, repo: flags.repo as string | undefined, insecureHttp: flags["insecure-http"] === true };
  const found = dist ? null : await findRelease({ ...server, tokenFile: flags["token-file"] as string | undefined }, tag!);
  const files = found ? releaseFiles(found.client, found.release) : await distFiles(dist!);
  say(`verifying ${files.description}`);
  // The mirror's directory is named by the tag; a tag is a path component only once it is a valid tag.
  const mirrorTag = tag && tag !== "latest" ? tag : (found?.release.tag_name ?? "");
  if (downloadDir) {
    const problem = tagProblem(mirrorTag);
    if (problem) throw new Failure(`--download: ${JSON.stringify(mirrorTag)} cannot name a release in the mirror: ${problem}`);
    await refuseDowngrade(downloadDir, pointer, mirrorTag, flags["allow-downgrade"] === true);
  }

  // 3. The small files, read once: what is checked is what --download writes.
  const documents = await readDocuments(files);
  const { manifest } = documents;
  for (const name of only ?? []) {
    if (!manifest.artifacts.some((a) => a.name === name)) {
      throw new UsageError(`--only ${name}: the manifest has no such file (it has ${manifest.artifacts.map((a) => a.name).join(", ")})`);
    }
  }
  const release: ReleaseUnderCheck = {
    files,
    documents,
    // A mirror's files must be for the tag it is served as: a signed dev prerelease in
    // /srv/netboot/boot-v1.2.0 passes every other check.
    // The tag asked for, never the server's answer (a signed older release is genuine too);
    // for `latest`, the answer, held to being the newest release by releaseIsTheOneAsked.
    expectedTag: tag && tag !== "latest" ? tag : (found?.release.tag_name ?? null),
    client: found?.client ?? null,
    dist: dist ?? null,
    asked: {
      tag: tag ?? null,
      servedTag: found?.release.tag_name ?? null,
      servedPrerelease: found?.release.prerelease ?? false,
      newestRelease: found?.newestRelease ?? null,
      repository: statementRepo ?? found?.repository ?? null,
    },
  };

  const staging = downloadDir ? await makeStaging(downloadDir) : null;
  const forgetStaging = staging ? onInterrupt(() => rm(staging, { recursive: true, force: true })) : () => {};
  try {
    // 4. The checks, in order; each one's result goes into the report.
    const findings = newFindings();
    const results = await runChecklist([
      sumsMatchManifest(release),
      statementParses(release),
      releaseIsTheOneAsked(release),
      publisherSignature(release, { allowUnsigned, trust: publisherTrust }, findings),
      countersignature(release, { required: requireCountersignature, trust: countersignerTrust }, findings),
      statementMatches(release),
      gitTagMatches(release),
      onlyManifestFiles(release),
      everyFileByteForByte(release, { only, staging }, findings),
      rebuiltFromCommit(release, { depth, source: (flags.source as string | undefined) ?? ROOT, nixArgs: args.passThrough, staging }),
      ...(statementSha256 ? [statementIsNamed(release, statementSha256)] : []),
      bootSignatures(release, { root: await bootRoot(flags["boot-root"] as string | undefined), staging, needs: [CHECK.statementMatches, CHECK.bytes] }),
    ]);

    // 5. The verdict: the provenance, each check's result, and the mirror only if nothing failed.
    const { signature, countersignature: countersig, checked } = findings;
    const problems = problemsOf(results);
    for (const line of provenanceLines(manifest, documents.statement, signature, countersig, allowUnsigned)) say(line);
    if (flags.json) {
      const result = { ok: problems.length === 0, source: files.description, checks: results, checked, problems, statement: documents.statement, signature, countersignature: countersig, manifest };
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    }
    for (const line of resultLines(results)) say(line);
    if (problems.length > 0) throw new Failure(`${problems.length} problem${problems.length === 1 ? "" : "s"} with ${files.description}`);

    if (staging && downloadDir) {
      const installed = await installRelease(downloadDir, staging, { tag: mirrorTag, small: documents.bytes, checked }, pointer);
      say(`wrote the verified release to ${installed}; ${join(downloadDir, pointer)} now points at it`);
      await pruneReleases(downloadDir, keep);
    }
    const proven = signature?.ok ? `, signed by ${signature.signer}` : ", UNSIGNED (--allow-unsigned)";
    say(`verified: ${checked.length} files match the statement${proven}${countersig?.ok ? `, countersigned by ${countersig.signer}` : ""}${depth ? `, and rebuild (${depth}) agrees` : ""}`);
  } finally {
    forgetStaging();
    if (staging) await rm(staging, { recursive: true, force: true });
  }
});
