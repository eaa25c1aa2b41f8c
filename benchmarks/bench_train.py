"""Training throughput, peak memory and test accuracy: shoal, Vowpal Wabbit, scikit-learn.

All three learn logistic regression on the same files, with the same hash bits and one pass.
Every training run is its own process, timed end to end (start, imports, parsing, learning,
writing the model) with its own peak RSS. Test predictions are made by other processes, not
timed, and scored here with shoal's metrics. See benchmarks/README.md.

    python benchmarks/bench_train.py [--rows N] [--bits B] [--repeat R] [--big-factor K]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REAL_DATA = ROOT.parent / "shared" / "data"
TOOLS = ("shoal", "vw", "sklearn")
# The same for every data set. The default schedule ("optimal", 1 / (alpha (t + t0))) diverges on
# the click set's unscaled numeric features (test log loss ~8 at alpha 1e-6 .. 1e-4); plain SGD
# with step eta0 / t^0.5 is stable on all three sets (eta0 0.5 is not, on the click set). alpha is
# small: regularisation is not what is compared.
SGD_SETTINGS: dict[str, Any] = {
    "loss": "log_loss",
    "alpha": 1e-6,
    "learning_rate": "invscaling",
    "eta0": 0.1,
    "power_t": 0.5,
    "random_state": 0,
}


# -- children: `bench_train.py --run-one STAGE ARGS...` -------------------------------------


def _vw(args: list[str]) -> None:
    from vowpalwabbit import Workspace

    # The constructor runs VW's own file driver over -d; finish() writes the -f model.
    start = time.perf_counter()
    Workspace(arg_list=[*args, "--quiet"]).finish()
    print(f"{TRAIN_SECONDS} {time.perf_counter() - start:.6f}")


def _sklearn(stage: str, data: str, model: str, bits: str, preds: str = "") -> None:
    """Train (one pass of partial_fit) or predict, on the CSR batches of shoal's reader."""
    import pickle

    import numpy as np
    import scipy.sparse as sp
    from sklearn.linear_model import SGDClassifier

    import shoal

    b = int(bits)
    # The same parser, with as many threads, as `shoal train` uses.
    reader = shoal.TextReader(spec=shoal.FeatureSpec(bits=b), threads=os.cpu_count() or 1)
    batches = ((sp.csr_matrix((x.values, x.indices, x.indptr), shape=(len(x), 2**b)), x)
               for x in reader.read(data))  # fmt: skip
    if stage == "train":
        start = time.perf_counter()
        clf = SGDClassifier(**SGD_SETTINGS)
        for x, batch in batches:
            y = (batch.labels > 0).astype(np.int64)
            clf.partial_fit(x, y, classes=np.array([0, 1]), sample_weight=batch.weights)
        with open(model, "wb") as f:  # pickle: scikit-learn's own format; only we read it
            pickle.dump(clf, f)
        print(f"{TRAIN_SECONDS} {time.perf_counter() - start:.6f}")
        return
    with open(model, "rb") as f:
        clf = pickle.load(f)
    with open(preds, "w", encoding="utf-8") as out:
        for x, _ in batches:
            np.savetxt(out, clf.predict_proba(x)[:, 1], fmt="%.17g")


def run_one(stage: str, args: list[str]) -> None:
    if stage == "vw":
        _vw(args)
    else:
        _sklearn(stage, *args)


# -- the parent ------------------------------------------------------------------------------


def measure(log: str, argv: list[str]) -> None:
    """Run ``argv`` with its output in ``log``; print its wall time, status and peak RSS (JSON).

    This runs in a small launcher process, because on exec Linux carries the peak RSS of the
    exec-ing address space into the new program's ``ru_maxrss``: spawned by the (large)
    parent, every child would report at least the parent's peak. The launcher's is ~15 MiB.
    """
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    dup = [(os.POSIX_SPAWN_DUP2, fd, 1), (os.POSIX_SPAWN_DUP2, fd, 2)]
    start = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=dup)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    code, rss_mib = os.waitstatus_to_exitcode(status), usage.ru_maxrss / 1024  # Linux: KiB
    print(json.dumps({"wall": wall, "status": code, "rss_mib": rss_mib}))


def spawn(argv: list[str], log: Path) -> tuple[float, float]:
    """Run ``argv`` (same environment) through the launcher: its wall seconds and peak RSS MiB."""
    me = [sys.executable, str(Path(__file__).resolve()), "--measure", str(log)]
    out = json.loads(subprocess.run([*me, *argv], capture_output=True, check=True).stdout)
    if out["status"]:
        sys.exit(f"failed ({out['status']}): {shlex.join(argv)}\n{log.read_text()[-2000:]}")
    return out["wall"], out["rss_mib"]


