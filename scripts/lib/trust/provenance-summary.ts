/**
 * The provenance verify-release prints before its verdict: which tag, commit, nixpkgs and
 * builder made the files, and who signed the statement.
 */
import type { Manifest } from "../build/manifest.ts";
import { describeStatement, type Statement } from "./provenance.ts";
import type { SignatureCheck } from "./signing.ts";

function describeSignature(check: SignatureCheck | null, skipped: string): string {
  if (check === null) return skipped;
  return check.ok ? `good, by ${check.signer} (key ${check.fingerprint})` : "BAD";
}

export function provenanceLines(
  manifest: Manifest,
  statement: Statement | null,
  signature: SignatureCheck | null,
  countersignature: SignatureCheck | null,
  allowUnsigned: boolean,
): string[] {
  const nixpkgs = manifest.inputs.nixpkgs;
  const ci = manifest.ci;
  return [
    ...(statement ? describeStatement(statement) : []),
    `version    ${manifest.version}`,
    `commit     ${manifest.source.commit}${manifest.source.dirty ? " (with uncommitted changes)" : ""}`,
    `nixpkgs    ${nixpkgs ? `${nixpkgs.rev ?? "(no rev)"} ${nixpkgs.narHash}` : "(no nixpkgs input recorded)"}`,
    `built      ${manifest.builtAt} with nix ${manifest.nix.version}${ci ? ` by ${ci.server}/${ci.repository} run ${ci.runNumber} (${ci.workflow})` : " by hand"}`,
    `signature  ${describeSignature(signature, allowUnsigned ? "NOT CHECKED (--allow-unsigned)" : "none: there is no statement to check it against")}`,
    `countersig ${describeSignature(countersignature, "not required")}`,
  ];
}
