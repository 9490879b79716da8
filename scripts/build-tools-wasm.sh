#!/usr/bin/env bash
# Builds deckhand's sandboxed tools (tools-wasm/) for wasm32-wasip1 and copies the modules
# to tools-wasm/dist/, where `deckhand` and the tests load them.
#
# rustup cannot fetch the wasm32-wasip1 standard library here, so this uses Debian's
# compiler (rustc-web), its standard-library source (rust-web-src), WASI's libc and LLVM's
# linker, and rebuilds std with -Zbuild-std. RUSTC_BOOTSTRAP is confined to this build.
# Installs its own prerequisites (needs root or sudo for apt) and is idempotent.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

# rust-web-llvm provides /usr/bin/rust-lld (a Recommends of rustc-web, so name it).
apt_install rustc-web cargo-web rust-web-src rust-web-llvm wasi-libc lld-22
[ -f /usr/lib/wasm32-wasi/crt1-command.o ] || die "wasi-libc is installed but crt1-command.o is missing"

TOOLS_DIR="$REPO_ROOT/tools-wasm"
DIST="$TOOLS_DIR/dist"
export CARGO_TARGET_DIR="${DECKHAND_WASM_TARGET_DIR:-$DECKHAND_CACHE/target-wasm}"
export RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1
export RUSTFLAGS="-C link-self-contained=no -L /usr/lib/wasm32-wasi -C link-arg=/usr/lib/wasm32-wasi/crt1-command.o"
# The rustup cargo is first on PATH; this build must use Debian's.
unset RUSTUP_TOOLCHAIN CARGO_BUILD_TARGET

log "building tools-wasm for wasm32-wasip1 (the first build compiles std: a few minutes)"
( cd "$TOOLS_DIR" && /usr/bin/cargo build --release --locked -Zbuild-std=std,panic_abort --target wasm32-wasip1 )

mkdir -p "$DIST"
count=0
for module in "$CARGO_TARGET_DIR"/wasm32-wasip1/release/*.wasm; do
  [ -e "$module" ] || continue
  # Copy only when changed, so the host's compiled-module cache stays warm.
  cmp -s "$module" "$DIST/$(basename "$module")" || cp "$module" "$DIST/"
  count=$((count + 1))
done
[ "$count" -gt 0 ] || die "the build produced no .wasm modules"
log "tools-wasm: $count module(s) in $DIST"
