#!/usr/bin/env python3
"""Kubernetes scale: kill 1,000 of 10,000 simulated pods and track every replacement to ready.

    cargo build --release
    python3 bench/kube_scale.py [--deployments 100] [--replicas 100] [--kill 1000]
                                [--bin target/release/firedrill] [--keep DIR]
    python3 bench/kube_scale.py --deployments 1000 --replicas 100 --kill 10000   # 100,000 pods

Two processes, as a user would run them: `firedrill sim` serves a scenario of
DEPLOYMENTS x REPLICAS pods on 127.0.0.1 and writes its ground truth (every simulated
transition, wall-clock stamped) on shutdown (`--truth-out`); `firedrill run` executes a real
drill against it through a kube context: one `pod-kill` of KILL pods chosen among all of them
(`max-targets` raised to allow it) and one `kubernetes` readiness probe per deployment.

Reported: how long the scenario takes to load (all pods ready), what a paged LIST of every pod
costs (500 a page, as kube-rs's watcher lists; whole and per page), the kill's wall time (first
delete sent to last delete answered), time until every replacement is ready (from the drill's
own pod phases, and from the simulator's truth), the drill's TTR, peak RSS of both processes
(VmHWM / wait4), and the watch event latency: for every pod step the drill observed (deleted,
created, scheduled, running, ready), its arrival time at firedrill's kube-rs watcher minus the
instant the simulator made that transition.
"""
import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

KUBELET = {"schedule-delay": "50ms", "start-delay": "300ms", "ready-delay": "500ms"}

# Drill steps and the simulator truth they observe.
STEP_TRUTH = {
    "deleted": "pod-deleted",
    "created": "pod-created",
    "scheduled": "pod-scheduled",
    "running": "pod-running",
    "ready": "pod-ready",
}


def scenario(deployments, replicas):
    lines = [
        "kubelet: { %s }" % ", ".join("%s: %s" % kv for kv in KUBELET.items()),
        "namespaces:",
        "  scale:",
        '    labels: { firedrill.io/allow: "true" }',
        "    deployments:",
    ]
    for i in range(deployments):
        lines.append(
            "      web-%03d: { replicas: %d, labels: { app: web-%03d, tier: web } }"
            % (i, replicas, i)
        )
    return "\n".join(lines) + "\n"


def drill(deployments, kill):
    probes = "".join(
        "  web-%03d:\n    kubernetes: { deployment: scale/web-%03d, ready: all }\n"
        "    every: 1s\n    every-during: 50ms\n" % (i, i)
        for i in range(deployments)
    )
    return (
        "name: kube-scale\n"
        "environments: [bench]\n"
        "targets:\n"
        "  web:\n"
        "    kubernetes: { namespace: scale, selector: tier=web, count: %d, max-targets: %d }\n"
        "probes:\n%s"
        "faults:\n"
        "  - pod-kill: { target: web, grace-period: 0s }\n"
        "recovery: { objective: 60s, stable-for: 2s, timeout: 3m }\n" % (kill, kill, probes)
    )


ENVIRONMENTS = "environments:\n  bench:\n    kube-context: firedrill-sim\n"


