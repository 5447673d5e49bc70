/**
 * The repository's releases API over fetch (forgejo-release-api.md): authentication, retries,
 * pagination, downloads, and errors that say what to fix.
 *
 * The token is sent only to the configured origin and never across a redirect: API calls refuse
 * redirects outright, downloads follow them by hand and drop the token when the origin changes.
 */
import { Failure, UsageError } from "../cli/errors.ts";
import type { Attachment, CreateReleaseOption, EditReleaseOption, Permission, Release, Tag } from "./types.ts";
import { FirstContactTimeout, NetworkError, backoffMs, explainNetworkError, isLoopback, retryableStatus, stallGuard, type HttpTuning } from "./http.ts";
import type { FileDigest } from "../build/hash.ts";
import { debug, say } from "../cli/log.ts";
import { SMALL_FILE_LIMIT } from "../build/manifest.ts";

/** The part of a Repository the publisher reads. */
export interface RepositoryAccess {
  full_name: string;
  permissions?: Permission;
  /** The repository's public web address, as the server names it (not the runner's registration address). */
  html_url?: string;
  private?: boolean;
  owner?: { login?: string; visibility?: "public" | "limited" | "private" };
}

/** Forgejo's Actions user: the id every Actions token (job token or runtime JWT) signs in as (models/user/user_system.go). */
export const ACTIONS_USER_ID = -2;

/** An HTTP error status from the server, with the fix in the message. */
export class HttpError extends Failure {
  constructor(
    message: string,
    readonly status: number,
    /** "json" when Forgejo itself answered; "html" usually means a reverse proxy did. */
    readonly bodyKind: "json" | "html" | "other",
    readonly serverMessage: string,
    /** The Retry-After header, for a caller that retries (uploads). */
    readonly retryAfter: string | null = null,
  ) {
    super(message);
  }
}

/** A whole API answer: status, headers and the body text, read inside the retried attempt. */
export interface Answer {
  status: number;
  ok: boolean;
  headers: Headers;
  text: string;
}

export interface ClientOptions {
  /** Server URL without a trailing slash, e.g. https://forge.example or https://host/forgejo. */
  server: string;
  owner: string;
  repo: string;
  token: string;
  tuning: HttpTuning;
}

interface CallOptions {
  json?: unknown;
  query?: Record<string, string | number | boolean>;
  /** Repeating the call does no harm twice: 500s are retried too. */
  idempotent: boolean;
  /** What the operator was doing, for the error line. */
  what: string;
}

export class ForgejoClient {
  readonly origin: string;
  readonly repoApi: string;
  /** Counters for the summary and for --json: API calls made, bytes sent and received. */
  readonly stats = { calls: 0, bytesUploaded: 0, bytesDownloaded: 0 };
  /** The server has answered at least once: from then on, network failures are retried. */
  answered = false;

  constructor(readonly options: ClientOptions) {
    this.origin = new URL(options.server).origin;
    this.repoApi = `${options.server}/api/v1/repos/${encodeURIComponent(options.owner)}/${encodeURIComponent(options.repo)}`;
  }

  get repoName(): string {
    return `${this.options.owner}/${this.options.repo}`;
  }

  authHeaders(): Record<string, string> {
    return this.options.token ? { authorization: `token ${this.options.token}` } : {};
  }

  /**
   * One API call with retries. Returns null for a 404 when `allow404`; throws HttpError for any
   * other failure status, NetworkError when the server cannot be reached.
   */
  async call<T>(method: string, path: string, options: CallOptions & { allow404: true }): Promise<T | null>;
  async call<T>(method: string, path: string, options: CallOptions & { allow404?: false }): Promise<T>;
  async call<T>(method: string, path: string, options: CallOptions & { allow404?: boolean }): Promise<T | null> {
    const answer = await this.send(method, path, options);
    if (answer.status === 404 && options.allow404) return null;
    if (!answer.ok) throw this.httpError(answer, method, path, options.what);
    return (answer.text ? ForgejoClient.json(answer, options.what) : null) as T;
  }

