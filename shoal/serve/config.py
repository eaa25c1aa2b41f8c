"""The server's settings: what the service keeps and learns (``ServiceConfig``), how HTTP
exposes it (``HttpConfig``) and how the TCP line protocol does (``TcpConfig``). Frozen,
keyword-only, validated once."""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from pathlib import Path

from shoal.errors import ConfigError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _positive(field: str, value: object, *, integer: bool = False) -> None:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:
        raise ConfigError(field, f"must be a positive {'integer' if integer else 'number'}")
    if not math.isfinite(value):
        raise ConfigError(field, "must be finite")


def _port(flag: str, port: object) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(flag, f"port must be from 0 to 65535, got {port!r}")


@dataclass(frozen=True, kw_only=True)
class ServiceConfig:
    """One served model: where it starts from, where its state lives, how often it snapshots.

    >>> ServiceConfig(model_path="ads/ctr.shoal", state_dir="state").served_name
    'ctr'
    """

    model_path: str
    state_dir: str
    name: str = ""  # default: the model file's stem
    snapshot_every_events: int = 10_000
    snapshot_every_seconds: float = 300.0
    keep_versions: int = 5
    feedback_ttl: float = 3600.0  # seconds a prediction's features are kept for its feedback
    learn_batch: int = 1024  # most events the learner applies in one step
    batch_max_records: int = 1024  # most records scored in one batch of concurrent predictions
    batch_wait: float = 0.0  # seconds a batch waits for more predictions (0: no waiting)
    ignore_unknown: bool = False  # drop fields and inputs that name no column of the schema
    models_dir: str = ""  # where ``load`` finds model files (default: the model file's folder)
    feedback_buffer_bytes: int = 64 << 20  # predictions' features waiting to be written
    accept_event_loss: bool = False  # start although the event log lost acknowledged events

    def __post_init__(self) -> None:
        if not self.model_path:
            raise ConfigError("model", "a model file is required")
        if not self.state_dir:
            raise ConfigError("--state-dir", "a state directory is required")
        if not _NAME.fullmatch(self.served_name):
            raise ConfigError(
                "--name",
                f"{self.served_name!r} cannot name a model in a URL: use letters, digits, '.', '_'"
                " and '-' (up to 128)",
            )
        _positive("--snapshot-every-events", self.snapshot_every_events, integer=True)
        _positive("--snapshot-every-seconds", self.snapshot_every_seconds)
        _positive("--keep-versions", self.keep_versions, integer=True)
        _positive("--feedback-ttl", self.feedback_ttl)
        _positive("learn_batch", self.learn_batch, integer=True)
        _positive("--batch-max-records", self.batch_max_records, integer=True)
        if not isinstance(self.ignore_unknown, bool):
            raise ConfigError("--ignore-unknown", "must be true or false")
        if not (isinstance(self.batch_wait, int | float) and 0 <= self.batch_wait <= 1):
            raise ConfigError("--batch-wait-ms", "must be from 0 to 1000 milliseconds")
        _positive("--feedback-buffer-bytes", self.feedback_buffer_bytes, integer=True)

    @property
    def load_dir(self) -> Path:
        """The folder ``load`` takes model files from (resolved: no link leads out of it)."""
        return Path(self.models_dir or Path(self.model_path).parent).resolve()

    @property
    def served_name(self) -> str:
        return self.name or Path(self.model_path).stem


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


@dataclass(frozen=True, kw_only=True)
class HttpConfig:
    """Where the HTTP server listens, who may call what, and how much one request may carry.

    A non-loopback address needs a token (or ``allow_insecure``): the learn and admin endpoints
    change the model, and nothing else protects them.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None
    token_for_predict: bool = False
    allow_insecure: bool = False
    max_body_bytes: int = 8 << 20
    max_records: int = 10_000
    max_connections: int = 256  # requests in flight at once (503 beyond); idle connections
    # are closed when more than this many are open
    request_timeout: float = 30.0  # seconds to send a request's head, and again its body
    wait_timeout: float = 30.0  # seconds ``?wait=true`` waits for the learner
    graceful_timeout: float = 30.0  # seconds in-flight requests get at shutdown

    def __post_init__(self) -> None:
        _port("--http", self.port)
        if self.token is not None and (not self.token or any(c.isspace() for c in self.token)):
            raise ConfigError("--token", "must be a non-empty string without spaces")
        if self.token is None and self.token_for_predict:
            raise ConfigError("--token-for-predict", "needs --token")
        if not is_loopback(self.host) and self.token is None and not self.allow_insecure:
            raise ConfigError(
                "--http",
                f"{self.host} is not a loopback address: anyone who reaches it could change the "
                "model; give --token TOKEN (or --allow-insecure if the network is trusted)",
            )
        _positive("--max-body-bytes", self.max_body_bytes, integer=True)
        _positive("--max-records", self.max_records, integer=True)
        _positive("--max-connections", self.max_connections, integer=True)
        _positive("--request-timeout", self.request_timeout)
        _positive("wait_timeout", self.wait_timeout)
        _positive("graceful_timeout", self.graceful_timeout)


@dataclass(frozen=True, kw_only=True)
class TcpConfig:
    """Where the TCP line server listens (VW's daemon port by default) and its limits.

    The line protocol has no authentication -- any client may learn -- so a non-loopback
    address needs ``allow_insecure``; a token does not help, as no line can carry it.
    """

    host: str = "127.0.0.1"
    port: int = 26542
    allow_insecure: bool = False
    max_line_bytes: int = 1 << 20  # a longer line closes its connection
    max_connections: int = 256  # connections beyond are refused at once
    idle_timeout: float = 300.0  # seconds without a line (or a read of replies) before closing
    graceful_timeout: float = 30.0  # seconds connections get at shutdown to receive replies

    def __post_init__(self) -> None:
        _port("--tcp", self.port)
        if not is_loopback(self.host) and not self.allow_insecure:
            raise ConfigError(
                "--tcp",
                f"{self.host} is not a loopback address, and the line protocol has no "
                "authentication (--token does not guard it): anyone who reaches it could change "
                "the model; listen on 127.0.0.1, or give --allow-insecure if the network is "
                "trusted",
            )
        _positive("--max-line-bytes", self.max_line_bytes, integer=True)
        _positive("--max-connections", self.max_connections, integer=True)
        _positive("--idle-timeout", self.idle_timeout)
        _positive("graceful_timeout", self.graceful_timeout)
