# The runner machine: a stateless NixOS host running one kind of forgejo-runner.
# Exported as nixosModules.runner; nix/netboot.nix and nix/iso.nix add the boot medium.
#
# The nixpkgs module services.gitea-actions-runner is deliberately not used: its ExecStartPre
# runs `forgejo-runner register`, which the forgejo-runner 12.x in nixos-26.05 deprecates and
# which fails against current Forgejo servers (NixOS/nixpkgs#560912), and it re-registers a new
# runner whenever its state is lost, which on a RAM-only machine is every boot. Instead:
#   forgejo-runner-secret.service  finds runner.env on the boot medium (or asks the boot broker
#                                  for it) and writes the runner's credential itself
#                                  (runner-secret.sh): a single-use registration minted for this
#                                  boot, or the operator's long-lived secret;
#   forgejo-runner.service         container mode (the default): `forgejo-runner daemon` with
#                                  docker:// labels only, as a user in the docker group;
#   forgejo-runner-host.service    host mode (opt-in, FORGEJO_RUNNER_MODE=host in runner.env):
#                                  `forgejo-runner one-job --wait` as an unprivileged user, under a
#                                  hard time limit, then a reboot after ANY end of it, so every
#                                  host job starts on a fresh machine;
#   runner-ssh-host-keys.service   prints the SSH host key fingerprints on the console and in
#                                  the journal, so an operator can check them on first contact.
# Each runner unit is skipped unless its own credential file exists, so a machine is one kind.
#
# Sources read for the runner side: forgejo-runner v12 (code.forgejo.org/forgejo/runner/v12,
# mirror project-mirrors/forgejo-runner at 0988a0cb, 2025-12-10), and for one-job's connection
# flags and exit statuses the upstream history in ppaslan/runner at 483dc418 (v12.8.2, "RUN@12.8.2"
# below). Why the design is what it is, and what it cannot protect against:
# docs/machine-credential.md and docs/threat-model.md.
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

  # Container mode: the daemon's user is in the container runtime's group (root-equivalent), so
  # it only ever runs docker:// labels; jobs run inside containers and never as this user.
  user = "forgejo-runner";
  # Host mode: jobs run as this user (act/container/host_environment.go starts them with the
  # runner's own uid). Never in the docker/podman group; one job per boot.
  hostUser = "forgejo-runner-host";
  # Root-owned (0755), created by forgejo-runner-secret.service; the credential files in it are
  # 0600 and owned by the user of the runner that reads them.
  credentialDir = "/run/forgejo-runner";
  # Where stage 1 puts a runner.env the boot loader added to the initramfs (runner-secret.sh).
  initrdEnvDir = "/run/forgejo-runner-initrd";
  containerRunnerFile = "${credentialDir}/container.runner";
  # Host mode's connection (runner-secret.sh): the token alone, without a newline, for
  # `--token-url file:`; and RUNNER_URL and RUNNER_UUID (not secret) for the unit's command line.
  hostTokenFile = "${credentialDir}/host.token";
  hostEnvFile = "${credentialDir}/host.env";
  # A `.runner` file would conflict with the connection from the command line ("server
  # connection conflict", RUN@12.8.2 internal/app/cmd/args.go connectionFromArguments, after
  # config.FromRegistration in job.go). runner-secret.sh deletes this one at every boot and never
  # writes it; the host config names it so that no `.runner` in the working directory is read.
  hostNoRegistrationFile = "${credentialDir}/host.runner";
  runnerHome = "${cfg.stateDisk.mountPoint}/forgejo-runner";
  # systemd StateDirectory=: /var/lib/<name>, on the RAM root (never the state disk), owned by
  # the unit's User=.
  hostStateName = "forgejo-runner-host";
  hostHome = "/var/lib/${hostStateName}";
  # The runner's cache proxy, the one host port job containers may reach (cache.proxy_port;
  # ACTIONS_CACHE_URL points at it: internal/app/run/runner.go setupCache).
  cacheProxyPort = 4001;
  # nixos/lib/utils.nix escapeSystemdPath: "/var/lib/runner-state" -> "var-lib-runner\x2dstate"
  stateMountUnit = "${utils.escapeSystemdPath cfg.stateDisk.mountPoint}.mount";

  isDocker = cfg.containerRuntime == "docker";
  runtimeGroup = if isDocker then "docker" else "podman";
  # iptables interface names ("+" is iptables' wildcard; nixos/modules/services/networking/
  # firewall-iptables.nix passes them to `-i`): the default bridge and the per-job networks.
  containerBridges = if isDocker then [ "docker0" "br-+" ] else [ "podman+" ];

  # Runner labels "<name>:<scheme>" (internal/pkg/labels in the runner source), one scheme each.
  # types.strMatching checks with builtins.match, which matches the whole string (lib/types.nix
  # of nixpkgs lib @ de42d442, the copy in ../shared/nixpkgs-lib).
  labelsOption =
    scheme: default: description:
    mkOption {
      type = types.listOf (types.strMatching "[^:]+:${scheme}");
      inherit default description;
    };

  # pkgs.formats.yaml = yaml_1_1: generate name value writes builtins.toJSON value through
  # remarshal's json2yaml (nixpkgs pkgs/pkgs-lib/formats.nix @ 001740f0).
  yaml = pkgs.formats.yaml { };
  # forgejo-runner configuration keys checked against the runner v12 source,
  # internal/pkg/config/config.go and config.example.yaml: runner.file, runner.capacity,
  # runner.labels, cache.enabled, cache.dir, cache.proxy_port, host.workdir_parent.
  containerConfig = yaml.generate "forgejo-runner-container.yaml" {
    log.level = "info";
    runner = {
      file = containerRunnerFile;
      capacity = cfg.capacity;
      labels = cfg.containerLabels;
    };
    cache = {
      enabled = true;
      dir = "${runnerHome}/cache";
      proxy_port = cacheProxyPort;
    };
    # container.docker_host stays at the runner default "-": the daemon finds the socket
    # itself and does NOT mount it into job containers (that would hand jobs root).
  };
  hostConfig = yaml.generate "forgejo-runner-host.yaml" {
    log.level = "info";
    runner = {
      file = hostNoRegistrationFile;
      capacity = 1;
      # The connection from the command line has no --label, so it takes these (RUN@12.8.2
      # internal/pkg/config/config.go New: runner.labels become the default labels of every
      # connection that has none).
      labels = cfg.hostLabels;
    };
    # A cache lives exactly one job on a machine that reboots after each: not worth a server.
    cache.enabled = false;
    # The job's work directory, and the action cache too (RUN@12.8.2 internal/app/run/runner.go:
    # ActionCacheDir = host.workdir_parent): both inside HOME, which is emptied before the job.
    host.workdir_parent = "${hostHome}/work";
  };

  secretScript = pkgs.writeShellApplication {
    name = "forgejo-runner-secret";
    runtimeInputs = [
      pkgs.coreutils
      pkgs.curl
      pkgs.util-linux # mount, umount, mountpoint
      config.systemd.package # udevadm
    ];
    text = builtins.readFile ./runner-secret.sh;
  };

  # What both runner units share: they start at boot, and only after the credential exists.
  # (systemd.services.<name>.wantedBy/requires/wants: nixos/lib/systemd-unit-options.nix, not
  # re-read: from memory.)
  runnerUnit = {
    wantedBy = [ "multi-user.target" ];
    requires = [ "forgejo-runner-secret.service" ];
    wants = [ "network-online.target" ];
  };

  # First ExecStartPre of the host runner: wait until Forgejo answers at all. `one-job` declares
  # itself first and exits 1 when that fails (RUN@12.8.2 internal/app/cmd/daemon.go createRunner,
  # job.go runJob), and any exit reboots the machine: without this, a Forgejo outage would be a
  # reboot loop, re-downloading the image each time. Any HTTP answer will do (curl without --fail
  # exits 0 for every status). This is the project's code, before any job on this boot.
  waitForForgejo = pkgs.writeShellScript "forgejo-runner-host-wait-for-forgejo" ''
    until status=0; ${pkgs.curl}/bin/curl --silent --output /dev/null --proto =https,http --connect-timeout 10 --max-time 20 "$RUNNER_URL/api/v1/version" || status=$?; [ "$status" = 0 ]; do
      echo "forgejo-runner-host: $RUNNER_URL does not answer (curl exit status $status); waiting ''${WAIT_SECONDS}s before starting one-job"
      ${pkgs.coreutils}/bin/sleep "$WAIT_SECONDS"
    done
  '';

  # Second ExecStartPre of the host runner, as root ("+"): HOME emptied before the job. It holds the
  # work directory and the action cache (hostConfig above), and whatever else a job could leave
  # for the next. The machine reboots after every job, so on a RAM root HOME is new anyway; this
  # makes it a rule of the unit, not a property of the boot. rm does not follow symlinks a job
  # planted, and stays on this filesystem. A HOME that cannot be emptied fails the start, and
  # the unit's failure reboots the machine (afterHostJob).
  # (pkgs.writeShellScript name text: trivial-builders, not re-read: from memory.)
  emptyHostHome = pkgs.writeShellScript "forgejo-runner-host-empty-home" ''
    ${pkgs.findutils}/bin/find ${hostHome} -mindepth 1 -maxdepth 1 -exec ${pkgs.coreutils}/bin/rm -rf --one-file-system -- {} +
    if [ -n "$(${pkgs.coreutils}/bin/ls -A ${hostHome})" ]; then
      echo "forgejo-runner-host: could not empty ${hostHome}; not starting a job"
      exit 1
    fi
  '';

  # ExecStopPost of the host runner, as root ("+"): after ANY end of `one-job` the credential
  # goes and the machine reboots, from RAM. No exit status is read as "no job ran":
  #   - 0 follows a task whatever its result, and also a SIGTERM while waiting or during a task
  #     (RUN@12.8.2 main.go signal.NotifyContext; internal/app/poll/single.go Poll returns nil);
  #   - 1 is any error, including a log.Fatal in the middle of a task (a called reusable
  #     workflow whose `on:` does not decode, act/model/workflow.go On), after steps of the job
  #     may have run;
  #   - 2 is "no task received" without --wait (RUN@12.8.2 cmd.go, poll.ErrNoTaskReceived; this
  #     unit always waits);
  #   - a signal, a crash, or systemd's RuntimeMaxSec= (SERVICE_RESULT=timeout).
  # systemd runs ExecStopPost after the main process ended for any reason, also when a start
  # step failed, and sets EXIT_CODE, EXIT_STATUS and SERVICE_RESULT for it (systemd.exec(5),
  # "Environment Variables in Spawned Processes", its table of $SERVICE_RESULT values: success,
  # exit-code, signal, core-dump, timeout; read in Debian's systemd 252.38 man pages). They are
  # only logged. KillMode=control-group (the default) has ended everything
  # the job left running, setsid or not, before this runs.
  afterHostJob = pkgs.writeShellScript "forgejo-runner-host-after-job" ''
    echo "forgejo-runner-host: one-job ended (''${EXIT_CODE:-unknown} ''${EXIT_STATUS:-}, result ''${SERVICE_RESULT:-unknown}); removing its credential and rebooting for a clean machine"
    ${pkgs.coreutils}/bin/rm -f ${hostTokenFile} ${hostEnvFile}
    ${config.systemd.package}/bin/systemctl --no-block reboot
  '';

  # The SSH host keys are new at every boot (nothing persists): print their fingerprints where an
  # operator can read them without trusting the network, the console, and in the journal.
  # `ssh-keygen -l -f <public key>` prints "<bits> SHA256:<hash> <comment> (<type>)" (OpenSSH
  # ssh-keygen(1); from memory). HOST_KEY_DIR: where services.openssh keeps them by default
  # (/etc/ssh/ssh_host_<type>_key, nixos/modules/services/networking/ssh/sshd.nix hostKeys; not
  # re-read at nixos-26.05: from memory).
  printHostKeys = pkgs.writeShellScript "runner-ssh-host-keys" ''
    found=0
    for key in "$HOST_KEY_DIR"/ssh_host_*_key.pub; do
      [ -f "$key" ] || continue
      fingerprint=$(${pkgs.openssh}/bin/ssh-keygen -l -f "$key") || continue
      echo "runner-ssh-host-key: $fingerprint"
      found=1
    done
    if [ "$found" != 1 ]; then
      echo "runner-ssh-host-key: no SSH host key in $HOST_KEY_DIR"
      exit 1
    fi
  '';

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

    containerLabels =
      labelsOption "docker://.+"
        [
          # container jobs (`runs-on: docker`), image as in the runner's own default labels
          "docker:docker://data.forgejo.org/oci/node:lts"
        ]
        ''
          Labels of the container-mode runner (the default mode), declared to Forgejo at every
          start. Only `:docker://` labels: that runner's user can reach the container runtime,
          so it must never run a job outside a container.
        '';

    hostLabels =
      labelsOption "host"
        [
          # Nix on the machine itself, one job per boot (`runs-on: nix-host-one-job`)
          "nix-host-one-job:host"
        ]
        ''
          Labels of the host-mode runner, offered only when runner.env says
          FORGEJO_RUNNER_MODE=host. Jobs run on the machine as the ${hostUser} user with
          {option}`runnerImage.hostPackages` (and Nix with flakes) on PATH, one job per boot:
          the machine reboots after each.
        '';

    hostOneJobTimeout = mkOption {
      type = types.strMatching "[1-9][0-9]*(s|min|h)";
      default = "6h";
      example = "90min";
      description = ''
        Hard limit on one host-mode `forgejo-runner one-job`: waiting for a job plus running it
        (systemd RuntimeMaxSec=). When it is reached the runner is stopped and the machine
        reboots, as after any job, and fetches a new credential. An idle host machine therefore
        reboots once per this time. Forgejo itself stops a task after its ENDLESS_TASK_TIMEOUT
        (3h by default).
      '';
    };

    capacity = mkOption {
      type = types.ints.positive;
      default = 1;
      description = "Number of jobs the container-mode runner runs at the same time (host mode: always 1).";
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
      description = "Packages on PATH for host-mode jobs.";
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
      Details: /etc/runner-image-release. Runner: systemctl status forgejo-runner-secret forgejo-runner forgejo-runner-host
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
    # Job containers reach the host only at the runner's cache proxy: no trusted interfaces.
    # networking.firewall.interfaces.<name>.allowedTCPPorts (nixos/modules/services/networking/
    # firewall.nix; nixpkgs master 0192bb84, the option predates nixos-26.05).
    # (lib.genAttrs names f: nixpkgs lib attrsets.nix @ de42d442.)
    networking.firewall.interfaces = lib.genAttrs containerBridges (_: {
      allowedTCPPorts = [ cacheProxyPort ];
    });
    # Those names are iptables wildcards: the nftables backend writes them unquoted after
    # `iifname` (nixos/modules/services/networking/firewall-nftables.nix @ 040b4eb6, input-allow:
    # "iifname <name>"), where `br-+` is a syntax error that takes the whole firewall down. So
    # the iptables backend, stated rather than assumed: making nftables the default is proposed
    # for NixOS (NixOS/nixpkgs#477049, open in 2026-01; whether nixos-26.05 took it could not
    # be read here). firewall.nix @ 0192bb84 derives networking.firewall.backend from this:
    # "firewalld" if services.firewalld.enable, else "nftables" if nftables.enable, else "iptables".
    networking.nftables.enable = false;

    # A host job must not attach to its parent, the one-job runner, to fake its exit status
    # (Yama: 1 = only descendants; the value nixos/modules/profiles/hardened.nix @ 00ac71ab sets,
    # there with mkOverride 500).
    # boot.kernel.sysctl: nixos/modules/config/sysctl.nix (nixpkgs master 785eaf2c).
    boot.kernel.sysctl."kernel.yama.ptrace_scope" = 1;

    # iPXE can add runner.env to the initramfs (`initrd <url> /runner.env`), which keeps the
    # configuration URL off /proc/cmdline. switch_root deletes the initramfs, so the scripted
    # stage 1 moves the file into /run first: nixos/modules/system/boot/stage-1-init.sh (nixpkgs
    # master 014260a9) mounts /run as tmpfs before postDeviceCommands and moves /run into the
    # new root.
    # The scripted stage 1 must be asked for: nixos-26.05 runs systemd in stage 1 by default
    # (NixOS/nixpkgs#435781; "NixOS 26.05 makes systemd stage 1 / initrd the default",
    # NixOS/nixpkgs#526285), and nixos/modules/system/boot/systemd/initrd.nix (read at 00e6b22b)
    # then asserts that postDeviceCommands is empty, so no machine would evaluate. The scripted
    # stage 1 is to be removed in 26.11 (NixOS/nixpkgs#545932): port this hook to a
    # boot.initrd.systemd service before moving the pin past 26.05. (initrd.nix at 26.05 and
    # the PR itself were not readable here; the default's change rests on those threads.)
    boot.initrd.systemd.enable = false;
    boot.initrd.postDeviceCommands = ''
      if [ -f /runner.env ]; then
        mkdir -m 0700 -p ${initrdEnvDir}
        mv /runner.env ${initrdEnvDir}/runner.env
      fi
    '';

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

    # --- the runners ---
    users.users.${user} = {
      isSystemUser = true;
      group = user;
      home = runnerHome;
      extraGroups = [ runtimeGroup ];
    };
    users.groups.${user} = { };
    # No extraGroups: not docker, podman, wheel or kvm (Nix builds reach /dev/kvm through
    # nix-daemon, not through this user). (users.users.<name>.isSystemUser/group/home and
    # extraGroups: nixos/modules/config/users-groups.nix, not re-read: from memory.)
    users.users.${hostUser} = {
      isSystemUser = true;
      group = hostUser;
      home = hostHome;
    };
    users.groups.${hostUser} = { };

    systemd.services.forgejo-runner-secret = {
      description = "Find the Forgejo runner secret on the boot medium";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      before = [
        "forgejo-runner.service"
        "forgejo-runner-host.service"
      ];
      environment = {
        CMDLINE_PARAM = cfg.secretSource.cmdlineParam;
        CONFIG_LABEL = cfg.secretSource.label;
        CONFIG_FILE_NAME = cfg.secretSource.fileName;
        DEFAULT_URL = if cfg.forgejoUrl == null then "" else cfg.forgejoUrl;
        DEFAULT_NAME = cfg.name;
        INITRD_ENV_FILE = "${initrdEnvDir}/runner.env";
        RUNNER_DIR = credentialDir;
        CONTAINER_USER = user;
        HOST_USER = hostUser;
        LABEL_WAIT_SECONDS = "5";
      };
      # systemd.exec(5) sandboxing (systemd >= 247 for all of them; nixos-26.05 ships a far newer
      # one; every directive name here, RuntimeDirectory* included, is an exec-context setting
      # in systemd src/core/load-fragment-gperf.gperf.in @ 00f37365; the semantics stated in the
      # comments are from systemd.exec(5), not re-read), each directive checked against what the script does
      # (read /proc/cmdline, fetch over the network, mount a vfat/ext stick read-only in its
      # own mount namespace, write ${credentialDir}, chown to the runner users):
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStart = "${secretScript}/bin/forgejo-runner-secret";
        # ${credentialDir}, root-owned 0755; kept when the unit stops (the runners read it).
        RuntimeDirectory = "forgejo-runner";
        RuntimeDirectoryMode = "0755";
        RuntimeDirectoryPreserve = true;
        # The stick is mounted in the unit's own mount namespace: no job ever sees it mounted.
        PrivateMounts = true;
        PrivateTmp = true; # the scratch directory (WORK_PARENT=/tmp)
        ProtectSystem = "strict"; # read-only /usr, /boot, /etc...; RuntimeDirectory stays writable
        # the initrd hand-over, deleted once read ("-": usually absent)
        ReadWritePaths = [ "-${initrdEnvDir}" ];
        ProtectHome = true;
        NoNewPrivileges = true;
        # mount needs CAP_SYS_ADMIN, chown CAP_CHOWN; CAP_DAC_READ_SEARCH reads a runner.env
        # that is another user's 0600 file on an ext4 stick (the operator's own uid, where the
        # stick was written). Not CAP_DAC_OVERRIDE: the script writes only its own files.
        CapabilityBoundingSet = [
          "CAP_SYS_ADMIN"
          "CAP_CHOWN"
          "CAP_DAC_READ_SEARCH"
        ];
        # AF_NETLINK: udevadm settle; AF_UNIX: udev's control socket and name resolution.
        RestrictAddressFamilies = [
          "AF_UNIX"
          "AF_INET"
          "AF_INET6"
          "AF_NETLINK"
        ];
        ProtectKernelTunables = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectClock = true;
        ProtectHostname = true;
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        LockPersonality = true;
        MemoryDenyWriteExecute = true;
        SystemCallArchitectures = "native";
        # Not set, on purpose: PrivateDevices (hides the stick's block device), PrivateNetwork
        # (the fetch), ProtectKernelModules (mounting vfat may load the vfat module).
      };
    };

    # Container mode: the daemon, docker:// labels only.
    systemd.services.forgejo-runner = runnerUnit // {
      description = "Forgejo Actions runner (container jobs)";
      after = [
        "forgejo-runner-secret.service"
        "network-online.target"
        "${runtimeGroup}.service"
      ]
      ++ lib.optional (cfg.stateDisk.label != null) stateMountUnit;
      unitConfig.ConditionPathExists = containerRunnerFile;
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
        ExecStart = "${cfg.package}/bin/forgejo-runner daemon --config ${containerConfig}";
        # "-": may not exist before ExecStartPre has run
        WorkingDirectory = "-${runnerHome}";
        # The daemon declares itself to Forgejo at start; while Forgejo is unreachable it exits
        # and is started again (registration itself needed no network).
        Restart = "on-failure";
        RestartSec = 10;
        NoNewPrivileges = true;
        ProtectProc = "invisible";
      };
    };

    # Host mode: one job, then a reboot (afterHostJob), whatever happened. The job runs as
    # ${hostUser}. Its token was single-use if runner.env brought a broker-minted registration
    # (Forgejo gives such a runner no second task); a long-lived secret is readable by the job
    # (docs/machine-credential.md).
    systemd.services.forgejo-runner-host = runnerUnit // {
      description = "Forgejo Actions runner (one host job per boot)";
      after = [
        "forgejo-runner-secret.service"
        "network-online.target"
        "nix-daemon.socket" # nixos/modules/services/system/nix-daemon.nix (not re-read: from memory)
      ];
      unitConfig.ConditionPathExists = hostTokenFile;
      path = cfg.hostPackages;
      environment = {
        HOME = hostHome;
        WAIT_SECONDS = "15";
      };
      serviceConfig = {
        User = hostUser;
        Group = hostUser;
        # StateDirectory*, ProtectProc, PrivateTmp, NoNewPrivileges, EnvironmentFile,
        # RuntimeMaxSec, TimeoutStartSec, Restart, ExecStartPre, ExecStopPost: settings in systemd
        # src/core/load-fragment-gperf.gperf.in @ 00f37365
        StateDirectory = hostStateName;
        StateDirectoryMode = "0700";
        WorkingDirectory = hostHome;
        ExecStartPre = [
          "${waitForForgejo}"
          "+${emptyHostHome}"
        ];
        # The wait above may last as long as an outage; the start steps have no time limit.
        TimeoutStartSec = "infinity";
        # RUNNER_URL and RUNNER_UUID, written by runner-secret.sh next to the token; systemd
        # replaces ''${NAME} on the command line by the value, as one argument (systemd.service(5),
        # "Command lines": from memory).
        EnvironmentFile = hostEnvFile;
        # `one-job` with the connection on its command line (RUN@12.8.2 internal/app/cmd/cmd.go:
        # --url, --uuid, --token-url, -w/--wait; forgejo-runner 12.8.0 and later, see the
        # assertion below). --wait: poll until a task comes, instead of exiting 2 when none is
        # waiting (a reboot per poll). It never gives up by itself, not even when the credential
        # was deleted (internal/app/poll/single.go), hence RuntimeMaxSec=.
        ExecStart = lib.concatStringsSep " " [
          "${cfg.package}/bin/forgejo-runner one-job --config ${hostConfig}"
          "--url \${RUNNER_URL} --uuid \${RUNNER_UUID} --token-url file:${hostTokenFile} --wait"
        ];
        # The hard limit on waiting plus the job; then systemd stops the unit (SIGTERM, and
        # SIGKILL after TimeoutStopSec=) and the machine reboots with SERVICE_RESULT=timeout.
        RuntimeMaxSec = cfg.hostOneJobTimeout;
        ExecStopPost = "+${afterHostJob}";
        # Never again on the same boot: the next job gets a new machine (afterHostJob).
        Restart = "no";
        # Other users' processes (the container runtime, sshd sessions) are invisible to the job.
        ProtectProc = "invisible";
        PrivateTmp = true;
        NoNewPrivileges = true;
      };
    };

    systemd.services.runner-ssh-host-keys = {
      description = "Print the SSH host key fingerprints";
      wantedBy = [ "multi-user.target" ];
      # sshd-keygen.service makes the keys in current NixOS, sshd's own start did before; ordering
      # after a unit that does not exist is no error (systemd.unit(5) After=: from memory).
      after = [
        "sshd-keygen.service"
        "sshd.service"
      ];
      environment.HOST_KEY_DIR = "/etc/ssh";
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStart = printHostKeys;
        # StandardOutput=journal+console: systemd.exec(5), systemd 252.38 (read); an exec-context setting
        # in load-fragment-gperf.gperf.in @ 00f37365.
        StandardOutput = "journal+console";
      };
    };

    # `one-job --url/--uuid/--token-url` came with forgejo-runner 12.8.0 (#1457; the release is
    # inferred from the Forgejo repository's runner bumps: ../shared/reference/
    # forgejo-ephemeral-runners.md, 3.1). An older runner would reject the flags and the host
    # machine would reboot in a loop. (assertions: nixos/modules/misc/assertions.nix; not
    # re-read: from memory. lib.versionAtLeast: nixpkgs lib strings.nix @ de42d442.)
    assertions = [
      {
        assertion = lib.versionAtLeast cfg.package.version "12.8.0";
        message = "runnerImage.package: host mode needs forgejo-runner 12.8.0 or later (one-job --url --uuid --token-url), this is ${cfg.package.version}";
      }
    ];
  };
}
