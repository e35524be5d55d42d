#!/usr/bin/env bash
# install-schema.sh - the independent validator tests/schema.rs holds the JSON Schema to
# (`firedrill schema`): Python's jsonschema (draft 7) and PyYAML, from Debian's packages
# (python3-jsonschema, python3-yaml). Idempotent: installs only what is missing, and runs
# `apt-get update` only then. Needs root (or sudo).
set -euo pipefail

if python3 -c 'import yaml; from jsonschema import Draft7Validator' >/dev/null 2>&1; then
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-schema: installing python3-jsonschema python3-yaml" >&2
export DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends python3-jsonschema python3-yaml >/dev/null
python3 -c 'import yaml; from jsonschema import Draft7Validator' \
  || { echo "install-schema: jsonschema or PyYAML missing after install" >&2; exit 1; }