  /**
   * The JSON of a successful answer. Anything else (a proxy's sign-in page answered with 200)
   * is named as such; the parser's own text says nothing to the operator.
   */
  static json<T>(answer: Answer, what: string): T {
    try {
      return JSON.parse(answer.text) as T;
    } catch {
      const type = answer.headers.get("content-type") ?? "";
      const body = type.includes("html") ? "an HTML page" : `something else (${type || "no content type"})`;
      throw new Failure(`${what}: the server answered ${answer.status} with ${body}, not the API's JSON: is a proxy or a sign-in page in front of Forgejo's API?`);
    }
  }

  /** Pages through a list endpoint: 50 a page (Forgejo clamps larger limits), until no rel="next". */
  async *list<T>(path: string, query: Record<string, string | number | boolean>, what: string): AsyncGenerator<T> {
    for (let page = 1; ; page++) {
      const answer = await this.send("GET", path, { query: { ...query, page, limit: 50 }, idempotent: true, what });
      if (!answer.ok) throw this.httpError(answer, "GET", path, what);
      const items = ForgejoClient.json<T[]>(answer, what);
      yield* items;
      const link = answer.headers.get("link") ?? "";
      if (!/rel="next"/.test(link) || items.length === 0) return;
    }
  }

  /**
   * Sends one API request and reads its whole answer (API answers are small); a connection cut
   * while the body is read is a failed attempt like any other. Retries what a retry can fix, but
   * never on first contact: a server that has not answered once is down or wrong, and saying so
   * at once beats minutes of retries.
   */
  private async send(method: string, path: string, options: CallOptions): Promise<Answer> {
    const url = new URL(path.startsWith("/api/") ? `${this.options.server}${path}` : `${this.repoApi}${path}`);
    for (const [k, v] of Object.entries(options.query ?? {})) url.searchParams.set(k, String(v));
    const headers: Record<string, string> = { accept: "application/json", ...this.authHeaders() };
    let body: string | undefined;
    if (options.json !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(options.json);
    }
    const { tuning } = this.options;
    for (let attempt = 0; ; attempt++) {
      this.stats.calls++;
      const firstContact = !this.answered;
      const limit = firstContact ? tuning.connectMs : tuning.timeoutMs;
      let response: Response;
      let text: string;
      try {
        response = await fetch(url, { method, headers, body, redirect: "manual", signal: AbortSignal.timeout(limit) });
        this.answered = true;
        text = await response.text();
      } catch (error) {
        const timedOut = (error as Error)?.name === "TimeoutError";
        const reason = firstContact && timedOut ? new FirstContactTimeout(limit / 1000) : error;
        const failure = explainNetworkError(reason, options.what, this.origin, !firstContact);
        if (failure.transient && !firstContact && attempt < tuning.retries) {
          await this.pause(attempt + 1, failure.message);
          continue;
        }
        throw failure;
      }
      debug(`${method} ${url.pathname}${url.search} -> ${response.status}`);
      const answer: Answer = { status: response.status, ok: response.ok, headers: response.headers, text };
      if (response.status >= 300 && response.status < 400) {
        throw new HttpError(
          `${options.what}: ${this.origin} redirected to ${response.headers.get("location") ?? "elsewhere"} (${response.status}); give the final URL as --server (the token is never sent across a redirect)`,
          response.status,
          "other",
          "",
        );
      }
      if (retryableStatus(response.status, options.idempotent) && attempt < tuning.retries) {
        await this.pause(attempt + 1, `${options.what}: ${response.status}`, response.headers.get("retry-after"));
        continue;
      }
      return answer;
    }
  }

  /** Waits before another attempt; the line says what was being done and why it is repeated. */
  async pause(attempt: number, why: string, retryAfter?: string | null): Promise<void> {
    const wait = backoffMs(attempt, this.options.tuning.retryBaseMs, retryAfter);
    say(`retrying in ${(wait / 1000).toFixed(1)} s (${why}, attempt ${attempt} of ${this.options.tuning.retries})`);
    await Bun.sleep(wait);
  }

  /** Reads a whole answer; a cut-off body gives what arrived (for error messages only). */
  static async answerOf(response: Response): Promise<Answer> {
    const text = await response.text().catch(() => "");
    return { status: response.status, ok: response.ok, headers: response.headers, text };
  }

