"""The event log: durable, ordered, group-committed; feedback joins a label at most once."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from shoal.errors import ShoalError
from shoal.serve.errors import EventExpired, FeedbackConflict, Unavailable, UnknownEvent
from shoal.serve.state.eventlog import EventLog
from shoal.serve.state.seqmark import SeqMark
from tests.serve.helpers import Clock, wait_until


@pytest.fixture
def clock() -> Clock:
    return Clock()


def opened(path: Path, clock: Clock, ttl: float = 60.0) -> EventLog:
    log = EventLog(path, ttl=ttl, clock=clock)
    log.open()
    return log


def test_appends_are_durable_and_ordered_across_reopen(tmp_path: Path, clock: Clock) -> None:
    log = opened(tmp_path / "e.sqlite", clock)
    assert log.append(["1 | a", "-1 | b"]).result() == [1, 2]
    assert log.append(["1 | c"]).result() == [3]
    log.close()
    with sqlite3.connect(tmp_path / "e.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    log = opened(tmp_path / "e.sqlite", clock)
    assert log.last_seq == 3
    assert log.read(1, 10) == [(2, "-1 | b"), (3, "1 | c")]
    log.prune(2)
    assert log.append(["1 | d"]).result() == [4]  # seqs never repeat, even after pruning
    assert log.first_seq() == 3
    log.close()


def test_concurrent_appends_get_unique_seqs_in_commit_order(tmp_path: Path, clock: Clock) -> None:
    committed: list[int] = []
    log = EventLog(tmp_path / "e.sqlite", ttl=60, clock=clock, on_commit=committed.append)
    log.open()
    results: dict[str, list[int]] = {}

    def client(t: int) -> None:
        for i in range(25):
            rec = f"1 | t{t}_{i}"
            results[rec] = log.append([rec]).result()

    threads = [threading.Thread(target=client, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    seqs = sorted(s for v in results.values() for s in v)
    assert seqs == list(range(1, 101))
    assert dict(log.read(0, 1000)) == {v[0]: k for k, v in results.items()}
    assert committed == sorted(committed) and committed[-1] == 100
    log.close()


def test_feedback_joins_the_label_to_the_kept_features(tmp_path: Path, clock: Clock) -> None:
    log = opened(tmp_path / "e.sqlite", clock, ttl=60)
    made = f"{int(clock.now * 1000):012x}" + "0" * 16
    log.remember([(made, "|u a |v x:2")], expires=clock.now + 60)
    assert log.feedback(made, "-1 0.5").result() == 1
    assert log.read(0, 10) == [(1, "-1 0.5 |u a |v x:2")]
    with pytest.raises(FeedbackConflict, match="already has its feedback"):
        log.feedback(made, "1").result()
    with pytest.raises(UnknownEvent):
        log.feedback(f"{int(clock.now * 1000):012x}" + "1" * 16, "1").result()
    with pytest.raises(UnknownEvent):
        log.feedback("not-an-id", "1").result()
    log.close()


def test_expired_features_are_gone_with_a_distinct_error(tmp_path: Path, clock: Clock) -> None:
    log = opened(tmp_path / "e.sqlite", clock, ttl=10)
    ids = [f"{int(clock.now * 1000):012x}{i:016x}" for i in range(2)]
    log.remember([(ids[0], "| a"), (ids[1], "| b")], expires=clock.now + 10)
    log.flush().result()
    clock.now += 11
    with pytest.raises(EventExpired):  # the row is still there, past its time
        log.feedback(ids[0], "1").result()
    log.remember([], expires=clock.now)  # the next commit purges expired rows
    log.flush().result()
    with sqlite3.connect(tmp_path / "e.sqlite") as db:
        assert db.execute("SELECT count(*) FROM predictions").fetchone()[0] == 0
    with pytest.raises(EventExpired):  # the row is gone: the id's own time tells
        log.feedback(ids[1], "1").result()
    assert log.last_seq == 0
    log.close()


def test_a_closed_log_refuses_work(tmp_path: Path, clock: Clock) -> None:
    log = opened(tmp_path / "e.sqlite", clock)
    log.close()
    with pytest.raises(Unavailable):
        log.append(["1 | a"]).result()


def test_a_file_that_is_not_an_event_log_is_a_clear_error(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "events.sqlite"
    path.write_bytes(b"not a database, whatever it was" * 200)
    log = EventLog(path, ttl=60, clock=clock)
    with pytest.raises(ShoalError, match=r"events.sqlite is not a shoal event log \(file is not"):
        log.open()


def test_the_mark_is_written_before_the_ack_and_gaps_are_found(
    tmp_path: Path, clock: Clock
) -> None:
    log = EventLog(tmp_path / "e.sqlite", ttl=60, clock=clock, mark=SeqMark(tmp_path / "seq"))
    log.open()
    assert log.append([f"1 | f{i}" for i in range(6)]).result() == [1, 2, 3, 4, 5, 6]
    assert int((tmp_path / "seq").read_text()) == 6  # durable before the future resolved
    with sqlite3.connect(tmp_path / "e.sqlite") as db:
        db.execute("DELETE FROM events WHERE seq IN (2, 4, 5)")
    assert log.missing(0) == [(2, 2), (4, 5)]
    assert log.missing(1) == [(2, 2), (4, 5)]
    assert log.missing(3) == [(4, 5)]
    log.reserve(100).result()
    assert log.append(["1 | g"]).result() == [101]
    log.close()


def test_features_reach_the_log_while_idle_and_past_the_bound_are_dropped(
    tmp_path: Path, clock: Clock
) -> None:
    log = EventLog(tmp_path / "e.sqlite", ttl=60, clock=clock, max_buffer_bytes=1000)
    log.open()
    assert log.remember([("a" * 28, "| x"), ("b" * 28, "| " + "y" * 2000)], clock() + 60) == [
        True,
        False,
    ]
    assert log.features_dropped == 1

    def kept() -> int:
        with sqlite3.connect(tmp_path / "e.sqlite") as db:
            return int(db.execute("SELECT count(*) FROM predictions").fetchone()[0])

    wait_until(lambda: kept() == 1, what="the features written with no other work queued")
    log.close()


def test_features_kept_before_an_append_are_in_the_log_with_it(
    tmp_path: Path, clock: Clock
) -> None:
    """A busy log commits appends alone, in one statement (``_one_statement``), but never while
    predictions' features wait: those are written first, in the same transaction."""
    log = opened(tmp_path / "e.sqlite", clock)
    assert log.append(["1 | a"]).result() == [1]  # (the first commit also purges)
    assert log.remember([("a" * 28, "| x")], clock() + 60) == [True]
    assert log.append(["1 | b"]).result() == [2]
    with sqlite3.connect(tmp_path / "e.sqlite") as db:
        assert db.execute("SELECT count(*) FROM predictions").fetchone()[0] == 1
    log.close()
