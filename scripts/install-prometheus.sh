#!/usr/bin/env bash
# install-prometheus.sh - the Prometheus server the `prometheus` probe is tested against
# (Debian's `prometheus` package). The tests start their own server on 127.0.0.1 with a free
# port, a temp data dir and a generated config; the packaged service is not needed, so it is
# stopped and disabled where systemd runs, and pinned to loopback should anyone enable it.
#
# Idempotent: installs only when the binary is missing, and runs `apt-get update` only then.
# Must run as root (or with sudo).
set -euo pipefail

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

if ! command -v prometheus >/dev/null 2>&1; then
  echo "install-prometheus: installing prometheus" >&2
  export DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes
  $sudo apt-get update -qq
  # No recommends: they pull in node-exporter, another service listening on all addresses.
  $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

# The package's default listens on every address (:9090). Keep it on loopback if it is ever
# started, and do not leave it running: nothing here needs it.
defaults=/etc/default/prometheus
if [ -f "$defaults" ] && grep -qx 'ARGS=""' "$defaults"; then
  $sudo sed -i 's|^ARGS=""$|ARGS="--web.listen-address=127.0.0.1:9090"|' "$defaults"
fi
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  $sudo systemctl disable --now prometheus.service >/dev/null 2>&1 || true
fi

command -v prometheus >/dev/null 2>&1 \
  || { echo "install-prometheus: prometheus missing after install" >&2; exit 1; }
