#!/usr/bin/env bash
# Runs deckhand's main job, `deckhand serve`, with the embedded defaults: the SQLite store
# in ./data, ./workspace as the sandbox root, the tools from tools-wasm/dist, the cluster
# from KUBECONFIG or the in-cluster config when there is one. Builds on first use what it
# needs (the wasm tools and the release binary). Arguments go to `deckhand serve`
# (e.g. --listen 0.0.0.0:8080); `deckhand serve --help` lists them.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

bash scripts/build-tools-wasm.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$DECKHAND_CACHE/target}"
log "building deckhand (release; the first build takes several minutes)"
cargo build --locked --release -p deckhand
exec "$CARGO_TARGET_DIR/release/deckhand" serve "$@"
