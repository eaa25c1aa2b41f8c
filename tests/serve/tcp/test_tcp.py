"""The TCP line protocol against the real server on a loopback port, HTTP beside it on the same
event loop (as ``shoal serve --http ... --tcp ...`` runs them)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from shoal import FeatureSpec, LearnerConfig, Model, TrainOptions, train
from shoal.cli import main
from tests.serve.conftest import Both
from tests.serve.helpers import event, log_contents, offline, wait_until

Start = Callable[..., Both]

# unlabeled lines: with tags, without, blank
QUERIES = [
    "'q1 |u id3 d1 |v x:0.5",
    "  'q2  |u id9",
    "|u id2 d0 |v x:0.25",
    "",
    "'q3|v x:0.75",
    "|u unseen-feature",
]


def shoal_predict(model: Path, lines: list[str], tmp_path: Path, capsys) -> list[str]:
    """What ``shoal predict MODEL FILE --tags`` writes for the lines."""
    data = tmp_path / "queries.vw"
    data.write_text("".join(x + "\n" for x in lines))
    capsys.readouterr()
    assert main(["predict", str(model), str(data), "--tags"]) == 0
    return capsys.readouterr().out.splitlines()


@pytest.fixture
def multiclass_model(tmp_path: Path) -> Path:
    model = Model(FeatureSpec(bits=10), LearnerConfig(loss="multiclass", classes=3))
    data = tmp_path / "three.vw"
    data.write_text("".join(f"{1 + i % 3} |u id{i % 7} d{i % 3}\n" for i in range(90)))
    train(model, [data], TrainOptions(parse_threads=1))
    path = tmp_path / "three.shoal"
    model.save(path)
    return path


@pytest.mark.parametrize("kind", ["logistic", "multiclass"])
def test_replies_are_what_shoal_predict_writes(
    start_both: Start, base_model: Path, multiclass_model: Path, tmp_path: Path, capsys, kind: str
) -> None:
    model = base_model if kind == "logistic" else multiclass_model
    expected = shoal_predict(model, QUERIES, tmp_path, capsys)
    assert len(expected) == 5 and expected[0].endswith(" q1") and expected[1].endswith(" q2")
    server = start_both(model)
    with server.connect() as client:
        assert client.ask(*QUERIES) == expected  # pipelined: all lines, then the replies
        assert [client.ask(x)[0] for x in QUERIES if x] == expected  # one at a time
    with socket.create_connection(server.address) as raw:  # as `printf ... | nc` sends them
        raw.sendall("\r\n".join(QUERIES).encode())  # \r\n line ends, none after the last
        raw.shutdown(socket.SHUT_WR)
        assert raw.makefile().read().splitlines() == expected
    assert server.service.info()["logged_seq"] == 0  # unlabeled lines learn nothing


def test_labeled_lines_are_learned_as_offline_training_learns_them(
    start_both: Start, base_model: Path, tmp_path: Path, capsys
) -> None:
    server = start_both()
    labeled = [event(i) for i in range(40)]
    first = shoal_predict(base_model, labeled[:1], tmp_path, capsys)
    with server.connect() as one, server.connect() as pipelined:
        assert one.ask(labeled[0]) == first  # predicted before it is learned
        for line in labeled[1:10]:
            one.ask(line)
        replies = pipelined.ask(*labeled[10:30], "'not-learned |u id1")
        assert len(replies) == 21 and replies[-1].endswith(" not-learned")
        one.ask(*labeled[30:])
    # every reply was sent once its line was durable: all 40 are in the log, in order
    assert server.service.info()["logged_seq"] == 40
    expected = offline(base_model, labeled, tmp_path)
    assert server.live_model().to_bytes() == expected.to_bytes()
    info = server.http.get("/v1/models/ctr").json()  # the JSON API sees the same model
    assert info["applied_seq"] == 40 and info["examples_learned"] == expected.examples_learned


def test_a_bad_line_gets_an_error_and_the_connection_goes_on(
    start_both: Start, base_model: Path, tmp_path: Path
) -> None:
    server = start_both()
    with server.connect() as client:
        client.send(event(0), "1 |u x:abc", "7 |u id1", b"\xff\xfe |u", event(1), "| fine")
        replies = client.read(6)
        assert replies[1] == "error: line 2: feature value in 'x:abc' is not a finite number"
        assert replies[2].startswith("error: line 3: label 7 is not valid for logistic loss")
        assert replies[3] == "error: line 4: is not UTF-8 text (byte 1)"
        assert not any(r.startswith("error") for r in replies[:1] + replies[4:])
        assert not any(r.startswith("error") for r in client.ask("-1 |u id4", "| fine"))
    expected = offline(base_model, [event(0), event(1), "-1 |u id4"], tmp_path)
    assert server.live_model().to_bytes() == expected.to_bytes()


def test_errors_count_the_lines_answered_at_once_before_them(start_both: Start) -> None:
    """Prediction-only lines, one block at a time, take the server's quickest way
    (``_at_once``); the lines still count, blank ones too, for a later error's line number."""
    server = start_both()
    with server.connect() as client:
        assert len(client.ask("| a")) == 1
        assert len(client.ask("", "'t |u id1", "")) == 1  # lines 2-4
        assert client.ask("1 |u x:abc") == [
            "error: line 5: feature value in 'x:abc' is not a finite number"
        ]


