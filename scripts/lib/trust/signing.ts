/**
 * SSH signatures (`ssh-keygen -Y sign` / `-Y verify`) over the provenance statement
 * (provenance.ts), one namespace per purpose, so a signature made for one purpose never counts
 * for another:
 *   runner-images-provenance        the publisher's signature (CI, or a maintainer publishing
 *                                   by hand): provenance.intoto.json.sig
 *   runner-images-countersignature  a maintainer's offline countersignature of a statement
 *                                   already published: provenance.intoto.json.countersig
 * `allowed_signers` restricts each key to its namespaces (namespaces="…"), so the CI key cannot
 * make a countersignature.
 *
 * The private key never touches the disk here. A key file the operator names is used where it
 * is. A key given as text (RUNNER_IMAGES_SIGNING_KEY, a CI secret) is handed over a pipe to a
 * private ssh-agent that lives only as long as the one ssh-keygen that signs (ssh-agent's
 * command mode); ssh-keygen then signs with the agent's key (ssh-keygen(1): "-f … may refer to
 * … a public key with the private half available via ssh-agent"). There is no temporary key file
 * to leave behind, whatever ends the process.
 */
import { $ } from "zx/core";
import { chmod, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Failure, UsageError } from "../cli/errors.ts";
import { onInterrupt } from "../cli/run-main.ts";
import { addSecret } from "../cli/log.ts";
import { STATEMENT_FILE } from "./provenance.ts";

export const STATEMENT_SIGNATURE_FILE = `${STATEMENT_FILE}.sig`;
export const COUNTERSIGNATURE_FILE = `${STATEMENT_FILE}.countersig`;
export const NAMESPACE = { publisher: "runner-images-provenance", countersignature: "runner-images-countersignature" } as const;
export const SIGNING_KEY_ENV = "RUNNER_IMAGES_SIGNING_KEY";
/** The line after a key or trust-anchor error: where the keys are set up (the help cannot say). */
export const SIGNING_HINT = 'the keys and how to set them up: docs/RUNNER_IMAGES.md, "Signing releases"';
/** The repository's trust anchor; anyone who can push can change it (auditors pin a key instead). */
export const REPOSITORY_ALLOWED_SIGNERS = join(import.meta.dir, "..", "..", "..", "allowed_signers");

function requireSshKeygen(): void {
  if (!Bun.which("ssh-keygen")) throw new Failure("ssh-keygen is not on PATH: install OpenSSH (Debian: apt install openssh-client)");
}

/** Where the signing key is: a file the operator named, or the text of the CI secret. */
export type SigningKey = { file: string } | { text: string };

/**
 * The signing key, checked before any work: --signing-key's file (it must exist and be private,
 * as ssh-keygen demands), else the environment variable. The variable is removed from this
 * process's environment at once, so no child process inherits it. Null when there is none.
 */
export async function signingKey(keyFile: string | undefined, env: Record<string, string | undefined> = process.env): Promise<SigningKey | null> {
  const text = env[SIGNING_KEY_ENV]?.trim();
  delete env[SIGNING_KEY_ENV];
  if (keyFile) {
    const info = await stat(keyFile).catch(() => null);
    if (!info) throw new UsageError(`--signing-key ${keyFile} does not exist`, SIGNING_HINT);
    if (!info.isFile()) throw new UsageError(`--signing-key ${keyFile} is ${info.isDirectory() ? "a directory" : "not a regular file"}, not a key file`, SIGNING_HINT);
    // ssh-keygen refuses keys that others can read; say so rather than let it fail cryptically.
    if ((info.mode & 0o077) !== 0) throw new UsageError(`--signing-key ${keyFile} is readable by others: chmod 600 it`, SIGNING_HINT);
    return { file: keyFile };
  }
  if (!text) return null;
  // Nothing should ever print it; if a tool's message ever quoted a line of it, that line is masked.
  for (const line of text.split("\n")) if (!line.startsWith("-----")) addSecret(line.trim());
  return { text: `${text}\n` };
}

/**
 * The environment of ssh-keygen and ssh-agent: ours, without the key, and no passphrase prompt
 * (an encrypted key fails at once instead of waiting for input no one gives in CI; ssh(1),
 * SSH_ASKPASS_REQUIRE=force: always ask the askpass program, here one that fails).
 */
function childEnv(): Record<string, string | undefined> {
  const { [SIGNING_KEY_ENV]: _, ...rest } = process.env;
  return { ...rest, SSH_ASKPASS: "false", SSH_ASKPASS_REQUIRE: "force" };
}

