/**
 * A release's small files (SHA256SUMS, manifest.json, the statement and its signatures), read
 * once: what the checks look at is what --download writes. Without SHA256SUMS or a manifest
 * that parses there is nothing to check against, so that is a failure here; a statement that is
 * missing or does not parse is left for the "statement parses" check to report.
 */
import { Failure } from "../cli/errors.ts";
import { MANIFEST_FILE, SUMS_FILE, ManifestError, parseSums, validateManifest, type Manifest } from "../build/manifest.ts";
import type { ReleaseFiles } from "../forgejo/release-files.ts";
import { STATEMENT_FILE, StatementError, parseStatement, type Statement } from "./provenance.ts";
import { COUNTERSIGNATURE_FILE, STATEMENT_SIGNATURE_FILE } from "./signing.ts";

export const DOCUMENT_FILES = [SUMS_FILE, MANIFEST_FILE, STATEMENT_FILE, STATEMENT_SIGNATURE_FILE, COUNTERSIGNATURE_FILE];

export interface ReleaseDocuments {
  /** Each small file present, by name, as read. */
  bytes: Map<string, Uint8Array>;
  sums: Uint8Array;
  sumsList: Map<string, string>;
  manifestBytes: Uint8Array;
  manifest: Manifest;
  statementBytes: Uint8Array | null;
  statement: Statement | null;
  /** Why there is no statement: absent, or what is wrong with it (null when it parsed). */
  statementProblem: string | null;
}

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

export async function readDocuments(files: ReleaseFiles): Promise<ReleaseDocuments> {
  const bytes = new Map<string, Uint8Array>();
  for (const name of DOCUMENT_FILES) {
    const read = await files.readSmall(name);
    if (read) bytes.set(name, read);
  }
  const sums = bytes.get(SUMS_FILE);
  const manifestBytes = bytes.get(MANIFEST_FILE);
  if (!sums || !manifestBytes) {
    throw new Failure(`${files.description} has no ${sums ? MANIFEST_FILE : SUMS_FILE}: it was not published by publish-release.ts, or is incomplete`);
  }
  let manifest: Manifest;
  let sumsList: Map<string, string>;
  try {
    manifest = validateManifest(JSON.parse(text(manifestBytes)));
    sumsList = parseSums(text(sums));
  } catch (error) {
    // The parser's own text ("JSON Parse error: …") says nothing to the operator.
    if (error instanceof SyntaxError) throw new Failure(`${files.description}: ${MANIFEST_FILE} is not valid JSON`);
    if (error instanceof ManifestError) throw new Failure(`${files.description}: ${error.message}`);
    throw error;
  }
  const statementBytes = bytes.get(STATEMENT_FILE) ?? null;
  let statement: Statement | null = null;
  let statementProblem: string | null = null;
  if (!statementBytes) {
    statementProblem = `there is no ${STATEMENT_FILE}: nothing binds these files to a tag, a commit or a builder (publish-release.ts writes it)`;
  } else {
    try {
      statement = parseStatement(text(statementBytes));
    } catch (error) {
      if (!(error instanceof StatementError)) throw error;
      statementProblem = error.message;
    }
  }
  return { bytes, sums, sumsList, manifestBytes, manifest, statementBytes, statement, statementProblem };
}
