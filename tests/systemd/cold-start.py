#!/usr/bin/env python3
"""Cold start of robokud to READY=1: starts the binary N times on an empty data dir with
$NOTIFY_SOCKET pointing at a datagram socket, and prints the median time from spawn to READY=1.

Usage: tests/systemd/cold-start.py [ROBOKUD_BINARY] [N]   (default: $CARGO_TARGET_DIR/release/robokud, 10)
A manual measurement, not a test: it asserts nothing about the number.
"""
import os, signal, socket, statistics, subprocess, sys, tempfile, time

target = os.environ.get("CARGO_TARGET_DIR", "target")
binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(target, "release", "robokud")
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 10
times = []
for i in range(runs):
    with tempfile.TemporaryDirectory() as d:
        notify = os.path.join(d, "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(notify)
        sock.settimeout(30)
        config = os.path.join(d, "robokud.toml")
        open(config, "w").close()
        env = dict(os.environ, NOTIFY_SOCKET=notify, ROBOKU_LOG="warn")
        start = time.monotonic()
        p = subprocess.Popen([binary, "--config", config, "--data-dir", os.path.join(d, "data"),
                              "--no-cgroups"], env=env, stdin=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        while True:
            msg = sock.recv(4096).decode()
            if "READY=1" in msg.splitlines():
                break
        times.append(time.monotonic() - start)
        p.send_signal(signal.SIGTERM)
        p.wait(30)
        sock.close()
ms = sorted(t * 1000 for t in times)
print(f"robokud cold start to READY=1 over {runs} runs: median {statistics.median(ms):.1f} ms "
      f"(min {ms[0]:.1f}, max {ms[-1]:.1f})")
