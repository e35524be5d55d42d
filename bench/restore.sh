#!/usr/bin/env bash
# Restore drill overhead: a ~1 GiB pgBackRest backup restored by `firedrill run` (the `restore`
# fault) against the same restore done by hand, on 127.0.0.1, alternating the two:
#   (a) by hand: `pgbackrest restore --type=default --archive-mode=off` into a fresh directory,
#       `postgres` started with the settings firedrill's scratch instance gets
#       (src/fault/restore.rs `scratch()`), `psql` every 20ms until `pg_is_in_recovery()` is
#       false, the validation query, immediate stop (SIGQUIT, as firedrill's teardown), rm -rf;
#   (b) `firedrill run` of a one-fault drill doing the same (pgbackrest provider, latest, one
#       validation), its peak RSS sampled from /proc/<pid>/status (VmHWM, every 50ms) and the
#       restore RTO and phases read from its report.
# Each run's wall is end to end on a monotonic clock. Prints a Markdown table with the machine
# and the load average before and after.
#
# Usage: bench/restore.sh [--runs 3] [--scale 70] [--keep]
#   --runs N    pairs of restores (default 3); the order is a b, b a, a b, ... so that drift
#               hits both
#   --scale S   pgbench scale of the database (70 ≈ 1 GiB)
#   --keep      leave the temp directory (data, repository, logs, reports) for inspection
# Environment: FIREDRILL_BIN (default: cargo build --release --bin firedrill),
#   COMPRESS_TYPE (pgBackRest compress-type of the repository, default lz4).
# Run as root (PostgreSQL runs as `postgres` via setpriv) with PostgreSQL and pgBackRest
# installed (scripts/install-db.sh). Timings depend on machine load.
set -euo pipefail

# The by-hand restore, run by the timer as its own process: bench/restore.sh __by_hand ...
if [ "${1:-}" = __by_hand ]; then
    shift
    dir=$1 port=$2 conf=$3 pgbin=$4 marks=$5
    data=$dir/data
    asp() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
    # Wall-clock marks ($EPOCHREALTIME: no fork), turned into offsets from `start` afterwards.
    mark() { echo "$1 $EPOCHREALTIME" >>"$marks"; }
    mark start
    asp mkdir -m 700 "$dir" "$data"
    asp pgbackrest --config="$conf" --stanza=main --pg1-path="$data" --archive-mode=off \
        --log-level-console=off --log-level-stderr=error --type=default restore
    mark files-restored
    printf '# scratch instance: the socket directory is the postgres user'"'"'s alone\nlocal all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n' >"$dir/pg_hba.conf"
    : >"$dir/pg_ident.conf"
    chown postgres:postgres "$dir/pg_hba.conf" "$dir/pg_ident.conf"
    # Not through the asp function: `&` on a function forks a subshell, and $! would be the
    # subshell (which ignores SIGQUIT) instead of setpriv, which execs the postmaster.
    setpriv --reuid=postgres --regid=postgres --init-groups "$pgbin/postgres" -D "$data" \
        -c port="$port" -c listen_addresses=127.0.0.1 -c unix_socket_directories="$dir" \
        -c hba_file="$dir/pg_hba.conf" -c ident_file="$dir/pg_ident.conf" \
        -c archive_mode=off -c hot_standby=on -c ssl=off -c logging_collector=off \
        -c cluster_name=firedrill-restore -c primary_conninfo= -c primary_slot_name= \
        -c synchronous_standby_names= -c recovery_target_action=promote \
        </dev/null >"$dir/postgres.log" 2>&1 &
    pm=$!
    q() { psql -X -A -t -q -h "$dir" -p "$port" -U postgres -d postgres -c "$1" 2>/dev/null; }
    until [ "$(q 'select pg_is_in_recovery()')" = f ]; do
        kill -0 "$pm" 2>/dev/null || { echo "postgres stopped during recovery" >&2; tail -5 "$dir/postgres.log" >&2; exit 1; }
        sleep 0.02
    done
    mark accepting
    n=$(q 'select count(*) from pgbench_accounts')
    [ "${n:-0}" -ge 1 ] || { echo "validation failed: count=$n" >&2; exit 1; }
    mark validated
    kill -QUIT "$pm"
    wait "$pm" || true
    rm -rf "$dir"
    mark torn-down
    exit 0
