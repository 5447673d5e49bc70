/**
 * The publisher's plan: what one run will do to the server, as a plain value, computed from what
 * was looked up (publish-look.ts) without touching anything. A dry run prints it; a real run
 * prints the same plan and applies it step by step (publish-apply.ts), so the dry run is exact by
 * construction. Each action says what it does, what it sends, and what is left on the server if
 * the run stops after it: the interruption and failure messages are read from here.
 *
 * The rules it encodes (forgejo-release-api.md §3, §9: duplicate names are accepted silently, no
 * digests are reported, so the client does what the server does not):
 * - a published release is immutable: identical = nothing to do; different = refused, unless
 *   --replace-published (then it becomes a draft again first);
 * - an asset is kept only if this run downloaded it and its bytes hash to the dist's file (the
 *   look decides that; the plan only reads it);
 * - a changed or missing file is uploaded under a temporary name, the old asset(s) deleted, then
 *   renamed: no wrong bytes ever sit under a final name;
 * - anything else on the draft (leftover temporaries, duplicates, files the dist lacks) is
 *   deleted, before the files are synced; manifest.json comes last, as the dist lists it.
 */
import { Failure } from "../cli/errors.ts";
import { formatBytes } from "../cli/log.ts";
import { isDevTag } from "../trust/tags.ts";
import { readBackRefusal, type ReadBack } from "./read-back.ts";

/** The name a file is uploaded under before it is renamed to its final name. */
export const TEMPORARY = ".partial-";

export interface RemoteAsset {
  id: number;
  name: string;
  size: number;
}

export interface LookedUpRelease {
  id: number;
  draft: boolean;
  url: string;
  /** Who created it: a protected-tag rule is checked against them at publish (forgejo-release-api.md §15a). */
  author: string | null;
  assets: RemoteAsset[];
}

/** The server's state, as far as the plan depends on it. */
export interface LookedUp {
  release: LookedUpRelease | null;
  /** For a published release: how it differs from the dist (empty = identical). */
  differences: string[];
  /** Assets this run downloaded and found byte-identical to the dist's file of the same name. */
  identical: number[];
  /** Published boot-dev- releases other than the tag being published, in any order. */
  devReleases: { id: number; tag: string; createdAt: string }[];
  /** Whether this token can download assets back (read-back.ts); absent = it can. */
  readBack?: ReadBack;
}

export interface PlanInputs {
  tag: string;
  commit: string;
  /** In upload order, manifest.json last. */
  files: readonly { name: string; size: number }[];
  verify: "full" | "sizes";
  replacePublished: boolean;
  /** A later round of a run that already uploaded (publish-release's inRounds). */
  uploadedThisRun?: boolean;
  keepDev: number;
}

export type Step =
  | { kind: "write-provenance"; dist: string; write: { name: string; bytes: Uint8Array }[]; remove: string[] }
  | { kind: "create-draft" }
  | { kind: "unpublish" }
  | { kind: "delete"; asset: RemoteAsset }
  | { kind: "keep"; file: string; asset: RemoteAsset }
  | { kind: "upload"; file: string; size: number; replaces: RemoteAsset[] }
  | { kind: "verify"; mode: "full" | "sizes"; hashed: number[] }
  | { kind: "publish" }
  | { kind: "prune"; release: { id: number; tag: string } };

export type Action = Step & {
  /** The plan's line: "would upload runner-x86_64.iso (1.2 GiB)". */
  line: string;
  /** The log line as it is applied: "uploading runner-x86_64.iso (1.2 GiB)". */
  doing?: string;
  /** The log line once it is done, for a step too quick to announce: "wrote provenance.intoto.json …". */
  done?: string;
  /** What it sends: API calls (before retries) and bytes. */
  sends: string;
  /** What is left on the server if the run stops after this action. */
  leaves: string;
  /** What may be left if the run stops while this action is under way (default: as before it). */
  midway?: string;
};

export interface Plan {
  tag: string;
  /** True when the release is already published with exactly these files: no actions. */
  alreadyPublished: boolean;
  /** What is on the server before the first action, as the operator should hear it. */
  initially: string;
  actions: Action[];
  /** Said before the plan's lines: what this run cannot check. */
  warning?: string;
}

export const NOTHING_CHANGED = "nothing was changed on the server";
export const drafted = (tag: string) => `${tag} is left as a draft, not visible to downloaders; run the same command again to finish it`;

