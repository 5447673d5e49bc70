/**
 * Applies a publisher's plan (publish-plan.ts) step by step. Nothing is decided here: each action
 * does what the plan says, and a server that no longer matches what was looked up (a concurrent
 * run) is a ReleaseDrift: the caller looks again, plans again and applies again (Rounds).
 *
 * What is left on the server at any moment is read from the plan (Whereabouts): the line after
 * "interrupted:" and the tail of a failure's message.
 */
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Failure } from "../cli/errors.ts";
import { cannotWrite } from "../build/dist-writable.ts";
import { say } from "../cli/log.ts";
import { HttpError, type ForgejoClient } from "./client.ts";
import { NOTHING_CHANGED, planLines, type Action, type Plan } from "./publish-plan.ts";
import { ReleaseDrift, uploadWithRetries, verifyAssets } from "./release-sync.ts";
import type { ReleaseFields } from "./release-fields.ts";
import type { LocalFile } from "./upload.ts";


/** The release being filled, as the actions go: looked up, created, unpublished, published. */
export interface Target {
  id: number;
  url: string;
  author: string | null;
}

/** Another run created the release first (409): look at theirs and plan again. */
export class ConcurrentDraft extends Failure {}

/** Where the run is in its plan, so that an interruption or failure can say what it left. */
export class Whereabouts {
  private plan: Plan | null = null;
  private index = -1;
  private running = false;
  private applied = false;

  /** The plan is printed: what it starts from is what is left until its first action runs. */
  planned(plan: Plan): void {
    this.plan = plan;
    this.index = -1;
    this.running = false;
  }

  begin(plan: Plan, index: number): void {
    this.plan = plan;
    this.index = index;
    this.running = true;
    this.applied = true;
  }

  finish(): void {
    this.running = false;
  }

  /** What is left if the run stops now; an answer from the server means the action did not happen. */
  left(error?: unknown): string {
    if (!this.plan) return NOTHING_CHANGED;
    const before = this.index > 0 ? this.plan.actions[this.index - 1]!.leaves : this.plan.initially;
    const action = this.index >= 0 ? this.plan.actions[this.index] : undefined;
    if (!action || !this.running) return action ? action.leaves : this.plan.initially;
    if (error instanceof HttpError || error instanceof ReleaseDrift) return before;
    return action.midway ?? before;
  }

  /** A failure once anything was applied ends with what it left. */
  explain(error: unknown): unknown {
    if (error instanceof Failure && this.applied) error.message += `; ${this.left(error)}`;
    return error;
  }
}

/**
 * Runs look, plan, apply until it settles: a concurrent run that disturbed the release means look
 * again, plan again, apply again, up to three rounds. A failure that ends it says what it left.
 */
export async function inRounds<T>(where: Whereabouts, attempt: () => Promise<T>): Promise<T> {
  const rounds = new Rounds();
  for (;;) {
    try {
      return await attempt();
    } catch (error) {
      if (!rounds.again(error)) throw where.explain(error);
    }
  }
}

class Rounds {
  private round = 1;
  private concurrent = false;

  again(error: unknown): boolean {
    // Theirs is looked at once; that is discovery, not a round.
    if (error instanceof ConcurrentDraft && !this.concurrent) return (this.concurrent = true);
    if (!(error instanceof ReleaseDrift) || this.round === 3) return false;
    say(`${error.message}; syncing again (round ${++this.round} of 3)`);
    return true;
  }
}

/** Prints the plan; from now on, what it starts from is what a stop leaves. */
export function printPlan(plan: Plan, where?: Whereabouts): void {
  for (const line of planLines(plan)) say(line);
  where?.planned(plan);
}

export interface Apply {
  client: ForgejoClient;
  tag: string;
  commit: string;
  fields: ReleaseFields;
  files: LocalFile[];
  /** The release as looked up; null when the plan creates it. */
  target: Target | null;
  where: Whereabouts;
}

/** Applies every action in order; returns the release as it ends up. */
export async function applyPlan(plan: Plan, context: Apply): Promise<Target | null> {
  let target = context.target;
  for (const [i, action] of plan.actions.entries()) {
    context.where.begin(plan, i);
    if (action.doing) say(action.doing);
    target = await apply(action, { ...context, target });
    if (action.done) say(action.done);
    context.where.finish();
  }
  return target;
}

