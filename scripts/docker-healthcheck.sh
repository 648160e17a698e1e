#!/usr/bin/env bash
# Container health check: GET /health on the port of BIND_ADDR, through bash's /dev/tcp so
# that the slim runtime image needs no curl. Exit 0 only on a 200 reply whose body is OK.
#
# Requirements: SYS-0019
set -euo pipefail

port="${BIND_ADDR:-0.0.0.0:6784}"
port="${port##*:}"
timeout="${HEALTHCHECK_TIMEOUT:-3}"

# shellcheck disable=SC2016 # $1 is expanded by the inner bash, which gets the port.
reply="$(timeout "$timeout" bash -c '
  exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
  printf "GET /health HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n" >&3
  cat <&3
' _ "$port" 2>/dev/null)" || exit 1

status="$(head -n 1 <<<"$reply" | tr -d '\r')"
body="$(tail -n 1 <<<"$reply" | tr -d '\r')"
[[ "$status" == HTTP/1.?" 200"* && "$body" == "OK" ]]
