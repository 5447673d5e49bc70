# The runner machine: a stateless NixOS host running one forgejo-runner daemon.
# Exported as nixosModules.runner; nix/netboot.nix and nix/iso.nix add the boot medium.
#
# The nixpkgs module services.gitea-actions-runner is deliberately not used: its ExecStartPre
# runs `forgejo-runner register`, which the forgejo-runner 12.x in nixos-26.05 deprecates and
# which fails against current Forgejo servers (NixOS/nixpkgs#560912), and it re-registers a new
# runner whenever its state is lost, which on a RAM-only machine is every boot. Instead:
#   forgejo-runner-secret.service  finds the secret on the boot medium and writes the credential
#                                  with the offline `create-runner-file --secret` (runner-secret.sh);
#   forgejo-runner.service         `forgejo-runner daemon`, skipped when there is no credential.
{
  config,
  lib,
  pkgs,
  utils,
  ...
}:
let
  cfg = config.runnerImage;
  inherit (lib) mkOption types;

  user = "forgejo-runner";
  runtimeDir = "/run/forgejo-runner";
  runnerFile = "${runtimeDir}/.runner";
  runnerHome = "${cfg.stateDisk.mountPoint}/forgejo-runner";
  # nixos/lib/utils.nix escapeSystemdPath: "/var/lib/runner-state" -> "var-lib-runner\x2dstate"
  stateMountUnit = "${utils.escapeSystemdPath cfg.stateDisk.mountPoint}.mount";

  isDocker = cfg.containerRuntime == "docker";
  runtimeGroup = if isDocker then "docker" else "podman";

  # forgejo-runner configuration (keys checked against the runner v12 source,
  # internal/pkg/config/config.go: runner.file, runner.capacity, runner.labels,
  # cache.enabled, cache.dir, host.workdir_parent).
  runnerConfig = (pkgs.formats.yaml { }).generate "forgejo-runner-config.yaml" {
    log.level = "info";
    runner = {
      file = runnerFile;
      capacity = cfg.capacity;
      labels = cfg.labels;
    };
    cache = {
      enabled = true;
      dir = "${runnerHome}/cache";
    };
    host.workdir_parent = "${runnerHome}/host";
    # container.docker_host stays at the runner default "-": the daemon finds the socket
    # itself and does NOT mount it into job containers (that would hand jobs root).
  };

  secretScript = pkgs.writeShellApplication {
    name = "forgejo-runner-secret";
    runtimeInputs = [
      cfg.package
      pkgs.coreutils
      pkgs.curl
      pkgs.util-linux # mount, mountpoint
      config.systemd.package # udevadm
    ];
    text = builtins.readFile ./runner-secret.sh;
  };

  release = cfg.release;
  releaseText = ''
    RUNNER_IMAGE_REVISION=${release.revision}
    RUNNER_IMAGE_SHORT_REVISION=${release.shortRevision}
    RUNNER_IMAGE_LAST_MODIFIED=${release.lastModified}
    NIXPKGS_REVISION=${release.nixpkgsRevision}
    NIXOS_VERSION=${config.system.nixos.version}
    FORGEJO_RUNNER_VERSION=${cfg.package.version}
  '';
