#!/usr/bin/env bash
# Provides kube-apiserver and kube-controller-manager v1.20.2 (plus Debian's etcd) for the
# integration tests, in ~/.cache/deckhand/kubernetes/v1.20.2/.
#
# No registry reachable here ships these binaries, so they are built from Debian
# bookworm's `kubernetes` source package, which vendors its Go dependencies and builds
# offline with Debian's Go. That takes 12-15 minutes on 2 cores, so:
#   1. binaries already in the cache are used as they are;
#   2. else, when the team's shared cache (../shared/cache next to the repo) holds xz copies
#      of this exact build, they are unpacked after their sha256 is checked;
#   3. else they are built from source.
# Idempotent; needs root or sudo for apt.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

VERSION=v1.20.2
DEST="$DECKHAND_CACHE/kubernetes/$VERSION"
BINARIES=(kube-apiserver kube-controller-manager)
SHARED_CACHE="${DECKHAND_SHARED_CACHE:-$REPO_ROOT/../shared/cache}"

apt_install etcd-server xz-utils

have_binaries() {
  for binary in "${BINARIES[@]}"; do
    [ -x "$DEST/$binary" ] && "$DEST/$binary" --version >/dev/null 2>&1 || return 1
  done
}

unpack_shared_cache() {
  for binary in "${BINARIES[@]}"; do
    [ -f "$SHARED_CACHE/$binary-$VERSION-linux-amd64.xz" ] && [ -f "$SHARED_CACHE/$binary-$VERSION-linux-amd64.sha256" ] || return 1
  done
  [ "$(uname -m)" = x86_64 ] || return 1
  mkdir -p "$DEST"
  for binary in "${BINARIES[@]}"; do
    local name="$binary-$VERSION-linux-amd64"
    xz -dc "$SHARED_CACHE/$name.xz" > "$DEST/$binary.partial"
    local want got
    want=$(awk '{print $1}' "$SHARED_CACHE/$name.sha256")
    got=$(sha256sum "$DEST/$binary.partial" | awk '{print $1}')
    if [ "$want" != "$got" ]; then
      rm -f "$DEST/$binary.partial"
      log "checksum mismatch for $name in the shared cache; building instead"
      return 1
    fi
    chmod 755 "$DEST/$binary.partial"
    mv "$DEST/$binary.partial" "$DEST/$binary"
  done
}

build_from_source() {
  log "building kube-apiserver $VERSION from Debian's source package (12-15 minutes on 2 cores)"
  # Source packages need deb-src entries; add them for bookworm when none exist.
  if ! grep -rqs '^Types:.*deb-src\|^deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    as_root tee /etc/apt/sources.list.d/deckhand-debian-src.sources >/dev/null <<'SOURCES'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    as_root apt-get update -qq
  fi
  apt_install golang-go dpkg-dev rsync golang-github-modern-go-reflect2-dev
  local work
  work=$(mktemp -d "${TMPDIR:-/tmp}/deckhand-kube-build.XXXXXX")
  trap 'rm -rf "$work"' RETURN
  ( cd "$work" && apt-get source -qq kubernetes >/dev/null 2>&1 ) || die "apt-get source kubernetes failed"
  local src
  src=$(find "$work" -maxdepth 1 -type d -name 'kubernetes-*' | head -n 1)
  [ -n "$src" ] || die "the kubernetes source package did not unpack"
  # The vendored reflect2 1.0.1 crashes under Go >= 1.18 on the first custom resource;
  # Debian's 1.0.2 fixes that.
  local reflect2="$src/vendor/github.com/modern-go/reflect2"
  rm -f "$reflect2"/*.go "$reflect2"/*.s
  cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.go /usr/share/gocode/src/github.com/modern-go/reflect2/*.s "$reflect2/"
  mkdir -p "$src/.go/src/k8s.io"
  ln -sfn ../../.. "$src/.go/src/k8s.io/kubernetes"
  ( cd "$src" && GOPATH="$src/.go" CGO_ENABLED=0 GOFLAGS=-mod=vendor GOPROXY=off HOME="$work/home" \
      make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >"$work/build.log" 2>&1 ) \
    || { tail -40 "$work/build.log" >&2; die "building kube-apiserver failed"; }
  mkdir -p "$DEST"
  for binary in "${BINARIES[@]}"; do
    install -m 755 "$src/_output/bin/$binary" "$DEST/$binary"
  done
}

if have_binaries; then
  log "kube-apiserver $VERSION: cached in $DEST"
elif unpack_shared_cache && have_binaries; then
  log "kube-apiserver $VERSION: unpacked from the shared cache into $DEST"
else
  build_from_source
  have_binaries || die "the built binaries do not run"
  log "kube-apiserver $VERSION: built into $DEST"
fi
