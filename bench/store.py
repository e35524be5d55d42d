#!/usr/bin/env python3
"""The shared store (issue 16) side by side with the reports folder, in one run, on 127.0.0.1.

Builds nothing beyond `cargo build --release`: the example examples/store_write_bench.rs, then
the firedrill binary on its own (bench/benchlib.py `build`: two invocations, so the binary is
the one users run, without the examples' dev-only features). Both are copied into the temp
directory before anything is measured, so a rebuild of target/ during the run changes nothing.

It starts its own PostgreSQL (Debian's binaries, the newest under /usr/lib/postgresql) in a
temp directory on a free 127.0.0.1 port, as `postgres` through setpriv when run as root,
with password authentication (scram-sha-256, a random password) and PostgreSQL's default
durability (fsync on, synchronous_commit on: a committed record is on disk, as a folder
record is after its fsync). Every section gets a database of its own, migrated by firedrill
on first use. The DSN reaches firedrill only through the FIREDRILL_STORE environment variable,
never as an argument. The server is stopped at the end, also on an error or Ctrl-C, and the
temp directory (the 100,000 generated records included) is removed unless --keep.

Records: one real record, written by `firedrill run` of a one-trial `command`-fault drill
(probe fails for ~0.4 s, recovers), is varied like tests/store.rs `thousand_records` (run id,
drill among 20, environment among 3, start and end times, every 11th failed, TTR) by
`store_write_bench gen`, pretty-printed as firedrill writes records.

1. Write latency, N records (default 1,000), each written once to the store (`put_json` on one
   open connection) and once to a reports folder with firedrill's atomic write (temporary
   file, fsync, rename, fsync of the folder), alternating record by record: p50/p99/max.
   (A run also writes the record's .md and .html beside the JSON; those are not counted.)
2. `firedrill report --as-of 2026-09-01T00:00:00Z --format table` over 100,000 records, from
   the folder and from the store (uploaded first by parallel `firedrill store sync --reports`
   over sub-folders), 3 runs each, alternating: wall (median, max) and peak RSS (wait4
   ru_maxrss). The outputs must be identical. Both read warm caches: the records were just
   written and uploaded (then VACUUM ANALYZE, CHECKPOINT and sync(2), so that the write-back
   of the upload is not timed). For where the time goes, the bare query through psql (the
   rows fetched and thrown away) is timed too.
3. 50 `firedrill store sync --reports SUBDIR` processes started at once on a fresh database
   (their migrations race too), each with its own 100 records, state directory and
   FIREDRILL_HOST: all must exit 0; lost = expected − rows stored (goal 0); wall time.

Prints Markdown tables, the command and the machine. Run as root (or as a user who can run
PostgreSQL's binaries). Usage:

    python3 bench/store.py [--writes 1000] [--records 100000] [--runners 50] [--per-runner 100]
                           [--runs 3] [--upload-jobs 8] [--keep]
"""
import argparse
import datetime
import glob
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

AS_OF = "2026-09-01T00:00:00Z"
REPORT = ["report", "--as-of", AS_OF, "--format", "table"]

SEED_DRILL = """name: seed
description: One trial of a command fault; the probe fails while the mark exists (~0.4 s).
environments: [staging, production]
probes:
  healthy:
    command: {{ run: [sh, -c, "test ! -e '{mark}'"] }}
    every: 100ms
faults:
  - command:
      run: [sh, -c, "touch '{mark}'; sleep 0.4; rm -f '{mark}'"]
      revert: [rm, -f, "{mark}"]
recovery: {{ objective: 5s, stable-for: 200ms, timeout: 10s }}
"""
ENVIRONMENTS = "environments:\n  staging: {}\n  production:\n    promote-from: staging\n    within: 7d\n"


def is_root():
    return os.geteuid() == 0


