#!/usr/bin/env python3
"""Time from exec of `mfadmin serve` to its first `/healthz` 200, finely: a raw socket asks every
millisecond (no curl process per try). The store is the one MFADMIN_DATA_DIR (or the config) names;
nothing else may hold it. Each server is stopped (SIGTERM) before the next starts.

Usage: bench/serve-ready.py MFADMIN [STARTS=7] [PORT=7395]
Prints the median and every start, in milliseconds.
"""
import os
import socket
import statistics
import subprocess
import sys
import time

mfadmin = sys.argv[1]
starts = int(sys.argv[2]) if len(sys.argv) > 2 else 7
port = int(sys.argv[3]) if len(sys.argv) > 3 else 7395
request = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
env = dict(os.environ, RUST_LOG="warn", MFADMIN_SERVER_SOCKET="")


def answered() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(request)
            return s.recv(16).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


times = []
for _ in range(starts):
    t0 = time.perf_counter()
    server = subprocess.Popen([mfadmin, "serve", "--listen", f"127.0.0.1:{port}"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while not answered():
            if server.poll() is not None:
                sys.exit(f"mfadmin serve stopped: {server.stderr.read().decode(errors='replace')}")
            if time.perf_counter() - t0 > 60:
                sys.exit("mfadmin serve did not answer /healthz within 60 s")
            time.sleep(0.001)
        times.append((time.perf_counter() - t0) * 1000)
    finally:
        server.terminate()
        server.wait(timeout=60)
print(f"serve ready (raw /healthz every 1 ms): median {statistics.median(times):.0f} ms of "
      f"[{' '.join(f'{t:.0f}' for t in sorted(times))}] ms")
