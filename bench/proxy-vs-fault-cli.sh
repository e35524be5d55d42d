#!/usr/bin/env bash
# firedrill's proxy vs the fault-cli proxy (crates.io) vs direct loopback, in one run, all on
# 127.0.0.1: added-latency accuracy of 100ms (p50/p99), pass-through µs per 64 B round trip,
# and one-way throughput of 1 GiB. Prints one Markdown table.
#
# Usage: bench/proxy-vs-fault-cli.sh [latency_round_trips=1000] [throughput_mib=1024]
# fault-cli is installed once into target/bench-tools (not into ~/.cargo). Timing figures
# depend on machine load: run it on an otherwise idle machine and note `uptime` beside them.
set -euo pipefail
cd "$(dirname "$0")/.."

tools="$PWD/target/bench-tools"
fault="$tools/bin/fault"
if [ ! -x "$fault" ]; then
    echo "installing fault-cli into $tools (once; takes a few minutes)" >&2
    cargo install fault-cli --locked --root "$tools" --target-dir "$tools/build"
fi
# The binary in its own invocation: built with the example it would link dev-only features.
cargo build --release --quiet --example proxy_compare
cargo build --release --quiet --bin firedrill
echo "fault-cli: $("$fault" --version 2>/dev/null || echo unknown); load: $(uptime)" >&2
exec target/release/examples/proxy_compare target/release/firedrill "$fault" "$@"
