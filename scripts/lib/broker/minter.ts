/**
 * One boot, one credential. For each (machine, boot id) the minter registers one runner on
 * Forgejo (ephemeral for host mode, forgejo-ephemeral-runners.md §2; a per-boot registration for
 * container mode, whose `daemon` refuses ephemeral ones since runner 12.8.0, §3.4), hands its
 * uuid and token out once, keeps the registration's id, and deletes the registration if it is
 * still unused at its deadline: Forgejo never expires an unused ephemeral credential, and until
 * then it can take any one matching job (§2, "What if the machine dies before taking a task?").
 *
 * What it never does: mint twice for one boot (the boot id is remembered, a second request is
 * refused), hand out half a credential (the answer is checked whole before anything is served),
 * or leave a registration nobody can use (a POST whose answer was lost may have registered one:
 * those are found by their unique name and deleted before the next attempt).
 */
import type { BrokerConfig, Machine } from "./config.ts";
import type { DecisionLog } from "./decision-log.ts";
import type { RunnerEnv } from "./runner-env.ts";
import { isTransient, type Registration, type RunnersApi, type RunnerView } from "./runners-api.ts";

export type Outcome =
  | { kind: "served"; env: RunnerEnv; registration?: number }
  | { kind: "refused"; status: 403 | 409 | 502 | 503; reason: string; retryAfter?: number };

/** A registration handed out to a boot, followed until it is used, deleted or replaced. */
interface Tracked {
  id: number;
  name: string;
  machine: string;
  boot: string;
  ephemeral: boolean;
  timer?: ReturnType<typeof setTimeout>;
}

export interface MinterOptions {
  /** Forgejo >= 15 answered; false serves the operator's long-lived secrets. */
  mintable: boolean;
  /** The loud override: host-mode credentials even though pull requests are enabled. */
  allowHostWithPullRequests: boolean;
  /** Back-off of the retries while Forgejo is down, ms (tests shorten it). */
  retryBaseMs?: number;
}

class ForgejoUnavailable extends Error {}

export const HOST_WITH_PRS_REASON = (repo: string) =>
  `host mode is refused: ${repo} accepts pull requests, and a pull request brings its own workflow, ` +
  `which can ask for the host label and, once approved, read this machine's credential. Fix: make ` +
  `${repo} a push-only release repository (Settings > Units: disable Pull requests) and take ` +
  `contributions in another repository; or, knowingly, start the broker with --allow-host-with-pull-requests`;

export const LEGACY_WARNING =
  "Forgejo cannot mint single-use credentials (version < 15, or its runners endpoint answered 404): " +
  "serving the operator's long-lived secret, valid until rotated by hand; every job on a host-mode " +
  "machine can read it and use it to take further jobs";

export class Minter {
  /** (machine, boot id) pairs asked for: "busy" while being served, then "served". */
  private readonly boots = new Map<string, "busy" | "served">();
  /** Machines with a request in progress: one at a time per machine. */
  private readonly busyMachines = new Set<string>();
  /** The latest registration handed to each machine. */
  private readonly current = new Map<string, Tracked>();
  /** Names of registrations a lost POST may have left, still to be swept. */
  private readonly unswept = new Set<string>();
  private prCheck: { at: number; open: boolean } | null = null;
  private stopped = false;
  private readonly retryBaseMs: number;

  constructor(
    private readonly api: RunnersApi,
    private readonly config: BrokerConfig,
    private readonly log: DecisionLog,
    private options: MinterOptions,
  ) {
    this.retryBaseMs = options.retryBaseMs ?? 250;
  }

  /** Registrations handed out and still followed (for tests and the bench). */
  tracked(): { id: number; name: string; machine: string }[] {
    return [...this.current.values()].map(({ id, name, machine }) => ({ id, name, machine }));
  }

  async serve(machine: Machine, boot: string, source: string): Promise<Outcome> {
    const key = `${machine.name}/${boot}`;
    const seen = this.boots.get(key);
    if (seen) return { kind: "refused", status: 409, reason: seen === "served" ? "this boot was already served its credential; a second request in the same boot is refused" : "a request for this boot is in progress" };
    if (this.busyMachines.has(machine.name)) return { kind: "refused", status: 409, reason: "another request for this machine is in progress" };
    this.boots.set(key, "busy");
    this.busyMachines.add(machine.name);
    const deadline = Date.now() + this.config.forgejoWaitSeconds * 1000;
    try {
      const outcome = await this.decide(machine, boot, source, deadline);
      // Only a served boot is remembered as such; a refused one may ask again (after a 503 it must).
      if (outcome.kind === "served") this.boots.set(key, "served");
      else this.boots.delete(key);
      return outcome;
    } catch (error) {
      this.boots.delete(key);
      if (error instanceof ForgejoUnavailable) return { kind: "refused", status: 503, reason: error.message, retryAfter: 5 };
      throw error;
    } finally {
      this.busyMachines.delete(machine.name);
    }
  }

