#!/usr/bin/env bun
/**
 * bun bench/netboot.ts: how long the netboot chain of tests/netboot-chain.test.ts takes, from
 * QEMU's start to each milestone the serial console shows. The dist (bootable fixture) is built
 * and published once; then the VM boots --runs times (default 3) and the medians are printed.
 * TCG, restrict=on with `cmd:` guestfwd relays (tests/support/netboot-vm.ts). Nothing is
 * asserted: the test checks behaviour, this measures time.
 *
 *   bun bench/netboot.ts [--runs 3]
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { stageNetbootRelease } from "../tests/support/netboot-release.ts";
import { bootChain, DONE_LINE, qemuMissing } from "../tests/support/netboot-vm.ts";
import { median } from "./measure.ts";

const { values: opts } = parseArgs({ options: { runs: { type: "string", default: "3" } } });
const RUNS = Number(opts.runs);

/** Milestones in boot order: the first serial line that matches each. */
const MILESTONES: [string, RegExp][] = [
  ["DHCP done, operator script loaded (TFTP)", /operator\.ipxe : \d+ bytes/],
  // iPXE wraps the URL at 80 columns: the line that ends the release script's download.
  ["release script chained", /^(?!tftp:).*\.ipxe\.\.\. ok/],
  ["kernel and initrd loaded", /initrd-x86_64\.\.\..*ok/],
  ["Linux runs /init", /netboot-fixture: cmdline:/],
  ["runner-secret.sh done (runner.env fetched, credential written)", /netboot-fixture: runner-secret\.sh exit/],
  ["powered off", new RegExp(DONE_LINE)],
];

const missing = qemuMissing();
if (missing) {
  console.error(`cannot boot: ${missing}`);
  process.exit(1);
}

const stage = await stageNetbootRelease(`FORGEJO_RUNNER_SECRET=${"ab".repeat(20)}\nFORGEJO_URL=http://forgejo.invalid\n`);
try {
  const samples: number[][] = MILESTONES.map(() => []);
  for (let run = 1; run <= RUNS; run++) {
    const start = performance.now();
    const seen = new Map<number, number>();
    const result = await bootChain({
      script: stage.script,
      ports: stage.ports,
      workDir: join(stage.scratch, `vm-${run}`),
      onLine: (line) => {
        MILESTONES.forEach(([, pattern], i) => {
          if (!seen.has(i) && pattern.test(line)) seen.set(i, (performance.now() - start) / 1000);
        });
      },
    });
    if (!result.completed) throw new Error(`run ${run}: the VM did not finish; serial console:\n${result.serial}`);
    MILESTONES.forEach((_, i) => samples[i]!.push(seen.get(i) ?? NaN));
    console.error(`run ${run}: ${((performance.now() - start) / 1000).toFixed(1)} s`);
  }

  console.log(`\nnetboot chain under TCG, seconds from QEMU start (median of ${RUNS}; min–max)\n`);
  console.log("| milestone | median | range |\n| --- | --- | --- |");
  MILESTONES.forEach(([name], i) => {
    const s = samples[i]!;
    console.log(`| ${name} | ${median(s).toFixed(1)} | ${Math.min(...s).toFixed(1)}–${Math.max(...s).toFixed(1)} |`);
  });
} finally {
  await stage.stop();
}
