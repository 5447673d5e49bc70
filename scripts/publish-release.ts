#!/usr/bin/env -S bun --smol
/**
 * publish-release: publishes a dist/ (from build-images.ts) as a Forgejo release, safely
 * re-runnable after any failure. Like `terraform plan`/`apply`: it looks at the server, computes
 * a plan, prints it, and (unless --dry-run) applies that same plan step by step.
 *
 * The steps, in order (before them, the token and the signing key are read, so that no output
 * can show them; a key that cannot be used is refused at once, in a dry run too):
 *   1. inputs: check the dist against its manifest (sizes here, every byte in step 3); work out
 *      server, repository and tag (the one rule, lib/trust/tags.ts; a build with uncommitted
 *      changes goes out only under boot-dev-, or with --allow-dirty); check what the provenance
 *      statement needs (lib/trust/publish-provenance.ts): a key for a boot-v release (unless
 *      --unsigned), one that signs, and a dist it can be written into. Nothing has touched the
 *      server yet;
 *   2. contact the server (a dead or wrong one is named within seconds, never retried); check the
 *      token can write the repository, and take its public address from the answer (html_url:
 *      --server and FORGEJO_SERVER_URL may be internal; lib/forgejo/public-address.ts); check
 *      the git tag, if it exists, is at the dist's commit, and otherwise that the server has that
 *      commit (publishing creates the tag there); sign the statement for that address and write
 *      it into the dist (not in a dry run), before any write to the server;
 *   3. look (lib/forgejo/publish-look.ts): the release, if any. A published release is immutable:
 *      identical = done, nothing is even re-hashed; different = refused, unless
 *      --replace-published. Otherwise re-hash every file of the dist, and download back every
 *      asset whose name and size match, to know which are identical; list the dev releases;
 *   4. plan (lib/forgejo/publish-plan.ts): create the DRAFT (nothing is visible to downloaders
 *      yet) or turn the published one to replace back into a draft; delete strays; skip identical
 *      assets, upload the others through a temporary name (SHA256SUMS, the statement, its
 *      signature, and manifest.json last: a release that has it is complete); verify it holds
 *      exactly the dist (sizes; with --verify full, every hash); publish it (the tag is created
 *      now, at the dist's commit) and confirm the tag; delete all but the newest --keep-dev dev
 *      releases. Each action says what it sends and what is left if the run stops after it;
 *   5. print the plan; with --dry-run, stop. Otherwise apply it (lib/forgejo/publish-apply.ts);
 *      if a concurrent run disturbs the release, look, plan and apply again (three rounds);
 *   6. report (one line; --json: the result on stdout).
 *
 * Run it as `bun --smol scripts/publish-release.ts`: with JSC's small heap the streamed chunks
 * of a 2 GB upload are collected sooner and the process stays under 64 MB (bench/).
 */
import { join } from "node:path";
import { UsageError } from "./lib/cli/errors.ts";
import { onInterrupt, runMain } from "./lib/cli/run-main.ts";
import { parseCommandLine, type CommandSpec } from "./lib/cli/command-line.ts";
import { ciEnv } from "./lib/cli/ci-env.ts";
import { formatBytes, say } from "./lib/cli/log.ts";
import { SERVER_FLAGS, resolveRepo, resolveServer } from "./lib/cli/server-flags.ts";
import { checkDirty, resolveTag } from "./lib/cli/publish-tag.ts";
import { readToken } from "./lib/cli/token.ts";
import { ForgejoClient } from "./lib/forgejo/client.ts";
import { TUNING_HELP, tuningFromEnv } from "./lib/forgejo/http.ts";
import { lookUp } from "./lib/forgejo/publish-look.ts";
import { planPublish, planReport, type Plan } from "./lib/forgejo/publish-plan.ts";
import { Whereabouts, applyPlan, inRounds, printPlan, type Target } from "./lib/forgejo/publish-apply.ts";
import { releaseFields } from "./lib/forgejo/release-fields.ts";
import { asPublished, assumedAddress, publicAddress, publicUrlFlag, type PublicAddress } from "./lib/forgejo/public-address.ts";
import { checkAccess, checkTag } from "./lib/forgejo/preflight.ts";
import type { LocalFile } from "./lib/forgejo/upload.ts";
import { checkDistAsInput, rehashDist } from "./lib/build/dist-input.ts";
import type { Manifest } from "./lib/build/manifest.ts";
import { prepareProvenance } from "./lib/trust/publish-provenance.ts";
import { bootSigner, signBootFilesFor } from "./lib/trust/boot-signing.ts";
import { SIGNING_KEY_ENV, STATEMENT_SIGNATURE_FILE, signingKey } from "./lib/trust/signing.ts";

