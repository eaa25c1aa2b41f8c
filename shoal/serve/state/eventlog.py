"""The durable event log: every learn event is committed to SQLite before it is acknowledged.

One writer thread owns the write connection and commits in groups: the operations queued while
one commit's fsync runs go into the next transaction, so many concurrent learn requests share
one fsync (group commit) and each is acknowledged when its transaction is durable (WAL mode,
``synchronous=FULL``). Sequence numbers come from ``AUTOINCREMENT``: they only grow, even after
old events are pruned.

The same database keeps, for ``feedback_ttl`` seconds, the features of each prediction under
its event id; feedback joins a label to them and logs the labeled record as a learn event in one
transaction, so an event id is learned at most once. Predictions hand their features over
without waking the writer: they wait in memory and go into the next transaction, at the latest
``_REMEMBER_DELAY`` seconds later (nothing acknowledged depends on them, and a write per
prediction cost a single-record prediction over HTTP a fifth of its time). A feedback, queued
after its prediction, always finds them: every transaction writes the waiting features first.
How many may wait is bounded (``kept.py``): the features of a prediction past the bound are not
kept, and its feedback gets 410.

After each commit the writer records the highest sequence number logged in ``DIR/seq``
(``seqmark.py``) and syncs it before acknowledging: a log that later loses its end is found out.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shoal.errors import ShoalError
from shoal.serve.errors import (
    EventExpired,
    FeaturesDropped,
    FeedbackConflict,
    Unavailable,
    UnknownEvent,
)
from shoal.serve.reading.records import with_label
from shoal.serve.state.kept import DROPPED, FeatureBuffer
from shoal.serve.state.seqmark import SeqMark

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    record TEXT NOT NULL,
    feedback_id TEXT UNIQUE,
    logged_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS predictions (
    event_id TEXT PRIMARY KEY,
    features TEXT NOT NULL,
    expires REAL NOT NULL,
    feedback_seq INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS predictions_expiry ON predictions (expires);
"""
_MAX_GROUP = 512  # operations in one transaction
# Past this many bytes, rows are bound one by one rather than as one JSON document: SQLite keeps
# the last JSON documents it parsed with the statement (a few 7 MB ones held hundreds of MB).
_JSON_BYTES = 1 << 20
log = logging.getLogger("shoal.serve")


def id_time(event_id: str) -> float | None:
    """When an event id was made (its first 12 hex digits are Unix milliseconds)."""
    try:
        return int(event_id[:12], 16) / 1000.0 if len(event_id) == 28 else None
    except ValueError:
        return None


@dataclass
class _Op:
    future: Future[Any] | None = field(default=None, kw_only=True)

    def apply(self, log: EventLog, db: sqlite3.Connection) -> Any:
        raise NotImplementedError

    def seqs(self, result: Any) -> list[int]:
        """The events this operation logged, given what ``apply`` returned."""
        return []


@dataclass
class _Append(_Op):
    records: Sequence[str]  # logged by ``EventLog._apply``, consecutive appends together

    def seqs(self, result: Any) -> list[int]:
        return list(result)


@dataclass
class _Feedback(_Op):
    event_id: str
    label: str  # VW label text ("1" or "1 2.5" with an importance weight)

    def apply(self, log: EventLog, db: sqlite3.Connection) -> int:
        now = log.clock()
        if len(self.event_id) == 28 and self.event_id.endswith(DROPPED):
            raise FeaturesDropped(
                f"event {self.event_id}: its features were not kept for feedback (more waited "
                "to be written than --feedback-buffer-bytes allows; see "
                "shoal_feedback_features_dropped)"
            )
        row = db.execute(
            "SELECT features, expires, feedback_seq FROM predictions WHERE event_id = ?",
            (self.event_id,),
        ).fetchone()
        made = id_time(self.event_id)
        if row is None:
            if made is not None and made + log.ttl <= now:
                raise EventExpired(f"event {self.event_id}: its features expired (--feedback-ttl)")
            raise UnknownEvent(f"event {self.event_id}: no prediction was made with this id")
        features, expires, done = row
        if expires <= now:
            raise EventExpired(f"event {self.event_id}: its features expired (--feedback-ttl)")
        if done is not None:
            raise FeedbackConflict(
                f"event {self.event_id} already has its feedback (learn event seq {done})"
            )
        try:
            seq = log.insert(db, with_label(features, self.label), self.event_id, now)
        except sqlite3.IntegrityError:  # its feedback was logged, and the event pruned since
            raise FeedbackConflict(f"event {self.event_id} already has its feedback") from None
        db.execute("UPDATE predictions SET feedback_seq = ? WHERE event_id = ?",
                   (seq, self.event_id))  # fmt: skip
        return seq

    def seqs(self, result: Any) -> list[int]:
        return [int(result)]


