#!/usr/bin/env -S bun --smol
/**
 * publish-release: publishes a dist/ (from build-images.ts) as a Forgejo release, safely
 * re-runnable after any failure.
 *
 * The steps, in order (before them, the token and the signing key are read, so that no output
 * can show them; a key that cannot be used is refused at once, in a dry run too):
 *   1. check the dist against its manifest (sizes here, every byte in step 5);
 *   2. work out server, repository and tag (the one rule, lib/tags.ts; a build with uncommitted
 *      changes goes out only under boot-dev-, or with --allow-dirty); sign the provenance
 *      statement for the tag and write both into the dist (a boot-v release without a key is
 *      refused here, unless --unsigned); contact the server (a dead or wrong one is named within
 *      seconds, never retried); check the token can write the repository;
 *   3. check the git tag, if it exists, is at the dist's commit, and otherwise that the server
 *      has that commit (publishing creates the tag there);
 *   4. look up the release: a published release is immutable (identical = done, nothing is
 *      even re-hashed; different = refused, unless --replace-published);
 *   5. re-hash every file of the dist, then create the release as a DRAFT if there is none
 *      (nothing is visible to downloaders yet), or turn the published one to replace back into
 *      a draft;
 *   6. sync the draft's assets with the dist (identical ones skipped, others replaced through a
 *      temporary name, strays deleted; then SHA256SUMS, the statement, its signature, and
 *      manifest.json last: a release that has it is complete), then verify it holds
 *      exactly the dist (sizes; with --verify full, every hash);
 *   7. publish it (the tag is created now, at the dist's commit) and confirm the tag;
 *   8. delete all but the newest --keep-dev dev releases.
 *
 * Run it as `bun --smol scripts/publish-release.ts`: with JSC's small heap the streamed chunks
 * of a 2 GB upload are collected sooner and the process stays under 64 MB (bench/).
 */
import { readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Failure, UsageError } from "./lib/cli/errors.ts";
import { onInterrupt, runMain } from "./lib/cli/run-main.ts";
import { parseCommandLine, type CommandSpec } from "./lib/cli/command-line.ts";
import { ciEnv } from "./lib/cli/ci-env.ts";
import { ForgejoClient, HttpError } from "./lib/forgejo/client.ts";
import type { Release } from "./lib/forgejo/types.ts";
import { hashBytes } from "./lib/build/hash.ts";
import { TUNING_HELP, tuningFromEnv } from "./lib/forgejo/http.ts";
import { formatBytes, progress, say } from "./lib/cli/log.ts";
import { MANIFEST_FILE, ManifestError, SUMS_FILE, checkDist, type Manifest } from "./lib/build/manifest.ts";
import { SERVER_FLAGS, resolveRepo, resolveServer } from "./lib/cli/server-flags.ts";
import { checkDirty, resolveTag } from "./lib/cli/publish-tag.ts";
import { readToken } from "./lib/cli/token.ts";
import { ReleaseDrift, publishedDifferences, syncAssets, verifyAssets, type SyncReport } from "./lib/forgejo/release-sync.ts";
import { STATEMENT_FILE, formatStatement, makeStatement } from "./lib/trust/provenance.ts";
import {
  NAMESPACE, REPOSITORY_ALLOWED_SIGNERS, SIGNING_HINT, SIGNING_KEY_ENV, STATEMENT_SIGNATURE_FILE, sign, signingKey, verifySignature, type SigningKey,
} from "./lib/trust/signing.ts";
import { isDevTag, isPrereleaseTag, isReleaseTag } from "./lib/trust/tags.ts";
import type { LocalFile } from "./lib/forgejo/upload.ts";

