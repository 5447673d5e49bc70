# Evaluates the repository's flake.nix as Nix would, with a fake `nixpkgs` input
# (./fake-nixpkgs.nix: real nixpkgs lib, stand-ins for NixOS and packages) and a fake `self`,
# and prints what tests/flake-eval.test.ts asserts on:
#   machines.<target>   per nixosConfigurations.<target>: what the machine carries (release,
#                       operator keys, ISO names), the nixpkgs NixOS modules it imported, what a
#                       job can reach (users' groups, trusted interfaces, the host runner's
#                       after-job script), and every runnerImage.* option value (type-checked)
#                       that is not a package;
#   packages.<system>   what each flake package was cut from (linkFarm entries, ISO file name);
#   check               checks.<system>.image-composition's expected and actual facts, and
#                       checks.<system>.initrd-size-<target>'s build environment and script;
#   bootTests           checks.<system>.{boot,security}-*: the test scripts (nix/boot-tests.nix), with
#                       nixos/lib/qemu-common.nix stood in by its 25.11+ signature.
#
#   nix-instantiate --eval --strict --json tests/flake-eval/eval.nix \
#     --argstr libPath ../shared/nixpkgs-lib/lib --argstr flakeDir "$PWD" --argstr rev ... 
{
  libPath,
  flakeDir,
  rev,
  shortRev,
  lastModifiedDate,
  nixpkgsRev,
  # "machines", "packages", "outputNames", "ipxe", "ipxeBootTests", "check", "bootTests" or "forgejoTests"; one at a time, so one failure does not
  # hide the others
  part,
}:
let
  lib = import libPath;
  nixpkgs = import ./fake-nixpkgs.nix {
    inherit lib;
    rev = nixpkgsRev;
  };
  flake = import "${flakeDir}/flake.nix";
  # A flake's self is its outputs plus the source's metadata (here: a clean git checkout).
  self =
    flake.outputs { inherit self nixpkgs; }
    // {
      inherit rev shortRev lastModifiedDate;
      outPath = flakeDir;
    };

  machineFacts =
    machine:
    let
      inherit (machine) config options;
      build = config.system.build;
      # Every option the project declares under runnerImage, evaluated and type-checked,
      # except packages (their defaults are nixpkgs packages, which do not exist here).
      # nix/runner.nix evaluated once more against this machine's config, with the generated
      # files as their text: a writeShellScript is its script, a YAML config its JSON value.
      asText =
        (import "${flakeDir}/nix/runner.nix" {
          inherit config lib;
          utils = throw "eval.nix: the runner units need no utils";
          pkgs = nixpkgs.legacyPackages.${config.nixpkgs.hostPlatform} // {
            writeShellScript = _: text: text;
            formats = nixpkgs.legacyPackages.${config.nixpkgs.hostPlatform}.formats // {
              yaml = _: { generate = _: builtins.toJSON; };
            };
          };
        }).config.systemd.services;
      dataOptions = builtins.filter (
        opt: !(lib.hasInfix "package" opt.type.description)
      ) (lib.collect lib.isOption options.runnerImage);
    in
    {
      release = config.runnerImage.release;
      sshAuthorizedKeys = config.runnerImage.sshAuthorizedKeys;
      isoBaseName = config.runnerImage.isoBaseName or null;
      imageBaseName = config.image.baseName or null;
      isoFileName = if build ? isoImage then build.isoImage.isoName else null;
      hostPlatform = config.nixpkgs.hostPlatform;
      # Stage 1. nixos-26.05 runs systemd in stage 1 unless told otherwise (NixOS/nixpkgs#435781),
      # and nixos/modules/system/boot/systemd/initrd.nix then asserts that every scripted
      # stage-1 hook below is empty (read at 00e6b22b; the list is the same at 0c3e6c49).
      # The firewall: interfaces opened per name, and whether nftables renders them.
      firewall = {
        interfaces = builtins.attrNames (config.networking.firewall.interfaces or { });
        nftables = config.networking.nftables.enable or null;
      };
      stage1 = {
        systemd = config.boot.initrd.systemd.enable or true;
        scriptedHooks = builtins.filter (hook: (config.boot.initrd.${hook} or "") != "") [
          "preFailCommands"
          "preDeviceCommands"
          "preLVMCommands"
          "postDeviceCommands"
          "postResumeCommands"
          "postMountCommands"
          "extraUdevRulesCommands"
          "extraUtilsCommands"
          "extraUtilsCommandsTest"
        ];
      };
      nixosModules = lib.sort lib.lessThan config.stub.importedNixosModules;
      # What a job can reach (docs/threat-model.md); the security-* boot tests
      # check the same on a booted machine.
      # How the boot script's credential reaches each runner: the secret unit's inputs, and for
      # each runner unit its user, the file its condition waits for and the runner config's
      # runner.file (the config as JSON: see asText); the ports opened to job containers.
      wiring = {
        secretEnv = config.systemd.services.forgejo-runner-secret.environment;
        runners = lib.genAttrs [ "forgejo-runner" "forgejo-runner-host" ] (name: {
          user = config.systemd.services.${name}.serviceConfig.User;
          condition = config.systemd.services.${name}.unitConfig.ConditionPathExists;
          # the word after --config: the YAML's value as compact JSON (no spaces in these values)
          config = builtins.fromJSON (
            builtins.head (
              lib.splitString " " (lib.last (lib.splitString " --config " asText.${name}.serviceConfig.ExecStart))
            )
          );
        });
        # the host runner's command line and the files it names (runner-secret.sh writes them)
        host = {
          inherit (config.systemd.services.forgejo-runner-host.serviceConfig)
            ExecStart
            EnvironmentFile
            RuntimeMaxSec
            TimeoutStartSec
            Restart
            ;
        };
        containerPorts = lib.mapAttrs (_: i: i.allowedTCPPorts or [ ]) (config.networking.firewall.interfaces or { });
      };
      jobAccess =
        let
          inherit (config.systemd) services;
          host = services.forgejo-runner-host;
          container = services.forgejo-runner;
          groupsOf = user: config.users.users.${user}.extraGroups or [ ];
        in
        {
          hostUser = host.serviceConfig.User;
          hostUserGroups = groupsOf host.serviceConfig.User;
          hostCredential = host.unitConfig.ConditionPathExists;
          # The host runner's ExecStopPost as a script's text: nix/runner.nix evaluated once more
          # against this machine's config, with a writeShellScript that returns its text.
          hostAfterJob = asText.forgejo-runner-host.serviceConfig.ExecStopPost;
          # ... and its ExecStartPre, which empties HOME (the runner's HOME, from the unit).
          hostBeforeJob = asText.forgejo-runner-host.serviceConfig.ExecStartPre;
          hostEnvironment = host.environment;
          hostHome = host.environment.HOME;
          hostTokenFile = host.unitConfig.ConditionPathExists;
          containerUser = container.serviceConfig.User;
          containerUserGroups = groupsOf container.serviceConfig.User;
          trustedInterfaces = config.networking.firewall.trustedInterfaces or [ ];
          ptraceScope = config.boot.kernel.sysctl."kernel.yama.ptrace_scope" or null;
        };
      # The unit that prints the SSH host key fingerprints: its script as text, its environment.
      hostKeys =
        let
          unit = config.systemd.services.runner-ssh-host-keys;
        in
        {
          script = asText.runner-ssh-host-keys.serviceConfig.ExecStart;
          inherit (unit) environment wantedBy after;
          inherit (unit.serviceConfig) StandardOutput Type;
        };
      # NixOS assertions the project's modules declare (NixOS fails the build on a false one).
      assertions = map (a: { inherit (a) assertion message; }) (config.assertions or [ ]);
      # The firmware the image carries (nix/image-size.nix): hardware.firmware's packages, and
      # the linux-firmware families the project's runCommand copies.
      firmware = {
        redistributable = config.hardware.enableRedistributableFirmware;
        packages = map (p: p.name) config.hardware.firmware;
        families = lib.concatMap (p: p.env.families or [ ]) config.hardware.firmware;
      };
      runnerImage = lib.listToAttrs (
        map (opt: lib.nameValuePair (lib.showOption opt.loc) opt.value) dataOptions
      );
    };

  # A node of a multi-machine test, evaluated as lib.nixosSystem is here: the root stand-in, the
  # stand-ins of the nixpkgs service modules the project's tests use with their real options
  # (./nixpkgs/nixos/modules/services), and the node's own module. What is left of its
  # definitions outside declared options is "foreign": listed, so that tests/flake-eval.test.ts
  # can name every one the project relies on without a stand-in.
  evalNode =
    node:
    let
      machine = lib.evalModules {
        class = "nixos";
        modules = [
          (import ./stub-root.nix nixpkgs.legacyPackages)
          ./nixpkgs/nixos/modules/services/misc/forgejo.nix
          node
          # the test framework's nodes follow the test's hostPkgs
          { nixpkgs.hostPlatform = "x86_64-linux"; }
        ];
      };
      inherit (machine) config options;
      secondLevel = lib.concatMap (
        top:
        let
          value = config.${top};
        in
        if builtins.isAttrs value && !lib.isDerivation value then map (name: [ top name ]) (builtins.attrNames value) else [ [ top ] ]
      ) (builtins.attrNames (removeAttrs config [ "_module" "stub" "nixpkgs" "system" ]));
      # what ./stub-root.nix itself defines on every machine
      fromStubRoot = [ "systemd.package" "hardware.enableRedistributableFirmware" ];
      declared = path: lib.hasAttrByPath path options;
      show = lib.concatStringsSep ".";
    in
    {
      foreign = builtins.filter (name: !builtins.elem name fromStubRoot) (map show (builtins.filter (path: !declared path) secondLevel));
      declared = map show (builtins.filter declared secondLevel);
      forgejo = lib.optionalAttrs config.services.forgejo.enable {
        inherit (config.services.forgejo) settings;
        databaseType = config.services.forgejo.database.type;
        package = config.services.forgejo.package.name;
      };
      dnsmasq = config.services.dnsmasq.settings or null;
      tcpPorts = config.networking.firewall.allowedTCPPorts or [ ];
      udpPorts = config.networking.firewall.allowedUDPPorts or [ ];
      execStart = lib.mapAttrs (_: unit: unit.serviceConfig.ExecStart or null) (config.systemd.services or { });
      loadCredential = lib.mapAttrs (_: unit: unit.serviceConfig.LoadCredential or null) (config.systemd.services or { });
      wantedBy = lib.mapAttrs (_: unit: unit.wantedBy or [ ]) (config.systemd.services or { });
      # nixosModules.boot-broker's configuration file, when the node runs it (restartTriggers
      # holds the file; the stand-in writeText keeps its text)
      brokerConfigText =
        let
          unit = config.systemd.services.runner-boot-broker or null;
        in
        if unit == null then null else (lib.head unit.restartTriggers).text;
    };

  # checks.<system>.forgejo-boot-<target> (nix/forgejo-boot-test.nix): every node evaluated, the
  # broker's configuration, the runner machine's boot files and trusted certificates.
  forgejoTestFacts = check: {
    inherit (check.test) name globalTimeout testScript;
    nodes = lib.mapAttrs (_: evalNode) check.test.nodes;
    inherit (check.test.passthru) brokerSettings runnerEnvUrl memoryMiB;
    workflow = check.test.passthru.workflow.text;
    bootIpxe = (lib.findFirst (p: (p.name or "") == "boot.ipxe") { text = null; } check.test.passthru.bootFiles.paths).text;
    bootFiles = map toString check.test.passthru.bootFiles.paths;
    bootFilesPath = toString check.test.passthru.bootFiles;
    runnerArtifact = toString check.test.passthru.runnerMachine.artifact;
    pki = { inherit (check.test.passthru.testPki) script; path = toString check.test.passthru.testPki; };
    runnerCertificates = check.test.passthru.runnerMachine.config.security.pki.certificateFiles or [ ];
    runnerCmdlineParam = check.test.passthru.runnerMachine.config.runnerImage.secretSource.cmdlineParam;
    runnerModules = lib.sort lib.lessThan check.test.passthru.runnerMachine.config.stub.importedNixosModules;
    npmPackages = lib.mapAttrs (_: p: p.args) check.test.passthru.npmPackages;
  };

  packageFacts = package: {
    inherit (package) name;
    entries = package.entries or null;
    isoName = package.isoName or null;
  };