def test_json_lines_are_checked_like_any_line(
    start_both: Start, base_model: Path, tmp_path: Path
) -> None:
    """A line that starts with '{' is a JSON line: a broken one is an error line, not a dropped
    connection, and the lines around it (labeled ones too) are answered and learned."""
    server = start_both()
    good = '{"label": 1, "features": {"u": {"id1": 1}}}'
    with server.connect() as client:
        client.send(event(0), '{"a": 1}', "{", good, '{"label": "x", "features": {}}', event(1))
        replies = client.read(6)
        assert replies[1] == (
            'error: line 2: a JSON line is {"features": {...}} or {"row": "..."}, with a numeric '
            '"label" and "weight" if any'
        )
        assert replies[2].startswith("error: line 3: starts with '{' but is not valid JSON")
        assert replies[4] == 'error: line 5: "label" must be a number, got "x"'
        assert not any(r.startswith("error") for r in (replies[0], replies[3], replies[5]))
    expected = offline(base_model, [event(0), "1 |u id1:1", event(1)], tmp_path)
    assert server.live_model().to_bytes() == expected.to_bytes()


def test_an_over_long_line_closes_the_connection_with_an_error(start_both: Start) -> None:
    server = start_both(max_line_bytes=100)
    with server.connect() as client:
        client.send("| a", "| " + "x" * 100, "| b")
        replies = client.rest()
    assert len(replies) == 2 and not replies[0].startswith("error")
    assert replies[1] == (
        "error: line 2: is longer than 100 bytes (--max-line-bytes); closing the connection"
    )
    with server.connect() as client:  # a line without its end, too long already
        client.sock.sendall(b"| a\n| " + b"x" * 150)
        assert client.rest()[1].startswith("error: line 2: is longer than 100 bytes")
    with server.connect() as client:  # megabytes the server never reads: no reset, the reply
        sender = threading.Thread(target=client.send, args=(b"| " + b"x" * (8 << 20),))
        sender.start()  # comes before the end of the connection
        assert client.rest()[0].startswith("error: line 1: is longer than 100 bytes")
        sender.join()
    with server.connect() as client:  # the limit is inclusive
        assert not client.ask("| " + "x" * 98)[0].startswith("error")


def test_connections_over_the_limit_are_refused_at_once(start_both: Start) -> None:
    server = start_both(max_connections=2)
    first, second = server.connect(), server.connect()
    assert first.ask("| a") == second.ask("| a")  # both accepted
    with server.connect() as third:
        assert third.rest() == [
            "error: too many connections (--max-connections 2); try again later"
        ]
    first.close()
    metrics = lambda: server.http.get("/metrics").text  # noqa: E731
    wait_until(lambda: "shoal_tcp_open_connections 1.0" in metrics(), what="a closed connection")
    with server.connect() as fourth:
        assert fourth.ask("| a") == second.ask("| a")
    second.close()
    text = metrics()
    assert 'shoal_tcp_connections_total{outcome="refused"} 1.0' in text
    assert 'shoal_tcp_connections_total{outcome="accepted"} 3.0' in text
    assert 'shoal_tcp_lines_total{result="predicted"} 4.0' in text


def test_an_idle_connection_is_closed(start_both: Start) -> None:
    server = start_both(idle_timeout=0.2)
    with server.connect() as client:
        client.sock.sendall(b"| a\n| unfinished")
        replies = client.rest()  # the server closes it: the unfinished line is not answered
    assert len(replies) == 1 and not replies[0].startswith("error")


def test_many_clients_at_once_get_their_own_replies_in_order(
    start_both: Start, base_model: Path, tmp_path: Path
) -> None:
    server = start_both()
    failures: list[BaseException] = []

    def tagged(c: int, i: int) -> str:
        """A labeled line (a distinct event) with a tag saying whose and which it is."""
        return event(100 * c + i).replace(" |", f" 'c{c}-{i} |", 1)

    def client(c: int) -> None:
        try:
            with server.connect() as conn:
                for i in range(0, 60, 6):
                    lines = [tagged(c, k) for k in range(i, i + 6)]
                    lines[1] = lines[1].split(" ", 1)[1]  # unlabeled: predicted only
                    replies = conn.ask(*lines)  # pipelined, while the others send theirs
                    assert [r.split()[1] for r in replies] == [f"c{c}-{k}" for k in range(i, i + 6)]
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures
    log = log_contents(server.service.config.state_dir)
    assert len(log) == 4 * 50 and all(" 'c" in record for _, record in log)
    expected = offline(base_model, [record for _, record in log], tmp_path)
    assert server.live_model().to_bytes() == expected.to_bytes()


def test_a_client_that_does_not_read_is_not_read_either(start_both: Start) -> None:
    """Back-pressure: the server stops reading a client that leaves its replies unread, so the
    client's writes block instead of the server's memory growing; reading again resumes it."""
    server = start_both()
    line = b"|u " + b"x" * 96 + b"\n"  # 100 bytes
    chunk = line * 640  # 64 KiB
    with server.connect() as client:
        client.sock.settimeout(1.0)
        sent = 0
        while True:
            assert sent < 256 << 20, "the server read 256 MiB without any reply being taken"
            try:
                sent += client.sock.send(chunk[sent % len(chunk) :])
            except TimeoutError:
                break  # nothing could be sent for a second: the server has stopped reading
        client.sock.settimeout(30)
        replies = client.read(sent // len(line))  # reading resumes it
        client.sock.sendall(chunk[sent % len(chunk) :][: len(line) - sent % len(line)])
        replies += client.read(1)
    assert len(set(replies)) == 1 and not replies[0].startswith("error")
