"""Online learning and prediction over the network: ``shoal serve``.

``ModelService`` owns one live model, its durable event log, its learner thread and its
versions; ``build_app`` exposes services over HTTP; ``serve`` runs one until a signal.
"""

from shoal.serve.app import build_app
from shoal.serve.config import HttpConfig, ServiceConfig
from shoal.serve.server import HttpServer, serve
from shoal.serve.service import ModelService, Prediction

__all__ = [
    "HttpConfig",
    "HttpServer",
    "ModelService",
    "Prediction",
    "ServiceConfig",
    "build_app",
    "serve",
]
