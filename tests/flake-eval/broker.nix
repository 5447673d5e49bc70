# Evaluates flake.nix's nixosModules.boot-broker with nixpkgs' real lib (lib.evalModules through
# ./fake-nixpkgs.nix) and prints what tests/broker-module.test.ts asserts on: the unit's
# serviceConfig, the broker configuration file's text, and the warnings and firewall ports.
#
#   nix-instantiate --eval --strict --json tests/flake-eval/broker.nix \
#     --argstr libPath ../shared/nixpkgs-lib/lib --argstr flakeDir "$PWD" --arg settings '{...}'
{
  libPath,
  flakeDir,
  # The services.runner-boot-broker definition under test, as JSON text.
  settings,
}:
let
  lib = import libPath;
  nixpkgs = import ./fake-nixpkgs.nix {
    inherit lib;
    rev = "0000000000000000000000000000000000000000";
  };
  flake = import "${flakeDir}/flake.nix";
  self = flake.outputs { inherit self nixpkgs; } // { outPath = flakeDir; };
  machine = nixpkgs.lib.nixosSystem {
    modules = [
      self.nixosModules.boot-broker
      {
        nixpkgs.hostPlatform = "x86_64-linux";
        services.runner-boot-broker = builtins.fromJSON settings;
      }
    ];
  };
  inherit (machine) config;
  unit = config.systemd.services.runner-boot-broker or null;
in
{
  serviceConfig = if unit == null then null else unit.serviceConfig;
  wantedBy = if unit == null then null else unit.wantedBy;
  # The configuration file's text (restartTriggers holds the file; the stub's writeText keeps its text).
  configText = if unit == null then null else (lib.head unit.restartTriggers).text;
  configPath = if unit == null then null else (lib.head unit.restartTriggers).outPath;
  warnings = config.warnings or [ ];
  ports = config.networking.firewall.allowedTCPPorts or [ ];
}
