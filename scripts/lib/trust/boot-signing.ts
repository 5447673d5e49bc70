/**
 * Signatures the machine's bootloader checks: each boot file of a netboot target (the iPXE
 * script, the kernel, the initrd) gets `<name>.sig`, a detached CMS SignedData in DER, in the one
 * form iPXE's `imgverify` accepts (iPXE 0ab2277c, per helper notes /tmp/research/ipxe.md):
 *   - no signed attributes (`-noattr`): iPXE skips them and checks the signature over the raw
 *     digest of the image (src/crypto/cms.c:410), so OpenSSL's default form never verifies;
 *   - `-binary`: the bytes as they are (OpenSSL otherwise turns a text script's LF into CRLF);
 *   - the signer found by issuer and serial in the message's own certificates
 *     (cms.c:207-240): no `-nocerts`, no `-keyid`; the chain up to the root is carried in every
 *     .sig (`-certfile`), so each verifies on its own;
 *   - the signer certificate has keyUsage digitalSignature and extendedKeyUsage codeSigning
 *     (cms.c:803, :810), and chains to a root whose fingerprint the iPXE build holds (TRUST=).
 *
 * The key follows the SSH key's rules (signing.ts): a key file the operator names is used where
 * it is; a key given as text (RUNNER_IMAGES_BOOT_SIGNING_KEY, a CI secret) is handed to openssl
 * over its standard input (`-inkey /dev/stdin`), so it is never in argv and never on disk. Bun
 * hands a child's stdin over a socket, which openssl cannot open as /dev/stdin, so a `cat`
 * turns it into a pipe first (KEY_OVER_PIPE).
 */
import { $ } from "zx/core";
import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { Failure, UsageError } from "../cli/errors.ts";
import { onInterrupt } from "../cli/run-main.ts";
import { addSecret, say } from "../cli/log.ts";
import { TARGETS } from "../build/targets.ts";
import type { Manifest } from "../build/manifest.ts";

export const BOOT_SIGNATURE_SUFFIX = ".sig";
export const BOOT_SIGNING_KEY_ENV = "RUNNER_IMAGES_BOOT_SIGNING_KEY";
/** The fleet's root, in the repository: what the flake's iPXE trusts and what verify-release checks against by default. */
export const REPOSITORY_BOOT_ROOT = join(import.meta.dir, "..", "..", "..", "nix", "boot-root.pem");
export const BOOT_SIGNING_HINT = 'the boot-signing certificate and how to make it: docs/ipxe-and-https.md, "Boot-signing certificates"';

/** Release names of the files a netboot target boots: each must carry a .sig. */
export const BOOT_FILES: readonly string[] = TARGETS.filter((t) => t.image === "netboot").flatMap((t) => t.files.map((f) => f.name));

export function isBootFile(name: string): boolean {
  return BOOT_FILES.includes(name);
}

/** The .sig names a release of these artifacts carries (one per boot file). */
export function bootSignatureNames(manifest: { artifacts: readonly { name: string }[] }): string[] {
  return manifest.artifacts.filter((a) => isBootFile(a.name)).map((a) => `${a.name}${BOOT_SIGNATURE_SUFFIX}`);
}

function requireOpenssl(): void {
  if (!Bun.which("openssl")) throw new Failure("openssl is not on PATH: install it (Debian: apt install openssl)");
}

/** Who signs: the code-signing certificate (PEM), the chain up to the root (PEM), and the key. */
export interface BootSigner {
  certificate: string;
  /** The issuers to carry in each .sig, root included (PEM file). */
  chain: string;
  key: { file: string } | { text: string };
}

/**
 * The boot signer, checked before any work. The key is --boot-signing-key's file (it must be
 * private) or the environment variable, which is removed from this process's environment at
 * once so no child inherits it. Null when no certificate is named.
 */
