#!/usr/bin/env bash
# Finds this machine's runner configuration on the boot medium and writes the forgejo-runner
# credential from it. Run once per boot, as root, by forgejo-runner-secret.service, before the
# runner units (nix/runner.nix). A standalone bash script: it needs bash, coreutils and curl,
# plus util-linux (mount) and udevadm for the label source only. It never contacts Forgejo.
#
# Where the configuration comes from, first match wins:
#   1. <INITRD_ENV_FILE>: runner.env handed over by the boot loader as an extra initrd file
#      (iPXE `initrd <url> /runner.env`; stage 1 moves it to /run, nix/runner.nix). Read once,
#      then deleted;
#   2. kernel parameter  <CMDLINE_PARAM>=<url>: fetched over HTTPS (netboot; set by the
#      operator's iPXE script, `set cmdline runner.config_url=https://...`);
#   3. a filesystem labelled <CONFIG_LABEL> holding <CONFIG_FILE_NAME> (ISO: a config stick).
# The configuration is a small env file, parsed and never sourced. It holds one of two credentials:
#   a single-use registration, minted for this boot by the boot broker (Forgejo >= 15):
#     FORGEJO_RUNNER_UUID=<uuid>                 the registration's uuid
#     FORGEJO_RUNNER_TOKEN=<40 hex characters>   its token
#     FORGEJO_RUNNER_REGISTRATION_ID=<n>         optional, public: the id Forgejo and the broker log
#     FORGEJO_RUNNER_EPHEMERAL=1|0               optional: 1 = single-use (what host mode wants)
#   or the operator's long-lived secret (older Forgejo, or no broker):
#     FORGEJO_RUNNER_SECRET=<40 hex characters>  from `forgejo-cli actions register`
# and with either:
#   FORGEJO_URL=https://forgejo.example.org     required unless the image has a default
#   FORGEJO_RUNNER_NAME=rack1-node3             optional
#   FORGEJO_RUNNER_MODE=container|host          optional, default container (see below)
#   RUNNER_ALLOW_INSECURE_HTTP=1                optional, lab networks only: http:// FORGEJO_URL
# (the broker's side of this format: docs/boot-broker.md; other keys, such as the broker's
# informational FORGEJO_RUNNER_LABELS, are ignored: the image's own labels are declared).
#
# Modes. `container` (the default) writes <RUNNER_DIR>/container.runner, the runner's own
# `.runner` JSON, for the container-only `daemon`. `daemon` refuses an ephemeral registration
# (forgejo-runner >= 12.8.0, internal/app/cmd/daemon.go), so a single-use credential is refused
# here for container mode, with that reason. `host` writes <RUNNER_DIR>/host.token (the token
# alone, no trailing newline: runners before 12.9 read a --token-url file verbatim) and
# <RUNNER_DIR>/host.env (RUNNER_URL and RUNNER_UUID, not secret) for
# `forgejo-runner one-job --url --uuid --token-url file:...`, after which the machine reboots
# (nix/runner.nix). Only one mode is written, so a machine is one kind of runner. A long-lived
# credential in host mode is accepted with a warning: every host job can read it
# (docs/machine-credential.md, "What a job can do with the credential").
#
# The long-lived secret becomes a uuid and a token as forgejo-runner v12 does it
# (internal/app/cmd/create-runner-file.go uuidFromSecret: the uuid is the first 16 characters of
# the secret read as bytes; the token is the whole secret). `.runner` is written byte for byte as
# forgejo-runner v12 writes it (internal/pkg/config/registration.go SaveRegistration:
# json.Encoder, two-space indent, trailing newline). `create-runner-file` is not used: it pings
# the instance before it saves the file and takes the secret in its argv. Here the secret and the
# token only ever pass through bash builtins (read, printf into files), never a command's
# arguments.
#
# The request for runner.env carries the header `Runner-Boot-Id: <this boot's id>` (the kernel's
# /proc/sys/kernel/random/boot_id, new at every boot): the boot broker hands out one credential per
# machine and boot id, and answers a second request of the same boot with 409, which is final.
#
# Plain http is refused for both the configuration URL and FORGEJO_URL. Opt-ins, for lab
# networks, each logged as a warning: the kernel parameter runner.allow_insecure_http=1 (the
# boot chain, which can replace the whole system anyway) allows both; the runner.env line allows
# an http FORGEJO_URL (runner.env's author already holds the secret).
#
# Exit 0 without a credential when there is no configuration (the runner units are then skipped
# by their ConditionPathExists); exit 1, with one line saying why, when it is unusable.
#
# Inputs (environment; defaults in brackets):
#   INITRD_ENV_FILE [/run/forgejo-runner-initrd/runner.env]
#   CMDLINE_FILE [/proc/cmdline]  CMDLINE_PARAM [runner.config_url]
#   CONFIG_LABEL [RUNNER-CFG]  CONFIG_FILE_NAME [runner.env]
#   LABEL_DEVICE_DIR [/dev/disk/by-label]  LABEL_WAIT_SECONDS [5]
#   DEFAULT_URL []  DEFAULT_NAME [forgejo-runner]
#   RUNNER_DIR [/run/forgejo-runner]: root-owned, created if missing
#   CONTAINER_USER [forgejo-runner]  HOST_USER [forgejo-runner-host]: owners of the credential
#   WORK_PARENT [/tmp]: where the private scratch directory goes
#   FETCH_ATTEMPTS [10]  FETCH_FIRST_DELAY [1]  FETCH_MAX_DELAY [60]: back-off, in seconds
#   BOOT_ID_FILE [/proc/sys/kernel/random/boot_id]: sent as Runner-Boot-Id
#   CURL_CA_BUNDLE: curl's own variable, for a private CA
set -euo pipefail

