#!/usr/bin/env python3
"""Footprint of a one-probe drill: start-up to first probe, and peak memory.

    python3 bench/footprint.py [--runs N] [--bin target/release/firedrill]
    python3 bench/footprint.py --long 3600 [--rate-hz 1000]   # memory of a long 1 kHz drill
    python3 bench/footprint.py --vs-chaos [--runs N]          # side by side with Chaos Toolkit
    python3 bench/footprint.py --vs-chaos --dist [--runs N]   # + the shipped (`--profile dist`) binary

Start-up: the wall-clock time from spawning `firedrill run` to the first request arriving at a
local HTTP server the probe checks. Peak memory: the child's maximum resident set size
(GNU time's %M). The long mode samples VmRSS every 10s while a 1 kHz HTTP probe runs for the given
number of seconds against `firedrill sim`'s loopback endpoint, and prints the growth.
With --vs-chaos the same one-probe check runs as a Chaos Toolkit experiment (`chaos run`, its
steady-state hypothesis with one http probe and a no-op action; installed from PyPI into
bench/.venv) and both are printed side by side. With --dist, the binary users are shipped
(`scripts/dist.sh`: `cargo build --profile dist`, fat LTO, its debug information split off
into firedrill.debug) is built and measured in the same run, and the sizes are printed.
Everything runs on 127.0.0.1.
"""
import argparse
import http.server
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time


class FirstHit(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    first = None

    def do_GET(self):
        if FirstHit.first is None:
            FirstHit.first = time.time_ns()
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


DRILL = """name: footprint
targets: {{}}
probes:
  web:
    http: {{ url: "{url}", timeout: 1s }}
    every: {every}
    every-during: {every}
faults:
  - command: {{ run: [true] }}
recovery: {{ objective: 1s, stable-for: {stable}, timeout: {timeout} }}
"""


def serve_first_hit():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FirstHit)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, "http://127.0.0.1:%d/" % server.server_address[1]


def measure(cmd, runs, cwd=None):
    """Runs cmd `runs` times: start-up to first probe (ms) and peak RSS (MiB) of each run."""
    starts, rss = [], []
    for _ in range(runs):
        FirstHit.first = None
        t0 = time.time_ns()
        # GNU time reports the tool's own peak RSS (getrusage of children would also count
        # the forked Python interpreter before exec).
        p = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, cwd=cwd,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if p.returncode != 0 or FirstHit.first is None:
            sys.exit("%s failed (exit %d): %s" % (cmd[0], p.returncode, p.stderr[-500:]))
        starts.append((FirstHit.first - t0) / 1e6)
        rss.append(int(p.stderr.strip().splitlines()[-1]) / 1024)
    return sorted(starts), rss


def startup(binary, runs):
    server, url = serve_first_hit()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "drill.yaml")
        with open(path, "w") as f:
            f.write(DRILL.format(url=url, every="100ms", stable="300ms", timeout="10s"))
        starts, rss = measure([binary, "run", path, "--report-dir", os.path.join(d, "r")], runs)
    server.shutdown()
    print("start-up to first probe over %d runs: p50 %.2f ms, min %.2f ms, max %.2f ms"
          % (runs, statistics.median(starts), starts[0], starts[-1]))
    print("peak RSS of a one-probe drill: %.1f MiB" % max(rss))


def dist_binary():
    """The shipped binary, as scripts/dist.sh builds it (on its own, see benchlib.build)."""
    import benchlib

    subprocess.run(["bash", os.path.join(benchlib.ROOT, "scripts", "dist.sh")], cwd=benchlib.ROOT, check=True)
    return os.path.join(benchlib.ROOT, "target", "dist", "firedrill")


def sizes(binaries):
    """Size of each binary, and of the split-off debug file beside it if there is one."""
    for name, path in binaries.items():
        debug = path + ".debug"
        extra = ", debug information in %s: %.1f MiB" % (os.path.basename(debug), os.path.getsize(debug) / 2**20) \
            if os.path.exists(debug) else ", debug information inside"
        print("%s: %s %.1f MiB%s" % (name, os.path.relpath(path), os.path.getsize(path) / 2**20, extra))


