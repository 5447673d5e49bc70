# The image's size as a number the project manages: the netboot initrd's budget as a setting,
# and what a runner never needs left out. Imported by nix/netboot.nix and nix/iso.nix.
# flake.nix's checks.<system>.initrd-size-<target> enforces the budget and logs the largest
# store paths; docs/testing.md records what was measured and what only a Nix runner can measure.
#
# Already left out by nixos/modules/profiles/minimal.nix (imported by both image modules;
# read @ NixOS/nixpkgs 0148e16d per helper notes /tmp/research/nixpkgs.md, all mkDefault):
# documentation.{enable,doc,info,man,nixos}, environment.defaultPackages (perl and friends),
# command-not-found, xdg.{autostart,icons,mime,sounds}, udisks2, logrotate. Setting them again
# would change nothing, so they are not repeated here.
#
# Locales are left as they are: i18n.supportedLocales defaults to C.UTF-8 and en_US.UTF-8 only
# (nixos/modules/config/i18n.nix @ 05924f71 per the same notes: glibcLocales built for just
# those), a few MB, and jobs commonly set LANG=en_US.UTF-8.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.runnerImage;
in
{
  options.runnerImage = {
    initrdBudgetMiB = mkOption {
      type = types.ints.positive;
      default = 1024;
      description = ''
        Largest netboot initrd checks.<system>.initrd-size-<target> accepts, in MiB. The whole
        initrd sits in RAM for the machine's lifetime; the EFI stub must allocate it in one
        piece (fails around 1 GB on some firmware, NixOS/nixpkgs#73588); iPXE and the initrd
        format stop near 2 and 4 GiB, and makeInitrdNG drops files over 4 GiB without a word
        (NixOS/nixpkgs#399607). Raise it only knowing which of those your machines hit first.
      '';
    };

    firmware = mkOption {
      type = types.listOf (types.strMatching "[A-Za-z0-9_][A-Za-z0-9_./-]*");
      default = [
        # Ethernet controllers whose drivers load firmware from linux-firmware (the runner
        # needs its network before anything else): Realtek r8169 (most desktop boards),
        # Broadcom tg3/bnx2/bnx2x (servers), QLogic qed, Intel ice (E800 DDP package),
        # Intel e100, Chelsio cxgb4. Intel igb/ixgbe/i40e and Mellanox mlx4/mlx5 need none.
        "rtl_nic"
        "tigon"
        "bnx2"
        "bnx2x"
        "qed"
        "intel/ice"
        "e100"
        "cxgb4"
      ];
      description = ''
        Directories of linux-firmware's lib/firmware the image carries. Everything else of
        hardware.enableRedistributableFirmware (GPU: amdgpu, i915, nvidia, radeon; Wi-Fi and
        Bluetooth: iwlwifi, ath*, rtw*, brcm, mediatek; sound: sof, alsa; DVB; the wireless
        regulatory database) is left out: a headless wired runner loads none of it. A machine
        whose NIC needs another family adds its directory here.
      '';
    };
  };

  config = {
    # nixos/modules/hardware/all-hardware.nix @ 08783a39 (enableAllHardware, set by both image
    # modules for the initrd's storage and NIC drivers) also sets
    # hardware.enableRedistributableFirmware = true at normal priority, hence mkForce.
    # all-firmware.nix (@ faukah/nixpkgs 3b20077c, per helper notes) then adds nothing, and
    # hardware.wirelessRegulatoryDatabase follows it to false.
    hardware.enableRedistributableFirmware = lib.mkForce false;
    # hardware.firmware: listOf package, each compressed and linked under /lib/firmware (udev
    # module, per helper notes). The directory layout of pkgs.linux-firmware (lib/firmware/
    # <family>) is from memory: a name that does not exist fails this build, naming it.
    hardware.firmware = [
      (pkgs.runCommand "runner-firmware" { families = cfg.firmware; } ''
        for family in $families; do
          if [ ! -e "${pkgs.linux-firmware}/lib/firmware/$family" ]; then
            echo "runnerImage.firmware: linux-firmware has no lib/firmware/$family" >&2
            exit 1
          fi
          mkdir -p "$out/lib/firmware/$(dirname "$family")"
          cp -r "${pkgs.linux-firmware}/lib/firmware/$family" "$out/lib/firmware/$family"
        done
      '')
    ];
  };
}