: "${INITRD_ENV_FILE:=/run/forgejo-runner-initrd/runner.env}"
: "${CMDLINE_FILE:=/proc/cmdline}" "${CMDLINE_PARAM:=runner.config_url}"
: "${CONFIG_LABEL:=RUNNER-CFG}" "${CONFIG_FILE_NAME:=runner.env}"
: "${LABEL_DEVICE_DIR:=/dev/disk/by-label}" "${LABEL_WAIT_SECONDS:=5}"
: "${DEFAULT_URL:=}" "${DEFAULT_NAME:=forgejo-runner}"
: "${RUNNER_DIR:=/run/forgejo-runner}" "${CONTAINER_USER:=forgejo-runner}" "${HOST_USER:=forgejo-runner-host}"
: "${WORK_PARENT:=/tmp}"
: "${FETCH_ATTEMPTS:=10}" "${FETCH_FIRST_DELAY:=1}" "${FETCH_MAX_DELAY:=60}"
: "${BOOT_ID_FILE:=/proc/sys/kernel/random/boot_id}"

# forgejo-runner v12 internal/pkg/config/registration.go, registrationWarning
readonly REGISTRATION_WARNING="This file is automatically generated by forgejo-runner. Do not edit it manually unless you know what you are doing. Removing this file will cause act runner to re-register as a new runner."
readonly INSECURE_PARAM=runner.allow_insecure_http

log() { printf 'forgejo-runner-secret: %s\n' "$*"; }
fail() {
  log "$*; the runner will not start"
  exit 1
}

umask 077
workdir=$(mktemp -d -p "$WORK_PARENT" forgejo-runner-secret.XXXXXX) || fail "cannot create a scratch directory in $WORK_PARENT"
env_file=$workdir/runner.env
mnt=$workdir/mnt
cleanup() {
  if [ -d "$mnt" ] && mountpoint -q "$mnt"; then umount "$mnt" || true; fi
  rm -rf "$workdir"
}
trap cleanup EXIT

# The value of kernel parameter NAME=VALUE (the last one wins, as for the kernel), or nothing.
cmdline_value() {
  local name=$1 word value=""
  local -a words
  read -r -a words <"$CMDLINE_FILE" || true
  for word in "${words[@]}"; do
    case $word in "$name"=*) value=${word#*=} ;; esac
  done
  printf '%s' "$value"
}

insecure_boot=no
[ "$(cmdline_value "$INSECURE_PARAM")" = 1 ] && insecure_boot=yes

# An absolute http(s) URL without spaces, quotes or backslashes (it goes into a curl config line).
is_url() { [[ $1 =~ ^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/?=\&%+,:@-]*)?$ ]]; }

readonly UUID_RE='^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'

# This boot's id, for the Runner-Boot-Id header, or nothing if the kernel gives none.
boot_id=""
if [ -r "$BOOT_ID_FILE" ]; then
  read -r boot_id <"$BOOT_ID_FILE" || true
  [[ $boot_id =~ $UUID_RE ]] || boot_id=""
fi

