# The image targets as Nix sees them. Pure: no nixpkgs, so plain
#   nix-instantiate --eval --strict --json nix/targets.nix
# works anywhere (tests/nix.test.ts does exactly that).
#
# scripts/lib/build/targets.json is the only table of targets. Every flake package
# name, nixosConfiguration name and the ISO file name come from it through this
# file; nothing in Nix spells them a second time.
let
  rows = builtins.fromJSON (builtins.readFile ../scripts/lib/build/targets.json);

  # "<name>.iso" -> "<name>". iso-image.nix writes
  # "${image.baseName}.iso", so the base name is the release name minus ".iso".
  isoBaseName =
    attr: row:
    let
      isos = builtins.filter (n: builtins.match ".*\\.iso" n != null) (builtins.attrValues row.files);
    in
    if builtins.length isos == 1 then
      builtins.head (builtins.match "(.*)\\.iso" (builtins.head isos))
    else
      throw "targets.json: ${attr} is an iso target and needs exactly one *.iso release name";

  target = attr: row: {
    inherit attr;
    inherit (row) system image;
    # Paths inside the package's store path, as targets.json lists them.
    sources = builtins.attrNames row.files;
    baseName = if row.image == "iso" then isoBaseName attr row else null;
  };

  targets = builtins.mapAttrs target rows;

  systems = builtins.attrNames (
    builtins.listToAttrs (
      map (t: {
        name = t.system;
        value = null;
      }) (builtins.attrValues targets)
    )
  );
in
{
  inherit targets systems;

  # targets grouped by Nix system: bySystem.<system>.<attr> = target
  bySystem = builtins.listToAttrs (
    map (system: {
      name = system;
      value = builtins.removeAttrs targets (
        builtins.filter (attr: targets.${attr}.system != system) (builtins.attrNames targets)
      );
    }) systems
  );
}
