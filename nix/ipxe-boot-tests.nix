# Boot tests of the trust-enforcing iPXE (nix/ipxe.nix) on a Nix runner with KVM: the flake's
# own ipxe, built with a throwaway test root, boots a signed release from a local HTTP server,
# and refuses (powers off) when the initrd was changed after signing. Same harness as
# nix/boot-tests.nix (pkgs.testers.runNixOSTest with nodes = { }, create_machine with a raw
# QEMU command; qemu-common.nix through callPackage). Evaluated here (tests/flake-eval),
# never run here.
#
# The release is the instrumented sibling of the netboot target (nix/boot-tests.nix explains
# why), with a script in the form scripts/lib/build/ipxe-script.ts writes: imgfree, kernel,
# initrd, imgverify of each by name against its relative .sig, boot. QEMU user-net maps
# 10.0.2.2 to the host's loopback, where the test driver serves the release.
#
# The test PKI's keys are generated in a derivation and so sit in the Nix store: test-only.
{
  pkgs,
  lib,
  nixpkgs,
  target, # the netboot target (nix/targets.nix row)
  instrumented, # target -> { config; artifact; }
}:
let
  qemu-common = pkgs.callPackage (nixpkgs + "/nixos/lib/qemu-common.nix") { };
  inherit (instrumented target) artifact;
  port = 18080;
  bootUrl = "http://10.0.2.2:${toString port}/netboot.ipxe";

  # The fleet's PKI in miniature, as docs/ipxe-and-https.md "Boot-signing certificates" makes it,
  # from the same extensions file (./boot-pki.cnf; tests/docs.test.ts keeps the recipe's copy equal).
  pki = pkgs.runCommand "ipxe-test-pki" { nativeBuildInputs = [ pkgs.openssl ]; } ''
    mkdir -p "$out"; cd "$out"
    cp ${./boot-pki.cnf} pki.cnf
    openssl req -x509 -new -newkey rsa:2048 -nodes -keyout root.key -out root.crt -days 3650 \
      -subj "/CN=Test Fleet Boot Root" -config pki.cnf -extensions v3_root
    openssl req -new -newkey rsa:2048 -nodes -keyout signer.key -out signer.csr -subj "/CN=boot-signer" -config pki.cnf
    openssl x509 -req -in signer.csr -CA root.crt -CAkey root.key -CAcreateserial -days 3650 -sha256 \
      -extfile pki.cnf -extensions v3_codesign -out signer.crt
  '';

  ipxe = import ./ipxe.nix {
    inherit pkgs lib;
    bootRoot = "${pki}/root.crt";
    inherit bootUrl;
    signerName = "boot-signer";
  };

  # The release script in the form scripts/lib/build/ipxe-script.ts writes, around the kernel
  # and initrd lines of the image's own netboot.ipxe (nixpkgs netboot.nix writes them).
  scriptHead = pkgs.writeText "head.ipxe" ''
    #!ipxe
    isset ''${runner_images_verify} || goto unverified_load
    imgfree
    :unverified_load
  '';
  scriptTail = pkgs.writeText "tail.ipxe" ''
    isset ''${runner_images_verify} || goto unverified_boot
    imgverify bzImage bzImage.sig || goto refused
    imgverify initrd initrd.sig || goto refused
    :unverified_boot
    boot
    exit 0
    :refused
    echo runner-images: a boot file failed its signature check; not booting
    poweroff || exit 1
  '';

  # tamper: a command run on the signed directory (the .sig files stay as signed)
  signedRelease =
    name: tamper:
    pkgs.runCommand name { nativeBuildInputs = [ pkgs.openssl ]; } ''
      mkdir -p "$out"
      cp ${artifact}/bzImage ${artifact}/initrd "$out/"
      { cat ${scriptHead}; grep -E '^(kernel|initrd) ' ${artifact}/netboot.ipxe; cat ${scriptTail}; } > "$out/netboot.ipxe"
      chmod u+w "$out"/*
      for f in netboot.ipxe bzImage initrd; do
        openssl cms -sign -binary -noattr -md sha256 -in "$out/$f" -signer ${pki}/signer.crt \
          -inkey ${pki}/signer.key -certfile ${pki}/root.crt -outform DER -out "$out/$f.sig"
      done
      ${tamper}
    '';

  startCommand = "${qemu-common.qemuBinary pkgs.qemu_test} -m 4096 -netdev user,id=net0 -device virtio-net-pci,netdev=net0 -kernel ${ipxe}/ipxe.lkrn";

  mkTest =
    name: release: testScript:
    pkgs.testers.runNixOSTest {
      inherit name;
      nodes = { };
      testScript = ''
        import subprocess
        server = subprocess.Popen(["${pkgs.python3}/bin/python3", "-m", "http.server", "--bind", "127.0.0.1", "--directory", "${release}", "${toString port}"])
        machine = create_machine("${startCommand}")
      ''
      + testScript;
    };
in
{
  ipxe-trust-signed-boots = mkTest "ipxe-trust-signed-boots" (signedRelease "ipxe-signed-release" "") ''
    machine.start()
    machine.wait_for_console_text("runner-images: trust-enforcing iPXE")
    machine.wait_for_unit("multi-user.target")
    # the signed image's system, not something else that happened to boot
    machine.succeed("grep -q '^RUNNER_IMAGE_REVISION=' /etc/runner-image-release")
    machine.shutdown()
  '';
  ipxe-trust-tampered-initrd-refused =
    mkTest "ipxe-trust-tampered-initrd-refused" (signedRelease "ipxe-tampered-release" ''printf x >> "$out/initrd"'')
      ''
        machine.start()
        machine.wait_for_console_text("runner-images: a boot file failed its signature check; not booting")
        # iPXE powers the machine off instead of trying the next boot device
        machine.wait_for_shutdown()
      '';
}
