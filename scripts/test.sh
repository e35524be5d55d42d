#!/usr/bin/env bash
# The test command (README): install what the tests need, then run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# One build from scratch (CI, a fresh machine): incremental state would only add ~1 GB of disk.
# --no-fail-fast: a failing suite does not hide the results of the suites after it.
CARGO_INCREMENTAL=0 exec cargo test --locked --no-fail-fast
