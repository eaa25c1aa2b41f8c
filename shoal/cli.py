"""The ``shoal`` command: the only place that parses arguments, reads the environment and exits.

Every ``ShoalError`` becomes one line on stderr and exit status 2; anything unexpected becomes
one line and status 1 (``--debug`` shows the traceback). This module imports only what parsing
needs: what each command does is in ``commands.py``, imported after the arguments are parsed
(so ``shoal --help`` is quick, and local workers start while the command imports).
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
from shoal.model.config import LOSSES, OPTIMIZERS
from shoal.startup import init_numba
from shoal.train import forkserver


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "data",
        nargs="+",
        help="input files, directories or glob patterns, local or behind URIs such as "
        "s3://bucket/dir (VW text, svmlight, CSV/TSV, JSON lines, Parquet; .gz read as is)",
    )
    p.add_argument("--format", choices=FORMATS, help="input format (default: from the file name)")
    p.add_argument(
        "--on-bad-record",
        choices=("stop", "skip"),
        default="stop",
        help="stop at the first bad line (default) or skip and count bad lines",
    )


def _add_model_args(p: Any) -> None:  # a parser or an argument group
    """The flags that make a new model: its loss, optimizer and feature spec."""
    p.add_argument("--loss", choices=LOSSES, help="loss (default logistic)")
    p.add_argument("--classes", type=int, help="number of classes for --loss multiclass")
    p.add_argument("--optimizer", choices=OPTIMIZERS, help="optimizer (default adagrad)")
    p.add_argument("--learning-rate", type=float, help="base learning rate (FTRL's alpha)")
    p.add_argument("--power-t", type=float, help="SGD's decay exponent (default 0.5)")
    p.add_argument("--l1", type=float, help="L1 regularisation")
    p.add_argument("--l2", type=float, help="L2 regularisation")
    p.add_argument("--ftrl-beta", type=float, help="FTRL-Proximal's beta (default 1)")
    p.add_argument("--bits", type=int, help="hash bits: 2**bits weights (default 18)")
    p.add_argument("--seed", type=int, help="hash seed (default 0)")
    p.add_argument(
        "-q",
        "--interactions",
        nargs="+",
        metavar="NS",
        help="namespace interactions by first letter, e.g. -q ab cd (pairs) or abc (triples)",
    )
    p.add_argument("--ignore", help="namespace letters whose features are dropped")
    p.add_argument(
        "--schema",
        help="columns of CSV/TSV input (and of Parquet/JSON, instead of their own types), e.g. "
        "'label,I1..I13:num,C1..C26:cat', or a schema file",
    )
    p.add_argument("--delimiter", default=",", help="CSV field delimiter (default ',')")
    p.add_argument("--no-constant", action="store_true", default=None, help="no bias feature")


def _parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="shoal", description=__doc__.splitlines()[0])
    top.add_argument("--version", action="version", version=f"shoal {__version__}")
    top.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train a model on data files")
    _add_data_args(t)
    t.add_argument("-o", "--output", required=True, help="model file to write")
    _add_model_args(t)
    t.add_argument("--passes", type=int, default=1, help="passes over the data (default 1)")
    t.add_argument("--holdout", type=float, default=0.0, help="fraction held out for the loss")
    t.add_argument("--initial-model", help="continue training this model file")
    t.add_argument(
        "--parse-threads",
        type=int,
        default=0,
        metavar="N",
        help="threads parsing ahead of the learner, in this process or in each worker (default: "
        "one per core, or the cores per local worker); the model does not depend on it",
    )
    c = t.add_argument_group("distributed training (data parallel, fault tolerant)")
    c.add_argument(
        "--workers",
        type=_positive,
        help="worker processes (default: none, train in this process, parsing on every core)",
    )
    c.add_argument("--engine", choices=("local", "ray"), default="local", help="where workers run")
    c.add_argument("--address", help="Ray cluster address (default: start a local Ray instance)")
    c.add_argument("--shards", type=_positive, help="shards to cut the data into (4/worker)")
    c.add_argument("--tasks-per-round", type=_positive, help="shards merged per round")
    c.add_argument("--checkpoint-dir", help="checkpoint every round here; rerun to resume")
    c.add_argument("--max-attempts", type=_positive, help="tries per task before giving up (4)")
    c.add_argument("--task-timeout", type=float, help="seconds before a retry (3600)")

    e = sub.add_parser("eval", help="evaluate a model on labeled data")
    e.add_argument("model", help="model file")
    _add_data_args(e)
    e.add_argument("--json", action="store_true", help="print the metrics as JSON")

    pr = sub.add_parser("predict", help="predict, one line per input record")
    pr.add_argument("model", help="model file")
    _add_data_args(pr)
    pr.add_argument("-o", "--output", default="-", help="output file (default: stdout)")
    pr.add_argument("--tags", action="store_true", help="append each record's tag, as VW does")

    i = sub.add_parser("inspect", help="show a model's spec, settings, counters, top weights")
    i.add_argument("model", help="model file")
    i.add_argument("--top", type=int, default=10, help="how many of the largest weights")
    i.add_argument("--json", action="store_true", help="print as JSON")

    g = sub.add_parser("generate", help="write a synthetic click data set (VW text)")
    g.add_argument("-o", "--output", required=True, help="file to write")
    g.add_argument("--rows", type=int, default=100_000, help="rows (default 100000)")
    g.add_argument("--model-seed", type=int, default=0, help="seed of the hidden model")
    g.add_argument("--data-seed", type=int, default=1, help="seed of the rows")

    d = sub.add_parser("demo", help="generate click data, train, evaluate, compare to optimum")
    d.add_argument("--rows", type=int, default=500_000, help="training rows (default 500000)")
    d.add_argument("--dir", help="where to write the data and model (default: a temp dir)")
    _add_serve_parser(sub)
    return top


HTTP_ADDRESS = "127.0.0.1:8080"
TCP_ADDRESS = "127.0.0.1:26542"  # Vowpal Wabbit's daemon port


def _add_serve_parser(sub: Any) -> None:
    s = sub.add_parser(
        "serve", help="serve a model over HTTP and TCP and keep learning from feedback"
    )
    s.add_argument("model", help="model file to start from (the state dir wins after a restart)")
    s.add_argument(
        "--new", action="store_true", help="start from a new model made from the flags below"
    )
    s.add_argument("--state-dir", required=True, help="event log, snapshots; rerun to resume")
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
    s.add_argument("--keep-versions", type=int, default=5, metavar="K", help="snapshots kept")
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
                forkserver.launch()  # its half-second start overlaps the imports and planning
        else:
            _check_local_flags(args)
            init_numba()
        from shoal.commands import COMMANDS  # numba, the kernels: only now

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
    except Exception as exc:  # a bug: one line, not a traceback, unless --debug
        if args.debug:
            raise
        print(
            f"shoal: internal error: {type(exc).__name__}: {exc} (rerun with --debug)",
            file=sys.stderr,
        )
        return 1


def entry() -> None:
    """The ``shoal`` console script: ``main``, then a quick exit. The interpreter's last garbage
    collection would walk every object numba made (~0.15 s); frozen, they are left alone."""
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    entry()