def vs_chaos(binaries, runs):
    """The same one-probe check, firedrill (each of `binaries`, name -> path) vs `chaos run`
    (Chaos Toolkit from PyPI)."""
    import benchlib

    benchlib.ensure_apt(("/usr/bin/time", "time"))
    chaos = benchlib.ensure_chaos()
    server, url = serve_first_hit()
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as d:
        drill = os.path.join(d, "drill.yaml")
        with open(drill, "w") as f:
            f.write(DRILL.format(url=url, every="100ms", stable="300ms", timeout="10s"))
        exp = os.path.join(d, "experiment.json")
        # One probe (the steady-state hypothesis, checked before the method) and a no-op action.
        benchlib.write_json(exp, {
            "version": "1.0.0", "title": "footprint", "description": "one probe",
            "steady-state-hypothesis": {"title": "answers 200", "probes": [
                {"type": "probe", "name": "web", "tolerance": 200,
                 "provider": {"type": "http", "url": url, "timeout": 1}}]},
            "method": [{"type": "action", "name": "noop", "provider": {"type": "process", "path": "true"}}],
        })
        # Its own state dir: the scope lock of another drill with the same name must not interfere.
        for name, binary in binaries.items():
            results[name] = measure([binary, "run", drill, "--no-live", "--report-dir", os.path.join(d, "r"),
                                     "--state-dir", os.path.join(d, "state")], runs)
        results["chaostoolkit"] = measure(chaos + ["run", "--journal-path", os.path.join(d, "journal.json"), exp],
                                          runs, cwd=d)
    server.shutdown()
    for tool, (starts, rss) in results.items():
        rows.append([tool, "%.1f ms" % statistics.median(starts), "%.1f ms" % starts[0], "%.1f ms" % starts[-1],
                     "%.1f MiB" % max(rss)])
    cs, cr = results["chaostoolkit"]
    print("One-probe drill, %d runs each; %s; %s" % (runs, benchlib.chaos_version(), benchlib.machine()))
    benchlib.table(["tool", "start-up to first probe p50", "min", "max", "peak RSS (max)"], rows)
    for name in binaries:
        fs, fr = results[name]
        print("%s starts %.0fx faster (p50) and peaks %.1fx smaller (max RSS)"
              % (name, statistics.median(cs) / statistics.median(fs), max(cr) / max(fr)))
    sizes(binaries)


def long_run(binary, seconds, rate_hz):
    with tempfile.TemporaryDirectory() as d:
        kubeconfig = os.path.join(d, "kubeconfig")
        sim = subprocess.Popen([binary, "sim", "--listen", "127.0.0.1:0", "--kubeconfig-out", kubeconfig],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        url = None
        for line in sim.stdout:
            m = re.search(r"(http://127\.0\.0\.1:\d+)\S*\s*$", line)
            if "checkout" in line and m:
                url = m.group(1) + "/"
                break
        if url is None:
            sim.kill()
            sys.exit("firedrill sim printed no traffic url")
        every = "%dus" % int(1e6 / rate_hz)
        path = os.path.join(d, "drill.yaml")
        with open(path, "w") as f:
            f.write(DRILL.format(url=url, every=every, stable="%ds" % seconds, timeout="%ds" % (seconds + 60)))
        p = subprocess.Popen([binary, "run", path, "--report-dir", os.path.join(d, "r")],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        samples = []
        t0 = time.time()
        while p.poll() is None:
            try:
                with open("/proc/%d/status" % p.pid) as f:
                    kb = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
                samples.append((time.time() - t0, kb / 1024))
            except (OSError, AttributeError):
                pass
            time.sleep(10)
        out = p.stdout.read()
        sim.terminate()
        sim.wait()
        reports = [os.path.join(r, f) for r, _, fs in os.walk(os.path.join(d, "r")) for f in fs if f.endswith(".json")]
        checks = 0
        if reports:
            rec = json.load(open(reports[0]))
            checks = sum(pr["verdict"]["samples"] for t in rec["trials"] for pr in t["probes"])
        print("long drill: %ds at %d Hz, %d checks in the observed window, exit %d" % (seconds, rate_hz, checks, p.returncode))
        if samples:
            print("RSS: first %.1f MiB, max %.1f MiB, last %.1f MiB" % (samples[0][1], max(s[1] for s in samples), samples[-1][1]))
        print(out.strip().splitlines()[0] if out.strip() else "(no summary)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/firedrill")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--long", type=int, default=0, help="seconds of a long 1 kHz drill")
    ap.add_argument("--rate-hz", type=int, default=1000)
    ap.add_argument("--vs-chaos", action="store_true", help="side by side with Chaos Toolkit's `chaos run`")
    ap.add_argument("--dist", action="store_true", help="also build and measure the `--profile dist` binary")
    a = ap.parse_args()
    if a.vs_chaos:
        binaries = {"firedrill": a.bin}
        if a.dist:
            binaries["firedrill (dist)"] = dist_binary()
        vs_chaos(binaries, a.runs)
    elif a.long:
        long_run(a.bin, a.long, a.rate_hz)
    else:
        startup(a.bin, a.runs)
