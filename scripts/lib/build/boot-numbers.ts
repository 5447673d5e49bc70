/**
 * The numbers an operator feels, as checks.x86_64-linux.forgejo-boot-<target> records them
 * (nix/forgejo-boot-test.nix writes $out/boot-numbers.json; docs/testing.md says what each is),
 * read back and written as a release-notes section. The file comes from a build: every value is
 * checked to be what it claims (a number, a target name) before it reaches Markdown, and a file
 * that is not such a record is an error, not half a table.
 */

export interface BootNumbers {
  target: string;
  memoryMiB: number;
  initrdBytes: number;
  powerOnToShellSeconds?: number;
  powerOnToRunnerOnlineSeconds?: number;
  powerOnToFirstStepSeconds?: number;
  powerOnToRebootSeconds?: number;
  peakMemoryKiB?: number | null;
}

export class BootNumbersError extends Error {}

const TIMES = [
  ["powerOnToShellSeconds", "power-on to a shell"],
  ["powerOnToRunnerOnlineSeconds", "power-on to the runner online"],
  ["powerOnToFirstStepSeconds", "power-on to a job's first step"],
  ["powerOnToRebootSeconds", "power-on to the reboot after a host job"],
] as const;
const KEYS = new Set(["target", "memoryMiB", "initrdBytes", "peakMemoryKiB", ...TIMES.map(([key]) => key)]);

/** A count (bytes, MiB, KiB): a whole number a machine could have; a time: under a day. */
const isCount = (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) >= 0 && (value as number) < 2 ** 50;
const isSeconds = (value: unknown): value is number => typeof value === "number" && Number.isFinite(value) && value >= 0 && value < 86400;

/** Parses and checks boot-numbers.json; `file` names it in the error. */
export function parseBootNumbers(text: string, file: string): BootNumbers {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new BootNumbersError(`${file} is not JSON`);
  }
  return checkBootNumbers(value, file);
}

/** Checks a parsed record (from the file, or as manifest.json carries it); `where` names it. */
export function checkBootNumbers(value: unknown, where: string): BootNumbers {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new BootNumbersError(`${where} is not a record of boot numbers`);
  const record = value as Record<string, unknown>;
  const unknown = Object.keys(record).filter((key) => !KEYS.has(key));
  if (unknown.length) throw new BootNumbersError(`${where} has fields no boot test writes: ${unknown.join(", ")}`);
  if (typeof record.target !== "string" || !/^[a-z0-9][a-z0-9_-]{0,63}$/.test(record.target)) throw new BootNumbersError(`${where}: target is not a target name`);
  for (const key of ["memoryMiB", "initrdBytes"]) if (!isCount(record[key])) throw new BootNumbersError(`${where}: ${key} is not a whole number`);
  for (const [key] of TIMES) if (record[key] !== undefined && !isSeconds(record[key])) throw new BootNumbersError(`${where}: ${key} is not a number of seconds under a day`);
  if (record.peakMemoryKiB !== undefined && record.peakMemoryKiB !== null && !isCount(record.peakMemoryKiB)) throw new BootNumbersError(`${where}: peakMemoryKiB is not a whole number`);
  return record as unknown as BootNumbers;
}

const mib = (bytes: number) => `${(bytes / 1048576).toFixed(0)} MiB`;

/** A Markdown section for the release notes: one row per number the test recorded. */
export function bootNumbersNotes(numbers: BootNumbers): string {
  const rows: [string, string][] = [];
  for (const [key, what] of TIMES) {
    const seconds = numbers[key];
    if (seconds !== undefined) rows.push([what, `${seconds.toFixed(1)} s`]);
  }
  // The test boots the instrumented sibling of the published image (test driver hooks and the
  // test's CA added), so its initrd is not the published file: the table above has that one.
  rows.push(["initrd the test booted (instrumented)", mib(numbers.initrdBytes)]);
  if (typeof numbers.peakMemoryKiB === "number") rows.push([`peak memory in use (of ${numbers.memoryMiB} MiB)`, mib(numbers.peakMemoryKiB * 1024)]);
  return [
    `### Boot numbers (${numbers.target}, measured by the Forgejo boot test on its instrumented build)`,
    "",
    "| | |",
    "|---|---|",
    ...rows.map(([what, value]) => `| ${what} | ${value} |`),
    "",
  ].join("\n");
}