const COMMAND: CommandSpec = {
  name: "publish-release.ts",
  summary: "Publish a dist directory as a Forgejo release: draft, sync assets, verify, publish",
  flags: [
    { name: "dist", value: "dir", description: "The build to publish (default: dist)" },
    // Publishing by hand needs the server named; CI supplies it.
    ...SERVER_FLAGS.map((f) => (f.name === "server" ? { ...f, requiredByHand: true } : f)),
    { name: "tag", value: "tag", requiredByHand: true, description: "boot-v<version> or boot-dev-<label>, as far as git accepts the name (scripts/lib/trust/tags.ts); with a - after the version, a prerelease (default in CI: the pushed tag, or boot-dev-<run>-<sha> on a dispatch)" },
    { name: "title", value: "text", description: "Release title (default: Runner images <tag>)" },
    { name: "notes-file", value: "file", description: "Release notes, Markdown (default: generated from the manifest)" },
    { name: "prerelease", description: "Mark as a prerelease (default: for boot-dev- tags and boot-v<version>-<suffix>)" },
    { name: "keep-dev", value: "n", description: "After publishing, keep only the newest n boot-dev- releases and their tags (default: 3)" },
    { name: "verify", value: "full|sizes", description: "Before publishing: download every asset back and hash it (full, default), or compare sizes only" },
    { name: "token-file", value: "file", description: "Read the token from this file instead of FORGEJO_TOKEN/GITHUB_TOKEN" },
    { name: "signing-key", value: "file", description: `Sign the provenance statement with this SSH private key into ${STATEMENT_SIGNATURE_FILE} (default: the key in ${SIGNING_KEY_ENV}, if set)` },
    { name: "unsigned", description: "Publish a boot-v release without a signature (refused otherwise: verify-release rejects unsigned releases)" },
    { name: "allow-dirty", description: "Publish a build of uncommitted changes under a boot-v tag" },
    { name: "replace-published", description: "Replace the assets of an already published release that differs (it is a draft meanwhile)" },
    { name: "dry-run", description: "Print the plan (calls and bytes) and change nothing" },
    { name: "json", description: "Print the result as JSON on stdout" },
    { name: "debug", description: "Log every API call (never the token) and show stack traces" },
  ],
  sections: [
    {
      title: "Environment",
      body: [
        "  FORGEJO_TOKEN, GITHUB_TOKEN   the token (write:repository scope, or the Actions token); never a flag value",
        `  ${SIGNING_KEY_ENV}   an SSH private key (the text) to sign the provenance statement with; never a flag value`,
        "  FORGEJO_SERVER_URL, FORGEJO_REPOSITORY, FORGEJO_REF_NAME, FORGEJO_RUN_NUMBER, ...   set by Forgejo Actions",
        ...TUNING_HELP,
      ].join("\n"),
    },
    { title: "Exit codes", body: "  0 published (or already published and identical), 1 the work failed, 2 bad flags or input" },
    {
      title: "Examples",
      body: [
        "  FORGEJO_TOKEN=$(cat ~/.config/forgejo-token) bun --smol scripts/publish-release.ts \\",
        "      --server https://forge.example --repo ops/runner-images --tag boot-v1.2.0 --signing-key ~/.config/runner-images-ci",
        "  bun --smol scripts/publish-release.ts --server https://forge.example --repo ops/runner-images --tag boot-v1.2.0 \\",
        "      --token-file ~/.config/forgejo-token --signing-key ~/.config/runner-images-ci --dry-run",
        "  bun --smol scripts/publish-release.ts --server https://forge.example --repo ops/runner-images --tag boot-dev-try1   # unsigned, with a warning",
      ].join("\n"),
    },
  ],
};

const flag = (flags: Record<string, unknown>, name: string) => flags[name] as string | undefined;

interface Plan {
  dryRun: boolean;
  line: (text: string) => void;
}

// --- the steps -------------------------------------------------------------------------------

/**
 * Step 1: the dist is complete and consistent: manifest, SHA256SUMS and every file's size (the
 * bytes are re-hashed in rehashDist, before anything is uploaded). Returns the artifacts to
 * publish; the small files follow once the tag is known (provenanceFiles).
 */
async function checkTheDist(dist: string): Promise<{ manifest: Manifest; files: LocalFile[] }> {
  const manifest = await checkDistAsInput(dist, { rehash: false });
  const files: LocalFile[] = manifest.artifacts.map((a) => ({ name: a.name, path: join(dist, a.name), size: a.size, sha256: a.sha256 }));
  return { manifest, files };
}

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
 * Step 2b: the provenance statement for this tag (provenance.ts), signed with the key if there
 * is one, written into the dist; returns the small files to publish after the artifacts, in
 * order, manifest.json last: a release that has it is complete. A boot-v release without a key
 * is refused before any upload: verify-release rejects unsigned releases by default, so it could
 * not be verified, and nothing would bind its files to the tag. A dry run signs in memory (so a
 * key that cannot sign fails now, not in the real run) and writes nothing.
 */
