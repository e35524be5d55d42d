#!/usr/bin/env bash
# dist.sh - the binary to ship: `cargo build --profile dist` (fat LTO, one codegen unit), then
# its debug information split off into target/dist/firedrill.debug, the way distributions
# package it: the binary keeps its symbol table (a panic's backtrace names functions) and a
# GNU debuglink to the .debug file, which debuggers and backtraces read for file:line when it
# is installed beside the binary or under /usr/lib/debug.
#
#   scripts/dist.sh        # prints the sizes; the files are target/dist/firedrill{,.debug}
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --profile dist --bin firedrill
bin=target/dist/firedrill
dbg=$bin.debug
if readelf -S "$bin" | grep -q '\.debug_line'; then
    objcopy --only-keep-debug "$bin" "$dbg"
    objcopy --strip-debug --add-gnu-debuglink="$dbg" "$bin"
fi
size() { stat -c %s "$1" | awk '{ printf "%.1f MiB", $1 / 1048576 }'; }
echo "$bin: $(size "$bin") (debug information in $dbg: $(size "$dbg"))"