in
{
  options.runnerImage = {
    package = lib.mkPackageOption pkgs "forgejo-runner" { };

    forgejoUrl = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "https://forgejo.example.org";
      description = ''
        Default Forgejo instance URL. FORGEJO_URL in the boot-time runner.env overrides it;
        with neither, the runner does not start.
      '';
    };

    name = mkOption {
      type = types.str;
      default = config.networking.hostName;
      defaultText = lib.literalExpression "config.networking.hostName";
      description = ''
        Prefix of the runner name shown in Forgejo: "<name>-<first 8 characters of the
        runner id>". FORGEJO_RUNNER_NAME in runner.env overrides the whole name.
      '';
    };

    labels = mkOption {
      type = types.listOf types.str;
      default = [
        # container jobs (`runs-on: docker`), image as in the runner's own default labels
        "docker:docker://data.forgejo.org/oci/node:lts"
        # Nix jobs on the host, without isolation (`runs-on: nix`)
        "nix:host"
      ];
      description = ''
        Runner labels, declared to Forgejo at every start. `:docker://` labels run in the
        container runtime; `:host` labels run on the machine as the ${user} user with
        {option}`runnerImage.hostPackages` (and Nix with flakes) on PATH.
      '';
    };

    capacity = mkOption {
      type = types.ints.positive;
      default = 1;
      description = "Number of jobs run at the same time.";
    };

    containerRuntime = mkOption {
      type = types.enum [
        "docker"
        "podman"
      ];
      default = "docker";
      description = "Container runtime for `docker://` labels (podman through its Docker API socket).";
    };

    hostPackages = mkOption {
      type = types.listOf types.package;
      default = with pkgs; [
        bash
        coreutils
        curl
        findutils
        gawk
        gitMinimal
        gnugrep
        gnused
        gnutar
        gzip
        nodejs # actions such as checkout are node programs
        wget
        xz
        config.nix.package
      ];
      defaultText = lib.literalMD "bash, coreutils, curl, git, node, tar and friends, and Nix";
      description = "Packages on PATH for `:host` jobs.";
    };

    sshAuthorizedKeys = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "SSH public keys allowed to log in as root (operators). Empty: nobody can log in over SSH.";
    };

    secretSource = {
      cmdlineParam = mkOption {
        type = types.str;
        default = "runner.config_url";
        description = "Kernel parameter naming the URL of runner.env (netboot; set from iPXE).";
      };
      label = mkOption {
        # vfat labels are at most 11 characters, so not "RUNNER-CONFIG".
        type = types.strMatching "[A-Z0-9_-]{1,11}";
        default = "RUNNER-CFG";
        description = "Filesystem label of the partition or stick holding runner.env.";
      };
      fileName = mkOption {
        type = types.str;
        default = "runner.env";
        description = "Name of the env file, at the root of that filesystem.";
      };
    };

    stateDisk = {
      label = mkOption {
        type = types.nullOr types.str;
        default = "RUNNER-STATE";
        description = ''
          Filesystem label of an optional local disk for Docker images, job work
          directories and caches. Mounted with `nofail`: without such a disk all of it
          lives in RAM (the machine stays stateless). null disables the mount.
        '';
      };
      mountPoint = mkOption {
        type = types.str;
        default = "/var/lib/runner-state";
        description = "Where that disk is mounted; a plain directory in RAM without it.";
      };
    };

    release = {
      revision = mkOption {
        type = types.str;
        default = "unknown";
        description = "Git revision of this repository the image was built from (\"dirty\" if uncommitted).";
      };
      shortRevision = mkOption {
        type = types.str;
        default = "unknown";
      };
      lastModified = mkOption {
        type = types.str;
        default = "unknown";
        description = "Commit time of that revision, YYYYMMDDHHMMSS (UTC).";
      };
      nixpkgsRevision = mkOption {
        type = types.str;
        default = "unknown";
      };
    };
  };

  config = {
    system.stateVersion = "26.05";
    # nixos/modules/misc/version.nix: shown by `nixos-version --configuration-revision`
    system.configurationRevision = release.revision;
    networking.hostName = lib.mkDefault "forgejo-runner";

    nix.settings.experimental-features = [
      "nix-command"
      "flakes"
    ];

    # --- the image's provenance, on the machine ---
    environment.etc."runner-image-release".text = releaseText;
    users.motd = ''
      Forgejo runner image ${release.shortRevision} (${release.lastModified}), NixOS ${config.system.nixos.version}, forgejo-runner ${cfg.package.version}
      Details: /etc/runner-image-release. Runner: systemctl status forgejo-runner-secret forgejo-runner
    '';

    # --- operators ---
    services.openssh = {
      enable = true;
      settings = {
        PasswordAuthentication = false;
        KbdInteractiveAuthentication = false;
        PermitRootLogin = "prohibit-password";
      };
    };
    users.users.root.openssh.authorizedKeys.keys = cfg.sshAuthorizedKeys;

    # --- container runtime ---
    virtualisation.docker = lib.mkIf isDocker {
      enable = true;
      # nixos/modules/virtualisation/docker.nix (freeform daemon.json)
      daemon.settings.data-root = "${cfg.stateDisk.mountPoint}/docker";
      autoPrune.enable = true;
    };
    virtualisation.podman = lib.mkIf (!isDocker) {
      enable = true;
      # nixos/modules/virtualisation/podman/default.nix: Docker API socket, group "podman"
      dockerSocket.enable = true;
    };
    # Job containers reach the runner's cache server on the host through these bridges.
    # ("+" is the iptables interface wildcard; the NixOS firewall uses iptables by default.)
    networking.firewall.trustedInterfaces = [
      "docker0"
      "br-+"
      "podman+"
    ];

    # --- optional local disk for state and caches ---
    fileSystems = lib.mkIf (cfg.stateDisk.label != null) {
      ${cfg.stateDisk.mountPoint} = {
        device = "/dev/disk/by-label/${cfg.stateDisk.label}";
        fsType = "auto";
        options = [
          "nofail"
          "noatime"
          "x-systemd.device-timeout=10s"
        ];
      };
    };
    systemd.services.docker.after = lib.mkIf (isDocker && cfg.stateDisk.label != null) [ stateMountUnit ];

    # --- the runner ---
    users.users.${user} = {
      isSystemUser = true;
      group = user;
      home = runnerHome;
      extraGroups = [ runtimeGroup ];
    };
    users.groups.${user} = { };

    systemd.services.forgejo-runner-secret = {
      description = "Find the Forgejo runner secret on the boot medium";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      before = [ "forgejo-runner.service" ];
      environment = {
        CMDLINE_PARAM = cfg.secretSource.cmdlineParam;
        CONFIG_LABEL = cfg.secretSource.label;
        CONFIG_FILE_NAME = cfg.secretSource.fileName;
        DEFAULT_URL = if cfg.forgejoUrl == null then "" else cfg.forgejoUrl;
        DEFAULT_NAME = cfg.name;
        RUNNER_CONFIG = "${runnerConfig}";
        RUNNER_FILE = runnerFile;
        RUNNER_USER = user;
        LABEL_WAIT_SECONDS = "5";
      };
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStart = "${secretScript}/bin/forgejo-runner-secret";
      };
    };

    systemd.services.forgejo-runner = {
      description = "Forgejo Actions runner";
      wantedBy = [ "multi-user.target" ];
      requires = [ "forgejo-runner-secret.service" ];
      wants = [ "network-online.target" ];
      after = [
        "forgejo-runner-secret.service"
        "network-online.target"
        "${runtimeGroup}.service"
      ]
      ++ lib.optional (cfg.stateDisk.label != null) stateMountUnit;
      # No secret on the boot medium: skipped (forgejo-runner-secret logged why).
      unitConfig.ConditionPathExists = runnerFile;
      path = cfg.hostPackages;
      environment = {
        HOME = runnerHome;
      }
      // lib.optionalAttrs (!isDocker) {
        DOCKER_HOST = "unix:///run/podman/podman.sock";
      };
      serviceConfig = {
        User = user;
        Group = user;
        # "+": as root, so it works whether or not the state disk is mounted
        ExecStartPre = "+${pkgs.coreutils}/bin/install -d -m 0750 -o ${user} -g ${user} ${runnerHome}";
        ExecStart = "${cfg.package}/bin/forgejo-runner daemon --config ${runnerConfig}";
        # "-": may not exist before ExecStartPre has run
        WorkingDirectory = "-${runnerHome}";
        Restart = "on-failure";
        RestartSec = 10;
      };
    };
  };
}
