#!/usr/bin/env python3
"""Recovery measurement truth, side by side: firedrill vs Chaos Toolkit vs a tight probe loop.

    python3 bench/truth-vs-chaostoolkit.py [--reps 3] [--windows-ms 100,300,1000,3000,10000]

The target (examples/flip_target.rs, on 127.0.0.1) fails with 503 for a window when asked
(POST /fail?ms=N&jitter=J: N ms plus a random 0..J ms, J = the probe interval, so that window
ends fall at random phases of the probe schedules) and logs the wall-clock instants it really
flipped: the truth.
Each tool injects the same windows itself and probes GET /healthz:

- firedrill: one `firedrill run` per window (`--repeat` reps), a `command` fault that POSTs
  /fail with curl, an http probe with `every` = F, run three times: with `every-during` = F
  (the same sampling as Chaos Toolkit throughout), with its default adaptive `every-during`
  (F/10, at least 1ms, from the injection on and while failing), and with `every-during: 0s`
  (the same steady-state rate, back to back while failing); at its finest, every 1ms and
  `every-during: 0s`. Its TTR is the one it
  reports (the midpoint of its recovery bracket), turned into an instant with the trial's
  `injected_at`.
- Chaos Toolkit: one `chaos run --hypothesis-strategy during-method-only
  --hypothesis-frequency F` whose method POSTs /fail for every window, each action pausing
  until the window is long over. Chaos Toolkit reports no TTR, so it is derived from the
  journal the way firedrill derives its own: among the continuous hypothesis checks of each
  window, the recovery lies between the start of the last failing check and the end of the
  first passing one; the estimate is the midpoint. That is the fairest reading of its journal
  (the same information firedrill uses, the same rule).
- tight loop (examples/tight_probe.rs): back-to-back checks on one kept-alive connection with
  blocking sockets, the same bracket rule: the floor any HTTP prober can reach here.

TTR error = estimated recovery instant − true `up` instant. Each tool measures TTR from its
own injection instant, so this is exactly the error of its TTR. A window no check of a tool
saw failing is counted as missed (it has no TTR). CPU is the tool's own user+system time
(wait4), also per check as counted by the target.
"""
import argparse
import json
import os
import sys
import tempfile

import benchlib as b

FIREDRILL_YAML = """name: truth-vs-chaostoolkit
description: the target fails for {ms}ms; how close is the reported TTR to the truth?
targets: {{}}
probes:
  healthz:
    http: {{ url: "{url}/healthz", expect-status: 200, timeout: 1s }}
    every: {every}
{during}faults:
  - command: {{ run: [curl, -sf, -XPOST, "{url}/fail?ms={ms}&jitter={jitter}"] }}
recovery: {{ objective: {timeout}, stable-for: {stable}, timeout: {timeout} }}
repeat: {reps}
cooldown: 200ms
"""


def human_interval(f):
    return "%dms" % round(f * 1000) if f < 1 else "%gs" % f


def settle_s(f):
    """How long to keep probing after a window: enough checks to see the recovery."""
    return max(2 * f, 0.3)


def jitter_ms(rate):
    """Each window is lengthened by a random 0..one probe interval, drawn by the target, so its
    end falls at a random phase of the probe's schedule (firedrill starts its schedule at the
    injection; with windows that are whole multiples of the interval every trial would hit the
    same phase and the errors would not be a sample of anything)."""
    return max(1, round(rate * 1000))


