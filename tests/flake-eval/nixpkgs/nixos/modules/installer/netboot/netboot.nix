# Stand-in for nixpkgs nixos/modules/installer/netboot/netboot.nix (tests/flake-eval only).
# It records that it was imported and defines the two outputs flake.nix cuts the netboot
# directory from, with the same pkgs calls as the real module (netboot.nix @ nixos-26.05:
# netbootRamdisk = pkgs.makeInitrdNG { ... }, netbootIpxeScript = pkgs.writeTextDir
# "netboot.ipxe" ...), and netboot.storeContents, what goes into the squashfs (default
# [ config.system.build.toplevel ], per helper notes @ faukah/nixpkgs 3b20077c). Everything
# else it does (tmpfs root, squashfs store) is not modelled.
{ pkgs, ... }:
{
  stub.importedNixosModules = [ "installer/netboot/netboot.nix" ];
  netboot.storeContents = [ (pkgs.stubDerivation "nixos-system-toplevel" { }) ];
  system.build.netbootRamdisk = pkgs.makeInitrdNG { };
  system.build.netbootIpxeScript = pkgs.writeTextDir "netboot.ipxe" "";
}
