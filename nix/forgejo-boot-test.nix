# checks.x86_64-linux.forgejo-boot-<target>: the first contact with a real Forgejo. A NixOS test
# with two nodes and one netbooted machine, all on the test driver's VLAN 1:
#
#   forgejo     services.forgejo from the same nixpkgs, a repository ops/runner-images that
#               holds a host-mode workflow of two jobs, and accepts no pull requests (push-only)
#   bootserver  the project's boot broker (nixosModules.boot-broker) minting one single-use
#               credential per boot on that server; dnsmasq giving the runner its address
#               and serving this flake's netboot files over HTTP; and bun with this
#               repository's scripts, which publish a signed release to that server, verify it
#               and download it to a mirror directory
#   runner      create_machine with the instrumented netboot sibling of <target>: real PXE
#               (QEMU's iPXE ROM on a NIC on VLAN 1), runner.env from the broker, registers,
#               runs the first job, reboots, gets a new credential, runs the second
#
# The numbers an operator feels are written to $out/boot-numbers.json (see `numbers` below).
#
# Sources, and what rests on memory:
#   - nixpkgs nixos/tests/forgejo.nix (NixOS/nixpkgs 07320dad, faukah/nixpkgs 3b20077c, per
#     helper notes /tmp/research/nixpkgs.md §1): services.forgejo.{enable,database,settings},
#     the admin CLI run as `su -l forgejo -c 'GITEA_WORK_DIR=/var/lib/forgejo gitea admin user
#     create …'`, a token from POST /api/v1/users/<u>/tokens with basic auth (.sha1), PATCH
#     has_actions (Actions are off per repository by default), the tasks list
#     /api/v1/repos/<o>/<r>/actions/tasks with workflow_runs[].status. That test runs its
#     runner on the server node itself and never netboots one: nothing here is copied from it.
#   - services.forgejo options: nixos/modules/services/misc/forgejo.nix @ faukah/nixpkgs
#     3b20077c (per the same notes §6; settings is freeform INI: the keys below are Forgejo's,
#     from its app.ini documentation, from memory). package defaults to forgejo-lts, 15.x in
#     nixos-26.05 (NixOS/nixpkgs#510639, #519454; an inference, the pin was not read).
#   - the test driver: nixos/lib/test-driver/src/test_driver/machine/__init__.py @ 019697db
#     (read): execute/succeed timeouts, get_console_log, out_dir, start(allow_reboot=);
#     VLAN sockets as $QEMU_VDE_SOCKET_<n> in the driver's environment and the node numbering
#     (bootserver = 1, forgejo = 2, attrNames order) per the notes §2 (vlan.py @ 011792b4,
#     network.nix @ 003d5816); QEMU's -netdev vde and -boot order=n: from memory.
#   - the broker: nixosModules.boot-broker (./boot-broker.nix) writes the configuration
#     scripts/lib/broker/config.ts reads (tests/flake-eval.test.ts checks the node's file with
#     that parser); GET /v1/machines/<mac, hyphens>/runner.env (runner-env.ts). imports in a
#     test node and lib.mkForce on wantedBy: NixOS module conventions, from memory.
#   - services.dnsmasq.settings (freeform dnsmasq.conf keys), security.pki.certificateFiles,
#     systemd.tmpfiles.rules, virtualisation.memorySize: NixOS options from memory.
{
  pkgs,
  lib,
  target, # nix/targets.nix target (a netboot one)
  runnerMachine, # { config; artifact; } the instrumented sibling, trusting testPki's CA
  testPki, # ./forgejo-boot-test-pki.nix: { ca; cert; key; } for the broker's HTTPS
  source, # this repository (the flake's source): the scripts that run against the server
  memoryMiB ? 3072, # the runner machine's RAM; the numbers record what it used at most
}:
let
  inherit (runnerMachine) artifact;

  # The runner machine: MAC with a machine byte no node uses (qemu-common.nix qemuNicMac
  # "52:54:00:12:<vlan>:<node>", per the notes), and the address dnsmasq leases to it.
  runnerMac = "52:54:00:12:01:32";
  runnerAddress = "192.168.1.50";
  bootserverAddress = "192.168.1.1";
  forgejoUrl = "http://forgejo:3000";
  repository = "ops/runner-images";
  hostLabel = "nix-host-one-job";

  # A host-mode workflow of two jobs: the second runs only after the first, so it needs the
  # machine's second boot and its second credential. No `uses:`: the test network has no
  # data.forgejo.org to clone actions from.
  workflow = pkgs.writeText "boot-test.yml" ''
    on:
      push:
        branches: [main]
    jobs:
      first:
        runs-on: ${hostLabel}
        steps:
          - run: echo "first job, boot $(cat /proc/sys/kernel/random/boot_id)"
      second:
        needs: first
        runs-on: ${hostLabel}
        steps:
          - run: echo "second job, boot $(cat /proc/sys/kernel/random/boot_id)"
  '';

  # The broker as an operator runs it: nixosModules.boot-broker (./boot-broker.nix), with these
  # settings. Its unit (DynamicUser, LoadCredential, the hardening) meets a real Forgejo here
  # first. The token and the TLS key are files the test writes before it starts the unit.
  brokerSettings = {
    enable = true;
    source = releaseTools;
    forgejo = {
      url = forgejoUrl;
      runnerUrl = forgejoUrl;
      inherit repository;
      level = "repository";
      tokenFile = "/run/broker/forgejo-token";
      # a lab network of the test driver; the broker refuses plain http elsewhere
      allowInsecureHttp = true;
    };
    host = "0.0.0.0";
    port = 8443;
    openFirewall = true;
    tls = {
      certFile = "${testPki}/bootserver.crt";
      keyFile = "/run/broker/bootserver.key";
    };
    machines = [
      {
        name = "runner";
        mac = runnerMac;
        address = runnerAddress;
        mode = "host";
        labels = [ hostLabel ];
      }
    ];
  };
  runnerEnvUrl = "https://bootserver:${toString brokerSettings.port}/v1/machines/${lib.replaceStrings [ ":" ] [ "-" ] runnerMac}/runner.env";

  # What the boot server serves over HTTP: this flake's netboot directory and a first script that sets
  # the broker's URL on the kernel command line and chains the image's own netboot.ipxe, as an
  # operator's boot server would (docs/ipxe-and-https.md, "Boot over the network").
  bootFiles = pkgs.symlinkJoin {
    name = "${target.attr}-forgejo-boot-files";
    paths = [
      artifact
      (pkgs.writeTextDir "boot.ipxe" ''
        #!ipxe
        set cmdline ${runnerMachine.config.runnerImage.secretSource.cmdlineParam}=${runnerEnvUrl}
        chain netboot.ipxe
      '')
    ];
  };

  # The two npm packages the scripts import, fetched by the lock file's own integrity hashes
  # (bun.lock; tests/flake-eval.test.ts checks these are the same), so nothing is resolved at
  # test time. Neither has dependencies of its own (bun.lock: cac@7.1.0 {}, zx@8.8.5 bin only).
  npmPackages = {
    cac = pkgs.fetchurl {
      url = "https://registry.npmjs.org/cac/-/cac-7.1.0.tgz";
      hash = "sha512-LMDU/U2yA4IPIY8KT0NsNPWEYZvAMkbgyspxJ6btJaYV+WMDOHAZCmB0lsTObiHaRS1V/ztKAl7+TSkTqXyeoA==";
    };
    zx = pkgs.fetchurl {
      url = "https://registry.npmjs.org/zx/-/zx-8.8.5.tgz";
      hash = "sha512-SNgDF5L0gfN7FwVOdEFguY3orU5AkfFZm9B5YSHog/UDHv+lvmd82ZAsOenOkQixigwH2+yyH198AwNdKhj+RA==";
    };
  };
  # This repository's scripts with their node_modules, as `bun install --frozen-lockfile`
  # would lay them out for these two (npm tarballs unpack into package/).
  releaseTools = pkgs.runCommand "runner-images-scripts" { } ''
    mkdir -p "$out/node_modules"
    cp -r ${source}/scripts ${source}/package.json ${source}/allowed_signers "$out/"
    mkdir -p "$out/tests/fixtures"
    cp -r ${source}/tests/fixtures/flake "$out/tests/fixtures/flake"
    ${lib.concatStrings (
      lib.mapAttrsToList (name: tarball: ''
        mkdir -p "$out/node_modules/${name}"
        tar -xzf ${tarball} -C "$out/node_modules/${name}" --strip-components=1
      '') npmPackages
    )}
  '';

  # The fixture flake's builders use /bin/sh and these tools from /usr/bin, with the sandbox
  # off (tests/fixtures/flake/flake.nix): the release published here is the fixture's, built by
  # the real build-images.ts in the VM, offline. The runner images themselves are too large to
  # publish from a test VM, and are the ones booted above.
  fixtureTools = [
    "cat"
    "cp"
    "head"
    "ln"
    "mkdir"
    "sleep"
    "touch"
    "tr"
  ];

  releaseTag = "boot-v0.0.1";