export async function bootSigner(
  options: { certificate?: string; chain?: string; keyFile?: string },
  env: Record<string, string | undefined> = process.env,
): Promise<BootSigner | null> {
  const text = env[BOOT_SIGNING_KEY_ENV]?.trim();
  delete env[BOOT_SIGNING_KEY_ENV];
  if (!options.certificate) {
    if (options.keyFile || text) throw new UsageError("a boot-signing key is set but no --boot-signing-cert names its certificate", BOOT_SIGNING_HINT);
    return null;
  }
  for (const [flag, file] of [["--boot-signing-cert", options.certificate], ["--boot-signing-chain", options.chain]] as const) {
    if (!file) throw new UsageError(`${flag} is required with --boot-signing-cert`, BOOT_SIGNING_HINT);
    if (!(await stat(file).catch(() => null))?.isFile()) throw new UsageError(`${flag} ${file} is not a file`, BOOT_SIGNING_HINT);
  }
  let key: BootSigner["key"];
  if (options.keyFile) {
    const info = await stat(options.keyFile).catch(() => null);
    if (!info?.isFile()) throw new UsageError(`--boot-signing-key ${options.keyFile} is not a file`, BOOT_SIGNING_HINT);
    if ((info.mode & 0o077) !== 0) throw new UsageError(`--boot-signing-key ${options.keyFile} is readable by others: chmod 600 it`, BOOT_SIGNING_HINT);
    key = { file: options.keyFile };
  } else if (text) {
    for (const line of text.split("\n")) if (!line.startsWith("-----")) addSecret(line.trim());
    key = { text: `${text}\n` };
  } else {
    throw new UsageError(`--boot-signing-cert needs its key: --boot-signing-key FILE or ${BOOT_SIGNING_KEY_ENV}`, BOOT_SIGNING_HINT);
  }
  return { certificate: options.certificate, chain: options.chain!, key };
}

/** Runs openssl "$@" with its standard input made a pipe (the key arrives on it). */
const KEY_OVER_PIPE = 'cat | openssl "$@"';

/** openssl's environment: ours without the key. */
function childEnv(): Record<string, string | undefined> {
  const { [BOOT_SIGNING_KEY_ENV]: _, ...rest } = process.env;
  return rest;
}

/** Signs one file (streamed by openssl, the initrd is ~1 GB) and returns the DER signature. */
export async function signBootFile(path: string, signer: BootSigner): Promise<Uint8Array> {
  requireOpenssl();
  const scratch = await mkdtemp(join(tmpdir(), "runner-images-boot-sign-"));
  const forget = onInterrupt(() => rm(scratch, { recursive: true, force: true }));
  try {
    const out = join(scratch, "sig");
    const keyArg = "file" in signer.key ? signer.key.file : "/dev/stdin";
    const options = { quiet: true, nothrow: true, env: childEnv(), ...("text" in signer.key ? { input: signer.key.text } : {}) };
    // -passin pass: (empty) makes an encrypted key fail at once instead of prompting on a terminal.
    const args = ["cms", "-sign", "-binary", "-noattr", "-md", "sha256", "-in", path, "-signer", signer.certificate, "-inkey", keyArg, "-passin", "pass:", "-certfile", signer.chain, "-outform", "DER", "-out", out];
    const signing = "file" in signer.key ? $(options)`openssl ${args}` : $(options)`sh -c ${KEY_OVER_PIPE} sh ${args}`;
    const stop = onInterrupt(() => {
      if (signing.pid) process.kill(signing.pid, "SIGTERM");
    });
    const signed = await signing;
    stop();
    if (signed.exitCode !== 0) {
      const reason = signed.stderr.trim().split("\n").find((l) => l.trim()) ?? "openssl gave no reason";
      throw new Failure(`signing ${basename(path)} for the bootloader failed: ${reason} (is the key an unencrypted PEM key matching --boot-signing-cert?)`);
    }
    return await Bun.file(out).bytes();
  } finally {
    forget();
    await rm(scratch, { recursive: true, force: true });
  }
}

/** Writes `<file>.sig` next to each file; returns the signature names. */
export async function signBootFiles(dir: string, names: readonly string[], signer: BootSigner): Promise<string[]> {
  const written: string[] = [];
  for (const name of names) {
    await writeFile(join(dir, `${name}${BOOT_SIGNATURE_SUFFIX}`), await signBootFile(join(dir, name), signer));
    written.push(`${name}${BOOT_SIGNATURE_SUFFIX}`);
  }
  return written;
}

// --- verifying: what iPXE's imgverify would accept, as far as openssl can say -------------------

export type BootSignatureCheck = { ok: true; signer: string } | { ok: false; problem: string };

/**
 * Checks `signature` over `file` as iPXE does, against `root` (PEM, one or more certificates):
 * a CMS SignedData in DER without signed attributes; a signer chaining to the root; the signer
 * with digitalSignature and codeSigning. OpenSSL 3.0 has no code-signing purpose and its
 * default (smimesign) refuses codeSigning-only certificates, so the chain is checked with
 * `-purpose any` and the key usages are read from the signer certificate separately.
 */
