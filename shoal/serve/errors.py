"""The server's errors: each kind of failure a client can cause or meet, as a ``ShoalError``.

They carry no HTTP status: ``app.py`` maps them to status codes in one table, and a TCP server
can map them to its own replies. Each pickles (one message argument, or ``__reduce__``).
"""

from __future__ import annotations

from shoal.errors import ShoalError


class RequestError(ShoalError):
    """A request is malformed: names the field (``records[3].features.x``) and the problem."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem

    def __reduce__(self):
        return (type(self), (self.field, self.problem))


class PayloadTooLarge(ShoalError):
    """A request body or its record count is over the server's limits."""


class Unauthorized(ShoalError):
    """The endpoint needs ``Authorization: Bearer TOKEN`` and the request lacks the token."""


class NotFound(ShoalError):
    """Base of the errors for something the client named that does not exist."""


class UnknownModel(NotFound):
    """No model is served under that name."""


class UnknownEvent(NotFound):
    """No prediction was made with that event id."""


class UnknownVersion(NotFound):
    """No snapshot of that version is kept."""


class EventExpired(ShoalError):
    """The prediction's features were kept for ``--feedback-ttl`` seconds, and that has passed."""


class FeaturesDropped(EventExpired):
    """The prediction's features were not kept: more were waiting to be written than
    ``--feedback-buffer-bytes`` allows (counted in ``shoal_feedback_features_dropped``)."""


class FeedbackConflict(ShoalError):
    """The prediction already received its feedback (each event id learns at most once)."""


class Unavailable(ShoalError):
    """The service cannot answer now: shutting down, its learner stopped, or a wait timed out."""


class StorageError(Unavailable):
    """A file the server writes (a snapshot) could not be written: a full disk, a read-only
    folder. The server goes on serving and learning; the write can be tried again."""


class RequestTimeout(ShoalError):
    """A client took longer than ``--request-timeout`` to send its request."""


class StateDirError(ShoalError):
    """The state directory belongs to another model or server, or cannot be used."""


class ReadOnly(ShoalError):
    """A read replica (``--follow``) without a leader to forward learning to."""
