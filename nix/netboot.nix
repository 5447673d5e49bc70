# Netboot image: kernel + initrd (with the whole Nix store as a squashfs inside) + iPXE script.
# The flake turns system.build.{kernel,netbootRamdisk,netbootIpxeScript} into one directory
# whose entries are the "files" sources of the netboot row in scripts/lib/targets.json.
{ lib, modulesPath, ... }:
{
  imports = [
    # nixpkgs nixos/modules/installer/netboot/netboot.nix: tmpfs root, squashfs store in the
    # initrd, system.build.netbootRamdisk / netbootIpxeScript. Imported directly rather than
    # netboot-minimal.nix, which drags in installation-device.nix (autologin, channel, ...).
    "${modulesPath}/installer/netboot/netboot.nix"
    "${modulesPath}/profiles/minimal.nix"
  ];

  # nixos/modules/hardware/all-hardware.nix (what netboot-base.nix sets): storage and NIC
  # drivers in the initrd for arbitrary bare metal.
  hardware.enableAllHardware = true;

  # Squashfs compression of the store (netboot.nix option). The whole initrd sits in RAM for
  # the machine's lifetime, so size matters more than for the ISO, but zstd-19 is only ~7%
  # larger than xz (847 vs 786 MB in NixOS/nixpkgs#197132) while decompressing several times
  # faster on every cold read of a store path during jobs. The cost, slow compression, is
  # paid once per build in CI. Stay under ~1 GB (EFI-stub highmem limits, #73588) and far
  # under 2 GB (makeInitrdNG/iPXE limits, #203593).
  netboot.squashfsCompression = "zstd -Xcompression-level 19";

  boot.kernelParams = [
    "console=ttyS0,115200n8"
    "console=tty0"
  ];
}
