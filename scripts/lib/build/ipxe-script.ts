/**
 * Rewrites the iPXE script nixpkgs generates so it names the release files.
 *
 * nixpkgs writes `kernel bzImage init=… initrd=initrd …` and `initrd initrd`: file names relative
 * to the script's own URL (nixos-images.md §4). The release publishes them as bzImage-x86_64 and
 * initrd-x86_64, so both lines are rewritten to those names, still relative: chaining
 * <server>/<owner>/<repo>/releases/download/<tag>/netboot-x86_64.ipxe then fetches the kernel and
 * initrd of the same release, whatever the server and tag. `initrd=` on the kernel command line
 * must name the initrd as iPXE loaded it (the EFI stub looks it up by that name), so it is
 * renamed too.
 */

export class IpxeScriptError extends Error {}

/** iPXE image-command options that take a separate value (`--name=x` needs no entry). */
const VALUE_OPTIONS = new Set(["--name", "-n", "--timeout", "-t"]);

/**
 * @param script the generated script
 * @param renames source file name → release name (the target's files)
 */
export function rewriteIpxeScript(script: string, renames: ReadonlyMap<string, string>): string {
  if (!script.startsWith("#!ipxe")) throw new IpxeScriptError("the netboot script does not start with #!ipxe");
  let kernels = 0;
  let initrds = 0;
  const rename = (file: string, command: string) => {
    const name = renames.get(file);
    if (!name) throw new IpxeScriptError(`the netboot script's ${command} line loads "${file}", which the release does not publish`);
    return name;
  };
  const lines = script.split("\n").map((line) => {
    const words = line.trim().split(/\s+/);
    const command = words[0];
    if (command !== "kernel" && command !== "initrd") return line;
    // The file is the first argument that is neither an option nor an option's value.
    let at = 1;
    while (at < words.length && words[at]!.startsWith("-")) at += VALUE_OPTIONS.has(words[at]!) ? 2 : 1;
    if (at >= words.length) at = -1;
    if (at === -1) throw new IpxeScriptError(`the netboot script has a ${command} line without a file`);
    words[at] = rename(words[at]!, command);
    if (command === "kernel") {
      kernels++;
      for (let i = at + 1; i < words.length; i++) {
        const m = /^initrd=(.+)$/.exec(words[i]!);
        if (m) words[i] = `initrd=${rename(m[1]!, "kernel initrd=")}`;
      }
    } else {
      initrds++;
    }
    return words.join(" ");
  });
  if (kernels !== 1 || initrds < 1) {
    throw new IpxeScriptError(`the netboot script has ${kernels} kernel and ${initrds} initrd lines; expected one of each`);
  }
  return lines.join("\n");
}
