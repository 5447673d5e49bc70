# Stand-in for nixpkgs nixos/modules/installer/cd-dvd/iso-image.nix (tests/flake-eval only).
# Models the one behaviour the project depends on: the module sets image.baseName at normal
# priority and names the file "${config.image.baseName}.iso" (isoName passed to
# make-iso9660-image.nix). So a second plain definition conflicts, and only mkForce renames.
{ config, pkgs, ... }:
{
  stub.importedNixosModules = [ "installer/cd-dvd/iso-image.nix" ];
  image.baseName = "nixos-stub-${pkgs.stdenv.hostPlatform.system}";
  system.build.isoImage = pkgs.stubDerivation "iso" { isoName = "${config.image.baseName}.iso"; };
}
