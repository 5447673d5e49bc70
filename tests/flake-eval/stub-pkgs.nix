# The few nixpkgs packages and builders the flake, the project's modules and nix/boot-tests.nix
# reach while they are evaluated here. Each returns a fake derivation (a set with
# type = "derivation" and a store-path-shaped outPath) that remembers its arguments, so a test
# can look at what the project's code passed (linkFarm entries, the ISO's isoName, a check's
# build script, a boot test's script). Nothing here is built. When the project's Nix starts to
# use another package, evaluation fails with "attribute '<name>' missing": add it here.
{ lib, system }:
let
  drv =
    name: passthru:
    {
      type = "derivation";
      inherit name system;
      outPath = "/nix/store/${builtins.substring 0 32 (builtins.hashString "sha256" "${system}-${name}")}-${name}";
    }
    // passthru;

  pkgs = {
    inherit lib;
    stubDerivation = drv;
    stdenv.hostPlatform = {
      inherit system;
      # lib/systems/platforms.nix: pc -> bzImage, aarch64-multiplatform -> Image
      linux-kernel.target = if lib.hasPrefix "x86_64" system then "bzImage" else "Image";
    };
    linux = drv "linux" { };
    # A version unlike any real one, so nothing can mistake it for the pinned runner.
    forgejo-runner = drv "forgejo-runner-0.0.0-stub" { version = "0.0.0-stub"; };
    formats.yaml = _: { generate = name: value: drv name { inherit value; }; };
    writeShellApplication = args: drv args.name { inherit args; };
    writeText = name: text: drv name { inherit text; };
    writeTextDir = path: text: drv (baseNameOf path) { inherit path text; };
    makeInitrdNG = args: drv "initrd" { inherit args; };
    linkFarm = name: entries: drv name { inherit entries; };
    symlinkJoin = args: drv args.name { inherit (args) paths; };
    runCommand = name: env: script: drv name { inherit env script; };
    jq = drv "jq" { };
    # nixosModules.boot-broker's default runtime (lib.getExe reads meta.mainProgram).
    bun = drv "bun-0.0.0-stub" { meta.mainProgram = "bun"; };
    closureInfo = args: drv "closure-info" { inherit args; };
    linux-firmware = drv "linux-firmware" { };
    # nix/forgejo-boot-test.nix
    fetchurl = args: drv (baseNameOf args.url) { inherit args; };
    forgejo-lts = drv "forgejo-lts-15.0.0-stub" { };
    curl = drv "curl" { };
    git = drv "git" { };
    openssh = drv "openssh" { };
    openssl = drv "openssl" { };
    python3 = drv "python3" { };
    coreutils = drv "coreutils" { };
    findutils = drv "findutils" { };
    systemd = drv "systemd" { };
    writeShellScript = name: text: drv name { inherit text; };

    # callPackage as in nixpkgs: the function gets only the arguments it declares, from pkgs.
    callPackage =
      fn: overrides:
      let
        f = if builtins.isFunction fn then fn else import fn;
      in
      f (builtins.intersectAttrs (builtins.functionArgs f) pkgs // overrides);

    # nix/boot-tests.nix: the tests are evaluated, never run, here.
    testers.runNixOSTest = test: drv "vm-test-run-${test.name}" { inherit test; };
    qemu_test = drv "qemu-test" { };
    OVMF = rec {
      fd = drv "OVMF-fd" { };
      firmware = "${fd}/FV/OVMF_CODE.fd";
      variables = "${fd}/FV/OVMF_VARS.fd";
    };
    # pkgs/by-name/ip/ipxe/package.nix (nixpkgs 00e6b22b): override takes embedScript,
    # additionalOptions, additionalTargets; makeFlags starts as below. Both are remembered.
    ipxe =
      let
        make =
          args: attrs:
          drv "ipxe" (
            attrs
            // {
              overrideArgs = args;
              override = more: make (args // more) attrs;
              overrideAttrs = f: make args (attrs // f attrs);
            }
          );
      in
      make { } {
        makeFlags = [
          "ECHO_E_BIN_ECHO=echo"
          "ECHO_E_BIN_ECHO_E=echo"
          "CROSS="
        ];
      };
    dosfstools = drv "dosfstools" { };
    mtools = drv "mtools" { };
  };
in
pkgs
