"""Serving throughput and latency: shoal's server, Vowpal Wabbit's daemon, FastAPI + River.

Every server is its own process on loopback, started from a comparable model: shoal and VW are
trained offline on the same click file with the same settings as bench_train.py (logistic loss,
the same bits), River's LogisticRegression on a slice of it. The load generator
(serve_load.py) is another process. Every server gets the same VW lines; every reply is checked.
See benchmarks/README.md.

``--shoal-models linear fm`` serves each kind of model (linear, a factorization machine of
``--rank``, a field-aware one of the click file's two namespaces) from a server of its own, in
turn in each cell, and reports each kind's throughput against the linear one's.

    python benchmarks/bench_serve.py [--quick] [--concurrency 1 16 64] [--duration S]
        [--shoal-models linear fm ffm] [--rank K]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from bench_train import ROOT, DataSet, clicks, commands, spawn, table
from serve_load import GRACE, check_body, check_line

HERE = Path(__file__).resolve().parent
NAME = "clicks"  # the served model's name in shoal's URLs
KINDS = ("linear", "fm", "ffm")  # of shoal's models (--shoal-models)
FFM_FIELDS = "cn"  # the click file's namespaces: categories, numbers
OIP_INPUT = "lines"  # the name of the Open Inference Protocol input tensor of VW lines
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Target:
    """One server behind one interface; ``peer``: the one shoal's throughput is divided by."""

    server: str  # shoal, river, vw, echo
    interface: str  # JSON API, OIP v2, HTTP, TCP, TCP pipelined
    peer: bool = False
    kind: str = "linear"  # shoal's model: linear, fm, ffm

    @property
    def tcp(self) -> bool:
        return self.interface.startswith("TCP")

    @property
    def name(self) -> str:
        """The server's name in ports, logs and reports: shoal's FM is ``shoal-fm``."""
        return self.server if self.kind == "linear" else f"{self.server}-{self.kind}"

    @property
    def label(self) -> str:
        return f"{self.name} {self.interface}"


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    targets: tuple[Target, ...]
    batch: int = 1  # records per HTTP request
    learn_every: int = 0  # every n-th request (HTTP) or line (TCP) is a labeled one; 0: never


def scenarios(batch: int, kinds: tuple[str, ...] = ("linear",)) -> list[Scenario]:
    """The scenarios, each of shoal's targets once per model kind in ``kinds``."""
    out = []
    for sc in _scenarios(batch):
        each = [[replace(t, kind=k) for k in kinds] if t.server == "shoal" else [t]
                for t in sc.targets]  # fmt: skip
        out.append(replace(sc, targets=tuple(t for ts in each for t in ts)))
    return out


def _scenarios(batch: int) -> list[Scenario]:
    river, vw = Target("river", "HTTP", peer=True), Target("vw", "TCP", peer=True)
    vw_pipe = Target("vw", "TCP pipelined", peer=True)
    shoal_json, shoal_tcp = Target("shoal", "JSON API"), Target("shoal", "TCP")
    shoal_pipe = Target("shoal", "TCP pipelined")
    echo = (Target("echo", "HTTP"), Target("echo", "TCP"), Target("echo", "TCP pipelined"))
    return [
        Scenario("client", "the load generator against a trivial server (its ceiling)", echo),
        Scenario("http-single", "one record per HTTP request", (shoal_json, river)),
        Scenario(
            "http-batch",
            f"{batch} records per HTTP request",
            (Target("shoal", "OIP v2"), shoal_json, river),
            batch=batch,
        ),
        Scenario("tcp-pipelined", "VW lines over TCP, pipelined", (shoal_pipe, vw_pipe)),
        Scenario("tcp-single", "VW lines over TCP, one at a time", (shoal_tcp, vw)),
        Scenario(
            "http-mix",
            "90% predict / 10% learn requests, one record each",
            (shoal_json, river),
            learn_every=10,
        ),
        Scenario(
            "tcp-mix",
            "90% unlabeled / 10% labeled lines over TCP, pipelined",
            (shoal_pipe, vw_pipe),
            learn_every=10,
        ),
    ]


