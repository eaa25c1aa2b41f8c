"""Factorization machines end to end: shoal against Vowpal Wabbit's ``--lrq`` and ``-q`` and
River's FM, on the same files, in one run.

Every tool trains in its own process, one pass, 18 hash bits, logistic loss, no flag but the
model's: shoal linear, shoal with ``-q`` crosses of every pair of namespaces (itself
included), shoal FM of rank 8, shoal FFM of rank 8 whose fields are the namespaces, VW with the
same ``-q`` crosses, VW ``--lrq`` of rank 8 on the same pairs (``--lrq ab8``: each feature of
namespace a gets 8 latent numbers for b and the pair's margin is their dot product; VW's own
low-rank quadratic), and River's ``facto.FMClassifier`` with 8 factors. "train s" is the wall
time of the training process (start, imports, reading, learning, writing the model); the test
set is scored by a second process whose time is not counted.

River learns one example at a time in Python: it trains on the first ``--river-rows`` rows
only, and its time for the whole set is extrapolated from its own learning loop's rate (its
process start and reading left out, which flatters it); its test loss is that of the smaller
sample's model, so it is not comparable with the others'.

The data: ``shoal generate --model fm`` (hidden FM of rank 4, 12 categorical fields in
namespaces u, i, c; train data seed 1, test data seed 2, test = rows / 5), a9a (written as VW
text in one namespace ``f``) and rcv1_small (namespace ``f``). On one-namespace sets the FFM
has one field: it is the FM.

    python benchmarks/bench_fm.py [--rows N] [--river-rows N] [--repeat R] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
REAL_DATA = ROOT.parent / "shared" / "data"
BITS = "18"
RANK = 8
VW_MAIN = (
    "import sys; from vowpalwabbit import Workspace; Workspace(arg_list=sys.argv[1:]).finish()"
)


@dataclass(frozen=True)
class DataSet:
    name: str
    train: Path
    test: Path
    namespaces: str
    optimum: float | None = None

    @property
    def pairs(self) -> list[str]:
        """Every pair of namespaces, each with itself too: ``uu ui uc ii ic cc``."""
        return [a + b for a, b in itertools.combinations_with_replacement(self.namespaces, 2)]


def svmlight_to_vw(src: Path, dst: Path) -> Path:
    """``label |f idx:val ...``: one named namespace, so that ``-q ff`` and ``--lrq ff8`` apply."""
    if not dst.exists():
        tmp = dst.with_name(dst.name + ".tmp")
        with src.open() as f, tmp.open("w") as out:
            for line in f:
                tokens = line.split()
                if tokens:
                    label = "1" if float(tokens[0]) > 0 else "-1"
                    out.write(f"{label} |f {' '.join(tokens[1:])}\n")
        tmp.replace(dst)
    return dst


def data_sets(workdir: Path, rows: int) -> list[DataSet]:
    from shoal.data.synthetic import generate_clicks

    train, test = workdir / f"fm-{rows}.vw", workdir / f"fm-test-{rows // 5}.vw"
    generate_clicks(train, rows, model="fm", data_seed=1)
    optimum = generate_clicks(test, rows // 5, model="fm", data_seed=2).optimal_log_loss
    out = [DataSet("generate --model fm", train, test, "uic", optimum)]
    if REAL_DATA.is_dir():
        a9a = REAL_DATA / "a9a"
        rcv1 = REAL_DATA / "vw_rcv1_small"
        out += [
            DataSet("a9a", svmlight_to_vw(a9a / "a9a", workdir / "a9a.f.vw"),
                    svmlight_to_vw(a9a / "a9a.t", workdir / "a9a.t.f.vw"), "f"),
            DataSet("rcv1_small", rcv1 / "rcv1_small.train.vw", rcv1 / "rcv1_small.test.vw",
                    "f"),
        ]  # fmt: skip
    else:
        print(f"{REAL_DATA} not found: a9a and rcv1_small are left out", file=sys.stderr)
    return out


def _shoal(*args: str) -> list[str]:
    return [sys.executable, "-m", "shoal.cli", *args]


def _vw(*args: str) -> list[str]:
    return [sys.executable, "-c", VW_MAIN, *args, "--quiet"]


def tools(ds: DataSet, model: Path) -> dict[str, tuple[list[str], list[str]]]:
    """Each tool's (train, predict to ``model``.preds) command lines."""
    m, p = str(model), str(model) + ".preds"
    q = [a for pair in ds.pairs for a in ("-q", pair)]
    lrq = [a for pair in ds.pairs for a in ("--lrq", f"{pair}{RANK}")]
    fields = ds.namespaces
    shoal_predict = _shoal("predict", m, str(ds.test), "-o", p)
    vw_train = ["-d", str(ds.train), "--loss_function", "logistic", "-b", BITS, "-f", m]
    vw_predict = _vw("-d", str(ds.test), "-t", "-i", m, "-p", p)
    shoal_train = _shoal("train", str(ds.train), "-o", m, "--bits", BITS)
    return {
        "shoal linear": (shoal_train, shoal_predict),
        "shoal -q": ([*shoal_train, *q], shoal_predict),
        f"shoal fm rank {RANK}": ([*shoal_train, "--model", "fm", "--rank", str(RANK)],
                                  shoal_predict),
        f"shoal ffm rank {RANK}": ([*shoal_train, "--model", "ffm", "--rank", str(RANK),
                                    "--fields", fields], shoal_predict),
        "vw -q": (_vw(*vw_train, *q), vw_predict),
        f"vw --lrq rank {RANK}": (_vw(*vw_train, *lrq), vw_predict),
    }  # fmt: skip


