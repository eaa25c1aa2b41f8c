"""Five passes from a binary cache: shoal's ``--cache`` against Vowpal Wabbit's cache and text.

For each size of click data, five settings run ``--passes 5`` with logistic loss and 18 bits,
each run its own process timed end to end, the settings' runs taken in turns (a shared
machine's speed drifts), best of ``--repeat``:

- ``shoal cache``: ``shoal train --cache DIR`` with DIR already built: every pass maps the cache;
- ``shoal cache, first run``: the same with an empty DIR: pass 1 parses and writes the cache;
- ``shoal text``: ``shoal train`` without a cache: every pass parses the text;
- ``vw cache``: VW with ``-c --cache_file F``, F already built: every pass reads VW's cache;
- ``vw text``: the same with no F yet: pass 1 parses the text and writes F (VW runs several
  passes only through its cache, so this is VW's five passes from text).

VW runs through the ``vowpalwabbit`` package's file driver (it ships no ``vw`` binary), as in
bench_train.py, with ``--holdout_off`` (with several passes VW would otherwise hold out every
tenth row and stop early). shoal's models with and without the cache are compared byte for
byte, and each tool's model is scored on a test file. See benchmarks/README.md.

    python benchmarks/bench_cache.py [--rows N ...] [--repeat R]
"""

from __future__ import annotations

import argparse
import filecmp
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench_train import clicks, in_process_seconds, source_stamp, spawn, table

ROOT = Path(__file__).resolve().parent.parent
PASSES = 5
SETTINGS = ("shoal cache", "shoal cache, first run", "shoal text", "vw cache", "vw text")


@dataclass
class Result:
    setting: str
    rows: int
    walls: list[float] = field(default_factory=list)
    inner: list[float] = field(default_factory=list)
    log_loss: float = float("nan")
    cache_mib: float = float("nan")

    @property
    def best(self) -> float:
        return min(self.walls)


def command(setting: str, data: Path, run: Path) -> tuple[list[str], Path]:
    """The training command line of a setting and the model it writes."""
    tool, _, _ = setting.partition(" ")
    model = run / (setting.replace(" ", "-").replace(",", "") + ".model")
    if tool == "shoal":
        shoal = str(Path(sys.executable).with_name("shoal"))
        argv = [shoal, "train", str(data), "-o", str(model), "--bits", "18", "--loss", "logistic",
                "--passes", str(PASSES)]  # fmt: skip
        if "cache" in setting:
            argv += ["--cache", str(run / "shoal-cache")]
        return argv, model
    me = [sys.executable, str(ROOT / "benchmarks" / "bench_train.py"), "--run-one", "vw"]
    vw_args = ["-d", str(data), "--loss_function", "logistic", "-b", "18", "--holdout_off"]
    vw_args += ["--passes", str(PASSES), "-c", "--cache_file", str(run / "vw.cache")]
    return [*me, *vw_args, "-f", str(model)], model


def prepare(setting: str, data: Path, run: Path) -> None:
    """What a setting finds before its run: a built cache, or none."""
    shoal_cache, vw_cache = run / "shoal-cache", run / "vw.cache"
    if setting == "shoal cache, first run":
        shutil.rmtree(shoal_cache, ignore_errors=True)
    elif setting == "vw text":
        vw_cache.unlink(missing_ok=True)
    elif setting == "shoal cache" and not any(shoal_cache.glob("*.cache")):
        spawn(command("shoal cache, first run", data, run)[0], run / "build.log")
    elif setting == "vw cache" and not vw_cache.exists():
        spawn(command("vw text", data, run)[0], run / "build.log")


def score(setting: str, model: Path, test: Path, run: Path) -> float:
    """The test log loss of a setting's model (predictions by another process, untimed)."""
    import numpy as np

    import shoal
    from shoal.model.metrics import log_loss

    preds = run / (model.name + ".preds")
    if setting.startswith("shoal"):
        argv = [str(Path(sys.executable).with_name("shoal")), "predict", str(model), str(test),
                "-o", str(preds)]  # fmt: skip
    else:
        me = [sys.executable, str(ROOT / "benchmarks" / "bench_train.py"), "--run-one", "vw"]
        argv = [*me, "-d", str(test), "-t", "-i", str(model), "-p", str(preds), "--link",
                "logistic"]  # fmt: skip
    spawn(argv, run / "predict.log")
    probs = np.array([float(line.split()[0]) for line in preds.read_text().splitlines() if line])
    reader = shoal.TextReader(spec=shoal.FeatureSpec(bits=18))
    labels = np.concatenate([b.labels for b in reader.read(test)])
    return float(log_loss(probs, labels))