async function provenanceFiles(dist: string, manifest: Manifest, tag: string, key: SigningKey | null, unsigned: boolean, plan: Plan): Promise<LocalFile[]> {
  if (!key && isReleaseTag(tag) && !unsigned) {
    throw new UsageError(
      `refusing to publish ${tag} unsigned: verify-release rejects a release without a signature, and nothing would bind its files to ${tag}; ` +
        `set ${SIGNING_KEY_ENV} (the CI secret) or --signing-key, or give --unsigned to publish it anyway`,
      SIGNING_HINT,
    );
  }
  if (!key) say(`warning: ${tag} goes out unsigned: verify-release rejects it unless run with --allow-unsigned`);
  const manifestBytes = await readFile(join(dist, MANIFEST_FILE));
  const sums = await readFile(join(dist, SUMS_FILE));
  const statement = Buffer.from(formatStatement(makeStatement(manifest, manifestBytes, sums, tag)));
  const signature = key ? await sign(statement, key, NAMESPACE.publisher) : null;
  if (signature) await checkAgainstRepository(statement, signature);
  const what = `${STATEMENT_FILE} for ${tag}${signature ? `, signed into ${STATEMENT_SIGNATURE_FILE}` : " (unsigned)"}`;
  if (plan.dryRun) {
    plan.line(`would write ${what}`);
  } else {
    // A dist on a read-only mount (or otherwise unwritable) is bad input: said before any upload.
    const writing = (name: string) => (error: NodeJS.ErrnoException) => {
      throw new UsageError(`--dist ${dist}: cannot write ${name} into it (${error.code ?? "unknown error"})`, "publish a writable copy of the dist (cp -r)");
    };
    await writeFile(join(dist, STATEMENT_FILE), statement).catch(writing(STATEMENT_FILE));
    if (signature) await writeFile(join(dist, STATEMENT_SIGNATURE_FILE), signature).catch(writing(STATEMENT_SIGNATURE_FILE));
    else await rm(join(dist, STATEMENT_SIGNATURE_FILE), { force: true }).catch(writing(STATEMENT_SIGNATURE_FILE));
    say(`wrote ${what}`);
  }
  const small = (name: string, bytes: Uint8Array): LocalFile => ({ name, path: join(dist, name), size: bytes.byteLength, sha256: hashBytes(bytes) });
  return [
    small(SUMS_FILE, sums),
    small(STATEMENT_FILE, statement),
    ...(signature ? [small(STATEMENT_SIGNATURE_FILE, signature)] : []),
    small(MANIFEST_FILE, manifestBytes),
  ];
}

/**
 * Before anything is uploaded: every byte of the dist re-hashed against the manifest. Skipped
 * when the release is already published and identical: then nothing is sent at all.
 */
async function rehashDist(dist: string): Promise<void> {
  say(`re-hashing ${dist} against its manifest`);
  await checkDistAsInput(dist, {
    rehash: true,
    onFile: (name, size) => {
      const bar = progress(`hashing ${name}`, size);
      return (done) => bar.update(done);
    },
  });
}

/**
 * A dist that is missing or does not match its own manifest is bad input (exit 2), not a failed
 * publish; what helps is a new build, not the help text.
 */
async function checkDistAsInput(dist: string, options: Parameters<typeof checkDist>[1]): Promise<Manifest> {
  const rebuild = "rebuild it with build-images.ts: nix develop -c bun scripts/build-images.ts (see docs/RUNNER_IMAGES.md)";
  if (!(await stat(dist).catch(() => null))?.isDirectory()) {
    throw new UsageError(`--dist ${dist}: no such directory`, "build one with build-images.ts: nix develop -c bun scripts/build-images.ts (it writes dist/)");
  }
  try {
    return await checkDist(dist, options);
  } catch (error) {
    if (error instanceof ManifestError) throw new UsageError(error.message, rebuild);
    throw error;
  }
}

/** Step 2: the token must reach the repository and be allowed to write it. */
async function checkAccess(client: ForgejoClient): Promise<void> {
  const repo = await client.repository();
  if (repo.permissions && !repo.permissions.push) {
    throw new Failure(`the token can read ${client.repoName} but not write it: it needs write access to the repository's releases`);
  }
}

/**
 * Step 3: the dist's commit is on the server (publishing creates the tag there; an unpushed
 * commit would only fail at the very end, after every upload), and an existing tag names it: a
 * moved tag is never "fixed" here.
 */
async function checkTag(client: ForgejoClient, tag: string, commit: string): Promise<void> {
  const existing = await client.tag(tag);
  if (existing && existing.commit.sha !== commit) {
    throw new Failure(`tag ${tag} already exists at ${existing.commit.sha}, but the dist was built from ${commit}: build that commit, or use another tag`);
  }
  // A tag at the commit proves the server has it; otherwise ask.
  if (!existing && !(await client.hasCommit(commit))) {
    throw new Failure(`the dist was built from ${commit}, which ${client.repoName} on ${client.options.server} does not have: push it (git push origin ${commit}:refs/heads/<branch>), then re-run`);
  }
}

