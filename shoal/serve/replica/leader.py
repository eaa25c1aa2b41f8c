"""A read replica's link to the learner's server (``--leader URL``): learn, feedback and the
admin calls are sent there over its own HTTP API, and answered with what it answers.

The learner's errors come back as the same kinds (a 400 stays a 400, a 404 a 404); a learner
that cannot be reached is ``Unavailable`` (503): nothing was acknowledged, so a client may retry.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from shoal.errors import ShoalError
from shoal.serve.errors import (
    EventExpired,
    FeedbackConflict,
    NotFound,
    PayloadTooLarge,
    RequestError,
    Unauthorized,
    Unavailable,
)


def _error(status: int, message: str) -> ShoalError:
    said = f"the leader answered {status}: {message}"
    if status == 400:
        return RequestError("leader", said)
    kinds: dict[int, type[ShoalError]] = {
        401: Unauthorized, 404: NotFound, 409: FeedbackConflict, 410: EventExpired,
        413: PayloadTooLarge,
    }  # fmt: skip
    return kinds.get(status, Unavailable)(said)


class Leader:
    """Calls to the learner's server for the model ``name``; thread-safe."""

    def __init__(self, url: str, name: str, token: str | None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.name = name
        self.token = token
        self.timeout = timeout
        self._pool = ThreadPoolExecutor(8, thread_name_prefix="shoal-leader")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def call(self, method: str, path: str, body: Any = None) -> Future[Any]:
        """``method`` on ``/v1/models/{name}{path}``; the future gives the JSON answer."""
        return self._pool.submit(self.request, method, f"/v1/models/{self.name}{path}", body)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("error", exc.reason)
            except ValueError:
                message = exc.reason
            raise _error(exc.code, str(message)) from None
        except (urllib.error.URLError, OSError) as exc:
            raise Unavailable(
                f"the leader {self.url} cannot be reached ({exc}); nothing was logged: retry"
            ) from None
