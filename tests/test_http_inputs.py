"""Schemes pyarrow lacks, through fsspec: data read over HTTP from a real server on loopback.

The server is Python's ``http.server`` with byte ranges (``Range: bytes=a-b``, as object stores
and web servers answer them), serving a folder; fsspec's HTTP file system (aiohttp) reads it,
wrapped by pyarrow's ``FSSpecHandler``: the same reader and planner as for local files and S3.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from shoal.cli import main
from shoal.data.synthetic import generate_clicks

pytest.importorskip("fsspec", reason="fsspec is not installed (shoal[fsspec])")
pytest.importorskip("aiohttp", reason="aiohttp is not installed (shoal[fsspec])")

ROWS = 4000


class RangeHandler(SimpleHTTPRequestHandler):
    """Serves files whole or, for ``Range: bytes=a-b``, the part asked for (206)."""

    def send_head(self) -> Any:
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        path = Path(self.translate_path(self.path))
        if match is None or not path.is_file():
            return super().send_head()
        size = path.stat().st_size
        start = int(match[1])
        end = min(size - 1, int(match[2])) if match[2] else size - 1
        if start >= size:
            self.send_error(416)
            return None
        f = path.open("rb")
        f.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        return _Part(f, end - start + 1)

    def log_message(self, *args: object) -> None:  # quiet
        pass


class _Part:
    """The first ``n`` bytes of an open file, as ``copyfile`` reads them."""

    def __init__(self, f: BinaryIO, n: int) -> None:
        self.f, self.left = f, n

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        data = self.f.read(size)
        self.left -= len(data)
        return data

    def close(self) -> None:
        self.f.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A served folder with click data (``clicks.vw``, and two parts under ``days/``), and
    its URL."""
    root = tmp_path_factory.mktemp("www")
    generate_clicks(root / "clicks.vw", ROWS)
    data = (root / "clicks.vw").read_bytes()
    half = data.index(b"\n", len(data) // 2) + 1
    (root / "days").mkdir()
    (root / "days" / "part-0.vw").write_bytes(data[:half])
    (root / "days" / "part-1.vw").write_bytes(data[half:])
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(RangeHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="http")
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def train(tmp_path: Path, name: str, *args: str) -> bytes:
    out = tmp_path / f"{name}.shoal"
    assert main(["train", *args, "-o", str(out), "--passes", "2"]) == 0
    return out.read_bytes()


def test_train_reads_a_url_and_a_glob_of_urls(site: tuple[Path, str], tmp_path: Path) -> None:
    root, url = site
    local = train(tmp_path, "local", str(root / "clicks.vw"))
    assert train(tmp_path, "url", f"{url}/clicks.vw") == local
    assert train(tmp_path, "glob", f"{url}/days/part-*.vw") == local


def test_workers_read_byte_ranges_over_http(
    site: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Cut into 8 shards like the local file: each worker asks the server for its ranges."""
    root, url = site
    workers = ("--workers", "2")
    remote = train(tmp_path, "http", f"{url}/clicks.vw", *workers)
    # a pass: 4 rounds, then a step that judges its model on the held-out rows
    assert "2 local worker(s), 10 round(s)" in capsys.readouterr().out
    assert remote == train(tmp_path, "local", str(root / "clicks.vw"), *workers)


def test_eval_over_http_and_clear_errors(
    site: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, url = site
    model = tmp_path / "m.shoal"
    assert main(["train", str(root / "clicks.vw"), "-o", str(model)]) == 0
    capsys.readouterr()
    for data in (str(root / "clicks.vw"), f"{url}/clicks.vw"):
        assert main(["eval", str(model), data, "--json"]) == 0
    local, remote = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert local == remote and local["examples"] == ROWS

    assert main(["eval", str(model), f"{url}/nope.vw"]) == 2
    assert capsys.readouterr().err == f"shoal: error: {url}/nope.vw: no such file\n"
    assert main(["eval", str(model), "nosuchscheme://host/data.vw"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("shoal: error: nosuchscheme://host/data.vw: no file system for ")
    assert err.count("\n") == 1