const COMMAND: CommandSpec = {
  name: "publish-release.ts",
  summary: "Publish a dist directory as a Forgejo release: draft, sync assets, verify, publish",
  flags: [
    { name: "dist", value: "dir", description: "The build to publish (default: dist)" },
    // Publishing by hand needs the server named; CI supplies it.
    ...SERVER_FLAGS.map((f) => (f.name === "server" ? { ...f, requiredByHand: true } : f)),
    { name: "public-url", value: "url", description: "Where people reach this Forgejo, when not at --server (a runner registered at an internal address): the server's html_url must name the repository under --server or this; it is the address the statement and the notes give (default: RUNNER_IMAGES_PUBLIC_URL)" },
    { name: "tag", value: "tag", requiredByHand: true, description: "boot-v<version> or boot-dev-<label>, as far as git accepts the name (scripts/lib/trust/tags.ts); with a - after the version, a prerelease (default in CI: the pushed tag, or boot-dev-<run>-<sha> on a dispatch)" },
    { name: "title", value: "text", description: "Release title (default: Runner images <tag>)" },
    { name: "notes-file", value: "file", description: "Release notes, Markdown (default: generated from the manifest)" },
    { name: "prerelease", description: "Mark as a prerelease (default: for boot-dev- tags and boot-v<version>-<suffix>)" },
    { name: "keep-dev", value: "n", description: "After publishing, keep only the newest n boot-dev- releases and their tags (default: 3)" },
    { name: "verify", value: "full|sizes", description: "Before publishing: download every asset back and hash it (full, default), or compare sizes only" },
    { name: "token-file", value: "file", description: "Read the token from this file instead of FORGEJO_TOKEN/GITHUB_TOKEN" },
    { name: "signing-key", value: "file", description: `Sign the provenance statement with this SSH private key into ${STATEMENT_SIGNATURE_FILE} (default: the key in ${SIGNING_KEY_ENV}, if set)` },
    { name: "boot-signing-cert", value: "file", description: "Sign each netboot file for the trust-enforcing iPXE (<name>.sig, CMS DER) with this code-signing certificate (PEM); its key: --boot-signing-key or RUNNER_IMAGES_BOOT_SIGNING_KEY" },
    { name: "boot-signing-chain", value: "file", description: "The certificates from --boot-signing-cert up to the fleet's boot root (PEM), carried in every .sig" },
    { name: "boot-signing-key", value: "file", description: "The private key (PEM, unencrypted, mode 0600) of --boot-signing-cert" },
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
        `  RUNNER_IMAGES_BOOT_SIGNING_KEY   the --boot-signing-cert key (PEM text) to sign the netboot files with; never a flag value`,
        "  RUNNER_IMAGES_PUBLIC_URL   --public-url, for CI (a repository variable)",
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

// --- the steps -------------------------------------------------------------------------------

/**
 * Step 1: the dist is complete and consistent: manifest, SHA256SUMS and every file's size (the
 * bytes are re-hashed in the look, before anything is uploaded). Returns the artifacts to
 * publish; the small files follow once the tag is known (provenance).
 */
async function checkTheDist(dist: string): Promise<{ manifest: Manifest; files: LocalFile[] }> {
  const manifest = await checkDistAsInput(dist, { rehash: false });
  const files: LocalFile[] = manifest.artifacts.map((a) => ({ name: a.name, path: join(dist, a.name), size: a.size, sha256: a.sha256 }));
  return { manifest, files };
}

/** How the run goes: --dry-run, --verify, --keep-dev, checked before anything else. */
function runOptions(flags: Record<string, unknown>): { dryRun: boolean; verify: "full" | "sizes"; keepDev: number; publicUrl: string | null } {
  const verify = flag(flags, "verify") ?? "full";
  if (verify !== "full" && verify !== "sizes") throw new UsageError(`--verify ${verify}: choose full or sizes`);
  const raw = flag(flags, "keep-dev");
  if (raw !== undefined && !/^\d+$/.test(raw)) throw new UsageError(`--keep-dev ${raw} is not a whole number of 0 or more`);
  const publicUrl = publicUrlFlag(flag(flags, "public-url") ?? process.env.RUNNER_IMAGES_PUBLIC_URL);
  return { dryRun: flags["dry-run"] === true, verify, keepDev: raw === undefined ? 3 : Number(raw), publicUrl };
}

/** Step 6: one line for the operator; with --json, the result on stdout. */
function report(r: { plan: Plan; files: LocalFile[]; dryRun: boolean; url: string; tag: string; commit: string; stats: ForgejoClient["stats"]; json: boolean }): void {
  const { uploaded, skipped, deleted, pruned, uploadBytes } = planReport(r.plan, r.files);
  const state = r.plan.alreadyPublished ? "already-published" : r.dryRun ? "dry-run" : "published";
  say(
    r.dryRun
      ? `plan complete: ${uploaded.length} files (${formatBytes(uploadBytes)}) to upload, ${skipped.length} to skip; nothing was changed`
      : `${r.plan.alreadyPublished ? "already published" : "published"}: ${r.url} (${uploaded.length} uploaded, ${skipped.length} unchanged, ${formatBytes(r.stats.bytesUploaded)} sent, ${r.stats.calls} API calls)`,
  );
  if (!r.json) return;
  const result = { state, tag: r.tag, url: r.url, commit: r.commit, uploaded, skipped, deleted, pruned, ...r.stats, plannedUploadBytes: r.dryRun ? uploadBytes : undefined };
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
}

// --- main ------------------------------------------------------------------------------------

await runMain(async () => {
  const args = parseCommandLine(COMMAND);
  if (!args) return;
  const flags = args.flags;
  const { dryRun, verify, keepDev, publicUrl } = runOptions(flags);
  // What a Ctrl-C (or a failure once the plan is applied) leaves behind, read from the plan.
  const where = new Whereabouts();
  onInterrupt(() => say(`interrupted: ${where.left()}`));

  // 1. Inputs: the token first (from here on, no output can show it), the signing key (checked
  // now, a dry run too; from here on no child process sees it), the dist, where to, as whom.
  const token = await readToken(flag(flags, "token-file"), { required: true });
  const key = await signingKey(flag(flags, "signing-key"));
  const bootKey = await bootSigner({ certificate: flag(flags, "boot-signing-cert"), chain: flag(flags, "boot-signing-chain"), keyFile: flag(flags, "boot-signing-key") });
  const dist = flag(flags, "dist") ?? "dist";
  const { manifest, files } = await checkTheDist(dist);
  const ci = ciEnv();
  const server = resolveServer(flag(flags, "server"), ci, { insecureHttp: flags["insecure-http"] === true, publishing: true });
  const { owner, repo } = await resolveRepo(flag(flags, "repo"), ci);
  const tag = resolveTag(flag(flags, "tag"), ci, manifest);
  checkDirty(manifest, tag, flags["allow-dirty"] === true);
  // The statement names the server's public address: the key and the dist are checked now, it is made once the server answers.
  const statementInputs = { dist, manifest, tag, owner, repo, key, unsigned: flags.unsigned === true, bootSigs: await signBootFilesFor(dist, manifest, bootKey) };
  const provenance = await prepareProvenance(statementInputs, assumedAddress(publicUrl ?? server, owner, repo));
  const commit = manifest.source.commit;
  const given = { title: flag(flags, "title"), notesFile: flag(flags, "notes-file"), prerelease: flags.prerelease === true };
  const fieldsAt = (at: PublicAddress) => releaseFields(given, asPublished(manifest, owner, repo, at), tag, at.repository);
  await fieldsAt(assumedAddress(publicUrl ?? server, owner, repo)); // checked now; the links follow the server's answer
  const client = new ForgejoClient({ server, owner, repo, token, tuning: tuningFromEnv() });

  // 2. The server, the token's access, the tag (if it exists, at the dist's commit).
  say(`${dryRun ? "planning" : "publishing"} ${tag} (${commit.slice(0, 12)}) to ${server}/${owner}/${repo}`);
  await client.probe(); // first contact
  const repository = await checkAccess(client);
  // Public URLs (statement, notes): the repository's html_url, under --server or --public-url only.
  const address = publicAddress(repository.html_url, owner, repo, { server, publicUrl });
  await checkTag(client, tag, commit);
  const signed = await provenance(address);
  files.push(...signed.files);
  const apply = { client, tag, commit, fields: await fieldsAt(address), files, target: null as Target | null, where };
  printPlan(signed.plan);
  if (!dryRun) await applyPlan(signed.plan, { ...apply, where: new Whereabouts() }); // nothing is written to the server before this

  // 3-5. Look (first: can this token download back?), plan, print; apply unless a dry run. A
  // concurrent run's changes: look again; only then may this run clean up its own duplicates.
  const inputs = { tag, commit, files, manifest, repository, verify, replacePublished: flags["replace-published"] === true, keepDev };
  let rehash: (() => Promise<void>) | null = () => rehashDist(dist).then(() => void (rehash = null));
  let uploadedThisRun = false;
  const { plan, target } = await inRounds(where, async () => {
    const state = await lookUp(client, { ...inputs, rehash, uploadedThisRun });
    const plan = planPublish({ ...inputs, uploadedThisRun }, state);
    printPlan(plan, where);
    if (!dryRun) uploadedThisRun = true;
    return { plan, target: dryRun ? state.release : await applyPlan(plan, { ...apply, target: state.release }) };
  });

  // 6. Report.
  report({ plan, files, dryRun, url: target?.url ?? `${address.repository}/releases/tag/${tag}`, tag, commit, stats: client.stats, json: flags.json === true });
});