  private async decide(machine: Machine, boot: string, source: string, deadline: number): Promise<Outcome> {
    const who = { machine: machine.name, mac: machine.mac, source, boot, mode: machine.mode };
    if (machine.mode === "host" && (await this.pullRequestsOpen(deadline, who))) {
      if (!this.options.allowHostWithPullRequests) return { kind: "refused", status: 403, reason: HOST_WITH_PRS_REASON(this.repoName()) };
      this.log.write({ event: "override", ...who, warning: "--allow-host-with-pull-requests: serving a host-mode credential for a repository that accepts pull requests" });
    }
    if (!this.options.mintable) return this.legacy(machine, who);

    const previous = this.current.get(machine.name);
    if (previous) {
      const view = await this.withForgejo(deadline, `reading the previous registration of ${machine.name}`, who, () => this.api.get(previous.id));
      // Forgejo calls a runner offline a minute after it last reached the server (helper notes
      // /tmp/research/forgejo.md: models/actions/runner.go @v15.0.3). Until then its runner may
      // be alive, and a "new boot" may be a job on it asking with a made-up boot id: a machine
      // that really rebooted asks again (503 is retried) and is served once its old runner is gone.
      if (view && view.status !== "offline") {
        return { kind: "refused", status: 503, retryAfter: 30, reason: `the previous registration of this machine (${previous.id}) was online within the last minute (${view.status}); served once it is offline` };
      }
      if (view) {
        await this.withForgejo(deadline, `deleting the previous registration of ${machine.name}`, who, () => this.api.remove(previous.id));
        this.log.write({ event: "deleted", ...who, registration: previous.id, name: previous.name, reason: "the machine booted again: its previous registration is no longer used" });
      }
      this.untrack(previous);
    }

    const name = `${machine.name}-${boot}`;
    const ephemeral = machine.mode === "host";
    let registration: Registration | null;
    for (let attempt = 1; ; attempt++) {
      await this.sweep(name, deadline, who);
      try {
        registration = await this.api.register(name, ephemeral);
        break;
      } catch (error) {
        if (!isTransient(error)) return { kind: "refused", status: 502, reason: `Forgejo refused to register ${name}: ${(error as Error).message}` };
        // The POST may have reached Forgejo and registered a runner whose token we never saw.
        this.unswept.add(name);
        await this.pause(attempt, deadline, (error as Error).message, who);
      }
    }
    if (registration === null) {
      this.log.write({ event: "no-mint-endpoint", ...who, warning: "POST .../actions/runners answered 404: Forgejo < 15, or Actions is disabled for the repository" });
      return this.legacy(machine, who);
    }
    if (!isWhole(registration)) {
      // Never half a credential: an answer without a usable uuid and token is not served, and a
      // registration it names is deleted, since nobody can use it.
      const id = (registration as { id?: unknown }).id;
      if (typeof id === "number" && Number.isSafeInteger(id) && id > 0) {
        await this.api.remove(id).catch(() => this.unswept.add(name));
      } else this.unswept.add(name);
      return { kind: "refused", status: 502, reason: "Forgejo's answer to the registration held no usable uuid and token" };
    }
    const tracked: Tracked = { id: registration.id, name, machine: machine.name, boot, ephemeral };
    this.current.set(machine.name, tracked);
    this.watch(tracked, this.config.unusedDeadlineSeconds * 1000);
    this.log.write({ event: "minted", ...who, registration: registration.id, name, credential: "minted" });
    return {
      kind: "served",
      registration: registration.id,
      env: { kind: "minted", url: this.config.forgejo.runnerUrl, name, mode: machine.mode, labels: machine.labels, uuid: registration.uuid, token: registration.token, registrationId: registration.id, ephemeral },
    };
  }

  private legacy(machine: Machine, who: Record<string, string>): Outcome {
    if (!machine.legacySecret) {
      return { kind: "refused", status: 502, reason: "Forgejo cannot mint a credential and this machine has no legacySecretFile in the broker's configuration" };
    }
    this.log.write({ event: "long-lived", ...who, credential: "long-lived", warning: LEGACY_WARNING });
    return { kind: "served", env: { kind: "long-lived", url: this.config.forgejo.runnerUrl, name: machine.name, mode: machine.mode, labels: machine.labels, secret: machine.legacySecret } };
  }

  /** has_pull_requests of the repository, re-read when older than pullRequestCheckSeconds. Org/user level: assumed open. */
  private async pullRequestsOpen(deadline: number, who: Record<string, string>): Promise<boolean> {
    // A credential above repository level takes jobs of every repository there; no one
    // repository's setting can vouch for all of them.
    if (this.config.forgejo.level !== "repository") return true;
    if (this.prCheck && Date.now() - this.prCheck.at < this.config.pullRequestCheckSeconds * 1000) return this.prCheck.open;
    const repo = await this.withForgejo(deadline, `reading ${this.repoName()}`, who, () => this.api.repository());
    // Anything but an explicit false counts as open: a server that does not say is not trusted.
    this.prCheck = { at: Date.now(), open: repo.has_pull_requests !== false };
    return this.prCheck.open;
  }