/**
 * Step 5: a draft release for the tag at the dist's commit; if a concurrent run created it first
 * (409), theirs. Null in a dry run.
 */
async function createDraft(client: ForgejoClient, tag: string, fields: { title: string; notes: string; prerelease: boolean; commit: string }, plan: Plan): Promise<Release | null> {
  plan.line(`${plan.dryRun ? "would create" : "creating"} draft release ${tag} at ${fields.commit.slice(0, 12)}`);
  if (plan.dryRun) return null;
  const created = await client.createRelease({
    tag_name: tag,
    // A full SHA: a branch name would resolve at publish time, not now (forgejo-release-api.md §5).
    target_commitish: fields.commit,
    name: fields.title,
    body: fields.notes,
    draft: true,
    prerelease: fields.prerelease,
  });
  if (created) return created;
  say(`release ${tag} was created concurrently; continuing with it`);
  const again = await client.findRelease(tag);
  if (!again) throw new Failure(`creating release ${tag}: the server says it exists (409) but it cannot be found; is a bare tag row left? see docs/RUNNER_IMAGES.md`);
  return again;
}

/** Step 6: sync, then verify; a concurrent run can disturb a round, so up to three. */
async function syncAndVerify(client: ForgejoClient, release: Release, files: LocalFile[], verify: "full" | "sizes", plan: Plan): Promise<SyncReport> {
  for (let round = 1; ; round++) {
    const report = await syncAssets(client, release, files, { dryRun: plan.dryRun, plan: plan.line });
    if (plan.dryRun) {
      plan.line(`would verify the release (${verify === "full" ? "sizes, then every file downloaded back and hashed" : "sizes"})`);
      return report;
    }
    try {
      say(`verifying the release (${verify === "full" ? "downloading back what this run has not hashed yet" : "sizes"})`);
      await verifyAssets(client, release, files, verify, report.verified);
      return report;
    } catch (error) {
      if (!(error instanceof ReleaseDrift) || round === 3) throw error;
      say(`${error.message}; syncing again (round ${round + 1} of 3)`);
    }
  }
}

/**
 * Step 7: publish, then confirm the tag exists at the dist's commit. Publishing is when Forgejo
 * creates the tag, and every way that can fail is a bare 500 (forgejo-release-api.md §5, §15a).
 */
async function publish(client: ForgejoClient, release: Release, tag: string, commit: string, fields: { title: string; notes: string; prerelease: boolean }): Promise<Release> {
  let published: Release;
  try {
    published = await client.editRelease(release.id, { draft: false, name: fields.title, body: fields.notes, prerelease: fields.prerelease }, `publishing ${tag}`);
  } catch (error) {
    if (error instanceof HttpError && error.status === 500) {
      const creator = release.author?.login ?? "its creator";
      throw new Failure(
        `publishing ${tag}: 500: Forgejo could not create the tag ${tag} at ${commit.slice(0, 12)}. The causes it hides behind a 500: ` +
          `a protected-tag rule that the draft's creator (${creator}, not necessarily this token) may not pass; the Actions token never can: push the tag first (git push origin ${commit}:refs/tags/${tag}) or publish with a personal token; ` +
          `the commit gone from the server since this run checked it; another release already holding the tag; or a fault on the server (its log says which)`,
      );
    }
    throw error;
  }
  const created = await client.tag(tag);
  if (created?.commit.sha !== commit) {
    throw new Failure(`published ${tag}, but the tag points at ${created?.commit.sha ?? "nothing"} instead of ${commit}: inspect the release at ${published.html_url}`);
  }
  return published;
}

/**
 * Step 8: all but the newest `keep` published boot-dev- releases go, with their tags; never the
 * one just published, and never a draft (another run still at work).
 */
async function pruneDevReleases(client: ForgejoClient, current: string, keep: number, plan: Plan): Promise<string[]> {
  const dev: Release[] = [];
  for await (const r of client.releases()) {
    if (isDevTag(r.tag_name) && !r.draft && r.tag_name !== current) dev.push(r);
  }
  if (isDevTag(current)) keep = Math.max(0, keep - 1); // the new one counts toward the kept
  dev.sort((a, b) => Date.parse(b.created_at) - Date.parse(a.created_at) || b.id - a.id);
  const pruned: string[] = [];
  for (const old of dev.slice(keep)) {
    plan.line(`${plan.dryRun ? "would prune" : "pruning"} dev release ${old.tag_name}`);
    if (!plan.dryRun) {
      await client.deleteRelease(old.id, `deleting release ${old.tag_name}`);
      // Deleting a release keeps its git tag (forgejo-release-api.md §7).
      await client.deleteTag(old.tag_name);
    }
    pruned.push(old.tag_name);
  }
  return pruned;
}

