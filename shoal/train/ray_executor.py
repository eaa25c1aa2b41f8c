"""``RayExecutor``: workers as Ray actors, on a local Ray instance or an existing cluster.

One actor per worker (one CPU each, never restarted by Ray: replacing a dead worker is this
executor's job, and retrying its attempt is the coordinator's). A worker takes attempts only once
its actor is up, so an attempt's time never includes an actor's start-up. The round's model
travels once through the object store (``ray.put``); each actor loads it on its first task of
the round and keeps it for the rest. Actors read their shards themselves, so on a cluster the
data must be at paths every node can reach.

Ray is an optional dependency: this module imports it only when the executor starts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from shoal.errors import ShoalError
from shoal.train.executor import Event, failure
from shoal.train.task import Task, TaskResult, run_task

CONNECT_TIMEOUT = 10.0  # seconds for the head node at --address to accept a connection
START_TIMEOUT = 120.0  # seconds for the first actors to come up: a cluster may need to scale
PID_TIMEOUT = 60.0  # seconds for a starting actor to say its process id (pids(): tests)
GET_TIMEOUT = 60.0  # seconds to fetch a result ``ray.wait`` has already reported ready


def _describe(exc: BaseException) -> str:
    """One line for the coordinator: a ShoalError's text says what to do; else name the type."""
    if isinstance(exc, ShoalError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class _Worker:
    """What runs in each actor: the round's model, cached by step, and ``run_task``."""

    def __init__(self) -> None:
        self._step = -1
        self._model: Any = None

    def pid(self) -> int:
        return os.getpid()

    def run(self, task: Task, box: list[Any]) -> tuple[TaskResult | None, str, bool]:
        """Learn ``task``; ``box`` holds the ObjectRef of the round's model file bytes.

        The ref travels inside a list so that Ray does not fetch the model for every call:
        the actor fetches it once per step.
        """
        import ray

        from shoal.model.model import Model

        try:
            if task.step != self._step or self._model is None:
                self._model = None  # let the last round's model go before loading the next
                self._model = Model.from_bytes(ray.get(box[0]), f"<model of step {task.step}>")
                self._step = task.step
            return run_task(task, self._model), "", False
        except Exception as exc:  # reported to the coordinator, which retries or stops
            ev = failure(0, exc)
            return None, ev.error, ev.fatal


@dataclass
class _Slot:
    actor: Any  # an ActorHandle
    pid_ref: Any  # ObjectRef of its process id: ready once the actor is up
    pid: int | None = None  # None while the actor starts: it takes no attempt yet
    attempt: int | None = None
    ref: Any = None  # ObjectRef of the attempt's result


def _check_reachable(address: str) -> None:
    """Fail fast where nothing listens at ``HOST:PORT``: Ray itself retries for many minutes."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in host:
        return  # "auto", "ray://...": Ray's to resolve
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError as exc:
        raise ShoalError(
            f"no Ray cluster answers at {address} ({exc}); --address takes the head node's "
            "HOST:PORT (its GCS port, 6379 by default)"
        ) from None


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ShoalError("the ray engine needs Ray: pip install 'shoal[ray]'") from None
    return ray


class RayExecutor:
    """``workers`` Ray actors; ``address=None`` starts a private local Ray instance.

    :meth:`close` kills this executor's actors and undoes what :meth:`start` did to Ray: a local
    instance it started is shut down; a cluster it connected to (``address``) is only
    disconnected from. If Ray is already initialised in this process (a caller's own
    ``ray.init``), that connection is used whatever ``address`` says, and left open.

    >>> ex = RayExecutor(2, None)
    >>> ex.workers, ex.address
    (2, None)
    """

    def __init__(self, workers: int, address: str | None = None) -> None:
        self.workers = workers
        self.address = address
        self._ray: Any = None
        self._actor_class: Any = None
        self._initialised = False  # this executor called ray.init, so close() calls shutdown
        self._pool: list[_Slot] = []
        self._step: int | None = None
        self._model_ref: Any = None

    # -- lifecycle ------------------------------------------------------------------------

    def launch(self) -> None:
        """Nothing: connecting to Ray and starting its actors is ``start``'s, in one go."""

    def start(self) -> None:
        ray = _import_ray()
        self._ray = ray
        try:
            self._connect()
            self._actor_class = ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)(_Worker)
            self._pool = [self._spawn() for _ in range(self.workers)]
            self._wait_started()
        except BaseException:
            self.close()
            raise

    def _connect(self) -> None:
        ray = self._ray
        if ray.is_initialized():
            return  # the caller's own connection: use it, leave it running
        if self.address is not None:
            _check_reachable(self.address)
        quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
        try:
            if self.address is None:
                # "local" starts a new instance even where RAY_ADDRESS names a cluster
                ray.init(address="local", num_cpus=self.workers, include_dashboard=False, **quiet)
            else:
                ray.init(address=self.address, **quiet)
        except Exception as exc:
            # Ray's ConnectionError hides the reason (e.g. a missing auth token) in its cause
            why = _describe(exc.__cause__ or exc)
            if self.address is None:
                raise ShoalError(f"could not start Ray: {why}") from None
            raise ShoalError(
                f"could not connect to the Ray cluster at {self.address}: {why}"
            ) from None
        self._initialised = True

    def _wait_started(self) -> None:
        ray = self._ray
        try:
            pids = ray.get([s.pid_ref for s in self._pool], timeout=START_TIMEOUT)
        except ray.exceptions.GetTimeoutError:
            free = ray.available_resources().get("CPU", 0)
            raise ShoalError(
                f"Ray did not start {self.workers} worker(s) within {START_TIMEOUT:.0f} s; each "
                f"needs 1 CPU and the cluster has {free:g} free (use fewer --workers)"
            ) from None
        except ray.exceptions.RayError as exc:  # e.g. a node where shoal cannot be imported
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ShoalError(
                f"Ray workers failed to start ({reason}); shoal must be installed on every node"
            ) from None
        for slot, pid in zip(self._pool, pids, strict=True):
            slot.pid = pid

    def _spawn(self) -> _Slot:
        actor = self._actor_class.remote()
        return _Slot(actor, actor.pid.remote())

    def close(self) -> None:
        ray = self._ray
        if ray is None:
            return
        for slot in self._pool:
            self._kill(slot)
        self._pool.clear()
        self._model_ref = None
        self._step = None
        if self._initialised:
            # stops the instance this executor started; from a cluster it only disconnects
            ray.shutdown()
            self._initialised = False

    def _kill(self, slot: _Slot) -> None:
        with contextlib.suppress(Exception):  # already dead, or Ray going away
            self._ray.kill(slot.actor, no_restart=True)

    # -- the Executor interface -----------------------------------------------------------

    def broadcast(self, step: int, model: bytes) -> None:
        # the coordinator has collected or cancelled every attempt of the last round, so the
        # last model's ref can go: Ray frees the object once no task holds it
        self._model_ref = self._ray.put(model)
        self._step = step

    def idle(self) -> int:
        # A starting actor is not idle: an attempt handed to it would wait out its start-up
        # (a second or more), look like a straggler, and be duplicated or timed out.
        return sum(1 for s in self._pool if s.pid is not None and s.attempt is None)

    def alive(self) -> int:
        """Workers held: a dead actor is replaced as soon as its death is noticed."""
        return len(self._pool)

    def pids(self) -> list[int]:
        """Process ids of the workers (tests kill them); waits for replacements to come up."""
        return [self._pid(s) for s in self._pool]

    def busy_pids(self) -> list[int]:
        return [self._pid(s) for s in self._pool if s.attempt is not None]

    def _pid(self, slot: _Slot) -> int:
        if slot.pid is None:
            slot.pid = int(self._ray.get(slot.pid_ref, timeout=PID_TIMEOUT))
        return slot.pid

    def submit(self, attempt: int, task: Task) -> None:
        if task.step != self._step:
            raise ShoalError(f"internal: task of step {task.step} but step {self._step} broadcast")
        slot = next(s for s in self._pool if s.pid is not None and s.attempt is None)
        slot.attempt = attempt
        slot.ref = slot.actor.run.remote(task, [self._model_ref])

    def poll(self, timeout: float) -> list[Event]:
        ray = self._ray
        # what to wait for: results of attempts, and actors coming up (their pid refs)
        waiting: dict[Any, _Slot] = {}
        for s in self._pool:
            if s.pid is None:
                waiting[s.pid_ref] = s
            elif s.ref is not None:
                waiting[s.ref] = s
        if not waiting:
            time.sleep(timeout)  # nothing can happen: no attempt is out, no actor starting
            return []
        ready, rest = ray.wait(list(waiting), num_returns=1, timeout=timeout)
        if ready and rest:
            more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
            ready += more
        events: list[Event] = []
        for ref in ready:
            slot = waiting[ref]
            if slot.pid is None:
                self._started(slot)
            else:
                events.append(self._collect(slot))
        return events

    def _started(self, slot: _Slot) -> None:
        """An actor is up and may take attempts; one that failed to start is replaced."""
        try:
            slot.pid = int(self._ray.get(slot.pid_ref, timeout=GET_TIMEOUT))
        except Exception:  # no attempt was on it: nothing to report
            self._replace(slot)

    def _collect(self, slot: _Slot) -> Event:
        """The event of a finished attempt; a dead actor is replaced."""
        ray = self._ray
        attempt, ref = slot.attempt, slot.ref
        assert attempt is not None
        slot.attempt = slot.ref = None
        try:
            result, error, fatal = ray.get(ref, timeout=GET_TIMEOUT)
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            self._replace(slot)
            return Event(attempt, "died", error=f"worker {slot.pid} died ({reason})")
        except ray.exceptions.RayTaskError as exc:  # raised outside ``run``'s own handler
            return Event(attempt, "failed", error=_describe(exc.cause or exc))
        except Exception as exc:  # lost objects, a fetch that timed out, ...
            return Event(attempt, "failed", error=_describe(exc))
        if result is None:
            return Event(attempt, "failed", error=error, fatal=fatal)
        return Event(attempt, "done", result)

    def cancel(self, attempt: int) -> None:
        for slot in self._pool:
            if slot.attempt == attempt:
                slot.attempt = slot.ref = None
                self._replace(slot)

    def _replace(self, slot: _Slot) -> None:
        # no wait for the new actor: poll() notices it come up (its pid ref) and only then is
        # it idle
        self._kill(slot)
        self._pool[self._pool.index(slot)] = self._spawn()