# Fetch $1 into $env_file over https (http only with the boot opt-in), retrying with back-off
# while the network or the server comes up. The URL is not logged: it may be a capability.
fetch_config() {
  local url=$1 protocols="=https" attempt=1 delay=$FETCH_FIRST_DELAY status http_code
  if ! is_url "$url"; then
    fail "${CMDLINE_PARAM} is not a URL"
  elif [[ $url == http://* ]]; then
    [ "$insecure_boot" = yes ] || fail "${CMDLINE_PARAM} is a plain http URL; use https (lab networks: add ${INSECURE_PARAM}=1 to the kernel command line)"
    log "WARNING: fetching the runner configuration over plain http (${INSECURE_PARAM}=1): anyone on the network can read the runner secret"
    protocols="=http,https"
  fi
  log "fetching the runner configuration named by the ${CMDLINE_PARAM} kernel parameter"
  while :; do
    status=0
    # The URL reaches curl on stdin (config lines), not in its argv; so does the boot id.
    http_code=$(curl --config - --proto "$protocols" --proto-redir "$protocols" \
      --location --max-redirs 5 --fail --silent --connect-timeout 10 --max-time 60 \
      --max-filesize 65536 --output "$env_file" --write-out '%{http_code}' \
      <<<"url = \"$url\"${boot_id:+$'\n'header = \"Runner-Boot-Id: $boot_id\"}") || status=$?
    case $status in
      0) return 0 ;;
      1) fail "the configuration server answered with (or redirected to) a URL that is not https" ;;
      22) case $http_code in
          408 | 429 | 5??) ;;
          # The boot broker's answers (docs/boot-broker.md); its log says which rule refused.
          403) fail "the configuration server answered HTTP 403 (refused: this machine's address, or host mode for a repository that takes pull requests; see the broker's log)" ;;
          409) fail "the configuration server answered HTTP 409 (this boot's credential was already handed out: someone else asked first, or a second request of the same boot); not retrying" ;;
          *) fail "the configuration server answered HTTP $http_code" ;;
        esac ;;
      6 | 7 | 28 | 35 | 52 | 55 | 56) ;; # no DNS, no route, refused, timed out, cut off: not up yet
      60) fail "the configuration server's TLS certificate is not trusted" ;;
      77) fail "cannot read the trusted CA certificates (CURL_CA_BUNDLE or the system bundle)" ;;
      63) fail "the runner configuration is larger than 64 KiB" ;;
      *) fail "could not fetch the runner configuration (curl exit status $status)" ;;
    esac
    if ((attempt >= FETCH_ATTEMPTS)); then
      fail "the configuration server did not answer after $attempt attempts"
    fi
    log "the configuration server is not reachable yet (attempt $attempt of $FETCH_ATTEMPTS); retrying in ${delay}s"
    sleep "$delay"
    attempt=$((attempt + 1))
    delay=$((delay * 2 > FETCH_MAX_DELAY ? FETCH_MAX_DELAY : delay * 2))
  done
}

# Copy <CONFIG_FILE_NAME> from the filesystem labelled <CONFIG_LABEL>. Returns 2 when there is
# no such filesystem.
read_from_label() {
  local dev=$LABEL_DEVICE_DIR/$CONFIG_LABEL i
  if command -v udevadm >/dev/null; then udevadm settle --timeout="$LABEL_WAIT_SECONDS" || true; fi
  for ((i = 0; i < LABEL_WAIT_SECONDS; i++)); do
    [ -e "$dev" ] && break
    sleep 1
  done
  [ -e "$dev" ] || return 2
  mkdir "$mnt"
  mount -o ro,nosuid,nodev,noexec "$dev" "$mnt" || fail "could not mount the filesystem labelled $CONFIG_LABEL"
  [ -f "$mnt/$CONFIG_FILE_NAME" ] || fail "the filesystem labelled $CONFIG_LABEL has no $CONFIG_FILE_NAME"
  log "reading the runner configuration from the filesystem labelled $CONFIG_LABEL"
  # A stick written on Linux often holds a 0600 file of the operator's own uid (ext4 keeps owners,
  # vfat has none): reading it as root needs CAP_DAC_READ_SEARCH, which the unit keeps for this.
  head -c 65536 "$mnt/$CONFIG_FILE_NAME" >"$env_file" ||
    fail "could not read $CONFIG_FILE_NAME on the filesystem labelled $CONFIG_LABEL (owner and mode: $(stat -c '%u %a' "$mnt/$CONFIG_FILE_NAME"))"
  umount "$mnt"
}

unquote() {
  local v=$1
  case $v in
    \"*\") v=${v#\"} v=${v%\"} ;;
    \'*\') v=${v#\'} v=${v%\'} ;;
  esac
  printf '%s' "$v"
}

# The runner's uuid: the first 16 characters of the secret, as bytes, formatted as a UUID
# (forgejo-runner v12 create-runner-file.go uuidFromSecret: gouuid.FromBytes(secret[:16])).
uuid_from_secret() {
  local hex="" i
  for ((i = 0; i < 16; i++)); do printf -v hex '%s%02x' "$hex" "'${1:i:1}"; done
  printf '%s-%s-%s-%s-%s' "${hex:0:8}" "${hex:8:4}" "${hex:12:4}" "${hex:16:4}" "${hex:20:12}"
}

