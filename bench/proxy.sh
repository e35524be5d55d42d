#!/usr/bin/env bash
# Benchmark of the built-in proxy, everything on 127.0.0.1:
#   added-latency accuracy (p50/p99) of a 100ms latency toxic, pass-through µs per round trip
#   against direct loopback, and 1 GiB throughput through the proxy against direct loopback.
# Usage: bench/proxy.sh [latency_round_trips=500] [throughput_mib=1024]
# Timing figures depend on machine load: run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release --quiet --example proxy_bench -- "$@"
