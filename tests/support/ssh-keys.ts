/**
 * Throwaway SSH signing keys for tests and the demo: an ed25519 key made by ssh-keygen, its
 * public half and fingerprint as the scripts show them, and the allowed_signers file that trusts
 * it for a namespace (the format of ssh-keygen(1), "ALLOWED SIGNERS").
 */
import { $ } from "zx/core";
import { writeFile } from "node:fs/promises";

export interface SshKey {
  /** The private key file; its public half is beside it, at `${file}.pub`. */
  file: string;
  /** "ssh-ed25519 AAAA…" without the comment: what an allowed_signers line names. */
  publicKey: string;
  /** "SHA256:…", as `ssh-keygen -lf` prints it (and the scripts name keys). */
  fingerprint: string;
}

/**
 * `ssh-keygen -t ed25519` into `file` (which must not exist). No passphrase unless one is given
 * (an encrypted key: what the signer must refuse); without a comment, ssh-keygen's user@host.
 */
export async function makeSshKey(file: string, options: { comment?: string; passphrase?: string } = {}): Promise<SshKey> {
  const comment = options.comment === undefined ? [] : ["-C", options.comment];
  await $({ quiet: true })`ssh-keygen -q -t ed25519 -N ${options.passphrase ?? ""} ${comment} -f ${file}`;
  const publicKey = (await Bun.file(`${file}.pub`).text()).trim().split(" ").slice(0, 2).join(" ");
  const fingerprint = (await $({ quiet: true })`ssh-keygen -lf ${file}.pub`).stdout.split(" ")[1]!;
  return { file, publicKey, fingerprint };
}

/** One allowed_signers line: `principal` may sign with `key`, in `namespace` only. */
const allowedSignersLine = (principal: string, namespace: string, key: SshKey) => `${principal} namespaces="${namespace}" ${key.publicKey}`;

/** Writes an allowed_signers file of one line per [principal, namespace, key]; returns its path. */
export async function writeAllowedSigners(path: string, signers: [principal: string, namespace: string, key: SshKey][]): Promise<string> {
  await writeFile(path, signers.map((s) => `${allowedSignersLine(...s)}\n`).join(""));
  return path;
}
