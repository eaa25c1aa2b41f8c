"""Learn-to-visible across processes, and memory per process, of ``shoal serve --processes N``.

One client sends labeled VW lines over TCP at a steady rate (``--rate`` lines/s, in small
batches every 10 ms); each reply is the line's acknowledgement (durable in the event log). A
monitor in this process maps the server's shared control block, as a front end does, and notes
when each event's sequence number is published -- from then on every front end predicts with
it. Reported: seconds from sending a line to its acknowledgement, and to its being visible on
every front end (p50, p99, max); then each process's PSS (proportional set size: a page shared
by k processes counts 1/k in each), which shows the weights held once.

    python benchmarks/bench_visible.py [--processes 2] [--rate 1000] [--duration 10] [--bits 22]

Nothing here is an assertion; run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from shoal import FeatureSpec, LearnerConfig, Model
from shoal.serve.cluster.shmweights import Reader

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def pss_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    m = re.search(r"^Pss:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else -1


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def line(i: int) -> bytes:
    label = 1 if i % 3 else -1
    return f"{label} |u user{i % 1000} item{i % 5000} |v x:{(i % 7) / 7:.3f}\n".encode()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--processes", type=int, default=2, help="front-end processes")
    p.add_argument("--rate", type=int, default=1000, help="labeled lines per second")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of sending")
    p.add_argument("--bits", type=int, default=22, help="hash bits (the weights' size)")
    args = p.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-visible-"))
    model = work / "m.shoal"
    Model(FeatureSpec(bits=args.bits, interactions=("uv",)), LearnerConfig()).save(model)
    port = free_port()
    shoal = str(Path(sys.executable).with_name("shoal"))
    cmd = [shoal, "serve", str(model), "--state-dir", str(work / "state"), "--tcp",
           f"{HOST}:{port}", "--processes", str(args.processes)]  # fmt: skip
    server = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert server.stderr is not None
    for text in server.stderr:
        if "replayed) on" in text:
            break
    else:
        raise SystemExit("shoal serve did not start")
    try:
        run(args, server.pid, port)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)


def run(args: argparse.Namespace, pid: int, port: int) -> None:
    reader = Reader(Path(f"/dev/shm/shoal-serve-{pid}"))
    first = reader.control.read()[2] + 1  # the first event's seq (one client: in send order)
    n = int(args.rate * args.duration)
    sent = np.full(n, np.nan)
    acked = np.full(n, np.nan)
    visible = np.full(n, np.nan)
    done = threading.Event()

    def monitor() -> None:
        seen = 0
        while seen < n and not done.is_set():
            applied = reader.control.read()[2] - first + 1
            if applied > seen:
                visible[seen : min(applied, n)] = time.perf_counter()
                seen = applied
            time.sleep(0.0002)

    sock = socket.create_connection((HOST, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def replies() -> None:
        got, buffer = 0, b""
        while got < n:
            chunk = sock.recv(1 << 16)
            if not chunk:
                return
            buffer += chunk
            k = buffer.count(b"\n")
            now = time.perf_counter()
            acked[got : got + k] = now
            got += k
            buffer = buffer[buffer.rfind(b"\n") + 1 :]

    threads = [threading.Thread(target=monitor), threading.Thread(target=replies)]
    for t in threads:
        t.start()
    per_tick = max(1, args.rate // 100)
    start = time.perf_counter()
    for i in range(0, n, per_tick):
        delay = start + i / args.rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        batch = b"".join(line(j) for j in range(i, min(n, i + per_tick)))
        sent[i : i + per_tick] = time.perf_counter()
        sock.sendall(batch)
    threads[1].join(timeout=60)
    done.set()
    threads[0].join()
    sock.close()

    def pct(x: np.ndarray) -> str:
        x = x[np.isfinite(x)] * 1000
        if not len(x):
            return "none"
        p50, p99 = np.percentile(x, [50, 99])
        return f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {x.max():.1f} ms ({len(x)} events)"

    print(f"shoal serve --processes {args.processes}, {args.rate} labeled lines/s for "
          f"{args.duration:g} s, {args.bits} bits")  # fmt: skip
    print(f"sent -> acknowledged:          {pct(acked - sent)}")
    print(f"sent -> visible on every front end: {pct(visible - sent)}")
    weights_mib = (1 << args.bits) * 4 / 2**20
    print(f"weights: {weights_mib:.0f} MiB; PSS per process (KiB):")
    print(f"  supervisor {pid}: {pss_kib(pid)}")
    learner = reader.pid
    for child in children(pid):
        role = "learner" if child == learner else "front end"
        print(f"  {role} {child}: {pss_kib(child)}")


if __name__ == "__main__":
    main()
