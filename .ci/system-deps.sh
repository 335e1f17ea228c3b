#!/usr/bin/env bash
# System packages: Node.js (labextension build), bubblewrap (the kernel jail), and for the test suite
# Chromium (browser tests) and PostgreSQL server binaries (store tests start a private cluster).
#   system-deps.sh        all of them, required (CI, `make test`)
#   system-deps.sh lab    Node.js required; bubblewrap when it can be had (`make lab`: without it the
#                         demo runs kernels unjailed and says so)
#   system-deps.sh node   Node.js only
# Installs the missing ones with apt when run as root; otherwise says what to install (and fails for
# a required one).
set -euo pipefail

wanted="${1:-all}"
missing=()
optional=()
command -v node >/dev/null 2>&1 || missing+=(nodejs npm)
if [ "$wanted" = "all" ]; then
  command -v chromium >/dev/null 2>&1 || [ -x "${GOVERNED_TEST_CHROMIUM:-/usr/bin/chromium}" ] || missing+=(chromium)
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null 2>&1 || missing+=(postgresql)
  command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
elif [ "$wanted" = "lab" ]; then
  command -v bwrap >/dev/null 2>&1 || optional+=(bubblewrap)
fi

if [ ${#missing[@]} -eq 0 ] && [ ${#optional[@]} -eq 0 ]; then
  exit 0
fi
can_install=0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  can_install=1
fi
if [ ${#missing[@]} -gt 0 ] && [ $can_install -eq 0 ]; then
  echo "system-deps: missing ${missing[*]}: install them (Debian/Ubuntu: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
if [ $can_install -eq 0 ]; then
  echo "system-deps: note: bubblewrap is not installed, so the demo's kernels run without the jail" \
    "(Debian/Ubuntu: sudo apt-get install bubblewrap)"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
if [ ${#missing[@]} -gt 0 ]; then
  echo "system-deps: installing ${missing[*]} from Debian"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ ${#optional[@]} -gt 0 ]; then
  echo "system-deps: installing ${optional[*]} from Debian (the kernel jail)"
  apt-get install -y -qq --no-install-recommends "${optional[@]}" >/dev/null \
    || echo "system-deps: note: bubblewrap could not be installed; the demo's kernels run without the jail"
fi
# The package's own cluster is not used (tests start private ones); keep it from holding port 5432.
if command -v pg_lsclusters >/dev/null 2>&1; then
  pg_lsclusters -h 2>/dev/null | awk '$4 == "online" {print $1, $2}' | while read -r version cluster; do
    pg_ctlcluster "$version" "$cluster" stop || true
  done
fi
