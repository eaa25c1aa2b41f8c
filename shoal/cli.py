"""The ``shoal`` command.

This module parses the arguments, reads the environment and turns errors into exit codes: every
``ShoalError`` (and every ``OSError``: a file system saying no) becomes one line on stderr and
exit status 2; anything unexpected becomes one line and status 1 (``--debug`` shows the
traceback). It imports only what parsing needs: what each command does is in ``commands.py``,
imported after the arguments are parsed (so ``shoal --help`` is quick, and local workers start
while the command imports).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Sequence
from typing import Any

from shoal._version import __version__
from shoal.data.formats import FORMATS
from shoal.errors import ShoalError
from shoal.model.config import DEFAULT_RANK, DEFAULT_RATES, FACTOR_RATE, KINDS, LOSSES, OPTIMIZERS
from shoal.startup import init_numba
from shoal.train import forkserver

DESCRIPTION = """\
Learn logistic, linear and multiclass models on hashed sparse features (click logs, text,
anything with many categories), online and fast; evaluate and inspect them; serve them over
HTTP and TCP while they keep learning from feedback.

Reads Vowpal Wabbit text, svmlight, CSV/TSV (with a column schema), JSON lines and Parquet,
local or behind URIs such as s3://."""

EPILOG = """\
examples:
  shoal demo                                          # generate data, train, evaluate
  shoal generate -o clicks.vw --rows 100000
  shoal train clicks.vw -o clicks.shoal --passes 2
  shoal eval clicks.shoal clicks.vw
  shoal train day1.tsv --format tsv --schema 'label,I1..I13:num:log1p,C1..C26:cat' -o ctr.shoal
  shoal serve clicks.shoal --state-dir state/

'shoal COMMAND --help' shows a command's options and their defaults; the user guide is
docs/index.md."""

EXAMPLES = {
    "train": """\
examples:
  shoal train clicks.vw -o clicks.shoal
  shoal train clicks.vw -o clicks.shoal --passes 3 --holdout 0.1 -q ua --learning-rate 0.05
  shoal train clicks.vw -o clicks.shoal --loss-curve   # for shoal eval --report
  shoal train day1.tsv --format tsv --schema 'label,I1..I13:num:log1p,C1..C26:cat' -o ctr.shoal
  shoal train logs/ -o ctr.shoal --workers 4 --checkpoint-dir ckpt/   # distributed, resumable

A run that learns nothing (no labeled example, or every record skipped) exits with status 2
and writes no model, unless --allow-empty.""",
    "eval": """\
examples:
  shoal eval clicks.shoal test.vw
  shoal eval ctr.shoal day2.tsv --json
  shoal eval clicks.shoal test.vw --report report.html   # charts in one HTML file

The model comes first, then the data; a CSV/TSV model applies its own schema.""",
    "predict": """\
examples:
  shoal predict clicks.shoal test.vw > predictions.txt
  shoal predict clicks.shoal test.vw -o predictions.txt --tags""",
    "inspect": """\
examples:
  shoal inspect clicks.shoal
  shoal inspect clicks.shoal --top 20 --json""",
    "generate": """\
examples:
  shoal generate -o clicks.vw --rows 100000
  shoal generate -o test.vw --rows 20000 --data-seed 2   # same hidden model, other rows
  shoal generate -o fm.vw --rows 1000000 --model fm      # pairs of features matter""",
    "demo": """\
examples:
  shoal demo
  shoal demo --rows 100000 --dir demo/   # keep the data and the model
  shoal demo --model fm --rows 1000000   # a factorization machine on data where pairs matter""",
    "serve": """\
examples:
  shoal serve clicks.shoal --state-dir state/
  shoal serve clicks.shoal --state-dir state/ --http 0.0.0.0:8080 --token "$SECRET"
  shoal serve clicks.shoal --state-dir state/ --tcp            # VW's daemon protocol too
  shoal serve new.shoal --new --bits 20 -q ua --state-dir state/   # start from nothing
  shoal serve clicks.shoal --state-dir state/ --processes 4 --publish s3://bucket/ctr
  shoal serve --follow s3://bucket/ctr --leader http://learner:8080   # a read replica

Routes: docs/serve.md (curl examples for each), or GET /openapi.json on a running server.""",
}


