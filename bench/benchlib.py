"""Shared plumbing of the side-by-side benchmarks in bench/ (Python 3.11 stdlib only).

Installs what a comparison needs (Chaos Toolkit from PyPI into bench/.venv, wrk/curl/time from
Debian's packages), builds firedrill and the benchmark examples in release mode, starts the
flip target (examples/flip_target.rs) on 127.0.0.1, runs a command while measuring its CPU
time, and prints tables. Chaos Toolkit is always run with --no-version-check: without it every
chaos command first contacts a release server on the internet.
"""
import datetime
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, "bench", ".venv")
# The newest release that installs on Python 3.11; pinned so reruns compare like with like.
CHAOSTOOLKIT = "chaostoolkit==1.19.0"


def say(msg):
    print(msg, file=sys.stderr, flush=True)


def ensure_apt(*commands_and_packages):
    """Installs Debian packages for missing commands: pairs like ("wrk", "wrk")."""
    missing = [pkg for cmd, pkg in commands_and_packages if not shutil.which(cmd) and not os.path.exists(cmd)]
    if not missing:
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    say("installing from Debian: " + " ".join(missing))
    subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True)
    subprocess.run(sudo + ["apt-get", "install", "-y", "-qq"] + missing, check=True,
                   env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def ensure_chaos():
    """Chaos Toolkit in bench/.venv (from PyPI); returns the command prefix to run it."""
    chaos = os.path.join(VENV, "bin", "chaos")
    if not os.path.exists(chaos):
        say("installing %s from PyPI into %s" % (CHAOSTOOLKIT, os.path.relpath(VENV, ROOT)))
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        subprocess.run([os.path.join(VENV, "bin", "pip"), "install", "-q", CHAOSTOOLKIT], check=True)
    return [chaos, "--no-version-check"]


def chaos_version():
    out = subprocess.run(ensure_chaos() + ["--version"], capture_output=True, text=True)
    return out.stdout.strip()


def build(examples=()):
    """cargo build --release of firedrill and the given examples; returns {name: path}.

    Two invocations, the binary last: built together with examples, the binary would link
    the dev-only features examples pull in (tokio's test-util) and measure bigger than the
    binary users run."""
    if examples:
        cmd = ["cargo", "build", "--release"]
        for e in examples:
            cmd += ["--example", e]
        subprocess.run(cmd, cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "--release", "--bin", "firedrill"], cwd=ROOT, check=True)
    out = {"firedrill": os.path.join(ROOT, "target", "release", "firedrill")}
    for e in examples:
        out[e] = os.path.join(ROOT, "target", "release", "examples", e)
    return out


def pinned(cpu, cmd):
    """The command pinned to one CPU with taskset, or as it is when cpu is None."""
    return cmd if cpu is None else ["taskset", "-c", str(cpu)] + cmd


class Target:
    """examples/flip_target.rs on 127.0.0.1: fails for known windows and logs the truth."""

    def __init__(self, binary, cpu=None):
        self.proc = subprocess.Popen(pinned(cpu, [binary]), stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "listening":
            self.proc.kill()
            sys.exit("flip_target did not start: %r" % line)
        self.url = line[1]

    def _call(self, method, path):
        req = urllib.request.Request(self.url + path, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.read().decode()

    def reset(self):
        self._call("POST", "/reset")

    def flips(self):
        """[(down_ns, up_ns)] in order."""
        downs, ups = [], []
        for line in self._call("GET", "/flips").splitlines():
            what, at = line.split()
            (downs if what == "down" else ups).append(int(at))
        return list(zip(downs, ups))

    def arrivals(self):
        return [int(x) for x in self._call("GET", "/arrivals").split()]

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def run_wait4(cmd, cwd=None, env=None, timeout=None, poll=0.005):
    """Runs a command to completion (killed after `timeout` s); returns (exit code, wall s,
    the child's own rusage from wait4, stdout bytes, stderr bytes). stdin is /dev/null."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        deadline = None if timeout is None else t0 + timeout
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if deadline and time.monotonic() > deadline:
                p.kill()
                pid, status, ru = os.wait4(p.pid, 0)
                break
            time.sleep(poll)
        wall = time.monotonic() - t0
        out.seek(0)
        err.seek(0)
        return os.waitstatus_to_exitcode(status), wall, ru, out.read(), err.read()


def run_measured(cmd, cwd=None, timeout=None):
    """Runs a command to completion; returns (exit code, wall s, CPU s user+sys, stdout, stderr).

    The CPU time is the child's own (wait4), with everything it waited for, not ours.
    """
    rc, wall, ru, out, err = run_wait4(cmd, cwd=cwd, timeout=timeout)
    return rc, wall, ru.ru_utime + ru.ru_stime, out.decode(errors="replace"), err.decode(errors="replace")


def iso_ns(stamp):
    """Wall-clock ns of an ISO 8601 / RFC 3339 stamp with up to 9 fractional digits."""
    stamp = stamp.replace("Z", "+00:00")
    frac_ns = 0
    if "." in stamp:
        head, rest = stamp.split(".", 1)
        digits = rest[: len(rest) - len(rest.lstrip("0123456789"))]
        tz = rest[len(digits):]
        frac_ns = int((digits + "000000000")[:9])
        stamp = head + tz
    dt = datetime.datetime.fromisoformat(stamp)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return int(dt.timestamp()) * 1_000_000_000 + frac_ns


def midpoint_bracket(samples, down_ns, until_ns):
    """firedrill's TTR rule applied to any tool's checks: samples are (start_ns, end_ns, ok).

    Among the checks that started in [down_ns, until_ns), the recovery happened after the last
    failing check started and before the first passing check after it ended; the estimate is
    that bracket's midpoint. Returns (estimate_ns, lower_ns, upper_ns), or None when no check
    failed (the window was missed) or none passed after the last failure.
    """
    window = [s for s in samples if down_ns <= s[0] < until_ns]
    last_fail = max((i for i, s in enumerate(window) if not s[2]), default=None)
    if last_fail is None or last_fail + 1 >= len(window):
        return None
    lo, hi = window[last_fail][0], window[last_fail + 1][1]
    return (lo + (hi - lo) // 2, lo, hi)


def pct(values, p):
    """The p-th percentile (nearest rank) of values; None when empty."""
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, max(0, math.ceil(p / 100 * len(v)) - 1))]


def fmt_s(seconds):
    """A duration for people: µs, ms or s with three significant digits."""
    if seconds is None:
        return "—"
    a = abs(seconds)
    if a < 1e-3:
        return "%.3g µs" % (seconds * 1e6)
    if a < 1:
        return "%.3g ms" % (seconds * 1e3)
    return "%.3g s" % seconds


def table(headers, rows):
    """Prints a Markdown table (pastes into BENCHMARKS.md as it is)."""
    cells = [headers] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"
    print(line(headers))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in cells[1:]:
        print(line(r))


def machine():
    """One line for the table's caption: date, CPUs and load."""
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    return "%s UTC, %d CPUs, load average %s" % (
        datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"), os.cpu_count(), load)


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)


def median(values):
    return statistics.median(values) if values else None
