/**
 * What the Forgejo Actions environment says about the current run. The runner sets every
 * variable twice, as FORGEJO_<X> and GITHUB_<X> (forgejo-release-api.md §16); FORGEJO_ wins,
 * GITHUB_ covers runners older than v7. Outside CI every field is empty and `inCi` is false.
 */
import type { CiRun } from "../build/manifest.ts";

export interface CiEnv {
  inCi: boolean;
  serverUrl: string;
  repository: string;
  sha: string;
  ref: string;
  refName: string;
  /** "tag" or "branch". */
  refType: string;
  event: string;
  runId: string;
  runNumber: string;
  workflow: string;
}

export function ciEnv(env: Record<string, string | undefined> = process.env): CiEnv {
  const read = (name: string) => (env[`FORGEJO_${name}`] || env[`GITHUB_${name}`] || "").trim();
  const runId = read("RUN_ID");
  return {
    inCi: runId !== "",
    serverUrl: read("SERVER_URL").replace(/\/+$/, ""),
    repository: read("REPOSITORY"),
    sha: read("SHA"),
    ref: read("REF"),
    refName: read("REF_NAME"),
    refType: read("REF_TYPE") || (read("REF").startsWith("refs/tags/") ? "tag" : read("REF") ? "branch" : ""),
    event: read("EVENT_NAME"),
    runId,
    runNumber: read("RUN_NUMBER"),
    workflow: read("WORKFLOW"),
  };
}

/** The run as recorded in the manifest, or null for a build by hand. */
export function ciRun(ci: CiEnv): CiRun | null {
  if (!ci.inCi) return null;
  return {
    server: ci.serverUrl,
    repository: ci.repository,
    runId: ci.runId,
    runNumber: ci.runNumber,
    workflow: ci.workflow,
    ref: ci.ref,
    event: ci.event,
  };
}

/** The pushed tag when this run was started by pushing a tag (any name), else "". */
export function pushedTag(ci: CiEnv): string {
  // A dispatch can run on a tag too (Forgejo's dispatch expands a tag name as its ref,
  // services/actions/workflows.go GetWorkflowFromCommit, v14): that run publishes a boot-dev-
  // prerelease, never under the tag it happened to run on.
  return ci.inCi && ci.event === "push" && ci.refType === "tag" ? ci.refName : "";
}
