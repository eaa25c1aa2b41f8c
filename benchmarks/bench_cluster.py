"""Distributed training throughput: 1, 2, ... local workers and the Ray engine, same data.

Every run is ``shoal train`` in its own process (the coordinator, which starts its workers),
timed end to end, plus the training time shoal reports itself (from the first round's start to
the last merge, which leaves out the interpreter's and the workers' start-up). Test log loss is
scored on the click test set, so accuracy is compared too. See benchmarks/README.md.

    python benchmarks/bench_cluster.py [--rows N] [--workers 1 2] [--ray] [--one-thread]
                                       [--repeat R]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

import numpy as np

from bench_train import ROOT, clicks, in_process_seconds, spawn, table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--rows", type=int, default=1_000_000, help="click train rows (test: rows/10)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts")
    p.add_argument("--ray", action="store_true", help="also the Ray engine (local instance)")
    p.add_argument(
        "--one-thread",
        action="store_true",
        help="also each worker count with one parse thread per worker (--parse-threads 1): "
        "data-parallel scaling alone; by default a worker parses with the cores others leave",
    )
    p.add_argument("--repeat", type=int, default=2, help="runs per setting; best time is kept")
    p.add_argument("--bits", type=int, default=18)
    p.add_argument("--workdir", type=Path, default=ROOT / "bench-data")
    args = p.parse_args()
    print(f"command: {shlex.join([sys.executable, *sys.argv])}; cores: {os.cpu_count()}\n")
    import shoal
    from shoal.model.metrics import log_loss

    run = args.workdir / "runs"
    run.mkdir(parents=True, exist_ok=True)
    train, _ = clicks(args.workdir, args.rows, 1)
    test, optimum = clicks(args.workdir, args.rows // 10, 2)
    shoal_bin = str(Path(sys.executable).with_name("shoal"))
    reader = shoal.TextReader(spec=shoal.FeatureSpec(bits=args.bits))
    labels = np.concatenate([b.labels for b in reader.read(test)])
    # (name, flags, group): "vs 1 worker" compares within a group
    settings = [("in-process (1 process, parse threads)", [], "")]
    for w in args.workers:
        settings.append((f"local, {w} worker(s)", ["--workers", str(w)], "local"))
    if args.one_thread:
        for w in args.workers:
            flags = ["--workers", str(w), "--parse-threads", "1"]
            settings.append((f"local, {w} worker(s), 1 parse thread each", flags, "one"))
    if args.ray:
        w = max(args.workers)
        settings.append((f"ray, {w} worker(s)", ["--engine", "ray", "--workers", str(w)], "local"))

    def command(extra: list[str], model: Path) -> list[str]:
        return [shoal_bin, "train", str(train), "-o", str(model), "--bits", str(args.bits), *extra]

    # Round robin over the settings (a shared machine's speed drifts): best of each.
    best = {name: [float("inf"), float("inf")] for name, _, _ in settings}
    for i in range(args.repeat):
        for k, (name, extra, _) in enumerate(settings):
            log = run / "cluster.train.log"
            wall, rss = spawn(command(extra, run / f"cluster-{k}.shoal"), log)
            best[name] = [min(best[name][0], wall), min(best[name][1], in_process_seconds(log))]
            print(f"{name} run {i + 1}: {wall:.2f} s, {rss:.0f} MiB", file=sys.stderr)
    rows: list[list[str]] = []
    base_rate: dict[str, dict[str, float]] = {}
    for k, (name, _, group) in enumerate(settings):
        model, preds = run / f"cluster-{k}.shoal", run / "cluster.preds"
        spawn([shoal_bin, "predict", str(model), str(test), "-o", str(preds)], run / "p.log")
        ll = log_loss(np.loadtxt(preds), labels)
        wall_rate, inner_rate = args.rows / best[name][0], args.rows / best[name][1]
        if name.startswith("local, 1 "):
            base_rate[group] = {"wall": wall_rate, "inner": inner_rate}
        base = base_rate.get(group)
        ratio = "-"
        if base:
            ratio = f"{wall_rate / base['wall']:.2f}x / {inner_rate / base['inner']:.2f}x"
        rows.append([name, f"{wall_rate:,.0f}", f"{inner_rate:,.0f}", ratio, f"{ll:.5f}"])
    header = ["setting", "examples/s end to end", "examples/s training", "vs 1 worker"]
    table([*header, "test log loss"], rows, left=1)
    print(
        f"\n{args.rows:,} click rows, {args.bits} bits, one pass, best of {args.repeat}; optimal "
        f"test log loss {optimum:.5f}. 'training' is the time shoal reports (rounds, merges and "
        "checkpoint-free broadcasts; not interpreter or worker start-up). 'vs 1 worker' is end "
        "to end / training."
    )


if __name__ == "__main__":
    main()
