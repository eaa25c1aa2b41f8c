"""What each ``shoal`` command does, given the arguments ``cli.py`` parsed.

``cli.py`` imports this module after parsing (numba and the compiled kernels load here), and
turns what is raised here into messages and exit codes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shoal import checks
from shoal import report as eval_report
from shoal.cli import CLUSTER_FLAGS, HTTP_ADDRESS, distributed
from shoal.compiling import seconds_compiling
from shoal.data import files as data_files
from shoal.data.reader import ReadStats, TextReader, with_format
from shoal.errors import ConfigError, ShoalError
from shoal.features.schema import ColumnSchema
from shoal.features.spec import FeatureSpec
from shoal.model import largest
from shoal.model.config import DEFAULT_RANK, LearnerConfig
from shoal.model.evaluate import evaluate
from shoal.model.model import Model, Progress
from shoal.model.output import prediction_line
from shoal.train.single import TrainOptions, TrainReport, train

if TYPE_CHECKING:  # shoal.serve imports the web stack: only `shoal serve` loads it
    from shoal.data.cache import CacheStats
    from shoal.serve.config import HttpConfig, TcpConfig

# Flags of `train` that shape the model; with --initial-model they must agree with it.
_SPEC_FLAGS = ("bits", "seed", "interactions", "no_constant", "ignore", "schema", "fields")
_CONFIG_FLAGS = (
    "loss",
    "classes",
    "optimizer",
    "learning_rate",
    "power_t",
    "initial_t",
    "l1",
    "l2",
    "ftrl_beta",
    "model_kind",
    "rank",
    "factor_rate",
    "l2_factors",
)


# -- progress ------------------------------------------------------------------------------


class _ProgressView:
    """A tqdm bar on a terminal; plain log lines every few seconds otherwise."""

    def __init__(self, total_bytes: int, passes: int) -> None:
        self.tty = sys.stderr.isatty()
        self.pass_bytes = total_bytes
        self.total = total_bytes * passes
        self.last_pass = 0
        self.last_log = time.monotonic()
        self.pass_start = self.last_call = time.monotonic()
        self.first_at: float | None = None
        self.first_examples = 0
        self.compiled_before = seconds_compiling()
        self.compiled = 0.0
        self.curve: list[tuple[int, int, float]] = []  # (examples so far, pass, loss)
        self.offset = self.pass_examples = 0
        self.bar: Any = None
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, unit="B", unit_scale=True, file=sys.stderr)

    def __call__(self, pass_index: int, prog: Progress, stats: ReadStats) -> None:
        now = time.monotonic()
        if self.first_at is None:  # the kernels are loaded (or compiled) by now
            self.first_at, self.first_examples = now, prog.examples
        if pass_index != self.last_pass:  # each pass's speed: its examples over its own time
            self.last_pass, self.pass_start = pass_index, self.last_call
            self.offset += self.pass_examples
        self.last_call = now
        self.pass_examples = prog.examples
        self.curve.append((self.offset + prog.examples, pass_index + 1, prog.loss))
        if len(self.curve) >= 4096:  # bounded memory: every other point of a long run
            self.curve = self.curve[::2]
        if self.bar is not None:
            self.bar.n = min(self.total, self.pass_bytes * pass_index + stats.bytes_read)
            self.bar.set_postfix_str(self.postfix(pass_index, prog), refresh=False)
            self.bar.refresh()
        elif time.monotonic() - self.last_log >= 5.0:
            self.last_log = time.monotonic()
            print(
                f"shoal: pass {pass_index + 1}: {prog.examples:,} examples, "
                f"progressive loss {prog.loss:.5f}",
                file=sys.stderr,
            )

    def postfix(self, pass_index: int, prog: Progress) -> str:
        """The bar's text: this pass's number, speed and progressive loss."""
        rate = prog.examples / max(1e-9, self.last_call - self.pass_start)
        return f"pass {pass_index + 1} ex/s {rate:,.0f} loss {prog.loss:.4f}"

    def close(self) -> None:
        self.end = time.monotonic()
        self.compiled = seconds_compiling() - self.compiled_before
        if self.bar is not None:
            self.bar.close()

    def speed(self, report: TrainReport) -> tuple[float, float]:
        """Seconds and examples per second from the first learned batch on: before it, numba
        loads or compiles the kernels and the parsers fill their first blocks, which is not
        training speed. A run of one batch has nothing after it: its time less the time spent
        compiling counts."""
        rest = report.examples - self.first_examples
        if self.first_at is None or rest <= 0:
            seconds = max(1e-9, report.seconds - self.compiled)
            return seconds, report.examples / seconds
        seconds = max(1e-9, self.end - self.first_at)
        return seconds, rest / seconds


# -- commands ------------------------------------------------------------------------------


def _given(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    return {n: getattr(args, n) for n in names if getattr(args, n) is not None}


def _build_model(args: argparse.Namespace) -> Model:
    spec_args = _given(args, _SPEC_FLAGS)
    cfg_args = _given(args, _CONFIG_FLAGS)
    if "model_kind" in cfg_args:  # --model: `serve MODEL` holds the model file's path
        cfg_args["model"] = cfg_args.pop("model_kind")
    initial = getattr(args, "initial_model", None)  # serve --new has none
    if initial:
        model = Model.load(initial)
        current = {**model.spec.to_dict(), **model.config.to_dict()}
        current["no_constant"] = not model.spec.constant
        current["model"] = model.config.model  # a linear config's dict leaves it out
        rules = model.spec.hash_version
        for name, value in {**spec_args, **cfg_args}.items():
            have = current.get(name)
            if name == "interactions":  # as the model's spec took them (-q ab ab is -q ab)
                value = list(FeatureSpec(interactions=value, hash_version=rules).interactions)
            if name == "fields":
                value = list(value)
            if name == "schema":  # the format the model learned from is not a flag
                value = _schema(value, args.delimiter).to_dict()
                have = {k: v for k, v in (have or {}).items() if k != "format"}
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
    if "fields" in spec_args:
        spec_args["fields"] = tuple(spec_args["fields"])
    if "schema" in spec_args:
        spec_args["schema"] = _schema(spec_args["schema"], args.delimiter)
    return Model(FeatureSpec(**spec_args), LearnerConfig(**cfg_args))


def _schema(text: str, delimiter: str) -> ColumnSchema:
    """``--schema``: a schema file if such a file exists, else the text form."""
    if checks.is_file_name(text):
        return ColumnSchema.load(text, delimiter=delimiter)
    if "," not in text and ("/" in text or text.endswith((".txt", ".json", ".schema"))):
        raise ConfigError("--schema", f"{text}: no such schema file")
    return ColumnSchema.parse(text, delimiter=delimiter)


def _print_report(
    report: TrainReport, out: Path | None, speed: tuple[float, float] | None = None
) -> None:
    if report.seconds == 0 and report.examples and math.isnan(report.progressive_loss):
        print(f"nothing left to train: the checkpoint holds the finished run "
              f"({report.examples:,} examples)")  # fmt: skip
        if out is not None:
            print(f"model written to {out}")
        return
    resumed = getattr(report, "resumed_examples", 0)  # a distributed run's restart
    seconds, per_second = speed or (report.seconds, report.examples_per_second)
    rate = f"{seconds:.2f}s ({per_second:,.0f} examples/s)"
    line = f"trained on {report.examples:,} examples in {report.passes} pass(es), "
    if resumed:  # the time, the speed and the loss are those of the rounds since the restart
        line += f"{resumed:,} of them before the restart; since then {rate}, "
    else:
        line += f"{rate}; "
    line += f"progressive loss {report.progressive_loss:.5f}"
    if len(report.pass_losses) > 1:  # pass 1's is the honest one: later passes saw the data
        line += f" (pass 1; pass {len(report.pass_losses)}: {report.pass_losses[-1]:.5f})"
    if report.holdout_examples:
        line += f"; holdout loss {report.holdout_loss:.5f} on {report.holdout_examples:,} examples"
    best = getattr(report, "best_pass", -1)
    if best >= 0:
        line += f" (pass {best + 1} of {report.passes}, the best: its model is kept)"
    print(line)
    if report.skipped:
        print(f"skipped {report.skipped:,} bad line(s); first: {report.first_skipped}")
    if report.cache is not None:
        print(_cache_line(report.cache))
    if report.examples == 0:  # --allow-empty
        print("shoal: warning: no labeled example was read, so nothing was learned",
              file=sys.stderr)  # fmt: skip
    if out is not None:
        print(f"model written to {out}")


def _cache_line(cache: CacheStats) -> str:
    """The summary's line about the binary cache: its size, what was written and read."""
    line = (f"cache: {len(cache.files)} file(s), {cache.bytes / (1 << 20):,.1f} MiB; "
            f"{cache.written} written, {cache.reads} read(s) from the cache")  # fmt: skip
    if cache.rebuilt:
        line += f"; {cache.rebuilt} refused and rebuilt (first: {cache.first_rebuilt})"
    return line


