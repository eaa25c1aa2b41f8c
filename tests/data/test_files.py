"""Where data lives: files, globs and directories expand alike as local paths and behind URIs,
and whatever goes wrong is one line naming the input."""

from __future__ import annotations

import os
import pathlib
import sys
from collections.abc import Callable

import pytest

from shoal.data import files
from shoal.data.blocks import open_file
from shoal.errors import ShoalError
from shoal.train.plan import plan


def as_path(p: pathlib.Path) -> str:
    return str(p)


def as_uri(p: pathlib.Path) -> str:
    """As a user writes it (``Path.as_uri`` would percent-encode the wildcards)."""
    return f"file://{p}"


WHERE = pytest.mark.parametrize("where", [as_path, as_uri], ids=["path", "uri"])
Where = Callable[[pathlib.Path], str]


@pytest.fixture
def tree(tmp_path: pathlib.Path) -> pathlib.Path:
    """d/{a,b}.vw, d/sub/c.vw, hidden names (d/.hidden.vw, d/_SUCCESS), x1.svm and x2.svm."""
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    for name in ("b.vw", "a.vw", "sub/c.vw", ".hidden.vw", "_SUCCESS"):
        (d / name).write_text("1 |a x\n")
    (tmp_path / "x1.svm").write_text("1 1:1\n")
    (tmp_path / "x2.svm").write_text("1 1:1\n")
    return tmp_path


@WHERE
def test_expand_files_globs_and_directories(tree: pathlib.Path, where: Where) -> None:
    d = tree / "d"
    got = files.expand([where(tree / "x2.svm"), where(d), where(tree) + "/x[12].svm"])
    want = [tree / "x2.svm", d / "a.vw", d / "b.vw", d / "sub" / "c.vw"]
    assert got == [where(p) for p in (*want, tree / "x1.svm", tree / "x2.svm")]
    assert files.expand([where(d) + "/**/*.vw"]) == [where(p) for p in want[1:]]
    assert files.expand([where(tree) + "/*/sub/*"]) == [where(d / "sub" / "c.vw")]


@WHERE
def test_patterns_skip_hidden_names_unless_they_name_them(tree: pathlib.Path, where: Where) -> None:
    d = tree / "d"
    assert files.expand([where(d) + "/*"]) == [where(d / "a.vw"), where(d / "b.vw")]
    assert files.expand([where(d) + "/_*"]) == [where(d / "_SUCCESS")]
    assert files.expand([where(d) + "/.*.vw"]) == [where(d / ".hidden.vw")]


def test_a_local_question_mark_is_a_wildcard(tree: pathlib.Path) -> None:
    assert files.expand([str(tree / "x?.svm")]) == [str(tree / "x1.svm"), str(tree / "x2.svm")]


@WHERE
def test_expand_says_what_is_missing(tmp_path: pathlib.Path, where: Where) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ShoalError, match=f"^{where(tmp_path / 'nope.vw')}: no such file$"):
        files.expand([where(tmp_path / "nope.vw")])
    with pytest.raises(ShoalError, match="no file matches"):
        files.expand([where(tmp_path) + "/*.nope"])
    with pytest.raises(ShoalError, match="no file matches"):
        files.expand([where(tmp_path) + "/nowhere/*.vw"])
    with pytest.raises(ShoalError, match="holds no files"):
        files.expand([where(tmp_path / "empty")])
    with pytest.raises(ShoalError, match="no input files"):
        plan([], 4)


def test_listed_names_become_uris_that_open_them(tmp_path: pathlib.Path) -> None:
    """A name with a space, ``%``, ``#`` or a wildcard is percent-encoded in the URI."""
    d = tmp_path / "odd"
    d.mkdir()
    for name in ("a b.vw", "100%.vw", "c#1.vw", "d*.vw"):
        (d / name).write_text(f"1 |a {name.replace(' ', '_')}\n")
    got = files.expand([as_uri(d)])
    assert got == [as_uri(d / "100%25.vw"), as_uri(d / "a%20b.vw"), *[
        as_uri(d / n) for n in ("c%231.vw", "d%2A.vw")
    ]]  # fmt: skip
    for uri, name in zip(got, ("100%.vw", "a b.vw", "c#1.vw", "d*.vw"), strict=True):
        with open_file(uri) as f:
            assert f.read() == (d / name).read_bytes()


@pytest.mark.parametrize(
    ("uri", "says"),
    [
        ("foo://bucket/x.vw", "no file system for foo:// URIs"),  # neither pyarrow's nor fsspec's
        ("s3://bucket/x.vw?colour=blue", "cannot open this URI: Unexpected query parameter"),
    ],
)
def test_a_uri_pyarrow_cannot_open_is_one_clear_line(uri: str, says: str) -> None:
    with pytest.raises(ShoalError) as info:
        files.expand([uri])
    message = str(info.value)
    assert message.startswith(f"{uri}: ") and says in message
    assert "\n" not in message


def test_a_scheme_pyarrow_lacks_without_fsspec_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "fsspec", None)  # as if not installed: import fails
    with pytest.raises(ShoalError) as info:
        files.expand(["az://container/x.vw"])
    assert str(info.value).startswith("az://container/x.vw: pyarrow has no file system for az://")
    assert "pip install 'shoal[fsspec]'" in str(info.value)


@pytest.mark.skipif(
    bool({"HADOOP_HOME", "ARROW_LIBHDFS_DIR"} & set(os.environ)), reason="libhdfs may load here"
)
def test_hdfs_without_java_says_what_to_set() -> None:
    with pytest.raises(ShoalError) as info:
        files.expand(["hdfs://namenode:8020/data/x.vw"])
    message = str(info.value)
    assert message.startswith("hdfs://namenode:8020/data/x.vw: ")
    assert "JAVA_HOME" in message and "\n" not in message


@WHERE
def test_opening_a_missing_file_or_a_directory_names_it(
    tmp_path: pathlib.Path, where: Where
) -> None:
    missing = where(tmp_path / "nope.vw")
    with pytest.raises(ShoalError, match=f"^{missing}: no such file$"), open_file(missing):
        pass
    assert files.is_dir(where(tmp_path))
    assert not files.is_dir(where(tmp_path / "nope"))
    with pytest.raises(ShoalError, match="no such file"):
        files.file_size(where(tmp_path / "nope.vw"))


def test_one_path_given_as_a_string_is_one_input(tmp_path: pathlib.Path) -> None:
    (tmp_path / "a.vw").write_text("1 | x\n")
    assert files.expand(str(tmp_path / "a.vw")) == [str(tmp_path / "a.vw")]
    assert files.expand(tmp_path / "a.vw") == [str(tmp_path / "a.vw")]