async function apply(action: Action, c: Apply): Promise<Target | null> {
  const { client, tag } = c;
  const release = () => {
    if (!c.target) throw new Error(`${action.kind} planned before the release exists`);
    return c.target;
  };
  switch (action.kind) {
    case "write-provenance": {
      // A dist on a read-only mount (or otherwise unwritable) is bad input: asked before first
      // contact (dist-writable.ts); should it fail anyway, said the same way, before any upload.
      const writing = (name: string) => (error: NodeJS.ErrnoException) => {
        throw cannotWrite(action.dist, name, error.code);
      };
      for (const f of action.write) await writeFile(join(action.dist, f.name), f.bytes).catch(writing(f.name));
      for (const name of action.remove) await rm(join(action.dist, name), { force: true }).catch(writing(name));
      return c.target;
    }
    case "create-draft": {
      const created = await client.createRelease({
        tag_name: tag,
        // A full SHA: a branch name would resolve at publish time, not now (forgejo-release-api.md §5).
        target_commitish: c.commit,
        name: c.fields.title,
        body: c.fields.notes,
        draft: true,
        prerelease: c.fields.prerelease,
      });
      if (created) return { id: created.id, url: created.html_url, author: created.author?.login ?? null };
      if (!(await client.findRelease(tag))) {
        throw new Failure(`creating release ${tag}: the server says it exists (409) but it cannot be found; is a bare tag row left? see docs/RUNNER_IMAGES.md`);
      }
      say(`release ${tag} was created concurrently; continuing with it`);
      throw new ConcurrentDraft(`release ${tag} was created concurrently`);
    }
    case "unpublish": {
      const draft = await client.editRelease(release().id, { draft: true }, `unpublishing ${tag}`);
      return { ...release(), url: draft.html_url };
    }
    case "delete":
      await client.deleteAsset(release().id, action.asset.id, action.asset.name);
      return c.target;
    case "keep":
      return c.target;
    case "upload": {
      const file = c.files.find((f) => f.name === action.file)!;
      // Not verified: the hash taken while sending proves what left here, not what the server
      // stored; --verify full downloads it back.
      const uploaded = await uploadWithRetries(client, release().id, file);
      for (const old of action.replaces) await client.deleteAsset(release().id, old.id, old.name);
      const renamed = await client.renameAsset(release().id, uploaded.id, file.name);
      if (!renamed) throw new ReleaseDrift(`the uploaded ${file.name} disappeared before it could be renamed (another run at work?)`);
      return c.target;
    }
    case "verify":
      await verifyAssets(client, release().id, c.files, action.mode, new Set(action.hashed));
      return c.target;
    case "publish":
      return publish(client, release(), tag, c.commit, c.fields);
    case "prune":
      await client.deleteRelease(action.release.id, `deleting release ${action.release.tag}`);
      // Deleting a release keeps its git tag (forgejo-release-api.md §7).
      await client.deleteTag(action.release.tag);
      return c.target;
  }
}

/**
 * Publishes, then confirms the tag exists at the dist's commit. Publishing is when Forgejo
 * creates the tag, and every way that can fail is a bare 500 (forgejo-release-api.md §5, §15a).
 */
async function publish(client: ForgejoClient, release: Target, tag: string, commit: string, fields: ReleaseFields): Promise<Target> {
  let url: string;
  try {
    url = (await client.editRelease(release.id, { draft: false, name: fields.title, body: fields.notes, prerelease: fields.prerelease }, `publishing ${tag}`)).html_url;
  } catch (error) {
    if (error instanceof HttpError && error.status === 500) {
      const creator = release.author ?? "its creator";
      throw new Failure(
        `publishing ${tag}: 500: Forgejo could not create the tag ${tag} at ${commit.slice(0, 12)}. The causes it hides behind a 500: ` +
          `a protected-tag rule that the draft's creator (${creator}, not necessarily this token) may not pass; the Actions token never can: push the tag first (git push origin ${commit}:refs/tags/${tag}) or publish with a personal token; ` +
          `the commit gone from the server since this run checked it; another release already holding the tag; or a fault on the server (its log says which)`,
      );
    }
    throw error;
  }
  const created = await client.tag(tag);
  if (created?.commit.sha !== commit) {
    throw new Failure(`published ${tag}, but the tag points at ${created?.commit.sha ?? "nothing"} instead of ${commit}: inspect the release at ${url}`);
  }
  return { ...release, url };
}
