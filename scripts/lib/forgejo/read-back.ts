/**
 * Whether this token can download back what it uploads, decided before the first upload.
 *
 * No REST route serves an asset's bytes; they come only from the web routes (`/attachments/<uuid>`,
 * `/releases/download/...`). There the Actions token (the job token or ACTIONS_RUNTIME_TOKEN) is
 * only the bare Actions user, read like any signed-in stranger: a private repository, or one whose
 * owner's visibility is "private", answers 404; drafts are never listed to it by tag
 * (forgejo-release-api.md §12; Forgejo v11.0.0-v15.0.3 routers/web/repo/attachment.go
 * ServeAttachment -> GetUserRepoPermission, models/organization/org.go HasOrgOrUserVisible).
 * A personal token of a writer reads every route. Without this check the publisher uploaded
 * everything and only then failed on a 404, leaving a draft and a hint that blamed --repo.
 */
import { ACTIONS_USER_ID, type ForgejoClient, type RepositoryAccess } from "./client.ts";

export type ReadBack = { possible: true } | { possible: false; cause: string };

/** The secret the workflow hands the publish job when the repository's assets are not readable to the Actions token. */
export const RELEASE_TOKEN_SECRET = "RUNNER_IMAGES_RELEASE_TOKEN";

export async function readBackAccess(client: ForgejoClient, repo: RepositoryAccess): Promise<ReadBack> {
  const hidden = repo.private ? "is private" : repo.owner?.visibility === "private" ? `belongs to ${repo.owner.login ?? "an owner"} whose visibility is private` : null;
  if (!hidden) return { possible: true };
  if ((await client.tokenUserId()) !== ACTIONS_USER_ID) return { possible: true };
  return {
    possible: false,
    cause: `${client.repoName} ${hidden}, and Forgejo serves release assets to the Actions token only where an anonymous reader could read them, so nothing uploaded could be downloaded back to verify it`,
  };
}

/** The one line a refusal prints: the cause, then the fixes, the better one first. */
export function readBackRefusal(readBack: { cause: string }): string {
  return (
    `refusing to publish before any upload: ${readBack.cause}; ` +
    `give the publish step a personal token with write:repository scope (the workflow uses the secret ${RELEASE_TOKEN_SECRET} when it is set; by hand, FORGEJO_TOKEN or --token-file), ` +
    `or pass --verify sizes to publish with sizes checked only`
  );
}