@dataclass
class Pool:
    """The request lines: the click test rows, tagged ``'rI``, without and with their labels."""

    lines: list[str]
    labeled: list[str]
    labels: np.ndarray

    @classmethod
    def read(cls, path: Path) -> Pool:
        lines, labeled, labels = [], [], []
        with path.open(encoding="utf-8") as f:
            for i, row in enumerate(f):
                label, feats = row.rstrip("\n").split(" ", 1)
                lines.append(f"'r{i} {feats}")
                labeled.append(f"{label} 'r{i} {feats}")
                labels.append(float(label))
        return cls(lines, labeled, np.array(labels))


# -- processes -------------------------------------------------------------------------------


class Processes:
    """Servers and clients, each in its own session; all stopped on exit, however it comes.

    SIGTERM first (shoal drains and snapshots; VW's daemon kills its children), then SIGKILL for
    whatever is left in the process's group.
    """

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)
        self.procs.clear()

    def start(self, name: str, argv: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        with (self.logdir / f"serve-{name}.log").open("wb") as log:
            proc = subprocess.Popen(argv, stdout=kw.pop("stdout", log), stderr=log,
                                    start_new_session=True, **kw)  # fmt: skip
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        return (self.logdir / f"serve-{name}.log").read_text(errors="replace")[-1500:]

    @staticmethod
    def stop(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(15)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # the group is ours: the leader's pid
        proc.wait()


class ServerExited(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def http_call(port: int, method: str, path: str, doc: Any = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        body = None if doc is None else json.dumps(doc)
        conn.request(method, path, body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def send_lines(port: int, lines: list[str]) -> list[bytes]:
    """Send VW lines on one connection (all at once) and read one reply line for each."""
    with socket.create_connection((HOST, port), timeout=30) as s:
        s.sendall("".join(x + "\n" for x in lines).encode("utf-8"))
        f = s.makefile("rb")
        return [f.readline() for _ in lines]


def wait_until(proc: subprocess.Popen[bytes], probe: Any, what: str, seconds: float = 180) -> None:
    """Call ``probe`` until it returns True; raise if ``proc`` exits or time runs out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerExited(f"{what} exited with status {proc.returncode}")
        try:
            if probe():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise ServerExited(f"{what} was not ready after {seconds:g} s")


# -- servers -----------------------------------------------------------------------------------


@dataclass
class Running:
    """The servers of one scenario: their ports, and the targets skipped with the reason."""

    ports: dict[str, int] = field(default_factory=dict)  # shoal, shoal-tcp, river, vw, echo...
    skipped: dict[Target, str] = field(default_factory=dict)
    checks: dict[str, str] = field(default_factory=dict)  # server -> its model check
    sessions: dict[str, int] = field(default_factory=dict)  # server -> its session (leader pid)

    def port(self, t: Target) -> int:
        return self.ports[f"{t.name}-tcp" if t.tcp else t.name]


def start_servers(sc: Scenario, procs: Processes, models: dict[str, Path], args: Any,
                  state: Path, pool: Pool) -> Running:  # fmt: skip
    run = Running()
    servers = {t.server for t in sc.targets}
    models = {**models, "shoal-linear": models["shoal"]}
    py = sys.executable
    if "echo" in servers:
        run.ports |= {"echo": free_port(), "echo-tcp": free_port()}
        echo = [py, str(HERE / "serve_load.py"), "--echo", HOST]
        proc = procs.start("echo", [*echo, str(run.ports["echo"]), str(run.ports["echo-tcp"])])
        wait_until(proc, lambda: send_lines(run.ports["echo-tcp"], ["'x |"]), "the echo server")
    for kind in dict.fromkeys(t.kind for t in sc.targets if t.server == "shoal"):
        start_shoal(sc, procs, models, kind, state / sc.name, run, pool.lines[0],
                    args.shoal_processes)  # fmt: skip
    if "river" in servers:
        run.ports["river"] = port = free_port()
        argv = [py, str(HERE / "serve_river.py"), str(port), str(args.train), str(args.river_rows)]
        proc = procs.start("river", argv)
        run.sessions["river"] = proc.pid
        wait_until(proc, lambda: http_call(port, "GET", "/health")[0] == 200, "the River server")
    if "vw" in servers:
        run.ports["vw-tcp"] = port = free_port()
        children = str(max(args.concurrency) + 1)  # one per connection, one for the checks
        argv = [py, str(HERE / "serve_vw.py"), str(port), children, str(models["vw"])]
        proc = procs.start("vw", [*argv, "--link", "logistic"])
        run.sessions["vw"] = proc.pid
        wait_until(proc, lambda: send_lines(port, [pool.lines[0]])[0].endswith(b"\n"), "VW")
    for t in sc.targets:
        if t not in run.skipped and t.server != "echo" and t.name not in run.checks:
            run.checks[t.name] = model_check(t, run.port(t), pool)
    return run


def start_shoal(sc: Scenario, procs: Processes, models: dict[str, Path], kind: str, state: Path,
                run: Running, probe: str, processes: int | None = None) -> None:  # fmt: skip
    """``shoal serve`` of the ``kind`` model (with ``--tcp`` when a target needs it); targets it
    lacks are skipped."""
    me = Target("shoal", "", kind=kind).name
    run.ports[me] = port = free_port()
    argv = [str(Path(sys.executable).with_name("shoal")), "serve", str(models[f"shoal-{kind}"])]
    argv += ["--name", NAME, "--state-dir", str(state / kind), "--http", f"{HOST}:{port}"]
    if processes is not None:  # front-end processes (default: shoal's, one per core)
        argv += ["--processes", str(processes)]
    tcp = [t for t in sc.targets if t.name == me and t.tcp]
    if tcp:
        run.ports[f"{me}-tcp"] = free_port()
        argv += ["--tcp", f"{HOST}:{run.ports[f'{me}-tcp']}"]
    proc = procs.start(me, argv)
    run.sessions[me] = proc.pid
    try:
        wait_until(proc, lambda: http_call(port, "GET", "/v2/health/ready")[0] == 200, me)
    except ServerExited:
        said = procs.log(me)
        refusal = [line for line in said.splitlines() if "--tcp" in line]
        if tcp and refusal:
            for t in tcp:
                run.skipped[t] = f"`shoal serve` does not take --tcp yet: {refusal[-1].strip()}"
            return
        raise ServerExited(f"shoal serve did not start:\n{said}") from None
    if tcp:
        lines_port = run.ports[f"{me}-tcp"]
        wait_until(proc, lambda: send_lines(lines_port, [probe])[0].endswith(b"\n"), me + " TCP")
    oip = Target("shoal", "OIP v2", kind=kind)
    if oip in sc.targets:
        status, body = http_call(port, "POST", f"/v2/models/{NAME}/infer", oip_body(["| a"]))
        if status in (404, 405):
            route = f"/v2/models/{NAME}/infer"
            run.skipped[oip] = f"the server has no OIP route yet ({status} on {route})"
        elif status != 200 or check_body(body, oip_check(1)):
            run.skipped[oip] = f"OIP probe answered {status}: {body[:200]!r}"


def oip_body(lines: list[str]) -> dict[str, Any]:
    tensor = {"name": OIP_INPUT, "shape": [len(lines)], "datatype": "BYTES", "data": lines}
    return {"inputs": [tensor]}


def oip_check(n: int) -> dict[str, Any]:
    return {"path": ["outputs", 0, "data"], "count": n, "prob": True}


def model_check(t: Target, port: int, pool: Pool, n: int = 1000) -> str:
    """The AUC of the server's predictions on the first ``n`` request lines: the model it
    serves is the trained one, and its replies are predictions of those lines."""
    from shoal.model.metrics import auc

    lines = pool.lines[:n]
    if t.tcp:
        probs = [float(r.split()[0]) for r in send_lines(port, lines)]
    else:
        path = "/predict" if t.server == "river" else f"/v1/models/{NAME}/predict"
        status, body = http_call(port, "POST", path, {"records": lines})
        if status != 200:
            raise ServerExited(f"{t.label}: predict answered {status}: {body[:300]!r}")
        probs = json.loads(body)["predictions"]
    return f"AUC {auc(np.array(probs), pool.labels[:n]):.4f} on the first {n:,} request lines"


def healthy(t: Target, port: int, pool: Pool) -> bool:
    try:
        if t.tcp:
            return check_line(send_lines(port, [pool.lines[0]])[0], "r0", True) == ""
        path = {"shoal": "/v2/health/ready", "river": "/health"}.get(t.server)
        return path is None or http_call(port, "GET", path)[0] == 200
    except OSError:
        return False


# -- cells ----------------------------------------------------------------------------------


def http_requests(t: Target, sc: Scenario, pool: Pool) -> list[dict[str, Any]]:
    out = []
    b = sc.batch
    for k in range(len(pool.lines) // b):
        learn = sc.learn_every > 0 and k % sc.learn_every == sc.learn_every - 1
        lines = (pool.labeled if learn else pool.lines)[k * b : (k + 1) * b]
        doc: Any = {"records": lines}
        check = {"path": ["predictions"], "count": len(lines), "prob": True}
        if t.server == "shoal" and t.interface == "OIP v2":
            path, doc, check = f"/v2/models/{NAME}/infer", oip_body(lines), oip_check(len(lines))
        elif t.server == "shoal":
            path = f"/v1/models/{NAME}/{'learn' if learn else 'predict'}"
            if learn:
                check = {"path": ["seqs"], "count": len(lines)}
        else:  # river, echo
            path = "/learn" if learn else "/predict"
            if learn:
                check = {"path": ["learned"], "count": len(lines)}
        out.append({"path": path, "body": json.dumps(doc), "records": len(lines), "check": check})
    return out


def tcp_lines(sc: Scenario, pool: Pool) -> list[dict[str, Any]]:
    out = []
    for i in range(len(pool.lines)):
        learn = sc.learn_every > 0 and i % sc.learn_every == sc.learn_every - 1
        line = pool.labeled[i] if learn else pool.lines[i]
        out.append({"line": line, "tag": f"r{i}", "prob": not learn})
    return out


@dataclass
class Cell:
    scenario: str
    server: str
    interface: str
    clients: int
    seconds: float
    requests: int = 0  # with a right reply
    records: int = 0
    errors: int = 0
    client_cpu: float = 0.0  # seconds of CPU the load generator used in the window
    server_cpu: float = float("nan")  # seconds of CPU the server's processes used in it
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    error_samples: list[str] = field(default_factory=list)


def run_cell(t: Target, sc: Scenario, run: Running, pool: Pool, clients: int, args: Any,
             procs: Processes, workdir: Path) -> Cell:  # fmt: skip
    job: dict[str, Any] = {"protocol": "tcp" if t.tcp else "http", "host": HOST,
                           "port": run.port(t), "warmup": args.warmup,
                           "duration": args.duration}  # fmt: skip
    if t.tcp:
        depth = args.pipeline if "pipelined" in t.interface else 1
        job |= {"lines": tcp_lines(sc, pool), "pipeline": depth}
    else:
        job["requests"] = http_requests(t, sc, pool)
    n = min(args.client_procs, clients)
    job["start_at"] = time.time() + 1.0  # time for every client process to start
    loads = []
    for i in range(n):
        path = workdir / f"job-{i}.json"
        path.write_text(json.dumps(job | {"connections": len(range(i, clients, n))}))
        argv = [sys.executable, str(HERE / "serve_load.py"), str(path)]
        loads.append(procs.start(f"load-{i}", argv, stdout=subprocess.PIPE))
    cell = Cell(sc.name, t.name, t.interface, clients, args.duration)
    session = run.sessions.get(t.name)
    if session is not None:  # the server's CPU over the recorded window
        time.sleep(max(0.0, job["start_at"] + args.warmup - time.time()))
        before = session_cpu(session)
        time.sleep(args.duration)
        cell.server_cpu = session_cpu(session) - before
    latencies: list[int] = []
    for proc in loads:
        out, _ = proc.communicate(timeout=args.warmup + args.duration + GRACE + 120)
        if proc.returncode:
            raise RuntimeError(f"the load generator failed:\n{procs.log('load-0')}")
        res = json.loads(out)
        cell.requests += res["requests"] - res["errors"]
        cell.records += res["records"]
        cell.errors += res["errors"]
        cell.client_cpu += res["client_cpu_seconds"]
        cell.error_samples += res["error_samples"]
        latencies += res["latencies_us"]
        procs.procs.remove(proc)
    if latencies:
        lat = np.sort(np.array(latencies)) / 1000
        cell.p50_ms, cell.p99_ms = float(np.percentile(lat, 50)), float(np.percentile(lat, 99))
    return cell


def session_cpu(session: int) -> float:
    """Seconds of CPU (user and system) the live processes of a session have used: a server and
    every process it started (shoal's front ends and learner, VW's forked children). Linux's
    /proc; NaN elsewhere."""
    total = 0
    try:
        stats = list(Path("/proc").glob("[0-9]*/stat"))
    except OSError:
        return float("nan")
    if not stats:
        return float("nan")
    for stat in stats:
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # it exited meanwhile
        if int(fields[3]) == session:  # (after the name: state, ppid, pgrp, session, ...)
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


# -- the report ------------------------------------------------------------------------------


def report(sc: Scenario, cells: list[Cell], run: Running, args: Any) -> None:
    print(f"\n### {sc.name}: {sc.title}\n")
    rows = []
    peers = {t.server for t in sc.targets if t.peer}
    for c in cells:
        peer = [p for p in cells if p.clients == c.clients and p.server in peers]
        ratio = f"{c.records / peer[0].records:.2f}x" if peer and peer[0].records else "-"
        errors = f"{c.errors:,}" + (f" ({100 * c.errors / (c.requests + c.errors):.1f}%)"
                                    if c.errors else "")  # fmt: skip
        rows.append([c.server, c.interface, str(c.clients), f"{c.requests / c.seconds:,.0f}",
                     f"{c.records / c.seconds:,.0f}", f"{c.p50_ms:.2f}", f"{c.p99_ms:.2f}",
                     errors, f"{100 * c.client_cpu / c.seconds:.0f}%",
                     f"{1e6 * c.server_cpu / c.records:.1f}" if c.records else "-",
                     ratio])  # fmt: skip
    header = ["server", "interface", "clients", "requests/s", "records/s", "p50 ms", "p99 ms"]
    table([*header, "errors", "client CPU", "server CPU us/record", "vs peer"], rows, left=2)
    for t, why in run.skipped.items():
        print(f"- {t.label}: skipped: {why}")
    for server, check in run.checks.items():
        print(f"- {server}: {check}")
    linear = {(c.interface, c.clients): c.records for c in cells if c.server == "shoal"}
    for c in cells:  # each kind of model against the linear one, in the same scenario
        base = linear.get((c.interface, c.clients))
        if c.server.startswith("shoal-") and base:
            print(f"- {c.server} / shoal (linear), {c.interface}, {c.clients} clients: "
                  f"{c.records / base:.2f}x records/s")  # fmt: skip
    for c in cells:
        for sample in c.error_samples[:2]:
            print(f"- error, {c.server} {c.interface}, {c.clients} clients: {sample}")


def prepare(args: Any) -> tuple[dict[str, Path], Pool]:
    run = args.workdir / "runs"
    run.mkdir(parents=True, exist_ok=True)
    args.train, _ = clicks(args.workdir, args.rows, 1)
    pool_file, _ = clicks(args.workdir, args.pool, 2)
    ds = DataSet("serve", args.train, pool_file, args.train, pool_file)
    models = {}
    for tool in ("shoal", "vw"):
        train, _, _ = commands(tool, ds, args.bits, run)
        wall, _ = spawn(train, run / f"serve.{tool}.train.log")
        print(f"trained {tool} on {args.rows:,} rows in {wall:.1f} s", file=sys.stderr)
        models[tool] = run / f"serve.{tool}.model"
    for kind in (k for k in args.shoal_models if k != "linear"):
        train, _, _ = commands("shoal", ds, args.bits, run)
        models[f"shoal-{kind}"] = train[train.index("-o") + 1] = run / f"serve.shoal-{kind}.model"
        train += ["--model", kind, "--rank", str(args.rank)]
        train += ["--fields", FFM_FIELDS] if kind == "ffm" else []
        wall, _ = spawn(list(map(str, train)), run / f"serve.shoal-{kind}.train.log")
        print(f"trained shoal {kind} on {args.rows:,} rows in {wall:.1f} s", file=sys.stderr)
    return models, Pool.read(pool_file)


def main() -> None:
    names = [s.name for s in _scenarios(100)]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="short cells: --duration 2 --warmup 0.5")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64], help="clients")
    p.add_argument("--duration", type=float, default=10.0, help="recorded seconds per cell")
    p.add_argument("--warmup", type=float, default=2.0, help="unrecorded seconds before each")
    p.add_argument("--scenarios", nargs="+", choices=names, default=names)
    p.add_argument("--batch", type=int, default=100, help="records per request in http-batch")
    p.add_argument("--pipeline", type=int, default=32, help="lines in flight per TCP connection")
    p.add_argument("--client-procs", type=int, default=1, help="load generator processes")
    p.add_argument("--rows", type=int, default=100_000, help="click rows shoal and VW train on")
    p.add_argument("--river-rows", type=int, default=20_000, help="of those, River's pre-training")
    p.add_argument("--pool", type=int, default=10_000, help="distinct request lines (test rows)")
    p.add_argument("--bits", type=int, default=18, help="hash bits for shoal and VW")
    p.add_argument("--shoal-processes", type=int, metavar="N",
                   help="shoal serve --processes N (default: one front end per core; 0: one "
                   "process for everything)")  # fmt: skip
    p.add_argument(
        "--shoal-models",
        nargs="+",
        choices=KINDS,
        default=["linear"],
        help="the kinds of model shoal serves, each from its own server (fm, ffm: "
        "factorization machines of --rank; ffm's fields: the namespaces c and n)",
    )
    p.add_argument("--rank", type=int, default=8, help="the factorization machines' rank")
    p.add_argument("--workdir", type=Path, default=ROOT / "bench-data", help="data and models")
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = p.parse_args()
    if args.quick:
        args.duration, args.warmup = 2.0, 0.5
    # A SIGTERM unwinds like Ctrl-C, so every server and client is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    from importlib import metadata

    command = shlex.join([sys.executable, *sys.argv])
    print(f"command: {command}")
    env = {"python": platform.python_version(), "cores": os.cpu_count()}
    env |= {pkg: metadata.version(pkg) for pkg in ("shoal", "vowpalwabbit", "river", "fastapi")}
    env |= {"uvicorn": metadata.version("uvicorn")}
    print("environment: " + ", ".join(f"{k} {v}" for k, v in env.items()))
    models, pool = prepare(args)
    print(f"\ncells: {args.warmup:g} s warm-up, then {args.duration:g} s recorded; "
          f"{len(pool.lines):,} distinct request lines")  # fmt: skip
    cells: list[Cell] = []
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="serve-") as tmp:
        kinds = tuple(args.shoal_models)
        for sc in (s for s in scenarios(args.batch, kinds) if s.name in args.scenarios):
            done = []
            with Processes(args.workdir / "runs") as procs:
                run = start_servers(sc, procs, models, args, Path(tmp), pool)
                for clients in args.concurrency:
                    for t in sc.targets:
                        if t in run.skipped:
                            continue
                        if not healthy(t, run.port(t), pool):
                            run.skipped[t] = f"not healthy before the {clients}-client cell"
                            continue
                        print(f"{sc.name}: {t.label}, {clients} clients", file=sys.stderr)
                        done.append(run_cell(t, sc, run, pool, clients, args, procs, Path(tmp)))
            report(sc, done, run, args)
            cells += done
    if args.json:
        doc = {"command": command, "env": env, "cells": [asdict(c) for c in cells]}
        args.json.write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
