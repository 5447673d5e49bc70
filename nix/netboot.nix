# Netboot image: kernel + initrd (with the whole Nix store as a squashfs inside) + iPXE script.
# The flake turns system.build.{kernel,netbootRamdisk,netbootIpxeScript} into one directory
# whose entries are the "files" sources of the netboot row in scripts/lib/targets.json.
#
# Sources read (nixpkgs through the search index; nixos-26.05 itself could not be read):
# nixos/modules/installer/netboot/netboot.nix at a 2025+ revision (the one importing
# ../../image/file-options.nix; the index names no commit) and at a748ced (older).
{ lib, modulesPath, ... }:
{
  imports = [
    # netboot.nix: tmpfs root, squashfs store in the initrd, system.build.netbootRamdisk
    # (pkgs.makeInitrdNG: the normal initrd + /nix-store.squashfs) and
    # system.build.netbootIpxeScript (pkgs.writeTextDir "netboot.ipxe"). Imported directly
    # rather than netboot-minimal.nix, which drags in installation-device.nix (autologin,
    # channel, ...).
    "${modulesPath}/installer/netboot/netboot.nix"
    # nixos/modules/profiles/minimal.nix (nixpkgs flake.nix @ 02d79c9 evaluates a system from it;
    # nixos-images e17386d nix/kexec-installer/test.nix imports it the same way)
    "${modulesPath}/profiles/minimal.nix"
    # the initrd budget (runnerImage.initrdBudgetMiB) and the firmware a runner keeps
    ./image-size.nix
  ];

  # Storage and NIC drivers in the initrd for arbitrary bare metal (what netboot-base.nix
  # sets). hardware.enableAllHardware: mkEnableOption of nixos/modules/hardware/all-hardware.nix
  # (read @ 08783a39): boot.initrd.availableKernelModules for SATA/SCSI/NVMe/USB/virtio/VMware/
  # Hyper-V, and hardware.enableRedistributableFirmware.
  hardware.enableAllHardware = true;

  # Squashfs compression of the store: option netboot.squashfsCompression (type str) of
  # netboot.nix, whose default in the 2025+ revision read is this very value (a748ced and
  # older used xz); kept explicit for the reason. The whole initrd sits in RAM for the
  # machine's lifetime, so size matters more than for the ISO, but zstd-19 is only ~7% larger
  # than xz (847 vs 786 MB in NixOS/nixpkgs#197132) while decompressing several times faster
  # on every cold read of a store path during jobs. The cost, slow compression, is paid once
  # per build in CI. Stay under ~1 GB (EFI-stub highmem limits, #73588) and far under 2 GB
  # (makeInitrdNG/iPXE limits, #203593): flake.nix's checks.<system>.initrd-size-<target>
  # fails the build over runnerImage.initrdBudgetMiB (nix/image-size.nix) and logs the
  # measured size and the largest store paths. docs/testing.md, "Size", has what these settings
  # give on a sample measured with mksquashfs.
  netboot.squashfsCompression = "zstd -Xcompression-level 19";

  boot.kernelParams = [
    "console=ttyS0,115200n8"
    "console=tty0"
  ];
}