in
{
  machines = lib.mapAttrs (_: machineFacts) self.nixosConfigurations;
  # Which names `nix flake check` evaluates (packages, checks) and which only `nix build` finds
  # (legacyPackages): names only, so nothing under them is forced.
  outputNames = {
    packages = lib.mapAttrs (_: builtins.attrNames) self.packages;
    checks = lib.mapAttrs (_: builtins.attrNames) self.checks;
    legacyPackages = lib.mapAttrs (_: builtins.attrNames) (self.legacyPackages or { });
  };
  packages = lib.mapAttrs (_: ps: lib.mapAttrs (_: packageFacts) (lib.filterAttrs (n: _: !lib.hasPrefix "ipxe-" n) ps)) self.packages;
  # packages.<system>.ipxe-<arch> (nix/ipxe.nix): what it asked of nixpkgs' ipxe; before the
  # fleet's root is committed it is in legacyPackages (flake.nix, ipxeOf)
  ipxe = lib.mapAttrs (
    _: ps:
    lib.mapAttrs (_: p: {
      inherit (p) makeFlags;
      inherit (p.overrideArgs) additionalOptions additionalTargets;
      embedScript = p.overrideArgs.embedScript.text;
    }) (lib.filterAttrs (n: _: lib.hasPrefix "ipxe-" n) ps)
  ) (lib.zipAttrsWith (_: lib.foldl' (a: b: a // b) { }) [ self.packages (self.legacyPackages or { }) ]);
  check = lib.mapAttrs (_: checks: {
    composition = {
      inherit (checks.image-composition.env) expected actual;
    };
    # checks.<system>.initrd-size-<target>: the build environment and script
    initrdSize = lib.mapAttrs (_: check: {
      inherit (check) script;
      env = removeAttrs check.env [ "closure" ];
      closureRoots = map toString check.env.closure.args.rootPaths;
    }) (
      lib.filterAttrs (name: _: lib.hasPrefix "initrd-size-" name) checks
    );
  }) self.checks;
  # checks.<system>.ipxe-trust-*: nix/ipxe-boot-tests.nix's scripts and what they serve
  ipxeBootTests = lib.mapAttrs (
    _: checks:
    lib.mapAttrs (_: check: { inherit (check.test) testScript; }) (
      lib.filterAttrs (name: _: lib.hasPrefix "ipxe-trust-" name) checks
    )
  ) self.checks;
  # checks.<system>.{boot,security,forgejo-boot}-*: each QEMU test's script, start commands included
  bootTests = lib.mapAttrs (
    _: checks:
    lib.mapAttrs (_: check: check.test.testScript) (
      lib.filterAttrs (
        name: _: lib.hasPrefix "boot-" name || lib.hasPrefix "security-" name || lib.hasPrefix "forgejo-boot-" name
      ) checks
    )
  ) self.checks;
  forgejoTests = lib.mapAttrs (
    _: checks: lib.mapAttrs (_: forgejoTestFacts) (lib.filterAttrs (name: _: lib.hasPrefix "forgejo-boot-" name) checks)
  ) self.checks;
}
.${part}
