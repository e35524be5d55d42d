#!/usr/bin/env bash
# The test command (README): install what the tests need, then run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo test --locked
