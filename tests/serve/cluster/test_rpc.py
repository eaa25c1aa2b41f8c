"""The local RPC: results and errors cross as themselves; a lost learner fails calls with
``Unavailable`` (never a hang) and the client reconnects to the next one."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from pathlib import Path

import pytest

from shoal.errors import ConfigError
from shoal.serve.cluster.rpc import RpcClient, RpcServer
from shoal.serve.errors import RequestError, Unavailable, UnknownVersion
from tests.serve.helpers import wait_until


def test_results_and_errors_cross_as_themselves(tmp_path: Path) -> None:
    def bad(field: str) -> None:
        raise RequestError(field, "is not a number")

    def failed_later() -> Future[int]:
        fut: Future[int] = Future()
        fut.set_exception(UnknownVersion("version 9 is not kept"))
        return fut

    def bug() -> None:
        raise ZeroDivisionError("oops")

    handlers = {"echo": lambda **kw: kw, "bad": bad, "later": failed_later, "bug": bug,
                "config": lambda: (_ for _ in ()).throw(ConfigError("--x", "no"))}  # fmt: skip
    server = RpcServer(tmp_path / "s.sock", handlers)
    server.start()
    client = RpcClient(tmp_path / "s.sock")
    try:
        assert client.wait_connected(10)
        assert client.call_sync("echo", 10, a=[1, "x"], b=None) == {"a": [1, "x"], "b": None}
        with pytest.raises(RequestError) as info:
            client.call("bad", field="records[2].label").result(10)
        assert (info.value.field, info.value.problem) == ("records[2].label", "is not a number")
        with pytest.raises(UnknownVersion, match="version 9 is not kept"):
            client.call("later").result(10)
        with pytest.raises(ConfigError, match="--x: no"):
            client.call("config").result(10)
        with pytest.raises(Exception, match="the learner failed: ZeroDivisionError: oops"):
            client.call("bug").result(10)
        with pytest.raises(Exception, match="unknown call 'nope'"):
            client.call("nope").result(10)
    finally:
        client.close()
        server.close()


def test_frames_from_many_threads_arrive_whole_and_in_each_thread_s_order(
    tmp_path: Path,
) -> None:
    """Frames go out from the calling thread when nothing waits, else by the writer thread:
    large ones (beyond what the socket takes at once) and small ones from four threads at
    once all arrive whole, and each thread's calls are handled in the order it made them."""
    seen: dict[int, list[int]] = {t: [] for t in range(4)}
    server = RpcServer(
        tmp_path / "s.sock", {"note": lambda t, i, pad: seen[t].append(i) or len(pad)}
    )
    server.start()
    client = RpcClient(tmp_path / "s.sock")
    try:
        assert client.wait_connected(10)

        def calls(t: int) -> list[Future[int]]:
            sizes = [10, 3_000_000, 100, 700_000] * 10  # a send takes part of the big ones
            return [client.call("note", t=t, i=i, pad="x" * n) for i, n in enumerate(sizes)]

        futures: dict[int, list[Future[int]]] = {}
        threads = [threading.Thread(target=lambda t=t: futures.update({t: calls(t)}))
                   for t in range(4)]  # fmt: skip
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        for t in range(4):
            assert [f.result(60) for f in futures[t]] == [10, 3_000_000, 100, 700_000] * 10
            assert seen[t] == list(range(40))
    finally:
        client.close()
        server.close()


def test_a_lost_learner_fails_calls_and_the_next_one_is_found(tmp_path: Path) -> None:
    release = threading.Event()
    stuck: Future[int] = Future()
    server = RpcServer(tmp_path / "s.sock", {"stuck": lambda: stuck, "one": lambda: 1})
    server.start()
    client = RpcClient(tmp_path / "s.sock")
    try:
        assert client.wait_connected(10)
        pending = client.call("stuck")
        server.close()  # the learner dies with a call in flight
        with pytest.raises(Unavailable, match="stopped before it answered"):
            pending.result(10)
        wait_until(lambda: not client.connected, what="the client to notice")
        with pytest.raises(Unavailable, match="restarting"):
            client.call("one").result(10)
        assert client.send("one") is False  # a message with no learner is dropped
        server = RpcServer(tmp_path / "s.sock", {"one": lambda: 1})
        server.start()
        assert client.wait_connected(10)
        assert client.call_sync("one", 10) == 1
    finally:
        release.set()
        client.close()
        server.close()


def test_a_hung_learner_fails_calls_after_the_deadline(tmp_path: Path) -> None:
    hung: Future[int] = Future()  # never resolved: a learner stopped with SIGSTOP, say
    server = RpcServer(tmp_path / "s.sock", {"hang": lambda: hung})
    server.start()
    client = RpcClient(tmp_path / "s.sock", deadline=0.2)
    try:
        assert client.wait_connected(10)
        with pytest.raises(Unavailable, match=r"did not answer within 0\.2 s"):
            client.call("hang").result(30)
        assert client.connected  # the connection stays: only the call gave up
    finally:
        client.close()
        server.close()