  /** Sets what the startup check read, so the first boot does not read it again. */
  notePullRequests(open: boolean): void {
    this.prCheck = { at: Date.now(), open };
  }

  private repoName(): string {
    return `${this.config.forgejo.owner}/${this.config.forgejo.repo}`;
  }

  /** Deletes every registration named `name` a lost POST may have left. */
  private async sweep(name: string, deadline: number, who: Record<string, string>): Promise<void> {
    if (!this.unswept.has(name)) return;
    const all = await this.withForgejo(deadline, `looking for a registration named ${name}`, who, () => this.api.list());
    for (const runner of all.filter((r) => r.name === name)) {
      await this.withForgejo(deadline, `deleting registration ${runner.id}`, who, () => this.api.remove(runner.id));
      this.log.write({ event: "deleted", ...who, registration: runner.id, name, reason: "an earlier attempt's answer was lost: nobody holds its token" });
    }
    this.unswept.delete(name);
  }

  /** Runs a call, retrying with back-off while Forgejo is down, until the request's deadline. */
  private async withForgejo<T>(deadline: number, what: string, who: Record<string, string>, call: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await call();
      } catch (error) {
        if (!isTransient(error)) throw error;
        await this.pause(attempt, deadline, `${what}: ${(error as Error).message}`, who);
      }
    }
  }

  private async pause(attempt: number, deadline: number, why: string, who: Record<string, string>): Promise<void> {
    const wait = Math.min(this.retryBaseMs * 2 ** (attempt - 1), 5000) * (0.5 + Math.random() / 2);
    if (this.stopped || Date.now() + wait > deadline) {
      this.log.write({ event: "forgejo-down", ...who, attempt, reason: `${why}; the machine is told to retry` });
      throw new ForgejoUnavailable("Forgejo cannot be reached right now; retry later");
    }
    this.log.write({ event: "forgejo-retry", ...who, attempt, reason: why });
    await Bun.sleep(wait);
  }

  /** Checks the registration at its deadline: used, gone, or deleted now. */
  private watch(tracked: Tracked, afterMs: number): void {
    tracked.timer = setTimeout(() => void this.check(tracked), afterMs);
  }

  private async check(tracked: Tracked): Promise<void> {
    if (this.stopped) return;
    const who = { machine: tracked.machine, boot: tracked.boot };
    let view: RunnerView | null;
    try {
      view = await this.api.get(tracked.id);
      if (view && isUnused(view)) {
        await this.api.remove(tracked.id);
        this.log.write({ event: "deleted", ...who, registration: tracked.id, name: tracked.name, reason: "unused at its deadline: nobody connected with it, and until deleted it could take any one matching job" });
        this.untrack(tracked);
        return;
      }
    } catch (error) {
      // Forgejo is down: the credential is still live, so look again soon.
      this.log.write({ event: "deadline-check-failed", ...who, registration: tracked.id, reason: `${(error as Error).message}; checking again in 30 s` });
      this.watch(tracked, 30_000);
      return;
    }
    if (!view) {
      this.log.write({ event: "finished", ...who, registration: tracked.id, name: tracked.name, reason: "Forgejo deleted it: its one job has ended" });
      this.untrack(tracked);
    } else {
      this.log.write({ event: "kept", ...who, registration: tracked.id, name: tracked.name, reason: `in use at its deadline (${view.status}); replaced at the machine's next boot` });
    }
  }

  private untrack(tracked: Tracked): void {
    clearTimeout(tracked.timer);
    if (this.current.get(tracked.machine) === tracked) this.current.delete(tracked.machine);
  }

  /**
   * At start: registrations an earlier run of the broker handed out. Unused ones are deleted
   * (whoever got them will not be served again), used ones followed as their machine's current one.
   */
  async adopt(machines: Machine[]): Promise<void> {
    const byName = new Map(machines.map((m) => [m.name, m]));
    const pattern = /^(.+)-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/;
    for (const runner of await this.api.list()) {
      const m = pattern.exec(runner.name);
      const machine = m && byName.get(m[1]!);
      if (!machine) continue;
      if (isUnused(runner)) {
        await this.api.remove(runner.id);
        this.log.write({ event: "deleted", machine: machine.name, registration: runner.id, name: runner.name, reason: "left unused by an earlier run of the broker" });
      } else if ((this.current.get(machine.name)?.id ?? 0) < runner.id) {
        this.current.set(machine.name, { id: runner.id, name: runner.name, machine: machine.name, boot: m[2]!, ephemeral: runner.ephemeral });
      }
    }
  }

  stop(): void {
    this.stopped = true;
    for (const tracked of this.current.values()) clearTimeout(tracked.timer);
  }
}

/** Never connected: Forgejo sets the version when the runner declares itself. */
function isUnused(runner: RunnerView): boolean {
  return runner.status === "offline" && !runner.version;
}

function isWhole(r: Registration | null): r is Registration {
  return (
    r !== null &&
    Number.isSafeInteger(r.id) && r.id > 0 &&
    typeof r.uuid === "string" && /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(r.uuid) &&
    typeof r.token === "string" && /^[0-9a-f]{40}$/.test(r.token)
  );
}
