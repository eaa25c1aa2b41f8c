"""Prometheus metrics: HTTP requests and latency by endpoint, TCP connections and lines, and
each model's learning.

The models' numbers are read from the services when ``/metrics`` is scraped (a custom
collector), so the services keep plain counters and know nothing of Prometheus.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from shoal.serve.errors import Unavailable
from shoal.serve.learning.service import ModelService

# name, help, counter?  -- keys of ModelService.stats()
_MODEL_METRICS = {
    "events_logged": ("shoal_events_logged", "Learn events made durable in the event log", True),
    "events_learned": ("shoal_events_learned", "Events applied to the live model", True),
    "events_rejected": ("shoal_events_rejected", "Logged events the model could not learn", True),
    "predictions": ("shoal_predictions", "Records predicted", True),
    "features_dropped": (
        "shoal_feedback_features_dropped",
        "Predictions whose features were not kept for feedback (event log queue full)",
        True,
    ),
    "snapshots": ("shoal_snapshots", "Snapshots (versions) written", True),
    "learner_lag": ("shoal_learner_lag_events", "Events logged but not yet learned", False),
    "applied_seq": ("shoal_applied_seq", "Sequence number of the last event learned", False),
    "model_version": ("shoal_model_version", "Snapshot version the live model grew from", False),
    "progressive_loss": (
        "shoal_progressive_loss",
        "Progressive validation loss of the labeled events learned since start",
        False,
    ),
    "progressive_examples": (
        "shoal_progressive_examples",
        "Labeled events behind shoal_progressive_loss",
        False,
    ),
    # a read replica's (--follow); a learner has none
    "replica_lag_seconds": (
        "shoal_replica_lag_seconds",
        "Seconds since the snapshot a replica serves was published, while the learner has "
        "logged events past it (0 when none)",
        False,
    ),
    "replica_lag_events": (
        "shoal_replica_lag_events",
        "Events the learner logged that the snapshot a replica serves does not hold",
        False,
    ),
    "snapshots_skipped": (
        "shoal_replica_snapshots_skipped",
        "Published snapshots a replica refused (damaged: not matching their checksum)",
        True,
    ),
}
_OPTIONAL = {"replica_lag_seconds", "replica_lag_events", "snapshots_skipped"}

# key of ModelService.histograms(): name, help
_HISTOGRAMS = {
    "batch_records": (
        "shoal_predict_batch_records",
        "Records per batch of concurrent predictions scored together",
    ),
    "visible_seconds": (
        "shoal_learn_visible_seconds",
        "Seconds from logging a learn event to the live model holding it (the oldest event of "
        "each learned batch; replays at start left out)",
    ),
}


class _ModelCollector(Collector):
    def __init__(self, services: Mapping[str, ModelService], skip_empty: bool = False) -> None:
        self.services = services
        self.skip_empty = skip_empty  # leave out families with no samples (counted elsewhere)

    def collect(self) -> Iterator[Metric]:
        stats, histograms = {}, {}
        info = GaugeMetricFamily(
            "shoal_model_info",
            "What the live model computes: its kind (linear, fm, ffm) and rank (0: linear)",
            labels=["model", "kind", "rank"],
        )
        for name, service in self.services.items():
            try:
                stats[name], histograms[name] = service.stats(), service.histograms()
                config = service.learner.live.model.config
            except Unavailable:
                continue  # shutting down
            info.add_metric([name, config.model, str(config.rank)], 1.0)
        if info.samples or not self.skip_empty:
            yield info
        for key, (metric, text, counter) in _MODEL_METRICS.items():
            family = (CounterMetricFamily if counter else GaugeMetricFamily)(
                metric, text, labels=["model"]
            )
            for name, s in stats.items():
                if not math.isnan(s.get(key, math.nan)):
                    family.add_metric([name], s[key])
            if family.samples or not (self.skip_empty or key in _OPTIONAL):
                yield family
        for key, (metric, text) in _HISTOGRAMS.items():
            hist = HistogramMetricFamily(metric, text, labels=["model"])
            for name, h in histograms.items():
                if key not in h:  # counted elsewhere (a multi-process server's front ends)
                    continue
                buckets = [("+Inf" if math.isinf(b) else str(b), n) for b, n in h[key].cumulative()]
                hist.add_metric([name], buckets, h[key].sum)
            if hist.samples or not self.skip_empty:
                yield hist


class Metrics:
    """One registry per server: request metrics of HTTP and TCP plus the served models' numbers
    (``/metrics`` shows the TCP server's too: ``serve()`` hands both the same ``Metrics``)."""

    def __init__(self, services: Mapping[str, ModelService]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "shoal_http_requests",
            "HTTP requests by endpoint, method and status",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "shoal_http_request_seconds",
            "HTTP request latency by endpoint",
            ["endpoint"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
        )
        self.tcp_connections = Counter(
            "shoal_tcp_connections",
            "TCP line protocol connections: accepted, or refused over --max-connections",
            ["outcome"],
            registry=self.registry,
        )
        self.tcp_open = Gauge(
            "shoal_tcp_open_connections",
            "TCP connections open now",
            registry=self.registry,
            multiprocess_mode="livesum",  # with front-end processes: the sum of the live ones
        )
        self.tcp_lines = Counter(
            "shoal_tcp_lines",
            "TCP lines answered: predicted (unlabeled), learned (labeled, durable), error",
            ["result"],
            registry=self.registry,
        )
        self.registry.register(_ModelCollector(services))

    def whole_server(self, services: Mapping[str, ModelService], directory: str) -> None:
        """Describe every process of a multi-process server (``serve/cluster/``): the request
        metrics that all front ends write to ``directory`` (prometheus_client's multiprocess
        mode), and the learner's numbers, which ``services`` fetch from it."""
        from prometheus_client import multiprocess

        self.registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(self.registry, path=directory)
        self.registry.register(_ModelCollector(services, skip_empty=True))

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, method, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)


class Tally:
    """A counter's increments on an event loop, handed to it in one ``inc`` per turn of the loop.

    In a server of several processes, each ``inc`` of a prometheus-client counter takes a lock,
    asks the OS for the process id and writes to a shared file (~0.8 us): the TCP path, which
    answers a line in ~20 us of CPU, would pay that twice a line. Increments made on the event
    loop's thread add up here until the callbacks of the loop's turn have run (the lines that
    arrived together), then reach the counter in one call -- before the loop waits for anything
    else. Increments from any other thread reach it at once.
    """

    def __init__(self, counter: Counter) -> None:
        self.counter = counter
        self.loop: asyncio.AbstractEventLoop | None = None  # the first one it was used on
        self.n = 0

    def inc(self, n: int = 1) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on an event loop's thread
            loop = None
        if self.loop is None:
            self.loop = loop
        if loop is None or loop is not self.loop:
            self.counter.inc(n)
            return
        if not self.n:
            loop.call_soon(self._flush)
        self.n += n

    def _flush(self) -> None:
        n, self.n = self.n, 0
        self.counter.inc(n)
