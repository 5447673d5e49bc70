import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { $ } from "zx/core";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BOOT_FILES, BOOT_SIGNING_KEY_ENV, bootSigner, checkBootSignatures, signBootFile, verifyBootSignature } from "../scripts/lib/trust/boot-signing.ts";
import { makeBootPki, type BootPki } from "./support/boot-pki.ts";
import { makeDist } from "./support/dist.ts";
import { MAIN_SHA, startForgejo, type ForgejoServer } from "./support/forgejo-server.ts";
import { cleanEnv, runScript } from "./support/run.ts";
import { makeSshKey, type SshKey } from "./support/ssh-keys.ts";

let pki: BootPki;
const file = () => join(pki.dir, "netboot-x86_64.ipxe");
const SCRIPT = "#!ipxe\nkernel bzImage-x86_64 initrd=initrd-x86_64 ${cmdline}\ninitrd initrd-x86_64\nboot\n";

beforeAll(async () => {
  pki = await makeBootPki();
  await writeFile(file(), SCRIPT);
});
afterAll(() => rm(pki.dir, { recursive: true, force: true }));

async function signTo(signer: Parameters<typeof signBootFile>[1], path = file()): Promise<string> {
  const sig = `${path}.${Math.random().toString(36).slice(2)}.sig`;
  await writeFile(sig, await signBootFile(path, signer));
  return sig;
}

describe("boot-file signatures, in the form iPXE's imgverify accepts", () => {
  test("the signature is detached binary DER without signed attributes, and openssl cms -verify accepts it against the root", async () => {
    const sig = await signTo(pki.signer);
    const printed = await $({ quiet: true })`openssl cms -cmsout -print -inform DER -in ${sig}`;
    expect(printed.stdout).toMatch(/eContent:\s*<ABSENT>/);
    expect(printed.stdout).toMatch(/\bsignedAttrs:\s*<ABSENT>/);
    // the chain rides in the .sig: the signer and the root, found by issuer and serial
    expect(printed.stdout).toContain("CN=boot-signer");
    const signerPem = join(pki.dir, "got-signer.pem");
    const verified = await $({ quiet: true, nothrow: true })`openssl cms -verify -binary -inform DER -in ${sig} -content ${file()} -CAfile ${pki.root} -purpose any -no-CApath -no-CAstore -signer ${signerPem} -out /dev/null`;
    expect(verified.exitCode).toBe(0);
    const usage = await $({ quiet: true })`openssl x509 -in ${signerPem} -noout -ext keyUsage,extendedKeyUsage`;
    expect(usage.stdout).toContain("Code Signing");
    expect(usage.stdout).toContain("Digital Signature");
    expect(await verifyBootSignature(file(), sig, pki.root)).toEqual({ ok: true, signer: "CN=boot-signer" });
  });

  test("a key given as the CI secret's text signs the same way, without a key file", async () => {
    const env: Record<string, string | undefined> = { [BOOT_SIGNING_KEY_ENV]: pki.keyPem };
    const signer = await bootSigner({ certificate: pki.signer.certificate, chain: pki.signer.chain }, env);
    expect(env[BOOT_SIGNING_KEY_ENV]).toBeUndefined();
    expect(signer && "text" in signer.key).toBe(true);
    const sig = await signTo(signer!);
    expect((await verifyBootSignature(file(), sig, pki.root)).ok).toBe(true);
  });

  test("a tampered file fails", async () => {
    const sig = await signTo(pki.signer);
    const tampered = join(pki.dir, "tampered.ipxe");
    await writeFile(tampered, SCRIPT.replace("boot\n", "shell\n"));
    expect(await verifyBootSignature(tampered, sig, pki.root)).toEqual({ ok: false, problem: "tampered.ipxe: the file does not match its signature" });
  });

  test("a certificate without the code-signing EKU fails", async () => {
    const sig = await signTo(pki.noCodeSigning);
    const check = await verifyBootSignature(file(), sig, pki.root);
    expect(check.ok).toBe(false);
    expect(!check.ok && check.problem).toContain("no code-signing extended key usage");
  });

  test("a certificate from another root fails, though it carries its own root", async () => {
    const sig = await signTo(pki.otherRoot);
    const check = await verifyBootSignature(file(), sig, pki.root);
    expect(check).toEqual({ ok: false, problem: "netboot-x86_64.ipxe: its signer does not chain to the boot root" });
  });

  test("a signature with signed attributes (openssl's default form, which iPXE refuses) fails", async () => {
    const sig = join(pki.dir, "attrs.sig");
    await $({ quiet: true })`openssl cms -sign -binary -in ${file()} -signer ${pki.signer.certificate} -inkey ${pki.signer.key.file} -certfile ${pki.root} -outform DER -out ${sig}`;
    const check = await verifyBootSignature(file(), sig, pki.root);
    expect(!check.ok && check.problem).toContain("signed attributes");
  });

  test("a PEM signature is refused: iPXE would take it, but the release ships DER", async () => {
    const sig = join(pki.dir, "pem.sig");
    await $({ quiet: true })`openssl cms -sign -binary -noattr -in ${file()} -signer ${pki.signer.certificate} -inkey ${pki.signer.key.file} -certfile ${pki.root} -outform PEM -out ${sig}`;
    expect((await verifyBootSignature(file(), sig, pki.root)).ok).toBe(false);
  });

  test("the mirror-sync check names a boot file without its .sig and one whose .sig is wrong", async () => {
    const dir = pki.dir;
    const [script, kernel, initrd] = ["netboot-x86_64.ipxe", "bzImage-x86_64", "initrd-x86_64"];
    expect(BOOT_FILES).toEqual(expect.arrayContaining([script, kernel, initrd]));
    await writeFile(join(dir, kernel), "kernel bytes");
    await writeFile(join(dir, initrd), "initrd bytes");
    for (const n of [script, kernel, initrd]) await writeFile(join(dir, `${n}.sig`), await signBootFile(join(dir, n), pki.signer));
    const all = [script, kernel, initrd, `${script}.sig`, `${kernel}.sig`, `${initrd}.sig`, "runner-x86_64.iso"];
    expect(await checkBootSignatures(dir, all, pki.root)).toEqual([]);
    await writeFile(join(dir, initrd), "attacker initrd");
    expect(await checkBootSignatures(dir, all.filter((n) => n !== `${kernel}.sig`), pki.root)).toEqual([
      "bzImage-x86_64 has no bzImage-x86_64.sig: the trust-enforcing iPXE will not boot it",
      "initrd-x86_64: the file does not match its signature",
    ]);
  });

  test("the key file must be private, and a key without its certificate is refused", async () => {
    const open = join(pki.dir, "open.key");
    await writeFile(open, pki.keyPem, { mode: 0o644 });
    await expect(bootSigner({ certificate: pki.signer.certificate, chain: pki.root, keyFile: open }, {})).rejects.toThrow("chmod 600");
    await expect(bootSigner({}, { [BOOT_SIGNING_KEY_ENV]: pki.keyPem })).rejects.toThrow("--boot-signing-cert");
    expect(await bootSigner({}, {})).toBeNull();
  });
});

