/**
 * checklist.ts: the order and gating verify-release's checks rely on. A check that needs an
 * earlier one runs only once that passed; a dependency on a check that is not earlier in the
 * list is a programming error, never a quiet skip (a skipped check does not fail a verification).
 */
import { describe, expect, test } from "bun:test";
import { passed, problemsFound, problemsOf, runChecklist, skipped, type Check } from "../scripts/lib/trust/checklist.ts";

const ran: string[] = [];
const check = (name: string, verdict: ReturnType<typeof passed>, needs?: string[]): Check => ({
  name,
  needs,
  run: () => {
    ran.push(name);
    return verdict;
  },
});

describe("runChecklist", () => {
  test("a check runs only when every check it needs passed; otherwise it is skipped, naming the first that did not", async () => {
    ran.length = 0;
    const results = await runChecklist([
      check("signature", problemsFound(["signed by a stranger"])),
      check("sums", passed()),
      check("statement", skipped("--allow-unsigned")),
      check("rebuild", passed(), ["sums", "signature"]),
      check("tag", passed(), ["statement"]),
      check("mirror", passed(), ["sums"]),
    ]);
    expect(ran).toEqual(["signature", "sums", "statement", "mirror"]);
    expect(results.map((r) => [r.check, r.outcome, r.reason ?? null])).toEqual([
      ["signature", "failed", null],
      ["sums", "ok", null],
      ["statement", "skipped", "--allow-unsigned"],
      ["rebuild", "skipped", "signature failed"],
      ["tag", "skipped", "statement was skipped"],
      ["mirror", "ok", null],
    ]);
    expect(problemsOf(results)).toEqual(["signed by a stranger"]);
  });

  test("needing a check that is not earlier in the list is an error, not a skip", async () => {
    await expect(runChecklist([check("rebuild", passed(), ["signature"]), check("signature", passed())])).rejects.toThrow(
      'check "rebuild" needs "signature", which is not an earlier check',
    );
  });
});
