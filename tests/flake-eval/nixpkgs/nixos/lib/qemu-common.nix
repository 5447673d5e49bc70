# Stand-in for nixpkgs nixos/lib/qemu-common.nix (tests/flake-eval only), with the signature it
# has since 25.11: { lib, stdenv } and no `...` (nixpkgs nixos/tests/boot.nix @ 01162df imports
# it with `inherit (pkgs) lib stdenv`; nix-community/nixos-images a19c2b7 describes the change).
# Importing it with { lib, pkgs } fails here as it does with the pinned nixpkgs.
{ lib, stdenv }:
{
  qemuBinary = qemuPkg: "${qemuPkg}/bin/qemu-kvm";
}
