#!/usr/bin/env bash
# install-proxy.sh - the third-party Toxiproxy client the proxy's compatibility test drives
# (PyPI `toxiproxy-python`). Idempotent.
set -euo pipefail
if python3 -c 'import toxiproxy' >/dev/null 2>&1; then
  exit 0
fi
echo "install-proxy: installing toxiproxy-python" >&2
python3 -m pip install --quiet --disable-pip-version-check toxiproxy-python==0.1.1
