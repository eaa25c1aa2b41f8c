"""The line protocol's answers, without sockets: replies in order, errors per line, and no
acknowledgement for a line that was not logged."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from pathlib import Path

from shoal.serve import ModelService, ServiceConfig
from shoal.serve.errors import Unavailable
from shoal.serve.tcp.lines import Answer, answer, answer_block
from tests.serve.helpers import event, live_model, log_contents, offline


def test_bad_lines_leave_the_others_of_their_batch_in_order(
    base_model: Path, tmp_path: Path
) -> None:
    good = [event(i) for i in range(6)]
    raw = [good[0], "2 |u a", good[1], "", good[2], "|u x:", good[3], good[4], "| b", good[5]]
    config = ServiceConfig(model_path=str(base_model), state_dir=str(tmp_path / "state"))
    with ModelService(config) as service:
        out = answer(service, [x.encode() for x in raw], first=11)
        asyncio.run(out.settled())
        assert out.lines == [11, 12, 13, 15, 16, 17, 18, 19, 20]  # the blank line 14: no reply
        assert [k for k in out.kinds if k != "learned"] == ["error", "error", "predicted"]
        assert out.replies[1].startswith("error: line 12: label 2 is not valid")
        assert out.replies[4].startswith("error: line 16: ")
        assert live_model(service).to_bytes() == offline(base_model, good, tmp_path).to_bytes()
        service.close()
        closed = answer(service, [b"| a", b"1 | b"], first=1)
    assert closed.replies == [
        "error: line 1: model 'ctr' is not being served (shutting down)",
        "error: line 2: model 'ctr' is not being served (shutting down)",
    ]


def test_a_line_whose_event_was_not_logged_gets_an_error_not_its_prediction() -> None:
    out = Answer()
    for line in (1, 2, 3):
        out.replies[out.add(line)] = f"0.{line}"
    failed: Future[list[int]] = Future()
    failed.set_exception(Unavailable("the event log could not commit (disk full)"))
    logged: Future[list[int]] = Future()
    logged.set_result([7])
    out.durable += [([0, 2], failed), ([1], logged)]
    assert asyncio.run(out.settled()) == [
        "error: line 1: the event log could not commit (disk full)",
        "0.2",
        "error: line 3: the event log could not commit (disk full)",
    ]
    assert out.kinds == ["error", "predicted", "error"]


QUERIES = ["'q1 |u id3 d1 |v x:0.5", "  'q2  |u id9\r", "", "|u id2 d0 |v x:0.25", "|u unseen"]


def test_a_block_is_answered_as_its_lines_one_by_one(base_model: Path, tmp_path: Path) -> None:
    """The fast path (one kernel call for the block) replies what the line-by-line one does."""
    config = ServiceConfig(model_path=str(base_model), state_dir=str(tmp_path / "state"))
    with ModelService(config) as service:
        block = "".join(q + "\n" for q in QUERIES).encode()
        fast = answer_block(service, block, first=5)
        slow = answer(service, [q.encode() for q in QUERIES], first=5)
        assert (fast.lines, fast.replies, fast.kinds) == (slow.lines, slow.replies, slow.kinds)
        assert fast.lines == [5, 6, 8, 9] and fast.replies[0].endswith(" q1")
        last = answer_block(service, block.removesuffix(b"\n"), first=5)  # at the input's end
        assert last.replies == fast.replies


def test_labeled_lines_of_a_block_are_logged_in_one_commit(
    base_model: Path, tmp_path: Path
) -> None:
    good = [event(i) for i in range(3)]
    raw = [good[0], "| a", good[1], good[2]]
    config = ServiceConfig(model_path=str(base_model), state_dir=str(tmp_path / "state"))
    with ModelService(config) as service:
        out = answer_block(service, "".join(x + "\n" for x in raw).encode(), first=1)
        [(indexes, future)] = out.durable  # one append: one transaction, one fsync
        assert indexes == [0, 2, 3] and out.kinds == ["learned", "predicted", "learned", "learned"]
        assert future.result(timeout=20) == [1, 2, 3]
        assert [r for _, r in log_contents(tmp_path / "state")] == good
        bad = answer_block(service, b"| a\n2 |u b\n| c\n", first=7)  # a label logistic refuses
        assert bad.kinds == ["predicted", "error", "predicted"]
        assert bad.replies[1].startswith("error: line 8: label 2 is not valid")
        assert live_model(service).to_bytes() == offline(base_model, good, tmp_path).to_bytes()
