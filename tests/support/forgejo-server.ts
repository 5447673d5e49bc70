/**
 * A Forgejo-compatible release/asset/tag API server for tests (Bun.serve on 127.0.0.1, port 0).
 *
 * It reproduces the behaviour documented in /work/shared/reference/forgejo-release-api.md
 * (section numbers below refer to it), quirks included: a server kinder than Forgejo would make
 * the publisher's tests lie. Where Forgejo's behaviour depends on the version, `version` decides.
 *
 * Uploads are streamed to disk (SHA-256 computed on the way), never buffered, except multipart
 * bodies, which Forgejo itself buffers in RAM (§9) and which only small tests send.
 */
import { mkdtempSync, mkdirSync, rmSync, existsSync } from "node:fs";
import { open, rename, unlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

// ---------------------------------------------------------------------------------------------
// Public API

export type TokenAccess = "write" | "read" | "none";
export interface TokenSpec {
  /** The user the token belongs to: repository permissions come from the user (§15a). */
  user: string;
  access: TokenAccess;
  /**
   * The token's repository scope, checked per route apart from the user's permission (§15a,
   * `tokenRequiresScopes`): a write collaborator's read:repository token sees `push: true` but
   * gets 403 on every write. Default "write".
   */
  scope?: "read" | "write";
  /** The token also has read:user scope, so GET /api/v1/user answers it (default: it has not, 403). */
  userScope?: boolean;
  /** The Actions automatic token: write on the repo, but in no protected tag's allow-list (§15). */
  actions?: boolean;
}

/**
 * A protected tag rule (models/git/protected_tag.go): a glob or `/regex/`, and the users allowed
 * to create and delete matching tags. A bare pattern has an empty allow-list, which blocks
 * everyone, the repository owner included (`IsUserAllowedToControlTag`).
 */
export type ProtectedTag = string | { pattern: string; allow: string[] };

export interface ForgejoOptions {
  /** Reported by GET /api/v1/version; drives version-dependent behaviour. Default "14.0.0". */
  version?: string;
  owner?: string;
  repo?: string;
  private?: boolean;
  /**
   * The owner's visibility (GET /repos answers it as owner.visibility). "private": only members
   * read the repository, so anonymous readers and the bare Actions user get 404 on web routes;
   * "limited": signed-in users only, so anonymous readers get 404, the Actions user reads
   * (models/organization/org.go HasOrgOrUserVisible, Forgejo v15.0.3). Default "public".
   */
  ownerVisibility?: "public" | "limited" | "private";
  /**
   * Forgejo's ROOT_URL, which every html_url and download link names (with a trailing slash),
   * when it differs from the address clients reach the server at: a runner registered with an
   * internal address sees FORGEJO_SERVER_URL = that address. Default the server's own URL.
   */
  appUrl?: string;
  defaultBranch?: string;
  /** branch -> 40-hex sha. Default { [defaultBranch]: MAIN_SHA }. `{}` (and no commits) = an empty repo. */
  branches?: Record<string, string>;
  /** Extra known commits (valid targets). */
  commits?: string[];
  /** Default DEFAULT_TOKENS. */
  tokens?: Record<string, TokenSpec>;
  /** Protected tag rules; see ProtectedTag. */
  protectedTags?: ProtectedTag[];
  /** Who sees drafts via GET /releases/tags/{tag}; default derived from `version` (§6). */
  draftTagLookup?: "all" | "writers" | "none";
  maxResponseItems?: number;
  defaultPagingNum?: number;
  /** Where uploaded bodies are stored; default a fresh temp dir removed on stop(). */
  dataDir?: string;
  /** Called after every answered request, e.g. to check an invariant of state() at every step. */
  onRequest?: (request: RequestRecord) => void;
  /** The repository's pull-request unit (GET /repos/{o}/{r} has_pull_requests). Default true. */
  hasPullRequests?: boolean;
  /** The repository's Actions unit; off, the runner endpoints answer 404 (reqOwner). Default true. */
  actionsEnabled?: boolean;
  /** Listen on this loopback port (default: any free one), to come back up where a client expects it. */
  port?: number;
}

interface FaultMatch {
  /** HTTP method to match (case-insensitive); any when absent. */
  method?: string;
  /**
   * Matched against the request pathname, both in full (`/api/v1/repos/o/r/releases/1/assets`)
   * and with the `/api/v1` prefix stripped (`/repos/o/r/releases/1/assets`); either may match.
   * The query string is not part of it. Any path when absent.
   */
  path?: RegExp | string;
  /** How many matching requests it fires on (default 1; Infinity allowed). */
  times?: number;
}
export type Fault = FaultMatch &
  (
    | { kind: "status"; status: 500 | 502 | 503 | 504 | 429; retryAfter?: number; html?: boolean }
    | { kind: "status-after-work"; status: 502 | 504; html?: boolean }
    | { kind: "reset"; afterBytes: number }
    | { kind: "stall"; afterBytes?: number; ms: number }
    /** A reverse proxy's body limit: 413 (HTML) for a declared or, once read, a chunked body above maxBody. */
    | { kind: "proxy413"; maxBody: number }
    | { kind: "quota" }
    | { kind: "redirect"; location: string; status?: 301 | 302 | 307 | 308 }
    /**
     * Close the connection before any response, without reading the body (connection error).
     * Note: Bun's fetch retries an idempotent request (GET, DELETE, ...) once when a reused
     * keep-alive connection dies before the response; use `times: 2` to make the client see it.
     */
    | { kind: "close" }
    /**
     * Do the work and answer, but cut the connection after `afterBytes` of the response body
     * (a proxy or network dying while the client reads the answer).
     */
    | { kind: "cut-response"; afterBytes: number }
    /** Answer `status` with the caller's Authorization header quoted in the JSON message (a server or proxy that leaks it). */
    | { kind: "echo-token"; status: 400 | 403 | 422 | 500 }
  );

export interface AssetView {
  id: number;
  uuid: string;
  name: string;
  size: number;
  /** SHA-256 (hex) of the stored bytes; "" for external assets. */
  sha256: string;
  downloadCount: number;
  type: "attachment" | "external";
  externalUrl: string;
  /** The stored file ("" for external assets). */
  path: string;
}
export interface ReleaseView {
  id: number;
  tagName: string;
  target: string;
  title: string;
  note: string;
  draft: boolean;
  prerelease: boolean;
  /** A bare-tag row: a pushed tag without a release, or the ghost left by deleting a release (§7). */
  isTag: boolean;
  /** Commit the git tag points at ("" while no git tag exists). */
  sha1: string;
  hideArchiveLinks: boolean;
  /** Seconds since the epoch (Forgejo's CreatedUnix). */
  createdUnix: number;
  publisher: string;
  assets: AssetView[];
}
export interface RequestRecord {
  method: string;
  /** Pathname as received (no query). */
  path: string;
  /** Query string including "?", or "". */
  query: string;
  /** Final status; 0 when the connection was destroyed (reset/close faults, broken uploads). */
  status: number;
  /** Request body bytes the server read. */
  bytesIn: number;
  /** An Authorization header was sent. */
  auth: boolean;
}
export interface ForgejoServer {
  url: string;
  apiUrl: string;
  options: Required<Omit<ForgejoOptions, "dataDir" | "draftTagLookup" | "onRequest" | "hasPullRequests" | "actionsEnabled" | "port">> & {
    dataDir: string;
    draftTagLookup: "all" | "writers" | "none";
  };
  addFault(f: Fault): void;
  clearFaults(): void;
  /**
   * A server that lies about which release it hands out: asked for the release of `asked` (a tag,
   * or "latest"), it answers with the release of tag `served` (an older one, a dev prerelease, a
   * copy from another repository): the downgrade a verifier must catch. `null` ends the lie.
   */
  answerFor(asked: string, served: string | null): void;
  /** `git push` of a tag (bypasses protection, like an admin push): bare-tag row, or auto-publishes a draft of that name (§12). */
  pushTag(name: string, sha: string): void;
  /** `git push --delete` of a tag: a published release turns back into a draft; a bare-tag row disappears (§7). */
  pushDeleteTag(name: string): void;
  /** `git push` of a branch (moves its head; the sha becomes a known commit). */
  setBranch(name: string, sha: string): void;
  state(): { releases: ReleaseView[]; tags: Record<string, string> };
  requests: RequestRecord[];
  /** The Actions runner registrations (v15 endpoints) and what a runner does with one. */
  runners: RunnerControls;
  /**
   * The fixture's own errors so far (each "internal error on METHOD path: stack"), taken: a test
   * that provokes one on purpose takes it, so that stop() does not fail on it.
   */
  takeInternalErrors(): string[];
  /**
   * Stops: cuts the connections and any fault's pause short, waits until every request in flight
   * has ended (so none writes into the data dir afterwards), removes the data dir it made.
   * Rejects, naming them, when the fixture had internal errors nobody took: a bug of the fixture
   * fails the test that ran into it, instead of printing a stack trace into a green run.
   */
  stop(): Promise<void>;
}

export const MAIN_SHA = "0123456789abcdef0123456789abcdef01234567";
export const DEFAULT_TOKENS: Record<string, TokenSpec> = {
  "write-token": { user: "publisher", access: "write" },
  "read-token": { user: "reader", access: "read" },
  "none-token": { user: "stranger", access: "none" },
  "actions-token": { user: "forgejo-actions", access: "write", actions: true },
  /** The repository owner's own token (user `ops`, the default owner): the runner endpoints want an owner. */
  "owner-token": { user: "ops", access: "write" },
  // ACTIONS_RUNTIME_TOKEN: a JWT naming the task, which Forgejo v10+ accepts as the job token on
  // the API and the attachment routes (services/auth/oauth2.go userIDFromToken, a token with a "."
  // -> TokenToTaskID -> the Actions user; forgejo-release-api.md §15).
  "eyJhbGciOiJIUzI1NiJ9.eyJUYXNrSUQiOjF9.runtime-signature": { user: "forgejo-actions", access: "write", actions: true },
};

/** A runner registration as the test sees it (deleted ones are gone from the list, as in Forgejo). */
export interface RunnerRecordView {
  id: number;
  uuid: string;
  name: string;
  ephemeral: boolean;
  status: "offline" | "idle" | "active";
  /** Set when the runner declared itself (connected); "" before. */
  version: string;
  labels: string[];
  /** Tasks it was given. */
  tasks: number;
}
export interface RunnerControls {
  list(): RunnerRecordView[];
  /** Every registration ever made, deleted ones included (deleted: true). */
  all(): (RunnerRecordView & { deleted: boolean })[];
  /** The runner connects with uuid+token and declares labels (Declare). False: unregistered runner. */
  connect(uuid: string, token: string, labels?: string[]): boolean;
  /** FetchTask: true when it was given a task. An ephemeral runner gets one task, ever (HasTaskForRunner). */
  fetchTask(uuid: string, token: string): boolean;
  /** The task ends (final UpdateTask, or StopTask): an ephemeral runner is deleted then. */
  finishTask(uuid: string, token: string): boolean;
  setHasPullRequests(open: boolean): void;
  setActionsEnabled(on: boolean): void;
  /** Requests to the runner endpoints: how many, and the most at once. */
  stats: { calls: number; inFlight: number; peakInFlight: number };
}

// ---------------------------------------------------------------------------------------------
// Internal model

interface Att {
  id: number;
  uuid: string;
  name: string;
  size: number;
  sha256: string;
  downloadCount: number;
  createdUnix: number;
  externalUrl: string;
  path: string;
  releaseId: number;
}
interface Row {
  id: number;
  tagName: string;
  target: string;
  title: string;
  note: string;
  isDraft: boolean;
  isPrerelease: boolean;
  isTag: boolean;
  hideArchiveLinks: boolean;
  sha1: string;
  createdUnix: number;
  publisher: string;
  attachments: Att[];
}
interface GitTag {
  name: string;
  sha: string;
  /** Tag object id: the commit sha for lightweight tags. */
  objectId: string;
  message: string;
  createdUnix: number;
}
interface Caller {
  token?: string;
  spec?: TokenSpec;
}
type Perm = "none" | "read" | "write";

class HttpError extends Error {
  constructor(public response: Response) {
    super("http error");
  }
}
class ConnectionKill extends Error {}
class BrokenBody extends Error {}
class OverProxyLimit extends Error {}

const now = () => Math.floor(Date.now() / 1000);
const iso = (unix: number) => new Date(unix * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
const isSha = (s: string) => /^[0-9a-f]{40}$/.test(s);
const randomHex = (n: number) =>
  Array.from(crypto.getRandomValues(new Uint8Array(n / 2)), (b) => b.toString(16).padStart(2, "0")).join("");
/** Go's url.PathEscape: like encodeURIComponent, but `!'()*` escaped and `$&+,:;=@` kept. */
const pathEscape = (s: string) =>
  encodeURIComponent(s)
    .replace(/[!'()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase())
    .replace(/%(24|26|2B|2C|3A|3B|3D|40)/g, (e) => decodeURIComponent(e));

const FORM_MAX = 10 * 1024 * 1024; // Go's ParseForm cap for urlencoded bodies

function parseVersion(v: string): [number, number, number] {
  const m = /^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?/.exec(v);
  if (!m) return [14, 0, 0];
  return [Number(m[1]), Number(m[2] ?? 0), Number(m[3] ?? 0)];
}
function cmpVersion(a: [number, number, number], b: [number, number, number]) {
  for (const i of [0, 1, 2] as const) if (a[i] !== b[i]) return a[i] - b[i];
  return 0;
}
function defaultDraftLookup(v: [number, number, number]): "all" | "writers" {
  // PR #10037: fixed in v13.0.3 and v11.0.8 (§6, §17).
  if (v[0] >= 14) return "writers";
  if (v[0] === 13) return cmpVersion(v, [13, 0, 3]) >= 0 ? "writers" : "all";
  if (v[0] === 11) return cmpVersion(v, [11, 0, 8]) >= 0 ? "writers" : "all";
  return "all";
}
function globToRegExp(pattern: string): RegExp {
  if (pattern.length > 1 && pattern.startsWith("/") && pattern.endsWith("/")) return new RegExp(pattern.slice(1, -1));
  let re = "";
  for (const ch of pattern) {
    if (ch === "*") re += ".*";
    else if (ch === "?") re += ".";
    else re += ch.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}

const PROXY_HTML: Record<number, string> = {
  413: "413 Request Entity Too Large",
  429: "429 Too Many Requests",
  500: "500 Internal Server Error",
  502: "502 Bad Gateway",
  503: "503 Service Temporarily Unavailable",
  504: "504 Gateway Time-out",
};
function proxyHtml(status: number, headers: Record<string, string> = {}) {
  const title = PROXY_HTML[status] ?? `${status} Error`;
  return new Response(
    `<html>\r\n<head><title>${title}</title></head>\r\n<body>\r\n<center><h1>${title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n`,
    { status, headers: { "content-type": "text/html", ...headers } },
  );
}
/** The response's status and headers, then `afterBytes` of its body, then a dropped connection. */
async function cutResponse(res: Response, afterBytes: number): Promise<Response> {
  const body = new Uint8Array(await res.arrayBuffer());
  const headers = new Headers(res.headers);
  headers.delete("content-length");
  return new Response(
    new ReadableStream({
      start(c) {
        c.enqueue(body.subarray(0, Math.min(afterBytes, Math.max(0, body.byteLength - 1))));
        // Later, so that the status line and the first bytes have left before the connection dies.
        setTimeout(() => c.error(), 50);
      },
    }),
    { status: res.status, headers },
  );
}
/** A response whose body stream errors before any byte: Bun drops the connection without a status line. */
function killResponse(): Response {
  return new Response(
    new ReadableStream({
      start(c) {
        c.error();
      },
    }),
  );
}

// ---------------------------------------------------------------------------------------------

export async function startForgejo(opts: ForgejoOptions = {}): Promise<ForgejoServer> {
  const version = opts.version ?? "14.0.0";
  const ver = parseVersion(version);
  const atLeast = (M: number, m = 0, p = 0) => cmpVersion(ver, [M, m, p]) >= 0;
  const owner = opts.owner ?? "ops";
  const repoName = opts.repo ?? "runner-images";
  const defaultBranch = opts.defaultBranch ?? "main";
  const branches: Record<string, string> = { ...(opts.branches ?? { [defaultBranch]: MAIN_SHA }) };
  const commits = new Set<string>([...Object.values(branches), ...(opts.commits ?? [])].map((s) => s.toLowerCase()));
  const tokens = opts.tokens ?? DEFAULT_TOKENS;
  const protectedRules = (opts.protectedTags ?? []).map((rule) =>
    typeof rule === "string" ? { re: globToRegExp(rule), allow: [] as string[] } : { re: globToRegExp(rule.pattern), allow: rule.allow },
  );
  const actionsUsers = new Set(Object.values(tokens).filter((t) => t.actions).map((t) => t.user));
  const draftTagLookup = opts.draftTagLookup ?? defaultDraftLookup(ver);
  const maxItems = opts.maxResponseItems ?? 50;
  const defaultPaging = opts.defaultPagingNum ?? 30;
  const ownDataDir = opts.dataDir === undefined;
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), "forgejo-fixture-"));
  mkdirSync(dataDir, { recursive: true });
  const startedUnix = now();
  let hasPullRequests = opts.hasPullRequests ?? true;
  let actionsEnabled = opts.actionsEnabled ?? true;

  const userIds = new Map<string, number>([[owner, 1]]);
  const userId = (login: string) => {
    if (!userIds.has(login)) userIds.set(login, userIds.size + 1);
    return userIds.get(login)!;
  };
  for (const t of Object.values(tokens)) userId(t.user);
  // The Actions user is a fake user with a fixed id (models/user/user_system.go ActionsUserID).
  for (const login of actionsUsers) userIds.set(login, -2);
  const ownerVisibility = opts.ownerVisibility ?? "public";

  const rows: Row[] = [];
  const gitTags = new Map<string, GitTag>();
  let nextReleaseId = 1;
  let nextAttId = 101; // a different range than release ids, so mixing them up fails
  let faults: (Fault & { left: number })[] = [];
  /** answerFor's lies: a tag asked for (or "latest") -> the tag whose release is served instead. */
  const lies = new Map<string, string>();
  const requests: RequestRecord[] = [];
  const internalErrors: string[] = [];
  /** Requests whose handler has not returned yet: stop() waits for them. */
  const inFlight = new Set<Promise<Response>>();
  const stopping = new AbortController();

  /** A request handler that stop() waits for. */
  const untilStopped = (handle: (req: Request) => Promise<Response>) => async (req: Request) => {
    const answer = handle(req);
    inFlight.add(answer);
    try {
      return await answer;
    } finally {
      inFlight.delete(answer);
    }
  };
  /**
   * A fault's pause (stall), cut short by stop(): a stopped server does no more work, so the
   * request then ends as a cut connection, as it does on a real server that is shut down.
   */
  async function pause(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      stopping.signal.addEventListener("abort", () => (clearTimeout(timer), resolve()), { once: true });
    });
    if (stopping.signal.aborted) throw new ConnectionKill();
  }

  let base = ""; // "http://127.0.0.1:PORT/" (Forgejo's AppURL, with the trailing slash)
  const swaggerUrl = () => `${base}api/swagger`;
  const repoHtml = () => `${base}${owner}/${repoName}`;
  const repoApi = () => `${base}api/v1/repos/${owner}/${repoName}`;

  const isEmptyRepo = () => Object.keys(branches).length === 0 && commits.size === 0;
  const findRow = (tag: string) => rows.find((r) => r.tagName.toLowerCase() === tag.toLowerCase());
  const resolveCommit = (target: string): string | undefined => {
    if (target === "") return undefined;
    if (branches[target] !== undefined) return branches[target];
    if (gitTags.has(target)) return gitTags.get(target)!.sha;
    const t = target.toLowerCase();
    if (isSha(t) && commits.has(t)) return t;
    // short SHAs, like `git rev-parse`
    if (/^[0-9a-f]{7,39}$/.test(t)) {
      const hits = [...commits].filter((c) => c.startsWith(t));
      if (hits.length === 1) return hits[0];
    }
    return undefined;
  };
  /**
   * models/git/protected_tag.go IsUserAllowedToControlTag: no matching rule, or one whose
   * allow-list holds the user. No exception for the owner or admins; the Actions user is in no
   * allow-list.
   */
  const mayControlTag = (tag: string, login: string) => {
    const matching = protectedRules.filter((rule) => rule.re.test(tag));
    return matching.length === 0 || (!actionsUsers.has(login) && matching.some((rule) => rule.allow.includes(login)));
  };
  /** `git check-ref-format`, which `git tag` applies: Forgejo's createTag maps its refusal to ErrInvalidTagName. */
  const gitAcceptsTag = (tag: string) => Bun.spawnSync(["git", "check-ref-format", `refs/tags/${tag}`]).exitCode === 0;
  /** modules/util SplitStringAtByteN(title, 255): over 255 bytes, cut at a rune boundary to 252 bytes plus "…". */
  const cutTitle = (title: string) => {
    const bytes = new TextEncoder().encode(title);
    if (bytes.byteLength <= 255) return title;
    let end = 0;
    for (const ch of title) {
      const size = new TextEncoder().encode(ch).byteLength;
      if (end + size > 252) break;
      end += size;
    }
    return new TextDecoder().decode(bytes.subarray(0, end)) + "…";
  };

  // ---- JSON conversions ----------------------------------------------------------------------

  const toUser = (login: string) => ({
    id: userId(login),
    login,
    login_name: "",
    source_id: 0,
    full_name: "",
    email: `${login}@noreply.localhost`,
    avatar_url: `${base}avatars/${randomHexFor(login)}`,
    html_url: `${base}${login}`,
    language: "",
    is_admin: false,
    last_login: "0001-01-01T00:00:00Z",
    created: iso(startedUnix),
    restricted: false,
    active: false,
    prohibit_login: false,
    location: "",
    pronouns: "",
    website: "",
    description: "",
    visibility: login === owner ? ownerVisibility : "public",
    followers_count: 0,
    following_count: 0,
    starred_repos_count: 0,
    username: login,
  });
  function randomHexFor(s: string) {
    return new Bun.CryptoHasher("md5").update(s).digest("hex");
  }
  const attUrlSingle = (a: Att) => (a.externalUrl ? a.externalUrl : `${base}attachments/${a.uuid}`);
  const toAttachment = (a: Att, downloadUrl: string) => ({
    id: a.id,
    name: a.name,
    size: a.size,
    download_count: a.downloadCount,
    created_at: iso(a.createdUnix),
    uuid: a.uuid,
    browser_download_url: downloadUrl,
    type: a.externalUrl ? "external" : "attachment",
  });
  const sortedAtts = (r: Row) => [...r.attachments].sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : x.id - y.id));
  /** Attachments as in release JSON and the asset list (§9: one duplicate name switches all URLs). */
  const releaseAtts = (r: Row) => {
    const names = new Set(r.attachments.map((a) => a.name));
    const dup = names.size !== r.attachments.length;
    return sortedAtts(r).map((a) =>
      toAttachment(
        a,
        a.externalUrl
          ? a.externalUrl
          : dup
            ? `${base}attachments/${a.uuid}`
            : `${repoHtml()}/releases/download/${pathEscape(r.tagName)}/${pathEscape(a.name)}`,
      ),
    );
  };
  const toRelease = (r: Row, req: Request) => {
    const api = `${repoApi()}/releases/${r.id}`;
    const gh = atLeast(13) && (req.headers.get("accept") ?? "").toLowerCase().includes("application/vnd.github+json");
    const out: Record<string, unknown> = {
      id: r.id,
      tag_name: r.tagName,
      target_commitish: r.target,
      name: r.title,
      body: r.note,
      url: api,
      html_url: `${repoHtml()}/releases/tag/${pathEscape(r.tagName)}`,
      tarball_url: `${repoHtml()}/archive/${pathEscape(r.tagName)}.tar.gz`,
      zipball_url: `${repoHtml()}/archive/${pathEscape(r.tagName)}.zip`,
      hide_archive_links: r.hideArchiveLinks,
      upload_url: gh ? `${api}/assets{?name,label}` : `${api}/assets`,
      draft: r.isDraft,
      prerelease: r.isPrerelease,
      created_at: iso(r.createdUnix),
      published_at: iso(r.createdUnix),
      author: toUser(r.publisher),
      assets: releaseAtts(r),
      archive_download_count: { zip: 0, tar_gz: 0 },
    };
    if (!atLeast(8)) delete out.hide_archive_links;
    return out;
  };
  const toTag = (t: GitTag) => ({
    name: t.name,
    message: t.message.replace(/\n$/, ""),
    id: t.objectId,
    commit: { url: `${repoApi()}/git/commits/${t.sha}`, sha: t.sha, created: iso(startedUnix) },
    zipball_url: `${repoHtml()}/archive/${t.name}.zip`,
    tarball_url: `${repoHtml()}/archive/${t.name}.tar.gz`,
    archive_download_count: { zip: 0, tar_gz: 0 },
  });
  const toCommit = (sha: string) => {
    const who = { name: owner, email: `${owner}@noreply.localhost`, date: iso(startedUnix) };
    return {
      url: `${repoApi()}/git/commits/${sha}`,
      sha,
      created: iso(startedUnix),
      html_url: `${repoHtml()}/commit/${sha}`,
      commit: { url: `${repoApi()}/git/commits/${sha}`, author: who, committer: who, message: "commit\n", tree: { url: `${repoApi()}/git/trees/${sha}`, sha, created: iso(startedUnix) } },
      author: toUser(owner),
      committer: toUser(owner),
      parents: [],
    };
  };
  const toRepo = (perm: Perm) => ({
    id: 1,
    owner: toUser(owner),
    name: repoName,
    full_name: `${owner}/${repoName}`,
    description: "",
    empty: isEmptyRepo(),
    private: !!opts.private,
    fork: false,
    template: false,
    parent: null,
    mirror: false,
    size: 1024,
    language: "",
    languages_url: `${repoApi()}/languages`,
    html_url: repoHtml(),
    url: repoApi(),
    link: "",
    ssh_url: `git@127.0.0.1:${owner}/${repoName}.git`,
    clone_url: `${repoHtml()}.git`,
    original_url: "",
    website: "",
    stars_count: 0,
    forks_count: 0,
    watchers_count: 1,
    open_issues_count: 0,
    open_pr_counter: 0,
    release_counter: rows.filter((r) => !r.isTag && !r.isDraft).length,
    default_branch: defaultBranch,
    archived: false,
    created_at: iso(startedUnix),
    updated_at: iso(startedUnix),
    archived_at: "1970-01-01T00:00:00Z",
    permissions: { admin: false, push: perm === "write", pull: perm !== "none" },
    has_issues: true,
    internal_tracker: { enable_time_tracker: true, allow_only_contributors_to_track_time: true, enable_issue_dependencies: true },
    has_wiki: true,
    wiki_branch: "main",
    globally_editable_wiki: false,
    has_pull_requests: hasPullRequests,
    has_projects: true,
    has_releases: true,
    has_packages: true,
    has_actions: actionsEnabled,
    ignore_whitespace_conflicts: false,
    allow_merge_commits: true,
    allow_rebase: true,
    allow_rebase_explicit: true,
    allow_squash_merge: true,
    allow_fast_forward_only_merge: true,
    allow_rebase_update: true,
    default_delete_branch_after_merge: false,
    default_merge_style: "merge",
    default_update_style: "merge",
    default_allow_maintainer_edit: false,
    avatar_url: "",
    internal: false,
    mirror_interval: "",
    object_format_name: "sha1",
    mirror_updated: "0001-01-01T00:00:00Z",
    repo_transfer: null,
    topics: null,
  });

  // ---- responses -----------------------------------------------------------------------------

  const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
    new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json;charset=utf-8", ...headers } });
  /** services/context/api.go Error(): 500 messages are hidden (production, non-admin caller). */
  const apiError = (status: number, message: string) =>
    json(status, { message: status === 500 ? "" : message, url: swaggerUrl() });
  /** services/context/api.go NotFound(): `errors` is a Go nil slice (null) unless errors were passed. */
  const notFound = (errors: string[] | null = null) =>
    json(404, { errors, message: "The target couldn't be found.", url: swaggerUrl() });
  const webNotFound = () =>
    new Response("<!DOCTYPE html><html><head><title>Page Not Found - Forgejo</title></head><body>404 Not Found</body></html>", {
      status: 404,
      headers: { "content-type": "text/html; charset=utf-8" },
    });
  const fail = (r: Response): never => {
    throw new HttpError(r);
  };

  // ---- state changes shared by API and helpers ------------------------------------------------

  /**
   * services/release/release.go createTag(): only for non-drafts; returns whether it created the
   * git tag. Throws HttpError. Protection is decided for the release's publisher (rel.PublisherID:
   * the draft's creator, not the caller of a publishing PATCH); a name git refuses fails after
   * that (ErrInvalidTagName, a 500 from the handlers) and creates nothing.
   */
  function ensureGitTag(r: Row, onTargetMissing: () => never, onProtected: () => never, onInvalidName: () => never): boolean {
    if (r.isDraft) return false;
    const existing = gitTags.get(r.tagName);
    if (existing) {
      r.sha1 = existing.sha;
      return false;
    }
    if (!mayControlTag(r.tagName, r.publisher)) onProtected();
    const sha = resolveCommit(r.target);
    if (!sha) onTargetMissing();
    if (!gitAcceptsTag(r.tagName)) onInvalidName();
    gitTags.set(r.tagName, { name: r.tagName, sha: sha!, objectId: sha!, message: `commit ${sha!.slice(0, 10)}\n`, createdUnix: now() });
    r.sha1 = sha!;
    r.createdUnix = now();
    return true;
  }
  async function removeAttachmentFiles(atts: Att[]) {
    for (const a of atts) if (a.path) await unlink(a.path).catch(() => {});
  }
  /** services/release DeleteReleaseByID(delTag=false): the row becomes a bare tag; assets go (§7). */
  async function deleteReleaseKeepTag(r: Row) {
    const atts = r.attachments;
    r.attachments = [];
    r.isTag = true;
    await removeAttachmentFiles(atts);
  }

  // ---- body reading with fault hooks ---------------------------------------------------------

  interface BodyCtx {
    req: Request;
    bytesIn: number;
    fault?: Fault;
    stalled: boolean;
  }
  async function* bodyChunks(b: BodyCtx): AsyncGenerator<Uint8Array> {
    const f = b.fault;
    if (f?.kind === "reset" && f.afterBytes <= 0) throw new ConnectionKill();
    if (f?.kind === "stall" && (f.afterBytes ?? 0) <= 0 && !b.stalled) {
      b.stalled = true;
      await pause(f.ms);
    }
    if (!b.req.body) {
      if (f?.kind === "reset") throw new ConnectionKill();
      return;
    }
    try {
      for await (const chunk of b.req.body as unknown as AsyncIterable<Uint8Array>) {
        let c = chunk;
        if (f?.kind === "reset" && b.bytesIn + c.byteLength >= f.afterBytes) {
          b.bytesIn = f.afterBytes;
          throw new ConnectionKill();
        }
        if (f?.kind === "stall" && !b.stalled && b.bytesIn + c.byteLength >= (f.afterBytes ?? 0)) {
          const first = (f.afterBytes ?? 0) - b.bytesIn;
          if (first > 0) {
            b.bytesIn += first;
            yield c.subarray(0, first);
            c = c.subarray(first);
          }
          b.stalled = true;
          await pause(f.ms);
        }
        b.bytesIn += c.byteLength;
        if (f?.kind === "proxy413" && b.bytesIn > f.maxBody) throw new OverProxyLimit();
        if (c.byteLength) yield c;
      }
    } catch (e) {
      if (e instanceof ConnectionKill || e instanceof OverProxyLimit) throw e;
      throw new BrokenBody(String(e));
    }
    if (f?.kind === "reset") throw new ConnectionKill();
    const declared = b.req.headers.get("content-length");
    if (declared !== null && Number(declared) !== b.bytesIn) throw new BrokenBody("short body");
  }
  async function readAll(b: BodyCtx): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    let n = 0;
    for await (const c of bodyChunks(b)) {
      parts.push(c);
      n += c.byteLength;
    }
    const out = new Uint8Array(n);
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.byteLength;
    }
    return out;
  }
  type FieldType = "string" | "boolean";
  async function readJson(b: BodyCtx, fields: Record<string, FieldType>, required: string[] = []) {
    // go-chi binding Bind() picks the binder by Content-Type: none is 422 "Empty Content-Type",
    // an unknown one 422 "Unsupported Content-Type" (§15a). Form bodies, which Forgejo binds by
    // Go field names (ignoring `draft`), are not modelled: refused the same way.
    const type = (b.req.headers.get("content-type") ?? "").toLowerCase();
    if (!type.includes("application/json")) {
      for await (const _ of bodyChunks(b));
      return fail(json(422, [{ fieldNames: [], classification: "ContentTypeError", message: type ? "Unsupported Content-Type" : "Empty Content-Type" }]));
    }
    const raw = new TextDecoder().decode(await readAll(b));
    let v: unknown;
    try {
      v = raw.trim() === "" ? {} : JSON.parse(raw);
    } catch (e) {
      return fail(apiError(422, `[]: ${(e as Error).message}`));
    }
    if (typeof v !== "object" || v === null || Array.isArray(v)) return fail(apiError(422, "[]: json: cannot unmarshal into Go value"));
    const o = v as Record<string, unknown>;
    for (const [k, t] of Object.entries(fields)) {
      if (o[k] !== undefined && o[k] !== null && typeof o[k] !== t)
        fail(apiError(422, `[${k}]: json: cannot unmarshal ${typeof o[k]} into Go struct field of type ${t === "boolean" ? "bool" : t}`));
    }
    for (const k of required) if (typeof o[k] !== "string" || o[k] === "") fail(apiError(422, `[${k}]: Required`));
    return o as Record<string, string | boolean | undefined>;
  }

  // ---- uploads -------------------------------------------------------------------------------

  async function storeStream(chunks: AsyncIterable<Uint8Array>, skip: number): Promise<{ path: string; size: number; sha256: string }> {
    const uuid = crypto.randomUUID();
    const tmp = join(dataDir, `.tmp-${uuid}`);
    const fh = await open(tmp, "w");
    const hasher = new Bun.CryptoHasher("sha256");
    let size = 0;
    let skipped = 0;
    try {
      for await (let c of chunks) {
        if (skipped < skip) {
          const s = Math.min(skip - skipped, c.byteLength);
          skipped += s;
          c = c.subarray(s);
          if (!c.byteLength) continue;
        }
        hasher.update(c);
        size += c.byteLength;
        let off = 0;
        while (off < c.byteLength) off += (await fh.write(c, off, c.byteLength - off)).bytesWritten;
      }
    } catch (e) {
      await fh.close();
      await unlink(tmp).catch(() => {});
      throw e;
    }
    await fh.close();
    const path = join(dataDir, uuid);
    await rename(tmp, path);
    return { path, size, sha256: hasher.digest("hex") };
  }
  function addAttachment(r: Row, name: string, stored: { path: string; size: number; sha256: string } | null, externalUrl = ""): Att {
    const a: Att = {
      id: nextAttId++,
      uuid: stored ? stored.path.slice(dataDir.length + 1) : crypto.randomUUID(),
      name,
      size: stored?.size ?? 0,
      sha256: stored?.sha256 ?? "",
      downloadCount: 0,
      createdUnix: now(),
      externalUrl,
      path: stored?.path ?? "",
      releaseId: r.id,
    };
    r.attachments.push(a);
    return a;
  }
  const validExternal = (u: string) => {
    try {
      const p = new URL(u);
      return p.protocol === "http:" || p.protocol === "https:";
    } catch {
      return false;
    }
  };

  async function uploadAsset(r: Row, url: URL, b: BodyCtx): Promise<Response> {
    const ct = (b.req.headers.get("content-type") ?? "").toLowerCase();
    const isForm = ct.startsWith("multipart/form-data");
    const qName = url.searchParams.get("name") ?? "";
    const qExternal = url.searchParams.get("external_url") ?? "";
    const missingName = () =>
      apiError(400, atLeast(9) ? "Missing 'name' parameter" : "Could not determine name of attachment.");

    if (isForm) {
      // Forgejo's API middleware runs ParseMultipartForm: the body is buffered in memory (§9).
      const buf = await readAll(b);
      let fd: Awaited<ReturnType<Response["formData"]>>;
      try {
        fd = await new Response(buf, { headers: { "content-type": b.req.headers.get("content-type")! } }).formData();
      } catch {
        return apiError(500, "ParseMultipartForm");
      }
      const file = fd.get("attachment");
      const hasFile = file !== null && typeof file !== "string";
      const external = atLeast(9) ? qExternal || String(fd.get("external_url") ?? "") : "";
      if (hasFile && external) return apiError(400, "'attachment' and 'external_url' are mutually exclusive");
      if (hasFile) {
        // The form file's name is reduced to its base name (filepath.Base of the header's filename).
        const name = qName || ((file as File).name ?? "").split(/[\\/]/).pop() || "";
        if (!name) return missingName();
        const stored = await storeStream((file as File).stream() as unknown as AsyncIterable<Uint8Array>, 0);
        const a = addAttachment(r, name, stored);
        return json(201, toAttachment(a, attUrlSingle(a)));
      }
      if (external) {
        if (!qName && !fd.get("name")) return missingName();
        if (!validExternal(external)) return apiError(400, "Invalid external URL");
        const a = addAttachment(r, qName || String(fd.get("name")), null, external);
        return json(201, toAttachment(a, attUrlSingle(a)));
      }
      return apiError(atLeast(9) ? 400 : 500, "One of 'attachment' or 'external_url' is required");
    }

    // Raw body (v7+). Before v7 the handler only knew FormFile("attachment") → 500 "GetFile".
    if (!atLeast(7)) return apiError(500, "GetFile");
    // On a real server the body is never nil, so a raw request "has a file" (§9).
    if (qExternal && atLeast(9)) return apiError(400, "'attachment' and 'external_url' are mutually exclusive");
    if (!qName) return missingName();
    // The auth layer's ParseForm() eats up to 10 MiB + 1 of an urlencoded body (§9 pitfalls).
    const skip = ct.startsWith("application/x-www-form-urlencoded") ? FORM_MAX + 1 : 0;
    const stored = await storeStream(bodyChunks(b), skip);
    const a = addAttachment(r, qName, stored);
    return json(201, toAttachment(a, attUrlSingle(a)));
  }

  // ---- downloads -----------------------------------------------------------------------------

  function serveFile(a: Att, req: Request): Response {
    if (a.externalUrl) return new Response(null, { status: 303, headers: { location: a.externalUrl } });
    a.downloadCount++;
    const file = Bun.file(a.path);
    const headers: Record<string, string> = {
      "content-type": "application/octet-stream",
      "content-disposition": `inline; filename="${a.name.replace(/"/g, "\\\"")}"`,
      "accept-ranges": "bytes",
      etag: `"${a.uuid}"`,
      "last-modified": new Date(a.createdUnix * 1000).toUTCString(),
    };
    const range = req.headers.get("range");
    const m = range ? /^bytes=(\d*)-(\d*)$/.exec(range.trim()) : null;
    if (m && (m[1] !== "" || m[2] !== "")) {
      let start: number, end: number;
      if (m[1] === "") {
        start = Math.max(0, a.size - Number(m[2]));
        end = a.size - 1;
      } else {
        start = Number(m[1]);
        end = m[2] === "" ? a.size - 1 : Math.min(Number(m[2]), a.size - 1);
      }
      if (start >= a.size || start > end)
        return new Response(null, { status: 416, headers: { "content-range": `bytes */${a.size}` } });
      return new Response(req.method === "HEAD" ? null : file.slice(start, end + 1), {
        status: 206,
        headers: { ...headers, "content-range": `bytes ${start}-${end}/${a.size}`, "content-length": String(end - start + 1) },
      });
    }
    return new Response(req.method === "HEAD" ? null : file, { status: 200, headers: { ...headers, "content-length": String(a.size) } });
  }

  // ---- auth ----------------------------------------------------------------------------------

  /** Returns the caller, or throws 401 for a credential that does not resolve (§14). Query tokens are ignored. */
  function authenticate(req: Request): Caller {
    const h = req.headers.get("authorization");
    if (!h) return {};
    const m = /^(\S+)\s+(.*)$/.exec(h.trim());
    const unauthorized = () => fail(apiError(401, "invalid username, password or token"));
    if (!m) return unauthorized();
    const scheme = m[1]!.toLowerCase(); // group 1 is mandatory in the regex
    let token: string | undefined;
    if (scheme === "token" || scheme === "bearer") token = m[2]!.trim();
    else if (scheme === "basic") {
      let decoded = "";
      try {
        decoded = atob(m[2]!.trim());
      } catch {
        return unauthorized();
      }
      const i = decoded.indexOf(":");
      const user = i < 0 ? decoded : decoded.slice(0, i);
      const pass = i < 0 ? "" : decoded.slice(i + 1);
      // user:<token>, <token>: or <token>:x-oauth-basic
      if (pass && pass !== "x-oauth-basic" && tokens[pass]) token = pass;
      else if ((pass === "" || pass === "x-oauth-basic") && tokens[user]) token = user;
      else return unauthorized();
    } else return unauthorized();
    const spec = tokens[token!];
    if (!spec) return unauthorized();
    return { token, spec };
  }
  // What a caller who is no collaborator reads: a private repository or a private owner hides it
  // from everyone; a limited owner from anonymous readers only (GetUserRepoPermission,
  // HasOrgOrUserVisible).
  const strangerPerm = (signedIn: boolean): Perm =>
    opts.private || ownerVisibility === "private" || (!signedIn && ownerVisibility === "limited") ? "none" : "read";
  const permOf = (c: Caller): Perm => {
    if (!c.spec) return strangerPerm(false);
    if (c.spec.access === "write") return "write";
    if (c.spec.access === "read") return "read";
    return strangerPerm(true);
  };
  /**
   * On web routes the Actions token is only the bare Actions user: ServeAttachment and the web
   * RepoAssignment call GetUserRepoPermission, which has no Actions-task case (Forgejo
   * v11.0.0-v15.0.3 routers/web/repo/attachment.go, services/context/repo.go), so it reads like a
   * signed-in stranger: nothing of a private repository or a private owner's, and no drafts by tag.
   */
  const webPermOf = (c: Caller): Perm => (c.spec?.actions ? strangerPerm(true) : permOf(c));

  // ---- faults --------------------------------------------------------------------------------

  const QUOTA_ROUTE = /^\/repos\/[^/]+\/[^/]+\/(releases(\/\d+(\/assets(\/\d+)?)?)?|tags)$/;
  function takeFault(req: Request, path: string, stage: "front" | "quota"): Fault | undefined {
    const apiPath = path.startsWith("/api/v1/") ? path.slice(7) : path;
    for (const f of faults) {
      if (f.left <= 0) continue;
      if (f.method && f.method.toUpperCase() !== req.method) continue;
      if (f.path !== undefined) {
        const re = typeof f.path === "string" ? new RegExp(f.path) : f.path;
        if (!re.test(path) && !re.test(apiPath)) continue;
      }
      if ((f.kind === "quota") !== (stage === "quota")) continue;
      if (f.kind === "quota" && !(["POST", "PATCH"].includes(req.method) && QUOTA_ROUTE.test(apiPath))) continue;
      // A declared body is judged by its length; a chunked one as it is read (bodyChunks).
      if (f.kind === "proxy413" && req.headers.has("content-length") && !(Number(req.headers.get("content-length")) > f.maxBody)) continue;
      f.left--;
      faults = faults.filter((x) => x.left > 0);
      return f;
    }
    return undefined;
  }

  // ---- the router ----------------------------------------------------------------------------

  async function handle(req: Request, url: URL, b: BodyCtx, caller: Caller): Promise<Response> {
    const path = url.pathname;
    const method = req.method === "HEAD" ? "GET" : req.method;

    // Web download routes (§11).
    const dl = /^\/([^/]+)\/([^/]+)\/releases\/download\/([^/]+)\/([^/]+)$/.exec(path);
    const attRoute = /^\/attachments\/([^/]+)$/.exec(path) ?? /^\/([^/]+)\/([^/]+)\/releases\/attachments\/([^/]+)$/.exec(path);
    if (dl || attRoute) {
      if (method !== "GET") return webNotFound();
      const perm = webPermOf(caller);
      if (perm === "none") return webNotFound();
      if (dl) {
        if (dl[1] !== owner || dl[2] !== repoName) return webNotFound();
        // all four groups of `dl` are mandatory in the regex
        const tag = decodeURIComponent(dl[3]!);
        const name = decodeURIComponent(dl[4]!);
        // The Actions token cannot see drafts through the web route (§12): it is no writer there.
        const canWrite = perm === "write";
        const visible = rows.filter((r) => !r.isTag && r.tagName === tag && (canWrite || !r.isDraft));
        let r: Row | undefined;
        if (visible.length === 1) r = visible[0];
        else if (visible.length === 0 && tag === "latest") r = latestRow();
        if (!r) return webNotFound();
        // Unordered Get: with duplicate names an arbitrary one is served (we pick a random one).
        const hits = r.attachments.filter((a) => a.name === name);
        if (!hits.length) return webNotFound();
        return serveFile(hits[Math.floor(Math.random() * hits.length)]!, req); // hits is non-empty
      }
      const uuid = attRoute!.length === 2 ? attRoute![1] : attRoute![3];
      if (attRoute!.length === 4 && (attRoute![1] !== owner || attRoute![2] !== repoName)) return webNotFound();
      for (const r of rows) for (const a of r.attachments) if (a.uuid === uuid) return serveFile(a, req); // no draft check
      return webNotFound();
    }

    // The release's web page (its html_url, which publish-release prints): a bare list of the
    // download links, with the same draft visibility as the downloads.
    const page = /^\/([^/]+)\/([^/]+)\/releases\/tag\/([^/]+)$/.exec(path);
    if (page) {
      const perm = webPermOf(caller);
      if (method !== "GET" || perm === "none" || page[1] !== owner || page[2] !== repoName) return webNotFound();
      const tag = decodeURIComponent(page[3]!);
      const canWrite = perm === "write";
      const r = rows.find((x) => !x.isTag && x.tagName === tag && (canWrite || !x.isDraft));
      if (!r) return webNotFound();
      const links = r.attachments.map((a) => {
        const href = `${repoHtml()}/releases/download/${pathEscape(r.tagName)}/${pathEscape(a.name)}`;
        return `<li><a href="${Bun.escapeHTML(href)}">${Bun.escapeHTML(a.name)}</a></li>`;
      });
      const title = Bun.escapeHTML(`${r.title || r.tagName}${r.isDraft ? " (draft)" : ""}`);
      const html = `<!doctype html>\n<title>${title}</title>\n<h1>${title}</h1>\n<ul>\n${links.join("\n")}\n</ul>\n`;
      return new Response(html, { headers: { "content-type": "text/html; charset=utf-8" } });
    }

    if (!path.startsWith("/api/v1/")) return webNotFound();
    const api = path.slice(7);

    if (method === "GET" && api === "/version") return json(200, { version });
    // The token's own user (routers/api/v1/user/user.go GetAuthenticatedUser): needs a token and,
    // for a personal token, read:user scope; the Actions token has no scopes and is id -2.
    if (method === "GET" && api === "/user") {
      if (!caller.spec) return json(401, { message: "token is required" });
      if (!caller.spec.actions && !caller.spec.userScope) return json(403, { message: "token does not have at least one of required scope(s): [read:user]" });
      return json(200, toUser(caller.spec.user));
    }
    if (method === "GET" && api === "/settings/api")
      return json(200, { max_response_items: maxItems, default_paging_num: defaultPaging, default_git_trees_per_page: 1000, default_max_blob_size: 10485760 });
    if (method === "GET" && api === "/settings/attachment")
      return json(200, { enabled: true, allowed_types: ".cpuprofile,.csv,.dmp,.docx,.fodg,.fodp,.fods,.fodt,.gif,.gz,.jpeg,.jpg,.json,.jsonc,.log,.md,.mov,.mp4,.odf,.odg,.odp,.ods,.odt,.patch,.pdf,.png,.pptx,.svg,.tgz,.txt,.webm,.xls,.xlsx,.zip", max_size: 2048, max_files: 5 });

    const rm = /^\/repos\/([^/]+)\/([^/]+)(\/.*)?$/.exec(api);
    if (!rm) return notFound();
    const perm = permOf(caller);
    if (rm[1]!.toLowerCase() !== owner.toLowerCase() || rm[2]!.toLowerCase() !== repoName.toLowerCase() || perm === "none") return notFound();
    const sub = rm[3] ?? "";
    if (sub === "/actions/runners" || sub.startsWith("/actions/runners/")) return runnerRoutes(method, sub.slice("/actions/runners".length), url, b, caller, perm);
    const isWrite = method !== "GET";
    const requireWriter = () => {
      if (!caller.spec) fail(apiError(401, "token is required"));
      // tokenRequiresScopes runs per route, apart from the user's permission (§15a).
      if ((caller.spec!.scope ?? "write") !== "write") {
        fail(apiError(403, "token does not have at least one of required scope(s), required=[write:repository], token scope=read:repository"));
      }
      if (perm !== "write") fail(apiError(403, "user should have a permission to write to a repo"));
    };
    if (isWrite && (sub.startsWith("/releases") || sub.startsWith("/tags"))) requireWriter();

    // Quota: checked before the handler (and the upload) on POST/PATCH of releases, assets, tags (§13).
    const q = takeFault(req, path, "quota");
    if (q) {
      const login = caller.spec?.user ?? owner;
      return json(413, { message: "quota exceeded", user_id: userId(login), username: login });
    }

    if (sub === "") {
      if (method === "GET") return json(200, toRepo(perm));
      return notFound();
    }

    // --- releases ---
    if (sub === "/releases") {
      if (method === "GET") return listReleases(req, url, perm === "write");
      if (method === "POST") return createRelease(req, b, caller);
      return notFound();
    }
    // ---- the lying switch (answerFor): a release lookup answered with another release ----------
    const lie = lies.get(sub === "/releases/latest" ? "latest" : decodeURIComponent(/^\/releases\/tags\/([^/]+)$/.exec(sub)?.[1] ?? "\0"));
    if (lie !== undefined && method === "GET") {
      const r = findRow(lie);
      return r && !r.isTag ? json(200, toRelease(r, req)) : notFound();
    }
    if (sub === "/releases/latest" && method === "GET") {
      const r = latestRow();
      return r ? json(200, toRelease(r, req)) : notFound();
    }
    let m = /^\/releases\/tags\/([^/]+)$/.exec(sub);
    if (m) {
      const tag = decodeURIComponent(m[1]!);
      const r = findRow(tag);
      if (method === "GET") {
        if (!r || r.isTag) return notFound();
        if (r.isDraft) {
          const visible = draftTagLookup === "all" || (draftTagLookup === "writers" && perm === "write" && !!caller.spec);
          if (!visible) return notFound();
        }
        return json(200, toRelease(r, req));
      }
      if (method === "DELETE") {
        if (!r || r.isTag) return notFound();
        await deleteReleaseKeepTag(r);
        return new Response(null, { status: 204 });
      }
      return notFound();
    }
    m = /^\/releases\/(\d+)$/.exec(sub);
    if (m) {
      const r = rows.find((x) => x.id === Number(m![1]));
      if (method === "GET") return !r || r.isTag ? notFound() : json(200, toRelease(r, req)); // no draft check (§6)
      if (method === "PATCH") return editRelease(r, req, b, caller);
      if (method === "DELETE") {
        if (!r || r.isTag) return notFound();
        await deleteReleaseKeepTag(r);
        return new Response(null, { status: 204 });
      }
      return notFound();
    }
    m = /^\/releases\/(\d+)\/assets$/.exec(sub);
    if (m) {
      const r = rows.find((x) => x.id === Number(m![1]));
      if (!r) return notFound();
      if (method === "GET") return json(200, releaseAtts(r)); // all, unpaginated, no draft check
      if (method === "POST") return uploadAsset(r, url, b);
      return notFound();
    }
    m = /^\/releases\/(\d+)\/assets\/(\d+)$/.exec(sub);
    if (m) {
      const r = rows.find((x) => x.id === Number(m![1]));
      const a = r?.attachments.find((x) => x.id === Number(m![2]));
      if (!r || !a) return notFound();
      if (method === "GET") return json(200, toAttachment(a, attUrlSingle(a)));
      if (method === "PATCH") {
        const form = await readJson(b, { name: "string", browser_download_url: "string" });
        if (form.name) a.name = String(form.name); // no uniqueness check (§10)
        let echoed = a.externalUrl;
        if (form.browser_download_url) {
          if (!a.externalUrl) return apiError(400, "existing attachment is not external");
          echoed = String(form.browser_download_url); // echoed but not persisted (§10, apparent bug)
        }
        return json(201, toAttachment(a, echoed || attUrlSingle(a)));
      }
      if (method === "DELETE") {
        r.attachments = r.attachments.filter((x) => x !== a);
        await removeAttachmentFiles([a]);
        return new Response(null, { status: 204 });
      }
      return notFound();
    }

    // --- commits: routers/api/v1/repo/commits.go GetSingleCommit (a sha or a ref; 404 through
    // NotFoundOrServerError when git has no such object) ---
    m = /^\/git\/commits\/([^/]+)$/.exec(sub);
    if (m && method === "GET") {
      const sha = resolveCommit(decodeURIComponent(m[1]!));
      return sha ? json(200, toCommit(sha)) : notFound([`object does not exist [id: ${decodeURIComponent(m[1]!)}, rel_path: ]`]);
    }

    // --- tags ---
    if (sub === "/tags") {
      if (method === "GET") return listTags(url);
      if (method === "POST") return createTag(b, caller);
      return notFound();
    }
    m = /^\/tags\/(.+)$/.exec(sub); // wildcard route: `/` allowed
    if (m) {
      const tag = decodeURIComponent(m[1]!);
      if (method === "GET") {
        const t = gitTags.get(tag);
        return t ? json(200, toTag(t)) : notFound([`tag does not exist [name: ${tag}]`]);
      }
      if (method === "DELETE") {
        const r = findRow(tag);
        if (!r) return notFound();
        if (!r.isTag) return apiError(409, "a tag attached to a release cannot be deleted directly");
        if (!mayControlTag(r.tagName, caller.spec!.user)) return apiError(422, "user not allowed to delete protected tag");
        gitTags.delete(r.tagName); // a ghost row has no git tag: "not found" tolerated
        rows.splice(rows.indexOf(r), 1);
        return new Response(null, { status: 204 });
      }
      return notFound();
    }
    return notFound();
  }

  function latestRow(): Row | undefined {
    return orderRows(rows.filter((r) => !r.isDraft && !r.isPrerelease && !r.isTag))[0];
  }
  function orderRows(list: Row[]) {
    return [...list].sort((a, b) => b.createdUnix - a.createdUnix || b.id - a.id);
  }
  function paging(url: URL) {
    const page = Math.max(1, Number.parseInt(url.searchParams.get("page") ?? "", 10) || 0);
    let limit = Number.parseInt(url.searchParams.get("limit") ?? "", 10) || 0;
    if (limit <= 0) limit = defaultPaging;
    if (limit > maxItems) limit = maxItems; // silently clamped (§6)
    return { page, limit };
  }
  /** routers/api/v1/utils SetLinkHeader + SetTotalCountHeader, with modules/paginator semantics. */
  function pageHeaders(url: URL, total: number, pageSize: number, requestedPage: number): Record<string, string> {
    const totalPages = total === 0 ? 1 : Math.ceil(total / pageSize);
    const cur = Math.min(Math.max(1, requestedPage), totalPages);
    const hasNext = total > cur * pageSize;
    const isLast = total === 0 ? true : total > (cur - 1) * pageSize && !hasNext;
    const link = (p: number, rel: string) => {
      const qs = new URLSearchParams(url.searchParams);
      qs.set("page", String(p));
      const sorted = new URLSearchParams([...qs.entries()].sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0)));
      return `<${base}${url.pathname.slice(1)}?${sorted.toString()}>; rel="${rel}"`;
    };
    const links: string[] = [];
    if (hasNext) links.push(link(cur + 1, "next"));
    if (!isLast) links.push(link(totalPages, "last"));
    if (cur > 1) links.push(link(cur - 1, "prev"));
    if (cur !== 1) links.push(link(1, "first"));
    const h: Record<string, string> = { "x-total-count": String(total), "access-control-expose-headers": "X-Total-Count" };
    if (links.length) {
      h.link = links.join(",");
      h["access-control-expose-headers"] = "Link, X-Total-Count";
    }
    return h;
  }
  const optBool = (v: string | null): boolean | undefined => {
    if (v === null || v === "") return undefined;
    const s = v.toLowerCase();
    if (["1", "t", "true"].includes(s)) return true;
    if (["0", "f", "false"].includes(s)) return false;
    return undefined;
  };
  function listReleases(req: Request, url: URL, writer: boolean): Response {
    const draft = optBool(url.searchParams.get("draft"));
    const pre = optBool(url.searchParams.get("pre-release"));
    const q = (url.searchParams.get("q") ?? "").toLowerCase();
    let list = rows.filter((r) => !r.isTag && (writer || !r.isDraft));
    if (draft !== undefined) list = list.filter((r) => r.isDraft === draft);
    if (pre !== undefined) list = list.filter((r) => r.isPrerelease === pre);
    if (q) list = list.filter((r) => [r.tagName, r.title, r.note].some((s) => s.toLowerCase().includes(q)));
    list = orderRows(list);
    const { page, limit } = paging(url);
    const slice = list.slice((page - 1) * limit, page * limit);
    return json(200, slice.map((r) => toRelease(r, req)), pageHeaders(url, list.length, limit, page));
  }
  function listTags(url: URL): Response {
    const all = [...gitTags.values()].sort((a, b) => b.createdUnix - a.createdUnix || (a.name < b.name ? 1 : -1));
    const { page, limit } = paging(url);
    return json(200, all.slice((page - 1) * limit, page * limit).map(toTag), pageHeaders(url, all.length, limit, page));
  }

  const RELEASE_FIELDS: Record<string, FieldType> = {
    tag_name: "string",
    target_commitish: "string",
    name: "string",
    body: "string",
    draft: "boolean",
    prerelease: "boolean",
    hide_archive_links: "boolean",
  };

  async function createRelease(req: Request, b: BodyCtx, caller: Caller): Promise<Response> {
    const form = await readJson(b, RELEASE_FIELDS, ["tag_name"]);
    if (isEmptyRepo()) return apiError(422, "repo is empty");
    const tagName = String(form.tag_name);
    const existing = findRow(tagName);
    const publisher = caller.spec!.user;
    if (!existing) {
      const r: Row = {
        id: 0,
        tagName,
        target: (form.target_commitish as string) || defaultBranch,
        title: cutTitle((form.name as string) ?? ""),
        note: (form.body as string) ?? "",
        isDraft: !!form.draft,
        isPrerelease: !!form.prerelease,
        isTag: false,
        hideArchiveLinks: !!form.hide_archive_links,
        sha1: "",
        createdUnix: now(),
        publisher,
        attachments: [],
      };
      ensureGitTag(
        r,
        () => fail(atLeast(9) ? apiError(404, `target "${r.target}" not found: object does not exist`) : apiError(500, "CreateRelease")),
        () => fail(apiError(422, `release tag name is protected [tag_name: ${tagName}]`)),
        () => fail(apiError(500, "CreateRelease")),
      );
      r.id = nextReleaseId++;
      rows.push(r);
      return json(201, toRelease(r, req));
    }
    if (!existing.isTag) return apiError(409, atLeast(12) ? "Release has no Tag" : "Release is has no Tag");
    // Convert a bare-tag row (§4): Target = target_commitish as given (may be empty).
    const r: Row = {
      ...existing,
      title: cutTitle((form.name as string) ?? ""),
      note: (form.body as string) ?? "",
      isDraft: !!form.draft,
      isPrerelease: !!form.prerelease,
      hideArchiveLinks: !!form.hide_archive_links,
      publisher,
      isTag: false,
      target: (form.target_commitish as string) ?? "",
    };
    const updateFailed = () => fail(apiError(500, "UpdateRelease"));
    ensureGitTag(r, updateFailed, updateFailed, updateFailed);
    Object.assign(existing, r);
    return json(201, toRelease(existing, req));
  }

  async function editRelease(target: Row | undefined, req: Request, b: BodyCtx, caller: Caller): Promise<Response> {
    const form = await readJson(b, RELEASE_FIELDS);
    if (!target || target.isTag) return notFound();
    const r: Row = { ...target };
    // String fields change only when non-empty (§5).
    if (form.tag_name) r.tagName = String(form.tag_name);
    // Another row holding that tag: the unique index (repo_id, tag_name) fails the update, 500 (§15a).
    if (rows.some((x) => x !== target && x.tagName === r.tagName)) return apiError(500, "UpdateRelease");
    if (form.target_commitish) r.target = String(form.target_commitish);
    if (form.name) r.title = cutTitle(String(form.name));
    if (form.body) r.note = String(form.body);
    if (typeof form.draft === "boolean") r.isDraft = form.draft;
    if (typeof form.prerelease === "boolean") r.isPrerelease = form.prerelease;
    if (typeof form.hide_archive_links === "boolean") r.hideArchiveLinks = form.hide_archive_links;
    // Publishing creates the tag now from the stored target, for the draft's creator (r.publisher,
    // not `caller`); a protected tag or a name git refuses is a 500 here (§5, §15a).
    void caller;
    const updateFailed = () => fail(apiError(500, "UpdateRelease"));
    ensureGitTag(r, updateFailed, updateFailed, updateFailed);
    Object.assign(target, r);
    return json(200, toRelease(target, req));
  }

  async function createTag(b: BodyCtx, caller: Caller): Promise<Response> {
    const form = await readJson(b, { tag_name: "string", target: "string", message: "string" }, ["tag_name"]);
    const tagName = String(form.tag_name);
    const target = (form.target as string) || defaultBranch;
    const sha = resolveCommit(target);
    if (!sha) return apiError(404, `target not found: object does not exist [id: ${target}, rel_path: ]`);
    if (findRow(tagName) || gitTags.has(tagName)) return apiError(409, `tag already exists [name: ${tagName}]`);
    if (!mayControlTag(tagName, caller.spec!.user)) return apiError(422, "user not allowed to create protected tag");
    const message = (form.message as string) ?? "";
    const t: GitTag = {
      name: tagName,
      sha,
      objectId: message ? randomHex(40) : sha,
      message: message || `commit ${sha.slice(0, 10)}\n`,
      createdUnix: now(),
    };
    gitTags.set(tagName, t);
    rows.push({
      id: nextReleaseId++,
      tagName,
      target: "",
      title: tagName,
      note: message,
      isDraft: false,
      isPrerelease: false,
      isTag: true,
      hideArchiveLinks: false,
      sha1: sha,
      createdUnix: now(),
      publisher: caller.spec!.user,
      attachments: [],
    });
    return json(201, toTag(t));
  }

  // ---- Actions runners (Forgejo v15.0+): forgejo-ephemeral-runners.md §1 and §2 ---------------
  // A self-contained block: the registration endpoints at repository level, and what a runner
  // does with a registration (connect, fetch a task, finish it) as far as a test can model the
  // runner protocol without speaking it.

  interface RunnerRow {
    id: number;
    uuid: string;
    token: string;
    name: string;
    ephemeral: boolean;
    version: string;
    labels: string[];
    tasks: number;
    running: boolean;
    deleted: boolean;
  }
  const runnerRows: RunnerRow[] = [];
  let nextRunnerId = 5; // not 1: an id mixed up with a count fails
  const runnerStats = { calls: 0, inFlight: 0, peakInFlight: 0 };
  const runnerView = (r: RunnerRow): RunnerRecordView => ({
    id: r.id,
    uuid: r.uuid,
    name: r.name,
    ephemeral: r.ephemeral,
    status: r.running ? "active" : r.version ? "idle" : "offline",
    version: r.version,
    labels: [...r.labels],
    tasks: r.tasks,
  });
  /** modules/structs/repo_actions.go ActionRunner. */
  const toActionRunner = (r: RunnerRow) => {
    const v = runnerView(r);
    const repoId = 1;
    return { id: v.id, uuid: v.uuid, owner_id: 0, repo_id: repoId, name: v.name, status: v.status, version: v.version, labels: v.labels, description: "", ephemeral: v.ephemeral };
  };
  /** The interceptor (routers/api/actions/runner/interceptor.go): a deleted runner's uuid is rewritten, so it never authenticates. */
  const runnerByCredential = (uuid: string, token: string) => runnerRows.find((r) => !r.deleted && r.uuid === uuid && r.token === token);
  /** models/actions/runner.go DeleteRunner: uuid rewritten to ffffffff-…, row soft-deleted. */
  const deleteRunnerRow = (r: RunnerRow) => {
    r.deleted = true;
    r.uuid = "ffffffff-ffff-ffff-ffff-ffffffffffff";
  };

  async function runnerRoutes(method: string, rest: string, url: URL, b: BodyCtx, caller: Caller, perm: Perm): Promise<Response> {
    // v14 has only /registration-token and /jobs here (§1.3): the rest is 404.
    if (!atLeast(15)) return notFound();
    if (!caller.spec) return apiError(401, "token is required");
    // tokenRequiresScopes: write for POST/DELETE, read otherwise (§1.1).
    if (method !== "GET" && (caller.spec.scope ?? "write") !== "write") {
      return apiError(403, "token does not have at least one of required scope(s), required=[write:repository], token scope=read:repository");
    }
    // reqOwner(unit.TypeActions): the unit first (404), then ownership (403), §1.1.
    if (!actionsEnabled) return notFound();
    if (caller.spec.user.toLowerCase() !== owner.toLowerCase() || perm !== "write") return apiError(403, "user should be the owner of the repo");
    const live = () => runnerRows.filter((r) => !r.deleted);
    if (rest === "" && method === "GET") {
      const { page, limit } = paging(url);
      const all = live();
      return json(200, all.slice((page - 1) * limit, page * limit).map(toActionRunner), pageHeaders(url, all.length, limit, page));
    }
    if (rest === "" && method === "POST") {
      const body = await readJson(b, { name: "string", description: "string", ephemeral: "boolean" }, ["name"]);
      const row: RunnerRow = {
        id: nextRunnerId++,
        uuid: crypto.randomUUID(),
        token: randomHex(40),
        name: String(body.name),
        ephemeral: body.ephemeral === true,
        version: "",
        labels: [],
        tasks: 0,
        running: false,
        deleted: false,
      };
      runnerRows.push(row);
      return json(201, { id: row.id, uuid: row.uuid, token: row.token });
    }
    const m = /^\/(\d+)$/.exec(rest);
    const row = m ? live().find((r) => r.id === Number(m[1])) : undefined;
    if (m && method === "GET") return row ? json(200, toActionRunner(row)) : notFound();
    if (m && method === "DELETE") {
      if (!row) return notFound();
      deleteRunnerRow(row);
      return new Response(null, { status: 204 });
    }
    return notFound();
  }

  const runnerControls: RunnerControls = {
    list: () => runnerRows.filter((r) => !r.deleted).map(runnerView),
    all: () => runnerRows.map((r) => ({ ...runnerView(r), deleted: r.deleted })),
    connect(uuid, token, labels = []) {
      const r = runnerByCredential(uuid, token);
      if (!r) return false;
      r.version = "v12.10.1"; // Declare overwrites version and labels (runner.go lines 112-135)
      r.labels = [...labels];
      return true;
    },
    fetchTask(uuid, token) {
      const r = runnerByCredential(uuid, token);
      // services/actions/task.go PickTask: an ephemeral runner with any task row gets none.
      if (!r || (r.ephemeral && r.tasks > 0)) return false;
      r.tasks++;
      r.running = true;
      if (!r.version) r.version = "v12.10.1";
      return true;
    },
    finishTask(uuid, token) {
      const r = runnerByCredential(uuid, token);
      if (!r || !r.running) return false;
      r.running = false;
      // UpdateTask with a final result deletes an ephemeral runner in the same RPC (§2).
      if (r.ephemeral) deleteRunnerRow(r);
      return true;
    },
    setHasPullRequests(open) {
      hasPullRequests = open;
    },
    setActionsEnabled(on) {
      actionsEnabled = on;
    },
    stats: runnerStats,
  };

  // ---- the server ----------------------------------------------------------------------------

  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: opts.port ?? 0,
    maxRequestBodySize: 8 * 1024 ** 3,
    idleTimeout: 0,
    fetch: untilStopped(async (req: Request): Promise<Response> => {
      const url = new URL(req.url);
      const rec: RequestRecord = {
        method: req.method,
        path: url.pathname,
        query: url.search,
        status: 0,
        bytesIn: 0,
        auth: req.headers.has("authorization"),
      };
      requests.push(rec);
      const b: BodyCtx = { req, bytesIn: 0, stalled: false };
      const runnerCall = url.pathname.includes("/actions/runners");
      if (runnerCall) {
        runnerStats.calls++;
        runnerStats.peakInFlight = Math.max(runnerStats.peakInFlight, ++runnerStats.inFlight);
      }
      let counted = runnerCall;
      const done = (res: Response) => {
        if (counted) {
          counted = false;
          runnerStats.inFlight--;
        }
        rec.status = res.status;
        rec.bytesIn = b.bytesIn;
        opts.onRequest?.(rec);
        return res;
      };
      const kill = () => {
        if (counted) {
          counted = false;
          runnerStats.inFlight--;
        }
        return killResponse();
      };
      try {
        const f = takeFault(req, url.pathname, "front");
        let afterWork: Extract<Fault, { kind: "status-after-work" }> | undefined;
        let cut: Extract<Fault, { kind: "cut-response" }> | undefined;
        if (f) {
          switch (f.kind) {
            case "close":
              return kill();
            case "proxy413":
              if (req.headers.has("content-length")) return done(proxyHtml(413));
              b.fault = f; // chunked: 413 once more than maxBody bytes have come in
              break;
            case "redirect": {
              // A bare origin means "the same path on another host"; a full URL is used as is.
              const loc = new URL(f.location);
              const target = loc.pathname === "/" ? `${loc.origin}${url.pathname}${url.search}` : f.location;
              return done(new Response(null, { status: f.status ?? 307, headers: { location: target } }));
            }
            case "status": {
              // A proxy/upstream error after the request went through: drain the body, do no work.
              for await (const _ of bodyChunks(b));
              const headers: Record<string, string> = f.retryAfter !== undefined ? { "retry-after": String(f.retryAfter) } : {};
              if (f.html) return done(proxyHtml(f.status, headers));
              return done(json(f.status, { message: f.status === 500 ? "" : PROXY_HTML[f.status] ?? "error", url: swaggerUrl() }, headers));
            }
            case "status-after-work":
              afterWork = f;
              break;
            case "cut-response":
              cut = f;
              break;
            case "echo-token": {
              for await (const _ of bodyChunks(b));
              const leaked = req.headers.get("authorization") ?? "";
              return done(json(f.status, { message: `refused credentials "${leaked}"`, url: swaggerUrl() }));
            }
            case "reset": {
              const hasBody = req.body !== null && (req.headers.has("transfer-encoding") || Number(req.headers.get("content-length") ?? 0) > 0);
              if (!hasBody) return kill(); // nothing to read: drop the connection before any work
              b.fault = f;
              break;
            }
            case "stall":
              b.fault = f;
              break;
          }
        }
        if (url.pathname.startsWith("//")) return done(apiError(401, "token is required")); // `…//api/v1` (§1)
        const caller = authenticate(req);
        let res = await handle(req, url, b, caller);
        if (b.fault?.kind === "stall" && !b.stalled) {
          b.stalled = true;
          await pause(b.fault.ms); // no body was read: delay the response instead
        }
        if (b.fault?.kind === "reset") throw new ConnectionKill(); // body left unread (early error): kill anyway
        if (afterWork) res = afterWork.html === false ? json(afterWork.status, { message: "", url: swaggerUrl() }) : proxyHtml(afterWork.status);
        if (cut) {
          done(res);
          rec.status = 0;
          return await cutResponse(res, cut.afterBytes);
        }
        return done(res);
      } catch (e) {
        if (e instanceof HttpError) return done(e.response);
        if (e instanceof OverProxyLimit) return done(proxyHtml(413));
        if (e instanceof ConnectionKill || e instanceof BrokenBody) {
          rec.bytesIn = b.bytesIn;
          rec.status = 0;
          return kill();
        }
        if (stopping.signal.aborted) {
          // The test stopped the server mid-request: its client is gone, nothing is answered.
          rec.status = 0;
          return killResponse();
        }
        internalErrors.push(`internal error on ${req.method} ${url.pathname}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
        return done(apiError(500, String(e)));
      }
    }),
  });

  base = opts.appUrl ?? `http://127.0.0.1:${server.port}/`;
  const url = `http://127.0.0.1:${server.port}`;

  return {
    url,
    apiUrl: `${url}/api/v1`,
    options: {
      version,
      owner,
      repo: repoName,
      private: !!opts.private,
      ownerVisibility,
      appUrl: base,
      defaultBranch,
      branches,
      commits: [...commits],
      tokens,
      protectedTags: opts.protectedTags ?? [],
      draftTagLookup,
      maxResponseItems: maxItems,
      defaultPagingNum: defaultPaging,
      dataDir,
    },
    requests,
    runners: runnerControls,
    addFault(f: Fault) {
      faults.push({ ...f, left: f.times ?? 1 });
    },
    clearFaults() {
      faults = [];
    },
    answerFor(asked: string, served: string | null) {
      if (served === null) lies.delete(asked);
      else lies.set(asked, served);
    },
    pushTag(name: string, sha: string) {
      sha = sha.toLowerCase();
      commits.add(sha);
      gitTags.set(name, { name, sha, objectId: sha, message: `commit ${sha.slice(0, 10)}\n`, createdUnix: now() });
      const r = findRow(name);
      if (!r) {
        rows.push({
          id: nextReleaseId++,
          tagName: name,
          target: "",
          title: name,
          note: "",
          isDraft: false,
          isPrerelease: false,
          isTag: true,
          hideArchiveLinks: false,
          sha1: sha,
          createdUnix: now(),
          publisher: owner,
          attachments: [],
        });
      } else {
        r.sha1 = sha;
        r.createdUnix = now();
        r.isDraft = false; // auto-publish (services/repository/push.go)
      }
    },
    pushDeleteTag(name: string) {
      gitTags.delete(name);
      const r = findRow(name);
      if (!r) return;
      if (r.isTag) rows.splice(rows.indexOf(r), 1);
      else {
        r.isDraft = true;
        r.sha1 = "";
      }
    },
    setBranch(name: string, sha: string) {
      branches[name] = sha.toLowerCase();
      commits.add(sha.toLowerCase());
    },
    state() {
      return {
        releases: rows.map((r) => ({
          id: r.id,
          tagName: r.tagName,
          target: r.target,
          title: r.title,
          note: r.note,
          draft: r.isDraft,
          prerelease: r.isPrerelease,
          isTag: r.isTag,
          sha1: r.sha1,
          hideArchiveLinks: r.hideArchiveLinks,
          createdUnix: r.createdUnix,
          publisher: r.publisher,
          assets: r.attachments.map((a) => ({
            id: a.id,
            uuid: a.uuid,
            name: a.name,
            size: a.size,
            sha256: a.sha256,
            downloadCount: a.downloadCount,
            type: a.externalUrl ? ("external" as const) : ("attachment" as const),
            externalUrl: a.externalUrl,
            path: a.path,
          })),
        })),
        tags: Object.fromEntries([...gitTags.values()].map((t) => [t.name, t.sha])),
      };
    },
    takeInternalErrors() {
      return internalErrors.splice(0);
    },
    async stop() {
      stopping.abort();
      await server.stop(true);
      await Promise.allSettled([...inFlight]);
      if (ownDataDir && existsSync(dataDir)) rmSync(dataDir, { recursive: true, force: true });
      const errors = internalErrors.splice(0);
      if (errors.length) {
        throw new Error(`forgejo fixture: ${errors.length} internal error(s), a bug of the test server (a test that provokes one on purpose takes it with takeInternalErrors()):\n${errors.join("\n")}`);
      }
    },
  };
}

/** Another origin, for redirect-leak tests: records every request (headers lower-cased) and answers 200 `{}`. */
export async function startCaptureServer(): Promise<{
  url: string;
  seen: { method: string; path: string; headers: Record<string, string> }[];
  stop(): Promise<void>;
}> {
  const seen: { method: string; path: string; headers: Record<string, string> }[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    maxRequestBodySize: 8 * 1024 ** 3,
    async fetch(req) {
      const u = new URL(req.url);
      const headers: Record<string, string> = {};
      req.headers.forEach((v, k) => (headers[k.toLowerCase()] = v));
      seen.push({ method: req.method, path: u.pathname + u.search, headers });
      if (req.body) for await (const _ of req.body as unknown as AsyncIterable<Uint8Array>);
      return new Response("{}", { status: 200, headers: { "content-type": "application/json" } });
    },
  });
  return {
    url: `http://127.0.0.1:${server.port}`,
    seen,
    async stop() {
      await server.stop(true);
    },
  };
}
