#!/usr/bin/env bash
# Installs everything the tests need (idempotently) and runs the whole test suite:
# apt packages, the wasm toolchain and tools-wasm build, kube-apiserver + etcd,
# PostgreSQL; then the workspace's tests (cargo nextest) and tools-wasm's own tests.
# Extra arguments go to cargo nextest (e.g. a test name filter).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
started=$SECONDS

apt_install postgresql etcd-server openssl curl xz-utils util-linux procps
bash scripts/build-tools-wasm.sh
bash scripts/install-kube-apiserver.sh
bash scripts/install-chromium.sh
bash scripts/install-terraform.sh >/dev/null
log "prerequisites ready after $((SECONDS - started))s"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$DECKHAND_CACHE/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# Servers started by a test process that was killed (a timeout, say) carry the testkit's
# temp-dir marker in their arguments: stop them, now and when we are done.
stop_leftover_servers() { pkill -f 'deckhand-testkit-' 2>/dev/null || true; }
stop_leftover_servers
trap stop_leftover_servers EXIT

log "tools-wasm: unit tests (host build)"
cargo test --locked --manifest-path tools-wasm/Cargo.toml --workspace \
  --target-dir "$DECKHAND_CACHE/target-wasm-host" 2>&1

log "workspace: doc tests and clippy"
cargo test --locked --workspace --doc 2>&1
cargo clippy --locked --workspace --all-targets -- -D warnings 2>&1

# The test runner goes last: its summary closes the run.
log "workspace: tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --workspace --profile ci --no-tests=fail "$@"
else
  log "cargo-nextest not found; using cargo test"
  cargo test --locked --workspace "$@"
fi
log "all tests passed in $((SECONDS - started))s"
