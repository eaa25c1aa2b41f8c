"""Online learning and prediction over the network: ``shoal serve``.

``ModelService`` owns one live model, its durable event log, its learner thread and its
versions; ``build_app`` exposes services over HTTP and ``LineServer`` one over TCP, Vowpal
Wabbit's daemon protocol; ``serve`` runs them on one event loop until a signal, ``Background``
in a thread.
"""

from shoal.serve.app import build_app
from shoal.serve.config import HttpConfig, ServiceConfig, TcpConfig
from shoal.serve.scoring import Prediction
from shoal.serve.server import Background, HttpServer, serve
from shoal.serve.service import ModelService
from shoal.serve.tcp import LineServer

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