  /** Reads the error body (JSON from Forgejo, HTML from a proxy) and says what to fix. */
  httpError(answer: Answer, method: string, path: string, what: string): HttpError {
    const type = answer.headers.get("content-type") ?? "";
    const text = answer.text;
    const kind = type.includes("json") ? "json" : type.includes("html") ? "html" : "other";
    let serverMessage = "";
    if (kind === "json") {
      try {
        serverMessage = String((JSON.parse(text) as { message?: string }).message ?? "");
      } catch {
        serverMessage = "";
      }
    }
    const said = serverMessage ? ` ("${serverMessage}")` : "";
    const status = answer.status;
    let hint: string;
    if (status === 401) {
      hint = "the token is missing, expired or revoked; set FORGEJO_TOKEN or --token-file to a token with the write:repository scope";
    } else if (status === 403 && /scope/i.test(serverMessage)) {
      // A token's scopes are checked per route, apart from the user's access: a read-scoped
      // token of a write user reads `push: true` and is refused only here (§15a).
      hint = "the token lacks the write:repository scope (its user may write, the token may not); create a token with write:repository";
    } else if (status === 403) {
      hint = `the token may not do this; it needs the write:repository scope and write access to ${this.repoName}'s releases`;
    } else if (status === 404) {
      hint = `not found; check --repo ${this.repoName} and that the token can see that repository`;
    } else if (status === 413 && kind === "json") {
      hint = "the storage quota of the repository's owner is exhausted; delete old releases (see --keep-dev) or ask for a larger quota";
    } else if (status === 413) {
      hint = "a reverse proxy in front of Forgejo refused the body size (its own HTML error page); raise its limit, e.g. nginx client_max_body_size";
    } else if (kind === "html" && status >= 500) {
      hint = "a reverse proxy in front of Forgejo answered (HTML error page): check its timeouts and that Forgejo is up";
    } else {
      hint = `the server answered ${method} ${path} with ${status}`;
    }
    return new HttpError(`${what}: ${status}${said}: ${hint}`, status, kind, serverMessage, answer.headers.get("retry-after"));
  }

  /**
   * First contact: GET /api/v1/version. A --server that is not a Forgejo API root (the
   * repository's web page, or the API URL itself) is named here, before --repo is blamed for a
   * 404. Bad input (UsageError) when nothing there speaks the API.
   */
  async probe(): Promise<void> {
    const answer = await this.send("GET", "/api/v1/version", { idempotent: true, what: `contacting ${this.options.server}` });
    let version: unknown;
    try {
      version = (JSON.parse(answer.text) as { version?: unknown }).version;
    } catch {
      version = undefined;
    }
    if (answer.ok && typeof version === "string") return;
    // Any other refusal came from the API itself (401: a bad token): it is there, and says why.
    if (!answer.ok && answer.status !== 404) throw this.httpError(answer, "GET", "/api/v1/version", `contacting ${this.options.server}`);
    const server = this.options.server;
    const origin = new URL(server).origin;
    const guess = server !== origin ? ` did you mean --server ${origin}? (give a sub-path only when Forgejo itself is served under one)` : "";
    throw new UsageError(`--server ${server}: no Forgejo API at ${server}/api/v1 (${answer.status});${guess}`);
  }

  // --- the endpoints the publisher uses (forgejo-release-api.md §2) ---

  repository(): Promise<RepositoryAccess> {
    return this.call<RepositoryAccess>("GET", "", { idempotent: true, what: `reading ${this.repoName}` });
  }

  /**
   * Who the token signs in as (GET /api/v1/user): its user id, or null when the token may not
   * read its own user (a personal token without read:user scope answers 403; the Actions token
   * has no scopes and is always answered, as id -2).
   */
  async tokenUserId(): Promise<number | null> {
    const answer = await this.send("GET", "/api/v1/user", { idempotent: true, what: "asking who the token belongs to" });
    if (answer.status === 403) return null;
    if (!answer.ok) throw this.httpError(answer, "GET", "/api/v1/user", "asking who the token belongs to");
    return ForgejoClient.json<{ id: number }>(answer, "asking who the token belongs to").id;
  }

  /** The repository, or null when it does not exist or this caller may not see it (both 404). */
  findRepository(): Promise<RepositoryAccess | null> {
    return this.call<RepositoryAccess>("GET", "", { idempotent: true, allow404: true, what: `looking up ${this.repoName}` });
  }

  /** What Forgejo calls the latest release (GET /releases/latest); null if there is none. */
  latestRelease(): Promise<Release | null> {
    return this.call<Release>("GET", "/releases/latest", { idempotent: true, allow404: true, what: "looking up the latest release" });
  }

