"""Test log loss and AUC: shoal's defaults against Vowpal Wabbit's, on the same files.

Accuracy only (no timings), so a busy machine is fine. Every set is written once as VW text
(svmlight files as ``label | idx:val ...``), and both tools read those same lines, hash them
the same way (18 bits) and learn with no flag but the loss (and ``-q``/``--passes`` where the row
says so): shoal's default optimizer and learning rate against VW's (``--adaptive --normalized
--invariant``, rate 0.5). With 3 passes both hold out every 10th example (shoal by a hash of the
row, VW by position) and stop early when the holdout loss stops improving.

The click sets are ``shoal generate``'s (train data seed 1, test data seed 2), re-cut into four
namespaces so that ``-q ab`` and ``-q ab -q cd`` interact something (``generate`` writes ``|c``
and ``|n``): ``a`` = fields a..h, ``b`` = fields i..p, ``c`` = fields q..z, ``d`` = the nine
numeric features. "x1000" multiplies the numeric values by 1000 (raw units up to 1e6, no
log1p). w8a has no test file: every 5th line is the test set.

    python benchmarks/bench_quality.py [--rows N] [--workdir DIR] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
REAL_DATA = ROOT.parent / "shared" / "data"
BITS = 18
_GROUPS = ("abcdefgh", "ijklmnop", "qrstuvwxyz")


@dataclass(frozen=True)
class Case:
    name: str
    train: Path
    test: Path
    interactions: tuple[str, ...] = ()
    passes: int = 1


def svmlight_to_vw(src: Path, dst: Path, skip_fifth: bool = False) -> Path:
    """``label | idx:val ...`` lines; ``skip_fifth``: without every 5th line (w8a's test set)."""
    if dst.exists():
        return dst
    tmp = dst.with_name(dst.name + ".tmp")
    with src.open() as f, tmp.open("w") as out:
        n = 0
        for line in f:
            tokens = line.split("#", 1)[0].split()
            if not tokens:
                continue
            i, n = n, n + 1
            if skip_fifth and i % 5 == 4:
                continue
            label = "1" if float(tokens[0]) > 0 else "-1"
            out.write(f"{label} | {' '.join(tokens[1:])}\n")
    tmp.replace(dst)
    return dst


def clicks(workdir: Path, rows: int, data_seed: int, scale: float) -> Path:
    """``shoal generate``'s rows in namespaces a, b, c (categorical) and d (numeric x scale)."""
    from shoal.data.synthetic import generate_clicks

    raw = workdir / f"clicks-{data_seed}-{rows}.vw"
    if not raw.exists():
        generate_clicks(raw, rows, data_seed=data_seed)
    dst = workdir / f"clicks-{data_seed}-{rows}-x{scale:g}.vw"
    if dst.exists():
        return dst
    tmp = dst.with_name(dst.name + ".tmp")
    with raw.open() as f, tmp.open("w") as out:
        for line in f:
            label, rest = line.split(" |c ", 1)
            cats, nums = rest.rstrip("\n").split(" |n ", 1)
            by_group: list[list[str]] = [[] for _ in _GROUPS]
            for tok in cats.split():
                g = next(k for k, letters in enumerate(_GROUPS) if tok[0] in letters)
                by_group[g].append(tok)
            scaled = []
            for tok in nums.split():
                name, value = tok.split(":")
                scaled.append(f"{name}:{float(value) * scale:.10g}")
            spaces = [f"|{ns} {' '.join(t)}" for ns, t in zip("abc", by_group, strict=True)]
            out.write(f"{label} {' '.join(spaces)} |d {' '.join(scaled)}\n")
    tmp.replace(dst)
    return dst


def cases(workdir: Path, rows: int) -> list[Case]:
    out: list[Case] = []
    real: list[tuple[str, Path, Path]] = []
    if REAL_DATA.is_dir():
        d = REAL_DATA
        real = [
            ("a9a", svmlight_to_vw(d / "a9a/a9a", workdir / "a9a.vw"),
             svmlight_to_vw(d / "a9a/a9a.t", workdir / "a9a.t.vw")),
            ("rcv1_small", d / "vw_rcv1_small/rcv1_small.train.vw",
             d / "vw_rcv1_small/rcv1_small.test.vw"),
            ("w8a", svmlight_to_vw(d / "w8a/w8a", workdir / "w8a.train.vw", skip_fifth=True),
             _w8a_test(d / "w8a/w8a", workdir / "w8a.test.vw")),
            ("agaricus", svmlight_to_vw(d / "agaricus/agaricus.txt.train", workdir / "ag.vw"),
             svmlight_to_vw(d / "agaricus/agaricus.txt.test", workdir / "ag.t.vw")),
        ]  # fmt: skip
    else:
        print(f"{REAL_DATA} not found: the real data sets are left out", file=sys.stderr)
    tr, te = clicks(workdir, rows, 1, 1.0), clicks(workdir, max(1, rows // 5), 2, 1.0)
    tr_k, te_k = clicks(workdir, rows, 1, 1000.0), clicks(workdir, max(1, rows // 5), 2, 1000.0)
    sets = [
        *[(n, a, b, ()) for n, a, b in real],
        ("clicks", tr, te, ()),
        ("clicks x1000", tr_k, te_k, ()),
        ("clicks -q ab", tr, te, ("ab",)),
        ("clicks -q ab -q cd", tr, te, ("ab", "cd")),
    ]
    for passes in (1, 3):
        out += [Case(n, a, b, q, passes) for n, a, b, q in sets]
    return out


def _w8a_test(src: Path, dst: Path) -> Path:
    """Every 5th line of w8a (the train file holds the others)."""
    if dst.exists():
        return dst
    tmp = dst.with_name(dst.name + ".tmp")
    with src.open() as f, tmp.open("w") as out:
        n = 0
        for line in f:
            tokens = line.split("#", 1)[0].split()
            if not tokens:
                continue
            if n % 5 == 4:
                label = "1" if float(tokens[0]) > 0 else "-1"
                out.write(f"{label} | {' '.join(tokens[1:])}\n")
            n += 1
    tmp.replace(dst)
    return dst


def _labels(path: Path) -> np.ndarray:
    with path.open() as f:
        return np.array([1.0 if float(line.split(None, 1)[0]) > 0 else -1.0 for line in f])


def run_shoal(case: Case, rate: float | None = None) -> np.ndarray:
    """Test probabilities of a model trained with shoal's defaults (or this learning rate)."""
    from shoal.data.reader import TextReader
    from shoal.features.spec import FeatureSpec
    from shoal.model.config import LearnerConfig
    from shoal.model.model import Model
    from shoal.train.single import TrainOptions, train

    spec = FeatureSpec(bits=BITS, interactions=case.interactions)
    model = Model(spec, LearnerConfig(learning_rate=rate))
    train(model, [case.train], TrainOptions(passes=case.passes))
    return np.concatenate(
        [model.predict_proba(b) for b in TextReader(spec=model.spec).read(case.test)]
    )


def run_vw(case: Case, workdir: Path) -> np.ndarray:
    """Test probabilities of a model trained with VW's defaults."""
    from vowpalwabbit import Workspace

    model, preds = workdir / "vw.model", workdir / "vw.preds"
    args = ["-d", str(case.train), "--loss_function", "logistic", "-b", str(BITS)]
    args += ["-f", str(model), "--quiet"]
    for q in case.interactions:
        args += ["-q", q]
    if case.passes > 1:
        cache = workdir / "vw.cache"
        cache.unlink(missing_ok=True)
        args += ["--passes", str(case.passes), "-c", "--cache_file", str(cache)]
    Workspace(arg_list=args).finish()
    Workspace(arg_list=["-d", str(case.test), "-t", "-i", str(model), "-p", str(preds),
                        "--quiet"]).finish()  # fmt: skip
    margins = np.array([float(line.split()[0]) for line in preds.open()])
    return 1.0 / (1.0 + np.exp(-margins))


def sweep(workdir: Path, rows: int, rates: list[float], only: list[str] | None) -> None:
    """One pass at each rate: how the default learning rate was chosen."""
    from shoal.model import metrics

    print("| data | " + " | ".join(f"rate {r:g}" for r in rates) + " |")
    print("|---|" + "---:|" * len(rates))
    for case in cases(workdir, rows):
        if case.passes != 1 or (only and case.name not in only):
            continue
        y = _labels(case.test)
        losses = [metrics.log_loss(run_shoal(case, r), y) for r in rates]
        print(f"| {case.name} | " + " | ".join(f"{v:.5f}" for v in losses) + " |", flush=True)


def main() -> None:
    from shoal.model import metrics

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=100_000, help="click rows to train on")
    p.add_argument("--workdir", default="/tmp/shoal-bench-quality")
    p.add_argument("--only", nargs="*", help="names of the rows to run (default: all)")
    p.add_argument(
        "--rates", type=float, nargs="*", help="instead: shoal's test log loss at these rates"
    )
    args = p.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if args.rates:
        sweep(workdir, args.rows, args.rates, args.only)
        return
    print("| data | passes | shoal log loss | VW log loss | ratio | shoal AUC | VW AUC |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    worst = 0.0
    for case in cases(workdir, args.rows):
        if args.only and case.name not in args.only:
            continue
        y = _labels(case.test)
        ps, pv = run_shoal(case), run_vw(case, workdir)
        ls, lv = metrics.log_loss(ps, y), metrics.log_loss(pv, y)
        a_s, a_v = metrics.auc(ps, y), metrics.auc(pv, y)
        ratio = ls / lv if lv > 0 else math.nan
        worst = max(worst, ratio)
        print(f"| {case.name} | {case.passes} | {ls:.5f} | {lv:.5f} | {ratio:.4f} | "
              f"{a_s:.5f} | {a_v:.5f} |", flush=True)  # fmt: skip
    print(f"\nworst ratio {worst:.5f}")


if __name__ == "__main__":
    main()
