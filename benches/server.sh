# Sourced by the comparison scripts of benches/: one fresh server per run, on 127.0.0.1.
# shellcheck shell=bash

# start_server BINARY MODE PORT: a server on an empty temporary DATA_PATH, fsync always;
# returns once /health answers (at most 5 s). Sets `server` (its pid) and `server_dir`.
# QRUSTY_FSYNC in the environment replaces "always" (e.g. never, to see what the fsync costs).
start_server() {
  server_dir=$(mktemp -d)
  STORAGE_MODE=$2 QRUSTY_FSYNC=${QRUSTY_FSYNC:-always} DATA_PATH=$server_dir \
    BIND_ADDR=127.0.0.1:$3 RUST_LOG=warn "$1" &
  server=$!
  for _ in $(seq 50); do
    curl -sf "http://127.0.0.1:$3/health" >/dev/null && return
    sleep 0.1
  done
}

# stop_server: a graceful stop, then the data directory goes.
stop_server() {
  kill -INT "$server"
  wait "$server"
  rm -rf "$server_dir"
}

# The load generator that ../shared/bench/bench.sh builds.
# shellcheck disable=SC2034
lg=${BENCH_TARGET_DIR:-$HOME/.cache/qrusty-bench/target}/release/loadgen
