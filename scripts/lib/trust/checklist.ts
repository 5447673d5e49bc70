/**
 * A verification as a list of checks, each with a result: what was checked, what failed (each
 * problem one line) and what was not checked, and why, in the order an auditor reads them.
 *
 * A check may name earlier checks it needs. It then runs only if they passed, and is otherwise
 * skipped, naming the one that did not: that is how a later check (a rebuild) can wait for an
 * earlier one (the signature). Only a failed check fails the verification; a skipped one says
 * plainly what it leaves unproven, in its reason.
 */

export type Outcome = "ok" | "failed" | "skipped";

/** One check's result. `details`: for "failed", the problems; for "ok", what it established. */
export interface CheckResult {
  check: string;
  outcome: Outcome;
  /** Why a check was skipped (only for "skipped"). */
  reason?: string;
  details: string[];
}

export type Verdict = Omit<CheckResult, "check">;

export interface Check {
  name: string;
  /** Earlier checks (by name) that must have passed for this one to run. */
  needs?: string[];
  run(): Verdict | Promise<Verdict>;
}

export const passed = (details: string[] = []): Verdict => ({ outcome: "ok", details });
export const skipped = (reason: string): Verdict => ({ outcome: "skipped", reason, details: [] });
/** Failed if there is any problem, else passed (with what it established). */
export const problemsFound = (problems: string[], established: string[] = []): Verdict =>
  problems.length > 0 ? { outcome: "failed", details: problems } : passed(established);

/** Runs the checks in order. A check's own exception (a dead server, an unreadable file) is not caught: it ends the run. */
export async function runChecklist(checks: readonly Check[]): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  for (const check of checks) {
    const needed = (check.needs ?? []).map((name) => {
      const earlier = results.find((r) => r.check === name);
      // A misspelt dependency must not quietly turn into "skipped": that is a check never made.
      if (!earlier) throw new Error(`check "${check.name}" needs "${name}", which is not an earlier check`);
      return earlier;
    });
    const unmet = needed.find((r) => r.outcome !== "ok");
    const verdict = unmet ? skipped(`${unmet.check} ${unmet.outcome === "failed" ? "failed" : "was skipped"}`) : await check.run();
    results.push({ check: check.name, ...verdict });
  }
  return results;
}

/** Every problem of every failed check, in order. */
export const problemsOf = (results: readonly CheckResult[]): string[] => results.flatMap((r) => (r.outcome === "failed" ? r.details : []));

/** The results for the log: one line per check; a failed check's problems follow it, each on its own FAIL line. */
export function resultLines(results: readonly CheckResult[]): string[] {
  return results.flatMap((r) => {
    if (r.outcome === "ok") return [`[ok]      ${r.check}`];
    if (r.outcome === "skipped") return [`[skipped] ${r.check}: ${r.reason}`];
    return [`[failed]  ${r.check}`, ...r.details.map((problem) => `FAIL ${problem}`)];
  });
}
