#!/usr/bin/env bash
# Durable against volatile publish throughput and latency at 1, 16 and 64 clients: one fresh
# server per (clients, mode), the modes interleaved, 127.0.0.1 only, every run time-capped.
# Usage: benches/publish_clients.sh [BINARY]   (default target/release/qrusty; builds nothing;
# the load generator is the one ../shared/bench/bench.sh builds)
set -u
bin=${1:-target/release/qrusty}
lg=${BENCH_TARGET_DIR:-$HOME/.cache/qrusty-bench/target}/release/loadgen
port=${PORT:-6811}
for clients in 1 16 64; do
  for mode in wal memory; do
    dir=$(mktemp -d)
    STORAGE_MODE=$mode QRUSTY_FSYNC=always DATA_PATH=$dir BIND_ADDR=127.0.0.1:$port \
      RUST_LOG=warn "$bin" &
    server=$!
    for _ in $(seq 50); do
      curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
      sleep 0.1
    done
    count=$((clients == 1 ? 5000 : 50000))
    timeout 60 "$lg" --addr "127.0.0.1:$port" --scenario publish --queue pub --create \
      -c "$clients" -n "$count" --max-seconds 20 |
      python3 -c "import json, sys; d = json.load(sys.stdin); l = d['lat_us']
print('clients=$clients mode=$mode', d['ops_per_s'], 'msg/s, p50', l['p50'], 'us, p99',
      l['p99'], 'us, errors', d['errors'])"
    kill -INT "$server"
    wait "$server"
    rm -rf "$dir"
  done
done
