# Stand-in for nixpkgs nixos/modules/testing/test-instrumentation.nix (tests/flake-eval only).
{ stub.importedNixosModules = [ "testing/test-instrumentation.nix" ]; }
