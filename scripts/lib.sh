# Shared helpers for deckhand's scripts. Source it; it defines functions and variables only.
# shellcheck shell=bash

# Everything deckhand builds outside the repo lives here, so a fresh clone on the same
# machine reuses it (cargo's target dirs, the kube-apiserver build).
DECKHAND_CACHE=${DECKHAND_CACHE:-$HOME/.cache/deckhand}
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export DECKHAND_CACHE REPO_ROOT

log() { printf '[deckhand %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Runs a command as root: directly when we are root, through sudo otherwise.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

_apt_updated=""
# apt_install PKG...: installs the Debian packages that are not installed yet.
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "apt-get not found; install these packages by hand: ${missing[*]}"
  if [ -z "$_apt_updated" ]; then
    log "apt-get update"
    as_root apt-get update -qq
    _apt_updated=1
  fi
  log "installing ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
