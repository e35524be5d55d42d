#!/usr/bin/env python3
"""Zone outage at scale: a third of a 1,000-node, 3-zone simulated cluster with 30,000 pods goes
down, and the drill follows every lost pod to a ready replacement (or to what holds it).

    cargo build --release
    python3 bench/node_scale.py [--nodes 1000] [--deployments 100] [--replicas 300]
                                [--bin target/release/firedrill] [--keep DIR]

Two processes, as a user runs them: `firedrill sim` serves NODES nodes in zones zone-a, zone-b
and zone-c (8 CPUs each) and DEPLOYMENTS x REPLICAS pods (100m CPU each, spread over the zones
by the simulated scheduler), and writes its ground truth on shutdown (`--truth-out`);
`firedrill run` executes a `zone-outage` of zone-a (`by: down`, the simulated power switch)
against it through a kube context, with one `kubernetes` readiness probe per deployment and one
of the nodes. Kubernetes' own timing decides the rest: nodes NotReady after the 2s grace, the
pods evicted after their 5s toleration, replacements scheduled on the other zones.

Reported: the scenario's load time, the drill's wall time and peak RSS (wait4), the simulator's
peak RSS (VmHWM), how many pods the outage took and how many the drill tracked to a ready
replacement (and how many it names as stuck), and when the last replacement was ready by the
drill's phases and by the simulator's truth.
"""
import argparse
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.request

from kube_scale import rfc3339_ns, vm_hwm_kib


def scenario(nodes, deployments, replicas):
    per_zone = [nodes // 3 + (1 if i < nodes % 3 else 0) for i in range(3)]
    lines = [
        "kubelet: { schedule-delay: 50ms, start-delay: 300ms, ready-delay: 500ms, termination-grace: 1s }",
        "node-lifecycle: { grace: 2s, default-toleration: 5s, boot-delay: 500ms }",
        "nodes:",
    ]
    for zone, count in zip("abc", per_zone):
        lines.append("  - { prefix: %s, count: %d, zone: zone-%s, cpu: 8, memory: 32Gi }" % (zone, count, zone))
    lines += ["namespaces:", "  scale:", '    labels: { firedrill.io/allow: "true" }', "    deployments:"]
    for i in range(deployments):
        lines.append(
            "      web-%03d: { replicas: %d, labels: { app: web-%03d, tier: web }, requests: { cpu: 100m } }"
            % (i, replicas, i)
        )
    return "\n".join(lines) + "\n"


def drill(deployments):
    probes = "".join(
        "  web-%03d:\n    kubernetes: { deployment: scale/web-%03d, ready: all }\n"
        "    every: 1s\n    every-during: 100ms\n" % (i, i)
        for i in range(deployments)
    )
    return (
        "name: zone-outage-scale\n"
        "environments: [bench]\n"
        "probes:\n%s"
        "  nodes-ready:\n    kubernetes: { nodes: all, ready: all }\n    every: 1s\n"
        "faults:\n"
        "  - zone-outage: { zone: zone-a, by: down, provider: simulated, max-percent: 40 }\n"
        "recovery: { objective: 2m, stable-for: 2s, timeout: 5m, probes: [%s] }\n"
        % (probes, ", ".join("web-%03d" % i for i in range(deployments)))
    )


ENVIRONMENTS = "environments:\n  bench:\n    kube-context: firedrill-sim\n"


def wait_all_ready(api, want, timeout):
    url = api + "/apis/apps/v1/namespaces/scale/deployments"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                items = json.load(r)["items"]
            if sum(i.get("status", {}).get("readyReplicas", 0) for i in items) == want:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit("the scenario did not become ready within %ds" % timeout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="target/release/firedrill")
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--deployments", type=int, default=100)
    ap.add_argument("--replicas", type=int, default=300)
    ap.add_argument("--keep", help="keep the scenario, drill, report and truth in this folder")
    args = ap.parse_args()
    binary = os.path.abspath(args.bin)
    if not os.access(binary, os.X_OK):
        raise SystemExit("%s is not built: run `cargo build --release` first" % args.bin)
    work = args.keep or tempfile.mkdtemp(prefix="node-scale-")
    os.makedirs(work, exist_ok=True)
    path = lambda name: os.path.join(work, name)
    with open(path("scenario.yaml"), "w") as f:
        f.write(scenario(args.nodes, args.deployments, args.replicas))
    with open(path("drill.yaml"), "w") as f:
        f.write(drill(args.deployments))
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
        wait_all_ready(api, pods, timeout=900)
        loaded = time.monotonic() - started
        print("scenario: %d nodes, %d pods ready %.1fs after `firedrill sim` was spawned"
              % (args.nodes, pods, loaded))
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
    reports = [os.path.join(d, f) for d, _, fs in os.walk(path("reports")) for f in fs if f.endswith(".json")]
    if len(reports) != 1:
        raise SystemExit("expected one report under %s, found %d (exit %d; see %s)"
                         % (path("reports"), len(reports), run.returncode, path("run.err")))
    with open(reports[0]) as f:
        record = json.load(f)
    anchor = rfc3339_ns(record["started_at"])
    trial = record["trials"][0]
    inject_ns = anchor + int(trial["t_inject_s"] * 1e9)
    lost = trial["pod_recovery"]
    rec = trial["pod_recovery"]
    ready = [p["ready_s"] for p in rec if p.get("ready_s") is not None]
    stuck = [p for p in rec if p.get("stuck")]
    created_after, ready_at = set(), {}
    with open(path("truth.jsonl")) as f:
        for line in f:
            t = json.loads(line)
            if t["unix_ns"] < inject_ns:
                continue
            if t["what"] == "pod-created":
                created_after.add(t["object"])
            elif t["what"] == "pod-ready":
                ready_at.setdefault(t["object"], t["unix_ns"])
    truth_ready = [ready_at[p] - inject_ns for p in created_after if p in ready_at]
    ms = lambda s: "%.2f s" % s if s is not None else "—"
    print("drill: exit %d, outcome %s" % (run.returncode, record["outcome"]))
    print("  reason: %s" % record.get("reason", ""))
    print("  pods on the lost zone: %d of %d" % (len(lost), pods))
    print("  replacements tracked to ready by the drill: %d; stuck: %d" % (len(ready), len(stuck)))
    print("  last replacement ready, drill's phases: %s; simulator truth (%d replacements): %s"
          % (ms(max(ready) if ready else None), len(truth_ready),
             ms(max(truth_ready) / 1e9 if truth_ready else None)))
    verdict = trial.get("verdict") or {}
    print("  drill TTR: %s" % json.dumps(verdict.get("ttr")))
    print("  firedrill run: wall %.1fs, peak RSS %.1f MiB" % (run_wall, run_rss / 1024))
    print("  firedrill sim: peak RSS %.1f MiB" % (sim_rss / 1024))
    print("files: %s" % work)


if __name__ == "__main__":
    main()