def vm_hwm_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def rfc3339_ns(s):
    """Nanoseconds since the epoch of an RFC 3339 UTC time with any number of fraction digits."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|\+00:00)", s)
    if not m:
        raise ValueError("not a UTC RFC 3339 time: %r" % s)
    base = time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")
    import calendar

    frac = (m.group(2) or "0")[:9].ljust(9, "0")
    return calendar.timegm(base) * 10**9 + int(frac)


def pct(values, p):
    v = sorted(values)
    if not v:
        return float("nan")
    return v[min(len(v) - 1, max(0, int(round(p / 100 * len(v) + 0.5)) - 1))]


def wait_all_ready(api, deployments, replicas, timeout):
    url = api + "/apis/apps/v1/namespaces/scale/deployments"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                items = json.load(r)["items"]
            ready = sum(i.get("status", {}).get("readyReplicas", 0) for i in items)
            if len(items) == deployments and ready == deployments * replicas:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit("the scenario did not become ready within %ds" % timeout)


def paged_list(api, selector, limit=500):
    """Pages through the pods `selector` matches; returns (items, pages, seconds per page)."""
    base = api + "/api/v1/namespaces/scale/pods?limit=%d&labelSelector=%s" % (
        limit, urllib.parse.quote(selector))
    token, items, times = None, 0, []
    while True:
        url = base + ("&continue=" + urllib.parse.quote(token, safe="") if token else "")
        t = time.monotonic()
        with urllib.request.urlopen(url, timeout=60) as r:
            page = json.load(r)
        times.append(time.monotonic() - t)
        items += len(page["items"])
        token = page["metadata"].get("continue")
        if not token:
            return items, len(times), times


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="target/release/firedrill")
    ap.add_argument("--deployments", type=int, default=100)
    ap.add_argument("--replicas", type=int, default=100)
    ap.add_argument("--kill", type=int, default=1000)
    ap.add_argument("--keep", help="keep the scenario, drill, report and truth in this folder")
    args = ap.parse_args()
    binary = os.path.abspath(args.bin)
    if not os.access(binary, os.X_OK):
        raise SystemExit("%s is not built: run `cargo build --release` first" % args.bin)

    work = args.keep or tempfile.mkdtemp(prefix="kube-scale-")
    os.makedirs(work, exist_ok=True)
    path = lambda name: os.path.join(work, name)
    with open(path("scenario.yaml"), "w") as f:
        f.write(scenario(args.deployments, args.replicas))
    with open(path("drill.yaml"), "w") as f:
        f.write(drill(args.deployments, args.kill))
    with open(path("firedrill.yaml"), "w") as f:
        f.write(ENVIRONMENTS)
    for stale in ("kubeconfig", "truth.jsonl"):
        if os.path.exists(path(stale)):
            os.remove(path(stale))

    pods = args.deployments * args.replicas
    started = time.monotonic()
    sim = subprocess.Popen(
        [binary, "sim", "--listen", "127.0.0.1:0", "--seed", "1",
         "--scenario", path("scenario.yaml"), "--kubeconfig-out", path("kubeconfig"),
         "--truth-out", path("truth.jsonl")],
        stdout=subprocess.PIPE, stderr=open(path("sim.log"), "w"), text=True,
    )
    try:
        api = None
        for line in sim.stdout:
            if line.startswith("api: "):
                api = line.split()[1]
                break
        if api is None:
            raise SystemExit("firedrill sim did not start; see %s" % path("sim.log"))
        wait_all_ready(api, args.deployments, args.replicas, timeout=max(300, pods // 100))
        loaded = time.monotonic() - started
        print("scenario: %d pods ready %.2fs after `firedrill sim` was spawned" % (pods, loaded))
        print("load average before the drill: %.2f %.2f %.2f" % os.getloadavg())
        n, pages, times = paged_list(api, "tier=web")
        print("paged list of every pod (tier=web, 500 a page): %d items in %d pages, %.2fs; "
              "a page p50 %.1f ms, max %.1f ms" % (n, pages, sum(times), pct(times, 50) * 1e3,
                                                    max(times) * 1e3))
        n, pages, times = paged_list(api, "app=web-%03d" % (args.deployments - 1))
        print("paged list of the last deployment's pods: %d items in %d pages, %.1f ms"
              % (n, pages, sum(times) * 1e3))

        env = dict(os.environ, KUBECONFIG=path("kubeconfig"), RUST_LOG="warn")
        t0 = time.monotonic()
        run = subprocess.Popen(
            [binary, "run", "--env", "bench", "--seed", "7", "--report-dir", path("reports"),
             path("drill.yaml")],
            stdout=open(path("run.out"), "w"), stderr=open(path("run.err"), "w"), env=env,
        )
        _, status, usage = os.wait4(run.pid, 0)
        run.returncode = os.waitstatus_to_exitcode(status)
        run_wall = time.monotonic() - t0
        run_rss = usage.ru_maxrss
        sim_rss = vm_hwm_kib(sim.pid)
    finally:
        sim.send_signal(signal.SIGTERM)
        try:
            sim.wait(timeout=120)
        except subprocess.TimeoutExpired:
            sim.kill()
    if run.returncode != 0:
        print("firedrill run exited %d; see %s and %s" % (run.returncode, path("run.out"), path("run.err")))

    reports = [os.path.join(d, f) for d, _, fs in os.walk(path("reports")) for f in fs if f.endswith(".json")]
    if len(reports) != 1:
        raise SystemExit("expected one report under %s, found %d" % (path("reports"), len(reports)))
    with open(reports[0]) as f:
        record = json.load(f)
    truth = {}
    with open(path("truth.jsonl")) as f:
        for line in f:
            t = json.loads(line)
            # The first occurrence: a pod name is unique (random suffix) and each step happens once.
            truth.setdefault((t["object"], t["what"]), t["unix_ns"])

    anchor = rfc3339_ns(record["started_at"])
    trial = record["trials"][0]
    fault = trial["faults"][0]
    t_inject = trial["t_inject_s"]
    injected_at = next(e["at_s"] for e in record["events"] if e["event"] == "fault-injected")
    kill_wall = injected_at - fault["sent_s"]
    killed = fault["affected"]
    rec = trial["pod_recovery"]
    ready = [p["ready_s"] for p in rec if p.get("ready_s") is not None]

    # Truth of the replacements: pods the simulator created after the first delete was sent.
    inject_ns = anchor + int(t_inject * 1e9)
    sent_ns = anchor + int(fault["sent_s"] * 1e9)
    replacement_ready = [
        truth[(obj, "pod-ready")] - inject_ns
        for (obj, what), created in truth.items()
        if what == "pod-created" and created >= sent_ns and (obj, "pod-ready") in truth
    ]

    latency = {step: [] for step in STEP_TRUTH}
    unmatched = 0
    for e in record["events"]:
        if e["event"] != "recovery" or not e.get("object", "").startswith("pod/"):
            continue
        what = STEP_TRUTH.get(e.get("step"))
        if what is None:
            continue
        t = truth.get((e["object"][4:], what))
        if t is None:
            unmatched += 1
            continue
        latency[e["step"]].append((anchor + int(round(e["at_s"] * 1e9)) - t) / 1e6)
    every = [v for vs in latency.values() for v in vs]

    ms = lambda s: "%.1f ms" % (s * 1e3) if s is not None else "—"
    print("drill: exit %d, outcome %s, %s" % (run.returncode, record["outcome"], record.get("reason", "")))
    print("  pods killed: %d of %d (asked %d)" % (len(killed), pods, args.kill))
    print("  kill wall time (first delete sent → last delete answered): %s" % ms(kill_wall))
    print("  replacements tracked to ready by the drill: %d of %d" % (len(ready), len(killed)))
    print("  all replacements ready (drill's phases, after t_inject): %s" % ms(max(ready) if ready else None))
    if replacement_ready:
        print("  all replacements ready (simulator truth, %d pods): %s"
              % (len(replacement_ready), ms(max(replacement_ready) / 1e9)))
    verdict = trial.get("verdict") or {}
    ttr = verdict.get("ttr") or {}
    print("  drill TTR (slowest of %d readiness probes): %s" % (args.deployments, json.dumps(ttr) if ttr else "—"))
    print("  firedrill run: wall %.2fs, peak RSS %.1f MiB" % (run_wall, run_rss / 1024))
    print("  firedrill sim: peak RSS %.1f MiB" % (sim_rss / 1024))
    print("watch event latency (sim transition → firedrill watcher), ms:")
    print("  %-10s %6s %8s %8s %8s" % ("step", "n", "p50", "p99", "max"))
    for step, vs in list(latency.items()) + [("all", every)]:
        if vs:
            print("  %-10s %6d %8.2f %8.2f %8.2f" % (step, len(vs), pct(vs, 50), pct(vs, 99), max(vs)))
    if unmatched:
        print("  %d observed steps had no simulator truth" % unmatched)
    print("files: %s" % work)


if __name__ == "__main__":
    main()