def benchmark(rows: int, args: argparse.Namespace) -> list[Result]:
    args.workdir.mkdir(parents=True, exist_ok=True)
    data, _ = clicks(args.workdir, rows, 1)
    test, _ = clicks(args.workdir, max(1, rows // 10), 2)
    run = args.workdir / "runs" / f"cache-{rows}"
    run.mkdir(parents=True, exist_ok=True)
    with data.open("rb") as f:  # into the page cache first, so that no setting pays for it
        while f.read(1 << 24):
            pass
    results = {s: Result(s, rows) for s in args.settings}
    for i in range(args.repeat):
        for setting in args.settings:
            prepare(setting, data, run)
            argv, _ = command(setting, data, run)
            log = run / (setting.replace(" ", "-").replace(",", "") + ".log")
            wall, _ = spawn(argv, log)
            res = results[setting]
            res.walls.append(wall)
            res.inner.append(in_process_seconds(log))
            print(f"{rows:,} rows, {setting} run {i + 1}: {wall:.2f} s", file=sys.stderr)
    cache_files = list((run / "shoal-cache").glob("*.cache"))
    for setting, res in results.items():
        model = command(setting, data, run)[1]
        res.log_loss = score(setting, model, test, run)
        if setting.startswith("shoal cache"):
            res.cache_mib = sum(p.stat().st_size for p in cache_files) / (1 << 20)
        elif setting.startswith("vw") and (run / "vw.cache").exists():
            res.cache_mib = (run / "vw.cache").stat().st_size / (1 << 20)
    shoal_models = [command(s, data, run)[1] for s in args.settings if s.startswith("shoal")]
    for other in shoal_models[1:]:
        if not filecmp.cmp(shoal_models[0], other, shallow=False):
            sys.exit(f"{other} differs from {shoal_models[0]}: the cache changed the model")
    return list(results.values())


def report(results: list[Result], args: argparse.Namespace) -> None:
    rows = []
    for r in results:
        peers = {p.setting: p for p in results if p.rows == r.rows}

        def vs(name: str, r: Result = r, peers: dict[str, Result] = peers) -> str:
            return f"{peers[name].best / r.best:.2f}x" if name in peers else "-"

        rows.append([f"{r.rows:,}", r.setting, f"{r.best:.2f}", f"{r.rows * PASSES / r.best:,.0f}",
                     f"{min(r.inner):.2f}", vs("vw cache"), vs("vw text"), f"{r.cache_mib:,.1f}",
                     f"{r.log_loss:.5f}"])  # fmt: skip
    header = ["rows", "setting", "seconds", "examples/s", "seconds in-process", "vs vw cache",
              "vs vw text", "cache MiB", "test log loss"]  # fmt: skip
    table(header, rows, left=2)
    print(
        f"\n{PASSES} passes, logistic loss, 18 bits; seconds are end to end (process start to "
        f"model written), best of {args.repeat}, the settings' runs in turns; 'in-process' is "
        "the training time each tool reports (shoal's summary line, around VW's driver). "
        "'vs' is the peer's best time over this setting's. shoal's models with and without the "
        "cache are the same bytes (checked). VW: --holdout_off -c --cache_file."
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    p.add_argument("--repeat", type=int, default=3, help="runs per setting; best time is kept")
    p.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    p.add_argument("--workdir", type=Path, default=ROOT / "bench-data", help="data and caches")
    args = p.parse_args()
    print(f"command: {shlex.join([sys.executable, *sys.argv])}\n")
    stamp = source_stamp()
    results = [r for rows in args.rows for r in benchmark(rows, args)]
    report(results, args)
    if source_stamp() != stamp:
        print("\nWARNING: shoal's source changed during the run (numba compiled in timed runs).")


if __name__ == "__main__":
    main()
