# The few nixpkgs packages and builders the flake and the project's modules reach while their
# composition is evaluated. Each returns a fake derivation (a set with type = "derivation" and
# a store-path-shaped outPath) that remembers its arguments, so a test can look at what the
# project's code passed (linkFarm entries, the ISO's isoName). Nothing here is built.
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
in
{
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
  runCommand = name: env: script: drv name { inherit env script; };
  jq = drv "jq" { };
}
