#!/usr/bin/env bash
# Installs what a fresh Debian machine with only Node 20 lacks for the demo and the tests: Bun
# from npm; Nix (Debian's nix-bin) and the tools the tests use from Debian; Debian's kernel for
# the bootable test fixture, downloaded (not installed) once into ~/.cache/runner-images.
# Installs only what is missing, so a second run does nothing. Needs root for apt-get (sudo is
# used when it is there); a user other than root is added to nix-users and asked to log in
# again. The README's first command and .ci/run both start with it.
set -euo pipefail
cd "$(dirname "$0")/.."

user=$(id -un)
as_root=()
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then as_root=(sudo); fi
# One line instead of apt's or npm's permission errors.
need_root() {
  if [ "$(id -u)" -ne 0 ] && [ ${#as_root[@]} -eq 0 ]; then
    echo "setup.sh: $1 needs root: run it as root, or with sudo installed" >&2
    exit 1
  fi
}
apt_get() { need_root "installing from Debian"; "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "$@"; }

if ! bun --version >/dev/null 2>&1; then
  need_root "installing bun"
  echo "installing bun from npm"
  "${as_root[@]}" npm install --global --no-fund --no-audit bun@1.4.5
fi
# nix-bin: the build tests run real nix; openssl: the TLS test makes a self-signed certificate;
# openssh-client: ssh-keygen and ssh-agent (one package) sign and verify the provenance statement.
missing=()
command -v nix >/dev/null 2>&1 && command -v nix-store >/dev/null 2>&1 || missing+=(nix-bin)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
# curl, e2fsprogs (mke2fs): the registration script's tests (tests/runner-secret.test.ts).
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v mke2fs >/dev/null 2>&1 || missing+=(e2fsprogs)
# procps: pgrep (the interruption tests); shellcheck: the workflows' run: scripts.
command -v pgrep >/dev/null 2>&1 || missing+=(procps)
# git: the fixture flake is a git checkout; the test server and the tag-rule test ask the real
# `git check-ref-format` which tag names git accepts.
command -v git >/dev/null 2>&1 || missing+=(git)
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
# golang-go: tests/runner-secret.test.ts compares the .runner bytes with Go's own encoder (it
# skips without go); python3: tests/flake-eval-waits.test.ts reads the boot tests' Python.
command -v go >/dev/null 2>&1 || missing+=(golang-go)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
# The netboot chain test and the demo: QEMU with Debian's iPXE ROMs boots the published chain;
# busybox-static and cpio make the fixture's initrd.
command -v qemu-system-x86_64 >/dev/null 2>&1 || missing+=(qemu-system-x86)
[ -e /usr/lib/ipxe/qemu/efi-e1000.rom ] || missing+=(ipxe-qemu)
command -v busybox >/dev/null 2>&1 || missing+=(busybox-static)
command -v cpio >/dev/null 2>&1 || missing+=(cpio)
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${missing[*]} from Debian"
  apt_get update -qq
  apt_get install -y -qq "${missing[@]}" >/dev/null
elif [ ${#missing[@]} -gt 0 ]; then
  # Not Debian (e.g. NixOS, where `nix develop` provides these): say so, and let the tests tell.
  echo "warning: missing ${missing[*]} and no apt-get to install them"
fi
# Debian's kernel for the bootable fixture, downloaded (not installed) once into ~/.cache.
if command -v apt-get >/dev/null 2>&1; then
  if ! tests/fixtures/netboot/fetch-kernel.sh 2>/dev/null; then
    apt_get update -qq
    tests/fixtures/netboot/fetch-kernel.sh
  fi
fi
# Nix for a user other than root goes through Debian's nix-daemon, which only members of the
# group nix-users may use (nix-bin 2.8.0, /usr/share/doc/nix-bin/README.Debian); a new group
# applies from the next login.
if [ "$(id -u)" -ne 0 ] && getent group nix-users >/dev/null; then
  if ! id -nG "$user" | tr ' ' '\n' | grep -qx nix-users; then
    need_root "adding $user to the group nix-users"
    "${as_root[@]}" adduser -q "$user" nix-users
    echo "setup.sh: added $user to the group nix-users (Nix's daemon is open to it only): log in again, then run the same command" >&2
    exit 1
  elif ! id -nG | tr ' ' '\n' | grep -qx nix-users; then
    echo "setup.sh: $user is in the group nix-users from the next login: log in again, then run the same command" >&2
    exit 1
  fi
fi
