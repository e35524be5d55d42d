#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain, from Debian's packages:
#   kubectl (kubernetes-client) — the real kubectl is tested against `firedrill sim`
#   python3                    — the supervised demo service of the truth test
# and every scripts/install-*.sh of other capabilities (databases, browsers, …).
# Idempotent: does nothing when everything is present. Needs root (or sudo).
set -euo pipefail

need=()
command -v kubectl >/dev/null 2>&1 || need+=(kubernetes-client)
command -v python3 >/dev/null 2>&1 || need+=(python3)
# tests/http_tls.rs: a private CA, certificates and a TLS server (`openssl s_server`).
command -v openssl >/dev/null 2>&1 || need+=(openssl)

here="$(cd "$(dirname "$0")" && pwd)"
for extra in "$here"/install-*.sh; do
  [ "$(basename "$extra")" = "install-deps.sh" ] || bash "$extra"
done

[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing: ${need[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
