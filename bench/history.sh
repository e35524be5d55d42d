#!/usr/bin/env bash
# How long `firedrill report` takes over 10,000 run records (the goal: under a second in release).
#   bench/history.sh [N]            N records (default 10000), release binary (built if missing)
#   FIREDRILL=target/debug/firedrill bench/history.sh    time another build
# Makes one real record with the quickstart drill (embedded simulated cluster, loopback only),
# clones it N times across 25 drills × 2 environments with varied times and TTRs, then times
# three cold-ish runs of `firedrill report`.
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-10000}"
bin="${FIREDRILL:-target/release/firedrill}"
if [ ! -x "$bin" ]; then
  cargo build --release --bin firedrill
fi
# BENCH_DIR keeps the generated records there (and reuses them on the next run).
work="${BENCH_DIR:-$(mktemp -d)}"
[ -n "${BENCH_DIR:-}" ] || trap 'rm -rf "$work"' EXIT
if [ ! -d "$work/reports" ]; then

"$bin" run experiments/quickstart.yaml --report-dir "$work/seed" --seed 1 >/dev/null 2>&1 || true
template="$(find "$work/seed" -name '*.json' | head -1)"
[ -n "$template" ] || { echo "no template record was written" >&2; exit 1; }

python3 - "$template" "$work/reports" "$n" <<'PY'
import copy, datetime, json, os, random, sys
template, root, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
base = json.load(open(template))
rng = random.Random(1)
start = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
for i in range(n):
    r = copy.deepcopy(base)
    exp, env = f"drill-{i % 25:02d}", ("staging", "production")[(i // 25) % 2]
    r["experiment"]["name"], r["environment"] = exp, env
    r["run_id"] = f"bench-{i:06d}"
    r["started_at"] = (start + datetime.timedelta(hours=i)).isoformat().replace("+00:00", "Z")
    for t in r["trials"]:
        if t.get("verdict") and t["verdict"].get("ttr"):
            t["verdict"]["ttr"]["estimate_s"] = round(rng.uniform(0.8, 1.6) + i * 1e-5, 6)
    d = os.path.join(root, exp, env)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, r["run_id"] + ".json"), "w") as f:
        json.dump(r, f, indent=2)
PY
fi
echo "records: $(find "$work/reports" -name '*.json' | wc -l) ($(du -sh "$work/reports" | cut -f1)), binary: $bin" >&2
for i in 1 2 3; do
  s=$(date +%s.%N)
  "$bin" report "$work/reports" >/dev/null
  e=$(date +%s.%N)
  echo "firedrill report: $(python3 -c "print(f'{$e - $s:.3f}')")s" >&2
done