def _labels(path: Path) -> np.ndarray:
    with path.open() as f:
        return np.array([1.0 if float(line.split(None, 1)[0]) > 0 else -1.0 for line in f])


def _probabilities(tool: str, preds: Path) -> np.ndarray:
    values = np.array([float(line.split()[0]) for line in preds.open()])
    return values if tool.startswith("shoal") else 1.0 / (1.0 + np.exp(-values))  # VW: margins


def _run(argv: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def river_main(train: str, test: str, preds: str, rows: int) -> None:
    """River's FM on the first ``rows`` rows; prints its learning loop's seconds as JSON."""
    from river import facto

    def read(path: str, limit: int | None = None):
        with open(path) as f:
            for line in itertools.islice(f, limit):
                label, *spaces = line.rstrip("\n").split("|")
                x: dict[str, float] = {}
                for space in spaces:
                    ns, *tokens = space.split(" ")
                    for tok in tokens:
                        if tok:
                            name, _, value = tok.partition(":")
                            x[ns + "^" + name] = float(value) if value else 1.0
                yield x, float(label.split()[0]) > 0

    model = facto.FMClassifier(n_factors=RANK, seed=0)
    examples = list(read(train, rows))
    start = time.perf_counter()
    for x, y in examples:
        model.learn_one(x, y)
    seconds = time.perf_counter() - start
    with open(preds, "w") as out:
        for x, _ in read(test):
            out.write(f"{model.predict_proba_one(x)[True]}\n")
    print(json.dumps({"rows": len(examples), "seconds": seconds}))


def run_river(ds: DataSet, rows: int, workdir: Path) -> tuple[float, np.ndarray, int]:
    """River's extrapolated training seconds for the whole train set, its test probabilities,
    and the rows it learned."""
    preds = workdir / "river.preds"
    out = subprocess.run(
        [sys.executable, __file__, "--river", str(ds.train), str(ds.test), str(preds), str(rows)],
        check=True, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    r = json.loads(out.stdout.strip().splitlines()[-1])
    total = sum(1 for _ in ds.train.open())
    return r["seconds"] * total / r["rows"], np.array([float(v) for v in preds.open()]), r["rows"]


def main() -> None:
    from shoal.model import metrics

    if len(sys.argv) > 1 and sys.argv[1] == "--river":
        river_main(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="generated rows to train on")
    p.add_argument("--river-rows", type=int, default=20_000, help="rows River learns")
    p.add_argument("--repeat", type=int, default=1, help="runs of each tool (in turns): best")
    p.add_argument("--workdir", default="/tmp/shoal-bench-fm")
    p.add_argument("--only", nargs="*", help="data set names to run (default: all)")
    args = p.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    print("| data | tool | train s | test log loss | vs optimum | test AUC |")
    print("|---|---|--:|--:|--:|--:|")
    summary = []
    for ds in data_sets(workdir, args.rows):
        if args.only and ds.name not in args.only:
            continue
        y = _labels(ds.test)
        commands = tools(ds, workdir / "model")
        best = dict.fromkeys(commands, float("inf"))
        losses: dict[str, tuple[float, float]] = {}
        for _ in range(args.repeat):  # in turns, so that every tool sees the machine's drift
            for tool, (train, predict) in commands.items():
                best[tool] = min(best[tool], _run(train))
                _run(predict)
                prob = _probabilities(tool, workdir / "model.preds")
                losses[tool] = (metrics.log_loss(prob, y), metrics.auc(prob, y))
        river_s, river_p, river_rows = run_river(ds, args.river_rows, workdir)
        best[f"river fm rank {RANK}"] = river_s
        losses[f"river fm rank {RANK}"] = (metrics.log_loss(river_p, y), metrics.auc(river_p, y))
        for tool, seconds in best.items():
            ll, auc = losses[tool]
            gap = f"{100 * (ll / ds.optimum - 1):+.2f}%" if ds.optimum else "-"
            note = f" (learned {river_rows:,} rows; time extrapolated)" if "river" in tool else ""
            print(f"| {ds.name} | {tool}{note} | {seconds:.2f} | {ll:.5f} | {gap} | {auc:.5f} |",
                  flush=True)  # fmt: skip
        fm, lrq = best[f"shoal fm rank {RANK}"], best[f"vw --lrq rank {RANK}"]
        summary.append(f"{ds.name}: shoal FM rank {RANK} trains {lrq / fm:.1f}x as fast as VW "
                       f"--lrq, {river_s / fm:.0f}x as fast as River's FM"
                       + (f"; optimum {ds.optimum:.5f}" if ds.optimum else ""))  # fmt: skip
    print("\n" + "\n".join(summary))


if __name__ == "__main__":
    main()
