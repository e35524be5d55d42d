#!/usr/bin/env bash
# Installs what the report tests need from Debian's packages:
#   chromium — opens the HTML report headless and takes a screenshot (tests/reports.rs)
#   tmux     — runs the game-day live view in a pty with scripted keys (tests/gameday.rs)
# Idempotent: does nothing when both are present; runs apt-get update only to install.
set -euo pipefail

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v tmux >/dev/null 2>&1 || need+=(tmux)
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing: ${need[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