# --- where the configuration comes from --------------------------------------------------------
config_url=$(cmdline_value "$CMDLINE_PARAM")
if [ -f "$INITRD_ENV_FILE" ]; then
  log "reading the runner configuration the boot loader handed over (initrd)"
  head -c 65536 "$INITRD_ENV_FILE" >"$env_file" || fail "could not read $INITRD_ENV_FILE"
  rm -f "$INITRD_ENV_FILE"
elif [ -n "$config_url" ]; then
  fetch_config "$config_url"
else
  status=0
  read_from_label || status=$?
  if [ "$status" -eq 2 ]; then
    log "no registration secret found (no ${CMDLINE_PARAM}= kernel parameter, no filesystem labelled ${CONFIG_LABEL}); the runner will not start"
    exit 0
  fi
fi

# --- what it says ------------------------------------------------------------------------------
secret="" uuid="" token="" registration_id="" ephemeral="" url="" name="" mode="" insecure_env=""
while IFS= read -r line || [ -n "$line" ]; do
  line=${line%$'\r'} # files written on Windows
  case $line in
    FORGEJO_RUNNER_SECRET=*) secret=$(unquote "${line#*=}") ;;
    FORGEJO_RUNNER_UUID=*) uuid=$(unquote "${line#*=}") ;;
    FORGEJO_RUNNER_TOKEN=*) token=$(unquote "${line#*=}") ;;
    FORGEJO_RUNNER_REGISTRATION_ID=*) registration_id=$(unquote "${line#*=}") ;;
    FORGEJO_RUNNER_EPHEMERAL=*) ephemeral=$(unquote "${line#*=}") ;;
    FORGEJO_URL=*) url=$(unquote "${line#*=}") ;;
    FORGEJO_RUNNER_NAME=*) name=$(unquote "${line#*=}") ;;
    FORGEJO_RUNNER_MODE=*) mode=$(unquote "${line#*=}") ;;
    RUNNER_ALLOW_INSECURE_HTTP=*) insecure_env=$(unquote "${line#*=}") ;;
  esac
done <"$env_file"

# The credential, as a uuid and a token either way; `described` says which kind, for the log.
if [ -n "$secret" ] && [ -n "$uuid$token" ]; then
  fail "${CONFIG_FILE_NAME} holds both FORGEJO_RUNNER_SECRET and FORGEJO_RUNNER_UUID/FORGEJO_RUNNER_TOKEN; give one credential"
elif [ -n "$uuid$token" ]; then
  [[ $uuid =~ $UUID_RE ]] || fail "FORGEJO_RUNNER_UUID is missing or is not a UUID"
  [[ $token =~ ^[0-9a-fA-F]{40}$ ]] || fail "FORGEJO_RUNNER_TOKEN is missing or is not 40 hexadecimal characters"
  [[ $registration_id =~ ^(0|[1-9][0-9]{0,17})?$ ]] || fail "FORGEJO_RUNNER_REGISTRATION_ID must be a number"
  case $ephemeral in
    1) described="single-use registration ${registration_id:-?}, uuid $uuid" ;;
    0 | "") ephemeral=0 described="registration ${registration_id:-?}, uuid $uuid" ;;
    *) fail "FORGEJO_RUNNER_EPHEMERAL must be 1 or 0" ;;
  esac
  default_suffix=${uuid:0:8}
else
  [[ $secret =~ ^[0-9a-fA-F]{40}$ ]] || fail "FORGEJO_RUNNER_SECRET is missing or is not 40 hexadecimal characters"
  # The first 16 characters of the secret are the runner's public identifier (the rest is the
  # secret proper), so they may appear in names and logs.
  uuid=$(uuid_from_secret "$secret") token=$secret ephemeral=0
  described="runner id ${secret:0:16}"
  default_suffix=${secret:0:8}
fi

url=${url:-$DEFAULT_URL}
url=${url%/}
# No query, fragment or characters JSON would escape: the URL is written into .runner verbatim.
[[ $url =~ ^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$ ]] ||
  fail "FORGEJO_URL is missing or is not a URL like https://forgejo.example.org (set it in ${CONFIG_FILE_NAME}, or runnerImage.forgejoUrl in the image)"