def firedrill(bins, target, rate, windows, reps, work, during="same"):
    """`during`: "same" (every-during = every), "adaptive" (firedrill's default, every/10 and at
    least 1ms), or an explicit interval in seconds (0 = back to back while failing)."""
    if during == "same":
        during_line = "    every-during: %s\n" % human_interval(rate)
    elif during == "adaptive":
        during_line = ""
    else:
        during_line = "    every-during: %s\n" % ("0s" if during == 0 else human_interval(during))
    errors, missed, cpu, wall, checks = [], 0, 0.0, 0.0, 0
    for ms in windows:
        target.reset()
        path = os.path.join(work, "drill.yaml")
        with open(path, "w") as f:
            f.write(FIREDRILL_YAML.format(url=target.url, ms=ms, every=human_interval(rate), during=during_line,
                                          stable=human_interval(settle_s(rate)), jitter=jitter_ms(rate),
                                          timeout="%ds" % (ms // 1000 + 30), reps=reps))
        reports = os.path.join(work, "reports-%s-%s-%d" % (rate, during, ms))
        code, w, c, out, err = b.run_measured([bins["firedrill"], "run", path, "--no-live", "--report-dir", reports])
        if code != 0:
            sys.exit("firedrill run failed (exit %d):\n%s\n%s" % (code, out, err[-2000:]))
        cpu, wall = cpu + c, wall + w
        checks += len(target.arrivals())
        record = next(json.load(open(os.path.join(r, n))) for r, _, ns in os.walk(reports) for n in ns if n.endswith(".json"))
        flips = target.flips()
        if len(flips) != len(record["trials"]):
            sys.exit("firedrill: %d trials but %d windows" % (len(record["trials"]), len(flips)))
        for trial, (_, up) in zip(record["trials"], flips):
            ttr = trial["verdict"].get("ttr")
            if not ttr:
                missed += 1
                b.say("firedrill at %s missed a %dms window: %s" % (human_interval(rate), ms, trial["verdict"]))
                continue
            estimate = b.iso_ns(trial["injected_at"]) + round(ttr["estimate_s"] * 1e9)
            errors.append((estimate - up) / 1e9)
    return errors, missed, cpu, wall, checks


def chaos_experiment(url, windows, reps, rate, jitter):
    method = []
    for r in range(reps):
        for ms in windows:
            method.append({
                "type": "action", "name": "fail-%dms-%d" % (ms, r),
                "provider": {"type": "http", "url": "%s/fail?ms=%d&jitter=%d" % (url, ms, jitter), "method": "POST",
                             "timeout": 5},
                "pauses": {"after": (ms + jitter) / 1000 + settle_s(rate)},
            })
    return {
        "version": "1.0.0",
        "title": "truth-vs-chaostoolkit",
        "description": "the target fails for known windows; continuous hypothesis during the method",
        "steady-state-hypothesis": {
            "title": "healthz answers 200",
            "probes": [{"type": "probe", "name": "healthz", "tolerance": 200,
                        "provider": {"type": "http", "url": url + "/healthz", "timeout": 1}}],
        },
        "method": method,
    }


def chaos(chaos_cmd, target, rate, windows, reps, work, jitter):
    target.reset()
    exp = os.path.join(work, "experiment.json")
    journal = os.path.join(work, "journal-%s.json" % rate)
    b.write_json(exp, chaos_experiment(target.url, windows, reps, rate, jitter))
    code, wall, cpu, out, err = b.run_measured(
        chaos_cmd + ["--log-file", os.path.join(work, "chaostoolkit.log"), "run", "--journal-path", journal,
                     "--hypothesis-strategy", "during-method-only", "--hypothesis-frequency", str(rate), exp],
        cwd=work)
    if not os.path.exists(journal):
        sys.exit("chaos run wrote no journal (exit %d):\n%s\n%s" % (code, out, err[-2000:]))
    checks = len(target.arrivals())
    samples = []
    for state in json.load(open(journal))["steady_states"]["during"]:
        for p in state["probes"]:
            samples.append((b.iso_ns(p["start"]), b.iso_ns(p["end"]), bool(p.get("tolerance_met"))))
    return brackets_to_errors(samples, target.flips()) + (cpu, wall, checks)


def brackets_to_errors(samples, flips):
    errors, missed = [], 0
    for i, (down, up) in enumerate(flips):
        until = flips[i + 1][0] if i + 1 < len(flips) else float("inf")
        br = b.midpoint_bracket(samples, down, until)
        if br is None:
            missed += 1
        else:
            errors.append((br[0] - up) / 1e9)
    return errors, missed


def tight(bins, target, windows, reps):
    target.reset()
    code, wall, cpu, out, err = b.run_measured([bins["tight_probe"], target.url] + [str(ms) for ms in windows] * reps)
    if code != 0:
        sys.exit("tight_probe failed: %s" % err)
    checks = len(target.arrivals())
    errors = []
    brackets = [tuple(int(x) for x in line.split()[1:3]) for line in out.splitlines() if line.startswith("bracket")]
    for (lo, hi), (_, up) in zip(brackets, target.flips()):
        errors.append((lo + (hi - lo) // 2 - up) / 1e9)
    return errors, len(windows) * reps - len(brackets), cpu, wall, checks


def row(tool, interval, res, n):
    errors, missed, cpu, wall, checks = res
    abs_err = [abs(e) for e in errors]
    return [tool, interval, "%d/%d" % (len(errors), n), b.fmt_s(b.pct(abs_err, 50)), b.fmt_s(b.pct(abs_err, 99)),
            b.fmt_s(max(abs_err, default=None)), b.fmt_s(b.median(errors)),
            "%.2f s" % cpu, "%.0f%%" % (100 * cpu / wall if wall else 0),
            b.fmt_s(cpu / checks if checks else None), checks]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--reps", type=int, default=3, help="trials per window and tool")
    ap.add_argument("--windows-ms", default="100,300,1000,3000,10000")
    ap.add_argument("--rates", default="1,0.1,0.01", help="equal probe intervals in seconds")
    ap.add_argument("--json", help="also write the raw errors here")
    a = ap.parse_args()
    windows = [int(x) for x in a.windows_ms.split(",")]
    rates = [float(x) for x in a.rates.split(",")]
    b.ensure_apt(("curl", "curl"), ("taskset", "util-linux"))
    chaos_cmd = b.ensure_chaos()
    bins = b.build(["flip_target", "tight_probe"])
    target = b.Target(bins["flip_target"])
    n = len(windows) * a.reps
    rows, raw = [], {}
    try:
        with tempfile.TemporaryDirectory() as work:
            # Equal probe rates: firedrill with every-during = every (the same sampling as
            # Chaos Toolkit throughout), with its default adaptive sampling (the same
            # steady-state rate, every/10 once the fault is in and while failing), and with
            # every-during 0s (the same steady-state rate, back to back while failing).
            for rate in rates:
                b.say("chaos at %s ..." % rate)
                ch = chaos(chaos_cmd, target, rate, windows, a.reps, work, jitter_ms(rate))
                variants = [("same", ""),
                            ("adaptive", ", every-during %s (default)" % human_interval(max(rate / 10, 0.001))),
                            (0, ", every-during 0s")]
                for during, label in variants:
                    b.say("firedrill at %s%s ..." % (human_interval(rate), label))
                    fd = firedrill(bins, target, rate, windows, a.reps, work, during)
                    rows.append(row("firedrill", "every " + human_interval(rate) + label, fd, n))
                    raw["firedrill %s %s" % (rate, during)] = fd[0]
                rows.append(row("chaostoolkit", human_interval(rate), ch, n))
                raw["chaos %s" % rate] = ch[0]
            # Each tool's finest: firedrill checks back to back while failing (every-during: 0s,
            # every 1ms otherwise); Chaos Toolkit at frequency 0 (checks back to back).
            b.say("firedrill at its finest ...")
            fd = firedrill(bins, target, 0.001, windows, a.reps, work, 0)
            rows.append(row("firedrill", "every 1ms, every-during 0s (finest)", fd, n))
            raw["firedrill finest"] = fd[0]
            b.say("chaos at 0 ...")
            ch = chaos(chaos_cmd, target, 0.0, windows, a.reps, work, jitter_ms(0.001))
            rows.append(row("chaostoolkit", "0 (finest)", ch, n))
            raw["chaos 0"] = ch[0]
            b.say("tight loop ...")
            tl = tight(bins, target, windows, a.reps)
            rows.append(row("tight loop", "back to back", tl, n))
            raw["tight"] = tl[0]
    finally:
        target.stop()
    print("TTR error vs truth, windows %s ms × %d; %s; %s" % (a.windows_ms, a.reps, b.chaos_version(), b.machine()))
    b.table(["tool", "probe interval", "windows seen", "|error| p50", "|error| p99", "|error| max",
             "error median (signed)", "CPU", "CPU % of a core", "CPU per check", "checks"], rows)
    if a.json:
        b.write_json(a.json, raw)


if __name__ == "__main__":
    main()
