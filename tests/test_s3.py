"""S3 for real: ``shoal train``, ``eval`` and the workers read objects from a local S3 server.

The server is moto's (``moto[server]``, a dev dependency): a real S3 HTTP API on a loopback
port, reached through pyarrow's own S3 client, with no mock inside shoal or pyarrow. Its
address rides in the URIs (``?endpoint_override=...&scheme=http``), as any S3-compatible
store's would; the dummy credentials too (``s3://KEY:SECRET@bucket/...``), because worker
processes come from a fork server that may have started before this module set anything in
the environment.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shoal.cli import main
from shoal.data.synthetic import generate_clicks

moto_server = pytest.importorskip("moto.server", reason="moto is not installed (shoal[dev])")
pafs = pytest.importorskip("pyarrow.fs")

KEY, SECRET, BUCKET = "shoal", "not-a-secret", "data"
ROWS = 4000

S3 = Callable[[str], str]  # an object key -> its URI


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    """A bucket on a local S3 server, and the URI of a key in it."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        options = f"endpoint_override={host}:{port}&scheme=http&region=us-east-1"
        fs = pafs.S3FileSystem(
            access_key=KEY, secret_key=SECRET, endpoint_override=f"{host}:{port}",
            scheme="http", region="us-east-1", allow_bucket_creation=True,
        )  # fmt: skip
        fs.create_dir(BUCKET)
        yield lambda key: f"s3://{KEY}:{SECRET}@{BUCKET}/{key}?{options}"
    finally:
        server.stop()


def put(uri: str, data: bytes) -> None:
    fs, path = pafs.FileSystem.from_uri(uri)
    with fs.open_output_stream(path) as f:
        f.write(data)


@pytest.fixture(scope="module")
def clicks(s3: S3, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Click data: one file here, and in S3 as one object and as two parts of a partitioned
    data set (``days/day=1/part-0.vw``, ``days/day=2/part-1.vw``, and a ``_SUCCESS``)."""
    path = tmp_path_factory.mktemp("s3") / "clicks.vw"
    generate_clicks(path, ROWS)
    data = path.read_bytes()
    put(s3("clicks.vw"), data)
    half = data.index(b"\n", len(data) // 2) + 1
    put(s3("days/day=1/part-0.vw"), data[:half])
    put(s3("days/day=2/part-1.vw"), data[half:])
    put(s3("days/_SUCCESS"), b"")
    return path


def train(tmp_path: Path, name: str, *args: str) -> bytes:
    out = tmp_path / f"{name}.shoal"
    assert main(["train", *args, "-o", str(out), "--passes", "2"]) == 0
    return out.read_bytes()


def test_train_in_process_reads_objects_globs_and_directories(
    s3: S3, clicks: Path, tmp_path: Path
) -> None:
    local = train(tmp_path, "local", str(clicks))
    assert train(tmp_path, "object", s3("clicks.vw")) == local
    assert train(tmp_path, "glob", s3("days/day=*/part-*.vw")) == local
    assert train(tmp_path, "directory", s3("days")) == local  # _SUCCESS is skipped


def test_workers_read_byte_ranges_of_an_object(
    s3: S3, clicks: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The object is cut as the file is (2 workers, 8 shards): the same plan, the same bytes."""
    workers = ("--workers", "2")
    remote = train(tmp_path, "s3", s3("clicks.vw"), *workers)
    # a pass: 4 rounds, then a step that judges its model on the held-out rows
    assert "2 local worker(s), 10 round(s)" in capsys.readouterr().out
    assert remote == train(tmp_path, "local", str(clicks), *workers)


def test_eval_reads_s3_and_errors_name_the_uri(
    s3: S3, clicks: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "m.shoal"
    assert main(["train", str(clicks), "-o", str(model)]) == 0
    capsys.readouterr()
    for data in (str(clicks), s3("clicks.vw")):
        assert main(["eval", str(model), data, "--json"]) == 0
    local, remote = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert local == remote and local["examples"] == ROWS

    assert main(["eval", str(model), s3("nope.vw")]) == 2
    assert capsys.readouterr().err == f"shoal: error: {s3('nope.vw')}: no such file\n"
    put(s3("bad.vw"), clicks.read_bytes()[:2000] + b"\n1 |a x:abc\n")
    assert main(["eval", str(model), s3("bad.vw")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("shoal: error: line ") and f" of {s3('bad.vw')}: " in err
    assert err.count("\n") == 1