in
pkgs.testers.runNixOSTest {
  name = "forgejo-boot-${target.attr}";
  # What tests/flake-eval.test.ts reads of this test without running it (passthru: an option of
  # nixos/lib/testing/run.nix, "attributes to add to the returned derivations"; several
  # revisions in the search index, none naming its commit).
  passthru = {
    inherit
      brokerSettings
      runnerEnvUrl
      runnerMachine
      npmPackages
      bootFiles
      workflow
      testPki
      memoryMiB
      ;
  };
  # Below the driver's default hour (nixos/lib/testing/driver.nix globalTimeout, per the notes).
  globalTimeout = 45 * 60;

  nodes.forgejo =
    { config, ... }:
    {
      virtualisation.memorySize = 2047; # as nixos/tests/forgejo.nix
      services.forgejo = {
        enable = true;
        database.type = "sqlite3";
        settings = {
          server = {
            DOMAIN = "forgejo";
            HTTP_PORT = 3000;
            ROOT_URL = "${forgejoUrl}/";
          };
          service.DISABLE_REGISTRATION = true;
          actions.ENABLED = true;
        };
      };
      networking.firewall.allowedTCPPorts = [ 3000 ];
      environment.systemPackages = [
        config.services.forgejo.package
        pkgs.curl
        pkgs.jq
      ];
    };

  nodes.bootserver = {
    virtualisation.memorySize = 2048;
    # dnsmasq: DHCP for the runner only (the nodes have static addresses), DNS from /etc/hosts
    # (the test network lists every node there), and the boot file as an http:// URL, which
    # iPXE fetches itself (QEMU's NIC ROMs are iPXE builds with HTTP: from memory). HTTP, not
    # TFTP: a ~1 GB initrd in 512-byte TFTP blocks over the driver's VDE switch would take
    # most of the test's time.
    services.dnsmasq = {
      enable = true;
      settings = {
        interface = "eth1";
        bind-interfaces = true;
        dhcp-range = [ "192.168.1.100,192.168.1.150,1h" ];
        dhcp-host = [ "${runnerMac},${runnerAddress},runner" ];
        dhcp-boot = "http://${bootserverAddress}/boot.ipxe";
      };
    };
    # (the broker's port: openFirewall above)
    networking.firewall.allowedTCPPorts = [
      53
      80
    ];
    networking.firewall.allowedUDPPorts = [
      53
      67
    ];
    # The netboot files, read-only, as any static web server would serve them.
    systemd.services.netboot-http = {
      wantedBy = [ "multi-user.target" ];
      serviceConfig.ExecStart = "${pkgs.python3}/bin/python3 -m http.server 80 --bind ${bootserverAddress} --directory ${bootFiles}";
    };
    # The broker: nixosModules.boot-broker, as an operator's boot server runs it. Not at boot:
    # the test starts it once the token it loads exists (the unit would fail without it).
    imports = [ ./boot-broker.nix ];
    services.runner-boot-broker = brokerSettings;
    systemd.services.runner-boot-broker.wantedBy = lib.mkForce [ ];
    systemd.tmpfiles.rules = map (tool: "L+ /usr/bin/${tool} - - - - ${pkgs.coreutils}/bin/${tool}") fixtureTools;
    nix.settings.experimental-features = [
      "nix-command"
      "flakes"
    ];
    environment.systemPackages = [
      pkgs.bun
      pkgs.curl
      pkgs.git
      pkgs.jq
      pkgs.openssh # ssh-keygen signs the provenance statement
    ];
  };

  testScript = ''
    import json
    import os
    import shlex

    BOOT_SECONDS = 900  # the runner's power-on to its root shell: ~1 GB over HTTP at VDE speed
    COMMAND_SECONDS = 120
    JOB_SECONDS = 900

    ${builtins.readFile ./boot-test-helpers.py}

    def api(path, method="GET", body=None, token_file="/root/admin-token"):
        """A Forgejo API call from the forgejo node, with a token kept in a file there."""
        data = "" if body is None else f"-H 'Content-Type: application/json' -d {shlex.quote(json.dumps(body))}"
        out = forgejo.succeed(
            f"curl --fail-with-body -sS -X {method} -H \"Authorization: token $(cat {token_file})\" {data} http://localhost:3000/api/v1{path}",
            timeout=COMMAND_SECONDS,
        )
        return json.loads(out) if out.strip() else None

    start_all()
    forgejo.wait_for_unit("forgejo.service", timeout=600)
    forgejo.wait_for_open_port(3000, timeout=300)

    with subtest("an admin, a token, and a push-only repository with Actions on"):
        forgejo.succeed(
            "su -l forgejo -c 'GITEA_WORK_DIR=/var/lib/forgejo gitea admin user create --admin "
            "--username ops --password totally-safe-ops --email ops@localhost --must-change-password=false'",
            timeout=COMMAND_SECONDS,
        )
        forgejo.succeed(
            "curl --fail-with-body -sS -X POST -H 'Content-Type: application/json' "
            "-d '{\"name\":\"setup\",\"scopes\":[\"all\"]}' "
            "http://ops:totally-safe-ops@localhost:3000/api/v1/users/ops/tokens | jq -r .sha1 > /root/admin-token",
            timeout=COMMAND_SECONDS,
        )
        api("/user/repos", "POST", {"name": "runner-images", "auto_init": False, "private": False})
        # has_pull_requests: false is what the broker requires before it serves host mode
        api("/repos/${repository}", "PATCH", {"has_actions": True, "has_pull_requests": False})
        repo = api("/repos/${repository}")
        t.assertFalse(repo["has_pull_requests"], "the repository still accepts pull requests")
        # the broker's and the publisher's token: write:repository only
        forgejo.succeed(
            "curl --fail-with-body -sS -X POST -H 'Content-Type: application/json' "
            "-d '{\"name\":\"broker\",\"scopes\":[\"write:repository\"]}' "
            "http://ops:totally-safe-ops@localhost:3000/api/v1/users/ops/tokens | jq -r .sha1 > /tmp/shared/repo-token",
            timeout=COMMAND_SECONDS,
        )

    with subtest("the repository: the fixture flake and a two-job host workflow, pushed over HTTP"):
        bootserver.wait_for_unit("multi-user.target", timeout=600)
        bootserver.succeed(
            "install -d -m 0700 /run/broker && install -m 0600 /tmp/shared/repo-token /run/broker/forgejo-token && "
            "install -m 0600 ${testPki}/bootserver.key /run/broker/bootserver.key",
            timeout=COMMAND_SECONDS,
        )
        bootserver.succeed(
            "set -e; rm -rf /root/release; cp -r ${releaseTools}/tests/fixtures/flake /root/release; chmod -R u+w /root/release; cd /root/release; "
            "cp ${releaseTools}/scripts/lib/build/targets.json targets.json; "
            "echo '{\"name\":\"ok\",\"nonce\":\"forgejo-boot-test\",\"startedMarker\":\"/tmp/started\"}' > variant.json; "
            "mkdir -p .forgejo/workflows && cp ${workflow} .forgejo/workflows/boot-test.yml; "
            "git init -q -b main && git add -A && git -c user.name=ops -c user.email=ops@localhost commit -qm fixture && "
            "git push -q \"http://ops:$(cat /run/broker/forgejo-token)@forgejo:3000/${repository}.git\" main",
            timeout=COMMAND_SECONDS,
        )

    with subtest("a signed release of that commit, published, verified, and downloaded to a mirror"):
        bootserver.succeed(
            "cd /root/release && bun ${releaseTools}/scripts/build-images.ts --flake . --out /root/dist "
            "-- --option substituters \"\" --option sandbox false",
            timeout=600,
        )
        bootserver.succeed("ssh-keygen -q -t ed25519 -N \"\" -C ci@runner-images -f /root/ci-key", timeout=COMMAND_SECONDS)
        bootserver.succeed(
            "cd /root/release && git tag ${releaseTag} && "
            "git push -q \"http://ops:$(cat /run/broker/forgejo-token)@forgejo:3000/${repository}.git\" ${releaseTag}",
            timeout=COMMAND_SECONDS,
        )
        bootserver.succeed(
            "cd /root/release && bun --smol ${releaseTools}/scripts/publish-release.ts --server ${forgejoUrl} --insecure-http "
            "--repo ${repository} --tag ${releaseTag} --dist /root/dist --token-file /run/broker/forgejo-token "
            "--signing-key /root/ci-key",
            timeout=600,
        )
        fingerprint = bootserver.succeed("ssh-keygen -l -f /root/ci-key.pub | cut -d' ' -f2", timeout=COMMAND_SECONDS).strip()
        bootserver.succeed(
            f"cd /root/release && bun ${releaseTools}/scripts/verify-release.ts --server ${forgejoUrl} --insecure-http "
            f"--repo ${repository} --tag ${releaseTag} --signer-fingerprint {fingerprint} --download /root/mirror",
            timeout=600,
        )
        bootserver.succeed("cd /root/mirror && sha256sum -c SHA256SUMS", timeout=COMMAND_SECONDS)
        release = api("/repos/${repository}/releases/tags/${releaseTag}")
        t.assertFalse(release["draft"], "the release is still a draft")

    with subtest("the broker mints on this Forgejo"):
        bootserver.succeed("systemctl start runner-boot-broker.service", timeout=COMMAND_SECONDS)
        bootserver.wait_for_open_port(${toString brokerSettings.port}, timeout=300)

    numbers = {"target": "${target.attr}", "memoryMiB": ${toString memoryMiB}}
    numbers["initrdBytes"] = os.path.getsize("${artifact}/initrd")

    runner = create_machine(
        "${pkgs.qemu_test}/bin/qemu-kvm -m ${toString memoryMiB} "
        "-device virtio-net-pci,netdev=vlan1,mac=${runnerMac} -netdev vde,id=vlan1,sock=$QEMU_VDE_SOCKET_1 "
        "-boot order=n"
    )

    def task_statuses():
        runs = api("/repos/${repository}/actions/tasks")["workflow_runs"]
        return {run["name"]: run["status"] for run in runs}

    def runner_names():
        return sorted(r["name"] for r in api("/repos/${repository}/actions/runners"))

    def wait_for_task(name, status, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = task_statuses()
            if seen.get(name) == "failure":
                raise Exception(f"job {name} failed: {seen}")
            if seen.get(name) == status:
                return
            time.sleep(1)
        raise Exception(f"job {name} not {status} within {timeout} s: {task_statuses()}")

    def memory_peak_kib(since=0):
        """The largest MEMUSED= line the machine's sampler wrote to the console since `since`."""
        used = [int(m) for m in re.findall(r"MEMUSED=(\d+)", runner.get_console_log()[since:])]
        return max(used) if used else None

    with subtest("power-on to runner online, to the first step, to the reboot after the host job"):
        power_on = time.monotonic()
        boot(runner, allow_reboot=True)
        numbers["powerOnToShellSeconds"] = round(time.monotonic() - power_on, 1)
        # Peak memory: MemTotal - MemAvailable every 2 s, to the console (the shell goes with the reboot).
        runner.succeed(
            "setsid -f sh -c 'while :; do awk \"/^MemTotal/ {t=\\$2} /^MemAvailable/ {a=\\$2} END {print \\\"MEMUSED=\\\" t-a}\" /proc/meminfo > /dev/ttyS0; sleep 2; done' "
            "</dev/null >/dev/null 2>&1",
            timeout=COMMAND_SECONDS,
        )
        # the runner's declare line (forgejo-runner logs it when Forgejo accepts its labels)
        runner.wait_until_succeeds("journalctl -b -u forgejo-runner-host.service | grep -qi 'declare'", timeout=JOB_SECONDS)
        numbers["powerOnToRunnerOnlineSeconds"] = round(time.monotonic() - power_on, 1)
        first_runner = runner_names()
        t.assertEqual(len(first_runner), 1, f"one registration for this boot, not {first_runner}")
        wait_for_task("first", "running", JOB_SECONDS)
        numbers["powerOnToFirstStepSeconds"] = round(time.monotonic() - power_on, 1)
        before_reboot = console_mark(runner)
        wait_for_task("first", "success", JOB_SECONDS)
        wait_for_console(runner, r"reboot: Restarting system", timeout=COMMAND_SECONDS, since=before_reboot)
        numbers["powerOnToRebootSeconds"] = round(time.monotonic() - power_on, 1)
        numbers["peakMemoryKiB"] = memory_peak_kib()

    with subtest("after the reboot: a new credential, and the next job"):
        reconnect_after_reboot(runner)
        wait_for_task("second", "running", JOB_SECONDS)
        second_runner = runner_names()
        t.assertEqual(len(second_runner), 1, f"one registration for this boot, not {second_runner}")
        t.assertNotEqual(first_runner, second_runner, "the second boot ran with the first boot's registration")
        wait_for_task("second", "success", JOB_SECONDS)
        # Forgejo deletes an ephemeral registration when its task ends
        retry(lambda _: runner_names() in ([], second_runner), 60)

    # The numbers, for docs/testing.md and the release notes (scripts/lib/build/boot-numbers.ts).
    with open(os.path.join(forgejo.out_dir, "boot-numbers.json"), "w") as f:
        json.dump(numbers, f, indent=2, sort_keys=True)
    print("boot numbers: " + json.dumps(numbers, sort_keys=True))
    power_off(runner)
  '';
}