describe("a release published with a boot signer, and verify-release against the boot root", () => {
  const TOKEN = "fjt_boot_sign_a1b2c3d4e5f6";
  let forge: ForgejoServer;
  let ci: SshKey;
  const scratch: string[] = [];
  beforeAll(async () => {
    forge = await startForgejo({ tokens: { [TOKEN]: { user: "ops", access: "write" } } });
    const keys = await mkdtemp(join(tmpdir(), "boot-sign-keys-"));
    scratch.push(keys);
    ci = await makeSshKey(join(keys, "ci"), { comment: "ci@runner-images" });
  });
  afterAll(async () => {
    await forge.stop();
    for (const d of scratch) await rm(d, { recursive: true, force: true });
  });
  const publish = async (tag: string, signer: { certificate: string; chain: string; key: { file: string } } | null) => {
    // built by CI in ops/runner-images on this server: the statement names the repository verified
    const builtBy = { server: forge.url, repository: "ops/runner-images", runId: "7", runNumber: "7", workflow: "boot-images", workflowFile: "boot-images.yml", ref: `refs/tags/${tag}`, event: "push" };
    const { dir } = await makeDist({ commit: MAIN_SHA, flavour: tag, ci: builtBy });
    scratch.push(dir);
    const bootFlags = signer ? ["--boot-signing-cert", signer.certificate, "--boot-signing-chain", signer.chain] : [];
    const r = await runScript("publish-release.ts", ["--dist", dir, "--server", forge.url, "--repo", "ops/runner-images", "--tag", tag, ...bootFlags], {
      // both keys as CI secrets: their text in the environment, never on a command line
      env: cleanEnv({ FORGEJO_TOKEN: TOKEN, RUNNER_IMAGES_SIGNING_KEY: await Bun.file(ci.file).text(), ...(signer ? { [BOOT_SIGNING_KEY_ENV]: await Bun.file(signer.key.file).text() } : {}) }),
    });
    expect(r.stderr + r.stdout).not.toContain("PRIVATE KEY");
    if (r.code !== 0) throw new Error(`publish failed:\n${r.stderr}`);
    return dir;
  };
  const verify = (args: string[]) => runScript("verify-release.ts", ["--signer-fingerprint", ci.fingerprint, "--boot-root", pki.root, ...args], { env: cleanEnv({}) });

  test("the published release carries a .sig for every boot file, listed in the signed statement, and verify-release passes and mirrors them", async () => {
    const tag = "boot-v9.1.0";
    await publish(tag, pki.signer);
    const release = forge.state().releases.find((r) => r.tagName === tag)!;
    const names = release.assets.map((a) => a.name);
    for (const file of BOOT_FILES) expect(names).toContain(`${file}.sig`);
    expect(names).not.toContain("runner-x86_64.iso.sig");
    const statementAsset = release.assets.find((a) => a.name === "provenance.intoto.json")!;
    const statement = JSON.parse(await Bun.file(statementAsset.path).text());
    const byproducts = statement.predicate.runDetails.byproducts.map((b: { name: string }) => b.name);
    for (const file of BOOT_FILES) expect(byproducts).toContain(`${file}.sig`);
    const mirror = await mkdtemp(join(tmpdir(), "boot-sign-mirror-"));
    scratch.push(mirror);
    const r = await verify(["--server", forge.url, "--repo", "ops/runner-images", "--tag", tag, "--download", mirror]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/boot files' signatures \(iPXE imgverify\).*ok|ok.*boot files' signatures/);
    for (const file of BOOT_FILES) {
      const check = await verifyBootSignature(join(mirror, "current", file), join(mirror, "current", `${file}.sig`), pki.root);
      expect(check.ok).toBe(true);
    }
  }, 120_000);

  test("verify-release refuses a netboot release without .sig files when a boot root is given", async () => {
    const dir = await publish("boot-v9.2.0", null);
    const r = await verify(["--dist", dir, "--tag", "boot-v9.2.0"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("initrd-x86_64 has no initrd-x86_64.sig: the trust-enforcing iPXE will not boot it");
  }, 120_000);

  test("the publisher refuses a boot-signing certificate without the code-signing EKU before publishing anything", async () => {
    const { dir } = await makeDist({ commit: MAIN_SHA, flavour: "noeku" });
    scratch.push(dir);
    const r = await runScript("publish-release.ts", ["--dist", dir, "--server", forge.url, "--repo", "ops/runner-images", "--tag", "boot-v9.3.0", "--boot-signing-cert", pki.noCodeSigning.certificate, "--boot-signing-chain", pki.noCodeSigning.chain, "--boot-signing-key", pki.noCodeSigning.key.file], {
      env: cleanEnv({ FORGEJO_TOKEN: TOKEN, RUNNER_IMAGES_SIGNING_KEY: await Bun.file(ci.file).text() }),
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("iPXE would refuse its signature: bzImage-x86_64: its signer certificate has no code-signing extended key usage");
    expect(forge.state().releases.some((rel) => rel.tagName === "boot-v9.3.0")).toBe(false);
  }, 120_000);

  test("verify-release refuses .sig files the publisher signed, and the statement lists, under another root than the fleet's", async () => {
    const dir = await publish("boot-v9.5.0", pki.otherRoot);
    const r = await verify(["--dist", dir, "--tag", "boot-v9.5.0"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("bzImage-x86_64: its signer does not chain to the boot root");
  }, 120_000);

  test("verify-release refuses a .sig replaced after publishing (not the statement's)", async () => {
    const dir = await publish("boot-v9.4.0", pki.signer);
    await writeFile(join(dir, "initrd-x86_64.sig"), await signBootFile(join(dir, "initrd-x86_64"), pki.otherRoot));
    const r = await verify(["--dist", dir, "--tag", "boot-v9.4.0"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("initrd-x86_64.sig has SHA-256");
  }, 120_000);
});
