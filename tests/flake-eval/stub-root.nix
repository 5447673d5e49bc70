# The root module of every machine evaluated by ./fake-nixpkgs.nix: what NixOS itself would
# provide, kept to the least the project's modules and flake.nix read.
#
# Options the project declares (runnerImage.*) are checked as in NixOS: a definition of an
# undeclared runnerImage.* option fails. Every other option tree (services, boot, system, ...)
# is NixOS's and does not exist here; it is freeform, so the project's modules may set any
# NixOS option without this stub having to list them. Lists concatenate and attribute sets
# merge, as the corresponding NixOS options mostly do; other values must agree unless
# priorities (mkDefault, mkForce) decide.
legacyPackages:
{
  config,
  lib,
  options,
  pkgs,
  ...
}:
let
  foreign = lib.mkOptionType {
    name = "foreign";
    description = "a NixOS option that does not exist in this evaluation";
    merge =
      loc: defs:
      if lib.all (def: builtins.isList def.value) defs then
        lib.concatMap (def: def.value) defs
      else if lib.all (def: builtins.isAttrs def.value && !lib.isDerivation def.value) defs then
        (lib.types.lazyAttrsOf foreign).merge loc defs
      else
        lib.types.anything.merge loc defs;
  };

  # Option trees declared by the project's modules or by the stand-ins of nixpkgs modules
  # (top-level names, and services.<name>): a freeform value under one of them is a definition
  # of an option that does not exist, exactly the mistake NixOS would reject.
  ownNamespaces = lib.concatMap (
    name: if name == "services" then map (service: [ name service ]) (builtins.attrNames options.services) else [ [ name ] ]
  ) (builtins.attrNames (removeAttrs options [ "_module" ]));
  foreignRoot =
    let
      base = lib.types.lazyAttrsOf foreign;
    in
    base
    // {
      merge =
        loc: defs:
        let
          value = base.merge loc defs;
          undeclared = lib.concatMap (
            path:
            map (name: "${lib.concatStringsSep "." path}.${name}") (
              builtins.attrNames (lib.attrByPath path { } value)
            )
          ) ownNamespaces;
        in
        if undeclared != [ ] then
          throw "The option `${builtins.head undeclared}' does not exist (stub-root.nix: undeclared definitions under the project's own options)."
        else
          value;
    };
in
{
  config = {
    _module.freeformType = foreignRoot;

    # nixos/modules/misc/nixpkgs.nix: pkgs follows nixpkgs.hostPlatform (flake.nix sets it).
    _module.args.pkgs =
      legacyPackages.${config.nixpkgs.hostPlatform}
        or (throw "stub-root.nix: no packages for nixpkgs.hostPlatform ${config.nixpkgs.hostPlatform}");

    # The kernel (nixos/modules/system/boot/kernel.nix) and its file name
    # (system.boot.loader.kernelFile, nixos/modules/system/activation/top-level.nix).
    system.build.kernel = pkgs.linux;
    system.boot.loader.kernelFile = pkgs.stdenv.hostPlatform.linux-kernel.target;
    # nixos/modules/system/boot/systemd.nix: systemd.package defaults to pkgs.systemd.
    systemd.package = lib.mkDefault pkgs.systemd;
    # nixos/modules/hardware/all-hardware.nix @ 08783a39: enableAllHardware also turns on the
    # redistributable firmware, at normal priority (so a plain `false` elsewhere conflicts).
    hardware.enableRedistributableFirmware = lib.mkIf (config.hardware.enableAllHardware or false) true;
  };
}
