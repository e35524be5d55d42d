#!/usr/bin/env bash
# install-db.sh - install what firedrill's database drills and tests need, from Debian packages:
# PostgreSQL, Patroni, a single-member etcd as Patroni's DCS, Patroni's etcd client, and
# pgBackRest for restore drills (tests/common/pgbackrest.rs).
#
# Idempotent: installs only what is missing, and runs `apt-get update` only then.
# Must run as root (CI machines and developer machines run as root).
# Packaged etcd/patroni services and pgBackRest's /etc config are not needed: the tests start
# their own daemons on 127.0.0.1 with free ports, under a temp dir, as the `postgres` user, and
# give pgBackRest a config file of their own.
set -euo pipefail

PACKAGES=(postgresql patroni etcd-server python3-etcd python3-psycopg2 pgbackrest)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-db: all packages present" >&2
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  echo "install-db: missing packages (${missing[*]}); run this script as root" >&2
  exit 1
fi

echo "install-db: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

for bin in /usr/bin/patroni /usr/bin/etcd /usr/bin/pgbackrest; do
  [ -x "$bin" ] || { echo "install-db: $bin missing after install" >&2; exit 1; }
done
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 \
  || { echo "install-db: no PostgreSQL server binary after install" >&2; exit 1; }
echo "install-db: done" >&2