class _Help(argparse.RawDescriptionHelpFormatter):
    """Help that shows each option's default, unless its text already says it or it has none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or "default" in text
            or default is None
            or isinstance(default, bool)  # a switch: off unless given
            or default == argparse.SUPPRESS
        ):
            return text
        return f"{text} (default: {default})"


def _command(sub: Any, name: str, help: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=help, description=help[0].upper() + help[1:] + ".", epilog=EXAMPLES[name],
        formatter_class=_Help,
    )  # fmt: skip
    return parser


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "data",
        nargs="+",
        help="input files, directories or glob patterns, local or behind URIs such as "
        "s3://bucket/dir (VW text, svmlight, CSV/TSV, JSON lines, Parquet; .gz read as is)",
    )
    p.add_argument(
        "--format",
        choices=FORMATS,
        help="input format (default: from the file name, else sniffed from the first line)",
    )
    p.add_argument(
        "--on-bad-record",
        choices=("stop", "skip"),
        default="stop",
        help="stop at the first bad line, or skip and count bad lines",
    )


def _add_model_args(p: Any) -> None:  # a parser or an argument group
    """The flags that make a new model: its loss, optimizer and feature spec."""
    p.add_argument("--loss", choices=LOSSES, help="loss (default: logistic)")
    p.add_argument(
        "--classes", type=int, metavar="K", help="number of classes for --loss multiclass"
    )
    p.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        help="optimizer (default: normalized, VW's adaptive, normalized, invariant updates)",
    )
    rates = ", ".join(f"{k} {v:g}" for k, v in DEFAULT_RATES.items())
    p.add_argument(
        "--learning-rate",
        type=float,
        metavar="R",
        help=f"base learning rate, FTRL's alpha (default: {rates})",
    )
    p.add_argument(
        "--power-t",
        type=float,
        metavar="P",
        help="decay exponent of SGD's step and of the normalized optimizer's (default: 0.5)",
    )
    p.add_argument(
        "--initial-t",
        type=float,
        metavar="T",
        help="normalized optimizer: start as if this many examples had been seen (default: 0)",
    )
    p.add_argument("--l1", type=float, metavar="X", help="L1 regularisation (default: 0)")
    p.add_argument("--l2", type=float, metavar="X", help="L2 regularisation (default: 0)")
    p.add_argument("--ftrl-beta", type=float, metavar="B", help="FTRL-Proximal's beta (default: 1)")
    p.add_argument("--bits", type=int, metavar="N", help="hash bits: 2**N weights (default: 18)")
    p.add_argument("--seed", type=int, metavar="N", help="hash seed (default: 0)")
    p.add_argument(
        "-q",
        "--interactions",
        nargs="+",
        action="extend",  # VW's -q ab -q cd as well as -q ab cd
        metavar="NS",
        help="namespace interactions by first letter, e.g. -q ab cd (pairs) or abc (triples) "
        "(default: none)",
    )
    p.add_argument("--ignore", metavar="LETTERS", help="namespaces whose features are dropped")
    p.add_argument(
        "--schema",
        help="columns of CSV/TSV input (and of Parquet/JSON, instead of their own types), e.g. "
        "'label,I1..I13:num,C1..C26:cat', or a schema file",
    )
    p.add_argument(
        "--delimiter", default=",", metavar="C", help="CSV field delimiter (default: ',')"
    )
    p.add_argument("--no-constant", action="store_true", default=None, help="no bias feature")
    p.add_argument(
        "--model",
        dest="model_kind",  # `serve MODEL` holds the model file's path
        choices=KINDS,
        help="linear, a factorization machine (fm: every pair of features through latent "
        "vectors) or a field-aware one (ffm, with --fields) (default: linear)",
    )
    p.add_argument(
        "--rank",
        type=_positive,  # 0 is the config's "default rank": on the command line, a mistake
        metavar="K",
        help=f"fm/ffm: numbers per latent vector (default: {DEFAULT_RANK})",
    )
    p.add_argument(
        "--fields",
        type=_fields,
        metavar="LETTERS",
        help="ffm: its fields as namespace letters, one per letter (uic) or grouped by commas "
        "(ab,c)",
    )
    p.add_argument(
        "--factor-rate",
        type=float,
        metavar="R",
        help=f"fm/ffm: the factors' AdaGrad learning rate (default: {FACTOR_RATE:g})",
    )
    p.add_argument(
        "--l2-factors", type=float, metavar="X", help="fm/ffm: L2 on the factors (default: 0)"
    )


def _fields(text: str) -> list[str]:
    """``--fields``: 'uic' is three fields of one namespace each, 'ab,c' two fields."""
    groups = text.split(",") if "," in text else list(text)
    if not text or any(not g for g in groups):
        raise argparse.ArgumentTypeError(f"{text!r}: give namespace letters, e.g. uic or ab,c")
    return groups


def _parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="shoal", description=DESCRIPTION, epilog=EPILOG, formatter_class=_Help
    )
    top.add_argument("--version", action="version", version=f"shoal {__version__}")
    top.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = _command(sub, "train", "train a model on data files")
    _add_data_args(t)
    t.add_argument("-o", "--output", required=True, help="model file to write")
    _add_model_args(t)
    t.add_argument("--passes", type=int, default=1, metavar="N", help="passes over the data")
    t.add_argument(
        "--holdout",
        type=float,
        metavar="FRACTION",
        help="fraction held out, never learned, for the holdout loss (default: 0.1 with "
        "--passes > 1, as VW; else 0)",
    )
    t.add_argument(
        "--early-stop",
        type=int,
        metavar="K",
        help="with several passes and a holdout: stop after K passes without a better holdout "
        "loss and keep the best pass's model (default: 3; 0: never, keep the last pass)",
    )
    t.add_argument("--initial-model", metavar="MODEL", help="continue training this model file")
    t.add_argument(
        "--loss-curve",
        action="store_true",
        help="keep the progressive loss over the examples in the model file, for shoal eval "
        "--report (it follows the batches: the file is then not byte-identical across input "
        "layouts)",
    )
    t.add_argument(
        "--allow-empty",
        action="store_true",
        help="write the model even when no labeled example was read (else: exit status 2)",
    )
    t.add_argument(
        "--parse-threads",
        type=int,
        default=0,
        metavar="N",
        help="threads parsing ahead of the learner, in this process or in each worker (default: "
        "0, one per core, or the cores per local worker); the model does not depend on it",
    )
    t.add_argument(
        "--cache",
        metavar="DIR",
        help="keep the hashed batches of the first pass in DIR: later passes and runs with the "
        "same inputs and settings read them instead of the text (the same model, faster)",
    )
    c = t.add_argument_group("distributed training (data parallel, fault tolerant)")
    c.add_argument(
        "--workers",
        type=_positive,
        metavar="N",
        help="worker processes (default: none, train in this process with a parser thread per "
        "core; with --engine ray or --checkpoint-dir: one per core)",
    )
    c.add_argument("--engine", choices=("local", "ray"), default="local", help="where workers run")
    c.add_argument("--address", help="Ray cluster address (default: start a local Ray instance)")
    c.add_argument(
        "--shards", type=_positive, metavar="N", help="shards to cut the data into (default: 4 "
        "per worker)"
    )  # fmt: skip
    c.add_argument(
        "--tasks-per-round",
        type=_positive,
        metavar="N",
        help="shards merged per round (default: one per worker)",
    )
    c.add_argument(
        "--checkpoint-dir", metavar="DIR", help="checkpoint every round here; rerun to resume"
    )
    c.add_argument(
        "--max-attempts", type=_positive, metavar="N", help="tries per task (default: 4)"
    )  # fmt: skip
    c.add_argument(
        "--task-timeout", type=float, metavar="SECONDS", help="seconds before a retry "
        "(default: 3600)"
    )  # fmt: skip

    e = _command(sub, "eval", "evaluate a model on labeled data")
    e.add_argument("model", help="model file")
    _add_data_args(e)
    e.add_argument("--json", action="store_true", help="print the metrics as JSON")
    e.add_argument(
        "--report",
        metavar="HTML",
        help="also write charts (ROC, calibration, predictions, training loss, largest "
        "weights) to this self-contained HTML file",
    )

    pr = _command(sub, "predict", "predict, one line per input record")
    pr.add_argument("model", help="model file")
    _add_data_args(pr)
    pr.add_argument("-o", "--output", default="-", help="output file (default: stdout)")
    pr.add_argument("--tags", action="store_true", help="append each record's tag, as VW does")

    i = _command(sub, "inspect", "show a model's spec, settings, counters, top weights")
    i.add_argument("model", help="model file")
    i.add_argument("--top", type=int, default=10, metavar="N", help="how many of the largest "
                   "weights")  # fmt: skip
    i.add_argument("--json", action="store_true", help="print as JSON")
    i.add_argument(
        "--names",
        nargs="+",
        metavar="DATA",
        help="name the top weights: the features and interactions of DATA (VW text or "
        "svmlight, read with the model's spec) that hash to them, as VW's --invert_hash",
    )
    i.add_argument("--format", choices=("vw", "svmlight"), help="format of DATA (default: guess)")

    g = _command(sub, "generate", "write a synthetic click data set (VW text)")
    g.add_argument("-o", "--output", required=True, help="file to write")
    g.add_argument("--rows", type=int, default=100_000, metavar="N", help="rows")
    g.add_argument("--model-seed", type=int, default=0, metavar="N", help="seed of the hidden "
                   "model")  # fmt: skip
    g.add_argument("--data-seed", type=int, default=1, metavar="N", help="seed of the rows")
    g.add_argument(
        "--model",
        dest="model_kind",
        choices=("linear", "fm"),
        default="linear",
        help="the hidden model: logistic regression on 26 categorical and 9 numeric fields, or "
        "a factorization machine on 12 categorical fields in namespaces u, i, c (default: "
        "linear)",
    )
    g.add_argument(
        "--rank",
        type=int,
        metavar="K",
        help="fm: numbers per latent vector of the hidden model (default: 4)",
    )

    d = _command(sub, "demo", "generate click data, train, evaluate, compare to optimum")
    d.add_argument("--rows", type=int, default=500_000, metavar="N", help="training rows")
    d.add_argument("--dir", help="where to write the data and model (default: a temp dir)")
    d.add_argument(
        "--model",
        dest="model_kind",
        choices=("linear", "fm"),
        default="linear",
        help="linear: logistic regression on linear click data; fm: a factorization machine on "
        "data from a hidden one, next to a linear model (default: linear)",
    )
    _add_serve_parser(sub)
    return top


HTTP_ADDRESS = "127.0.0.1:8080"
TCP_ADDRESS = "127.0.0.1:26542"  # Vowpal Wabbit's daemon port


def _add_serve_parser(sub: Any) -> None:
    s = _command(sub, "serve", "serve a model over HTTP and TCP and keep learning from feedback")
    s.add_argument(
        "model",
        nargs="?",
        help="model file to start from (the state dir wins after a restart); none with --follow",
    )
    s.add_argument(
        "--new", action="store_true", help="start from a new model made from the flags below"
    )
    s.add_argument(
        "--state-dir", metavar="DIR", help="event log, snapshots; rerun to resume (required)"
    )
    s.add_argument(
        "--http",
        metavar="HOST:PORT",
        help=f"where to listen (default {HTTP_ADDRESS}, unless --tcp alone is given; port 0: "
        "any free port)",
    )
    s.add_argument(
        "--tcp",
        nargs="?",
        const=TCP_ADDRESS,
        metavar="HOST:PORT",
        help="answer VW lines over TCP as VW's daemon does (alone: TCP only; default "
        f"{TCP_ADDRESS})",
    )
    s.add_argument("--name", help="name in the URLs (default: the model file's stem)")
    r = s.add_argument_group("more than one machine")
    r.add_argument(
        "--publish",
        metavar="URI",
        help="also publish every snapshot to URI (a directory, s3://...), for replicas",
    )
    r.add_argument(
        "--follow",
        metavar="URI",
        help="serve as a read replica of what a learner publishes at URI (no MODEL, no state)",
    )
    r.add_argument(
        "--leader",
        metavar="URL",
        help="with --follow: the learner's server, where learn and feedback are forwarded",
    )
    s.add_argument(
        "--processes",
        type=int,
        metavar="N",
        help="front-end processes answering on the same ports, with one learner process "
        "(default: one per core; 0: everything in one process)",
    )
    s.add_argument(
        "--token",
        default=os.environ.get("SHOAL_TOKEN"),
        help="bearer token for learn, feedback and admin calls (default $SHOAL_TOKEN)",
    )
    s.add_argument("--token-for-predict", action="store_true", help="predict needs it too")
    s.add_argument(
        "--allow-insecure",
        action="store_true",
        help="allow a non-loopback --http address without a token, and any --tcp address",
    )
    s.add_argument(
        "--snapshot-every-events",
        type=int,
        default=10_000,
        metavar="N",
        help="snapshot after N learned events (default 10000)",
    )
    s.add_argument(
        "--snapshot-every-seconds",
        type=float,
        default=300.0,
        metavar="T",
        help="or T seconds after the last, if events were learned since (default 300)",
    )
    s.add_argument(
        "--keep-versions", type=int, default=5, metavar="K", help="snapshots kept (default: 5)"
    )
    s.add_argument(
        "--feedback-ttl",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="how long a prediction's features wait for feedback (default 3600)",
    )
    s.add_argument(
        "--max-body-bytes",
        type=int,
        default=8 << 20,
        metavar="N",
        help="largest request body (default 8 MiB; 413 beyond)",
    )
    s.add_argument("--max-records", type=int, default=10_000, metavar="N",
                   help="most records in one request (default 10000; 413 beyond)")  # fmt: skip
    s.add_argument(
        "--max-connections",
        type=int,
        default=256,
        metavar="N",
        help="HTTP: requests in flight at once (default 256; beyond, 503; idle connections are "
        "closed when more are open); TCP: connections at once (beyond, an error line)",
    )
    s.add_argument(
        "--request-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="time a client has to send a request's head, and again its body (default 30; 408 "
        "beyond)",
    )
    s.add_argument(
        "--models-dir",
        metavar="DIR",
        help="where POST .../load takes model files from (default: the model file's folder)",
    )
    s.add_argument(
        "--feedback-buffer-bytes",
        type=int,
        default=64 << 20,
        metavar="N",
        help="predictions' features waiting to be written, at most (default 64 MiB; beyond, "
        "they are not kept and their feedback gets 410)",
    )
    s.add_argument(
        "--accept-event-loss",
        action="store_true",
        help="start although the event log lost acknowledged events (damage found at start): "
        "learn what is left, and number new events after the highest ever used",
    )
    s.add_argument(
        "--batch-max-records",
        type=int,
        default=1024,
        metavar="N",
        help="most records of concurrent predictions scored in one batch (default 1024)",
    )
    s.add_argument(
        "--batch-wait-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="how long a batch waits for more predictions (default 0: batch what is queued)",
    )
    s.add_argument(
        "--ignore-unknown",
        action="store_true",
        help="drop the fields and inputs that name no column of a schema model (default: they "
        "are errors)",
    )
    t = s.add_argument_group("TCP line protocol (--tcp)")
    t.add_argument(
        "--max-line-bytes",
        type=int,
        default=1 << 20,
        metavar="N",
        help="longest line (default 1 MiB; a longer one gets an error line and its connection "
        "is closed)",
    )
    t.add_argument(
        "--idle-timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="close a connection silent this long (default 300)",
    )
    _add_model_args(s.add_argument_group("a new model (--new; as in shoal train)"))


# Flags that only distributed training reads (default None: ClusterOptions' defaults apply).
CLUSTER_FLAGS = ("address", "shards", "tasks_per_round", "max_attempts", "task_timeout")


def _positive(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _check_local_flags(args: argparse.Namespace) -> None:
    """``train`` in one process: refuse the flags that only distributed training reads."""
    if args.command != "train":
        return
    for name in CLUSTER_FLAGS:
        if getattr(args, name) is not None:
            flag = "--" + name.replace("_", "-")
            raise ShoalError(
                f"{flag} is a setting of distributed training: add --workers N (or --engine "
                "ray, or --checkpoint-dir DIR), or drop it"
            )


def distributed(args: argparse.Namespace) -> bool:
    """Whether ``train`` runs the coordinator (which calls no compiled kernel itself)."""
    return args.command == "train" and bool(
        args.workers is not None or args.engine == "ray" or args.checkpoint_dir
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if distributed(args):
            if args.engine == "local":
                forkserver.launch(args.workers or os.cpu_count() or 1)  # overlaps the imports
            from shoal.commands import COMMANDS  # the coordinator compiles no kernel

            return COMMANDS[args.command](args)
        _check_local_flags(args)
        init_numba()
        from shoal.commands import COMMANDS  # numba, the kernels: only now
        from shoal.compiling import compile_notice

        with compile_notice(sys.stderr):
            return COMMANDS[args.command](args)
    except ShoalError as exc:
        if args.debug:
            raise
        print(f"shoal: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("shoal: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except MemoryError as exc:
        if args.debug:
            raise
        print(f"shoal: error: out of memory ({exc}): fewer --bits or --classes, or a machine "
              "with more memory", file=sys.stderr)  # fmt: skip
        return 2
    except OSError as exc:  # the file system said no: a user's problem, not a bug
        if args.debug:
            raise
        print(f"shoal: error: {_os_error(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug: one line, not a traceback, unless --debug
        if args.debug:
            raise
        print(
            f"shoal: internal error: {type(exc).__name__}: {exc} (rerun with --debug)",
            file=sys.stderr,
        )
        return 1


def _os_error(exc: OSError) -> str:
    """An ``OSError`` in one line: the file (shortened) and what the system said."""
    name = str(exc.filename or "")
    if len(name) > 80:
        name = name[:60] + "..." + name[-12:]
    what = exc.strerror or str(exc)
    return f"{name}: {what}" if name else what


def entry() -> None:
    """The ``shoal`` console script: ``main``, then a quick exit. The interpreter's last garbage
    collection would walk every object numba made (~0.15 s); frozen, they are left alone."""
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    entry()
