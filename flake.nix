{
  description = "NixOS boot images (netboot, ISO) for Forgejo Actions runner machines";

  # nixos-26.05 (supported until 2026-12-31); `nix flake update` moves the pin in flake.lock.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;

      # scripts/lib/build/targets.json, read through ./nix/targets.nix: the only place the package
      # names and the ISO file name are spelled. Nothing below repeats them.
      inherit (import ./nix/targets.nix) targets bySystem systems;

      forSystems = lib.genAttrs systems;
      pkgsFor = system: nixpkgs.legacyPackages.${system};

      # What the machine shows in /etc/runner-image-release and at login.
      release = {
        revision = self.rev or self.dirtyRev or "dirty";
        shortRevision = self.shortRev or self.dirtyShortRev or "dirty";
        lastModified = self.lastModifiedDate or "unknown";
        nixpkgsRevision = nixpkgs.rev or "unknown";
      };

      operatorKeys = builtins.filter (line: line != "" && !lib.hasPrefix "#" line) (
        lib.splitString "\n" (builtins.readFile ./nix/operator-keys.pub)
      );

      # One entry per image kind used in targets.json ("image" field): the NixOS module that
      # makes the boot medium, and how the flake package is cut from the evaluated machine.
      # An aarch64 row of an existing kind needs nothing here; a new kind (e.g. "sd") needs
      # one entry.
      kinds = {
        netboot = {
          module = ./nix/netboot.nix;
          # what the module adds to system.build (checked by nix/composition-check.nix)
          outputs = [
            "netbootRamdisk"
            "netbootIpxeScript"
          ];
          # One directory with exactly the kernel, the initrd and the iPXE script (like
          # makeNetboot in nixpkgs nixos/release.nix, but a linkFarm so that nothing else of
          # the kernel's output, e.g. System.map, comes along). linkFarm name [ { name; path; } ],
          # the form netboot.nix's own kexecTree uses (2025+ revision read). Entries:
          # system.build.netbootRamdisk -> initrd, netbootIpxeScript -> netboot.ipxe (netboot.nix).
          artifact =
            target: config:
            let
              build = config.system.build;
              # internal option of nixos/modules/system/activation/top-level.nix: the kernel's
              # image file, the platform's linux-kernel target (bzImage on x86_64). (Several
              # revisions in the search index, default pkgs.stdenv.hostPlatform.linux-kernel.target,
              # newer config.boot.kernelPackages.kernel.target; none names its commit.)
              kernelFile = config.system.boot.loader.kernelFile;
              entries = [
                {
                  name = kernelFile;
                  path = "${build.kernel}/${kernelFile}";
                }
                {
                  name = "initrd";
                  path = "${build.netbootRamdisk}/initrd";
                }
                {
                  name = "netboot.ipxe";
                  path = "${build.netbootIpxeScript}/netboot.ipxe";
                }
              ];
              names = map (entry: entry.name) entries;
            in
            assert lib.assertMsg (builtins.sort builtins.lessThan names == builtins.sort builtins.lessThan target.sources)
              "targets.json: ${target.attr} publishes [${toString target.sources}] but the netboot directory holds [${toString names}]";
            (pkgsFor target.system).linkFarm target.attr entries;
          # Checks of the built artifact (in checks.<system>, next to the package).
          # (pkgs.runCommand name env script: trivial-builders, not re-read: from memory.)
          checks = target: config: artifact: {
            # The initrd carries the whole store and sits in RAM: the EFI stub must allocate
            # it in one piece (fails around 1 GB on real hardware, NixOS/nixpkgs#73588) and
            # iPXE loads below 4 GB (#203593). Enforce the budget the machine states
            # (runnerImage.initrdBudgetMiB, nix/image-size.nix), and log on every build the
            # size and what takes the room: the largest store paths of what netboot.nix puts
            # in the squashfs (netboot.storeContents; pkgs.closureInfo's store-paths, the list
            # make-squashfs.nix itself reads, per helper notes @ faukah/nixpkgs 3b20077c).
            # $out is JSON: the numbers docs/testing.md and the release notes use.
            "initrd-size-${target.attr}" =
              (pkgsFor target.system).runCommand "initrd-size-${target.attr}"
                {
                  initrd = "${artifact}/initrd";
                  budgetMiB = config.runnerImage.initrdBudgetMiB;
                  closure = (pkgsFor target.system).closureInfo { rootPaths = config.netboot.storeContents; };
                  largestCount = 15;
                }
                ''
                  size=$(stat -L -c %s "$initrd")
                  budget=$((budgetMiB * 1048576))
                  echo "initrd: $size bytes ($((size / 1048576)) MiB), budget $budget bytes ($budgetMiB MiB, runnerImage.initrdBudgetMiB)"
                  while read -r path; do du -sb "$path"; done < "$closure/store-paths" | sort -rn > sizes
                  total=$(awk '{ sum += $1 } END { print sum + 0 }' sizes)
                  echo "store in the image: $(wc -l < sizes) paths, $total bytes ($((total / 1048576)) MiB) before compression; the largest:"
                  head -n "$largestCount" sizes | awk '{ printf "  %6d MiB  %s\n", $1 / 1048576, $2 }'
                  if [ "$size" -gt "$budget" ]; then
                    echo "initrd-size: the netboot initrd is over its $budgetMiB MiB budget (runnerImage.initrdBudgetMiB); shrink the closure (the paths above; nix/image-size.nix)" >&2
                    exit 1
                  fi
                  {
                    printf '{"initrdBytes":%s,"budgetBytes":%s,"storeBytes":%s,"largest":[' "$size" "$budget" "$total"
                    head -n "$largestCount" sizes | awk '{ printf "%s{\"path\":\"%s\",\"bytes\":%s}", (NR > 1 ? "," : ""), $2, $1 }'
                    printf ']}\n'
                  } > "$out"
                '';
          };
        };
        iso = {
          module = ./nix/iso.nix;
          outputs = [ "isoImage" ];
          # $out/iso/<image.baseName>.iso (iso-image.nix: make-iso9660-image.nix with
          # isoName = "${image.baseName}.iso"; the reference notes read make-iso9660-image.sh)
          artifact = target: config: config.system.build.isoImage;
        };
      };
      kindOf =
        target:
        kinds.${target.image}
          or (throw "targets.json: ${target.attr} has image kind '${target.image}', which nix/ cannot build");

      # lib.nixosSystem (nixpkgs flake.nix @ 02d79c9): nixos/lib/eval-config.nix with system =
      # null; its `system` argument is a legacy alias of nixpkgs.hostPlatform, set below.
      mkMachine =
        target: extraModules:
        lib.nixosSystem {
          modules = [
            self.nixosModules.runner
            (kindOf target).module
            {
              nixpkgs.hostPlatform = target.system;
              runnerImage.release = release;
              runnerImage.sshAuthorizedKeys = operatorKeys;
            }
          ]
          # A module of its own, not `//` onto the one above: `//` is shallow, so its
          # runnerImage would replace the whole runnerImage set (release info and keys lost).
          ++ lib.optional (target.image == "iso") { runnerImage.isoBaseName = target.baseName; }
          ++ extraModules;
        };

      artifactOf = target: config: (kindOf target).artifact target config;
      # The fleet's boot trust, read from the repository
      # (docs/ipxe-and-https.md, "The trust-enforcing iPXE"): nix/boot-root.pem (the root certificate(s), PEM), nix/boot-url
      # (the boot script's URL), optional nix/boot-signer (the signer's commonName to pin) and
      # nix/boot-cmdline (kernel parameters, e.g. runner.config_url=https://...).
      ipxeConfig =
        let
          line = f: if builtins.pathExists f then lib.removeSuffix "\n" (builtins.readFile f) else null;
        in
        {
          bootRoot = if builtins.pathExists ./nix/boot-root.pem then ./nix/boot-root.pem else null;
          bootUrl = line ./nix/boot-url;
          signerName = line ./nix/boot-signer;
          cmdline = line ./nix/boot-cmdline;
        };
      # The trust-enforcing iPXE of a system. Until nix/boot-root.pem and nix/boot-url exist it
      # lives in legacyPackages instead, where `nix build .#ipxe-x86_64` still finds it and fails
      # evaluation naming the files to commit, but `nix flake check` (which evaluates every
      # package, and re-exports them as checks) does not: a repository whose maintainers have not
      # made the fleet's offline root yet still checks green.
      ipxeConfigured = ipxeConfig.bootRoot != null && ipxeConfig.bootUrl != null;
      ipxeOf =
        system:
        lib.optionalAttrs (system == "x86_64-linux") {
          ipxe-x86_64 = import ./nix/ipxe.nix (
            {
              pkgs = pkgsFor system;
              inherit lib;
              arch = "x86_64";
            }
            // ipxeConfig
          );
        };
      # The instrumented sibling of a target (nix/boot-tests.nix): the same machine with the test
      # driver's backdoor (nixpkgs nixos/modules/testing/test-instrumentation.nix) and `extra`.
      instrumentedWith =
        target: extra:
        let
          machine = mkMachine target ([ (nixpkgs + "/nixos/modules/testing/test-instrumentation.nix") ] ++ extra);
        in
        {
          inherit (machine) config;
          artifact = artifactOf target machine.config;
        };
      checksOf =
        target:
        ((kindOf target).checks or (_: _: _: { })) target self.nixosConfigurations.${target.attr}.config
          self.packages.${target.system}.${target.attr};
    in
    {
      nixosModules.runner = ./nix/runner.nix;
      nixosModules.default = self.nixosModules.runner;
      # The operator's boot server: serves each runner machine a credential minted per boot.
      nixosModules.boot-broker = ./nix/boot-broker.nix;

      # One machine per target, named like its package: nixosConfigurations.<target>.
      nixosConfigurations = lib.mapAttrs (_: target: mkMachine target [ ]) targets;

      # `nix build .#ipxe-x86_64` before the fleet's root is committed: the message saying what to set.
      legacyPackages = forSystems (system: lib.optionalAttrs (!ipxeConfigured) (ipxeOf system));

      # packages.<system>.<target>: `nix build .#<target>` for every row of targets.json.
      packages = forSystems (
        system:
        lib.mapAttrs (
          attr: target: artifactOf target self.nixosConfigurations.${attr}.config
        ) bySystem.${system}
        # packages.<system>.ipxe-<arch>: the trust-enforcing iPXE (nix/ipxe.nix) for this
        # repository's fleet, once its root and boot URL are committed (see ipxeOf).
        // lib.optionalAttrs ipxeConfigured (ipxeOf system)
      );

      checks = forSystems (
        system:
        let
          pkgs = pkgsFor system;
        in
        # `nix flake check` only evaluates packages; re-export them so it builds them.
        lib.mapAttrs' (name: lib.nameValuePair "package-${name}") self.packages.${system}
        # lib.concatMapAttrs f v (nixpkgs lib attrsets.nix @ de42d442): the union of f's results
        // lib.concatMapAttrs (_: checksOf) bySystem.${system}
        // {
          # The machines carry the release info, the operator keys and their image module.
          image-composition = import ./nix/composition-check.nix {
            inherit pkgs lib kinds release operatorKeys;
            targets = bySystem.${system};
            machines = self.nixosConfigurations;
          };
        }
        # The trust-enforcing iPXE boots a signed release and refuses a tampered initrd.
        // lib.optionalAttrs (system == "x86_64-linux") (
          import ./nix/ipxe-boot-tests.nix {
            inherit pkgs lib nixpkgs;
            # the system's netboot target, by kind: targets.json is the only place names are spelled
            target = lib.findFirst (t: t.image == "netboot") (throw "ipxe-boot-tests: no netboot target for ${system}") (lib.attrValues bySystem.${system});
            instrumented =
              target:
              let
                machine = mkMachine target [ (nixpkgs + "/nixos/modules/testing/test-instrumentation.nix") ];
              in
              {
                inherit (machine) config;
                artifact = artifactOf target machine.config;
              };
          }
        )
        # QEMU boot tests (x86_64 only for now: BIOS boot and the OVMF/iPXE ROM paths).
        // lib.optionalAttrs (system == "x86_64-linux") (
          import ./nix/boot-tests.nix {
            inherit pkgs lib nixpkgs;
            targets = bySystem.${system};
            instrumented = target: instrumentedWith target [ ];
          }
          # The first contact with a real Forgejo: one per netboot target (nix/forgejo-boot-test.nix).
          // lib.concatMapAttrs (
            _: target:
            let
              testPki = import ./nix/forgejo-boot-test-pki.nix { inherit pkgs; };
            in
            lib.optionalAttrs (target.image == "netboot") {
              "forgejo-boot-${target.attr}" = import ./nix/forgejo-boot-test.nix {
                inherit pkgs lib target testPki;
                source = self;
                # the broker's certificate is signed by the test CA
                # (security.pki.certificateFiles: nixos/modules/security/ca.nix, from memory)
                runnerMachine = instrumentedWith target [ { security.pki.certificateFiles = [ "${testPki}/ca.crt" ]; } ];
              };
            }
          ) bySystem.${system}
        )
      );

      # Everything the scripts in scripts/ need: `nix develop -c bun scripts/...`.
      # pkgs.mkShellNoCC = mkShell.override { stdenv = stdenvNoCC; } (nixpkgs
      # pkgs/top-level/all-packages.nix, a 2025+ copy in the search index; commit not named).
      devShells = forSystems (system: {
        default = (pkgsFor system).mkShellNoCC {
          packages = with pkgsFor system; [
            bun
            git
            openssh # ssh-keygen, ssh-agent (signing and verifying the provenance statement)
            curl # also a reference tool for bench/
            openssl # reference tool for bench/
            coreutils
            nix
            actionlint # .forgejo/workflows
            shellcheck # the workflows' run: scripts (tests/workflows.test.ts)
          ];
        };
      });

      # `nix fmt`: nixfmt over the tree (pkgs/by-name/ni/nixfmt-tree/package.nix exists in the
      # nixpkgs index at c1d241a; its contents were not re-read).
      formatter = forSystems (system: (pkgsFor system).nixfmt-tree);
    };
}
