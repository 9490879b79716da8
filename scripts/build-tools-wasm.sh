#!/usr/bin/env bash
# Builds deckhand's sandboxed tools (tools-wasm/) for wasm32-wasip1 and puts each module
# with its manifest (NAME.wasm + NAME.json) in tools-wasm/dist/, where `deckhand` and the
# tests load them.
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
TEST_DIST="$TOOLS_DIR/dist-test"
export CARGO_TARGET_DIR="${DECKHAND_WASM_TARGET_DIR:-$DECKHAND_CACHE/target-wasm}"
export RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1
export RUSTFLAGS="-C link-self-contained=no -L /usr/lib/wasm32-wasi -C link-arg=/usr/lib/wasm32-wasi/crt1-command.o"
# The rustup cargo is first on PATH; this build must use Debian's.
unset RUSTUP_TOOLCHAIN CARGO_BUILD_TARGET

log "building tools-wasm for wasm32-wasip1 (the first build compiles std: a few minutes)"
( cd "$TOOLS_DIR" && /usr/bin/cargo build --release --locked -Zbuild-std=std,panic_abort --target wasm32-wasip1 )

mkdir -p "$DIST" "$TEST_DIST"
WASM_OUT="$CARGO_TARGET_DIR/wasm32-wasip1/release"
# Copy only when changed, so the host's compiled-module cache stays warm.
install_module() { cmp -s "$1" "$2/$(basename "$1")" || cp "$1" "$2/"; }
# The tools are the binaries of the `tools` package; everything else built here (the
# hostile plugin the sandbox tests attack with) goes to dist-test/, never to dist/.
modules=()
for source in "$TOOLS_DIR"/tools/src/bin/*.rs; do
  name=$(basename "$source" .rs)
  [ -f "$WASM_OUT/$name.wasm" ] || die "the build produced no $name.wasm"
  install_module "$WASM_OUT/$name.wasm" "$DIST"
  modules+=("$name")
done
[ ${#modules[@]} -gt 0 ] || die "tools-wasm/tools has no tool binaries"
install_module "$WASM_OUT/hostile.wasm" "$TEST_DIST"

# Manifests: each tool, built natively with the ordinary toolchain, prints its manifest
# (name, description, workspace access, input and output JSON Schemas) with --manifest.
unset RUSTC RUSTC_BOOTSTRAP RUSTFLAGS
HOST_TARGET="$DECKHAND_CACHE/target-wasm-host"
( cd "$TOOLS_DIR" && CARGO_TARGET_DIR="$HOST_TARGET" cargo build --locked --quiet -p deckhand-wasm-tools --bins )
for name in "${modules[@]}"; do
  "$HOST_TARGET/debug/$name" --manifest > "$DIST/$name.json.partial"
  mv "$DIST/$name.json.partial" "$DIST/$name.json"
done
# Modules of tools that no longer exist must not linger.
for stale in "$DIST"/*.wasm; do
  name=$(basename "$stale" .wasm)
  [ -e "$TOOLS_DIR/tools/src/bin/$name.rs" ] || rm -f "$stale" "$DIST/$name.json"
done
log "tools-wasm: ${#modules[@]} tool(s) in $DIST: ${modules[*]}"
