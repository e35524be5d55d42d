#!/usr/bin/env python3
"""Test support: a demo HTTP service under a supervisor that restarts it after a known delay.

    demo_service.py supervise --port-file F --pid-file F --truth F --restart-delay-ms N
        runs the service as a child; whenever it dies, waits N ms and starts it again.
    demo_service.py serve --port P --truth F
        the service: binds 127.0.0.1:P, records the instant it is listening, answers 200.

The truth file gets one line per fact, wall-clock nanoseconds (time.time_ns()):
    up <ns>      the service is listening (connections from now on are accepted)
    down <ns>    the supervisor saw the service exit
so a test can compare firedrill's measurements with the true outage.
"""
import os
import signal
import socket
import subprocess
import sys
import threading
import time


def record(path, what):
    with open(path, "a") as f:
        f.write(f"{what} {time.time_ns()}\n")
        f.flush()
        os.fsync(f.fileno())


def serve(port, truth):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(128)
    record(truth, "up")
    body = b"ok\n"
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n\r\n%s" % (len(body), body)
    def handle(conn):
        conn.settimeout(5)
        try:
            buf = b""
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                buf += chunk
                # answer every complete request on this keep-alive connection
                while b"\r\n\r\n" in buf:
                    _, buf = buf.split(b"\r\n\r\n", 1)
                    conn.sendall(resp)
        except OSError:
            pass
        finally:
            conn.close()

    while True:
        conn, _ = s.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def supervise(port_file, pid_file, truth, delay_ms):
    port = free_port()
    stop = {"now": False}

    def on_term(*_):
        stop["now"] = True
        try:
            child.kill()
        except Exception:
            pass

    signal.signal(signal.SIGTERM, on_term)
    first = True
    while not stop["now"]:
        child = subprocess.Popen([sys.executable, __file__, "serve", "--port", str(port), "--truth", truth])
        tmp = pid_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{child.pid}\n")
        os.rename(tmp, pid_file)
        if first:
            with open(port_file + ".tmp", "w") as f:
                f.write(f"{port}\n")
            os.rename(port_file + ".tmp", port_file)
            first = False
        child.wait()
        if stop["now"]:
            break
        record(truth, "down")
        time.sleep(delay_ms / 1000.0)


def arg(name):
    return sys.argv[sys.argv.index(name) + 1]


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(arg("--port")), arg("--truth"))
    else:
        supervise(arg("--port-file"), arg("--pid-file"), arg("--truth"), int(arg("--restart-delay-ms")))
