"""The state directory: made for one model file, held by one server, resumed by the same
command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal import FeatureSpec, Model
from shoal.errors import ModelFileError
from shoal.serve.errors import StateDirError
from shoal.serve.state.statedir import StateDir


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "m.shoal"
    Model(FeatureSpec(bits=4)).save(path)
    return path


def test_reopening_with_the_same_model_resumes(tmp_path: Path, model: Path) -> None:
    d = StateDir(tmp_path / "state")
    d.open(str(model))
    assert d.fresh and d.state_file.exists()
    d.close()
    again = StateDir(tmp_path / "state")
    again.open(str(model))
    assert not again.fresh
    again.close()
    model.unlink()  # a deployment removed the model file: the state directory suffices
    last = StateDir(tmp_path / "state")
    last.open(str(model))
    last.close()


def test_a_state_dir_of_another_model_is_refused(tmp_path: Path, model: Path) -> None:
    d = StateDir(tmp_path / "state")
    d.open(str(model))
    d.close()
    other = tmp_path / "other.shoal"
    Model(FeatureSpec(bits=5)).save(other)
    with pytest.raises(StateDirError, match=r"was made for model file .*m\.shoal.*another model"):
        StateDir(tmp_path / "state").open(str(other))


def test_one_server_per_state_dir(tmp_path: Path, model: Path) -> None:
    d = StateDir(tmp_path / "state")
    d.open(str(model))
    with pytest.raises(StateDirError, match=r"in use by another shoal serve \(pid \d+\)"):
        StateDir(tmp_path / "state").open(str(model))
    d.close()
    StateDir(tmp_path / "state").open(str(model))


def test_foreign_directories_and_missing_models_are_refused(tmp_path: Path, model: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "precious.csv").write_text("x")
    with pytest.raises(StateDirError, match="not empty and is not a shoal state directory"):
        StateDir(tmp_path / "data").open(str(model))
    with pytest.raises(ModelFileError, match="no such file"):
        StateDir(tmp_path / "new").open(str(tmp_path / "missing.shoal"))
    (tmp_path / "file").write_text("")
    with pytest.raises(StateDirError):
        StateDir(tmp_path / "file").open(str(model))
