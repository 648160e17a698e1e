#!/usr/bin/env bash
# Runs the web UI browser test: installs what it needs (Debian's chromium, the npm
# packages pinned in package-lock.json), builds the server unless QRUSTY_BIN names one,
# and exits non-zero when any step of the test fails. Screenshots: tests/ui/screenshots/.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
chromium="${CHROMIUM:-/usr/bin/chromium}"

if [ ! -x "$chromium" ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
  else
    echo "tests/ui: $chromium is missing; install Debian's chromium package" >&2
    exit 1
  fi
fi

cd "$here"
npm ci --no-audit --no-fund --loglevel=error

if [ -z "${QRUSTY_BIN:-}" ]; then
  (cd "$root" && cargo build --bin qrusty)
  export QRUSTY_BIN="$root/target/debug/qrusty"
fi

node --test --test-reporter=spec ui.test.mjs
