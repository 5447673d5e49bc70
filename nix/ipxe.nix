# The trust-enforcing iPXE: nixpkgs' ipxe with the fleet's boot root trusted and an embedded
# script that boots only signed boot files (docs/ipxe-and-https.md, "The trust-enforcing iPXE").
#
# nixpkgs pkgs/by-name/ip/ipxe/package.nix (read at commit 00e6b22b, per helper notes
# /tmp/research/ipxe.md; the flake's pin b18a4b90 was not in the index, so unchecked there):
#   - arguments embedScript (a file: EMBED=), additionalOptions (appended to enabledOptions,
#     each `#define`d at the end of src/config/general.h, after its pcbios `#undef` of HTTPS),
#     additionalTargets (attrset: make target -> name in $out, null = same name);
#   - enabledOptions already hold IMAGE_TRUST_CMD and DOWNLOAD_PROTO_HTTPS; they are listed here
#     again so this file says what it relies on (a repeated #define of the same macro is harmless);
#   - makeFlags has no TRUST= or CERT=: appended with overrideAttrs. iPXE's Makefile.housekeeping
#     turns each TRUST= PEM into its SHA-256 fingerprint (the only roots iPXE then trusts, for
#     imgverify and TLS alike) and CERT= embeds the certificates themselves (iPXE 0ab2277c).
#   - default x86_64 outputs include bin/undionly.kpxe, bin-x86_64-efi/ipxe.efi, bin/ipxe.iso,
#     bin/ipxe.usb; snponly.efi is not among them, so it is added.
{
  pkgs,
  lib,
  # PEM file with the fleet's boot root(s); null: evaluation fails saying what to set
  bootRoot,
  # URL of the release (or mirror channel) iPXE script; null: evaluation fails likewise
  bootUrl,
  # the code-signing certificate's commonName, pinned with imgverify --signer (null: any under the root)
  signerName ? null,
  # kernel parameters the release script appends as ${cmdline}, e.g. runner.config_url=https://...
  cmdline ? null,
  arch ? "x86_64",
}:
let
  missing =
    what: set:
    throw "ipxe-${arch}: no ${what} configured: ${set} (docs/ipxe-and-https.md, \"The trust-enforcing iPXE\")";
  root = if bootRoot == null then missing "boot root" "commit the fleet's root certificate (PEM) as nix/boot-root.pem" else bootRoot;
  url =
    if bootUrl == null then
      missing "boot URL" "write the boot script's URL as the one line of nix/boot-url"
    else if builtins.match "https?://[^ \t\n${"$"}{}]+" bootUrl == null then
      throw "ipxe-${arch}: nix/boot-url is not an http(s) URL without spaces or iPXE variables: ${bootUrl}"
    else
      bootUrl;
  signer = lib.optionalString (signerName != null) "--signer ${signerName} ";
  # Every failure ends in poweroff: returning to the firmware would boot the next device, e.g. a
  # plain NIC ROM that boots whatever DHCP offers (boot-tested by hand, per helper notes).
  # imgfree first: ipxe.efi may have registered autoexec.ipxe, which would reach the kernel.
  # runner_images_verify tells the release script to verify (scripts/lib/build/ipxe-script.ts).
  embedScript = pkgs.writeText "runner-images-boot.ipxe" (
    ''
      #!ipxe
      echo runner-images: trust-enforcing iPXE, booting ${url}
      dhcp || goto refused
      imgtrust --permanent || goto refused
      set runner_images_verify 1
    ''
    + lib.optionalString (cmdline != null) ''
      set cmdline ${cmdline}
    ''
    + ''
      imgfree
      imgfetch --name boot.ipxe ${url} || goto refused
      imgverify ${signer}boot.ipxe ${url}.sig || goto refused
      chain boot.ipxe || goto refused
      :refused
      echo runner-images: boot refused, not falling back; powering off
      poweroff
    ''
  );
  targets =
    {
      x86_64 = {
        "bin-x86_64-efi/snponly.efi" = null;
      };
      arm64 = {
        "bin-arm64-efi/snponly.efi" = null;
      };
    }
    .${arch};
in
(pkgs.ipxe.override {
  inherit embedScript;
  additionalOptions = [
    "DOWNLOAD_PROTO_HTTPS"
    "IMAGE_TRUST_CMD"
    "POWEROFF_CMD"
  ];
  additionalTargets = targets;
}).overrideAttrs
  (old: {
    makeFlags = old.makeFlags ++ [
      "TRUST=${root}"
      "CERT=${root}"
    ];
    passthru = (old.passthru or { }) // {
      runnerImages = { inherit embedScript url; };
    };
  })
