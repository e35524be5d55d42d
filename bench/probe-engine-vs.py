#!/usr/bin/env python3
"""Probe engine, side by side: checks per second on one core and timing jitter, firedrill vs
Chaos Toolkit's probe loop vs wrk (a load generator: the physical limit of this server).

    python3 bench/probe-engine-vs.py [--seconds 5] [--probes 1,64]

The target (examples/flip_target.rs, one thread) runs on CPU 1 and every tool on CPU 0
(taskset), so each tool has one core to itself. The target stamps the arrival of every
GET /healthz; checks per second and jitter are computed from those stamps for every tool
alike:

- checks/s: firedrill with N http probes at its finest interval (1ms), Chaos Toolkit's
  continuous hypothesis with --hypothesis-frequency 0 (back to back: its finest), wrk with one
  thread and 1 or 64 connections.
- jitter of a 10ms probe: the interval between consecutive checks vs the 10ms asked for
  (firedrill `every: 10ms`, chaos `--hypothesis-frequency 0.01`), p50 and p99 of
  |interval − 10ms|, and the median interval.
"""
import argparse
import os
import re
import sys
import tempfile

import benchlib as b

TOOL_CPU, TARGET_CPU = 0, 1

FIREDRILL_YAML = """name: probe-engine-vs
targets: {{}}
probes:
{probes}
faults:
  - command: {{ run: [true] }}
recovery: {{ objective: 1s, stable-for: {seconds}s, timeout: {timeout}s }}
"""
PROBE = """  p{i}:
    http: {{ url: "{url}/healthz", expect-status: 200, timeout: 1s }}
    every: {every}
    every-during: {every}
"""


def rate_and_jitter(arrivals, every_s=None):
    """(checks/s, |interval − every| p50, p99, median interval) over the arrival stamps (ns)."""
    a = sorted(arrivals)
    if len(a) < 3:
        sys.exit("the target saw only %d checks" % len(a))
    rate = (len(a) - 1) / ((a[-1] - a[0]) / 1e9)
    if every_s is None:
        return rate, None, None, None
    gaps = [(y - x) / 1e9 for x, y in zip(a, a[1:])]
    dev = [abs(g - every_s) for g in gaps]
    return rate, b.pct(dev, 50), b.pct(dev, 99), b.median(gaps)


def firedrill(bins, target, work, probes, every, seconds):
    path = os.path.join(work, "drill.yaml")
    with open(path, "w") as f:
        f.write(FIREDRILL_YAML.format(probes="".join(PROBE.format(i=i, url=target.url, every=every) for i in range(probes)),
                                      seconds=seconds, timeout=seconds + 30))
    target.arrivals()
    code, wall, cpu, out, err = b.run_measured(b.pinned(TOOL_CPU, [bins["firedrill"], "run", path, "--no-live",
                                                                    "--report-dir", os.path.join(work, "reports")]))
    if code != 0:
        sys.exit("firedrill run failed (exit %d): %s" % (code, err[-2000:]))
    return target.arrivals(), cpu


def chaos(chaos_cmd, target, work, frequency, seconds):
    exp = os.path.join(work, "experiment.json")
    b.write_json(exp, {
        "version": "1.0.0", "title": "probe-engine-vs", "description": "continuous hypothesis for a while",
        "steady-state-hypothesis": {"title": "healthz answers 200", "probes": [
            {"type": "probe", "name": "healthz", "tolerance": 200,
             "provider": {"type": "http", "url": target.url + "/healthz", "timeout": 1}}]},
        "method": [{"type": "action", "name": "wait", "provider": {"type": "process", "path": "true"},
                    "pauses": {"after": seconds}}],
    })
    target.arrivals()
    code, wall, cpu, out, err = b.run_measured(b.pinned(TOOL_CPU, chaos_cmd + [
        "--log-file", os.path.join(work, "chaostoolkit.log"), "run", "--journal-path", os.path.join(work, "journal.json"),
        "--hypothesis-strategy", "during-method-only", "--hypothesis-frequency", str(frequency), exp]), cwd=work)
    if code != 0:
        sys.exit("chaos run failed (exit %d): %s" % (code, err[-2000:]))
    return target.arrivals(), cpu


def wrk(target, connections, seconds):
    target.arrivals()
    code, wall, cpu, out, err = b.run_measured(b.pinned(TOOL_CPU, ["wrk", "-t1", "-c%d" % connections, "-d%ds" % seconds,
                                                                    target.url + "/healthz"]))
    if code != 0 or not re.search(r"Requests/sec", out):
        sys.exit("wrk failed: %s %s" % (out, err))
    return target.arrivals(), cpu


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--probes", default="1,64", help="numbers of concurrent firedrill probes")
    a = ap.parse_args()
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs 2 CPUs: one for the target, one for the tool")
    b.ensure_apt(("wrk", "wrk"), ("taskset", "util-linux"))
    chaos_cmd = b.ensure_chaos()
    bins = b.build(["flip_target"])
    target = b.Target(bins["flip_target"], cpu=TARGET_CPU)
    rate_rows, jitter_rows = [], []
    try:
        with tempfile.TemporaryDirectory() as work:
            for n in [int(x) for x in a.probes.split(",")]:
                arr, cpu = firedrill(bins, target, work, n, "1ms", a.seconds)
                rate, *_ = rate_and_jitter(arr)
                rate_rows.append(["firedrill", "%d probe(s) every 1ms (finest)" % n, "%.0f" % rate, len(arr),
                                  b.fmt_s(cpu / len(arr))])
            arr, cpu = chaos(chaos_cmd, target, work, 0, a.seconds)
            rate, *_ = rate_and_jitter(arr)
            rate_rows.append(["chaostoolkit", "continuous hypothesis, frequency 0 (finest)", "%.0f" % rate, len(arr),
                              b.fmt_s(cpu / len(arr))])
            for c in (1, 64):
                arr, cpu = wrk(target, c, a.seconds)
                rate, *_ = rate_and_jitter(arr)
                rate_rows.append(["wrk", "1 thread, %d connection(s)" % c, "%.0f" % rate, len(arr), b.fmt_s(cpu / len(arr))])

            for tool, run in [("firedrill", lambda: firedrill(bins, target, work, 1, "10ms", a.seconds)),
                              ("chaostoolkit", lambda: chaos(chaos_cmd, target, work, 0.01, a.seconds))]:
                arr, cpu = run()
                rate, p50, p99, med = rate_and_jitter(arr, 0.010)
                jitter_rows.append([tool, len(arr), b.fmt_s(med), b.fmt_s(p50), b.fmt_s(p99), "%.1f" % rate])
    finally:
        target.stop()
    print("Checks per second on one core (tool on CPU %d, target on CPU %d, %ds each); %s; %s"
          % (TOOL_CPU, TARGET_CPU, a.seconds, b.chaos_version(), b.machine()))
    b.table(["tool", "how", "checks/s", "checks", "CPU per check"], rate_rows)
    print()
    print("Timing of a probe asked to check every 10ms (intervals between arrivals at the target)")
    b.table(["tool", "checks", "median interval", "|interval − 10ms| p50", "|interval − 10ms| p99", "checks/s"],
            jitter_rows)


if __name__ == "__main__":
    main()
