/**
 * A fresh git repository holding tests/fixtures/flake: the real target table, a variant that
 * says which failure to simulate, and one commit. Nix sees a git flake exactly as it sees the
 * real repository.
 */
import { $ } from "zx/core";
import { chmod, cp, mkdtemp, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT } from "./run.ts";

export type Variant = "ok" | "build-fails" | "no-ipxe" | "two-isos" | "slow" | "bootable" | "lying-numbers";

/** For "bootable": the kernel and initrd the netboot target publishes (netboot-vm.ts makes them). */
export interface BootFiles {
  kernel: string;
  initrd: string;
}

export interface Fixture {
  /** The flake directory (a git repository). */
  dir: string;
  /** Full SHA of its only commit. */
  commit: string;
  /** A scratch directory next to it, for --out and the like. */
  scratch: string;
  /** For "slow": appears when the slow build has started. */
  startedMarker: string;
  nonce: string;
}

/** Extra nix arguments every test build passes: offline, and builders may use the host's /bin/sh. */
export const OFFLINE = ["--", "--option", "substituters", "", "--option", "sandbox", "false"];

export interface FixtureOptions {
  /** Required for "bootable". */
  boot?: BootFiles;
  /** Where to create the scratch directory (default: the system's temporary directory). */
  parent?: string;
}

export async function makeFixture(variant: Variant = "ok", { boot, parent = tmpdir() }: FixtureOptions = {}): Promise<Fixture> {
  const scratch = await mkdtemp(join(parent, "runner-images-test-"));
  const dir = join(scratch, "flake");
  await mkdir(dir);
  await cp(join(ROOT, "tests", "fixtures", "flake"), dir, { recursive: true });
  await cp(join(ROOT, "scripts", "lib", "build", "targets.json"), join(dir, "targets.json"));
  const nonce = `${Date.now()}-${Math.random().toString(36).slice(2)}`;
  // The builder runs as a nixbld user: the marker directory must be writable by it.
  const markers = join(scratch, "markers");
  await mkdir(markers);
  await chmod(markers, 0o777);
  await chmod(scratch, 0o755);
  const startedMarker = join(markers, "started");
  await Bun.write(join(dir, "variant.json"), JSON.stringify({ name: variant, nonce, startedMarker }));
  if (variant === "bootable") {
    if (!boot) throw new Error("the bootable fixture needs its kernel and initrd");
    await mkdir(join(dir, "boot"));
    await cp(boot.kernel, join(dir, "boot", "bzImage"));
    await cp(boot.initrd, join(dir, "boot", "initrd"));
  }
  const git = $({ cwd: dir, quiet: true });
  await git`git init -q -b main`;
  await git`git add -A`;
  await git`git -c user.name=test -c user.email=test@invalid commit -qm fixture`;
  const commit = (await git`git rev-parse HEAD`).stdout.trim();
  return { dir, commit, scratch, startedMarker, nonce };
}
