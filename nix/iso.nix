# ISO image, bootable from CD or from a USB stick it is written to, with BIOS and UEFI.
{
  config,
  lib,
  modulesPath,
  ...
}:
{
  imports = [
    # nixpkgs nixos/modules/installer/cd-dvd/iso-image.nix, imported directly rather than
    # installation-cd-minimal.nix (installer tooling, autologin, channel).
    "${modulesPath}/installer/cd-dvd/iso-image.nix"
    "${modulesPath}/profiles/minimal.nix"
  ];

  options.runnerImage.isoBaseName = lib.mkOption {
    type = lib.types.str;
    description = ''
      File name of the ISO without ".iso". No default: the flake sets it from
      scripts/lib/targets.json (nix/targets.nix), the only place the name is spelled.
    '';
  };

  config = {
    # iso-image.nix sets image.baseName at normal priority and names the file
    # "${image.baseName}.iso" (make-iso9660-image.nix isoName), so only mkForce renames the
    # file; setting image.fileName would rename nothing.
    image.baseName = lib.mkForce config.runnerImage.isoBaseName;

    # iso-image.nix defaults both to false (installation-cd-base.nix turns them on);
    # makeBiosBootable already defaults to true on x86.
    isoImage.makeEfiBootable = true;
    isoImage.makeUsbBootable = true;
    isoImage.appendToMenuLabel = " Forgejo runner";

    # Squashfs compression of the store (iso-image.nix option; this is its default, kept
    # explicit for the reason): the ISO is read from the medium on demand, so size only
    # costs download and stick space; zstd-19 decompresses fast (boot 10 s vs 29 s for xz on
    # the graphical ISO, NixOS/nixpkgs#338652) at the price of a slower build, paid once in CI.
    isoImage.squashfsCompression = "zstd -Xcompression-level 19";

    hardware.enableAllHardware = true;

    boot.kernelParams = [
      "console=ttyS0,115200n8"
      "console=tty0"
    ];
  };
}
