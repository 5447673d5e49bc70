/**
 * The command line, the same for every script: flags are strict (an unknown flag, a stray
 * argument or a missing value is a usage error), every value stays the string the operator typed,
 * and --help prints the spec's usage, flags and sections.
 */
import { cac } from "cac";
import { UsageError } from "./errors.ts";
import { setDebug } from "./log.ts";

export interface Flag {
  /** Long name without dashes, e.g. "out". */
  name: string;
  /** Placeholder for a flag that takes a value, e.g. "dir"; absent for a boolean switch. */
  value?: string;
  description: string;
  /** May be given several times; the values are collected in order. */
  repeatable?: boolean;
  /** Must be given when run by hand (CI supplies it): unbracketed in the usage line, marked in the list. */
  requiredByHand?: boolean;
}

export interface CommandSpec {
  /** Script name as the operator types it, e.g. "build-images.ts". */
  name: string;
  /** One line: what the script does. */
  summary: string;
  flags: Flag[];
  /** Shown as the usage's tail, e.g. "[-- <nix build args>]"; without it, `--` is refused. */
  passThrough?: string;
  /** Extra help sections: environment variables, exit codes, examples. */
  sections?: { title: string; body: string }[];
}

export type FlagValues = Record<string, string | string[] | boolean | undefined>;

export interface CommandLine {
  flags: FlagValues;
  /** Arguments after `--`, passed through untouched. */
  passThrough: string[];
}

/**
 * cac's parser (mri) turns any number-like value into a number before we see it: `--title 1.10`
 * would arrive as 1.1 and `--tag 007` as 7. Values of flags that take one are marked with this
 * prefix before parsing, so mri leaves them alone, and unmarked afterwards.
 */
const KEEP_STRING = "\u0001";

function protectValues(argv: string[], valueFlags: Set<string>): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") {
      out.push(...argv.slice(i));
      break;
    }
    const eq = arg.indexOf("=");
    const name = arg.startsWith("--") ? arg.slice(2, eq === -1 ? undefined : eq) : "";
    if (!valueFlags.has(name)) {
      out.push(arg);
    } else if (eq !== -1) {
      out.push(`${arg.slice(0, eq + 1)}${KEEP_STRING}${arg.slice(eq + 1)}`);
    } else {
      out.push(arg);
      const next = argv[i + 1];
      // A negative number is a value (`--keep-dev -1`), not an unknown flag `-1`.
      if (next !== undefined && (!next.startsWith("-") || /^-\d/.test(next))) {
        out.push(KEEP_STRING + next);
        i++;
      }
    }
  }
  return out;
}

function unprotect(value: unknown): unknown {
  if (typeof value === "string") return value.startsWith(KEEP_STRING) ? value.slice(1) : value;
  if (Array.isArray(value)) return value.map(unprotect);
  return value;
}

const camel = (name: string) => name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/**
 * The usage line: the flags required by hand first, bare; the others in brackets; wrapped under
 * cac's "  $ <name> " prefix.
 */
function usageLine(spec: CommandSpec): string {
  const shown = (f: Flag) => `--${f.name}${f.value ? ` <${f.value}>` : ""}${f.repeatable ? "..." : ""}`;
  const words = [
    ...spec.flags.filter((f) => f.requiredByHand).map(shown),
    ...spec.flags.filter((f) => !f.requiredByHand).map((f) => `[${shown(f)}]`),
    ...(spec.passThrough ? [spec.passThrough] : []),
  ];
  const indent = " ".repeat(spec.name.length + 5);
  const lines: string[] = [];
  let line = "";
  for (const word of words) {
    if (line && spec.name.length + 5 + line.length + word.length > 100) {
      lines.push(line);
      line = "";
    }
    line = line ? `${line} ${word}` : word;
  }
  lines.push(line);
  return lines.join(`\n${indent}`);
}

/**
 * Parses the command line strictly. Prints help and returns null for --help. Throws UsageError
 * for anything cac would otherwise accept silently or coerce.
 */
export function parseCommandLine(spec: CommandSpec, argv: string[] = process.argv.slice(2)): CommandLine | null {
  const cli = cac(spec.name);
  const command = cli.command("", spec.summary);
  for (const flag of spec.flags) {
    const marked = flag.requiredByHand ? `[required by hand] ${flag.description}` : flag.description;
    command.option(`--${flag.name}${flag.value ? ` <${flag.value}>` : ""}`, marked);
  }
  command.action(() => {});
  command.usage(usageLine(spec));
  // A script is one command: drop cac's sections about sub-commands; no line ends in spaces.
  cli.help((sections) => {
    const [title, ...rest] = sections.filter((s) => s.title !== "Commands" && !s.title?.startsWith("For more info"));
    return [title!, { body: spec.summary }, ...rest, ...(spec.sections ?? [])].map((s) => ({ ...s, body: s.body.replace(/[ \t]+$/gm, "") }));
  });

  const valueFlags = new Set(spec.flags.filter((f) => f.value).map((f) => f.name));
  const dashDash = argv.indexOf("--");
  if (dashDash !== -1 && !spec.passThrough) {
    throw new UsageError(`unexpected "--": ${spec.name} passes no arguments through`);
  }
  try {
    cli.parse(["bun", spec.name, ...protectValues(argv, valueFlags)], { run: false });
    if (cli.options.help) return null;
    cli.runMatchedCommand();
  } catch (error) {
    if (error instanceof Error && error.name === "CACError") {
      const message = error.message.replace(/`/g, "").replace(/\.$/, "").replace(/^Unused args: /, "unexpected argument: ");
      throw new UsageError(message.charAt(0).toLowerCase() + message.slice(1));
    }
    throw error;
  }

  const flags: FlagValues = {};
  for (const flag of spec.flags) {
    const raw = unprotect(cli.options[camel(flag.name)]);
    if (raw === undefined) continue;
    if (flag.value) {
      const values = (Array.isArray(raw) ? raw : [raw]).map(String);
      if (values.some((v) => v === "" || v === "true")) {
        throw new UsageError(`--${flag.name} needs a value: --${flag.name} <${flag.value}>`);
      }
      if (!flag.repeatable && values.length > 1) throw new UsageError(`--${flag.name} given more than once`);
      flags[flag.name] = flag.repeatable ? values : values[0];
    } else {
      if (typeof raw !== "boolean") throw new UsageError(`--${flag.name} takes no value`);
      flags[flag.name] = raw;
    }
  }
  if (flags.debug === true) setDebug(true);
  return { flags, passThrough: dashDash === -1 ? [] : argv.slice(dashDash + 1) };
}
