# Stand-in for nixpkgs nixos/modules/profiles/minimal.nix (tests/flake-eval only): records the import.
{ stub.importedNixosModules = [ "profiles/minimal.nix" ]; }
