"""Online learning and prediction over the network: ``shoal serve``.

``ModelService`` owns one live model, its durable event log, its learner thread and its
versions; ``build_app`` exposes services over HTTP and ``LineServer`` one over TCP, Vowpal
Wabbit's daemon protocol; ``serve`` runs them on one event loop until a signal, ``Background``
in a thread.

The packages, in the order a request meets them:

- ``http/`` and ``tcp/``: the two front doors (the ASGI app with shoal's JSON API, the Open
  Inference Protocol and the status page; the VW line protocol).
- ``reading/``: the one way a request's records become a ``Batch`` and predictions.
- ``learning/``: the live model, the service that answers and learns, its one learner thread.
- ``state/``: what survives a crash: the event log, snapshots and versions, recovery.
- ``cluster/``: the same server on every core (a learner process, front ends sharing its
  weights in shared memory); ``replica/``: on more than one machine (read replicas).

``config``, ``errors``, ``metrics``, ``histogram``, ``sockets`` and ``futures`` serve them all.
"""

from shoal.serve.config import HttpConfig, ServiceConfig, TcpConfig
from shoal.serve.http.app import build_app
from shoal.serve.http.server import Background, HttpServer, serve
from shoal.serve.learning.service import ModelService
from shoal.serve.reading.scoring import Prediction
from shoal.serve.tcp.server import LineServer

__all__ = [
    "Background",
    "HttpConfig",
    "HttpServer",
    "LineServer",
    "ModelService",
    "Prediction",
    "ServiceConfig",
    "TcpConfig",
    "build_app",
    "serve",
]
