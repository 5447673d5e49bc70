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
 *
 * The rewritten script also verifies what it loads, for the trust-enforcing iPXE (nix/ipxe.nix):
 * `imgverify <image> <file>.sig` for the kernel and every initrd, just before `boot`. iPXE's
 * permanent trust policy checks only images it executes (core/image.c image_exec), never an
 * initrd, so the script must verify each one itself (iPXE 0ab2277c, per helper notes
 * /tmp/research/ipxe.md). `imgverify` finds an image by its exact name (usr/imgmgmt.c
 * imgacquire; otherwise it downloads a fresh copy and verifies that), so the line names the
 * image as loaded (`--name`, else the file name), and the .sig by a relative URL, resolved
 * against the script's own URL as the kernel and initrd are.
 *
 * Verification runs when the iPXE says it enforces trust: the flake's iPXE (nix/ipxe.nix) sets
 * `runner_images_verify` in its embedded script before it chains this one. An iPXE without it
 * (a NIC ROM, Debian's, nixpkgs' stock build, which has the commands but trusts only iPXE's own
 * CA) loads and boots unverified: the plain chain, kept as the fallback it is. Nothing on the
 * network can clear a variable the embedded script set (DHCP delivers numbered options, not
 * named script variables), and even if it could, that iPXE's permanent policy still refuses an
 * unverified kernel. On the enforcing iPXE the script first runs `imgfree`, dropping every image
 * registered before it (ipxe.efi's autoexec.ipxe, an unsigned initrd an operator script
 * loaded), which iPXE would otherwise hand to the kernel unverified (the running script itself
 * is unregistered while it runs, core/image.c image_exec).
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
  /** [image name, release file] of each image the script loads, to verify before boot. */
  const loaded: [string, string][] = [];
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
    const nameAt = words.findIndex((w, i) => i < at && (w === "--name" || w === "-n"));
    const named = words.slice(1, at).find((w) => w.startsWith("--name="))?.slice("--name=".length);
    loaded.push([nameAt > 0 ? words[nameAt + 1]! : (named ?? words[at]!), words[at]!]);
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
  const boot = lines.findIndex((line) => line.trim().split(/\s+/)[0] === "boot");
  if (boot === -1) throw new IpxeScriptError("the netboot script has no boot line to verify its images before");
  const verify = loaded.map(([image, file]) => `imgverify ${image} ${file}${SIGNATURE_SUFFIX} || goto refused`);
  lines.splice(boot, 0, `isset \${${VERIFY_VARIABLE}} || goto unverified_boot`, ...verify, ":unverified_boot");
  lines.splice(1, 0, `isset \${${VERIFY_VARIABLE}} || goto unverified_load`, "imgfree", ":unverified_load");
  return lines.join("\n").replace(/\n*$/, `\n${REFUSED}`);
}

/** Set by the trust-enforcing iPXE's embedded script (nix/ipxe.nix), never by a plain one. */
export const VERIFY_VARIABLE = "runner_images_verify";
/** The .sig next to each boot file (trust/boot-signing.ts writes them). */
const SIGNATURE_SUFFIX = ".sig";
/** After a refused image: say so and stop, not fall through to boot or to another boot device. */
const REFUSED = ["exit 0", ":refused", "echo runner-images: a boot file failed its signature check; not booting", "poweroff || exit 1", ""].join("\n");
