"""The shelf on a directory and on S3 (a local S3 server): published snapshots are found,
verified, pruned; a damaged one is refused; a replica follows one through S3."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from shoal import FeatureSpec, LearnerConfig, Model
from shoal.serve.errors import ReadOnly
from shoal.serve.reading.records import parse_lines
from shoal.serve.replica.follower import FollowConfig, ReplicaService
from shoal.serve.replica.shelf import DamagedSnapshot, Shelf
from tests.serve.helpers import wait_until
from tests.test_s3 import s3  # noqa: F401 -- the local S3 server fixture, shared

pafs = pytest.importorskip("pyarrow.fs")

LINES = ["1 |u a b |v x:0.5", "-1 |u c", "1 |v x:2 y"]


def model(lines: list[str]) -> Model:
    m = Model(FeatureSpec(bits=8, interactions=("uv",)), LearnerConfig())
    m.learn(parse_lines(m.spec, lines))
    return m


@pytest.fixture(params=["dir", "s3"])
def uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "dir":
        return str(tmp_path / "published")
    return str(request.getfixturevalue("s3")(f"run-{id(request)}"))


def test_the_newest_sound_snapshot_is_found_and_old_ones_pruned(uri: str) -> None:
    shelf = Shelf(uri, keep=2)
    assert shelf.latest() is None
    for version in (1, 2, 3):
        payload = model(LINES[:version]).to_bytes()
        shelf.put(payload, version=version, applied_seq=version * 10, logged_seq=40, name="ctr")
    entry = shelf.latest()
    assert entry is not None
    assert (entry["version"], entry["applied_seq"], entry["logged_seq"], entry["name"]) == (
        3, 30, 40, "ctr",
    )  # fmt: skip
    assert shelf.fetch(entry).to_bytes() == model(LINES).to_bytes()
    fs, root = pafs.FileSystem.from_uri(uri) if "://" in uri else (pafs.LocalFileSystem(), uri)
    names = {i.base_name for i in fs.get_file_info(pafs.FileSelector(root))}
    assert len([n for n in names if n.endswith(".shoal")]) == 2  # the newest 2 kept

    with pytest.raises(DamagedSnapshot, match="does not match its sha256"):
        shelf.fetch({**entry, "sha256": "0" * 64})
    with pytest.raises(DamagedSnapshot, match="cannot be read"):
        shelf.fetch({**entry, "file": "v00000009-gone.shoal"})


def test_a_replica_follows_through_s3_and_skips_a_damaged_snapshot(
    s3: Callable[[str], str],  # noqa: F811 -- the fixture imported above
) -> None:
    uri = s3("followed")
    shelf = Shelf(uri)
    first = model(LINES[:1])
    shelf.put(first.to_bytes(), version=1, applied_seq=1, logged_seq=1, name="ctr")
    batch = parse_lines(first.spec, LINES)
    with ReplicaService(FollowConfig(uri=uri, every=0.05)) as replica:
        assert replica.name == "ctr" and replica.learner.live.version == 1
        assert np.array_equal(replica.predict(LINES).values, first.predict(batch).tolist())
        with pytest.raises(ReadOnly, match="without --leader"):
            replica.learn(LINES)
        fut = replica.wait_applied(3)
        second = model(LINES)
        shelf.put(second.to_bytes(), version=2, applied_seq=3, logged_seq=5, name="ctr")
        fut.result(timeout=30)  # the replica swapped to a snapshot holding event 3
        assert replica.predict(LINES).values == second.predict(batch).tolist()
        assert replica.info()["replica"]["lag_events"] == 2

        fs, root = pafs.FileSystem.from_uri(uri)
        entry = json.loads(fs.open_input_stream(f"{root}/LATEST.json").read())
        with fs.open_output_stream(f"{root}/v00000003-bad.shoal") as f:
            f.write(b"not a model")
        with fs.open_output_stream(f"{root}/LATEST.json") as f:
            f.write(json.dumps({**entry, "version": 3, "file": "v00000003-bad.shoal"}).encode())
        wait_until(lambda: replica.skipped == 1, 30, "the damaged snapshot to be skipped")
        assert replica.learner.live.version == 2  # still the sound one
        assert replica.predict(LINES).values == second.predict(batch).tolist()