  /** The release for `tag`, drafts included for writers; null if there is none. */
  releaseByTag(tag: string): Promise<Release | null> {
    return this.call<Release>("GET", `/releases/tags/${encodeURIComponent(tag)}`, { idempotent: true, allow404: true, what: `looking up release ${tag}` });
  }

  /**
   * Finds the release for `tag`: the tag lookup first, then the list of drafts, because some
   * server versions hide drafts from the tag lookup. Tags compare case-insensitively, as Forgejo
   * stores them.
   */
  async findRelease(tag: string): Promise<Release | null> {
    const byTag = await this.releaseByTag(tag);
    if (byTag) return byTag;
    for await (const release of this.list<Release>("/releases", { draft: true }, `listing draft releases for ${tag}`)) {
      if (release.tag_name.toLowerCase() === tag.toLowerCase()) return release;
    }
    return null;
  }

  releases(query: Record<string, string | number | boolean> = {}): AsyncGenerator<Release> {
    return this.list<Release>("/releases", query, "listing releases");
  }

  /** Creates a release; null on 409 (one exists already, e.g. made by a concurrent run). */
  async createRelease(option: CreateReleaseOption): Promise<Release | null> {
    const what = `creating release ${option.tag_name}`;
    const answer = await this.send("POST", "/releases", { json: option, idempotent: false, what });
    if (answer.status === 409) return null;
    if (answer.status === 422) {
      const error = this.httpError(answer, "POST", "/releases", what);
      throw new HttpError(
        `${what}: 422${error.serverMessage ? ` ("${error.serverMessage}")` : ""}: the tag is protected and this token may not create it (the Actions token never can); push the tag first (git push origin ${option.target_commitish ?? "<commit>"}:refs/tags/${option.tag_name}) or publish with a personal token`,
        422,
        error.bodyKind,
        error.serverMessage,
      );
    }
    if (!answer.ok) throw this.httpError(answer, "POST", "/releases", what);
    return ForgejoClient.json<Release>(answer, what);
  }

  editRelease(id: number, option: EditReleaseOption, what: string): Promise<Release> {
    return this.call<Release>("PATCH", `/releases/${id}`, { json: option, idempotent: true, what });
  }

  async deleteRelease(id: number, what: string): Promise<void> {
    await this.call("DELETE", `/releases/${id}`, { idempotent: true, allow404: true, what });
  }

  assets(releaseId: number): Promise<Attachment[]> {
    return this.call<Attachment[]>("GET", `/releases/${releaseId}/assets`, { idempotent: true, what: "listing the release's assets" });
  }

  /** Renames an asset (Forgejo answers 201); null when it no longer exists. */
  renameAsset(releaseId: number, assetId: number, name: string): Promise<Attachment | null> {
    return this.call<Attachment>("PATCH", `/releases/${releaseId}/assets/${assetId}`, {
      json: { name }, idempotent: true, allow404: true, what: `renaming an asset to ${name}`,
    });
  }

  async deleteAsset(releaseId: number, assetId: number, name: string): Promise<void> {
    await this.call("DELETE", `/releases/${releaseId}/assets/${assetId}`, { idempotent: true, allow404: true, what: `deleting asset ${name}` });
  }

  tag(name: string): Promise<Tag | null> {
    return this.call<Tag>("GET", `/tags/${encodeURIComponent(name)}`, { idempotent: true, allow404: true, what: `looking up tag ${name}` });
  }

  /** Whether the server's repository has this commit (GET /git/commits/{sha}; 404 when git has no such object). */
  async hasCommit(sha: string): Promise<boolean> {
    const found = await this.call<{ sha: string }>("GET", `/git/commits/${sha}`, {
      query: { stat: false, verification: false, files: false },
      idempotent: true,
      allow404: true,
      what: `looking up commit ${sha.slice(0, 12)}`,
    });
    return found !== null;
  }

  async deleteTag(name: string): Promise<void> {
    await this.call("DELETE", `/tags/${encodeURIComponent(name)}`, { idempotent: true, allow404: true, what: `deleting tag ${name}` });
  }

  /** Where an asset's bytes are: by uuid, unambiguous even while duplicate names exist. */
  assetUrl(asset: Attachment): string {
    return `${this.options.server}/attachments/${asset.uuid}`;
  }