fi

runs=3 scale=70 keep=0
while [ $# -gt 0 ]; do
    case $1 in
        --runs) runs=$2; shift 2 ;;
        --scale) scale=$2; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "run as root: PostgreSQL runs as postgres through setpriv" >&2; exit 2; }
cd "$(dirname "$0")/.."
self=$PWD/bench/restore.sh
compress=${COMPRESS_TYPE:-lz4}
say() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }
asp() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }

pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
for need in "$pgbin/postgres" "$pgbin/initdb" "$pgbin/pg_ctl" /usr/bin/pgbackrest /usr/bin/pgbench /usr/bin/psql; do
    [ -x "$need" ] || { echo "$need is missing: run scripts/install-db.sh as root" >&2; exit 2; }
done
if [ -n "${FIREDRILL_BIN:-}" ]; then
    fd=$FIREDRILL_BIN
else
    say "cargo build --release --bin firedrill"
    cargo build --release --quiet --bin firedrill
    fd=$PWD/target/release/firedrill
fi

# Everything lives under one temp directory; the trap stops what was started and removes it.
tmp=$(mktemp -d /tmp/firedrill-restore-bench.XXXXXX)
chmod 755 "$tmp"
src_started=0
cleanup() {
    set +e
    if [ "$src_started" = 1 ]; then
        asp "$pgbin/pg_ctl" -D "$tmp/src" -m immediate -w -t 30 stop >/dev/null 2>&1
    fi
    # Whatever is left that this run started: a firedrill, a scratch postgres, a pgbackrest,
    # found by the temp directory on its command line or as its working directory.
    for _ in 1 2 3 4 5; do
        left=()
        for p in /proc/[0-9]*; do
            pid=${p#/proc/}
            [ "$pid" = $$ ] && continue
            if tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF "$tmp" \
                || [[ "$(readlink "$p/cwd" 2>/dev/null)" == "$tmp"* ]]; then
                left+=("$pid")
            fi
        done
        [ ${#left[@]} = 0 ] && break
        kill -KILL "${left[@]}" 2>/dev/null
        sleep 0.2
    done
    if [ "$keep" = 1 ]; then say "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A copy of the binary: others may rebuild target/release/firedrill while the runs go on.
cp "$fd" "$tmp/firedrill"
fd_version="$("$fd" --version 2>/dev/null | awk '{print $NF}') (tree $(git describe --always --dirty 2>/dev/null || echo unknown))"
fd=$tmp/firedrill
for sub in src repo log lock spool run scratch; do mkdir -p "$tmp/$sub"; done
mkdir -p "$tmp/reports" "$tmp/state" "$tmp/out"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$tmp/pgbackrest.conf" <<EOF
[global]
repo1-path=$tmp/repo
repo1-retention-full=2
compress-type=$compress
process-max=1
start-fast=y
log-path=$tmp/log
log-level-file=info
lock-path=$tmp/lock
spool-path=$tmp/spool

[main]
pg1-path=$tmp/src
pg1-port=$port
pg1-socket-path=$tmp/run
pg1-user=postgres
EOF
chown -R postgres:postgres "$tmp/src" "$tmp/repo" "$tmp/log" "$tmp/lock" "$tmp/spool" "$tmp/run" \
    "$tmp/scratch" "$tmp/pgbackrest.conf"
chmod 700 "$tmp/src" "$tmp/repo"

say "initdb, archiving through pgbackrest ($compress), port $port, under $tmp"
asp "$pgbin/initdb" -D "$tmp/src" -U postgres --auth=trust --no-sync -E UTF8 --locale=C >"$tmp/out/initdb.log"
cat >>"$tmp/src/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$tmp/run'
wal_level = replica
archive_mode = on
archive_command = '/usr/bin/pgbackrest --config=$tmp/pgbackrest.conf --stanza=main archive-push %p'
archive_timeout = 0
max_wal_size = 2GB
EOF
src_started=1
asp "$pgbin/pg_ctl" -D "$tmp/src" -l "$tmp/log/src-postgres.log" -w -t 60 start >/dev/null
src_psql() { psql -X -A -t -q -h "$tmp/run" -p "$port" -U postgres -d postgres -c "$1"; }
asp pgbackrest --config="$tmp/pgbackrest.conf" --stanza=main stanza-create
asp pgbackrest --config="$tmp/pgbackrest.conf" --stanza=main check
say "pgbench -i -s $scale"
t=$EPOCHSECONDS
pgbench -i -q -s "$scale" -h "$tmp/run" -p "$port" -U postgres postgres >"$tmp/out/pgbench.log" 2>&1
db_bytes=$(src_psql "select pg_database_size('postgres')")
db_size=$(src_psql "select pg_size_pretty(pg_database_size('postgres'))")
say "loaded in $((EPOCHSECONDS - t))s: database postgres is $db_size ($db_bytes bytes)"
say "full backup"
t=$EPOCHSECONDS
asp pgbackrest --config="$tmp/pgbackrest.conf" --stanza=main --type=full backup
say "backup took $((EPOCHSECONDS - t))s"
seg=$(src_psql "select pg_walfile_name(pg_switch_wal())")
for _ in $(seq 300); do
    # A backup history file (<segment>.<offset>.backup) counts as its segment.
    last=$(src_psql "select left(coalesce(last_archived_wal, ''), 24) from pg_stat_archiver")
    [[ ${#last} = ${#seg} && ! "$last" < "$seg" ]] && break
    sleep 0.1
done
[[ ${#last} = ${#seg} && ! "$last" < "$seg" ]] || { echo "segment $seg not archived (last: $last)" >&2; exit 1; }
# The source is not needed any more: stopped, it adds no noise to the restores.
asp "$pgbin/pg_ctl" -D "$tmp/src" -m fast -w -t 60 stop >/dev/null
src_started=0
repo_size=$(du -sh "$tmp/repo" | cut -f1)
info=$(asp pgbackrest --config="$tmp/pgbackrest.conf" --stanza=main --output=json info)
say "WAL switched ($seg archived); repository $repo_size"

cat >"$tmp/drill.yaml" <<EOF
name: restore-bench
description: The newest pgBackRest backup of the bench database restored, validated and torn down.
faults:
  - restore:
      provider: { pgbackrest: { stanza: main, config: "$tmp/pgbackrest.conf" } }
      recovery-point: latest
      scratch: "$tmp/scratch"
      run-as: postgres
      validate:
        - { name: accounts, query: "select count(*) from pgbench_accounts", expect: { at-least: 1 } }
      timeout: 30m
recovery: { objective: 30m, timeout: 1h }
EOF

# The timer: runs argv, waits for it (wait4), and writes one JSON line: wall on the monotonic
# clock from just before the spawn to just after the reap, exit code, VmHWM of the process
# itself (sampled every 50ms by a thread: its children's memory is not in it) and wait4's
# ru_maxrss (the largest of the process and the descendants it reaped).
cat >"$tmp/timer.py" <<'EOF'
import json, os, subprocess, sys, threading, time
out, log, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
hwm = 0
done = threading.Event()
def sample(pid):
    global hwm
    while not done.is_set():
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        hwm = max(hwm, int(line.split()[1]))
        except OSError:
            pass
        done.wait(0.05)
with open(log, "wb") as lf:
    t0, t0_wall = time.monotonic(), time.time()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=lf, stderr=subprocess.STDOUT)
    th = threading.Thread(target=sample, args=(p.pid,), daemon=True)
    th.start()
    _, status, ru = os.wait4(p.pid, 0)
    t1 = time.monotonic()
    done.set()
    th.join()
    p.returncode = os.waitstatus_to_exitcode(status)
with open(out, "w") as f:
    json.dump({"wall_s": t1 - t0, "t0_wall": t0_wall, "rc": p.returncode, "hwm_kib": hwm, "maxrss_kib": ru.ru_maxrss}, f)
EOF

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u '+%Y-%m-%d %H:%M UTC')
say "load average before: $load_before; $runs pairs"
by_hand() {
    local i=$1 p
    p=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    say "run $i: by hand"
    python3 "$tmp/timer.py" "$tmp/out/hand-$i.json" "$tmp/out/hand-$i.log" \
        bash "$self" __by_hand "$tmp/scratch/by-hand-$i" "$p" "$tmp/pgbackrest.conf" "$pgbin" "$tmp/out/hand-$i.marks"
    grep -q '"rc": 0' "$tmp/out/hand-$i.json" || { cat "$tmp/out/hand-$i.log" >&2; exit 1; }
}
with_firedrill() {
    local i=$1
    say "run $i: firedrill"
    python3 "$tmp/timer.py" "$tmp/out/fd-$i.json" "$tmp/out/fd-$i.log" \
        env FIREDRILL_STATE_DIR="$tmp/state" "$fd" run --no-live --report-dir "$tmp/reports/run-$i" "$tmp/drill.yaml"
    grep -q '"rc": 0' "$tmp/out/fd-$i.json" || { cat "$tmp/out/fd-$i.log" >&2; exit 1; }
}
for i in $(seq "$runs"); do
    if [ $((i % 2)) = 1 ]; then by_hand "$i"; with_firedrill "$i"; else with_firedrill "$i"; by_hand "$i"; fi
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$tmp" "$runs" <<EOF
import datetime, glob, json, statistics, sys
tmp, runs = sys.argv[1], int(sys.argv[2])
def load(p):
    with open(p) as f:
        return json.load(f)
def marks(p):
    with open(p) as f:
        m = {k: float(v) for k, v in (l.split() for l in f)}
    return {k: v - m["start"] for k, v in m.items()}
def epoch(t):  # RFC 3339 with up to nanoseconds, UTC
    base, _, frac = t.rstrip("Z").partition(".")
    d = datetime.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return d.timestamp() + (float("0." + frac) if frac else 0.0)
def table(headers, rows):
    cells = [headers] + [[str(c) for c in r] for r in rows]
    w = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.ljust(x) for c, x in zip(r, w)) + " |"
    print(line(headers)); print("|" + "|".join("-" * (x + 2) for x in w) + "|")
    for r in cells[1:]: print(line(r))
def mid(p):
    return (p["lower_s"] + p["upper_s"]) / 2
s = lambda v: "%.2f s" % v
rows, hand, fd, rtos, outside, hwms, maxrss, parts = [], [], [], [], [], [], [], []
phase_rows = []
for i in range(1, runs + 1):
    h, f = load("%s/out/hand-%d.json" % (tmp, i)), load("%s/out/fd-%d.json" % (tmp, i))
    rep = load(glob.glob("%s/reports/run-%d/**/*.json" % (tmp, i), recursive=True)[0])
    r = rep["trials"][0]["restore"]
    rto = r["numbers"]["rto"]["estimate_s"]
    ph = {p["phase"]: mid(p) for p in r["phases"]}
    ev = rep["events"]
    at = lambda pred: next(e["at_s"] for e in ev if pred(e))
    run0 = epoch(rep["started_at"]) - f["t0_wall"]            # exec, load and check the file
    pre = epoch(r["started_at"]) - epoch(rep["started_at"])    # trial preflight + prepare (pgbackrest info)
    revert = at(lambda e: e["event"] == "phase" and e.get("phase") == "revert")
    reverted = at(lambda e: e["event"] == "fault-reverted")
    done = at(lambda e: e["event"] == "phase" and e.get("phase") == "done")
    observe = revert - pre - rto                               # validated -> verdict -> revert starts
    teardown = reverted - revert
    tail = f["wall_s"] - run0 - done                           # report written, process exit
    hand.append(h["wall_s"]); fd.append(f["wall_s"]); rtos.append(rto)
    outside.append(f["wall_s"] - rto); hwms.append(f["hwm_kib"]); maxrss.append(f["maxrss_kib"])
    parts.append((run0, pre, observe, teardown, tail))
    rows.append([i, "a, b" if i % 2 else "b, a", s(h["wall_s"]), s(f["wall_s"]),
                 "%+.2f s" % (f["wall_s"] - h["wall_s"]), s(rto), s(f["wall_s"] - rto),
                 "%.1f MiB" % (f["hwm_kib"] / 1024), "%.1f MiB" % (f["maxrss_kib"] / 1024)])
    m = marks("%s/out/hand-%d.marks" % (tmp, i))
    phase_rows.append([i, "(a) by hand", "—", "%.2f" % m["files-restored"], "—", "%.2f" % m["accepting"],
                       "%.2f" % m["validated"], "—", "%.2f" % (m["torn-down"] - m["validated"]), "—",
                       "%.2f" % h["wall_s"]])
    phase_rows.append([i, "(b) firedrill", "%.3f + %.3f" % (run0, pre), "%.2f" % ph["files-restored"],
                       "%.2f" % ph["consistent"], "%.2f" % ph["accepting"], "%.2f" % ph["validated"],
                       "%.3f" % observe, "%.2f" % teardown, "%.3f" % tail, "%.2f" % f["wall_s"]])
mh, mf = statistics.median(hand), statistics.median(fd)
rows.append(["median", "", "**%.2f s**" % mh, "**%.2f s**" % mf, "%+.2f s" % (mf - mh),
             s(statistics.median(rtos)), s(statistics.median(outside)),
             "max %.1f MiB" % (max(hwms) / 1024), "max %.1f MiB" % (max(maxrss) / 1024)])
print()
print("Restore of a pgBackRest backup: (a) by hand vs (b) firedrill run; $started;")
print("database $db_size ($db_bytes bytes, pgbench -s $scale), repository $repo_size (compress-type=$compress, process-max=1);")
print("machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(free -g | awk '/^Mem:/{print $2}') GiB RAM, kernel $(uname -r); PostgreSQL $("$pgbin/postgres" -V | awk '{print $3}'), $(pgbackrest version), firedrill $fd_version;")
print("load average before $load_before, after $load_after")
print()
table(["run", "order", "(a) by hand, wall", "(b) firedrill, wall", "b − a", "firedrill restore RTO (report)",
       "firedrill wall − RTO", "firedrill peak RSS (VmHWM)", "wait4 maxrss (with reaped children)"], rows)
print()
print("overhead = (median firedrill − median by hand) / median by hand = (%.3f − %.3f) / %.3f = **%+.2f %%** (goal ≤ 2 %%)"
      % (mf, mh, mh, (mf - mh) / mh * 100))
med = [statistics.median(p[k] for p in parts) for k in range(5)]
print()
print("firedrill's wall outside its restore RTO, medians: start-up %.3f s, preflight (pgbackrest info, checks) %.3f s,"
      " validated → revert %.3f s, teardown %.3f s, report and exit %.3f s" % tuple(med))
print()
print("Phase ends in seconds from the restore's start (firedrill: midpoints of its report's brackets, polled every 20 ms;")
print("by hand: marks in the by-hand script, psql polled every 20 ms); other columns are durations in seconds:")
print()
table(["run", "who", "before the restore: start-up + preflight", "files restored", "consistent", "accepting writes",
       "validated", "validated → revert", "teardown", "report + exit", "process wall"], phase_rows)
EOF