/** How far a looked-up release needs work; the look uses it too, to look no further than needed. */
export function releaseVerdict(
  release: { draft: boolean } | null,
  differences: readonly string[],
  replacePublished: boolean,
  uploadedThisRun = false,
): "new" | "draft" | "identical" | "refused" | "replace" {
  if (!release) return "new";
  if (release.draft) return "draft";
  if (differences.length === 0) return "identical";
  // Two runs for one tag at once: the other published while this one's uploads were landing, so
  // the only differences are second copies of the dist's own files, this run's debris. Cleaning
  // them up (through a draft, as --replace-published does) is finishing our work, not rewriting
  // someone's release. Only in a round after this run uploaded: a fresh run never rewrites a
  // published release it finds with duplicates, and any other difference stays refused.
  if (uploadedThisRun && differences.every((d) => DUPLICATE.test(d))) return "replace";
  return replacePublished ? "replace" : "refused";
}

/** publishedDifferences' line for a file the release holds more than once. */
const DUPLICATE = / is there \d+ times$/;

const calls = (n: number) => `${n} API call${n === 1 ? "" : "s"}`;

/** The plan for the statement and its signature, written into the dist before the server is contacted. */
export function planProvenance(dist: string, what: string, write: { name: string; bytes: Uint8Array }[], remove: string[]): Plan {
  const action: Action = {
    kind: "write-provenance", dist, write, remove,
    line: `would write ${what}`,
    done: `wrote ${what}`,
    sends: "nothing: writes into the dist",
    leaves: NOTHING_CHANGED,
  };
  return { tag: "", alreadyPublished: false, initially: NOTHING_CHANGED, actions: [action] };
}

/** The actions that bring the server from `state` to the dist published under `inputs.tag`. */
export function planPublish(inputs: PlanInputs, state: LookedUp): Plan {
  const { tag, commit, files } = inputs;
  const release = state.release;
  // Decided before any action: a run that could not download back what it uploads refuses now,
  // not after the uploads with a draft left behind. --verify sizes is the explicit way round.
  const readBack = state.readBack ?? { possible: true };
  if (!readBack.possible && inputs.verify === "full") throw new Failure(readBackRefusal(readBack));
  const warning = readBack.possible
    ? undefined
    : `warning: --verify sizes: ${readBack.cause}; only names and sizes are checked, nothing this run sends is read back, and every file is uploaded again`;
  const verdict = releaseVerdict(release, state.differences, inputs.replacePublished, inputs.uploadedThisRun);
  if (verdict === "refused") {
    throw new Failure(`${tag} is already published and differs from the dist (${state.differences.join("; ")}); published releases are not rewritten: use a new tag, or --replace-published if you mean it`);
  }
  const initially = release?.draft ? drafted(tag) : NOTHING_CHANGED;
  if (verdict === "identical") return { tag, alreadyPublished: true, initially, actions: [], warning };

  const actions: Action[] = [];
  const draft = drafted(tag);
  const add = (step: Step, text: { line: string; doing: string; sends: string; leaves?: string; midway?: string }) =>
    actions.push({ ...step, ...text, leaves: text.leaves ?? draft });

  if (verdict === "new") {
    const at = `${tag} at ${commit.slice(0, 12)}`;
    add({ kind: "create-draft" }, { line: `would create draft release ${at}`, doing: `creating draft release ${at}`, sends: calls(1) });
  }
  if (verdict === "replace") {
    const why = `${tag} back into a draft to replace its assets (${state.differences.join("; ")})`;
    add({ kind: "unpublish" }, {
      line: `would turn published ${why}`, doing: `turning published ${why}`, sends: calls(1),
      midway: `${tag} may have been turned back into a draft; run the same command again to finish it`,
    });
  }

  const assets = release?.assets ?? [];
  const wanted = new Set(files.map((f) => f.name));
  const remove = (asset: RemoteAsset, why: string) =>
    add({ kind: "delete", asset }, { line: `would delete ${asset.name} (${why})`, doing: `deleting ${asset.name} (${why})`, sends: calls(1) });
  for (const asset of assets.filter((a) => !wanted.has(a.name))) {
    remove(asset, asset.name.includes(TEMPORARY) ? "left by an interrupted run" : "not in the dist");
  }
  const identical = new Set(state.identical);
  const kept: number[] = [];
  let downloadBack = 0;
  for (const file of files) {
    const candidates = assets.filter((a) => a.name === file.name);
    const keeper = candidates.find((a) => a.size === file.size && identical.has(a.id));
    if (keeper) {
      const same = `${file.name}: already there, identical`;
      add({ kind: "keep", file: file.name, asset: keeper }, { line: `would skip ${same}`, doing: `skipping ${same}`, sends: "nothing" });
      kept.push(keeper.id);
      for (const duplicate of candidates.filter((a) => a !== keeper)) remove(duplicate, "duplicate name");
      continue;
    }
    const what = `${file.name} (${formatBytes(file.size)})`;
    const how = candidates.length > 0 ? ["replace", "replacing"] : ["upload", "uploading"];
    add({ kind: "upload", file: file.name, size: file.size, replaces: candidates }, {
      line: `would ${how[0]} ${what}`, doing: `${how[1]} ${what}`,
      sends: `${calls(candidates.length + 2)}, ${formatBytes(file.size)} uploaded`,
    });
    downloadBack += file.size;
  }

  const full = inputs.verify === "full";
  add({ kind: "verify", mode: inputs.verify, hashed: kept }, {
    line: `would verify the release (${full ? "sizes, then every file this run has not hashed yet downloaded back and hashed" : "sizes"})`,
    doing: `verifying the release (${full ? "downloading back what this run has not hashed yet" : "sizes"})`,
    sends: full ? `${calls(1)}, ${formatBytes(downloadBack)} downloaded back` : calls(1),
  });

  const prunes = pruned(inputs, state.devReleases);
  const published = `${tag} is published`;
  const pruning = `${published}; pruning old dev releases was cut short, the next run finishes it`;
  add({ kind: "publish" }, {
    line: `would publish ${tag}, creating the tag at ${commit.slice(0, 12)}`, doing: `publishing ${tag}`, sends: calls(2),
    midway: `${tag} may or may not be published; run the same command again: it finishes or confirms it`,
    leaves: prunes.length > 0 ? pruning : published,
  });
  prunes.forEach((old, i) => {
    add({ kind: "prune", release: old }, {
      line: `would prune dev release ${old.tag}`, doing: `pruning dev release ${old.tag}`, sends: calls(2),
      leaves: i < prunes.length - 1 ? pruning : published,
    });
  });
  return { tag, alreadyPublished: false, initially, actions, warning };
}

