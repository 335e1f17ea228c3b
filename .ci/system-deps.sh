#!/usr/bin/env bash
# System packages: Node.js (labextension build), and for the test suite Chromium (browser tests) and
# PostgreSQL server binaries (store tests start a private cluster). `system-deps.sh node` checks Node.js
# only (for `make lab`); no argument checks all three. Installs the missing ones with apt when run as
# root; otherwise says what to install and fails.
set -euo pipefail

wanted="${1:-all}"
missing=()
command -v node >/dev/null 2>&1 || missing+=(nodejs npm)
if [ "$wanted" = "all" ]; then
  command -v chromium >/dev/null 2>&1 || [ -x "${GOVERNED_TEST_CHROMIUM:-/usr/bin/chromium}" ] || missing+=(chromium)
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null 2>&1 || missing+=(postgresql)
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: missing ${missing[*]}: install them (Debian/Ubuntu: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "system-deps: installing ${missing[*]} from Debian"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The package's own cluster is not used (tests start private ones); keep it from holding port 5432.
if command -v pg_lsclusters >/dev/null 2>&1; then
  pg_lsclusters -h 2>/dev/null | awk '$4 == "online" {print $1, $2}' | while read -r version cluster; do
    pg_ctlcluster "$version" "$cluster" stop || true
  done
fi
