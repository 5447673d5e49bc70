/**
 * build-images --boot-numbers: the numbers the Forgejo boot test measured for each netboot
 * target of this build, read from the check's own output (`checks.<system>.forgejo-boot-<target>`,
 * nix/forgejo-boot-test.nix) of the same flake at the same commit, so the release notes can
 * only ever show numbers measured at this commit. The test boots the instrumented sibling of
 * each image (the driver's hooks and its CA added), not the published file: the notes say so.
 * Building the check runs the test (a real
 * Forgejo and a netbooted runner: a Nix runner with KVM); after `nix flake check` it is cached.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Failure } from "../cli/errors.ts";
import { say } from "../cli/log.ts";
import { BootNumbersError, parseBootNumbers, type BootNumbers } from "./boot-numbers.ts";
import { checkNames, nixBuild } from "./nix.ts";
import type { Target } from "./targets.ts";

export const bootCheckName = (target: Pick<Target, "attr">) => `forgejo-boot-${target.attr}`;

export async function bootTestNumbers(flake: string, targets: readonly Target[], extraArgs: string[]): Promise<BootNumbers[]> {
  const netboot = targets.filter((t) => t.image === "netboot");
  const checks = new Map<string, Set<string>>();
  for (const system of new Set(netboot.map((t) => t.system))) checks.set(system, new Set(await checkNames(flake, system, extraArgs)));
  const measured = netboot.filter((t) => checks.get(t.system)!.has(bootCheckName(t)));
  for (const t of netboot.filter((t) => !measured.includes(t))) say(`no boot numbers for ${t.attr}: the flake has no checks.${t.system}.${bootCheckName(t)}`);
  if (measured.length === 0) return [];

  say(`building ${measured.map(bootCheckName).join(", ")} for the boot numbers (the Forgejo boot test; cached after nix flake check)`);
  const built = await nixBuild(flake, measured.map((t) => ({ attr: bootCheckName(t), system: t.system })), extraArgs, "checks");
  return Promise.all(
    measured.map(async (target, i) => {
      const file = join(built[i]!.storePath, "boot-numbers.json");
      const text = await readFile(file, "utf8").catch(() => {
        throw new Failure(`${bootCheckName(target)} built, but its output has no boot-numbers.json (${file})`);
      });
      try {
        const numbers = parseBootNumbers(text, file);
        // Bound to the target asked for, not to what the file says it is.
        if (numbers.target !== target.attr) throw new BootNumbersError(`${file} is for ${numbers.target}, not ${target.attr}`);
        return numbers;
      } catch (error) {
        if (error instanceof BootNumbersError) throw new Failure(error.message);
        throw error;
      }
    }),
  );
}
