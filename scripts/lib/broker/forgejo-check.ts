/**
 * What the broker asks Forgejo before it listens: the version (>= 15 mints single-use
 * credentials, forgejo-ephemeral-runners.md §1.3), and the repository (it exists, the token sees
 * it, and has_pull_requests, which decides whether host mode may be served). While Forgejo is
 * down it waits, saying so; a refusal (bad token, unknown repository) is an error at once.
 */
import { Failure } from "../cli/errors.ts";
import { HttpError } from "../forgejo/client.ts";
import { say } from "../cli/log.ts";
import { isTransient, type RepositoryView, type RunnersApi } from "./runners-api.ts";

export interface ForgejoFacts {
  version: string;
  /** Forgejo >= 15 and the runner endpoints answer: POST .../actions/runners exists. */
  mintable: boolean;
  /** Why not, when it cannot mint. */
  why: string;
  repository: RepositoryView;
}

/** The major version of "15.0.3+gitea-1.22.0"; 0 when it does not read as one. */
export function majorVersion(version: string): number {
  const m = /^v?(\d+)\./.exec(version.trim());
  return m ? Number(m[1]) : 0;
}

/** Calls `call` until Forgejo answers, with back-off capped at 30 s (`maxWaitMs` ends the wait). */
export async function untilForgejoAnswers<T>(what: string, call: () => Promise<T>, maxWaitMs: number, baseMs = 1000): Promise<T> {
  const giveUp = Date.now() + maxWaitMs;
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      if (!isTransient(error)) throw error;
      const wait = Math.min(baseMs * 2 ** (attempt - 1), 30_000);
      if (Date.now() + wait > giveUp) throw new Failure(`${what}: Forgejo did not answer (${(error as Error).message})`);
      say(`${what}: Forgejo is not reachable (${(error as Error).message}); trying again in ${Math.round(wait / 1000)} s`);
      await Bun.sleep(wait);
    }
  }
}

export async function checkForgejo(api: RunnersApi, maxWaitMs: number, baseMs?: number): Promise<ForgejoFacts> {
  const version = await untilForgejoAnswers("reading Forgejo's version", () => api.version(), maxWaitMs, baseMs);
  let repository: RepositoryView;
  try {
    repository = await untilForgejoAnswers(`reading ${api.client.repoName}`, () => api.repository(), maxWaitMs, baseMs);
  } catch (error) {
    if (error instanceof HttpError && error.status === 404) {
      throw new Failure(`${api.client.repoName} does not exist or the broker's token cannot see it; check forgejo.repository and forgejo.tokenFile`);
    }
    throw error;
  }
  // Forgejo >= 15 with the repository's Actions unit off answers 404 on the runner endpoints:
  // it cannot mint either, and that is known now rather than at the first boot.
  let mintable = majorVersion(version) >= 15;
  let why = mintable ? "" : `Forgejo ${version} has no runner registration endpoint (it came in 15.0)`;
  if (mintable) {
    try {
      await untilForgejoAnswers("reading the repository's runners", () => api.list(), maxWaitMs, baseMs);
    } catch (error) {
      if (!(error instanceof HttpError && error.status === 404)) throw error;
      mintable = false;
      why = `Forgejo ${version} answered 404 on ${api.client.repoName}'s runner endpoint: Actions is disabled for the repository`;
    }
  }
  return { version, mintable, why, repository };
}