@dataclass
class DataSet:
    name: str
    train: Path  # what shoal and scikit-learn read
    test: Path
    vw_train: Path  # the same rows in VW text
    vw_test: Path
    optimum: float | None = None  # the generator's optimal test log loss, when known


TRAIN_SECONDS = "train_seconds"  # how the Python children report their in-process time
# shoal train's summary line: "trained on N examples in P pass(es), 1.23s (...)"
SHOAL_SECONDS = re.compile(r"trained on [\d,]+ examples in \d+ pass\(es\), ([\d.]+)s")


def in_process_seconds(log: Path) -> float:
    """Training time as the tool itself measured it: no interpreter start-up, no imports."""
    text = log.read_text()
    m = SHOAL_SECONDS.search(text) or re.search(rf"{TRAIN_SECONDS} ([\d.]+)", text)
    return float(m.group(1)) if m else float("nan")


@dataclass
class Result:
    data: str
    tool: str
    rows: int
    features_per_row: float
    walls: list[float] = field(default_factory=list)
    inner: list[float] = field(default_factory=list)  # in-process training seconds
    rss_mib: float = 0.0
    log_loss: float = float("nan")
    auc: float = float("nan")

    @property
    def examples_per_s(self) -> float:
        return self.rows / min(self.walls)

    @property
    def inner_examples_per_s(self) -> float:
        return self.rows / min(self.inner)


def clicks(workdir: Path, rows: int, data_seed: int) -> tuple[Path, float]:
    """The click file of ``rows`` rows (generated once, then reused) and its optimal log loss."""
    from shoal.data.synthetic import generate_clicks

    path = workdir / f"clicks-seed{data_seed}-{rows}.vw"
    info = path.with_name(path.name + ".json")
    if not (path.exists() and info.exists()):
        print(f"generating {path} ({rows:,} rows)", file=sys.stderr)
        made = generate_clicks(path, rows, data_seed=data_seed)
        info.write_text(json.dumps({"rows": rows, "optimal_log_loss": made.optimal_log_loss}))
    return path, json.loads(info.read_text())["optimal_log_loss"]


def svmlight_to_vw(src: Path, dst: Path) -> Path:
    """``label | idx:val ...`` lines (labels -1/1, no namespace) for VW, written once."""
    if not dst.exists():
        tmp = dst.with_name(dst.name + ".tmp")
        with src.open() as f, tmp.open("w") as out:
            for line in f:
                tokens = line.split("#", 1)[0].split()
                if tokens:  # blank lines are skipped, as shoal skips them
                    label = "1" if float(tokens[0]) > 0 else "-1"
                    out.write(f"{label} | {' '.join(tokens[1:])}\n")
        tmp.replace(dst)
    return dst


