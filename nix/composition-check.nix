# checks.<system>.image-composition: every machine of nixosConfigurations carries what
# flake.nix means to give it, read back from the evaluated configuration of the pinned nixpkgs:
#   - the release info (this repository's commit, the nixpkgs revision) and the operator keys;
#   - its image module, seen by the outputs that module adds to system.build (kinds.<kind>.outputs);
#   - for an ISO, the file name targets.json publishes.
# The expected and actual facts are compared in the build, so `nix flake check` fails with a
# diff in the log. tests/flake-eval.test.ts evaluates the same function with nixpkgs' lib.
{
  pkgs,
  lib,
  targets, # nix/targets.nix bySystem.<system>
  machines, # nixosConfigurations
  kinds, # flake.nix kinds: <kind>.outputs = system.build attributes its module adds
  release,
  operatorKeys,
}:
let
  allOutputs = lib.unique (lib.concatMap (kind: kind.outputs) (builtins.attrValues kinds));

  actual = lib.mapAttrs (
    attr: _:
    let
      inherit (machines.${attr}) config;
      build = config.system.build;
    in
    {
      release = config.runnerImage.release;
      sshAuthorizedKeys = config.runnerImage.sshAuthorizedKeys;
      imageOutputs = builtins.filter (name: build ? ${name}) allOutputs;
      # iso-image.nix: isoImage = make-iso9660-image.nix { isoName = "${image.baseName}.iso"; }
      isoFileName = if build ? isoImage then build.isoImage.isoName else null;
    }
  ) targets;

  expected = lib.mapAttrs (_: target: {
    inherit release;
    sshAuthorizedKeys = operatorKeys;
    imageOutputs = builtins.filter (name: builtins.elem name kinds.${target.image}.outputs) allOutputs;
    isoFileName = if target.baseName == null then null else "${target.baseName}.iso";
  }) targets;
in
# (pkgs.runCommand, pkgs.jq: not re-read, from memory; jq -S sorts keys.)
pkgs.runCommand "image-composition"
  {
    nativeBuildInputs = [ pkgs.jq ];
    expected = builtins.toJSON expected;
    actual = builtins.toJSON actual;
  }
  ''
    jq -S . <<<"$expected" > expected.json
    jq -S . <<<"$actual" > actual.json
    cat actual.json
    if ! diff -u expected.json actual.json; then
      echo "image-composition: the machines above differ from what flake.nix gives them (- expected, + actual)" >&2
      exit 1
    fi
    cp actual.json "$out"
  ''