@dataclass
class _Prune(_Op):
    upto_seq: int

    def apply(self, log: EventLog, db: sqlite3.Connection) -> None:
        db.execute("DELETE FROM events WHERE seq <= ?", (self.upto_seq,))


@dataclass
class _Barrier(_Op):
    def apply(self, log: EventLog, db: sqlite3.Connection) -> None:
        return None


@dataclass
class _Reserve(_Op):
    """Number the next event after ``seq`` (events up to it were lost, and accepted so)."""

    seq: int

    def apply(self, log: EventLog, db: sqlite3.Connection) -> None:
        if db.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'events'",
                      (self.seq,)).rowcount == 0:  # fmt: skip
            db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('events', ?)", (self.seq,))
        log.last_seq = max(log.last_seq, self.seq)


class _Wake:
    """Queued to wake an idle writer: predictions' features are waiting."""


_WAKE = _Wake()


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db


class EventLog:
    """``open()``, then ``append``/``feedback``/``remember`` from any thread; ``close()``.

    ``on_commit(last_seq)`` is called by the writer after each commit that logged events.
    """

    def __init__(
        self,
        path: Path,
        *,
        ttl: float,
        clock: Callable[[], float],
        on_commit: Callable[[int], None] = lambda seq: None,
        mark: SeqMark | None = None,
        max_buffer_bytes: int = 64 << 20,
    ) -> None:
        self.path = path
        self.ttl = ttl
        self.clock = clock
        self.on_commit = on_commit
        self.mark = mark  # the highest seq acknowledged, kept outside the database
        self._queue: queue.SimpleQueue[_Op | _Wake | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._db: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._closed = False
        self._next_purge = 0.0
        self.last_seq = 0
        self.events_logged = 0  # since open()
        self._kept = FeatureBuffer(max_buffer_bytes)

    def open(self) -> None:
        try:
            self._db = _connect(self.path)
            self._db.executescript(_SCHEMA)
            row = self._db.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = 'events'"
            ).fetchone()
            self._reader = _connect(self.path)
        except sqlite3.DatabaseError as exc:  # not a database, or not ours
            if self._db is not None:
                self._db.close()
                self._db = None
            raise ShoalError(
                f"{self.path} is not a shoal event log ({exc}): restore it, or move the state "
                "directory aside to start a new one"
            ) from None
        self.last_seq = int(row[0]) if row else 0
        if self.mark is not None:
            self.mark.open()
        self._thread = threading.Thread(target=self._run, name="shoal-eventlog", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Commit what is queued, stop the writer, close the database."""
        if self._thread is not None:
            self._closed = True
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        # operations that raced with close: fail them rather than leave them hanging
        self._fail_queued(Unavailable("the event log is closed (shutting down)"))
        for db in (self._db, self._reader):
            if db is not None:
                db.close()
        self._db = self._reader = None
        if self.mark is not None:
            self.mark.close()

    @property
    def features_dropped(self) -> int:
        """Predictions whose features were not kept (over ``--feedback-buffer-bytes``)."""
        return self._kept.dropped

    # -- operations (any thread) ---------------------------------------------------------------

    def _submit(self, op: _Op) -> Future[Any]:
        op.future = Future()
        if self._closed:
            op.future.set_exception(Unavailable("the event log is closed (shutting down)"))
        else:
            self._queue.put(op)
        return op.future

    def append(self, records: Sequence[str]) -> Future[list[int]]:
        """Log learn records; the future gives their sequence numbers once durable."""
        return self._submit(_Append(records))

    def feedback(self, event_id: str, label: str) -> Future[int]:
        """Log the features kept for ``event_id`` with ``label``; the future gives its seq."""
        return self._submit(_Feedback(event_id, label))

    def remember(self, rows: Sequence[tuple[str, str]], expires: float) -> list[bool]:
        """Keep predictions' features (event id, features) until ``expires``; whether each was
        kept (``kept.py`` bounds what waits). Not waited for: they reach the database within
        ``kept.DELAY`` seconds (see the module's doc)."""
        if self._closed or not rows:
            return [False] * len(rows)
        idle = len(self._kept) == 0
        kept = self._kept.add([(i, f, expires) for i, f in rows])
        if idle and any(kept):
            self._queue.put(_WAKE)  # the writer may be idle: have it wait DELAY at most
        return kept

    def reserve(self, seq: int) -> Future[None]:
        """Number new events after ``seq``, durably (lost events' numbers are never reused)."""
        return self._submit(_Reserve(seq))

    def missing(self, after_seq: int) -> list[tuple[int, int]]:
        """Ranges (first, last) of sequence numbers missing between ``after_seq`` and the last
        event kept: an event log must hold every event after the snapshot it goes with."""
        assert self._reader is not None, "EventLog.open() first"
        db = self._reader
        (first,) = db.execute("SELECT min(seq) FROM events WHERE seq > ?", (after_seq,)).fetchone()
        if first is None:
            return []
        gaps = [(after_seq + 1, int(first) - 1)] if first > after_seq + 1 else []
        rows = db.execute(
            "SELECT e.seq + 1, (SELECT min(seq) FROM events WHERE seq > e.seq) - 1 FROM events e "
            "WHERE e.seq >= ? AND e.seq < (SELECT max(seq) FROM events) "
            "AND NOT EXISTS (SELECT 1 FROM events WHERE seq = e.seq + 1) ORDER BY e.seq LIMIT 20",
            (first,),
        ).fetchall()
        return gaps + [(int(a), int(b)) for a, b in rows]

    def prune(self, upto_seq: int) -> None:
        """Drop events up to ``upto_seq`` (the oldest kept snapshot holds them)."""
        if not self._closed:
            self._queue.put(_Prune(upto_seq))

    def flush(self) -> Future[None]:
        """Resolves when everything queued before it is committed."""
        return self._submit(_Barrier())

    def read(self, after_seq: int, limit: int) -> list[tuple[int, str]]:
        """Events after ``after_seq`` in order (one reader: the learner thread)."""
        assert self._reader is not None, "EventLog.open() first"
        rows = self._reader.execute(
            "SELECT seq, record FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)
        ).fetchall()
        return [(int(s), str(r)) for s, r in rows]

    def logged_at(self, seq: int) -> float:
        """When event ``seq`` was logged (the log's clock), for the learner's delay metric."""
        assert self._reader is not None, "EventLog.open() first"
        row = self._reader.execute("SELECT logged_at FROM events WHERE seq = ?", (seq,)).fetchone()
        return float(row[0]) if row else self.clock()

    def first_seq(self) -> int:
        """The oldest event kept (0 if none)."""
        assert self._reader is not None, "EventLog.open() first"
        row = self._reader.execute("SELECT min(seq) FROM events").fetchone()
        return int(row[0] or 0)

    # -- the writer thread ---------------------------------------------------------------------

    def insert(
        self, db: sqlite3.Connection, record: str, feedback_id: str | None, now: float
    ) -> int:
        cur = db.execute(
            "INSERT INTO events (record, feedback_id, logged_at) VALUES (?, ?, ?)",
            (record, feedback_id, now),
        )
        return int(cur.lastrowid or 0)

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # a bug: refuse new work and fail what waits, never hang
            log.exception("the event log writer stopped")
            self._closed = True
            self._fail_queued(Unavailable(f"the event log stopped: {exc}"))

    def _fail_queued(self, error: ShoalError) -> None:
        while True:
            try:
                op = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(op, _Op) and op.future is not None and not op.future.done():
                op.future.set_exception(error)

    def _loop(self) -> None:
        stop = False
        while not stop:
            ops: list[_Op] = []
            try:
                item = self._queue.get(timeout=self._kept.wait())
            except queue.Empty:
                self._commit([])  # predictions' features waited long enough
                continue
            while True:
                if item is None:
                    stop = True
                elif isinstance(item, _Op):
                    ops.append(item)
                if stop or len(ops) >= _MAX_GROUP:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if ops or (len(self._kept) and (stop or self._kept.wait() == 0.0)):
                self._commit(ops)

    def _write_remembered(self, db: sqlite3.Connection) -> None:
        rows = self._kept.take()
        if sum(len(f) for _, f, _ in rows) > _JSON_BYTES:
            db.executemany(
                "INSERT OR REPLACE INTO predictions (event_id, features, expires) VALUES (?, ?, ?)",
                rows,
            )
        elif rows:  # one statement: executemany takes the GIL back for every row, and a busy
            # event loop holds it for up to 5 ms at a time, which held acknowledgements back
            db.execute(
                "INSERT OR REPLACE INTO predictions (event_id, features, expires) "
                "SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?)",
                (json.dumps(rows),),
            )

    def _apply(self, db: sqlite3.Connection, ops: list[_Op]) -> list[tuple[Any, ShoalError | None]]:
        """Each op's result or error, in order. Consecutive appends are logged by one statement:
        every statement hands the GIL back and forth, and a thread that wants it back from a
        busy event loop can wait up to the switch interval each time. An op that fails (a
        ``ShoalError``) has written nothing: each checks before it writes."""
        results: list[tuple[Any, ShoalError | None]] = []
        for is_append, group in itertools.groupby(ops, key=lambda op: isinstance(op, _Append)):
            run = list(group)
            appends = [op for op in run if isinstance(op, _Append)]
            if is_append:
                seqs = iter(self._append(db, [r for op in appends for r in op.records]))
                results += [([next(seqs) for _ in op.records], None) for op in appends]
                continue
            for op in run:
                try:
                    results.append((op.apply(self, db), None))
                except ShoalError as exc:
                    results.append((None, exc))
        return results

    def _append(self, db: sqlite3.Connection, records: list[str]) -> list[int]:
        """Log ``records`` in order with one statement; their sequence numbers (consecutive:
        one writer, ``AUTOINCREMENT``)."""
        if sum(map(len, records)) > _JSON_BYTES:
            now = self.clock()
            return [self.insert(db, record, None, now) for record in records]
        cur = db.execute(
            "INSERT INTO events (record, feedback_id, logged_at) "
            "SELECT value, NULL, ? FROM json_each(?) ORDER BY key",
            (self.clock(), json.dumps(records)),
        )
        last = int(cur.lastrowid or 0)
        return list(range(last - len(records) + 1, last + 1))

    def _write_mark(self) -> None:
        """Record the last seq in ``DIR/seq`` before any event is acknowledged. If the disk
        refuses, the events are durable all the same: they are acknowledged, and the failure
        logged (a later damage of the log would then be found only up to the mark)."""
        mark = self.mark
        if mark is None or self.last_seq <= mark.value:
            return
        try:
            mark.write(self.last_seq)
        except OSError as exc:
            log.error("cannot record seq %d in %s: %s", self.last_seq, mark.path, exc.strerror)

    def _one_statement(self, ops: list[_Op]) -> bool:
        """Whether the ops are learn records that ``_append`` logs by one statement, with no
        predictions' features waiting and no purge due: the usual commit of a busy server.
        Outside a transaction, SQLite commits (and syncs) a statement on its own; each
        statement hands the GIL back and forth (``_apply``), so this spares two of them."""
        appends = [op for op in ops if isinstance(op, _Append)]
        return (
            len(appends) == len(ops)
            and sum(len(r) for op in appends for r in op.records) <= _JSON_BYTES
            and not len(self._kept)
            and self.clock() < self._next_purge
        )

    def _commit(self, ops: list[_Op]) -> None:
        db = self._db
        assert db is not None
        results: Sequence[tuple[Any, BaseException | None]] = []
        try:
            if self._one_statement(ops):  # its own transaction: two statements fewer
                results = self._apply(db, ops)
            else:
                db.execute("BEGIN IMMEDIATE")
                self._write_remembered(db)  # before the ops: a feedback finds its prediction
                results = self._apply(db, ops)
                now = self.clock()
                if now >= self._next_purge:
                    db.execute("DELETE FROM predictions WHERE expires <= ?", (now,))
                    self._next_purge = now + min(self.ttl, 60.0)
                db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):  # no transaction left to roll back
                db.execute("ROLLBACK")
            error = Unavailable(f"the event log could not commit ({exc}); nothing was logged")
            results = [(None, error)] * len(ops)
        logged = [s for op, (r, e) in zip(ops, results, strict=True) if e is None
                  for s in op.seqs(r)]  # fmt: skip
        self.events_logged += len(logged)
        last = max(logged, default=0)
        if last:
            self.last_seq = last
        self._write_mark()
        if last:
            self.on_commit(last)
        for op, (result, failure) in zip(ops, results, strict=True):
            if op.future is None:
                continue
            if failure is None:
                op.future.set_result(result)
            else:
                op.future.set_exception(failure)
