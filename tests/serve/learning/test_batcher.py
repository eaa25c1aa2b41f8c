"""Dynamic batching: concurrent calls share one run, each caller gets its own result or error,
and batches stay within their bounds. Real threads; no assertion on time."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from shoal.serve import ModelService, ServiceConfig
from shoal.serve.errors import RequestError
from shoal.serve.learning.batcher import Batcher
from shoal.serve.learning.offload import Predictions
from tests.serve.helpers import event


class Recorder:
    """A ``run`` that records the batches it gets; it can be held to let callers queue up."""

    def __init__(self) -> None:
        self.batches: list[list[list[int]]] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, requests: list[list[int]]) -> list[int | BaseException]:
        self.gate.wait(30)
        self.batches.append(requests)
        return [ValueError(f"bad {r}") if -1 in r else sum(r) for r in requests]


def test_calls_that_queue_while_a_batch_runs_form_the_next_batch() -> None:
    run = Recorder()
    b: Batcher[list[int], int] = Batcher(run, size=len, max_rows=100)
    run.gate.clear()
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(b.submit, [0])
        while not b._leading:  # the first call leads and is held in run()
            threading.Event().wait(0.001)
        rest = [pool.submit(b.submit, [i, i]) for i in range(1, 8)]
        while len(b._queue) < 7:
            threading.Event().wait(0.001)
        run.gate.set()
        assert first.result() == 0 and [f.result() for f in rest] == [2 * i for i in range(1, 8)]
    assert [len(x) for x in run.batches] == [1, 7] and b.batches == 2 and b.sizes.sum == 15
    assert b.sizes.cumulative()[4] == (16, 2) and b.sizes.cumulative()[3] == (8, 1)


def test_batches_hold_at_most_max_rows_and_a_larger_request_runs_alone() -> None:
    run = Recorder()
    b: Batcher[list[int], int] = Batcher(run, size=len, max_rows=4, max_wait=60)
    with ThreadPoolExecutor(6) as pool:  # max_wait 60 s: the leader waits until 4 rows queue
        got = list(pool.map(b.submit, [[1, 1], [2, 2], [3, 3], [4, 4]]))
    assert got == [2, 4, 6, 8] and [sum(map(len, x)) for x in run.batches] == [4, 4]
    assert b.submit([5] * 9) == 45 and run.batches[-1] == [[5] * 9]


def test_each_caller_gets_its_own_error_and_run_failures_reach_every_caller() -> None:
    run = Recorder()
    b: Batcher[list[int], int] = Batcher(run, size=len, max_rows=8, max_wait=60)
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(b.submit, r) for r in ([1], [-1], [2, 3], [4, 5, 6, 7])]
        with pytest.raises(ValueError, match=r"bad \[-1\]"):
            futures[1].result()
        assert [futures[i].result() for i in (0, 2, 3)] == [1, 5, 22]

    def broken(requests: list[list[int]]) -> list[int]:
        raise RuntimeError("kernel down")

    with pytest.raises(RuntimeError, match="kernel down"):
        Batcher(broken, size=len, max_rows=8).submit([1])


def test_concurrent_predictions_equal_the_model_and_bad_records_fail_alone(
    base_model: Path, tmp_path: Path
) -> None:
    config = ServiceConfig(model_path=str(base_model), state_dir=str(tmp_path / "s"),
                           batch_max_records=16, batch_wait=0.05)  # fmt: skip
    lines = [event(i).partition(" ")[2] for i in range(200)]
    with ModelService(config) as s, ThreadPoolExecutor(16) as pool:
        requests = [lines[i : i + 3] for i in range(0, 200, 3)]
        results = list(pool.map(s.predict, requests))
        bad = pool.submit(s.predict, ["| a", "| b:x"])
        good = pool.submit(s.predict, ["| c"])
        with pytest.raises(RequestError, match=r"records\[1\]: feature value in 'b:x'"):
            bad.result()
        assert len(good.result().values) == 1
        alone = s.predict(lines).values  # one request, one batch of its own
        assert [v for r in results for v in r.values] == alone
        assert len({i for r in results for i in r.event_ids}) == 200
        sizes = s.histograms()["batch_records"]
        assert sizes.sum == 200 + 2 + 1 + 200
        assert sizes.cumulative()[-1][1] < len(requests) + 3  # some requests were batched


def test_small_predictions_of_one_loop_turn_are_scored_as_one_batch(
    base_model: Path, tmp_path: Path
) -> None:
    lines = [event(i).partition(" ")[2] for i in range(10)]
    config = ServiceConfig(model_path=str(base_model), state_dir=str(tmp_path / "s"))
    with ModelService(config) as s:
        alone = [s.predict([x]).values[0] for x in lines]
        before = s.histograms()["batch_records"].cumulative()[-1][1]

        async def together() -> list[object]:
            predictions = Predictions()
            asked = [predictions(s, [x]) for x in lines] + [predictions(s, ["| a:x"])]
            return await asyncio.gather(*asked, return_exceptions=True)

        *got, bad = asyncio.run(together())
        assert [p.values[0] for p in got] == alone  # type: ignore[attr-defined]
        assert isinstance(bad, RequestError) and "records[0]" in str(bad)
        sizes = s.histograms()["batch_records"]
        assert sizes.cumulative()[-1][1] == before + 1  # one more batch ...
        assert sizes.sum == 2 * len(lines) + 1  # ... of the 10 records (and the bad one's)
