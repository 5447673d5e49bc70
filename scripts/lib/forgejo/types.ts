/**
 * TypeScript shapes of the Forgejo API objects the publisher uses, mirroring the swagger
 * definitions in tests/fixtures/forgejo-openapi-extract.json (Forgejo 505ab87, v14 dev).
 *
 * Only fields the swagger declares, plus `User.username`, which Forgejo writes although the
 * swagger omits it (modules/structs/user.go MarshalJSON). Timestamps (`format: date-time`) are
 * RFC 3339 strings; `int64` values are numbers.
 *
 * Each type has a runtime key table (`Record<keyof T, true>`, so the compiler rejects a missing or
 * an extra key); tests/forgejo-contract.test.ts checks every key against the swagger definition.
 */

export interface User {
  id: number;
  login: string;
  login_name: string;
  source_id: number;
  full_name: string;
  email: string;
  avatar_url: string;
  html_url: string;
  language: string;
  is_admin: boolean;
  last_login: string;
  created: string;
  restricted: boolean;
  active: boolean;
  prohibit_login: boolean;
  location: string;
  pronouns: string;
  website: string;
  description: string;
  visibility: string;
  followers_count: number;
  following_count: number;
  starred_repos_count: number;
  /** Not in the swagger: Forgejo's MarshalJSON adds it (same value as `login`). */
  username: string;
}

export interface TagArchiveDownloadCount {
  tar_gz: number;
  zip: number;
}

export interface Attachment {
  id: number;
  name: string;
  size: number;
  download_count: number;
  created_at: string;
  uuid: string;
  /** `/releases/download/<tag>/<name>` in lists while names are unique, else `/attachments/<uuid>`; the external URL for external assets. */
  browser_download_url: string;
  type: "attachment" | "external";
}

export interface Release {
  id: number;
  tag_name: string;
  target_commitish: string;
  name: string;
  body: string;
  url: string;
  html_url: string;
  tarball_url: string;
  zipball_url: string;
  upload_url: string;
  /** Forgejo v8.0+. */
  hide_archive_links: boolean;
  draft: boolean;
  prerelease: boolean;
  created_at: string;
  /** Same value as created_at (CreatedUnix). */
  published_at: string;
  author: User;
  assets: Attachment[];
  archive_download_count: TagArchiveDownloadCount;
}

export interface CommitMeta {
  url: string;
  sha: string;
  created: string;
}

export interface Tag {
  name: string;
  message: string;
  /** The tag object's SHA (= the commit SHA for lightweight tags). Compare `commit.sha`. */
  id: string;
  commit: CommitMeta;
  zipball_url: string;
  tarball_url: string;
  archive_download_count: TagArchiveDownloadCount;
}

export interface CreateReleaseOption {
  tag_name: string;
  target_commitish?: string;
  name?: string;
  body?: string;
  draft?: boolean;
  prerelease?: boolean;
  hide_archive_links?: boolean;
}

/** All optional; string fields change only when non-empty (an empty string cannot clear them). */
export interface EditReleaseOption {
  tag_name?: string;
  target_commitish?: string;
  name?: string;
  body?: string;
  draft?: boolean;
  prerelease?: boolean;
  hide_archive_links?: boolean;
}

export interface EditAttachmentOptions {
  name?: string;
  /** Only for external assets (400 otherwise). */
  browser_download_url?: string;
}

export interface CreateTagOption {
  tag_name: string;
  /** Empty = the default branch. */
  target?: string;
  /** Non-empty = an annotated tag. */
  message?: string;
}

export interface APIError {
  message: string;
  url: string;
}

/** A 404 from ctx.NotFound(): `errors` is null when no error was passed (a Go nil slice). */
export interface APINotFound {
  errors: string[] | null;
  message: string;
  url: string;
}

export interface ServerVersion {
  version: string;
}

export interface Permission {
  admin: boolean;
  push: boolean;
  pull: boolean;
}

// ---- runtime key tables ----------------------------------------------------------------------

const userKeys: Record<keyof User, true> = {
  id: true, login: true, login_name: true, source_id: true, full_name: true, email: true,
  avatar_url: true, html_url: true, language: true, is_admin: true, last_login: true,
  created: true, restricted: true, active: true, prohibit_login: true, location: true,
  pronouns: true, website: true, description: true, visibility: true, followers_count: true,
  following_count: true, starred_repos_count: true, username: true,
};
const tagArchiveDownloadCountKeys: Record<keyof TagArchiveDownloadCount, true> = { tar_gz: true, zip: true };
const attachmentKeys: Record<keyof Attachment, true> = {
  id: true, name: true, size: true, download_count: true, created_at: true, uuid: true,
  browser_download_url: true, type: true,
};
const releaseKeys: Record<keyof Release, true> = {
  id: true, tag_name: true, target_commitish: true, name: true, body: true, url: true,
  html_url: true, tarball_url: true, zipball_url: true, upload_url: true,
  hide_archive_links: true, draft: true, prerelease: true, created_at: true,
  published_at: true, author: true, assets: true, archive_download_count: true,
};
const commitMetaKeys: Record<keyof CommitMeta, true> = { url: true, sha: true, created: true };
const tagKeys: Record<keyof Tag, true> = {
  name: true, message: true, id: true, commit: true, zipball_url: true, tarball_url: true,
  archive_download_count: true,
};
const createReleaseOptionKeys: Record<keyof CreateReleaseOption, true> = {
  tag_name: true, target_commitish: true, name: true, body: true, draft: true, prerelease: true,
  hide_archive_links: true,
};
const editReleaseOptionKeys: Record<keyof EditReleaseOption, true> = { ...createReleaseOptionKeys };
const editAttachmentOptionsKeys: Record<keyof EditAttachmentOptions, true> = { name: true, browser_download_url: true };
const createTagOptionKeys: Record<keyof CreateTagOption, true> = { tag_name: true, target: true, message: true };
const apiErrorKeys: Record<keyof APIError, true> = { message: true, url: true };
const apiNotFoundKeys: Record<keyof APINotFound, true> = { errors: true, message: true, url: true };
const serverVersionKeys: Record<keyof ServerVersion, true> = { version: true };
const permissionKeys: Record<keyof Permission, true> = { admin: true, push: true, pull: true };

/** Swagger definition name -> the keys of the exported type of the same name. */
export const TYPE_KEYS: Record<string, readonly string[]> = {
  User: Object.keys(userKeys),
  TagArchiveDownloadCount: Object.keys(tagArchiveDownloadCountKeys),
  Attachment: Object.keys(attachmentKeys),
  Release: Object.keys(releaseKeys),
  CommitMeta: Object.keys(commitMetaKeys),
  Tag: Object.keys(tagKeys),
  CreateReleaseOption: Object.keys(createReleaseOptionKeys),
  EditReleaseOption: Object.keys(editReleaseOptionKeys),
  EditAttachmentOptions: Object.keys(editAttachmentOptionsKeys),
  CreateTagOption: Object.keys(createTagOptionKeys),
  APIError: Object.keys(apiErrorKeys),
  APINotFound: Object.keys(apiNotFoundKeys),
  ServerVersion: Object.keys(serverVersionKeys),
  Permission: Object.keys(permissionKeys),
};

/** Keys present in Forgejo's JSON but absent from the swagger definition. */
export const UNDECLARED_EXTRAS: Record<string, readonly string[]> = {
  User: ["username"],
};