def cmd_train(args: argparse.Namespace) -> int:
    checks.output_path(args.output, args.data)
    model = _build_model(args)
    model.spec = with_format(model.spec, args.format, args.data)  # the model file keeps it
    checks.check_label_column(model)
    checks.check_inputs(args.data, args.output)
    opts = TrainOptions(
        format=args.format,
        passes=args.passes,
        holdout=args.holdout,
        early_stop=args.early_stop,
        on_bad_record=args.on_bad_record,
        parse_threads=args.parse_threads,
        cache=args.cache,
    )
    if distributed(args):
        return _train_cluster(model, opts, args)
    total = _size(args.data)
    view = _ProgressView(total, opts.passes)
    try:
        report = train(model, args.data, opts, on_batch=view)
    finally:
        view.close()
    if report.examples == 0 and not args.allow_empty:
        raise checks.nothing_learned(report, args.data)
    _save(model, args.output, view.curve if args.loss_curve else None)
    _print_report(report, Path(args.output), view.speed(report))
    return 0


def _save(model: Model, path: str | Path, curve: list[tuple[int, int, float]] | None) -> None:
    """The model file; with ``curve`` (``--loss-curve``), training's progressive loss over the
    examples in its metadata, for ``shoal eval --report``. Off by default: the curve follows
    the batches, which follow how the data is cut into files and formats, and without it the
    same examples give the same file, byte for byte, whatever the files and formats."""
    from shoal.model import modelfile
    from shoal.report import curve_points

    data = model.to_data()
    if curve is not None:
        data.extra["loss_curve"] = curve_points(curve)
    modelfile.save(path, data)


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
    if report.examples == 0 and not args.allow_empty:
        raise checks.nothing_learned(report, args.data)
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
    if args.report is not None:
        checks.output_path(args.report, [args.model, *args.data])
    model, extra = checks.load_model(args)
    stats = ReadStats()
    batches = _reader(model, args).read_all(args.data, stats)
    kept: list[tuple[np.ndarray, np.ndarray]] = []
    if args.report is not None:
        batches = eval_report.keeping_scores(model, batches, kept)
    result = evaluate(model, batches)
    if args.report is not None:
        eval_report.write_report(args.report, model, result, kept, model_path=args.model,
                                 data=args.data, extra=extra)  # fmt: skip
        print(f"report written to {args.report}", file=sys.stderr)
    if args.json:
        counts = {"examples": int(result["examples"]), "skipped": stats.skipped}
        print(json.dumps({**result, **counts}))
    else:
        for k, v in result.items():
            print(f"{k:<10} {int(v):,}" if k == "examples" else f"{k:<10} {v:.6f}")
        if stats.skipped:
            print(f"skipped {stats.skipped:,} bad line(s); first: {stats.first_skipped}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    model, _ = checks.load_model(args)
    stats = ReadStats()
    if args.output != "-":  # written in place: /dev/stdout or a pipe will do
        checks.output_path(args.output, [args.model, *args.data], replaced=False)
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
    spec, cfg = model.spec, model.config
    k = cfg.outputs
    weights = largest.largest_weights(model, args.top)
    vectors = largest.largest_vectors(model, args.top)
    info: dict[str, Any] = {
        "kind": cfg.model,
        **({"rank": cfg.rank} if cfg.factorized else {}),
        **({"fields": list(spec.fields)} if spec.fields else {}),
        "spec": spec.to_dict(),
        "config": cfg.to_dict(),
        "counters": {"examples": model.examples_learned, "weighted_examples": model.counters[0]},
        "nonzero_weights": int(np.count_nonzero(model.linear_weights)),
        "top_weights": [{"index": t.index, "class": t.output, "weight": t.value} for t in weights],
    }
    if cfg.factorized:
        info["start_norm"] = largest.start_norm(model)
        info["top_factors"] = [
            {"index": t.index, "norm": t.norm}
            | ({"fields": dict(zip(spec.fields, t.by_field, strict=True))} if spec.fields else {})
            for t in vectors
        ]
    if args.names:
        from shoal.data.names import invert_hash

        listed = [*info["top_weights"], *info.get("top_factors", ())]
        found = invert_hash(args.names, spec, (t["index"] for t in listed), format=args.format)
        for t in listed:  # most frequent first; none: not seen in DATA
            t["names"] = [n for n, _ in sorted(found[t["index"]].items(), key=lambda x: -x[1])]
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    kind: str = cfg.model
    if cfg.factorized:
        kind += f", rank {cfg.rank}" + (f", fields {', '.join(spec.fields)}" if spec.fields else "")
    print(f"model      {args.model}")
    print(f"kind       {kind}")
    print(f"spec       {json.dumps(info['spec'])}")
    print(f"config     {json.dumps(info['config'])}")
    print(f"examples   {model.examples_learned:,} (weighted {model.counters[0]:,.6g})")
    linear = "linear weights" if cfg.factorized else "weights"
    print(f"nonzero    {info['nonzero_weights']:,} of {model.linear_weights.size:,} {linear}")
    if cfg.factorized:
        print(f"largest {linear}:")
    for t in info["top_weights"]:
        cls = f" class {t['class']}" if k > 1 else ""
        print(f"  index {t['index']:>10}{cls}  {t['weight']:+.6f}{_names(t)}")
    if cfg.factorized:
        print(f"largest latent vectors (norm; each starts near {info['start_norm']:.3g}):")
    for t in info.get("top_factors", ()):
        by = " ".join(f"{f}:{n:.4f}" for f, n in t.get("fields", {}).items())
        print(f"  index {t['index']:>10}  {t['norm']:.6f}{f'  ({by})' if by else ''}{_names(t)}")
    return 0


def _names(entry: dict[str, Any]) -> str:
    """``inspect``'s names of a weight or vector, when ``--names`` asked for them."""
    if "names" not in entry:
        return ""
    return "  " + (", ".join(entry["names"]) or "(not in the data)")


def cmd_generate(args: argparse.Namespace) -> int:
    from shoal.data.synthetic import FM_RANK, generate_clicks

    if args.rows < 1:
        raise ConfigError("--rows", "must be at least 1")
    if args.rank is not None and args.model_kind != "fm":
        raise ConfigError("--rank", "is the rank of a hidden factorization machine (--model fm)")
    checks.output_path(args.output, [])
    info = generate_clicks(
        args.output,
        args.rows,
        model_seed=args.model_seed,
        data_seed=args.data_seed,
        model=args.model_kind,
        rank=FM_RANK if args.rank is None else args.rank,
    )
    print(
        f"wrote {info.rows:,} rows to {info.path}: positive rate {info.positive_rate:.4f}, "
        f"best possible log loss {info.optimal_log_loss:.5f}"
    )
    return 0


def _demo_model(data: Path, path: Path, kind: str, what: str, *, keep: bool = False) -> Model:
    """Train the demo's model on ``data`` in one pass, showing progress; write it to ``path``."""
    config = LearnerConfig(loss="logistic", model=kind)  # type: ignore[arg-type]  # a KINDS name
    model = Model(FeatureSpec(bits=20), config)
    print(f"shoal demo: training {what}, one pass", flush=True)
    view = _ProgressView(_size([data]), 1)
    try:
        report = train(model, [data], TrainOptions(), on_batch=view)
    finally:
        view.close()
    _save(model, path, view.curve)
    _print_report(report, path if keep else None, view.speed(report))
    return model


def cmd_demo(args: argparse.Namespace) -> int:
    from shoal.data.synthetic import generate_clicks

    if args.rows < 5:
        raise ConfigError(
            "--rows", f"must be at least 5 (a fifth is the test set), got {args.rows}"
        )
    if args.dir is not None and Path(args.dir).exists() and not Path(args.dir).is_dir():
        raise ConfigError("--dir", f"{args.dir} is a file: name a folder")

    with tempfile.TemporaryDirectory(prefix="shoal-demo-") as tmp:
        root = Path(args.dir or tmp)
        root.mkdir(parents=True, exist_ok=True)
        print(f"shoal demo: generating {args.rows:,} training and {args.rows // 5:,} test rows",
              flush=True)  # fmt: skip
        kind = args.model_kind
        tr = generate_clicks(root / "train.vw", args.rows, data_seed=1, model=kind)
        te = generate_clicks(root / "test.vw", max(1, args.rows // 5), data_seed=2, model=kind)
        what = logistic = "logistic regression (VW's normalized adaptive updates, 2**20 weights)"
        if kind == "fm":
            what = f"a factorization machine (rank {DEFAULT_RANK}, 2**20 slots)"
            linear = _demo_model(tr.path, root / "linear.shoal", "linear", logistic)
        model = _demo_model(tr.path, root / "model.shoal", kind, what, keep=bool(args.dir))
        print("shoal demo: evaluating on the test rows", flush=True)
        result = evaluate(model, TextReader(spec=model.spec).read(te.path))
        base = te.positive_rate
        base_ll = -(base * math.log(base) + (1 - base) * math.log(1 - base))
        print(f"test set: {int(result['examples']):,} rows")
        print(f"  log loss   {result['log_loss']:.5f}")
        if kind == "fm":
            plain = evaluate(linear, TextReader(spec=linear.spec).read(te.path))["log_loss"]
            print(f"  linear     {plain:.5f}  (logistic regression on the same rows)")
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
        flag = "--" + given[0].removesuffix("_kind").replace("_", "-")
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


def ready_line(state: dict[str, Any], urls: list[str], processes: str = "") -> None:
    """The line that says a server answers (tests and scripts wait for it)."""
    print(f"shoal: serving {state['name']!r}{processes} (version {state['version']}, event "
          f"seq {state['applied_seq']}, {state['replayed']} replayed) on "
          f"{' and '.join(urls)}", file=sys.stderr, flush=True)  # fmt: skip


def _serve_replica(args: argparse.Namespace, http: HttpConfig | None, tcp: TcpConfig | None) -> int:
    """``serve --follow URI``: a read replica."""
    from shoal.serve.replica.follower import FollowConfig
    from shoal.serve.replica.serving import serve_replica

    if args.processes is not None:
        raise ConfigError("--processes", "a read replica is one process: run several replicas")
    for flag, given in (("model", args.model), ("--state-dir", args.state_dir),
                        ("--publish", args.publish), ("--new", args.new or None)):  # fmt: skip
        if given is not None:
            raise ConfigError(flag, "a read replica (--follow) serves what the learner publishes: "
                              f"drop {flag}")  # fmt: skip
    follow = FollowConfig(
        uri=args.follow,
        leader=args.leader,
        name=args.name or "",
        token=args.token,
        batch_max_records=args.batch_max_records,
        batch_wait=args.batch_wait_ms / 1000,
        ignore_unknown=args.ignore_unknown,
    )
    serve_replica(follow, http, tcp, lambda state, urls: ready_line(state, urls, " as a replica"))
    print("shoal: stopped", file=sys.stderr)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from shoal.serve import ModelService, ServiceConfig, serve
    from shoal.serve.cluster import supervisor

    http, tcp = _http_config(args), _tcp_config(args)
    if args.follow is not None:
        return _serve_replica(args, http, tcp)
    if args.leader is not None:
        raise ConfigError("--leader", "is a setting of a read replica: add --follow URI")
    if args.model is None:
        raise ConfigError("model", "give the model file to serve (or --follow URI for a replica)")
    if args.state_dir is None:
        raise ConfigError("--state-dir", "is required: where the event log and snapshots live")
    processes = args.processes
    if processes is None:
        processes = supervisor.default_processes() if supervisor.supported() else 0
    if processes < 0 or (processes > 0 and not supervisor.supported()):
        raise ConfigError("--processes", f"must be 0 here (one process), got {processes}"
                          if processes > 0 else f"must be 0 or more, got {processes}")  # fmt: skip
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
        ignore_unknown=args.ignore_unknown,
        models_dir=args.models_dir or "",
        feedback_buffer_bytes=args.feedback_buffer_bytes,
        accept_event_loss=args.accept_event_loss,
    )

    made = not Path(args.state_dir).exists()
    started = False

    def ready(service: ModelService, urls: list[str]) -> None:
        nonlocal started
        started = True
        ready_line({**service.info(), "replayed": service.replayed}, urls)

    def ready_many(state: dict[str, Any], urls: list[str]) -> None:
        nonlocal started
        started = True
        ready_line(state, urls, f" with {processes} front end{'s' if processes > 1 else ''} "
                   "and a learner")  # fmt: skip

    try:
        if processes == 0:
            if args.publish is not None:
                raise ConfigError("--publish", "needs the learner process: --processes 1 or more")
            serve(config, http, tcp, on_ready=ready, prepare=lambda: _new_model(args))
        else:
            supervisor.serve_cluster(
                config, http, tcp, processes, ready_many, publish=args.publish,
                prepare=lambda: _new_model(args),
            )  # fmt: skip
    except BaseException:
        if made and not started:  # no event was accepted: leave nothing behind
            shutil.rmtree(args.state_dir, ignore_errors=True)
        raise
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
