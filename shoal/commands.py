"""What each ``shoal`` command does, given the arguments ``cli.py`` parsed.

``cli.py`` imports this module after parsing (numba and the compiled kernels load here), and
turns what is raised here into messages and exit codes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shoal.cli import CLUSTER_FLAGS, HTTP_ADDRESS, distributed
from shoal.data import files as data_files
from shoal.data.reader import ReadStats, TextReader
from shoal.errors import ConfigError, ShoalError
from shoal.features.schema import ColumnSchema
from shoal.features.spec import FeatureSpec
from shoal.model.config import LearnerConfig
from shoal.model.evaluate import evaluate
from shoal.model.model import Model, Progress
from shoal.model.output import prediction_line
from shoal.train.single import TrainOptions, TrainReport, train

if TYPE_CHECKING:  # shoal.serve imports the web stack: only `shoal serve` loads it
    from shoal.serve.config import HttpConfig, TcpConfig

# Flags of `train` that shape the model; with --initial-model they must agree with it.
_SPEC_FLAGS = ("bits", "seed", "interactions", "no_constant", "ignore", "schema")
_CONFIG_FLAGS = (
    "loss",
    "classes",
    "optimizer",
    "learning_rate",
    "power_t",
    "l1",
    "l2",
    "ftrl_beta",
)


# -- progress ------------------------------------------------------------------------------


class _ProgressView:
    """A tqdm bar on a terminal; plain log lines every few seconds otherwise."""

    def __init__(self, total_bytes: int, passes: int) -> None:
        self.tty = sys.stderr.isatty()
        self.total = total_bytes * passes
        self.done_before = 0
        self.last_pass = 0
        self.last_log = time.monotonic()
        self.start = time.monotonic()
        self.bar: Any = None
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, unit="B", unit_scale=True, file=sys.stderr)

    def __call__(self, pass_index: int, prog: Progress, stats: ReadStats) -> None:
        if pass_index != self.last_pass:
            self.done_before = self.total // max(1, pass_index + 1) * pass_index
            self.last_pass = pass_index
        elapsed = max(1e-9, time.monotonic() - self.start)
        rate = prog.examples / elapsed if pass_index == 0 else float("nan")
        if self.bar is not None:
            self.bar.n = min(self.total, self.done_before + stats.bytes_read)
            self.bar.set_postfix_str(
                f"pass {pass_index + 1} ex/s {rate:,.0f} loss {prog.loss:.4f}", refresh=False
            )
            self.bar.refresh()
        elif time.monotonic() - self.last_log >= 5.0:
            self.last_log = time.monotonic()
            print(
                f"shoal: pass {pass_index + 1}: {prog.examples:,} examples, "
                f"progressive loss {prog.loss:.5f}",
                file=sys.stderr,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# -- commands ------------------------------------------------------------------------------


def _given(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    return {n: getattr(args, n) for n in names if getattr(args, n) is not None}


def _build_model(args: argparse.Namespace) -> Model:
    spec_args = _given(args, _SPEC_FLAGS)
    cfg_args = _given(args, _CONFIG_FLAGS)
    initial = getattr(args, "initial_model", None)  # serve --new has none
    if initial:
        model = Model.load(initial)
        current = {**model.spec.to_dict(), **model.config.to_dict()}
        current["no_constant"] = not model.spec.constant
        for name, value in {**spec_args, **cfg_args}.items():
            have = current.get(name)
            if name == "interactions":
                value = list(value)
            if name == "schema":
                value = _schema(value, args.delimiter).to_dict()
            if value != have:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(
                    flag, f"{value!r} differs from the initial model's {have!r}; drop the flag"
                )
        return model
    if "no_constant" in spec_args:
        spec_args["constant"] = not spec_args.pop("no_constant")
    if "interactions" in spec_args:
        spec_args["interactions"] = tuple(spec_args["interactions"])
    if "schema" in spec_args:
        spec_args["schema"] = _schema(spec_args["schema"], args.delimiter)
    return Model(FeatureSpec(**spec_args), LearnerConfig(**cfg_args))


def _schema(text: str, delimiter: str) -> ColumnSchema:
    """``--schema``: a schema file if such a file exists, else the text form."""
    if Path(text).is_file():
        return ColumnSchema.load(text, delimiter=delimiter)
    if "," not in text and ("/" in text or text.endswith((".txt", ".json", ".schema"))):
        raise ConfigError("--schema", f"{text}: no such schema file")
    return ColumnSchema.parse(text, delimiter=delimiter)


def _print_report(report: TrainReport, out: Path | None) -> None:
    if report.seconds == 0 and report.examples and math.isnan(report.progressive_loss):
        print(f"nothing left to train: the checkpoint holds the finished run "
              f"({report.examples:,} examples)")  # fmt: skip
        if out is not None:
            print(f"model written to {out}")
        return
    resumed = getattr(report, "resumed_examples", 0)  # a distributed run's restart
    rate = f"{report.seconds:.2f}s ({report.examples_per_second:,.0f} examples/s)"
    line = f"trained on {report.examples:,} examples in {report.passes} pass(es), "
    if resumed:  # the time, the speed and the loss are those of the rounds since the restart
        line += f"{resumed:,} of them before the restart; since then {rate}, "
    else:
        line += f"{rate}; "
    line += f"progressive loss {report.progressive_loss:.5f}"
    if report.holdout_examples:
        line += f"; holdout loss {report.holdout_loss:.5f} on {report.holdout_examples:,} examples"
    print(line)
    if report.skipped:
        print(f"skipped {report.skipped:,} bad line(s); first: {report.first_skipped}")
    if report.examples == 0:
        print("shoal: warning: no labeled example was read, so nothing was learned (is the "
              "label column there?)", file=sys.stderr)  # fmt: skip
    if out is not None:
        print(f"model written to {out}")


def _output(path: str, inputs: Sequence[str]) -> Path:
    """``-o``: not a directory, and not one of the inputs (it would be overwritten)."""
    out = Path(path)
    if out.is_dir():
        raise ConfigError("-o", f"{path} is a directory: name a file")
    local = [i for i in inputs if not data_files.is_uri(i)]
    if out.exists() and any(os.path.samefile(f, out) for f in data_files.expand(local)):
        raise ConfigError("-o", f"{path} is one of the input files: it would be overwritten")
    return out


def cmd_train(args: argparse.Namespace) -> int:
    _output(args.output, args.data)
    model = _build_model(args)
    opts = TrainOptions(
        format=args.format,
        passes=args.passes,
        holdout=args.holdout,
        on_bad_record=args.on_bad_record,
        parse_threads=args.parse_threads,
    )
    if distributed(args):
        return _train_cluster(model, opts, args)
    total = _size(args.data)
    view = _ProgressView(total, opts.passes)
    try:
        report = train(model, args.data, opts, on_batch=view)
    finally:
        view.close()
    model.save(args.output)
    _print_report(report, Path(args.output))
    return 0


def _train_cluster(model: Model, opts: TrainOptions, args: argparse.Namespace) -> int:
    from shoal.train.coordinator import ClusterOptions, RoundStatus, train_cluster

    cluster = ClusterOptions(
        workers=args.workers or os.cpu_count() or 1,
        engine=args.engine,
        checkpoint_dir=args.checkpoint_dir,
        **_given(args, CLUSTER_FLAGS),
    )
    bar: Any = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(unit="round", file=sys.stderr)
    start = time.monotonic()

    def on_round(st: RoundStatus) -> None:
        rate = st.examples / max(1e-9, time.monotonic() - start)
        text = (f"pass {st.pass_index + 1} ex/s {rate:,.0f} workers {st.workers_alive} "
                f"retries {st.retries} loss {st.progress.loss:.4f}")  # fmt: skip
        if bar is not None:
            bar.total = st.steps
            bar.n = st.step
            bar.set_postfix_str(text, refresh=True)
        else:
            print(f"shoal: round {st.step}/{st.steps}: {text}", file=sys.stderr)

    try:
        trained, report = train_cluster(model, args.data, opts, cluster, on_round=on_round)
    finally:
        if bar is not None:
            bar.close()
    trained.save(args.output)
    _print_report(report, Path(args.output))
    print(
        f"{report.workers} {args.engine} worker(s), {report.rounds} round(s); survived "
        f"{report.worker_deaths} worker death(s), {report.retries} retried task(s), "
        f"{report.duplicates} straggler duplicate(s)"
        + (f"; resumed at round {report.resumed_from_step}" if report.resumed_from_step else "")
    )
    return 0


def _size(inputs: Sequence[str | os.PathLike[str]]) -> int:
    """Bytes of the input files, for the progress bar (0: unknown; the reader says why)."""
    try:
        return sum(data_files.file_size(f) for f in data_files.expand(inputs))
    except ShoalError:
        return 0


def _reader(model: Model, args: argparse.Namespace) -> TextReader:
    return TextReader(spec=model.spec, format=args.format, on_bad_record=args.on_bad_record)


def cmd_eval(args: argparse.Namespace) -> int:
    model = Model.load(args.model)
    stats = ReadStats()
    result = evaluate(model, _reader(model, args).read_all(args.data, stats))
    if args.json:
        print(json.dumps({**result, "skipped": stats.skipped}))
    else:
        for k, v in result.items():
            print(f"{k:<10} {int(v):,}" if k == "examples" else f"{k:<10} {v:.6f}")
        if stats.skipped:
            print(f"skipped {stats.skipped:,} bad line(s); first: {stats.first_skipped}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    model = Model.load(args.model)
    stats = ReadStats()
    if args.output != "-":
        _output(args.output, [args.model, *args.data])
    try:
        out = sys.stdout if args.output == "-" else open(args.output, "w", encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise ConfigError("-o", f"cannot write {args.output}: {exc.strerror}") from None
    try:
        for batch in _reader(model, args).read_all(args.data, stats):
            values = model.predict(batch).tolist()
            tags = batch.tags() if args.tags else [""] * len(values)
            out.write("\n".join(map(prediction_line, values, tags)))
            out.write("\n")
    finally:
        if out is not sys.stdout:
            out.close()
    if stats.skipped:
        print(
            f"skipped {stats.skipped:,} bad line(s); first: {stats.first_skipped}", file=sys.stderr
        )
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    model = Model.load(args.model)
    k = model.config.outputs
    w = model.weights.reshape(-1, k)
    flat = np.abs(model.weights)
    top = np.argsort(-flat, kind="stable")[: max(0, args.top)]
    info: dict[str, Any] = {
        "spec": model.spec.to_dict(),
        "config": model.config.to_dict(),
        "counters": {"examples": model.examples_learned, "weighted_examples": model.counters[0]},
        "nonzero_weights": int(np.count_nonzero(w)),
        "top_weights": [
            {"index": int(i // k), "class": int(i % k) + 1, "weight": float(model.weights[i])}
            for i in top
            if model.weights[i] != 0
        ],
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"model      {args.model}")
    print(f"spec       {json.dumps(info['spec'])}")
    print(f"config     {json.dumps(info['config'])}")
    print(f"examples   {model.examples_learned:,} (weighted {model.counters[0]:,.6g})")
    print(f"nonzero    {info['nonzero_weights']:,} of {w.size:,} weights")
    for t in info["top_weights"]:
        cls = f" class {t['class']}" if k > 1 else ""
        print(f"  index {t['index']:>10}{cls}  {t['weight']:+.6f}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from shoal.data.synthetic import generate_clicks

    if args.rows < 1:
        raise ConfigError("--rows", "must be at least 1")
    info = generate_clicks(
        args.output, args.rows, model_seed=args.model_seed, data_seed=args.data_seed
    )
    print(
        f"wrote {info.rows:,} rows to {info.path}: positive rate {info.positive_rate:.4f}, "
        f"best possible log loss {info.optimal_log_loss:.5f}"
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from shoal.data.synthetic import generate_clicks

    with tempfile.TemporaryDirectory(prefix="shoal-demo-") as tmp:
        root = Path(args.dir or tmp)
        root.mkdir(parents=True, exist_ok=True)
        print(f"shoal demo: generating {args.rows:,} training and {args.rows // 5:,} test rows")
        tr = generate_clicks(root / "train.vw", args.rows, data_seed=1)
        te = generate_clicks(root / "test.vw", max(1, args.rows // 5), data_seed=2)
        model = Model(FeatureSpec(bits=20), LearnerConfig(loss="logistic", optimizer="adagrad"))
        view = _ProgressView(_size([tr.path]), 1)
        try:
            report = train(model, [tr.path], TrainOptions(), on_batch=view)
        finally:
            view.close()
        model.save(root / "model.shoal")
        _print_report(report, root / "model.shoal" if args.dir else None)
        result = evaluate(model, TextReader(spec=model.spec).read(te.path))
        base = te.positive_rate
        base_ll = -(base * math.log(base) + (1 - base) * math.log(1 - base))
        print(f"test set: {int(result['examples']):,} rows")
        print(f"  log loss   {result['log_loss']:.5f}")
        print(f"  optimum    {te.optimal_log_loss:.5f}  (the hidden model's own log loss)")
        print(f"  base rate  {base_ll:.5f}  (always predicting the click rate)")
        print(f"  AUC        {result['auc']:.5f}")
        print(f"  accuracy   {result['accuracy']:.5f}")
        gap = (result["log_loss"] - te.optimal_log_loss) / (base_ll - te.optimal_log_loss)
        print(f"shoal closed {100 * (1 - gap):.1f}% of the gap between base rate and optimum")
    return 0


# -- serve ---------------------------------------------------------------------------------


def _check_new_flags(args: argparse.Namespace) -> None:
    """Model flags make a new model: they need ``--new``."""
    given = [n for n in (*_SPEC_FLAGS, *_CONFIG_FLAGS) if getattr(args, n) is not None]
    if not args.new and given:
        flag = "--" + given[0].replace("_", "-")
        raise ConfigError(flag, "makes a new model: add --new (or train one with shoal train)")


def _new_model(args: argparse.Namespace) -> None:
    """``serve --new``: write MODEL from the model flags; a restart finds it already made.
    Called once the state directory is locked: a server that cannot start writes nothing."""
    if not args.new:
        return
    model = _build_model(args)
    path = Path(args.model)
    if not path.exists():
        model.save(path)
        return
    made = Model.load(path)
    if (made.spec, made.config) != (model.spec, model.config):
        raise ConfigError(
            "--new", f"{path} exists and is not the model these flags make: remove it, or drop "
            "--new to serve it as it is",
        )  # fmt: skip


def _address(flag: str, text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(flag, f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def _http_config(args: argparse.Namespace) -> HttpConfig | None:
    """``--http``'s settings; None when ``--tcp`` is given alone (HTTP is not served)."""
    from shoal.serve import HttpConfig

    if args.http is None and args.tcp is not None:
        return None
    host, port = _address("--http", args.http or HTTP_ADDRESS)
    return HttpConfig(
        host=host,
        port=port,
        token=args.token,
        token_for_predict=args.token_for_predict,
        allow_insecure=args.allow_insecure,
        max_body_bytes=args.max_body_bytes,
        max_records=args.max_records,
        max_connections=args.max_connections,
        request_timeout=args.request_timeout,
    )


