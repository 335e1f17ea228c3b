#!/usr/bin/env bash
# A Python that every OS user can run, for the JupyterHub profile (make hub, tests/hub): the Hub
# starts the governance service and each person's server as their own OS user, and those users
# cannot reach a Python under /root (pyenv). Debian's python3 in /opt/governed-hub, with this
# repository installed editable (the repository must be readable by all: it is, 0755).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
# One venv per checkout (an editable install points at its repository).
venv="${GOVERNED_HUB_VENV:-/opt/governed-hub/$(printf %s "$repo" | sha1sum | cut -c1-12)/venv}"
if ! command -v /usr/bin/python3 >/dev/null || ! /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null; then
  apt-get install -y -q python3 python3-venv python3-dev >/dev/null
fi
if [ ! -x "$venv/bin/python" ]; then
  /usr/bin/python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --upgrade pip 2> >(grep -v "^WARNING: Location" >&2) >/dev/null
"$venv/bin/pip" install -q -e "$repo[hub]" 2> >(grep -v "^WARNING: Location" >&2)
chmod a+rx /opt/governed-hub
chmod -R a+rX "$(dirname "$venv")"
if ! command -v configurable-http-proxy >/dev/null; then
  npm install -g --silent configurable-http-proxy >/dev/null
fi
echo "$venv/bin/python"
