# The boot broker (scripts/boot-broker.ts, docs/boot-broker.md) as a NixOS service on the
# operator's boot server: nixosModules.boot-broker. It writes the broker's configuration from
# these options, hands the broker its Forgejo token, TLS key and any legacy secrets as systemd
# credentials, and runs it under a unit with no write access anywhere and no user of its own.
#
# Sources, read on this machine: systemd.exec(5) of systemd 252 (Debian 12's man page:
# DynamicUser=, LoadCredential= and $CREDENTIALS_DIRECTORY, ProtectSystem=strict,
# MemoryDenyWriteExecute=, CapabilityBoundingSet=, SystemCallFilter=). The nixpkgs module
# conventions (mkEnableOption, mkPackageOption, serviceConfig passed through verbatim, lists as
# repeated directives, LoadCredential as "id:path" with $CREDENTIALS_DIRECTORY in the program,
# as services.forgejo and services.forgejo-runner do) per helper notes /tmp/research/nixpkgs.md
# §6-7 (nixos/lib/systemd-unit-options.nix, nixos/modules/services/misc/forgejo.nix); lib's
# functions are from ../shared/nixpkgs-lib, which tests/broker-module.test.ts evaluates this with.
# Never run under systemd here: it is evaluated, not booted (docs/boot-broker.md says so).
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.services.runner-boot-broker;

  # LoadCredential= ids: the broker finds each at $CREDENTIALS_DIRECTORY/<id> (config.ts expandPath).
  legacyId = machine: "legacy-secret-${machine.name}";
  credentials =
    [
      "forgejo-token:${cfg.forgejo.tokenFile}"
      "tls-cert:${cfg.tls.certFile}"
      "tls-key:${cfg.tls.keyFile}"
    ]
    ++ map (m: "${legacyId m}:${m.legacySecretFile}") (lib.filter (m: m.legacySecretFile != null) cfg.machines);

  # The configuration file scripts/lib/broker/config.ts reads (JSON); no secret is in it, only
  # where the credentials are.
  settings = {
    forgejo = {
      inherit (cfg.forgejo) url repository level;
      tokenFile = "$CREDENTIALS_DIRECTORY/forgejo-token";
    }
    // lib.optionalAttrs (cfg.forgejo.runnerUrl != null) { inherit (cfg.forgejo) runnerUrl; }
    // lib.optionalAttrs cfg.forgejo.allowInsecureHttp { allowInsecureHttp = true; };
    listen = { inherit (cfg) host port; };
    tls = {
      certFile = "$CREDENTIALS_DIRECTORY/tls-cert";
      keyFile = "$CREDENTIALS_DIRECTORY/tls-key";
    };
    credentials = { inherit (cfg) unusedDeadlineSeconds forgejoWaitSeconds maxForgejoCalls pullRequestCheckSeconds; };
    rateLimit = cfg.rateLimit;
    log.file = "-"; # stdout: the journal
    machines = map (
      m:
      {
        inherit (m) name mac address mode labels;
      }
      // lib.optionalAttrs (m.legacySecretFile != null) { legacySecretFile = "$CREDENTIALS_DIRECTORY/${legacyId m}"; }
    ) cfg.machines;
  };
  configFile = pkgs.writeText "boot-broker.json" (builtins.toJSON settings);

  # A file outside the store, as a string: a Nix path literal (./token) would be copied into the
  # world-readable store when the unit names it.
  secretPath = types.strMatching "/[^ :]+";

  machineType = types.submodule {
    options = {
      name = mkOption {
        type = types.strMatching "[A-Za-z0-9][A-Za-z0-9._-]{0,49}";
        description = "The machine's name; its runner registrations are named <name>-<boot id>.";
      };
      mac = mkOption {
        type = types.strMatching "[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}";
        description = "Its MAC address: the one its iPXE script puts in the URL (\${net0/mac:hexhyp}).";
      };
      address = mkOption {
        type = types.str;
        description = "The source address its requests must come from (a DHCP reservation). Requests for this machine from any other address are refused.";
      };
      mode = mkOption {
        type = types.enum [ "container" "host" ];
        default = "container";
        description = "container: a per-boot registration for the container daemon. host: an ephemeral registration for one job, refused while the repository accepts pull requests.";
      };
      labels = mkOption {
        type = types.listOf (types.strMatching "[A-Za-z0-9._-]{1,64}");
        default = [ ];
        description = "Label names written into runner.env (the image's own labels decide what the runner declares).";
      };
      legacySecretFile = mkOption {
        type = types.nullOr secretPath;
        default = null;
        description = "Forgejo < 15 only: a file holding this machine's long-lived secret (forgejo-cli actions register). Passed as a credential, never copied into the store: give a path outside it.";
      };
    };
  };
