# ISO image, bootable from CD or from a USB stick it is written to, with BIOS and UEFI.
#
# Source read: nixpkgs nixos/modules/installer/cd-dvd/iso-image.nix at a 2025+ revision (the
# one using image.baseName; the search index names no commit; nixos-26.05 itself could not be
# read) and at f519ce0 (older). The 2025+ revision renames isoImage.isoBaseName ->
# image.baseName and isoImage.isoName -> image.fileName (mkRenamedOptionModuleWith,
# sinceRelease = 2505) and imports ../../image/file-options.nix, which declares image.*.
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
    # the initrd budget (runnerImage.initrdBudgetMiB) and the firmware a runner keeps
    ./image-size.nix
  ];

  options.runnerImage.isoBaseName = lib.mkOption {
    type = lib.types.str;
    description = ''
      File name of the ISO without ".iso". No default: the flake sets it from
      scripts/lib/build/targets.json (nix/targets.nix), the only place the name is spelled.
    '';
  };

  config = {
    # iso-image.nix sets image.baseName at normal priority ("nixos[-<edition>]-<label>-<system>")
    # and builds system.build.isoImage with make-iso9660-image.nix { isoName =
    # "${config.image.baseName}.iso"; }, so only mkForce renames the file; setting
    # image.fileName would rename nothing. (nix-community/nixos-images e17386d
    # nix/image-installer/module.nix forces image.baseName the same way.)
    image.baseName = lib.mkForce config.runnerImage.isoBaseName;

    # iso-image.nix defaults both to false (installation-cd-base.nix turns them on);
    # makeBiosBootable defaults to true when build and host platform are x86.
    isoImage.makeEfiBootable = true;
    isoImage.makeUsbBootable = true;
    isoImage.appendToMenuLabel = " Forgejo runner";

    # Squashfs compression of the store (iso-image.nix option, type nullOr str; this is its
    # default in the revision read, kept explicit for the reason): the ISO is read from the
    # medium on demand, so size only costs download and stick space; zstd-19 decompresses
    # fast (boot 10 s vs 29 s for xz on the graphical ISO, NixOS/nixpkgs#338652) at the price
    # of a slower build, paid once in CI.
    isoImage.squashfsCompression = "zstd -Xcompression-level 19";

    # nixos/modules/hardware/all-hardware.nix @ 08783a39; see nix/netboot.nix
    hardware.enableAllHardware = true;

    boot.kernelParams = [
      "console=ttyS0,115200n8"
      "console=tty0"
    ];
  };
}
