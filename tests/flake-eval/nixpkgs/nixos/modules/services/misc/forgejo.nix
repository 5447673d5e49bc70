# Stand-in for nixpkgs nixos/modules/services/misc/forgejo.nix (tests/flake-eval only): the
# option set of the module as read at faukah/nixpkgs 3b20077c (per helper notes
# /tmp/research/nixpkgs.md §6; NixOS/nixpkgs bf6b68c9 has the same options by file list), with
# their types, so a node of nix/forgejo-boot-test.nix that sets a services.forgejo option the
# module does not have, or a value of the wrong type, fails here as it would there. Only
# options: what the module does with them (the unit, app.ini) is not modelled. settings is
# freeform INI, as there; its typed keys are the ones the module declares.
{ lib, pkgs, ... }:
let
  inherit (lib) mkOption types;
  str = default: mkOption {
    type = types.str;
    inherit default;
  };
  bool = default: mkOption {
    type = types.bool;
    inherit default;
  };
  iniValue = types.nullOr (types.oneOf [ types.bool types.int types.float types.str ]);
in
{
  options.services.forgejo = {
    enable = lib.mkEnableOption "Forgejo";
    package = mkOption {
      type = types.package;
      default = pkgs.forgejo-lts; # mkPackageOption pkgs "forgejo-lts" { }
    };
    useWizard = bool false;
    stateDir = str "/var/lib/forgejo";
    customDir = str "/var/lib/forgejo/custom";
    user = str "forgejo";
    group = str "forgejo";
    repositoryRoot = str "/var/lib/forgejo/repositories";
    database = {
      type = mkOption {
        type = types.enum [ "sqlite3" "mysql" "postgres" ];
        default = "sqlite3";
      };
      host = str "127.0.0.1";
      port = mkOption {
        type = types.port;
        default = 3306;
      };
      name = str "forgejo";
      user = str "forgejo";
      passwordFile = mkOption {
        type = types.nullOr types.path;
        default = null;
      };
      socket = mkOption {
        type = types.nullOr types.path;
        default = null;
      };
      path = str "/var/lib/forgejo/data/forgejo.db";
      createDatabase = bool true;
    };
    dump = {
      enable = bool false;
      interval = str "04:31";
      backupDir = str "/var/lib/forgejo/dump";
      type = str "zip";
      file = mkOption {
        type = types.nullOr types.str;
        default = null;
      };
    };
    lfs = {
      enable = bool false;
      contentDir = str "/var/lib/forgejo/data/lfs";
    };
    settings = mkOption {
      default = { };
      type = types.submodule {
        freeformType = types.attrsOf (types.attrsOf iniValue);
        options = {
          log.ROOT_PATH = str "/var/lib/forgejo/log";
          log.LEVEL = str "Info";
          server.PROTOCOL = mkOption {
            type = types.enum [ "http" "https" "fcgi" "http+unix" "fcgi+unix" ];
            default = "http";
          };
          server.HTTP_ADDR = str "0.0.0.0";
          server.HTTP_PORT = mkOption {
            type = types.port;
            default = 3000;
          };
          server.DOMAIN = str "localhost";
          server.ROOT_URL = str "http://localhost:3000/";
          server.DISABLE_SSH = bool false;
          server.SSH_PORT = mkOption {
            type = types.port;
            default = 22;
          };
          session.COOKIE_SECURE = bool false;
        };
      };
    };
    secrets = mkOption {
      type = types.attrsOf (types.attrsOf types.path);
      default = { };
    };
  };
}
