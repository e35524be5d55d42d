#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 300), seeded with the malformed corpus.
# cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP=1 lets the stable toolchain use them.
#   fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-300}"
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(experiment duration selector)
export RUSTC_BOOTSTRAP=1

# Seeds: whole files for the loader, the values of the relevant keys for the small parsers.
mkdir -p corpus/experiment corpus/duration corpus/selector
values() { # KEY-REGEX DIR
  grep -rhoE "^[ -]*($1): .*" ../tests/fixtures | sed -E 's/^[ -]*[a-z-]+: //; s/^"(.*)"$/\1/' |
    sort -u | head -2000 | while IFS= read -r v; do
      printf '%s' "$v" > "$2/seed-$(printf '%s' "$v" | sha1sum | cut -c1-16)"
    done
}
values 'every|every-during|timeout|max-latency|grace-period|objective|stable-for|failing-for|window|cooldown|within|start-delay|ready-delay' corpus/duration
values 'selector|schedule' corpus/selector

for t in "${targets[@]}"; do
  case "$t" in
    experiment) seeds=(../tests/fixtures/malformed ../tests/fixtures/experiments) ;;
    *) seeds=() ;;
  esac
  echo "== $t for ${secs}s"
  cargo fuzz run -O "$t" "corpus/$t" "${seeds[@]}" -- \
    -max_total_time="$secs" -max_len=131072 -timeout=10 -rss_limit_mb=4096 -print_final_stats=1
done
