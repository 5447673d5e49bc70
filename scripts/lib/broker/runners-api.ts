/**
 * Forgejo's runner registration API (v15.0+; forgejo-ephemeral-runners.md §1), over the
 * project's ForgejoClient: POST {P} registers, GET {P}/{id} reads, DELETE {P}/{id} removes,
 * GET {P} lists (a bare array, paginated). {P} is the repository's, the organization's or the
 * token user's `.../actions/runners`. At most `maxCalls` calls run at once, however many machines
 * boot together: a boot storm must not become a storm on Forgejo.
 *
 * The client makes no retries of its own here (retries: 0): whether a failed registration may be
 * repeated is the minter's decision, not the HTTP layer's (a POST that timed out may have
 * registered a runner).
 */
import { ForgejoClient, HttpError } from "../forgejo/client.ts";
import { NetworkError } from "../forgejo/http.ts";
import type { Level } from "./config.ts";

/** POST's answer (RegisterRunnerResponse). */
export interface Registration {
  id: number;
  uuid: string;
  token: string;
}

/** The part of ActionRunner the broker reads. */
export interface RunnerView {
  id: number;
  name: string;
  /** "offline", "idle" or "active". */
  status: string;
  /** Empty until the runner has connected once (Declare). */
  version: string;
  ephemeral: boolean;
}

export interface RepositoryView {
  full_name: string;
  has_pull_requests: boolean;
  has_actions?: boolean;
}

/** A failure another attempt may fix: Forgejo down, restarting, or briefly overloaded. */
export function isTransient(error: unknown): boolean {
  if (error instanceof NetworkError) return error.transient;
  if (error instanceof HttpError) return error.status === 429 || error.status >= 500;
  return false;
}

export class RunnersApi {
  readonly stats = { calls: 0, inFlight: 0, peakInFlight: 0 };
  private readonly waiting: (() => void)[] = [];
  private readonly prefix: string;

  constructor(
    readonly client: ForgejoClient,
    level: Level,
    private readonly maxCalls: number,
  ) {
    const { owner } = client.options;
    this.prefix =
      level === "repository" ? "/actions/runners" // relative: the client's repository API
      : level === "organization" ? `/api/v1/orgs/${encodeURIComponent(owner)}/actions/runners`
      : "/api/v1/user/actions/runners";
  }

  /** Runs one call when fewer than maxCalls are running. */
  private async slot<T>(call: () => Promise<T>): Promise<T> {
    while (this.stats.inFlight >= this.maxCalls) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.stats.inFlight++;
    this.stats.calls++;
    this.stats.peakInFlight = Math.max(this.stats.peakInFlight, this.stats.inFlight);
    try {
      return await call();
    } finally {
      this.stats.inFlight--;
      this.waiting.shift()?.();
    }
  }

  /** GET /api/v1/version: "15.0.3+gitea-1.22.0" and the like. */
  version(): Promise<string> {
    return this.slot(async () => {
      const answer = await this.client.call<{ version?: unknown }>("GET", "/api/v1/version", { idempotent: true, what: "reading Forgejo's version" });
      if (typeof answer?.version !== "string") throw new NetworkError("reading Forgejo's version: the answer holds no version", "EPROTO", false);
      return answer.version;
    });
  }

  repository(): Promise<RepositoryView> {
    return this.slot(() => this.client.call<RepositoryView>("GET", "", { idempotent: true, what: `reading ${this.client.repoName}` }));
  }

  /** POST {P}; null when the endpoint is not there (Forgejo < 15, or Actions off: 404). */
  register(name: string, ephemeral: boolean): Promise<Registration | null> {
    return this.slot(() =>
      this.client.call<Registration>("POST", this.prefix, { json: { name, ephemeral }, idempotent: false, allow404: true, what: `registering runner ${name}` }),
    );
  }

  /** GET {P}/{id}; null once it is gone (an ephemeral runner is deleted when its task ends). */
  get(id: number): Promise<RunnerView | null> {
    return this.slot(() => this.client.call<RunnerView>("GET", `${this.prefix}/${id}`, { idempotent: true, allow404: true, what: `reading runner ${id}` }));
  }

  /** DELETE {P}/{id}; false when it was already gone. */
  remove(id: number): Promise<boolean> {
    return this.slot(async () => {
      try {
        await this.client.call<unknown>("DELETE", `${this.prefix}/${id}`, { idempotent: true, what: `deleting runner ${id}` });
        return true;
      } catch (error) {
        if (error instanceof HttpError && error.status === 404) return false;
        throw error;
      }
    });
  }

  /** Every registration at this level (GET {P}, page by page). */
  list(): Promise<RunnerView[]> {
    return this.slot(async () => {
      const all: RunnerView[] = [];
      for await (const runner of this.client.list<RunnerView>(this.prefix, {}, "listing runners")) all.push(runner);
      return all;
    });
  }
}