def _tcp_config(args: argparse.Namespace) -> TcpConfig | None:
    """``--tcp``'s settings; None without ``--tcp``."""
    from shoal.serve import TcpConfig

    if args.tcp is None:
        return None
    host, port = _address("--tcp", args.tcp)
    return TcpConfig(
        host=host,
        port=port,
        allow_insecure=args.allow_insecure,
        max_line_bytes=args.max_line_bytes,
        max_connections=args.max_connections,
        idle_timeout=args.idle_timeout,
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from shoal.serve import ModelService, ServiceConfig, serve

    http, tcp = _http_config(args), _tcp_config(args)
    _check_new_flags(args)
    if args.new:
        _build_model(args)  # the flags make a model (checked before the state dir is touched)
    config = ServiceConfig(
        model_path=args.model,
        state_dir=args.state_dir,
        name=args.name or "",
        snapshot_every_events=args.snapshot_every_events,
        snapshot_every_seconds=args.snapshot_every_seconds,
        keep_versions=args.keep_versions,
        feedback_ttl=args.feedback_ttl,
        batch_max_records=args.batch_max_records,
        batch_wait=args.batch_wait_ms / 1000,
        models_dir=args.models_dir or "",
        feedback_buffer_bytes=args.feedback_buffer_bytes,
        accept_event_loss=args.accept_event_loss,
    )

    def ready(service: ModelService, urls: list[str]) -> None:
        info = service.info()
        print(f"shoal: serving {service.name!r} (version {info['version']}, event seq "
              f"{info['applied_seq']}, {service.replayed} replayed) on {' and '.join(urls)}",
              file=sys.stderr, flush=True)  # fmt: skip

    serve(config, http, tcp, on_ready=ready, prepare=lambda: _new_model(args))
    print("shoal: stopped; every acknowledged event is in the last snapshot", file=sys.stderr)
    return 0


COMMANDS = {
    "serve": cmd_serve,
    "train": cmd_train,
    "eval": cmd_eval,
    "predict": cmd_predict,
    "inspect": cmd_inspect,
    "generate": cmd_generate,
    "demo": cmd_demo,
}