def as_postgres(cmd):
    if is_root():
        return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"] + cmd
    return cmd


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    """A PostgreSQL server of its own under `dir`, on 127.0.0.1 and a free port."""

    def __init__(self, dir):
        versions = sorted((int(v) for v in os.listdir("/usr/lib/postgresql") if v.isdigit()), reverse=True)
        bins = [b for b in ("/usr/lib/postgresql/%d/bin" % v for v in versions)
                if os.path.exists(b + "/postgres") and os.path.exists(b + "/initdb")]
        if not bins:
            sys.exit("PostgreSQL's server binaries are missing: apt-get install postgresql")
        self.bin = bins[0]
        self.dir = dir
        self.data = os.path.join(dir, "data")
        self.password = secrets.token_hex(16)
        self.proc = None
        os.makedirs(dir)
        pwfile = os.path.join(dir, "pw")
        with open(pwfile, "w") as f:
            f.write(self.password)
        if is_root():
            subprocess.run(["chown", "-R", "postgres:postgres", dir], check=True)
        subprocess.run(as_postgres([self.bin + "/initdb", "-U", "firedrill", "--auth=scram-sha-256",
                                    "--pwfile", pwfile, "-D", self.data, "-E", "UTF8", "--locale=C.UTF-8"]),
                       check=True, stdout=subprocess.DEVNULL)
        os.remove(pwfile)
        self.port = free_port()
        self.log = open(os.path.join(dir, "postgres.log"), "wb")
        self.proc = subprocess.Popen(
            as_postgres([self.bin + "/postgres", "-D", self.data, "-p", str(self.port),
                         "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=" + dir,
                         "-c", "max_connections=200"]),
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit("postgres exited: see %s" % os.path.join(dir, "postgres.log"))
            if subprocess.run([self.bin + "/pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port)]).returncode == 0:
                return
            time.sleep(0.05)
        sys.exit("postgres did not start within 30 s")

    def version(self):
        # "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
        return subprocess.run([self.bin + "/postgres", "-V"], capture_output=True, text=True).stdout.split()[2]

    def dsn(self, db):
        return "postgres://firedrill:%s@127.0.0.1:%d/%s" % (self.password, self.port, db)

    def psql(self, sql, db="postgres", out=None):
        """First column of every row (text); with `out`, the rows go there and None returns."""
        cmd = ["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql,
               "host=127.0.0.1 port=%d user=firedrill dbname=%s" % (self.port, db)]
        env = dict(os.environ, PGPASSWORD=self.password)
        if out is not None:
            subprocess.run(cmd, env=env, check=True, stdout=out)
            return None
        r = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
        return r.stdout.splitlines()

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)  # fast shutdown
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def measured(cmd, env, timeout=600):
    """Runs cmd; returns (rc, wall s, peak RSS KiB (wait4 ru_maxrss), stdout bytes, stderr text)."""
    rc, wall, ru, out, err = bl.run_wait4(cmd, env=env, timeout=timeout, poll=0.002)
    return rc, wall, ru.ru_maxrss, out, err.decode(errors="replace")


def base_env(tmp):
    """The environment of every firedrill process: no store unless a section adds one."""
    env = {k: v for k, v in os.environ.items() if k not in ("FIREDRILL_STORE", "FIREDRILL_HOST")}
    env["FIREDRILL_STATE_DIR"] = os.path.join(tmp, "state")
    env["NO_COLOR"] = "1"
    return env


def store_env(tmp, dsn, host=None, state=None):
    env = base_env(tmp)
    env["FIREDRILL_STORE"] = dsn
    if host:
        env["FIREDRILL_HOST"] = host
    if state:
        env["FIREDRILL_STATE_DIR"] = state
    return env


def check(ok, what):
    if not ok:
        raise SystemExit("FAILED: " + what)


def seed_record(fd, tmp):
    """One real record: a drill run by firedrill, without the store."""
    d = os.path.join(tmp, "seed")
    os.makedirs(d)
    with open(os.path.join(d, "seed.yaml"), "w") as f:
        f.write(SEED_DRILL.format(mark=os.path.join(d, "seed.mark")))
    with open(os.path.join(d, "firedrill.yaml"), "w") as f:
        f.write(ENVIRONMENTS)
    r = subprocess.run([fd, "run", os.path.join(d, "seed.yaml"), "--no-live", "--env", "staging",
                        "--report-dir", os.path.join(d, "reports")],
                       env=base_env(tmp), capture_output=True, text=True)
    check(r.returncode == 0, "the seed drill: exit %d\n%s%s" % (r.returncode, r.stdout, r.stderr))
    records = glob.glob(os.path.join(d, "reports", "**", "*.json"), recursive=True)
    check(len(records) == 1, "the seed drill wrote %d records" % len(records))
    with open(records[0]) as f:
        rec = json.load(f)
    check(rec["trials"][0]["verdict"]["ttr"] is not None, "the seed record has no TTR")
    return records[0]


def gen(tool, seed, out, first, count):
    subprocess.run([tool, "gen", seed, out, str(first), str(count)], check=True)


def gen_parallel(tool, seed, jobs):
    """jobs: [(out, first, count)], two at a time (one per core)."""
    running = []
    for out, first, count in jobs:
        while len(running) >= max(1, os.cpu_count() or 1):
            running.pop(0).wait()
        running.append(subprocess.Popen([tool, "gen", seed, out, str(first), str(count)]))
    for p in running:
        check(p.wait() == 0, "store_write_bench gen failed")


def du(path):
    r = subprocess.run(["du", "-sb", path], capture_output=True, text=True)
    return int(r.stdout.split()[0]) if r.returncode == 0 else 0


def mib(kib):
    return "%.1f MiB" % (kib / 1024)


def ms(s):
    return "%.2f ms" % (s * 1e3)


def section_writes(tools, pg, tmp, n):
    bl.say("[writes] %d records, store vs folder, one at a time" % n)
    pg.psql("CREATE DATABASE writes")
    src, folder = os.path.join(tmp, "w-src"), os.path.join(tmp, "w-folder")
    gen(tools["gen"], tools["seed"], src, 0, n)
    r = subprocess.run([tools["store_write_bench"], "write", src, folder],
                       env=store_env(tmp, pg.dsn("writes")), capture_output=True, text=True)
    check(r.returncode == 0, "store_write_bench write: %s" % r.stderr)
    res = json.loads(r.stdout)
    check(res["n"] == n and res["new"] == n, "wrote %s of %d records (%s new)" % (res["n"], n, res["new"]))
    stored = int(pg.psql("SELECT count(*) FROM firedrill_runs", "writes")[0])
    check(stored == n, "the store holds %d of %d records" % (stored, n))
    written = len(glob.glob(os.path.join(folder, "**", "*.json"), recursive=True))
    check(written == n, "the folder holds %d of %d records" % (written, n))
    out = {}
    for side in ("folder", "store"):
        v = res[side + "_s"]
        out[side] = {"p50": bl.pct(v, 50), "p99": bl.pct(v, 99), "max": max(v), "mean": statistics.mean(v)}
    shutil.rmtree(src)
    shutil.rmtree(folder)
    return out


def section_report(tools, pg, tmp, records, runs, upload_jobs):
    bl.say("[report] generating %d records" % records)
    pg.psql("CREATE DATABASE report")
    big = os.path.join(tmp, "big")
    per = -(-records // upload_jobs)
    parts = []
    for k in range(upload_jobs):
        first, count = k * per, min(per, records - k * per)
        if count > 0:
            parts.append((os.path.join(big, "part-%02d" % k), first, count))
    t = time.monotonic()
    gen_parallel(tools["gen"], tools["seed"], parts)
    bl.say("[report] generated in %.1f s, %d MB on disk; uploading with %d parallel `store sync`"
           % (time.monotonic() - t, du(big) // 1_000_000, len(parts)))
    env = store_env(tmp, pg.dsn("report"))
    # All at once: the first to take the advisory lock migrates the fresh database.
    t = time.monotonic()
    procs = [subprocess.Popen([tools["firedrill"], "store", "sync", "--reports", p[0]],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for p in parts]
    for p in procs:
        o, e = p.communicate()
        check(p.returncode == 0, "store sync: exit %d\n%s%s" % (p.returncode, o, e))
    upload_s = time.monotonic() - t
    stored = int(pg.psql("SELECT count(*) FROM firedrill_runs", "report")[0])
    check(stored == records, "the store holds %d of %d records" % (stored, records))
    sizes = pg.psql("SELECT sum(octet_length(lean)), sum(octet_length(record)), "
                    "pg_total_relation_size('firedrill_runs') FROM firedrill_runs", "report")[0].split("|")
    bl.say("[report] uploaded in %.1f s; lean %s MB, records %s MB, table %s MB"
           % (upload_s, int(sizes[0]) // 1_000_000, int(sizes[1]) // 1_000_000, int(sizes[2]) // 1_000_000))
    # VACUUM ANALYZE as autovacuum would soon (visibility map, hint bits); then a checkpoint
    # and sync(2), so the timed reads below do not share the disk and the CPUs with the
    # write-back of the upload (~1 GB of WAL and pages) and of the generated files.
    pg.psql("VACUUM ANALYZE firedrill_runs", "report")
    pg.psql("CHECKPOINT", "report")
    os.sync()
    load = open("/proc/loadavg").read().split()[:3]
    bl.say("[report] load average before the timed reports: " + " ".join(load))

    folder_cmd = [tools["firedrill"]] + REPORT + [big]
    store_cmd = [tools["firedrill"]] + REPORT + [os.path.join(tmp, "no-such-folder")]
    res = {"folder": [], "store": []}
    outputs = {}
    for i in range(runs):
        order = ("folder", "store") if i % 2 == 0 else ("store", "folder")
        for side in order:
            cmd, e = (folder_cmd, base_env(tmp)) if side == "folder" else (store_cmd, env)
            rc, wall, rss, out, err = measured(cmd, e)
            check(rc == 0, "report from the %s: exit %d\n%s" % (side, rc, err))
            bl.say("[report] run %d, %s: %.3f s, %s" % (i + 1, side, wall, mib(rss)))
            res[side].append((wall, rss))
            outputs.setdefault(side, out)
            check(out == outputs[side], "report from the %s changed between runs" % side)
    identical = outputs["folder"] == outputs["store"]
    if not identical:
        for side in outputs:
            with open(os.path.join(tmp, "report-%s.txt" % side), "wb") as f:
                f.write(outputs[side])
    check(identical, "the store's report differs from the folder's (kept in %s with --keep)" % tmp)
    check(len(outputs["store"].splitlines()) > 5, "the report is nearly empty:\n%s" % outputs["store"].decode())

    # The bare query, for where the time goes: psql fetches the same rows and throws them away.
    q = []
    with open(os.devnull, "wb") as null:
        for _ in range(runs):
            t = time.monotonic()
            pg.psql("SELECT run_id, lean FROM firedrill_runs", "report", out=null)
            q.append(time.monotonic() - t)
    shutil.rmtree(big)
    return {
        "records": records, "upload_s": upload_s, "upload_jobs": len(parts),
        "lean_bytes": int(sizes[0]), "record_bytes": int(sizes[1]), "table_bytes": int(sizes[2]),
        "report_lines": len(outputs["store"].splitlines()),
        "folder": res["folder"], "store": res["store"], "query_psql": q, "identical": identical,
        "load": load,
    }


def section_concurrent(tools, pg, tmp, runners, per):
    expected = runners * per
    bl.say("[concurrent] %d `store sync` processes at once, %d records each" % (runners, per))
    pg.psql("CREATE DATABASE concurrent")
    root = os.path.join(tmp, "conc")
    jobs = [(os.path.join(root, "r%02d" % k), 10_000_000 + k * per, per) for k in range(runners)]
    gen_parallel(tools["gen"], tools["seed"], jobs)
    dsn = pg.dsn("concurrent")
    procs = []
    t0 = time.monotonic()
    for k, (d, _, _) in enumerate(jobs):
        state = os.path.join(root, "state-%02d" % k)
        os.makedirs(state)
        procs.append(subprocess.Popen([tools["firedrill"], "store", "sync", "--reports", d],
                                      env=store_env(tmp, dsn, host="runner-%02d" % k, state=state),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for p in procs:
        o, e = p.communicate()
        results.append((p.returncode, o, e, time.monotonic() - t0))
    wall = time.monotonic() - t0
    failed = [(k, r) for k, r in enumerate(results) if r[0] != 0]
    for k, (rc, o, e, _) in failed:
        bl.say("[concurrent] runner %d: exit %d\n%s%s" % (k, rc, o, e))
    said_all = sum(1 for r in results if ("%d record(s) uploaded, 0 the store had already" % per) in r[1])
    stored = int(pg.psql("SELECT count(*) FROM firedrill_runs", "concurrent")[0])
    hosts = int(pg.psql("SELECT count(DISTINCT written_by) FROM firedrill_runs", "concurrent")[0])
    shutil.rmtree(root)
    return {"runners": runners, "expected": expected, "stored": stored, "lost": expected - stored,
            "exit0": runners - len(failed), "said_all": said_all, "hosts": hosts, "wall_s": wall}


def machine_info(pg, fd):
    with open("/proc/meminfo") as f:
        mem_kib = int(next(l for l in f if l.startswith("MemTotal")).split()[1])
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    os_name = ""
    if os.path.exists("/etc/os-release"):
        with open("/etc/os-release") as f:
            os_name = dict(l.rstrip("\n").split("=", 1) for l in f if "=" in l).get("PRETTY_NAME", "").strip('"')
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    kernel = subprocess.run(["uname", "-r"], capture_output=True, text=True).stdout.strip()
    tree = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=bl.ROOT,
                          capture_output=True, text=True).stdout.strip() or "unknown"
    version = subprocess.run([fd, "--version"], capture_output=True, text=True).stdout.strip()
    return ("nproc %s (%s), %.1f GiB RAM, kernel %s, %s; PostgreSQL %s; %s (tree %s)"
            % (nproc, cpu, mem_kib / 1024 / 1024, kernel, os_name, pg.version(), version, tree))


def interrupted(signum, frame):
    """SIGTERM ends the run like Ctrl-C: through main's `finally` (PostgreSQL stopped, temp removed)."""
    raise KeyboardInterrupt


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--writes", type=int, default=1000)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--runners", type=int, default=50)
    ap.add_argument("--per-runner", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--upload-jobs", type=int, default=8)
    ap.add_argument("--keep", action="store_true", help="leave the temp directory")
    a = ap.parse_args()
    command = "python3 bench/store.py" + "".join(" " + x for x in sys.argv[1:])

    built = bl.build(["store_write_bench"])
    tmp = tempfile.mkdtemp(prefix="firedrill-store-bench.")
    os.chmod(tmp, 0o755)  # postgres (through setpriv) reaches its directory inside
    pg = None
    signal.signal(signal.SIGTERM, interrupted)
    try:
        tools = {}
        for name, path in built.items():
            tools[name] = os.path.join(tmp, name)
            shutil.copy2(path, tools[name])
        tools["gen"] = tools["store_write_bench"]
        load_before = open("/proc/loadavg").read().split()[:3]
        started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        pg = Postgres(os.path.join(tmp, "pg"))
        tools["seed"] = seed_record(tools["firedrill"], tmp)
        seed_bytes = os.path.getsize(tools["seed"])

        writes = section_writes(tools, pg, tmp, a.writes)
        rep = section_report(tools, pg, tmp, a.records, a.runs, a.upload_jobs)
        conc = section_concurrent(tools, pg, tmp, a.runners, a.per_runner)
        load_after = open("/proc/loadavg").read().split()[:3]
        info = machine_info(pg, tools["firedrill"])
    finally:
        if pg is not None:
            pg.stop()
        if a.keep:
            bl.say("kept " + tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    fw, sw = writes["folder"], writes["store"]
    fwall = [w for w, _ in rep["folder"]]
    swall = [w for w, _ in rep["store"]]
    frss = [r for _, r in rep["folder"]]
    srss = [r for _, r in rep["store"]]
    s_med = statistics.median(swall)
    print()
    print("## Shared store vs reports folder (bench/store.py)")
    print()
    print("Command: `%s`" % command)
    print()
    print("Started %s; machine: %s; load average before %s, after %s." % (
        started, info, " ".join(load_before), " ".join(load_after)))
    print("Records: one real run record (%d bytes, one trial of a `command` fault) varied like "
          "tests/store.rs `thousand_records`." % seed_bytes)
    print()
    print("### 1. Per-record write latency, %d records (same bytes both sides, alternating)" % a.writes)
    print()
    bl.table(["written to", "p50", "p99", "max", "mean"], [
        ["reports folder (temp file, fsync, rename, fsync dir)", ms(fw["p50"]), ms(fw["p99"]), ms(fw["max"]), ms(fw["mean"])],
        ["store (`put_json`: parse, skim, INSERT … ON CONFLICT, commit)", ms(sw["p50"]), ms(sw["p99"]), ms(sw["max"]), ms(sw["mean"])],
    ])
    print()
    print("### 2. `firedrill %s` over %d records, %d runs each (alternating)" % (" ".join(REPORT), rep["records"], a.runs))
    print()
    print("Upload: %d parallel `store sync --reports` over sub-folders took %.1f s; lean text %.0f MB, "
          "whole records %.0f MB, table with TOAST and indexes %.0f MB. Report output: %d lines, "
          "identical from both: %s. Then VACUUM ANALYZE, CHECKPOINT, sync; load average before the "
          "timed reports %s." % (rep["upload_jobs"], rep["upload_s"], rep["lean_bytes"] / 1e6,
                                  rep["record_bytes"] / 1e6, rep["table_bytes"] / 1e6,
                                  rep["report_lines"], "yes" if rep["identical"] else "NO", " ".join(rep["load"])))
    print()
    bl.table(["read from", "wall, each run", "median", "max", "peak RSS (max)"], [
        ["reports folder", ", ".join("%.3f s" % w for w in fwall), "%.3f s" % statistics.median(fwall),
         "%.3f s" % max(fwall), mib(max(frss))],
        ["store (FIREDRILL_STORE)", ", ".join("%.3f s" % w for w in swall), "**%.3f s**" % s_med,
         "%.3f s" % max(swall), mib(max(srss))],
        ["(the bare query in psql, output discarded)", ", ".join("%.3f s" % w for w in rep["query_psql"]),
         "%.3f s" % statistics.median(rep["query_psql"]), "%.3f s" % max(rep["query_psql"]), "—"],
    ])
    print()
    print("### 3. %d concurrent `firedrill store sync` processes, %d records each" % (conc["runners"], a.per_runner))
    print()
    bl.table(["exited 0", "reported all theirs uploaded", "expected", "stored", "lost", "distinct writers", "wall"], [
        ["%d / %d" % (conc["exit0"], conc["runners"]), "%d / %d" % (conc["said_all"], conc["runners"]),
         conc["expected"], conc["stored"], "**%d**" % conc["lost"], conc["hosts"], "%.2f s" % conc["wall_s"]],
    ])
    print()
    print("### Goals")
    print()
    bl.table(["goal", "measured", "met"], [
        ["`report` over %d stored records < 1 s" % rep["records"],
         "median %.3f s, max %.3f s" % (s_med, max(swall)), "yes" if max(swall) < 1 else ("median only" if s_med < 1 else "**no**")],
        ["store's report identical to the folder's", "identical" if rep["identical"] else "differs",
         "yes" if rep["identical"] else "**no**"],
        ["%d concurrent writers lose nothing" % conc["runners"], "lost %d of %d, %d exited 0" % (
            conc["lost"], conc["expected"], conc["exit0"]),
         "yes" if conc["lost"] == 0 and conc["exit0"] == conc["runners"] else "**no**"],
    ])
    if conc["lost"] != 0 or conc["exit0"] != conc["runners"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
