/**
 * The publisher's plan, computed from a looked-up state without a server: which actions, in which
 * order, what each sends, and what is left if the run stops after (or during) each one.
 */
import { describe, expect, test } from "bun:test";
import { drafted, planLines, planPublish, planReport, type LookedUp, type PlanInputs } from "../scripts/lib/forgejo/publish-plan.ts";
import { Whereabouts } from "../scripts/lib/forgejo/publish-apply.ts";
import { HttpError } from "../scripts/lib/forgejo/client.ts";
import { Failure } from "../scripts/lib/cli/errors.ts";

const COMMIT = "0123456789abcdef0123456789abcdef01234567";
const INPUTS: PlanInputs = {
  tag: "boot-v1.0.0",
  commit: COMMIT,
  files: [
    { name: "bzImage-x86_64", size: 200 },
    { name: "initrd-x86_64", size: 300 },
    { name: "runner-x86_64.iso", size: 4000 },
    { name: "manifest.json", size: 50 },
  ],
  verify: "full",
  replacePublished: false,
  keepDev: 3,
};
const release = (draft: boolean, assets: { id: number; name: string; size: number }[]) => ({ id: 7, draft, url: "u", author: "publisher", assets });
const summary = (plan: ReturnType<typeof planPublish>) =>
  plan.actions.map((a) => `${a.kind} ${"file" in a ? a.file : "asset" in a ? `${a.asset.name}#${a.asset.id}` : "release" in a ? a.release.tag : ""}`.trim());

describe("a half-synced draft", () => {
  // bzImage identical (#1) and again under the same name (#4); initrd of the right size but other
  // bytes (#2); the ISO missing; a stray and a leftover temporary.
  const state: LookedUp = {
    release: release(true, [
      { id: 1, name: "bzImage-x86_64", size: 200 },
      { id: 2, name: "initrd-x86_64", size: 300 },
      { id: 3, name: "notes.txt", size: 9 },
      { id: 4, name: "bzImage-x86_64", size: 200 },
      { id: 5, name: "runner-x86_64.iso.partial-ab12cd34", size: 10 },
      { id: 6, name: "manifest.json", size: 50 },
    ]),
    differences: [],
    identical: [1, 6],
    devReleases: [],
  };

  test("gives exactly the remaining work, strays first, in the dist's order", () => {
    const plan = planPublish(INPUTS, state);
    expect(summary(plan)).toEqual([
      "delete notes.txt#3",
      "delete runner-x86_64.iso.partial-ab12cd34#5",
      "keep bzImage-x86_64",
      "delete bzImage-x86_64#4",
      "upload initrd-x86_64",
      "upload runner-x86_64.iso",
      "keep manifest.json",
      "verify",
      "publish",
    ]);
    expect(planLines(plan)).toContain("plan: would delete runner-x86_64.iso.partial-ab12cd34 (left by an interrupted run) [sends 1 API call]");
    expect(planLines(plan)).toContain("plan: would delete bzImage-x86_64 (duplicate name) [sends 1 API call]");
    // The same-size initrd was not found identical: replaced (its old asset deleted), not kept.
    const initrd = plan.actions.find((a) => a.kind === "upload" && a.file === "initrd-x86_64")!;
    expect(initrd.line).toBe("would replace initrd-x86_64 (300 B)");
    expect(initrd.sends).toBe("3 API calls, 300 B uploaded");
    expect(plan.actions.find((a) => a.kind === "upload" && a.file === "runner-x86_64.iso")!.line).toBe("would upload runner-x86_64.iso (3.9 KiB)");
    // --verify full downloads back only what the look did not hash.
    const verify = plan.actions.find((a) => a.kind === "verify")!;
    expect(verify.kind === "verify" && verify.hashed).toEqual([1, 6]);
    expect(verify.sends).toBe("1 API call, 4.2 KiB downloaded back");
    expect(planReport(plan, INPUTS.files)).toEqual({
      uploaded: ["initrd-x86_64", "runner-x86_64.iso"], skipped: ["bzImage-x86_64", "manifest.json"],
      deleted: ["notes.txt", "runner-x86_64.iso.partial-ab12cd34", "bzImage-x86_64"], pruned: [], uploadBytes: 4300,
    });
  });

  test("an asset of the right size that the look did not find identical is never kept", () => {
    const plan = planPublish(INPUTS, { ...state, identical: [] });
    expect(summary(plan).filter((s) => s.startsWith("keep"))).toEqual([]);
    expect(summary(plan).filter((s) => s.startsWith("upload"))).toHaveLength(4);
  });

  test("what is left: a draft throughout, until publishing, which may or may not have happened if it is cut off", () => {
    const plan = planPublish(INPUTS, state);
    expect(plan.initially).toBe(drafted("boot-v1.0.0"));
    const publish = plan.actions.at(-1)!;
    for (const a of plan.actions.slice(0, -1)) expect(a.leaves).toBe(drafted("boot-v1.0.0"));
    expect(publish.leaves).toBe("boot-v1.0.0 is published");
    const where = new Whereabouts();
    expect(where.left()).toBe("nothing was changed on the server");
    where.planned(plan);
    expect(where.left()).toBe(drafted("boot-v1.0.0"));
    where.begin(plan, plan.actions.length - 1);
    expect(where.left()).toBe("boot-v1.0.0 may or may not be published; run the same command again: it finishes or confirms it");
    // An answer from the server means the draft stayed a draft.
    expect(where.left(new HttpError("publishing boot-v1.0.0: 409", 409, "json", ""))).toBe(drafted("boot-v1.0.0"));
    const failure = where.explain(new Failure("the connection was cut off")) as Failure;
    expect(failure.message).toBe("the connection was cut off; boot-v1.0.0 may or may not be published; run the same command again: it finishes or confirms it");
    where.finish();
    expect(where.left()).toBe("boot-v1.0.0 is published");
  });
});

describe("a new release", () => {
  test("creates the draft, uploads everything, verifies, publishes, prunes old dev releases", () => {
    const dev = [1, 2, 3, 4].map((i) => ({ id: i, tag: `boot-dev-${i}`, createdAt: `2026-01-0${i}T00:00:00Z` }));
    const plan = planPublish({ ...INPUTS, tag: "boot-dev-5", keepDev: 3 }, { release: null, differences: [], identical: [], devReleases: dev });
    expect(summary(plan)).toEqual([
      "create-draft", "upload bzImage-x86_64", "upload initrd-x86_64", "upload runner-x86_64.iso", "upload manifest.json",
      "verify", "publish", "prune boot-dev-2", "prune boot-dev-1",
    ]);
    expect(plan.initially).toBe("nothing was changed on the server");
    expect(plan.actions[0]!.line).toBe(`would create draft release boot-dev-5 at ${COMMIT.slice(0, 12)}`);
    expect(plan.actions[0]!.leaves).toBe(drafted("boot-dev-5"));
    expect(plan.actions.find((a) => a.kind === "publish")!.leaves).toBe("boot-dev-5 is published; pruning old dev releases was cut short, the next run finishes it");
    expect(plan.actions.at(-1)!.leaves).toBe("boot-dev-5 is published");
  });
});

describe("a published release", () => {
  const published: LookedUp = { release: release(false, [{ id: 1, name: "bzImage-x86_64", size: 200 }]), differences: [], identical: [], devReleases: [] };

  test("identical: no actions at all", () => {
    const plan = planPublish(INPUTS, published);
    expect(plan.alreadyPublished).toBe(true);
    expect(plan.actions).toEqual([]);
    expect(planLines(plan)).toEqual(["boot-v1.0.0 is already published with exactly these files: nothing to do"]);
    expect(planReport(plan, INPUTS.files).skipped).toEqual(INPUTS.files.map((f) => f.name));
  });

  test("different: refused, unless --replace-published, which turns it back into a draft first", () => {
    const differs = { ...published, differences: ["runner-x86_64.iso is missing"] };
    expect(() => planPublish(INPUTS, differs)).toThrow("boot-v1.0.0 is already published and differs from the dist (runner-x86_64.iso is missing)");
    const plan = planPublish({ ...INPUTS, replacePublished: true }, differs);
    expect(summary(plan)[0]).toBe("unpublish");
    expect(plan.initially).toBe("nothing was changed on the server");
    expect(plan.actions[0]!.midway).toBe("boot-v1.0.0 may have been turned back into a draft; run the same command again to finish it");
    expect(plan.actions[0]!.leaves).toBe(drafted("boot-v1.0.0"));
  });

  test("second copies of the dist's files: a fresh run refuses; only a later round of a run that uploaded cleans up its own", () => {
    const doubled = { ...published, differences: ["manifest.json is there 2 times"] };
    expect(() => planPublish(INPUTS, doubled)).toThrow("boot-v1.0.0 is already published and differs from the dist (manifest.json is there 2 times)");
    expect(summary(planPublish({ ...INPUTS, uploadedThisRun: true }, doubled))[0]).toBe("unpublish");
    // any other difference stays refused, even then
    const changed = { ...published, differences: ["manifest.json is there 2 times", "runner-x86_64.iso has another SHA-256 there"] };
    expect(() => planPublish({ ...INPUTS, uploadedThisRun: true }, changed)).toThrow("is already published and differs");
  });
});
