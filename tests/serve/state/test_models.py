"""Model files a client names: regular files in the models directory, read with a bound."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shoal import FeatureSpec, Model
from shoal.serve.errors import RequestError
from shoal.serve.state.models import NO_MODEL, read_model_file


@pytest.fixture
def models(tmp_path: Path) -> Path:
    d = tmp_path / "models"
    d.mkdir()
    Model(FeatureSpec(bits=4)).save(d / "a.shoal")
    return d.resolve()


def test_a_model_file_by_name_or_absolute_path(models: Path) -> None:
    data = (models / "a.shoal").read_bytes()
    assert read_model_file(models, "a.shoal") == (models / "a.shoal", data)
    assert read_model_file(models, str(models / "a.shoal"))[1] == data
    (models / "link.shoal").symlink_to(models / "a.shoal")  # a link that stays inside
    assert read_model_file(models, "link.shoal")[1] == data


def test_everything_else_gets_one_message(models: Path, tmp_path: Path) -> None:
    outside = tmp_path / "b.shoal"
    Model(FeatureSpec(bits=4)).save(outside)
    (models / "out.shoal").symlink_to(outside)  # a link that leads out
    (models / "loop.shoal").symlink_to(models / "loop.shoal")
    os.mkfifo(models / "fifo.shoal")  # opened without blocking, refused unread
    data = (models / "a.shoal").read_bytes()
    (models / "long.shoal").write_bytes(data + b"\0" * 8)  # more than its header says
    (models / "short.shoal").write_bytes(data[:-8])
    (models / "text.shoal").write_text("not a model at all\n")
    (models / "dir.shoal").mkdir()
    names = [str(outside), "out.shoal", "loop.shoal", "fifo.shoal", "long.shoal", "short.shoal",
             "text.shoal", "dir.shoal", "none.shoal", ".", "..", "/dev/zero", "a\0.shoal",
             "\udc80.shoal", "x" * 5000]  # fmt: skip
    for name in names:
        with pytest.raises(RequestError) as caught:
            read_model_file(models, name)
        assert caught.value.problem == NO_MODEL, name
    for bad in ["", None, 3]:
        with pytest.raises(RequestError, match="must be the name of a model file"):
            read_model_file(models, bad)