if [[ $url == http://* ]]; then
  if [ "$insecure_env" != 1 ] && [ "$insecure_boot" != yes ]; then
    fail "FORGEJO_URL is a plain http URL; use https (lab networks: RUNNER_ALLOW_INSECURE_HTTP=1 in ${CONFIG_FILE_NAME})"
  fi
  log "WARNING: FORGEJO_URL is plain http (insecure opt-in): the runner token and every job's secrets cross the network in clear"
fi

mode=${mode:-container}
case $mode in
  container) owner=$CONTAINER_USER file=$RUNNER_DIR/container.runner ;;
  host) owner=$HOST_USER file=$RUNNER_DIR/host.token ;;
  *) fail "FORGEJO_RUNNER_MODE must be container or host" ;;
esac
if [ "$mode" = container ] && [ "$ephemeral" = 1 ]; then
  fail "a single-use (ephemeral) registration cannot run in container mode: forgejo-runner daemon refuses ephemeral runners since 12.8.0 (the broker mints a reusable one for container machines)"
fi
if [ "$mode" = host ] && [ "$ephemeral" != 1 ]; then
  log "WARNING: host mode with a long-lived credential: every host job can read it and, with it, take later jobs of its scope until it is deleted in Forgejo; use single-use registrations (Forgejo 15 or later and the boot broker)"
fi

name=${name:-"$DEFAULT_NAME-$default_suffix"}
[[ $name =~ ^[A-Za-z0-9._-]{1,100}$ ]] || fail "FORGEJO_RUNNER_NAME may only hold letters, digits, '.', '_' and '-' (at most 100)"

# --- the credential ----------------------------------------------------------------------------
# RUNNER_DIR belongs to root and nobody else may write to it, so nobody can plant a symlink where
# a credential goes; each file is written under a temporary name and renamed into place.
[ -e "$RUNNER_DIR" ] || mkdir -m 0755 "$RUNNER_DIR" || fail "cannot create $RUNNER_DIR"
if [ -L "$RUNNER_DIR" ] || [ "$(stat -c '%u %A' "$RUNNER_DIR")" != "0 drwxr-xr-x" ]; then
  fail "$RUNNER_DIR must be a directory owned by root with mode 0755"
fi
# host.runner: what images before the single-use credentials wrote; the host runner must find
# no `.runner` file, whose connection would conflict with its --url/--uuid/--token-url.
rm -f "$RUNNER_DIR/container.runner" "$RUNNER_DIR/host.token" "$RUNNER_DIR/host.env" "$RUNNER_DIR/host.runner"

# Moves a finished temporary file into place as $1, mode $2, owned by $3.
# chmod before chown: the unit keeps only CAP_CHOWN, CAP_SYS_ADMIN and CAP_DAC_READ_SEARCH
# (CapabilityBoundingSet=), and changing the mode of a file root no longer owns needs CAP_FOWNER
# (chmod(2), EPERM).
install_file() {
  if ! { chmod "$2" "$tmp" && chown "$3:" "$tmp" && mv -f "$tmp" "$1"; }; then
    rm -f "$tmp"
    fail "cannot hand the credential to $3"
  fi
}

if [ "$mode" = container ]; then
  tmp=$(mktemp -p "$RUNNER_DIR" .runner.XXXXXX) || fail "cannot write to $RUNNER_DIR"
  printf '{\n  "WARNING": "%s",\n  "id": %s,\n  "uuid": "%s",\n  "name": "%s",\n  "token": "%s",\n  "address": "%s",\n  "labels": null\n}\n' \
    "$REGISTRATION_WARNING" "${registration_id:-0}" "$uuid" "$name" "$token" "$url" >"$tmp"
  # 0600 and owned by the runner's user: the runner rewrites the file after declaring its labels
  # (internal/app/cmd/daemon.go, config.SaveRegistration: os.Create on the file itself, so the
  # user needs write access to the file, not to the directory).
  install_file "$file" 0600 "$owner"
else
  # The connection: not secret, read by systemd (EnvironmentFile= of forgejo-runner-host.service).
  tmp=$(mktemp -p "$RUNNER_DIR" .env.XXXXXX) || fail "cannot write to $RUNNER_DIR"
  printf 'RUNNER_URL=%s\nRUNNER_UUID=%s\n' "$url" "$uuid" >"$tmp"
  install_file "$RUNNER_DIR/host.env" 0644 root
  # The token, without a newline (read verbatim before runner 12.9), for --token-url file:...;
  # written last: the host runner's unit waits for this file (ConditionPathExists=).
  tmp=$(mktemp -p "$RUNNER_DIR" .token.XXXXXX) || fail "cannot write to $RUNNER_DIR"
  printf '%s' "$token" >"$tmp"
  install_file "$file" 0600 "$owner"
fi
log "runner credential ready: mode $mode, $described, name '$name', instance $url"