export async function verifyBootSignature(file: string, signature: string, root: string): Promise<BootSignatureCheck> {
  requireOpenssl();
  const name = basename(file);
  const scratch = await mkdtemp(join(tmpdir(), "runner-images-boot-verify-"));
  try {
    const quiet = { quiet: true, nothrow: true };
    const printed = await $(quiet)`openssl cms -cmsout -print -inform DER -in ${signature}`;
    if (printed.exitCode !== 0) return { ok: false, problem: `${name}${BOOT_SIGNATURE_SUFFIX} is not a CMS signature in DER` };
    if (!/\bsignedAttrs:\s*<ABSENT>/.test(printed.stdout)) {
      return { ok: false, problem: `${name}${BOOT_SIGNATURE_SUFFIX} has signed attributes, which iPXE's imgverify refuses (sign with -noattr)` };
    }
    const signerPem = join(scratch, "signer.pem");
    const verified = await $(quiet)`openssl cms -verify -binary -inform DER -in ${signature} -content ${file} -CAfile ${root} -purpose any -no-CApath -no-CAstore -signer ${signerPem} -out /dev/null`;
    if (verified.exitCode !== 0) {
      const err = verified.stderr;
      const reason = /certificate verify error|unable to get local issuer|self[- ]signed/i.test(err)
        ? "its signer does not chain to the boot root"
        : /bad signature|digest failure|content verify error/i.test(err)
          ? "the file does not match its signature"
          : (err.trim().split("\n").find((l) => l.trim()) ?? "openssl gave no reason");
      return { ok: false, problem: `${name}: ${reason}` };
    }
    const usage = await $(quiet)`openssl x509 -in ${signerPem} -noout -subject -nameopt RFC2253 -ext keyUsage,extendedKeyUsage`;
    if (usage.exitCode !== 0) return { ok: false, problem: `${name}: cannot read the signer certificate` };
    if (!/Code Signing/.test(usage.stdout)) return { ok: false, problem: `${name}: its signer certificate has no code-signing extended key usage, which iPXE requires` };
    if (!/Digital Signature/.test(usage.stdout)) return { ok: false, problem: `${name}: its signer certificate lacks keyUsage digitalSignature, which iPXE requires` };
    const subject = /^subject=\s*(.*)$/m.exec(usage.stdout)?.[1]?.trim() ?? "unknown signer";
    return { ok: true, signer: subject };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/**
 * Every boot file among `names` in `dir` against its .sig and the root: the problems, one line
 * each, empty when all verify. A boot file without its .sig is a problem. The mirror sync calls
 * this before it makes a synced release visible.
 */
export async function checkBootSignatures(dir: string, names: readonly string[], root: string): Promise<string[]> {
  const problems: string[] = [];
  const present = new Set(names);
  for (const name of names.filter(isBootFile)) {
    const sig = `${name}${BOOT_SIGNATURE_SUFFIX}`;
    if (!present.has(sig)) {
      problems.push(`${name} has no ${sig}: the trust-enforcing iPXE will not boot it`);
      continue;
    }
    const check = await verifyBootSignature(join(dir, name), join(dir, sig), root);
    if (!check.ok) problems.push(check.problem);
  }
  return problems;
}

/**
 * publish-release's step 1a: each netboot file signed for the trust-enforcing iPXE (trust/boot-signing.ts), in
 * memory; the .sig files then go into the dist, the statement and the release with the
 * provenance files. None without a boot signer (a release for the plain chain only).
 */
export async function signBootFilesFor(dist: string, manifest: Manifest, signer: BootSigner | null): Promise<{ name: string; bytes: Uint8Array }[]> {
  if (!signer) return [];
  const names = bootSignatureNames(manifest).map((sig) => sig.slice(0, -BOOT_SIGNATURE_SUFFIX.length));
  const sigs: { name: string; bytes: Uint8Array }[] = [];
  const scratch = await mkdtemp(join(tmpdir(), "runner-images-boot-sigs-"));
  try {
    for (const name of names) {
      const sig = { name: `${name}${BOOT_SIGNATURE_SUFFIX}`, bytes: await signBootFile(join(dist, name), signer) };
      // As iPXE will check it, against the chain's root: a certificate iPXE refuses (no
      // code-signing EKU, another root) fails here, before anything is published.
      await writeFile(join(scratch, sig.name), sig.bytes);
      const check = await verifyBootSignature(join(dist, name), join(scratch, sig.name), signer.chain);
      if (!check.ok) throw new UsageError(`--boot-signing-cert: iPXE would refuse its signature: ${check.problem}`, BOOT_SIGNING_HINT);
      sigs.push(sig);
    }
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  if (sigs.length > 0) say(`signed ${sigs.length} boot files for iPXE: ${sigs.map((s) => s.name).join(", ")}`);
  return sigs;
}
