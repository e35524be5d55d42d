#!/usr/bin/env bash
# Benchmark of the database drills on a real 3-node Patroni + PostgreSQL cluster on 127.0.0.1
# (started by the tests' own code; scripts/install-db.sh installs the packages):
#   the postgres writer's sustained rate and lateness at 10ms and 1ms intervals, and the cost of
#   a kill-primary and a switchover drill end to end (wall, CPU, peak RSS, Patroni REST calls).
# Usage: bench/db.sh [writer_seconds=20]
# Run as root or as a user that may run PostgreSQL; timings depend on machine load.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
exec cargo bench --quiet --bench db -- "${1:-20}"
