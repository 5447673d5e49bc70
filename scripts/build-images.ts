#!/usr/bin/env bun
/**
 * build-images: builds the runner boot images with nix and collects them, with checksums and
 * provenance, into a dist/ directory that publish-release.ts can publish and anyone can audit.
 *
 * The steps, in order:
 *   1. check the input: targets, --out (nothing is touched before this passes);
 *   2. check nix can build flakes, and read the flake's commit and flake.lock pins;
 *   3. one `nix build` for every target (packages.<system>.<attr>), its log streamed live;
 *   4. copy each file out of the store under its release name, hashing it in the same pass;
 *   5. with --boot-numbers, what the Forgejo boot test measured on these netboot images;
 *   6. write SHA256SUMS and manifest.json, then move the finished directory into place.
 */
import { UsageError } from "./lib/cli/errors.ts";
import { parseCommandLine, type CommandSpec } from "./lib/cli/command-line.ts";
import { runMain } from "./lib/cli/run-main.ts";
import { ciEnv, ciRun } from "./lib/cli/ci-env.ts";
import { bootTestNumbers } from "./lib/build/boot-test-numbers.ts";
import { collectTarget } from "./lib/build/collect.ts";
import { say } from "./lib/cli/log.ts";
import { MANIFEST_SCHEMA_VERSION, SUMS_FILE, writeManifest, type Artifact, type Manifest } from "./lib/build/manifest.ts";
import { checkNix, flakeMetadata, flakeReference, nixBuild } from "./lib/build/nix.ts";
import { checkOutDir, startStaging } from "./lib/build/outdir.ts";
import { gitHead, versionLabel } from "./lib/build/source.ts";
import { DEFAULT_TARGETS, TARGETS, UnknownTargetError, releaseNames, selectTargets } from "./lib/build/targets.ts";

const COMMAND: CommandSpec = {
  name: "build-images.ts",
  summary: "Build the runner boot images with nix and collect them into a dist directory",
  passThrough: "[-- <extra nix build arguments>]",
  flags: [
    { name: "target", value: "name", repeatable: true, description: `Target to build; repeat or comma-separate (default: ${DEFAULT_TARGETS.map((t) => t.attr).join(",")}; known: ${TARGETS.map((t) => t.attr).join(", ")})` },
    { name: "flake", value: "ref", description: "Flake to build from: a directory or a flake reference (default: .)" },
    { name: "out", value: "dir", description: "Where the dist goes; must be new, empty, or a previous dist, which is replaced (default: dist)" },
    { name: "boot-numbers", description: "Also build each netboot target's forgejo-boot check (the Forgejo boot test: a Nix runner with KVM; cached after nix flake check) and record its numbers in the manifest and the release notes" },
    { name: "json", description: "Print the manifest as JSON on stdout when done" },
    { name: "debug", description: "Show stack traces on errors" },
  ],
  sections: [
    {
      title: "Output",
      body: [
        `  <out>/${releaseNames().join(", ")}: the images, under their release names`,
        "  <out>/SHA256SUMS: check with (cd <out> && sha256sum -c SHA256SUMS)",
        "  <out>/manifest.json: commit, flake.lock pins, nix version, CI run, and per file its size, SHA-256, store and drv path",
      ].join("\n"),
    },
    { title: "Exit codes", body: "  0 built, 1 the build or nix failed, 2 bad flags or input" },
    {
      title: "Examples",
      body: [
        "  bun scripts/build-images.ts",
        "  bun scripts/build-images.ts --target iso-x86_64 --out /tmp/iso",
        "  bun scripts/build-images.ts -- --option substituters ''   # fully offline",
        "  bun scripts/build-images.ts --boot-numbers   # as CI does: the boot test's numbers go into the release notes",
      ].join("\n"),
    },
  ],
};

await runMain(async () => {
  const args = parseCommandLine(COMMAND);
  if (!args) return;

  // 1. The input, checked before anything is touched.
  let targets;
  try {
    targets = selectTargets((args.flags.target as string[] | undefined) ?? []);
  } catch (error) {
    if (error instanceof UnknownTargetError) throw new UsageError(error.message);
    throw error;
  }
  const out = await checkOutDir((args.flags.out as string | undefined) ?? "dist");
  const flake = flakeReference((args.flags.flake as string | undefined) ?? ".");

  // 2. A nix that builds flakes, and where the flake comes from.
  const nix = await checkNix();
  const meta = await flakeMetadata(flake);
  const head = meta.localPath ? await gitHead(meta.localPath) : null;
  const commit = meta.revision ?? head?.commit;
  if (!commit) {
    throw new UsageError(`--flake ${flake} is not a git checkout with a commit: the manifest must name the commit the images come from`);
  }
  const dirty = meta.revision === undefined;
  const ci = ciEnv();
  const version = versionLabel(commit, dirty, head?.tags ?? [], ci);
  say(`building ${targets.map((t) => t.attr).join(", ")} from ${flake} at ${commit.slice(0, 12)}${dirty ? " with uncommitted changes" : ""} (${version})`);

  // 3. Build, into a staging directory that becomes --out only when complete.
  const staging = await startStaging(out);
  const built = await nixBuild(flake, targets, args.passThrough);

  // 4. Collect the files under their release names, hashed on the way.
  const artifacts: Artifact[] = [];
  for (const [i, target] of targets.entries()) {
    artifacts.push(...(await collectTarget(target, built[i]!, staging.dir)));
  }

  // 5. What the boot test measured on these images, when asked (it runs the test if not cached).
  const bootNumbers = args.flags["boot-numbers"] ? await bootTestNumbers(flake, targets, args.passThrough) : undefined;

  // 6. Checksums and provenance, then the finished directory goes into place.
  const manifest: Manifest = {
    schemaVersion: MANIFEST_SCHEMA_VERSION,
    version,
    source: { commit, dirty, flake: meta.url },
    inputs: meta.inputs,
    nix,
    builtAt: new Date().toISOString(),
    ci: ciRun(ci),
    artifacts,
    ...(bootNumbers?.length ? { bootNumbers } : {}),
  };
  await writeManifest(staging.dir, manifest);
  await staging.commit();

  say(`done: ${artifacts.length} files in ${out}; check them with: (cd ${out} && sha256sum -c ${SUMS_FILE})`);
  if (args.flags.json) process.stdout.write(`${JSON.stringify(manifest, null, 2)}\n`);
});
