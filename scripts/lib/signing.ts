/**
 * SSH signatures over SHA256SUMS (`ssh-keygen -Y sign`, namespace "runner-images"): one signed
 * file vouches for every image, because SHA256SUMS names each file's SHA-256. The repository's
 * `allowed_signers` file says whose keys count.
 *
 * The private key comes from a file or from the RUNNER_IMAGES_SIGNING_KEY environment variable
 * (a CI secret), never from argv: env keys go to a private temporary file that is removed at once.
 */
import { $ } from "zx/core";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Failure, UsageError } from "./cli.ts";
import { SUMS_FILE } from "./manifest.ts";

export const SIGNATURE_FILE = `${SUMS_FILE}.sig`;
export const SIGNING_NAMESPACE = "runner-images";
export const SIGNING_KEY_ENV = "RUNNER_IMAGES_SIGNING_KEY";

function requireSshKeygen(): void {
  if (!Bun.which("ssh-keygen")) throw new Failure("ssh-keygen is not on PATH: install OpenSSH (Debian: apt install openssh-client)");
}

/** Whether a signing key is given, as a file or in the environment. */
export function hasSigningKey(keyFile: string | undefined, env: Record<string, string | undefined> = process.env): boolean {
  return Boolean(keyFile || env[SIGNING_KEY_ENV]);
}

/**
 * Signs `dir`/SHA256SUMS into `dir`/SHA256SUMS.sig with the key in `keyFile`, or in the
 * environment when no file is given. Returns false when there is no key at all.
 */
export async function signSums(dir: string, keyFile: string | undefined, env: Record<string, string | undefined> = process.env): Promise<boolean> {
  const keyText = env[SIGNING_KEY_ENV];
  if (!hasSigningKey(keyFile, env)) return false;
  requireSshKeygen();
  let scratch: string | undefined;
  let key = keyFile;
  if (!key) {
    scratch = await mkdtemp(join(tmpdir(), "runner-images-key-"));
    key = join(scratch, "key");
    await writeFile(key, `${keyText!.trim()}\n`, { mode: 0o600 });
  } else if (!(await Bun.file(key).exists())) {
    throw new UsageError(`--signing-key ${key} does not exist`);
  } else {
    // ssh-keygen refuses keys that others can read; say so rather than let it fail cryptically.
    const mode = (await Bun.file(key).stat()).mode & 0o077;
    if (mode !== 0) throw new UsageError(`--signing-key ${key} is readable by others: chmod 600 it`);
  }
  try {
    await rm(join(dir, SIGNATURE_FILE), { force: true });
    // Never a passphrase prompt (ssh-keygen would read /dev/tty, or wait on stdin forever): an
    // encrypted key fails at once, with the hint below.
    const noPrompt = { ...process.env, SSH_ASKPASS: "/bin/false", SSH_ASKPASS_REQUIRE: "force" };
    const signed = await $({ cwd: dir, quiet: true, nothrow: true, input: "", env: noPrompt })`ssh-keygen -Y sign -q -f ${key} -n ${SIGNING_NAMESPACE} ${SUMS_FILE}`;
    if (signed.exitCode !== 0) {
      throw new Failure(`signing ${SUMS_FILE} failed: ${signed.stderr.trim().split("\n")[0] || "ssh-keygen gave no reason"} (is it an unencrypted OpenSSH private key?)`);
    }
  } finally {
    if (scratch) await rm(scratch, { recursive: true, force: true });
  }
  return true;
}

export type SignatureCheck =
  | { ok: true; signer: string }
  | { ok: false; problem: string };

/**
 * Checks a signature over the SHA256SUMS text against `allowedSigners`. Both files are small and
 * given as paths: ssh-keygen reads the signed data from stdin.
 */
export async function verifySums(sumsPath: string, signaturePath: string, allowedSigners: string): Promise<SignatureCheck> {
  requireSshKeygen();
  if (!(await Bun.file(allowedSigners).exists())) {
    return { ok: false, problem: `no allowed signers file at ${allowedSigners}, so the signature cannot be checked` };
  }
  const who = await $({ quiet: true, nothrow: true })`ssh-keygen -Y find-principals -s ${signaturePath} -f ${allowedSigners}`;
  const signer = who.stdout.trim().split("\n")[0];
  if (who.exitCode !== 0 || !signer) {
    return { ok: false, problem: `${SIGNATURE_FILE} was not made by any key in ${allowedSigners}` };
  }
  const verified = await $({ quiet: true, nothrow: true, input: await Bun.file(sumsPath).text() })`ssh-keygen -Y verify -f ${allowedSigners} -I ${signer} -n ${SIGNING_NAMESPACE} -s ${signaturePath}`;
  if (verified.exitCode !== 0) {
    return { ok: false, problem: `${SIGNATURE_FILE} does not match ${SUMS_FILE}: the checksums were changed after signing` };
  }
  return { ok: true, signer };
}