/**
 * Run by `ssh-agent sh -c` (the agent lives as long as this script): ssh-add reads the key from
 * the pipe into the agent, ssh-add -L writes its public half, which ssh-keygen names to sign with
 * the agent's private half. The agent is stopped as soon as the signature is made, or when the
 * script is told to stop; after SIGKILL of the publisher the script still finishes and stops it,
 * and ssh-agent itself exits once the script is gone.
 */
const AGENT_SIGNER = [
  'trap \'kill "$SSH_AGENT_PID" $signer 2>/dev/null; exit 143\' TERM INT HUP',
  'ssh-add -q - && ssh-add -L > "$1" || { kill "$SSH_AGENT_PID"; exit 1; }',
  'ssh-keygen -Y sign -q -f "$1" -n "$2" "$3" & signer=$!',
  'wait "$signer"; status=$?',
  'kill "$SSH_AGENT_PID" 2>/dev/null',
  'exit "$status"',
].join("\n");

/**
 * Signs `data` in `namespace` and returns the armored signature. The data goes through a
 * scratch directory (it is public: the statement); the key never does. The agent's socket is in
 * that same directory, mode 0700 and removed at exit, not in a directory ssh-agent makes in the
 * shared TMPDIR: in CI the job's /tmp is shared with whatever else ran there, and a socket is the
 * key for as long as the agent lives.
 */
export async function sign(data: Uint8Array, key: SigningKey, namespace: string): Promise<Uint8Array> {
  requireSshKeygen();
  const scratch = await mkdtemp(join(tmpdir(), "runner-images-sign-"));
  const forget = onInterrupt(() => rm(scratch, { recursive: true, force: true }));
  try {
    await chmod(scratch, 0o700); // mkdtemp makes it 0700 already; this says so whatever the platform does
    const dataPath = join(scratch, "data");
    await writeFile(dataPath, data);
    const options = { quiet: true, nothrow: true, env: { ...childEnv(), TMPDIR: scratch } };
    const signing =
      "file" in key
        ? $(options)`ssh-keygen -Y sign -q -f ${key.file} -n ${namespace} ${dataPath}`
        : $({ ...options, input: key.text })`ssh-agent -a ${join(scratch, "agent.sock")} sh -c ${AGENT_SIGNER} sh ${join(scratch, "key.pub")} ${namespace} ${dataPath}`;
    const stop = onInterrupt(() => {
      if (signing.pid) process.kill(signing.pid, "SIGTERM");
    });
    const signed = await signing;
    stop();
    if (signed.exitCode !== 0) {
      const reason = signed.stderr.trim().split("\n")[0] || "ssh-keygen gave no reason";
      throw new Failure(`signing ${STATEMENT_FILE} failed: ${reason} (is it an unencrypted OpenSSH private key?)`);
    }
    return await Bun.file(`${dataPath}.sig`).bytes();
  } finally {
    forget();
    await rm(scratch, { recursive: true, force: true });
  }
}

// --- verifying -------------------------------------------------------------------------------

/** Whose signatures count: the keys of an allowed_signers file, or one pinned key fingerprint. */
export type Trust = { allowedSigners: string } | { fingerprint: string };

export type SignatureCheck =
  | { ok: true; signer: string; fingerprint: string }
  | { ok: false; problem: string };

/** What an SSH signature says about itself (PROTOCOL.sshsig): the key and the namespace. */
export function readSshSignature(armored: Uint8Array): { publicKey: string; fingerprint: string; namespace: string } | null {
  const text = new TextDecoder().decode(armored);
  const body = /-----BEGIN SSH SIGNATURE-----([\s\S]*?)-----END SSH SIGNATURE-----/.exec(text)?.[1];
  if (!body) return null;
  const blob = Buffer.from(body.replace(/\s+/g, ""), "base64");
  if (blob.subarray(0, 6).toString("latin1") !== "SSHSIG") return null;
  let at = 10; // magic and uint32 version
  const field = () => {
    if (at + 4 > blob.length) throw new Error("truncated");
    const length = blob.readUInt32BE(at);
    const value = blob.subarray(at + 4, at + 4 + length);
    at += 4 + length;
    return value;
  };
  try {
    const key = field();
    const namespace = field().toString("utf8");
    const type = key.readUInt32BE(0);
    const keyType = key.subarray(4, 4 + type).toString("latin1");
    const fingerprint = `SHA256:${new Bun.CryptoHasher("sha256").update(key).digest("base64").replace(/=+$/, "")}`;
    return { publicKey: `${keyType} ${key.toString("base64")}`, fingerprint, namespace };
  } catch {
    return null;
  }
}

