"""Vowpal Wabbit's own daemon, started from the pip package (which ships no ``vw`` binary).

    python benchmarks/serve_vw.py PORT CHILDREN MODEL [VW ARGS...]

How the daemon works in the library (VW's parser.cc, ``enable_sources``): the ``Workspace``
constructor loads MODEL, binds PORT, moves the weights to shared memory and forks CHILDREN
processes. The parent never returns from the constructor: it waits on its children, forks a
new one when one exits, and on SIGTERM kills them all and exits. Each child returns from the
constructor once it has accepted a connection; ``run_parser()`` then answers that connection
line by line (``prediction tag``) and, at its end of input, accepts the next one, so a child
serves connections one after another and does not return while the daemon runs. The children
learn from labeled lines into the shared weights (Hogwild style): every connection sees every
update. A connection is served only while a child is free (the listen backlog is 1), so
bench_serve.py starts as many children as it opens connections. VW listens on every address (it
has no option to choose one); bench_serve.py sends it traffic on loopback only.
"""

from __future__ import annotations

import os
import sys

from vowpalwabbit import Workspace


def main() -> None:
    port, children, model, *extra = sys.argv[1:]
    daemon = ["--daemon", "--foreground", "--port", port, "--num_children", children]
    workspace = Workspace(arg_list=[*daemon, "-i", model, "--quiet", *extra])
    # Only a forked child gets here, holding an accepted connection.
    workspace.run_parser()
    workspace.finish()
    os._exit(0)  # a child: leave the parent's Python state (atexit, buffers) alone


if __name__ == "__main__":
    main()
