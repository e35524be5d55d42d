#!/usr/bin/env bash
# Installs what the report tests need from Debian's packages:
#   chromium — opens the HTML report headless and takes a screenshot (tests/reports.rs)
# Idempotent: does nothing when chromium is present; runs apt-get update only to install.
set -euo pipefail

command -v chromium >/dev/null 2>&1 && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing: chromium" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
