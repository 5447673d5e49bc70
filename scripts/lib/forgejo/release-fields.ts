/** What the release says: its title, its notes (generated from the manifest unless a file is given), prerelease or not. */
import { readFile } from "node:fs/promises";
import { UsageError } from "../cli/errors.ts";
import { formatBytes } from "../cli/log.ts";
import { bootNumbersNotes } from "../build/boot-numbers.ts";
import { SUMS_FILE, type Manifest } from "../build/manifest.ts";
import { isPrereleaseTag } from "../trust/tags.ts";

export interface ReleaseFields {
  title: string;
  notes: string;
  prerelease: boolean;
}

/** `repoUrl`: the repository's page, where its release downloads live. */
export async function releaseFields(
  given: { title?: string; notesFile?: string; prerelease: boolean },
  manifest: Manifest,
  tag: string,
  repoUrl: string,
): Promise<ReleaseFields> {
  const title = given.title ?? `Runner images ${tag}`;
  const titleBytes = Buffer.byteLength(title);
  // Forgejo cuts a longer title to 252 bytes and "…" (SplitStringAtByteN; forgejo-release-api.md §15a).
  if (titleBytes > 255) throw new UsageError(`--title is ${titleBytes} bytes; Forgejo keeps 255 (it cuts longer titles): shorten it`);
  const notesFile = given.notesFile;
  const notes = notesFile
    ? await readFile(notesFile, "utf8").catch(() => {
        throw new UsageError(`--notes-file ${notesFile} cannot be read`);
      })
    : defaultNotes(manifest, tag, repoUrl);
  return { title, notes, prerelease: given.prerelease || isPrereleaseTag(tag) };
}

function defaultNotes(manifest: Manifest, tag: string, repoUrl: string): string {
  const nixpkgs = manifest.inputs.nixpkgs;
  const base = `${repoUrl}/releases/download/${tag}`;
  const lines = [
    `Forgejo runner boot images built from ${manifest.source.commit}${manifest.source.dirty ? " with uncommitted changes" : ""}.`,
    "",
    nixpkgs ? `nixpkgs: ${nixpkgs.rev ?? "?"} (${nixpkgs.narHash})` : "",
    manifest.ci ? `Built by ${manifest.ci.server}/${manifest.ci.repository}/actions/runs/${manifest.ci.runNumber}` : "Built by hand.",
    "",
    "| file | size | SHA-256 |",
    "| --- | --- | --- |",
    ...manifest.artifacts.map((a) => `| ${a.name} | ${formatBytes(a.size)} | \`${a.sha256}\` |`),
    "",
    `Verify a download: \`sha256sum -c ${SUMS_FILE}\` next to the files.`,
    ...manifest.artifacts.filter((a) => a.name.endsWith(".ipxe")).map((a) => `Boot over the network: \`chain ${base}/${a.name}\``),
    // What the Forgejo boot test measured on these images (build-images --boot-numbers).
    ...(manifest.bootNumbers ?? []).flatMap((numbers) => ["", bootNumbersNotes(numbers)]),
  ];
  return lines.filter((l, i) => l !== "" || lines[i - 1] !== "").join("\n");
}