/**
 * All but the newest `keepDev` published boot-dev- releases go, with their tags; never the one
 * being published (it counts toward the kept), never a draft (another run still at work).
 */
function pruned(inputs: PlanInputs, dev: LookedUp["devReleases"]): { id: number; tag: string }[] {
  const keep = isDevTag(inputs.tag) ? Math.max(0, inputs.keepDev - 1) : inputs.keepDev;
  return dev
    .filter((r) => r.tag !== inputs.tag)
    .sort((a, b) => Date.parse(b.createdAt) - Date.parse(a.createdAt) || b.id - a.id)
    .slice(keep)
    .map((r) => ({ id: r.id, tag: r.tag }));
}

/** The plan as printed, the same in a dry run and a real one: each action, and what is left after it when that changes. */
export function planLines(plan: Plan): string[] {
  const lines: string[] = plan.warning ? [plan.warning] : [];
  if (plan.alreadyPublished) return [...lines, `${plan.tag} is already published with exactly these files${plan.warning ? " (names and sizes)" : ""}: nothing to do`];
  let left = plan.initially;
  for (const action of plan.actions) {
    lines.push(`plan: ${action.line} [sends ${action.sends}]`);
    if (action.leaves !== left) lines.push(`plan:   if the run stops here: ${(left = action.leaves)}`);
  }
  return lines;
}

/** What the plan publishes and skips, for the summary and --json. */
export function planReport(plan: Plan, files: readonly { name: string; size: number }[]) {
  const of = <K extends Step["kind"]>(kind: K) => plan.actions.filter((a): a is Action & Extract<Step, { kind: K }> => a.kind === kind);
  const uploads = of("upload");
  return {
    uploaded: uploads.map((a) => a.file),
    skipped: plan.alreadyPublished ? files.map((f) => f.name) : of("keep").map((a) => a.file),
    deleted: of("delete").map((a) => a.asset.name),
    pruned: of("prune").map((a) => a.release.tag),
    uploadBytes: uploads.reduce((n, a) => n + a.size, 0),
  };
}
