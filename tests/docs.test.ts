/**
 * The docs as an operator uses them at 3 a.m.: every command a page shows for one of the
 * scripts passes only flags that script's --help lists, every boot-v example that publishes by
 * hand signs, every link between the pages lands on a page and a heading that exist, and every
 * `docs/<page>.md, "<section>"` that a script, a Nix file or a workflow prints or cites names a
 * section that is there. Pages: README.md and every docs/**\/*.md.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";

const ROOT = join(import.meta.dir, "..");

/** Every file under `dir` (relative to ROOT) whose name ends with one of `endings`. */
function filesUnder(dir: string, endings: string[]): string[] {
  const out: string[] = [];
  const walk = (abs: string) => {
    for (const name of readdirSync(abs)) {
      if (name === "node_modules" || name.startsWith(".")) continue;
      const path = join(abs, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (endings.some((e) => name.endsWith(e))) out.push(relative(ROOT, path));
    }
  };
  if (existsSync(join(ROOT, dir))) walk(join(ROOT, dir));
  return out.sort();
}

const PAGES = ["README.md", ...filesUnder("docs", [".md"])];
const text = new Map(PAGES.map((p) => [p, readFileSync(join(ROOT, p), "utf8")]));

/**
 * The commands a page shows: the lines of its fenced code blocks and its inline code spans, with
 * shell line continuations joined and comments dropped.
 */
function commandsOf(page: string): string[] {
  const body = text.get(page)!;
  const blocks = [...body.matchAll(/```[a-z]*\n([\s\S]*?)```/g)].map((m) => m[1]!);
  const joined = blocks.flatMap((b) => b.replace(/\\\n\s*/g, " ").split("\n"));
  const outside = body.replace(/```[a-z]*\n[\s\S]*?```/g, "");
  const spans = [...outside.replace(/\n/g, " ").matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
  return [...joined, ...spans].map((l) => l.replace(/(^|\s)#.*$/, "").trim()).filter(Boolean);
}

/** `bun run <name>` → the file package.json runs for it, when that is a script with a --help. */
const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { scripts: Record<string, string> };
const RUN_ALIASES = new Map(
  Object.entries(pkg.scripts).flatMap(([name, command]) => {
    const m = /^bun (?:--smol )?((?:scripts|demo)\/[\w/-]+\.ts)$/.exec(command);
    return m ? [[name, m[1]!] as const] : [];
  }),
);

interface Use {
  page: string;
  script: string;
  flags: string[];
  line: string;
}

/** Each call of one of our scripts in a command line, with the flags given to it. */
function usesIn(page: string, line: string): Use[] {
  const uses: Use[] = [];
  const call = /\bbun (?:--smol )?(?:((?:scripts|demo)\/[\w/-]+\.ts)|run ([\w-]+))/g;
  for (const m of line.matchAll(call)) {
    const script = m[1] ?? RUN_ALIASES.get(m[2]!);
    if (!script) continue;
    // The script's own arguments end where the shell starts another command, or at `--`
    // (what follows goes to nix).
    const rest = line.slice(m.index! + m[0].length).split(/\s--(?:\s|$)|[|;&<>]/)[0]!;
    const flags = [...rest.matchAll(/(?:^|\s)(--[a-z][a-z-]*)/g)].map((f) => f[1]!);
    uses.push({ page, script, flags, line });
  }
  return uses;
}

const uses = PAGES.flatMap((page) => commandsOf(page).flatMap((line) => usesIn(page, line)));

const helpCache = new Map<string, string>();
function helpOf(script: string): string {
  if (!helpCache.has(script)) {
    const r = Bun.spawnSync(["bun", script, "--help"], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    helpCache.set(script, r.stdout.toString() + r.stderr.toString());
  }
  return helpCache.get(script)!;
}

describe("every page's commands", () => {
  test("the pages show commands for every script an operator runs", () => {
    const scripts = new Set(uses.map((u) => u.script));
    for (const script of ["scripts/build-images.ts", "scripts/publish-release.ts", "scripts/verify-release.ts", "scripts/check-tag.ts", "scripts/promote.ts", "scripts/sync-mirror.ts", "demo/demo.ts"]) {
      expect({ script, shown: scripts.has(script) }).toEqual({ script, shown: true });
    }
    // The runbook's paths and the reference pages are both read.
    for (const page of ["docs/RUNNER_IMAGES.md", "docs/releases.md", "docs/verifying.md", "README.md"]) {
      expect({ page, commands: uses.some((u) => u.page === page) }).toEqual({ page, commands: true });
    }
  });

  test("every flag a page passes to a script is one that script's --help lists", () => {
    for (const { page, script, flags, line } of uses) {
      expect({ page, script, exists: existsSync(join(ROOT, script)) }).toEqual({ page, script, exists: true });
      const help = helpOf(script);
      for (const flag of flags) {
        const listed = help.includes(`${flag} `) || help.includes(`${flag}\n`) || help.includes(`[${flag}]`);
        expect({ page, line, flag, listed }).toEqual({ page, line, flag, listed: true });
      }
    }
  });

  test("every example that publishes a boot-v release by hand signs it: without a key the publisher refuses it", () => {
    const help = helpOf("scripts/publish-release.ts").replace(/\\\n\s*/g, " ").split("\n");
    const examples = [...PAGES.flatMap(commandsOf), ...help].filter((l) => /publish-release\.ts .*--tag boot-v/.test(l));
    expect(examples.length).toBeGreaterThanOrEqual(5);
    for (const line of examples) expect({ line, signs: /--signing-key |--unsigned/.test(line) }).toEqual({ line, signs: true });
  });
});

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
const slug = (heading: string) =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, "")
    .replace(/ /g, "-");

/** The headings of a page, outside code blocks. */
function headingsOf(page: string): string[] {
  const body = (text.get(page) ?? readFileSync(join(ROOT, page), "utf8")).replace(/```[a-z]*\n[\s\S]*?```/g, "");
  return [...body.matchAll(/^#{1,6} (.+)$/gm)].map((m) => m[1]!.trim());
}

describe("recipes the code uses too", () => {
  test("the boot-signing recipe's extensions (docs/ipxe-and-https.md) are nix/boot-pki.cnf, which the iPXE check and the signing tests make their PKI from", () => {
    const recipe = /cat > boot-pki\.cnf <<'CNF'\n([\s\S]*?)\nCNF\n/.exec(text.get("docs/ipxe-and-https.md")!);
    expect(recipe).not.toBeNull();
    expect(`${recipe![1]}\n`).toBe(readFileSync(join(ROOT, "nix", "boot-pki.cnf"), "utf8"));
  });
});

describe("links and cited sections", () => {
  test("every link between the pages lands on a file, and an anchor on a heading of that page", () => {
    let links = 0;
    for (const page of PAGES) {
      const outside = text.get(page)!.replace(/```[a-z]*\n[\s\S]*?```/g, "");
      for (const m of outside.matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = m[1]!;
        if (/^[a-z]+:/.test(target)) continue;
        links++;
        const [file, anchor] = target.split("#") as [string, string | undefined];
        const path = file === "" ? page : relative(ROOT, join(ROOT, dirname(page), file));
        expect({ page, target, exists: existsSync(join(ROOT, path)) }).toEqual({ page, target, exists: true });
        if (anchor !== undefined && path.endsWith(".md")) {
          const found = headingsOf(path).map(slug).includes(anchor);
          expect({ page, target, found }).toEqual({ page, target, found: true });
        }
      }
    }
    expect(links).toBeGreaterThan(20);
  });

  // What the scripts print (`docs/RUNNER_IMAGES.md, "Signing releases"`) and what the Nix files
  // and workflows cite must lead somewhere: a heading of that page holds the quoted name.
  const CITING = [
    ...filesUnder("scripts", [".ts", ".sh"]),
    ...filesUnder("nix", [".nix", ".sh"]),
    ...filesUnder(".forgejo", [".yml"]),
    ...filesUnder("demo", [".ts"]),
    ...filesUnder("tests", [".ts", ".nix"]).filter((f) => f !== relative(ROOT, import.meta.path)),
    "flake.nix",
    ...PAGES,
  ];
  const citations = CITING.flatMap((file) =>
    [...readFileSync(join(ROOT, file), "utf8").matchAll(/docs\/([\w./-]+\.md),? "([^"]+)"/g)].map((m) => ({ file, page: `docs/${m[1]!}`, section: m[2]! })),
  );

  test("every `docs/<page>.md, \"<section>\"` cited in the code names a heading of that page", () => {
    expect(citations.length).toBeGreaterThanOrEqual(5);
    for (const { file, page, section } of citations) {
      const found = existsSync(join(ROOT, page)) && headingsOf(page).some((h) => h.includes(section));
      expect({ file, page, section, found }).toEqual({ file, page, section, found: true });
    }
  });
});
