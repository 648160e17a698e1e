#!/usr/bin/env bash
# Durable against volatile publish throughput and latency at 1, 16 and 64 clients: one fresh
# server per (clients, mode), the modes interleaved, 127.0.0.1 only, every run time-capped.
# Usage: benches/publish_clients.sh [BINARY]   (default target/release/qrusty; builds nothing;
# the load generator is the one ../shared/bench/bench.sh builds)
set -u
bin=${1:-target/release/qrusty}
# shellcheck source=benches/server.sh
. "$(dirname "$0")/server.sh"
port=${PORT:-6811}
for clients in 1 16 64; do
  for mode in wal memory; do
    start_server "$bin" "$mode" "$port"
    count=$((clients == 1 ? 5000 : 50000))
    timeout 60 "$lg" --addr "127.0.0.1:$port" --scenario publish --queue pub --create \
      -c "$clients" -n "$count" --max-seconds 20 |
      python3 -c "import json, sys; d = json.load(sys.stdin); l = d['lat_us']
print('clients=$clients mode=$mode', d['ops_per_s'], 'msg/s, p50', l['p50'], 'us, p99',
      l['p99'], 'us, errors', d['errors'])"
    stop_server
  done
done
