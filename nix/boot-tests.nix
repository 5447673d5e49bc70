# QEMU boot tests of the images, in the style of nixpkgs nixos/tests/boot.nix (mkStartCommand,
# create_machine with a raw QEMU command line; read at 01162df, a 2025+ revision) and
# nix-community/nixos-images nix/image-installer/tests.nix @ e17386d (pkgs.testers.runNixOSTest
# with nodes = { } and a testScript; runNixOSTest = nixos/lib runTest with hostPkgs = pkgs,
# pkgs/build-support/testers/default.nix, recent revision, commit not named by the index).
# pkgs.OVMF.firmware / pkgs.OVMF.variables and ${pkgs.ipxe}/ipxe.efirom are used exactly so by
# both; ipxe's package builds bin-x86_64-efi/ipxe.efirom on x86_64 (several revisions read).
#
# The booted artifact is an INSTRUMENTED SIBLING of the published one: the same target built
# with nixpkgs nixos/modules/testing/test-instrumentation.nix added (the test driver's
# backdoor shell and serial console). The published netboot directory and ISO themselves
# are only built (checks.package-*), not booted.
#
# Needs a builder with KVM ("kvm" and "nixos-test" system features).
{
  pkgs,
  lib,
  nixpkgs,
  targets, # nix/targets.nix bySystem.<system>
  instrumented, # target -> { config; artifact; }
}:
let
  # nixos/lib/qemu-common.nix took { lib, pkgs } and takes { lib, stdenv } since 25.11 (nixpkgs
  # nixos/tests/boot.nix now imports it with `inherit (pkgs) lib stdenv`); callPackage passes
  # only the arguments the file declares, so this works with both. Same fix as
  # nix-community/nixos-images a19c2b7 ("tests: use callPackage for qemu-common import").
  qemu-common = pkgs.callPackage (nixpkgs + "/nixos/lib/qemu-common.nix") { };

  # Test-only registration secret. Its first 16 characters give the runner UUID the way
  # forgejo-runner v12 create-runner-file.go uuidFromSecret does (gouuid.FromBytes of those 16
  # ASCII bytes), so the test can check the credential really came from this secret.
  testSecret = "0123456789abcdef0123456789abcdef01234567";
  expectedUuid = "30313233-3435-3637-3839-616263646566";
  # Registration is offline (nix/runner-secret.sh writes .runner itself), so an instance that
  # never resolves is enough to check the credential; the runners then retry their first
  # contact every 10 s, which the tests do not need.
  forgejoUrl = "https://forgejo.invalid";
  mkTestEnv =
    mode:
    pkgs.writeText "runner.env" ''
      FORGEJO_RUNNER_SECRET=${testSecret}
      FORGEJO_URL=${forgejoUrl}
      FORGEJO_RUNNER_NAME=boot-test
      FORGEJO_RUNNER_MODE=${mode}
    '';
  testEnv = mkTestEnv "container";

  # A small vfat disk labelled like an operator's config stick, holding runner.env.
  configDisk = config: configDiskWith testEnv config;
  configDiskWith =
    env: config:
    let
      inherit (config.runnerImage.secretSource) label fileName;
    in
    pkgs.runCommand "runner-config-disk.img"
      {
        nativeBuildInputs = [
          pkgs.dosfstools
          pkgs.mtools
        ];
      }
      ''
        truncate --size=16M "$out"
        mkfs.vfat -n ${label} "$out"
        mcopy -i "$out" ${env} ::/${fileName}
      '';

  # After nixpkgs nixos/tests/boot.nix mkStartCommand (read at a 2025+ revision that imports
  # qemu-common.nix with { lib, stdenv }): user-net with QEMU's TFTP server for netboot, the
  # ipxe.efirom option ROM on the NIC under UEFI, two pflash drives with pkgs.OVMF.firmware and
  # pkgs.OVMF.variables for UEFI, usb-ehci + usb-storage for a stick.
  mkStartCommand =
    {
      memory ? 4096, # the netboot initrd (~1 GB) and job storage live in RAM
      cdrom ? null,
      usb ? null,
      tftp ? null, # directory served by QEMU's user-net TFTP server (10.0.2.2)
      uefi ? false,
      extraFlags ? [ ],
    }:
    let
      flags = [
        "-m"
        (toString memory)
        "-netdev"
        ("user,id=net0" + lib.optionalString (tftp != null) ",tftp=${tftp},bootfile=boot.ipxe")
        "-device"
        (
          "virtio-net-pci,netdev=net0"
          + lib.optionalString (tftp != null && uefi) ",romfile=${pkgs.ipxe}/ipxe.efirom"
        )
      ]
      ++ lib.optionals (cdrom != null) [
        "-cdrom"
        cdrom
        # The CD first. QEMU's default order tries the disks first, and SeaBIOS then runs the
        # config disk's vfat boot sector ("not a bootable disk") and waits for a key: the CD
        # is never reached. (QEMU docs/system/bootindex.rst: -boot order= or bootindex.)
        "-boot"
        "order=d"
      ]
      ++ lib.optionals (usb != null) [
        "-device"
        "usb-ehci"
        "-drive"
        "id=usbdisk,file=${usb},if=none,readonly"
        "-device"
        # -boot order= has no letter for USB, so the stick gets the first bootindex instead
        # (devices without one come last, QEMU docs/system/bootindex.rst)
        "usb-storage,drive=usbdisk,bootindex=1"
      ]
      ++ lib.optionals (tftp != null) [
        "-boot"
        "order=n"
      ]
      ++ lib.optionals uefi [
        "-drive"
        "if=pflash,format=raw,unit=0,readonly=on,file=${pkgs.OVMF.firmware}"
        "-drive"
        "if=pflash,format=raw,unit=1,readonly=on,file=${pkgs.OVMF.variables}"
      ]
      ++ extraFlags;
    in
    "${qemu-common.qemuBinary pkgs.qemu_test} ${lib.concatStringsSep " " flags}";

  configDiskFlags = config: [
    "-drive"
    "file=${configDisk config},format=raw,if=virtio,readonly=on"
  ];

  # Python helpers shared by the test scripts.
  #
  # Every wait is bounded, and a line that never comes fails in minutes with what was seen.
  # The test driver (nixpkgs nixos/lib/test-driver/src/test_driver/machine/__init__.py @
  # 019697db) bounds some of its waits and not others:
  #   - succeed(), fail(): timeout=None by default, i.e. no `timeout` around the command;
  #   - execute() returns at EOF of the command's stdout, so a detached process that keeps it
  #     open blocks it for ever, timeout or not (`timeout` kills only its own child): a
  #     command that leaves a process behind redirects its stdin, stdout and stderr;
  #   - wait_for_console_text(): no timeout by default, and with one it reads one queued console
  #     line per second (retry() around last_lines.get(block=False)), falling behind a boot
  #     log of thousands of lines; wait_for_console below polls get_console_log() instead;
  #   - connect() (run by the first command after a start or a reboot) and shutdown()
  #     (process.wait()) have no bound at all; `within` gives them one.
  # tests/flake-eval-waits.test.ts reads the evaluated scripts and fails on a call that breaks
  # one of these rules.
  helpers = ''
    import shlex

    BOOT_SECONDS = 600  # power-on to the root shell (a ~1 GB initrd over TFTP, under KVM)
    COMMAND_SECONDS = 120  # one command in the guest
    UNIT_SECONDS = 300  # a unit reaching "active" once the shell is up

    ${builtins.readFile ./boot-test-helpers.py}

    def assert_runner_configured(machine, mode="container"):
        users = {"container": "forgejo-runner", "host": "forgejo-runner-host"}
        units = {"container": "forgejo-runner.service", "host": "forgejo-runner-host.service"}
        other = "host" if mode == "container" else "container"
        machine.wait_for_unit("multi-user.target", timeout=UNIT_SECONDS)
        machine.wait_for_unit("forgejo-runner-secret.service", timeout=UNIT_SECONDS)
        # root-owned directory, the credential readable only by its runner's user
        machine.succeed("test \"$(stat -c '%a %U' /run/forgejo-runner)\" = '755 root'", timeout=COMMAND_SECONDS)
        # container mode: the daemon's .runner; host mode: the token for one-job --token-url,
        # and the url and uuid for its command line (nix/runner-secret.sh)
        files = {"container": "container.runner", "host": "host.token"}
        machine.succeed(f"test \"$(stat -c '%a %U' /run/forgejo-runner/{files[mode]})\" = '600 {users[mode]}'", timeout=COMMAND_SECONDS)
        machine.fail(f"test -e /run/forgejo-runner/{files[other]}", timeout=COMMAND_SECONDS)
        if mode == "container":
            machine.succeed("grep -F '\"uuid\": \"${expectedUuid}\"' /run/forgejo-runner/container.runner", timeout=COMMAND_SECONDS)
            machine.succeed("grep -F '\"address\": \"${forgejoUrl}\"' /run/forgejo-runner/container.runner", timeout=COMMAND_SECONDS)
        else:
            machine.succeed("grep -Fx 'RUNNER_UUID=${expectedUuid}' /run/forgejo-runner/host.env", timeout=COMMAND_SECONDS)
            machine.succeed("grep -Fx 'RUNNER_URL=${forgejoUrl}' /run/forgejo-runner/host.env", timeout=COMMAND_SECONDS)
        # only this mode's runner passed its condition (it cannot reach forgejo.invalid, so it
        # keeps retrying; registration against a live server is not tested here)
        machine.succeed(f"systemctl show -p ConditionResult --value {units[mode]} | grep -qx yes", timeout=COMMAND_SECONDS)
        machine.succeed(f"systemctl show -p ConditionResult --value {units[other]} | grep -qx no", timeout=COMMAND_SECONDS)
        # the secret proper is in no log line and on no command line
        machine.fail("journalctl -b --no-pager | grep -F '${builtins.substring 16 24 testSecret}'", timeout=COMMAND_SECONDS)
        machine.fail("grep -F '${builtins.substring 16 24 testSecret}' /proc/cmdline", timeout=COMMAND_SECONDS)
        machine.wait_for_unit("docker.service", timeout=UNIT_SECONDS)
        machine.succeed("grep -q '^RUNNER_IMAGE_REVISION=' /etc/runner-image-release", timeout=COMMAND_SECONDS)

    def assert_runner_skipped(machine):
        machine.wait_for_unit("multi-user.target", timeout=UNIT_SECONDS)
        machine.succeed("journalctl -b -u forgejo-runner-secret.service | grep -F 'no registration secret found'", timeout=COMMAND_SECONDS)
        machine.succeed("systemctl show -p ConditionResult --value forgejo-runner.service | grep -qx no", timeout=COMMAND_SECONDS)
        machine.succeed("systemctl show -p ConditionResult --value forgejo-runner-host.service | grep -qx no", timeout=COMMAND_SECONDS)
        machine.fail("test -e /run/forgejo-runner/container.runner", timeout=COMMAND_SECONDS)
        machine.fail("test -e /run/forgejo-runner/host.token", timeout=COMMAND_SECONDS)

    # A shell command as a host job runs it: the host runner's user, with the sandboxing of
    # forgejo-runner-host.service (nix/runner.nix). (systemd-run --wait --pipe --quiet -p:
    # systemd-run(1), not re-read: from memory; systemd's own tests use --wait --pipe -p so.)
    def as_host_job(command):
        return (
            "systemd-run --wait --pipe --quiet -p User=forgejo-runner-host -p Group=forgejo-runner-host "
            "-p ProtectProc=invisible -p NoNewPrivileges=yes -p PrivateTmp=yes -- "
            "/run/current-system/sw/bin/bash -c "
            + shlex.quote("PATH=/run/current-system/sw/bin; " + command)
        )
  '';

  # The booted system's store is what was built: every path of the closure hashes to the NAR
  # hash in the Nix database (loaded from the image's nix-path-registration by netboot.nix and
  # iso-image.nix boot.postBootCommands). --no-trust: locally built paths carry no signature.
  # (`nix store verify` flags: not re-read, from memory.)
  # As nixpkgs nixos/tests/boot.nix and nixos-images nix/image-installer/tests.nix do after boot.
  storeHelpers = ''
    def assert_store_intact(machine):
        machine.succeed("nix store verify --no-trust -r --option experimental-features nix-command /run/current-system", timeout=COMMAND_SECONDS)
  '';

  mkTest =
    name: testScript:
    pkgs.testers.runNixOSTest {
      inherit name;
      # Below the driver's default of an hour (option globalTimeout of nixos/lib/testing/
      # driver.nix, per helper notes /tmp/research/nixpkgs.md @ 01fbdeef): the last bound,
      # for what the helpers above cannot bound (a create_machine VM is not among the
      # machines that timeout releases, driver.py @ 003d5816, per the same notes).
      globalTimeout = 30 * 60;
      nodes = { };
      testScript = helpers + storeHelpers + testScript;
    };

  netbootTests =
    target:
    let
      inherit (instrumented target) config artifact;
      param = config.runnerImage.secretSource.cmdlineParam;
      # The operator's side of netboot, in miniature: a wrapper script that hands runner.env to
      # the kernel as an extra initrd file (iPXE `initrd <uri> <path> mode=`, src/core/cpio.c)
      # and chains the image's own iPXE script, all served over QEMU's TFTP. It also sets a
      # tftp:// configuration URL on the kernel command line, which the image would refuse
      # (https only; tests/runner-secret.test.ts) and must ignore, the initrd file coming first.
      tftpRoot = pkgs.symlinkJoin {
        name = "${target.attr}-tftp";
        paths = [
          artifact
          (pkgs.writeTextDir "boot.ipxe" ''
            #!ipxe
            initrd runner.env /runner.env mode=0400
            set cmdline ${param}=tftp://10.0.2.2/runner.env
            chain netboot.ipxe
          '')
          (pkgs.runCommand "runner-env-dir" { } ''
            mkdir -p "$out"
            cp ${testEnv} "$out/runner.env"
          '')
        ];
      };
      netbootScript = uefi: ''
        machine = create_machine("${
          mkStartCommand {
            tftp = tftpRoot;
            inherit uefi;
          }
        }")
        boot(machine)
        assert_runner_configured(machine)
        machine.succeed("journalctl -b -u forgejo-runner-secret.service | grep -F 'the boot loader handed over (initrd)'", timeout=COMMAND_SECONDS)
        machine.fail("test -e /run/forgejo-runner-initrd/runner.env", timeout=COMMAND_SECONDS)
        machine.succeed("grep -F '${param}=tftp://' /proc/cmdline", timeout=COMMAND_SECONDS)
        ${lib.optionalString uefi ''machine.succeed("test -d /sys/firmware/efi", timeout=COMMAND_SECONDS)''}
        assert_store_intact(machine)
        power_off(machine)
      '';
    in
    {
      "boot-${target.attr}-bios" = mkTest "boot-${target.attr}-bios" (netbootScript false);

      # OVMF with the iPXE EFI option ROM on the NIC (pkgs.ipxe's ipxe.efirom), as
      # nixos/tests/boot.nix uefiNetboot: iPXE starts the kernel's EFI stub, which allocates the
      # ~1 GB initrd itself (the limit checks.initrd-size-* guards). iPXE >= v2.0.0 hands it
      # every loaded file, runner.env included, as one initrd through LoadFile2 (ipxe
      # src/interface/efi/efi_file.c @ 0ab2277c, efi_file_read_initrd; the stub then ignores
      # initrd=initrd); an older iPXE leaves runner.env out and this test fails.
      "boot-${target.attr}-uefi" = mkTest "boot-${target.attr}-uefi" (netbootScript true);
    };

  isoTests =
    target:
    let
      inherit (instrumented target) config artifact;
      isoFile = "${artifact}/iso/${artifact.isoName}";
    in
    {
      # Boots twice: without a config disk (runner skipped, one clear log line), then with one.
      "boot-${target.attr}-bios-cdrom" = mkTest "boot-${target.attr}-bios-cdrom" ''
        machine = create_machine("${mkStartCommand { cdrom = isoFile; }}")
        boot(machine)
        assert_runner_skipped(machine)
        power_off(machine)

        machine = create_machine("${
          mkStartCommand {
            cdrom = isoFile;
            extraFlags = configDiskFlags config;
          }
        }")
        boot(machine)
        assert_runner_configured(machine)
        assert_store_intact(machine)
        power_off(machine)
      '';

      # makeEfiBootable and makeUsbBootable are set by nix/iso.nix, so test that path too.
      "boot-${target.attr}-uefi-usb" = mkTest "boot-${target.attr}-uefi-usb" ''
        machine = create_machine("${
          mkStartCommand {
            usb = isoFile;
            uefi = true;
            extraFlags = configDiskFlags config;
          }
        }")
        boot(machine)
        assert_runner_configured(machine)
        machine.succeed("test -d /sys/firmware/efi", timeout=COMMAND_SECONDS)
        assert_store_intact(machine)
        power_off(machine)
      '';
    };

  testsByKind = {
    netboot = netbootTests;
    iso = isoTests;
  };

  # What a job may do on each kind of runner (docs/threat-model.md). ISO
  # targets, booted like boot-*-uefi-usb with a config disk; no Forgejo server, so the "job" is
  # a command run as the host runner's user with that unit's sandboxing (as_host_job).
  securityTests =
    target:
    let
      inherit (instrumented target) config artifact;
      boot =
        mode:
        mkStartCommand {
          usb = "${artifact}/iso/${artifact.isoName}";
          uefi = true;
          extraFlags = [
            "-drive"
            "file=${configDiskWith (mkTestEnv mode) config},format=raw,if=virtio,readonly=on"
          ];
        };
    in
    lib.optionalAttrs (target.image == "iso") {
      "security-${target.attr}-container-mode" = mkTest "security-${target.attr}-container-mode" ''
        machine = create_machine("${boot "container"}")
        boot(machine)
        assert_runner_configured(machine, "container")
        # another user cannot read the container runner's credential
        machine.fail(as_host_job("cat /run/forgejo-runner/container.runner"), timeout=COMMAND_SECONDS)
        # job containers may reach the cache proxy port and no other host port: no trusted bridge
        machine.succeed("iptables -S nixos-fw | grep -E -- '-i docker0 .*--dport 4001 .*-j nixos-fw-accept'", timeout=COMMAND_SECONDS)
        machine.fail("iptables -S nixos-fw | grep -E -- '-i (docker0|br-\\+) -j nixos-fw-accept'", timeout=COMMAND_SECONDS)
        power_off(machine)
      '';

      "security-${target.attr}-host-mode" = mkTest "security-${target.attr}-host-mode" ''
        machine = create_machine("${boot "host"}")
        # The machine reboots below. Without allow_reboot the driver starts QEMU with -no-reboot
        # and the reboot ends it ("Shell disconnected"): nixpkgs nixos/lib/test-driver/src/
        # test_driver/machine/__init__.py @ 019697db, QemuStartCommand.cmd and connect().
        boot(machine, allow_reboot=True)
        assert_runner_configured(machine, "host")
        # a host job cannot reach the container runtime: not in its group, socket not writable
        machine.succeed("test -S /run/docker.sock", timeout=COMMAND_SECONDS)
        machine.fail(as_host_job("id -nG | grep -wE 'docker|podman|wheel'"), timeout=COMMAND_SECONDS)
        machine.fail(as_host_job("test -w /run/docker.sock"), timeout=COMMAND_SECONDS)
        # ... cannot see other users' processes, and cannot attach to its own runner
        machine.fail(as_host_job("ps -e -o user= | grep -vx forgejo-runner-host"), timeout=COMMAND_SECONDS)
        machine.succeed("test \"$(sysctl -n kernel.yama.ptrace_scope)\" = 1", timeout=COMMAND_SECONDS)
        # Residual risk, documented in docs/machine-credential.md: a host job CAN read host.token (the
        # runner starts host jobs with its own uid); single-use when the boot broker minted it.

        # The unit's ExecStopPost, run the way systemd runs it when `one-job` ends. (Here one-job
        # never starts: its first ExecStartPre waits for forgejo.invalid to answer.)
        after_job = "$(systemctl show -p ExecStopPost --value forgejo-runner-host.service | grep -o '/nix/store/[^ ;]*-after-job')"
        machine.wait_until_succeeds("journalctl -b -u forgejo-runner-host.service | grep -F 'https://forgejo.invalid does not answer'", timeout=120)
        # the SSH host key fingerprints are in the journal (and on the console), as ssh-keygen has them
        machine.wait_for_unit("runner-ssh-host-keys.service", timeout=120)
        machine.succeed("journalctl -b -u runner-ssh-host-keys.service | grep -F \"runner-ssh-host-key: $(ssh-keygen -l -f /etc/ssh/ssh_host_ed25519_key.pub)\"", timeout=COMMAND_SECONDS)

        # A job leaves a detached process and files behind, then its runner ends with status 1
        # (any status: an error after steps ran, e.g. a log.Fatal). The machine must reboot and come back clean. The detached
        # process gets its own stdin, stdout and stderr: execute() returns only at EOF of the
        # command's stdout, which a `sleep` holding the pipe would keep open for 100000 s.
        machine.succeed("runuser -u forgejo-runner-host -- touch /var/lib/forgejo-runner-host/planted", timeout=COMMAND_SECONDS)
        machine.succeed("runuser -u forgejo-runner-host -- setsid -f sleep 100000 </dev/null >/dev/null 2>&1", timeout=COMMAND_SECONDS)
        machine.succeed("pgrep -u forgejo-runner-host -x sleep", timeout=COMMAND_SECONDS)
        before_reboot = console_mark(machine)
        # check_output=False: the reboot takes the shell away, so nothing is read back
        machine.execute(f"EXIT_CODE=exited EXIT_STATUS=1 {after_job} >/dev/null 2>&1", check_output=False, timeout=COMMAND_SECONDS)
        # the kernel's line when it restarts (kernel/reboot.c "reboot: Restarting system":
        # from memory; the old test waited for the same line)
        wait_for_console(machine, r"reboot: Restarting system", timeout=BOOT_SECONDS, since=before_reboot)
        reconnect_after_reboot(machine)
        assert_runner_configured(machine, "host")
        machine.fail("test -e /var/lib/forgejo-runner-host/planted", timeout=COMMAND_SECONDS)
        machine.fail("pgrep -u forgejo-runner-host -x sleep", timeout=COMMAND_SECONDS)
        power_off(machine)
      '';
    };
in
lib.concatMapAttrs (_: target: (testsByKind.${target.image} or (_: { })) target) targets
// lib.concatMapAttrs (_: securityTests) targets
