# Finds this machine's runner configuration on the boot medium and turns it into the
# forgejo-runner credential (the `.runner` file) under /run. Run once per boot by
# forgejo-runner-secret.service, before forgejo-runner.service (see nix/runner.nix).
#
# Where the configuration comes from, first match wins:
#   1. kernel parameter  <CMDLINE_PARAM>=<url>  (netboot: set by the operator's iPXE script,
#      e.g. `set cmdline runner.config_url=https://...` before chaining the release script);
#   2. a filesystem labelled <CONFIG_LABEL> holding `runner.env` (ISO: a partition on the
#      USB stick or a second stick; works for netboot too).
# The configuration is a small env file:
#   FORGEJO_RUNNER_SECRET=<40 hex characters>   (required; from `forgejo-cli actions register`)
#   FORGEJO_URL=https://forgejo.example.org     (optional if the image has a default URL)
#   FORGEJO_RUNNER_NAME=rack1-node3              (optional)
# It is parsed, never sourced: nothing on the stick is executed.
#
# Exit 0 without a credential when no configuration exists (forgejo-runner.service is then
# skipped by its ConditionPathExists); exit 1 when a configuration exists but is unusable.
#
# Inputs (environment, set by the unit): CMDLINE_PARAM CONFIG_LABEL CONFIG_FILE_NAME
# DEFAULT_URL DEFAULT_NAME RUNNER_CONFIG RUNNER_FILE RUNNER_USER LABEL_WAIT_SECONDS

log() { printf 'forgejo-runner-secret: %s\n' "$*"; }

workdir=$(mktemp -d -p /run forgejo-runner-secret.XXXXXX)
chmod 0700 "$workdir"
env_file="$workdir/runner.env"
mnt="$workdir/mnt"
cleanup() {
  if mountpoint -q "$mnt"; then umount "$mnt" || true; fi
  rm -rf "$workdir"
}
trap cleanup EXIT

# The value of a kernel parameter NAME=VALUE, or nothing.
cmdline_value() {
  local name=$1 word
  local -a words
  read -r -a words </proc/cmdline
  for word in "${words[@]}"; do
    case $word in
      "$name"=*) printf '%s\n' "${word#*=}" ;;
    esac
  done
}

fetch_from_url() {
  local url=$1
  # The URL is not logged: it may itself be a capability.
  log "fetching the runner configuration named by the ${CMDLINE_PARAM} kernel parameter"
  curl --fail --silent --show-error --location \
    --retry 10 --retry-delay 3 --retry-all-errors --connect-timeout 10 --max-time 60 \
    --output "$env_file" "$url"
}

read_from_label() {
  local dev=/dev/disk/by-label/$CONFIG_LABEL i
  udevadm settle --timeout="$LABEL_WAIT_SECONDS" || true
  for ((i = 0; i < LABEL_WAIT_SECONDS; i++)); do
    [ -e "$dev" ] && break
    sleep 1
  done
  [ -e "$dev" ] || return 2
  mkdir -p "$mnt"
  mount -o ro,nosuid,nodev,noexec "$dev" "$mnt" || return 1
  if [ ! -f "$mnt/$CONFIG_FILE_NAME" ]; then
    log "the filesystem labelled $CONFIG_LABEL has no $CONFIG_FILE_NAME; the runner will not start"
    exit 1
  fi
  log "reading the runner configuration from the filesystem labelled $CONFIG_LABEL"
  install -m 0600 "$mnt/$CONFIG_FILE_NAME" "$env_file" || return 1
  umount "$mnt"
}

unquote() {
  local v=$1
  case $v in
    \"*\")
      v=${v#\"}
      v=${v%\"}
      ;;
    \'*\')
      v=${v#\'}
      v=${v%\'}
      ;;
  esac
  printf '%s' "$v"
}

umask 077

config_url=$(cmdline_value "$CMDLINE_PARAM" | tail -n 1)
if [ -n "$config_url" ]; then
  if ! fetch_from_url "$config_url"; then
    log "could not fetch the runner configuration named by ${CMDLINE_PARAM}; the runner will not start"
    exit 1
  fi
else
  status=0
  read_from_label || status=$?
  if [ "$status" -eq 2 ]; then
    log "no registration secret found (no ${CMDLINE_PARAM}= kernel parameter, no filesystem labelled ${CONFIG_LABEL}); the runner will not start"
    exit 0
  elif [ "$status" -ne 0 ]; then
    log "could not read the filesystem labelled ${CONFIG_LABEL}; the runner will not start"
    exit 1
  fi
fi

secret="" url="" name=""
while IFS= read -r line || [ -n "$line" ]; do
  line=${line%$'\r'} # files written on Windows
  case $line in
    FORGEJO_RUNNER_SECRET=*) secret=$(unquote "${line#*=}") ;;
    FORGEJO_URL=*) url=$(unquote "${line#*=}") ;;
    FORGEJO_RUNNER_NAME=*) name=$(unquote "${line#*=}") ;;
  esac
done <"$env_file"

if ! [[ $secret =~ ^[0-9a-fA-F]{40}$ ]]; then
  log "FORGEJO_RUNNER_SECRET is missing or is not 40 hexadecimal characters; the runner will not start"
  exit 1
fi
url=${url:-$DEFAULT_URL}
case $url in
  http://* | https://*) ;;
  *)
    log "no Forgejo URL: set FORGEJO_URL=https://... in ${CONFIG_FILE_NAME} (or runnerImage.forgejoUrl in the image); the runner will not start"
    exit 1
    ;;
esac
# The first 16 characters of the secret are the runner's public identifier (the rest is the
# secret proper), so they may appear in names and logs.
runner_id=${secret:0:16}
name=${name:-"$DEFAULT_NAME-${runner_id:0:8}"}

install -d -m 0700 -o "$RUNNER_USER" -g "$RUNNER_USER" "$(dirname "$RUNNER_FILE")"
rm -f "$RUNNER_FILE"
# forgejo-runner v11/v12 `create-runner-file` takes the secret only as a flag, so it is in
# this process's argv for a moment. That happens at boot, before the runner or any job runs.
# The command is offline (no --connect): it derives the runner UUID from the secret and writes
# the file; the same secret always gives the same runner, so reboots add no server entries.
forgejo-runner --config "$RUNNER_CONFIG" create-runner-file \
  --instance "$url" --secret "$secret" --name "$name" >/dev/null
# 0600, not 0400: the daemon rewrites this file after declaring its labels
# (internal/app/cmd/daemon.go, config.SaveRegistration) and must be able to.
chown "$RUNNER_USER:$RUNNER_USER" "$RUNNER_FILE"
chmod 0600 "$RUNNER_FILE"
log "runner credential ready: runner id $runner_id, name '$name', instance $url"
