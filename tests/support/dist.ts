/**
 * A dist directory as build-images.ts writes it, made directly (no nix): the real release
 * names, small files with distinct contents, SHA256SUMS and manifest.json through the same
 * lib code. Publisher tests use it so they test publishing, not building.
 */
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hashBytes } from "../../scripts/lib/build/hash.ts";
import { MANIFEST_SCHEMA_VERSION, writeManifest, type Manifest } from "../../scripts/lib/build/manifest.ts";
import { TARGETS } from "../../scripts/lib/build/targets.ts";

export interface DistOptions {
  commit: string;
  dirty?: boolean;
  /** Changes every file's bytes (same sizes): "the same release names, another build". */
  flavour?: string;
  /** Size of the ISO; the other files are smaller. */
  isoBytes?: number;
  /** The CI run that built it: the signed statement then names that server's repository. */
  ci?: Manifest["ci"];
}

function content(name: string, size: number, flavour: string): Uint8Array {
  const seed = new TextEncoder().encode(`${flavour}:${name}:`);
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = seed[i % seed.length]! ^ (i & 0xff);
  return out;
}

export async function makeDist(options: DistOptions): Promise<{ dir: string; manifest: Manifest }> {
  const dir = await mkdtemp(join(tmpdir(), "runner-images-dist-"));
  const flavour = options.flavour ?? "a";
  const artifacts: Manifest["artifacts"] = [];
  for (const target of TARGETS) {
    for (const file of target.files) {
      const size = file.name.endsWith(".iso") ? (options.isoBytes ?? 3 * 1024 * 1024 + 17) : file.name.endsWith(".ipxe") ? 300 : 200_000;
      const bytes = content(file.name, size, flavour);
      await Bun.write(join(dir, file.name), bytes);
      artifacts.push({
        name: file.name, target: target.attr, source: file.source, size, sha256: hashBytes(bytes),
        storePath: `/nix/store/${"0".repeat(32)}-${target.attr}`, drvPath: `/nix/store/${"1".repeat(32)}-${target.attr}.drv`,
      });
    }
  }
  const manifest: Manifest = {
    schemaVersion: MANIFEST_SCHEMA_VERSION,
    version: `dev-${options.commit.slice(0, 12)}`,
    source: { commit: options.commit, dirty: options.dirty ?? false, flake: "git+file:///src/runner-images" },
    inputs: { nixpkgs: { type: "github", owner: "NixOS", repo: "nixpkgs", rev: "b18a4b905f8d028dc4476412e6d6891728695379", narHash: "sha256-gwrPcFf/rDjHPaVflbDZ040ZDmBTRj/7+s8ZmE2SaIM=", lastModified: 1787101114 } },
    nix: { version: "2.8.0", system: "x86_64-linux" },
    builtAt: new Date().toISOString(),
    ci: options.ci ?? null,
    artifacts,
  };
  await writeManifest(dir, manifest);
  return { dir, manifest };
}