/** The key lines of an allowed_signers file that may sign in `namespace`. */
function keysFor(allowedSigners: string, namespace: string): string[] {
  return allowedSigners.split("\n").filter((line) => {
    const l = line.trim();
    if (l === "" || l.startsWith("#")) return false;
    if (!/\s(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp\d+|sk-\S+)\s+[A-Za-z0-9+/=]+/.test(` ${l}`)) return false;
    const limited = /namespaces="([^"]*)"/.exec(l);
    return !limited || limited[1]!.split(",").includes(namespace);
  });
}

/**
 * Refuses a trust anchor that trusts nobody: a missing allowed_signers, one without a key for
 * `namespace`, or a malformed fingerprint. Checked before anything is downloaded.
 */
export async function checkTrust(trust: Trust, namespace: string, flag: string): Promise<void> {
  if ("fingerprint" in trust) {
    if (!/^SHA256:[A-Za-z0-9+/]{43}$/.test(trust.fingerprint)) {
      throw new UsageError(`${flag} ${trust.fingerprint} is not a key fingerprint like SHA256:0hC/p0VkCpQti3BAbYXGlsfTIwV7nbJOkiHaOsOZAUg (ssh-keygen -lf key.pub shows it)`, SIGNING_HINT);
    }
    return;
  }
  const file = Bun.file(trust.allowedSigners);
  if (!(await file.exists())) throw new UsageError(`there is no allowed signers file at ${trust.allowedSigners}`, SIGNING_HINT);
  if (keysFor(await file.text(), namespace).length === 0) {
    throw new UsageError(
      `${trust.allowedSigners} has no key for namespace ${namespace}, so no signature can be trusted: ` +
        `add the public key (echo "ci@runner-images namespaces=\\"${namespace}\\" $(cut -d' ' -f1,2 key.pub)" >> allowed_signers, ` +
        `see docs/RUNNER_IMAGES.md "Signing releases"), or pin one with ${flag} SHA256:…`,
      SIGNING_HINT,
    );
  }
}

/**
 * Checks `signature` (the file `signatureName`) over `data` (the file `dataName`) in
 * `namespace`, made by a key that `trust` accepts. Every way it can fail is named.
 */
export async function verifySignature(
  data: Uint8Array,
  signature: Uint8Array,
  names: { data: string; signature: string },
  namespace: string,
  trust: Trust,
): Promise<SignatureCheck> {
  requireSshKeygen();
  const info = readSshSignature(signature);
  if (!info) return { ok: false, problem: `${names.signature} is not an SSH signature` };
  if (info.namespace !== namespace) {
    return { ok: false, problem: `${names.signature} was made for namespace ${info.namespace}, not ${namespace}: it is a signature for another purpose` };
  }
  const scratch = await mkdtemp(join(tmpdir(), "runner-images-verify-"));
  try {
    const sigPath = join(scratch, "signature");
    await writeFile(sigPath, signature);
    const run = $({ quiet: true, nothrow: true, input: Buffer.from(data) });
    const intact = await run`ssh-keygen -Y check-novalidate -n ${namespace} -s ${sigPath}`;
    if (intact.exitCode !== 0) {
      return { ok: false, problem: `${names.signature} does not match ${names.data}: ${names.data} was changed after signing` };
    }
    let allowed: string;
    let signer: string;
    if ("fingerprint" in trust) {
      if (info.fingerprint !== trust.fingerprint) {
        return { ok: false, problem: `${names.signature} was made by key ${info.fingerprint}, not the pinned ${trust.fingerprint}` };
      }
      allowed = join(scratch, "pinned");
      signer = "pinned-key";
      await writeFile(allowed, `${signer} namespaces="${namespace}" ${info.publicKey}\n`);
    } else {
      allowed = trust.allowedSigners;
      const who = await $({ quiet: true, nothrow: true })`ssh-keygen -Y find-principals -s ${sigPath} -f ${allowed}`;
      signer = who.stdout.trim().split("\n")[0] ?? "";
      if (who.exitCode !== 0 || !signer) {
        return { ok: false, problem: `${names.signature} was made by key ${info.fingerprint}, which is not in ${allowed}` };
      }
    }
    const verified = await run`ssh-keygen -Y verify -f ${allowed} -I ${signer} -n ${namespace} -s ${sigPath}`;
    if (verified.exitCode !== 0) {
      return { ok: false, problem: `${names.signature} was made by ${signer} (${info.fingerprint}), whose key ${allowed} does not allow for namespace ${namespace}` };
    }
    return { ok: true, signer, fingerprint: info.fingerprint };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
