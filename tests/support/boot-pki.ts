/**
 * A throwaway boot-signing PKI made with openssl, in the shape docs/ipxe-and-https.md's recipe
 * gives (and iPXE requires): a CA root, a code-signing leaf under it, plus the wrong ones the
 * tests need (a leaf without the code-signing EKU, a leaf from another root).
 */
import { $ } from "zx/core";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readFileSync } from "node:fs";
import { ROOT } from "./run.ts";

/** The recipe's extensions (nix/boot-pki.cnf, which the Nix check uses too), and a TLS leaf's: a certificate iPXE must refuse. */
const CONFIG = `${readFileSync(join(ROOT, "nix", "boot-pki.cnf"), "utf8")}[v3_server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
`;

export interface BootPki {
  dir: string;
  root: string;
  signer: { certificate: string; chain: string; key: { file: string } };
  keyPem: string;
  noCodeSigning: { certificate: string; chain: string; key: { file: string } };
  otherRoot: { certificate: string; chain: string; key: { file: string } };
}

export async function makeBootPki(): Promise<BootPki> {
  const dir = await mkdtemp(join(tmpdir(), "boot-pki-"));
  const p = (f: string) => join(dir, f);
  await writeFile(p("openssl.cnf"), CONFIG);
  const q = $({ quiet: true, cwd: dir });
  const root = async (name: string) =>
    q`openssl req -x509 -new -newkey rsa:2048 -nodes -keyout ${name}.key -out ${name}.crt -days 30 -subj /CN=${name} -config openssl.cnf -extensions v3_root`;
  const leaf = async (name: string, ca: string, ext: string) => {
    await q`openssl req -new -newkey rsa:2048 -nodes -keyout ${name}.key -out ${name}.csr -subj /CN=boot-signer -config openssl.cnf`;
    await q`openssl x509 -req -in ${name}.csr -CA ${ca}.crt -CAkey ${ca}.key -CAcreateserial -days 30 -sha256 -extfile openssl.cnf -extensions ${ext} -out ${name}.crt`;
    await q`chmod 600 ${name}.key`;
    return { certificate: p(`${name}.crt`), chain: p(`${ca}.crt`), key: { file: p(`${name}.key`) } };
  };
  await root("fleet-root");
  await root("other-root");
  const signer = await leaf("boot-signer", "fleet-root", "v3_codesign");
  return {
    dir,
    root: p("fleet-root.crt"),
    signer,
    keyPem: await Bun.file(signer.key.file).text(),
    noCodeSigning: await leaf("server-cert", "fleet-root", "v3_server"),
    otherRoot: await leaf("other-signer", "other-root", "v3_codesign"),
  };
}
