"""The fork server that local workers are forked from, and its early start.

The server is a fresh interpreter that imports shoal and loads the compiled kernels once
(``_warm``); every worker, and every replacement of a dead one, is a fork of it, so it starts
ready and inherits no threads or locks. Starting the server takes about half a second, so the
``shoal`` command starts it right after parsing its arguments, and that half second passes
while the coordinator imports and plans. This module imports nothing of shoal's.
"""

from __future__ import annotations

import multiprocessing as mp
from multiprocessing import forkserver
from multiprocessing.context import ForkServerContext

PRELOAD = ["shoal.train._warm"]


def context() -> ForkServerContext:
    """The forkserver start method, with shoal preloaded in the server."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def launch() -> None:
    """Start the fork server (if not running) without waiting for its imports: the first
    worker forked from it waits for them."""
    context()
    forkserver.ensure_running()
