# A stand-in for the flake's `nixpkgs` input, for evaluating flake.nix without nixpkgs
# (tests/flake-eval.test.ts). Only lib is real: ../shared/nixpkgs-lib, nixpkgs' own lib/.
#
#   lib.nixosSystem  lib.evalModules over the given modules plus ./stub-root.nix, with the
#                    specialArgs eval-config.nix passes (modulesPath); NixOS modules that do not
#                    exist here are the small stand-ins under ./nixpkgs/nixos/modules.
#   legacyPackages   ./stub-pkgs.nix: fake derivations from the few functions the flake and
#                    the project's modules call; nothing is built.
{ lib, rev }:
let
  outPath = toString ./nixpkgs;
  legacyPackages = lib.genAttrs [
    "x86_64-linux"
    "aarch64-linux"
  ] (system: import ./stub-pkgs.nix { inherit lib system; });
  nixosSystem =
    {
      modules,
      specialArgs ? { },
    }:
    lib.evalModules {
      class = "nixos";
      specialArgs = {
        modulesPath = "${outPath}/nixos/modules";
      }
      // specialArgs;
      modules = [ (import ./stub-root.nix legacyPackages) ] ++ modules;
    };
in
{
  inherit outPath rev legacyPackages;
  lib = lib // {
    inherit nixosSystem;
  };
}