  /**
   * Streams a download through the consumer `start()` returns, without holding it in memory.
   * Redirects (e.g. to object storage) are followed by hand, and only to https, to plain http on
   * loopback, or back to this server: never to another scheme (a `file:` URL would read this
   * machine's files) and never down to plain http elsewhere. The token goes only to this
   * server's origin. Fails on a stall, not on total time. A connection cut off or stalled once
   * the server has answered (as a 2 GB image's may be) is retried from the first byte, with a
   * fresh consumer: `start()` is called again. Returns the number of bytes received.
   */
  async download(url: string, what: string, start: () => Promise<(chunk: Uint8Array) => void> | ((chunk: Uint8Array) => void)): Promise<number> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.downloadOnce(url, what, await start());
      } catch (error) {
        const again = error instanceof NetworkError && error.transient && this.answered && attempt < this.options.tuning.retries;
        if (!again) throw error;
        await this.pause(attempt + 1, error.message);
      }
    }
  }

  private async downloadOnce(url: string, what: string, onChunk: (chunk: Uint8Array) => void): Promise<number> {
    let target = this.followable(url, what);
    for (let hop = 0; hop < 5; hop++) {
      const guard = stallGuard(this.options.tuning.stallMs);
      const headers = target.origin === this.origin ? this.authHeaders() : {};
      this.stats.calls++;
      try {
        const response = await fetch(target, { headers, redirect: "manual", signal: guard.signal });
        if (response.status >= 300 && response.status < 400 && response.headers.get("location")) {
          await response.body?.cancel();
          target = this.followable(new URL(response.headers.get("location")!, target).href, what);
          continue;
        }
        if (!response.ok) throw this.httpError(await ForgejoClient.answerOf(response), "GET", target.pathname, what);
        let received = 0;
        for await (const chunk of response.body ?? []) {
          guard.touch();
          received += chunk.byteLength;
          onChunk(chunk);
        }
        this.stats.bytesDownloaded += received;
        return received;
      } catch (error) {
        if (error instanceof Failure) throw error;
        throw explainNetworkError(guard.signal.aborted ? guard.signal.reason : error, what, target.origin, this.answered && target.origin === this.origin);
      } finally {
        guard.stop();
      }
    }
    throw new Failure(`${what}: more than 5 redirects`);
  }

  /** A URL a download may fetch (see download); a Failure naming it otherwise. */
  private followable(raw: string, what: string): URL {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      throw new Failure(`${what}: the server gave ${raw}, which is not a URL`);
    }
    const ok = url.protocol === "https:" || (url.protocol === "http:" && (isLoopback(url) || url.origin === this.origin));
    if (!ok) {
      throw new Failure(`${what}: refusing to fetch ${url.protocol}//${url.host}${url.pathname}: downloads go only to https:// (or plain http on loopback or to ${this.origin} itself)`);
    }
    return url;
  }

  /** Streams a download through SHA-256; nothing is kept. */
  async downloadDigest(url: string, what: string, onProgress?: (done: number) => void, maxBytes?: number): Promise<FileDigest> {
    let hasher = new Bun.CryptoHasher("sha256");
    let size = 0;
    await this.download(url, what, () => {
      hasher = new Bun.CryptoHasher("sha256");
      size = 0;
      return (chunk) => {
        if (maxBytes !== undefined && size + chunk.byteLength > maxBytes) throw new Failure(`${what}: the server sent more than the ${maxBytes} bytes the manifest says; the download was stopped there`);
        hasher.update(chunk);
        size += chunk.byteLength;
        onProgress?.(size);
      };
    });
    return { size, sha256: hasher.digest("hex") };
  }

  /** Downloads one of the small release files whole, refusing more than SMALL_FILE_LIMIT bytes. */
  async downloadSmall(url: string, what: string): Promise<Uint8Array> {
    let chunks: Uint8Array[] = [];
    let size = 0;
    await this.download(url, what, () => {
      chunks = [];
      size = 0;
      return (chunk) => {
        size += chunk.byteLength;
        if (size > SMALL_FILE_LIMIT) throw new Failure(`${what}: more than ${SMALL_FILE_LIMIT} bytes: not what it claims to be`);
        chunks.push(chunk);
      };
    });
    return Buffer.concat(chunks);
  }
}