in
{
  options.services.runner-boot-broker = {
    enable = lib.mkEnableOption "the runner-images boot broker, which serves each booting runner machine a credential minted for that boot";
    package = lib.mkPackageOption pkgs "bun" { };
    source = mkOption {
      type = types.path;
      description = ''
        A checkout of runner-images with its dependencies installed (`bun install
        --frozen-lockfile`, so node_modules/ is there): the unit runs
        `bun --no-install <source>/scripts/boot-broker.ts` and never fetches a package.
      '';
    };
    forgejo = {
      url = mkOption {
        type = types.strMatching "https?://[^ ]+";
        description = "Forgejo's URL (https).";
      };
      runnerUrl = mkOption {
        type = types.nullOr (types.strMatching "https?://[^ ]+");
        default = null;
        description = "The URL the machines' runners connect to, when it differs from `url`.";
      };
      repository = mkOption {
        type = types.strMatching "[A-Za-z0-9._-]+/[A-Za-z0-9._-]+";
        description = "owner/name of the repository whose jobs the runners take.";
      };
      level = mkOption {
        type = types.enum [ "repository" "organization" "user" ];
        default = "repository";
        description = "Where registrations are made. Above repository level a credential takes jobs of every repository there, and host mode is refused.";
      };
      allowInsecureHttp = mkOption {
        type = types.bool;
        default = false;
        description = "Lab networks only: accept a plain http:// `url` or `runnerUrl` (the broker refuses one otherwise, except on loopback). The token then crosses the network in the clear.";
      };
      tokenFile = mkOption {
        type = secretPath;
        description = "A file holding the broker's Forgejo token (the repository owner's, write:repository). Loaded with LoadCredential=, never put into the store or argv: give a path outside the store.";
      };
    };
    host = mkOption {
      type = types.str;
      default = "0.0.0.0";
      description = "The address to listen on.";
    };
    port = mkOption {
      type = types.port;
      default = 8443;
      description = "The HTTPS port.";
    };
    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open `port` in the firewall.";
    };
    tls = {
      certFile = mkOption {
        type = secretPath;
        description = "PEM certificate (chain) the machines verify (their image's CA bundle, or CURL_CA_BUNDLE).";
      };
      keyFile = mkOption {
        type = secretPath;
        description = "PEM private key, loaded with LoadCredential=; a path outside the store.";
      };
    };
    unusedDeadlineSeconds = mkOption {
      type = types.ints.between 1 604800;
      default = 900;
      description = "A registration nobody has connected with this long after it was handed out is deleted. Make it longer than the machines' own wait for a job.";
    };
    forgejoWaitSeconds = mkOption {
      type = types.ints.between 0 600;
      default = 20;
      description = "How long one request waits for an unreachable Forgejo before the machine is told to retry (503).";
    };
    maxForgejoCalls = mkOption {
      type = types.ints.between 1 256;
      default = 8;
      description = "At most this many calls to Forgejo at once, however many machines boot together.";
    };
    pullRequestCheckSeconds = mkOption {
      type = types.ints.between 0 3600;
      default = 60;
      description = "For a host-mode request, the repository's has_pull_requests is re-read when older than this.";
    };
    rateLimit = {
      requests = mkOption {
        type = types.ints.positive;
        default = 6;
        description = "Requests one machine may make per `perSeconds`.";
      };
      perSeconds = mkOption {
        type = types.ints.positive;
        default = 600;
        description = "The rate limit's window.";
      };
    };
    allowHostWithPullRequests = mkOption {
      type = types.bool;
      default = false;
      description = "DANGEROUS: serve host-mode credentials although the repository accepts pull requests (a pull request's workflow can then run on the host runner).";
    };
    machines = mkOption {
      type = types.listOf machineType;
      description = "Every machine that may ask.";
    };
  };

  config = lib.mkIf cfg.enable {
    warnings = lib.optional cfg.allowHostWithPullRequests "services.runner-boot-broker.allowHostWithPullRequests is set: host-mode credentials are served although the repository may accept pull requests";

    networking.firewall.allowedTCPPorts = lib.optional cfg.openFirewall cfg.port;

    systemd.services.runner-boot-broker = {
      description = "runner-images boot broker";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      # A changed configuration restarts the broker on switch (the unit's text names the file anyway).
      restartTriggers = [ configFile ];
      serviceConfig = {
        ExecStart = lib.concatStringsSep " " (
          [
            "${lib.getExe cfg.package}"
            "--no-install"
            "${cfg.source}/scripts/boot-broker.ts"
            "--config"
            "${configFile}"
          ]
          ++ lib.optional cfg.allowHostWithPullRequests "--allow-host-with-pull-requests"
        );
        Restart = "on-failure";
        RestartSec = 5;
        # A user allocated at start, gone at stop; it owns nothing on disk (systemd.exec(5), DynamicUser=).
        DynamicUser = true;
        # The token, the TLS key and the legacy secrets: copied by systemd into a directory only
        # this unit can read, $CREDENTIALS_DIRECTORY (systemd.exec(5), LoadCredential=).
        LoadCredential = credentials;
        # No writes anywhere: the log is the journal, the state is in memory.
        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        PrivateDevices = true;
        PrivateUsers = cfg.port >= 1024;
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectClock = true;
        ProtectHostname = true;
        ProtectProc = "invisible";
        ProcSubset = "pid";
        NoNewPrivileges = true;
        RestrictAddressFamilies = [ "AF_INET" "AF_INET6" "AF_UNIX" ];
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        LockPersonality = true;
        SystemCallArchitectures = "native";
        SystemCallFilter = [ "@system-service" ];
        # Bun's JavaScript engine compiles to memory it then executes (JIT): forbidding
        # writable+executable mappings (systemd.exec(5), MemoryDenyWriteExecute=) would stop it.
        MemoryDenyWriteExecute = false;
        # Only a port below 1024 needs a capability (CAP_NET_BIND_SERVICE); otherwise none at all.
        CapabilityBoundingSet = if cfg.port < 1024 then [ "CAP_NET_BIND_SERVICE" ] else [ "" ];
        AmbientCapabilities = lib.optional (cfg.port < 1024) "CAP_NET_BIND_SERVICE";
        UMask = "0077";
      };
    };
  };
}
