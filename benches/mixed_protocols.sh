#!/usr/bin/env bash
# Mixed load (4 producers, 8 consumers, 10 s) over HTTP and over the WebSocket API, durable
# and volatile: one fresh server per run, 127.0.0.1 only, every run time-capped.
# Usage: benches/mixed_protocols.sh [BINARY]   (default target/release/qrusty; builds nothing;
# the load generator is the one ../shared/bench/bench.sh builds)
set -u
bin=${1:-target/release/qrusty}
# shellcheck source=benches/server.sh
. "$(dirname "$0")/server.sh"
port=${PORT:-6812}
for mode in wal memory; do
  for proto in http ws; do
    start_server "$bin" "$mode" "$port"
    timeout 60 "$lg" --addr "127.0.0.1:$port" --proto "$proto" --scenario mixed --queue mix \
      --create -p 4 -c 8 -d 10 --max-seconds 30 |
      python3 -c "import json, sys; d = json.load(sys.stdin); l = d['ack_lat_us']
print('mode=$mode proto=$proto publish/s', d['publish_per_s'], 'ack/s', d['ack_per_s'],
      'end backlog', d['end_backlog'], 'ack p50/p99 us', l['p50'], l['p99'],
      'errors', d['errors'])"
    stop_server
  done
done
