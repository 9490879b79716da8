#!/usr/bin/env bash
# Installs what the command center's browser test (crates/api/tests/gui.rs) needs,
# idempotently: Debian's Chromium (headless, driven over CDP), fonts so screenshots are
# legible, and playwright-core at the exact version pinned in crates/api/tests/gui/
# (package.json + package-lock.json) under $DECKHAND_CACHE/node. playwright-core is the
# driver alone: it downloads no browser of its own (this machine could not fetch one).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

apt_install chromium fonts-dejavu-core
# The machine's Node.js may come from elsewhere than Debian (its own npm inside); only a
# machine without one gets Debian's.
command -v npm >/dev/null || apt_install nodejs npm

node_dir="$DECKHAND_CACHE/node"
lock_dir="$REPO_ROOT/crates/api/tests/gui"
mkdir -p "$node_dir"

# npm ci wipes node_modules each time; skip it when the installed tree already matches
# the lock file we ship.
if cmp -s "$lock_dir/package-lock.json" "$node_dir/package-lock.json" \
  && [ -f "$node_dir/node_modules/playwright-core/package.json" ]; then
  log "playwright-core already installed in $node_dir"
  exit 0
fi

cp "$lock_dir/package.json" "$lock_dir/package-lock.json" "$node_dir/"
log "installing playwright-core into $node_dir"
# PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: the driver must never try to fetch a browser build.
(cd "$node_dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
