/**
 * scripts/lib/build/boot-numbers.ts: the numbers the Forgejo boot test records
 * ($out/boot-numbers.json, nix/forgejo-boot-test.nix), as the release notes show them. What an
 * operator notices: the notes say how long a machine takes to be online and how much RAM it
 * used, and a file that is not such a record never becomes a table of nonsense.
 */
import { expect, test } from "bun:test";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { bootNumbersNotes, parseBootNumbers } from "../scripts/lib/build/boot-numbers.ts";
import { ROOT } from "./support/run.ts";

const RECORDED = {
  target: "netboot-x86_64",
  memoryMiB: 3072,
  initrdBytes: 943718400,
  powerOnToShellSeconds: 71.2,
  powerOnToRunnerOnlineSeconds: 84,
  powerOnToFirstStepSeconds: 90.5,
  powerOnToRebootSeconds: 101.25,
  peakMemoryKiB: 1572864,
};

test("the release notes give every time, the initrd size and the peak memory", () => {
  const notes = bootNumbersNotes(parseBootNumbers(JSON.stringify(RECORDED), "boot-numbers.json"));
  expect(notes).toContain("### Boot numbers (netboot-x86_64, measured by the Forgejo boot test on its instrumented build)");
  expect(notes).toContain("| power-on to the runner online | 84.0 s |");
  expect(notes).toContain("| power-on to a job's first step | 90.5 s |");
  expect(notes).toContain("| power-on to the reboot after a host job | 101.3 s |");
  expect(notes).toContain("| initrd the test booted (instrumented) | 900 MiB |");
  expect(notes).toContain("| peak memory in use (of 3072 MiB) | 1536 MiB |");
});

test("a number the test did not record (no sample before the reboot) is left out, not shown as 0", () => {
  const notes = bootNumbersNotes(parseBootNumbers(JSON.stringify({ ...RECORDED, peakMemoryKiB: null, powerOnToRebootSeconds: undefined }), "f"));
  expect(notes).not.toContain("peak memory");
  expect(notes).not.toContain("reboot");
});

test("a file that is not a record of boot numbers is refused, naming the field", () => {
  expect(() => parseBootNumbers("{", "b.json")).toThrow("b.json is not JSON");
  expect(() => parseBootNumbers(JSON.stringify({ ...RECORDED, initrdBytes: "900 MiB" }), "b.json")).toThrow("initrdBytes is not a whole number");
  // numbers no machine has, which would print as 1e+21 s or Infinity MiB
  expect(() => parseBootNumbers(JSON.stringify({ ...RECORDED, powerOnToShellSeconds: 1e21 }), "b.json")).toThrow("powerOnToShellSeconds is not a number of seconds under a day");
  expect(() => parseBootNumbers(JSON.stringify({ ...RECORDED, peakMemoryKiB: 1e300 }), "b.json")).toThrow("peakMemoryKiB is not a whole number");
  expect(() => parseBootNumbers(JSON.stringify({ ...RECORDED, memoryMiB: 1e-7 }), "b.json")).toThrow("memoryMiB is not a whole number");
  expect(() => parseBootNumbers(JSON.stringify({ ...RECORDED, powerOnToShellSeconds: -1 }), "b.json")).toThrow("powerOnToShellSeconds");
  // a value meant for Markdown (or worse) never passes as a target name
  expect(() => parseBootNumbers(JSON.stringify({ ...RECORDED, target: "x | <script>" }), "b.json")).toThrow("target is not a target name");
  expect(() => parseBootNumbers(JSON.stringify({ ...RECORDED, note: "hi" }), "b.json")).toThrow("fields no boot test writes: note");
});

test("every field the Forgejo boot test writes is one the notes know", async () => {
  const script = await readFile(join(ROOT, "nix", "forgejo-boot-test.nix"), "utf8");
  const written = new Set([...script.matchAll(/numbers\["(\w+)"\]/g)].map((m) => m[1]!));
  for (const key of script.match(/^\s*numbers = \{(.*)\}$/m)![1]!.matchAll(/"(\w+)":/g)) written.add(key[1]!);
  expect(written.size).toBeGreaterThan(5);
  const record = Object.fromEntries([...written].map((key) => [key, key === "target" ? "netboot-x86_64" : 1]));
  expect(() => parseBootNumbers(JSON.stringify(record), "from the test")).not.toThrow();
});
