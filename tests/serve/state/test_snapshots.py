"""Snapshots: atomic model files with version metadata; the last K kept; damage skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal import FeatureSpec, Model
from shoal.data.batch import Batch
from shoal.serve.errors import UnknownVersion
from shoal.serve.state.snapshots import SnapshotStore


def learned(n: int) -> Model:
    m = Model(FeatureSpec(bits=6))
    for i in range(n):
        m.learn(Batch.from_rows([([i % 64], [1.0])], labels=[1.0 if i % 2 else -1.0]))
    return m


def test_versions_round_trip_and_only_the_last_k_are_kept(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "snaps", keep=3)
    store.open()
    models = [learned(n) for n in range(5)]
    for n, m in enumerate(models):
        v = store.write(m, applied_seq=10 * n, reason="periodic")
        assert (v.version, v.applied_seq, v.examples_learned) == (n + 1, 10 * n, n)
    assert [v.version for v in store.versions()] == [3, 4, 5]
    model, info = store.load(4)
    assert model.to_bytes() == models[3].to_bytes()
    assert (info.applied_seq, info.reason) == (30, "periodic")
    assert Model.load(tmp_path / "snaps" / "v00000005.shoal").to_bytes() == models[4].to_bytes()
    with pytest.raises(UnknownVersion, match=r"version 1 is not kept \(kept versions: 3..5\)"):
        store.load(1)


def test_latest_skips_a_damaged_snapshot_and_crash_leftovers_go(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, keep=5)
    store.open()
    store.write(learned(2), applied_seq=7, reason="periodic")
    store.write(learned(3), applied_seq=9, reason="periodic")
    path = tmp_path / "v00000002.shoal"
    path.write_bytes(path.read_bytes()[:-40])  # not possible with rename, but disks fail
    (tmp_path / ".v00000003.shoal.abc.tmp").write_bytes(b"half")
    _, info = store.latest() or (None, None)
    assert info is not None and info.version == 1 and info.applied_seq == 7
    store.open()
    assert not list(tmp_path.glob("*.tmp"))
    assert store.write(learned(1), applied_seq=9, reason="manual").version == 3


def test_a_snapshot_is_chosen_by_its_content_not_its_name(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, keep=5)
    store.open()
    store.write(learned(1), applied_seq=3, reason="periodic")
    store.write(learned(2), applied_seq=12, reason="periodic")
    v2 = tmp_path / "v00000002.shoal"
    data = v2.read_bytes()
    v2.write_bytes(data.replace(b'"x-serve.applied_seq":"12"', b'"x-serve.applied_seq":"02"'))
    _, info = store.latest() or (None, None)
    assert info is not None and (info.version, info.applied_seq) == (1, 3)  # v2 altered
    v2.write_bytes(data)
    (tmp_path / "v00000007.shoal").write_bytes((tmp_path / "v00000001.shoal").read_bytes())
    _, info = store.latest() or (None, None)
    assert info is not None and (info.version, info.applied_seq) == (2, 12)  # v7 is v1's copy
