/**
 * verify-release's check of the boot files' signatures (trust/boot-signing.ts): every boot file
 * the manifest lists has its .sig on the release, the signed statement names that .sig's
 * SHA-256 (so it is the publisher's), and it verifies over the file's bytes as iPXE's imgverify
 * would, against the fleet's boot root. The bytes are those the byte-for-byte check kept: a
 * --dist, or the staging of --download (the mirror, which then carries the .sig files too).
 */
import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { passed, problemsFound, skipped, type Check } from "./checklist.ts";
import { BOOT_SIGNATURE_SUFFIX, REPOSITORY_BOOT_ROOT, isBootFile, verifyBootSignature } from "./boot-signing.ts";
import { byproduct } from "./provenance.ts";
import type { ReleaseUnderCheck } from "./release-checks.ts";

export const BOOT_SIGNATURES_CHECK = "boot files' signatures (iPXE imgverify)";

/** The root to check against: --boot-root, else the repository's nix/boot-root.pem, else none. */
export async function bootRoot(flag: string | undefined): Promise<string | null> {
  if (flag) return flag;
  return (await stat(REPOSITORY_BOOT_ROOT).catch(() => null))?.isFile() ? REPOSITORY_BOOT_ROOT : null;
}

export const bootSignatures = (r: ReleaseUnderCheck, options: { root: string | null; staging: string | null; needs: string[] }): Check => ({
  name: BOOT_SIGNATURES_CHECK,
  needs: options.needs,
  async run() {
    const boot = r.documents.manifest.artifacts.filter((a) => isBootFile(a.name)).map((a) => a.name);
    if (boot.length === 0) return skipped("the release has no netboot files");
    const problems: string[] = [];
    const signatures = new Map<string, Uint8Array>();
    for (const name of boot) {
      const sig = `${name}${BOOT_SIGNATURE_SUFFIX}`;
      const bytes = await r.files.readSmall(sig);
      if (!bytes) {
        // Without a boot root nobody asked for boot signatures (a release for the plain chain).
        if (options.root) problems.push(`${name} has no ${sig}: the trust-enforcing iPXE will not boot it`);
        continue;
      }
      const signed = r.documents.statement ? byproduct(r.documents.statement, sig) : undefined;
      const sha = new Bun.CryptoHasher("sha256").update(bytes).digest("hex");
      if (signed !== sha) problems.push(`${sig} has SHA-256 ${sha}, the statement says ${signed ?? "nothing"}: it is not the publisher's`);
      signatures.set(name, bytes);
    }
    if (problems.length > 0) return problemsFound(problems);
    if (!options.root) return skipped("no boot root to check the .sig files against: give --boot-root FILE (or commit nix/boot-root.pem)");
    const contentDir = r.dist ?? options.staging;
    if (!contentDir) return skipped("present and covered by the statement; their signatures over the bytes are checked with --download DIR or --dist");
    const scratch = await mkdtemp(join(tmpdir(), "runner-images-boot-sig-"));
    try {
      const signers = new Set<string>();
      for (const [name, bytes] of signatures) {
        const sigPath = join(scratch, `${name}${BOOT_SIGNATURE_SUFFIX}`);
        await writeFile(sigPath, bytes);
        const check = await verifyBootSignature(join(contentDir, name), sigPath, options.root);
        if (check.ok) signers.add(check.signer);
        else problems.push(check.problem);
      }
      if (problems.length > 0) return problemsFound(problems);
      // The mirror carries what iPXE will ask for next to each file.
      for (const [name, bytes] of signatures) r.documents.bytes.set(`${name}${BOOT_SIGNATURE_SUFFIX}`, bytes);
      return passed([`${signatures.size} boot files signed by ${[...signers].join(", ")} under ${options.root}`]);
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  },
});
