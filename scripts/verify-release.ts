#!/usr/bin/env bun
/**
 * verify-release: proves a published release (or a local dist) is what its manifest says, and
 * prints which commit and which nixpkgs made it. Trusts nothing the server says about the files:
 * every byte is downloaded and hashed.
 *
 * The steps, in order:
 *   1. fetch SHA256SUMS, manifest.json and SHA256SUMS.sig (if present);
 *   2. check SHA256SUMS and the manifest agree;
 *   3. check the signature against the repository's allowed_signers;
 *   4. stream every file through SHA-256 and compare size and hash;
 *   5. print the provenance and every problem; exit 0 only if there is none.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Failure, UsageError, parseCommandLine, runMain, type CommandSpec } from "./lib/cli.ts";
import { ciEnv } from "./lib/ci.ts";
import { ForgejoClient } from "./lib/forgejo.ts";
import type { Release } from "./lib/forgejo-types.ts";
import { tuningFromEnv } from "./lib/http.ts";
import { formatBytes, progress, say } from "./lib/log.ts";
import {
  MANIFEST_FILE, SUMS_FILE, ManifestError, compareSumsWithManifest, parseSums, validateManifest, type Manifest,
} from "./lib/manifest.ts";
import { SERVER_FLAGS, readToken, resolveRepo, resolveServer } from "./lib/publish-options.ts";
import { distFiles, releaseFiles, type ReleaseFiles } from "./lib/release-files.ts";
import { SIGNATURE_FILE, verifySums, type SignatureCheck } from "./lib/signing.ts";

const DEFAULT_ALLOWED_SIGNERS = join(import.meta.dir, "..", "allowed_signers");

const COMMAND: CommandSpec = {
  name: "verify-release.ts",
  summary: "Check a published release (or a local dist) against its manifest, checksums and signature",
  flags: [
    { name: "tag", value: "tag", description: "Release to check, or latest (with --server and --repo)" },
    { name: "dist", value: "dir", description: "Check a local build directory instead" },
    ...SERVER_FLAGS,
    { name: "only", value: "name", repeatable: true, description: "Check only this file (repeatable); SHA256SUMS, the manifest and the signature are always checked" },
    { name: "allowed-signers", value: "file", description: `Whose signatures count (default: the repository's allowed_signers)` },
    { name: "require-signature", description: `Fail when there is no ${SIGNATURE_FILE}` },
    { name: "token-file", value: "file", description: "Token for a private repository (default: FORGEJO_TOKEN/GITHUB_TOKEN if set; public releases need none)" },
    { name: "json", description: "Print the result as JSON on stdout" },
    { name: "debug", description: "Log every request and show stack traces" },
  ],
  sections: [
    { title: "Exit codes", body: "  0 every check passed, 1 a check failed (each problem is named), 2 bad flags or input" },
    {
      title: "Examples",
      body: [
        "  bun scripts/verify-release.ts --server https://forge.example --repo ops/runner-images --tag latest",
        "  bun scripts/verify-release.ts --dist dist --require-signature",
      ].join("\n"),
    },
  ],
};

const text = (bytes: Uint8Array | null) => (bytes ? new TextDecoder().decode(bytes) : null);

/** Step 3: the signature over SHA256SUMS, checked by ssh-keygen against allowed_signers. */
async function checkSignature(sums: Uint8Array, signature: Uint8Array | null, allowedSigners: string, required: boolean): Promise<SignatureCheck | null> {
  if (!signature) {
    return required ? { ok: false, problem: `there is no ${SIGNATURE_FILE} and --require-signature was given` } : null;
  }
  const scratch = await mkdtemp(join(tmpdir(), "runner-images-verify-"));
  try {
    await writeFile(join(scratch, SUMS_FILE), sums);
    await writeFile(join(scratch, SIGNATURE_FILE), signature);
    return await verifySums(join(scratch, SUMS_FILE), join(scratch, SIGNATURE_FILE), allowedSigners);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/** Step 4: each file's size and SHA-256 against the manifest; every difference is a problem. */
async function checkArtifacts(files: ReleaseFiles, manifest: Manifest, only: Set<string> | null, problems: string[]): Promise<string[]> {
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
    const digest = await files.digest(artifact.name, (done) => bar.update(done));
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

function provenance(manifest: Manifest, signature: SignatureCheck | null): string[] {
  const nixpkgs = manifest.inputs.nixpkgs;
  const ci = manifest.ci;
  return [
    `version    ${manifest.version}`,
    `commit     ${manifest.source.commit}${manifest.source.dirty ? " (with uncommitted changes)" : ""}`,
    `nixpkgs    ${nixpkgs ? `${nixpkgs.rev ?? "(no rev)"} ${nixpkgs.narHash}` : "(no nixpkgs input recorded)"}`,
    `built      ${manifest.builtAt} with nix ${manifest.nix.version}${ci ? ` by ${ci.server}/${ci.repository} run ${ci.runNumber} (${ci.workflow})` : " by hand"}`,
    `signature  ${signature === null ? "none" : signature.ok ? `good, by ${signature.signer}` : "BAD"}`,
  ];
}

await runMain(async () => {
  const args = parseCommandLine(COMMAND);
  if (!args) return;
  const flags = args.flags;
  const tag = flags.tag as string | undefined;
  const dist = flags.dist as string | undefined;
  if (!tag === !dist) throw new UsageError("give either --tag <tag|latest> (a published release) or --dist <dir> (a local build)");
  const only = flags.only ? new Set(flags.only as string[]) : null;

  // 1. Where the files are, and the three small ones.
  let files: ReleaseFiles;
  if (dist) {
    files = await distFiles(dist);
  } else {
    const token = await readToken(flags["token-file"] as string | undefined, { required: false });
    const ci = ciEnv();
    const server = resolveServer(flags.server as string | undefined, ci, { insecureHttp: flags["insecure-http"] === true, publishing: false });
    const { owner, repo } = await resolveRepo(flags.repo as string | undefined, ci);
    const client = new ForgejoClient({ server, owner, repo, token, tuning: tuningFromEnv() });
    const release =
      tag === "latest"
        ? await client.call<Release>("GET", "/releases/latest", { idempotent: true, allow404: true, what: "looking up the latest release" })
        : await client.releaseByTag(tag!);
    if (!release) throw new Failure(`${owner}/${repo} on ${server} has no ${tag === "latest" ? "published release" : `release ${tag}`}`);
    if (release.draft) say(`note: ${release.tag_name} is a draft: not yet visible to downloaders`);
    files = releaseFiles(client, release);
  }
  say(`verifying ${files.description}`);
  const sumsBytes = await files.readSmall(SUMS_FILE);
  const manifestText = text(await files.readSmall(MANIFEST_FILE));
  if (!sumsBytes || !manifestText) {
    throw new Failure(`${files.description} has no ${sumsBytes ? MANIFEST_FILE : SUMS_FILE}: it was not published by publish-release.ts, or is incomplete`);
  }
  let manifest: Manifest;
  let sums: Map<string, string>;
  try {
    manifest = validateManifest(JSON.parse(manifestText));
    sums = parseSums(text(sumsBytes)!);
  } catch (error) {
    if (error instanceof ManifestError || error instanceof SyntaxError) throw new Failure(`${files.description}: ${error.message}`);
    throw error;
  }
  for (const name of only ?? []) {
    if (!manifest.artifacts.some((a) => a.name === name)) {
      throw new UsageError(`--only ${name}: the manifest has no such file (it has ${manifest.artifacts.map((a) => a.name).join(", ")})`);
    }
  }

  // 2. SHA256SUMS and the manifest must tell the same story.
  const problems = compareSumsWithManifest(sums, manifest);

  // 3. The signature.
  const signature = await checkSignature(
    sumsBytes,
    await files.readSmall(SIGNATURE_FILE),
    (flags["allowed-signers"] as string | undefined) ?? DEFAULT_ALLOWED_SIGNERS,
    flags["require-signature"] === true,
  );
  if (signature && !signature.ok) problems.push(signature.problem);

  // 4. Every file, byte for byte.
  const known = new Set([...manifest.artifacts.map((a) => a.name), SUMS_FILE, MANIFEST_FILE, SIGNATURE_FILE]);
  if (!dist) for (const name of new Set(files.names)) if (!known.has(name)) problems.push(`${name} is on the release but not in the manifest`);
  const checked = await checkArtifacts(files, manifest, only, problems);

  // 5. The verdict.
  for (const line of provenance(manifest, signature)) say(line);
  if (flags.json) {
    process.stdout.write(`${JSON.stringify({ ok: problems.length === 0, source: files.description, checked, problems, signature, manifest }, null, 2)}\n`);
  }
  for (const problem of problems) say(`FAIL ${problem}`);
  if (problems.length > 0) throw new Failure(`${problems.length} problem${problems.length === 1 ? "" : "s"} with ${files.description}`);
  say(`verified: ${checked.length} files match the manifest${signature?.ok ? ", and its checksums are signed" : ""}`);
});