function defaultNotes(manifest: Manifest, tag: string, server: string, repo: string): string {
  const nixpkgs = manifest.inputs.nixpkgs;
  const base = `${server}/${repo}/releases/download/${tag}`;
  const lines = [
    `Forgejo runner boot images built from ${manifest.source.commit}${manifest.source.dirty ? " with uncommitted changes" : ""}.`,
    "",
    nixpkgs ? `nixpkgs: ${nixpkgs.rev ?? "?"} (${nixpkgs.narHash})` : "",
    manifest.ci ? `Built by ${manifest.ci.server}/${manifest.ci.repository}/actions/runs/${manifest.ci.runNumber}` : "Built by hand.",
    "",
    "| file | size | SHA-256 |",
    "| --- | --- | --- |",
    ...manifest.artifacts.map((a) => `| ${a.name} | ${formatBytes(a.size)} | \`${a.sha256}\` |`),
    "",
    `Verify a download: \`sha256sum -c ${SUMS_FILE}\` next to the files.`,
    ...manifest.artifacts.filter((a) => a.name.endsWith(".ipxe")).map((a) => `Boot over the network: \`chain ${base}/${a.name}\``),
  ];
  return lines.filter((l, i) => l !== "" || lines[i - 1] !== "").join("\n");
}

/** What is left when a run stops after creating the draft. */
const drafted = (tag: string) => `${tag} is left as a draft, not visible to downloaders; run the same command again to finish it`;

function parseKeepDev(raw: string | undefined): number {
  if (raw === undefined) return 3;
  if (!/^\d+$/.test(raw)) throw new UsageError(`--keep-dev ${raw} is not a whole number of 0 or more`);
  return Number(raw);
}

// --- main ------------------------------------------------------------------------------------