def data_sets(workdir: Path, rows: int) -> list[DataSet]:
    train, _ = clicks(workdir, rows, 1)
    test, optimum = clicks(workdir, max(1, rows // 10), 2)
    sets = [DataSet("clicks", train, test, train, test, optimum)]
    if REAL_DATA.is_dir():
        a9a, a9a_t = REAL_DATA / "a9a" / "a9a", REAL_DATA / "a9a" / "a9a.t"
        vw_a, vw_t = (
            svmlight_to_vw(a9a, workdir / "a9a.vw"),
            svmlight_to_vw(a9a_t, workdir / "a9a.t.vw"),
        )
        sets.append(DataSet("a9a", a9a, a9a_t, vw_a, vw_t))
        rcv = REAL_DATA / "vw_rcv1_small"
        tr, te = rcv / "rcv1_small.train.vw", rcv / "rcv1_small.test.vw"
        sets.append(DataSet("rcv1_small", tr, te, tr, te))
    return sets


def commands(tool: str, ds: DataSet, bits: int, run: Path) -> tuple[list[str], list[str], Path]:
    """The train and predict command lines of ``tool``, and where the predictions go."""
    model, preds, b = run / f"{ds.name}.{tool}.model", run / f"{ds.name}.{tool}.preds", str(bits)
    me = [sys.executable, str(Path(__file__).resolve()), "--run-one"]
    if tool == "shoal":
        shoal = str(Path(sys.executable).with_name("shoal"))
        train = [shoal, "train", str(ds.train), "-o", str(model), "--bits", b, "--loss", "logistic"]
        return train, [shoal, "predict", str(model), str(ds.test), "-o", str(preds)], preds
    if tool == "vw":
        train = [*me, "vw", "-d", str(ds.vw_train), "--loss_function", "logistic", "-b", b]
        test = [*me, "vw", "-d", str(ds.vw_test), "-t", "-i", str(model), "-p", str(preds)]
        return [*train, "-f", str(model)], [*test, "--link", "logistic"], preds
    train = [*me, "train", str(ds.train), str(model), b]
    return train, [*me, "predict", str(ds.test), str(model), b, str(preds)], preds


def benchmark(ds: DataSet, args: argparse.Namespace, run: Path) -> list[Result]:
    import numpy as np

    import shoal
    from shoal.model.metrics import auc, log_loss

    reader = shoal.TextReader(spec=shoal.FeatureSpec(bits=args.bits), threads=os.cpu_count() or 1)
    rows = nnz = 0
    for batch in reader.read(ds.train):
        rows, nnz = rows + len(batch), nnz + batch.nnz
    labels = np.concatenate([b.labels for b in reader.read(ds.test)])
    results = {tool: Result(ds.name, tool, rows, nnz / rows) for tool in args.tools}
    # Round robin (shoal, vw, sklearn, shoal, ...): a shared machine's speed drifts over
    # minutes, and runs of one tool in a row would catch another slice of it than the next's.
    for i in range(args.repeat):
        for tool in args.tools:
            train, _, _ = commands(tool, ds, args.bits, run)
            res = results[tool]
            log = run / f"{ds.name}.{tool}.train.log"
            wall, rss = spawn(train, log)
            res.walls.append(wall)
            res.inner.append(in_process_seconds(log))
            res.rss_mib = max(res.rss_mib, rss)
            print(f"{ds.name} {tool} run {i + 1}: {wall:.2f} s, {rss:.0f} MiB", file=sys.stderr)
    for tool, res in results.items():
        _, predict, preds = commands(tool, ds, args.bits, run)
        spawn(predict, run / f"{ds.name}.{tool}.predict.log")
        with preds.open() as f:
            probs = np.array([float(line.split()[0]) for line in f if line.strip()])
        if len(probs) != len(labels):
            sys.exit(f"{tool} made {len(probs)} predictions for {len(labels)} test rows")
        res.log_loss, res.auc = log_loss(probs, labels), auc(probs, labels)
    return list(results.values())


def scaling(clicks_results: list[Result], args: argparse.Namespace, run: Path) -> list[dict]:
    """Train shoal and VW once on a click file ``big_factor`` times larger: is peak RSS flat?"""
    big_rows = args.rows * args.big_factor
    path, _ = clicks(args.workdir, big_rows, 1)
    big = DataSet("clicks-big", path, path, path, path)
    with path.open("rb") as f:  # into the page cache first, so that neither tool pays for it
        while f.read(1 << 24):
            pass
    out = []
    for res in clicks_results:
        if res.tool != "sklearn":
            train = commands(res.tool, big, args.bits, run)[0]
            wall, rss = spawn(train, run / f"big.{res.tool}.log")
            print(f"{big_rows:,} rows {res.tool}: {wall:.2f} s, {rss:.0f} MiB", file=sys.stderr)
            out.append({"tool": res.tool, "rows": res.rows, "rss_mib": res.rss_mib,
                        "big_rows": big_rows, "big_rss_mib": rss,
                        "big_examples_per_s": big_rows / wall})  # fmt: skip
    return out


def source_stamp() -> float:
    """The newest modification time of shoal's sources: a change means numba compiles again."""
    return max(f.stat().st_mtime for f in (ROOT / "shoal").rglob("*.py"))


def table(header: list[str], rows: list[list[str]], left: int) -> None:
    """A markdown table: the first ``left`` columns left aligned, the rest right aligned."""
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" if i < left else "--:" for i in range(len(header))) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def report(results: list[Result], sets: list[DataSet], scale: list[dict], args: Any) -> None:
    rows = []
    for r in results:
        vw = [v for v in results if v.data == r.data and v.tool == "vw"]
        rate, feats = f"{r.examples_per_s:,.0f}", f"{r.examples_per_s * r.features_per_row:,.0f}"
        rows.append([r.data, r.tool, f"{r.rows:,}", rate, feats,
                     f"{r.inner_examples_per_s:,.0f}", f"{r.rss_mib:,.0f}",
                     f"{r.log_loss:.5f}", f"{r.auc:.5f}",
                     f"{r.examples_per_s / vw[0].examples_per_s:.2f}x" if vw else "-",
                     f"{r.inner_examples_per_s / vw[0].inner_examples_per_s:.2f}x" if vw else "-",
                     ])  # fmt: skip
    header = ["data set", "tool", "rows", "examples/s", "features/s", "examples/s in-process"]
    header += ["peak RSS MiB", "test log loss", "test AUC", "vs VW", "vs VW in-process"]
    table(header, rows, left=2)
    sgd = ", ".join(f"{k}={v!r}" for k, v in SGD_SETTINGS.items())
    print(
        f"\nWall time is end to end (process start, imports, parsing, learning, writing the "
        f"model), best of {args.repeat}; peak RSS is the largest of those runs. Features/s uses "
        f"the features per row (constant included) that shoal's reader finds in the train file. "
        f"One pass each; test predictions are made by other processes and not timed. "
        f"'In-process' is the training time each tool measures itself (shoal's summary line; "
        f"around VW's Workspace; around scikit-learn's loop): parsing and learning without "
        f"interpreter start-up and imports (numba's alone take ~0.5 s).\n"
        f"- shoal: defaults (AdaGrad), --loss logistic --bits {args.bits}.\n"
        f"- VW: defaults, --loss_function logistic -b {args.bits}.\n"
        f"- scikit-learn: SGDClassifier({sgd}), partial_fit on each batch of shoal's reader "
        f"(the parser and threads of shoal train), so its time includes shoal's parsing."
    )
    for ds in sets:
        by = {r.tool: r for r in results if r.data == ds.name}
        if ds.optimum is not None:
            print(f"\n{ds.name}: optimal test log loss (the hidden model's) {ds.optimum:.5f}")
        if "shoal" in by and "vw" in by:
            rel = 100 * (by["shoal"].log_loss / by["vw"].log_loss - 1)
            print(f"{ds.name}: shoal's test log loss is {rel:+.2f}% relative to VW's")
    if scale:
        small, big = f"{scale[0]['rows']:,}", f"{scale[0]['big_rows']:,}"
        print(f"\nPeak RSS against data size, click set ({big} rows: one run each):\n")
        rows = [[s["tool"], f"{s['rss_mib']:,.0f}", f"{s['big_rss_mib']:,.0f}",
                 f"{s['big_rss_mib'] / s['rss_mib']:.2f}", f"{s['big_examples_per_s']:,.0f}"]
                for s in scale]  # fmt: skip
        header = ["tool", f"RSS MiB, {small} rows", f"RSS MiB, {big} rows", "ratio", "examples/s"]
        table(header, rows, left=1)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] in ("--run-one", "--measure"):
        child = run_one if sys.argv[1] == "--run-one" else measure
        return child(sys.argv[2], sys.argv[3:])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--rows", type=int, default=1_000_000, help="click train rows (test: rows/10)")
    p.add_argument("--bits", type=int, default=18, help="hash bits for every tool")
    p.add_argument("--repeat", type=int, default=3, help="train runs per tool; best time is kept")
    p.add_argument("--big-factor", type=int, default=10, help="memory check on K x rows; 0: off")
    p.add_argument("--tools", nargs="+", choices=TOOLS, default=list(TOOLS))
    p.add_argument("--workdir", type=Path, default=ROOT / "bench-data", help="data and models")
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = p.parse_args()
    from importlib import metadata

    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    cpu = [
        ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")
    ]
    env = {"python": platform.python_version(), "cores": os.cpu_count()}
    env |= {"cpu": cpu[0].split(":", 1)[1].strip() if cpu else platform.processor()}
    env |= {pkg: metadata.version(pkg) for pkg in ("shoal", "vowpalwabbit", "scikit-learn")}
    print("environment: " + ", ".join(f"{k} {v}" for k, v in env.items()) + "\n")
    run = args.workdir / "runs"
    run.mkdir(parents=True, exist_ok=True)
    sets = data_sets(args.workdir, args.rows)
    stamp = source_stamp()
    # One untimed run of each tool on the small click test file fills numba's on-disk cache: a
    # cold one (after installing or editing shoal) adds seconds of JIT to a run of shoal's reader.
    test = sets[0].test
    warm = DataSet("warm-up", test, test, test, test)
    for tool in args.tools:
        spawn(commands(tool, warm, args.bits, run)[0], run / f"warm-up.{tool}.log")
    results = [r for ds in sets for r in benchmark(ds, args, run)]
    base = [r for r in results if r.data == "clicks"]
    scale = scaling(base, args, run) if args.big_factor else []
    report(results, sets, scale, args)
    if source_stamp() != stamp:
        print(
            "\nWARNING: shoal's source changed during the run, so numba compiled again inside "
            "timed runs: their times and peak RSS are too high. Run it again."
        )
    if args.json:
        doc = {
            "command": shlex.join([sys.executable, *sys.argv]),
            "env": env,
            "scaling": scale,
            "optimum": {ds.name: ds.optimum for ds in sets},
            "results": [asdict(r) | {"examples_per_s": r.examples_per_s} for r in results],
        }
        args.json.write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
