#!/usr/bin/env bash
# What can be checked of the container image without a Docker engine: the binary, laid out
# as in the image, runs as an unprivileged user on a data directory that user owns, writes
# only files that user owns, answers the image's health check script, and stops with
# status 0 on SIGTERM; on a data directory it may not write, it refuses to start.
#
# Usage: scripts/docker_check.sh BINARY     (run as root to switch to the user `nobody`;
#                                            as any other user, that user is the one checked)
#
# Verifies: SYS-0017, SYS-0019
set -euo pipefail

binary="${1:?usage: $0 BINARY}"
here="$(cd "$(dirname "$0")" && pwd)"
[ -x "$binary" ] || { echo "no executable at $binary: build it first" >&2; exit 2; }

passed=0
failed=0
expect() { # expect NAME DETAIL-ON-FAILURE COMMAND [ARG...]
  local name="$1" detail="$2"
  shift 2
  if "$@"; then
    passed=$((passed + 1)); echo "PASS $name"
  else
    failed=$((failed + 1)); echo "FAIL $name${detail:+: $detail}"
  fi
}
not() { ! "$@"; }

if [ "$(id -u)" -eq 0 ]; then
  user=nobody
  group="$(id -gn nobody)"
  as_user=(setpriv --reuid="$user" --regid="$group" --clear-groups --)
else
  user="$(id -un)"
  group="$(id -gn)"
  as_user=()
  echo "not root: checking as $user, who is unprivileged already"
fi

root="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$root"
}
trap cleanup EXIT

# The image's layout: binary and health check in a root-owned bin directory, the volume
# owned by the service user.
chmod 0755 "$root"
mkdir -p "$root/bin" "$root/data" "$root/readonly"
install -m 0755 "$binary" "$root/bin/qrusty"
install -m 0755 "$here/docker-healthcheck.sh" "$root/bin/qrusty-healthcheck"
chown "$user:$group" "$root/data"
chmod 0700 "$root/data"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')"
export BIND_ADDR="127.0.0.1:$port" STORAGE_MODE=wal RUST_LOG=info
unset QRUSTY_API_TOKEN

# From here on a failing command is a failed check, not the end of the script.
set +e

healthy_within() { # healthy_within SECONDS
  local deadline=$((SECONDS + $1))
  while [ "$SECONDS" -lt "$deadline" ]; do
    "$root/bin/qrusty-healthcheck" && return 0
    kill -0 "$server_pid" 2>/dev/null || return 1
    sleep 0.2
  done
  return 1
}

# 1. Starts and serves as the unprivileged user.
(cd "$root/data" && DATA_PATH="$root/data" HOME="$root/data" \
  exec "${as_user[@]}" "$root/bin/qrusty" >"$root/server.log" 2>&1 </dev/null) &
server_pid=$!
expect "health check passes for the server run as $user" "see the server log below" \
  healthy_within 30
owner="$(ps -o user= -p "$server_pid" 2>/dev/null | tr -d ' ' || true)"
expect "server process runs as $user" "it runs as '$owner'" test "$owner" = "$user"

# 2. A publish is accepted (and, checked after the stop, lands in files the user owns).
status="$(python3 - "$port" <<'PY'
import json, sys, urllib.request
req = urllib.request.Request(
    f"http://127.0.0.1:{sys.argv[1]}/publish",
    data=json.dumps({"queue": "docker-check", "priority": 1, "payload": "x"}).encode(),
    headers={"Content-Type": "application/json"})
try:
    print(urllib.request.urlopen(req, timeout=10).status)
except Exception as err:
    print(err)
PY
)"
expect "publish as $user answers 200" "got: $status" test "$status" = "200"

# 3. SIGTERM stops it with status 0, after which the health check fails.
kill -TERM "$server_pid" 2>/dev/null
code=0
for _ in $(seq 1 100); do
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.2
done
if kill -0 "$server_pid" 2>/dev/null; then
  code=timeout
else
  wait "$server_pid" || code=$?
fi
server_pid=""
expect "SIGTERM exits 0" "exit status $code" test "$code" = "0"
expect "health check fails once the server is gone" "" not "$root/bin/qrusty-healthcheck"
written="$(find "$root/data" -mindepth 1 -print -quit)"
expect "the log is written under DATA_PATH" "the data directory is empty" test -n "$written"
foreign="$(find "$root/data" ! -user "$user" -print)"
expect "every file under DATA_PATH belongs to $user" "$foreign" test -z "$foreign"

# 4. A data directory the user may not write: a clear failure, not a half-started server.
if [ "$(id -u)" -eq 0 ]; then
  chmod 0755 "$root/readonly"
  code=0
  DATA_PATH="$root/readonly/data" timeout 20 "${as_user[@]}" "$root/bin/qrusty" \
    >"$root/readonly.log" 2>&1 </dev/null || code=$?
  refused=no
  if [ "$code" != "0" ] && [ "$code" != "124" ]; then refused=yes; fi
  expect "refuses to start on a data directory it cannot write" \
    "exit status $code: $(tail -n 5 "$root/readonly.log")" test "$refused" = yes
  expect "the startup error names the data directory" "$(tail -n 5 "$root/readonly.log")" \
    grep -q "$root/readonly" "$root/readonly.log"
fi

[ "$failed" -eq 0 ] || { echo "--- server log ---"; tail -n 30 "$root/server.log" || true; }
echo "docker-check: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
