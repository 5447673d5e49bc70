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
  /** The workflow's `name:` (GITHUB_WORKFLOW): a display name, which the web's run list cannot filter by. */
  workflow: string;
  /**
   * The workflow's file name (boot-images.yml), from GITHUB_WORKFLOW_REF
   * (`owner/repo/.forgejo/workflows/boot-images.yml@refs/...`): set by forgejo-runner v12.2.0+
   * (act/runner/run_context.go, from the task context's workflow_ref) when the server sends it,
   * Forgejo v14.0+ (services/actions/context.go); "" on older servers, or when it is not a plain
   * file name.
   */
  workflowFile: string;
}

/** The file name in a GITHUB_WORKFLOW_REF, or "" when there is none or it is not a plain .yml/.yaml name. */
export function workflowFileOf(ref: string): string {
  const path = ref.includes("@") ? ref.slice(0, ref.lastIndexOf("@")) : ref;
  const file = path.slice(path.lastIndexOf("/") + 1);
  return /^[A-Za-z0-9][A-Za-z0-9._-]*\.ya?ml$/.test(file) && /\/\.(forgejo|gitea|github)\/workflows\/[^/]+$/.test(path) ? file : "";
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
    workflowFile: workflowFileOf(read("WORKFLOW_REF")),
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
    ...(ci.workflowFile ? { workflowFile: ci.workflowFile } : {}),
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