await runMain(async () => {
  const args = parseCommandLine(COMMAND);
  if (!args) return;
  const flags = args.flags;
  const dryRun = flags["dry-run"] === true;
  const verify = flag(flags, "verify") ?? "full";
  if (verify !== "full" && verify !== "sizes") throw new UsageError(`--verify ${verify}: choose full or sizes`);
  const keepDev = parseKeepDev(flag(flags, "keep-dev"));
  const plan: Plan = { dryRun, line: (text) => say(dryRun ? `plan: ${text}` : text) };
  // What a Ctrl-C (or, from step 5, a failure) leaves behind, said as the last line.
  const left = { now: "nothing was changed on the server" };
  onInterrupt(() => say(`interrupted: ${left.now}`));

  // The token first: from here on, no output can show it.
  const token = await readToken(flag(flags, "token-file"), { required: true });

  // The signing key, checked now (a dry run too); from here on no child process sees it.
  const key = await signingKey(flag(flags, "signing-key"));

  // 1. The dist.
  const dist = flag(flags, "dist") ?? "dist";
  const { manifest, files } = await checkTheDist(dist);

  // 2. Where to, as whom.
  const ci = ciEnv();
  const server = resolveServer(flag(flags, "server"), ci, { insecureHttp: flags["insecure-http"] === true, publishing: true });
  const { owner, repo } = await resolveRepo(flag(flags, "repo"), ci);
  const tag = resolveTag(flag(flags, "tag"), ci, manifest);
  checkDirty(manifest, tag, flags["allow-dirty"] === true);
  files.push(...(await provenanceFiles(dist, manifest, tag, key, flags.unsigned === true, plan)));
  const commit = manifest.source.commit;
  const notesFile = flag(flags, "notes-file");
  const title = flag(flags, "title") ?? `Runner images ${tag}`;
  const titleBytes = Buffer.byteLength(title);
  // Forgejo cuts a longer title to 252 bytes and "…" (SplitStringAtByteN; forgejo-release-api.md §15a).
  if (titleBytes > 255) throw new UsageError(`--title is ${titleBytes} bytes; Forgejo keeps 255 (it cuts longer titles): shorten it`);
  const fields = {
    title,
    notes: notesFile
      ? await readFile(notesFile, "utf8").catch(() => {
          throw new UsageError(`--notes-file ${notesFile} cannot be read`);
        })
      : defaultNotes(manifest, tag, server, `${owner}/${repo}`),
    prerelease: flags.prerelease === true || isPrereleaseTag(tag),
    commit,
  };
  const client = new ForgejoClient({ server, owner, repo, token, tuning: tuningFromEnv() });
  say(`${dryRun ? "planning" : "publishing"} ${tag} (${commit.slice(0, 12)}) to ${server}/${owner}/${repo}`);
  await client.probe(); // first contact
  await checkAccess(client);

  // 3. The tag, if it exists already, names the dist's commit; else the server has that commit.
  await checkTag(client, tag, commit);

  // 4. The release, if any: a published one must already be identical (then nothing is sent).
  let release = await client.findRelease(tag);
  let state: "published" | "already-published" | "dry-run" = dryRun ? "dry-run" : "published";
  let report: SyncReport = { uploaded: files.map((f) => f.name), skipped: [], deleted: [], verified: new Set() };
  let unpublish = false;
  if (release && !release.draft) {
    const differences = await publishedDifferences(client, release, files, manifest);
    if (differences.length === 0) {
      say(`${tag} is already published with exactly these files: nothing to do`);
      state = "already-published";
      report = { uploaded: [], skipped: files.map((f) => f.name), deleted: [], verified: new Set() };
    } else if (flags["replace-published"] !== true) {
      throw new Failure(`${tag} is already published and differs from the dist (${differences.join("; ")}); published releases are not rewritten: use a new tag, or --replace-published if you mean it`);
    } else {
      plan.line(`${dryRun ? "would turn" : "turning"} published ${tag} back into a draft to replace its assets (${differences.join("; ")})`);
      unpublish = true;
    }
  }

  let url = release?.html_url ?? `${server}/${owner}/${repo}/releases/tag/${tag}`;
  if (state !== "already-published") {
    if (release?.draft) left.now = drafted(tag);
    const maybe = `${tag} may or may not be published; run the same command again: it finishes or confirms it`;
    try {
      // 5. Every byte checked before the first write; then the draft to fill.
      await rehashDist(dist);
      if (!dryRun && release && !release.draft) left.now = `${tag} may have been turned back into a draft; run the same command again to finish it`;
      if (!release) release = await createDraft(client, tag, fields, plan);
      else if (unpublish && !dryRun) release = await client.editRelease(release.id, { draft: true }, `unpublishing ${tag}`);
      if (release) left.now = drafted(tag);

      // 6, 7. Sync and verify, then publish.
      if (release) report = await syncAndVerify(client, release, files, verify as "full" | "sizes", plan);
      else for (const f of files) plan.line(`would upload ${f.name} (${formatBytes(f.size)})`);
      plan.line(dryRun ? `would publish ${tag}, creating the tag at ${commit.slice(0, 12)}` : `publishing ${tag}`);
      if (release && !dryRun) {
        left.now = maybe;
        url = (await publish(client, release, tag, commit, fields)).html_url;
      }
    } catch (error) {
      // An answer from the server (an HttpError) means the draft stayed a draft; a lost
      // connection while publishing leaves it open whether the tag was made.
      if (left.now === maybe && (error instanceof HttpError || error instanceof ReleaseDrift)) left.now = drafted(tag);
      if (error instanceof Failure && !dryRun) error.message += `; ${left.now}`;
      throw error;
    }
  }
  left.now = `${tag} is published; pruning old dev releases was cut short, the next run finishes it`;

  // 8. Old dev releases.
  const pruned = state === "already-published" ? [] : await pruneDevReleases(client, tag, keepDev, plan);

  const bytes = files.filter((f) => report.uploaded.includes(f.name)).reduce((n, f) => n + f.size, 0);
  say(
    dryRun
      ? `plan complete: ${report.uploaded.length} files (${formatBytes(bytes)}) to upload, ${report.skipped.length} to skip; nothing was changed`
      : `${state === "already-published" ? "already published" : "published"}: ${url} (${report.uploaded.length} uploaded, ${report.skipped.length} unchanged, ${formatBytes(client.stats.bytesUploaded)} sent, ${client.stats.calls} API calls)`,
  );
  if (flags.json) {
    const result = {
      state, tag, url, commit,
      uploaded: report.uploaded, skipped: report.skipped, deleted: report.deleted, pruned,
      ...client.stats,
      plannedUploadBytes: dryRun ? bytes : undefined,
    };
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  }
});
