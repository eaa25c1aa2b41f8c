"""Feature names back from indices: the Python namer against the compiled parser."""

from __future__ import annotations

import pathlib

import pytest

from shoal.data.names import invert_hash, line_names
from shoal.data.reader import TextReader
from shoal.errors import ConfigError
from shoal.features.spec import FeatureSpec

DATA = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "data"

LINES = [
    "1 'a |u id=7 age:0.31 |ad campaign=3 price:2.5",
    "-1 2 |u id=8 zero:0 |ad campaign=4 :0.5 :0 :2",
    "1 0| a b 12345678901 42 |u:2 id=7 x:0.5 |ad a |u id=9",
    "|user id=7 |url x |b c d",
    "0 |\tf\tg:3 |e",
]
SPECS = [
    FeatureSpec(bits=18),
    FeatureSpec(bits=22, seed=5, interactions=("ua", "uu", "uua", " a", "aa ")),
    FeatureSpec(bits=12, interactions=("ab", "ba", "uuu"), ignore="b"),
    FeatureSpec(bits=20, seed=9, interactions=("uu", "uua"), hash_version=1),
]


def parsed_rows(path: pathlib.Path, spec: FeatureSpec, fmt: str = "vw") -> list[list[int]]:
    rows = []
    for b in TextReader(spec=spec, format=fmt).read(path):  # type: ignore[arg-type]
        rows.extend(b.indices[b.indptr[i] : b.indptr[i + 1]].tolist() for i in range(len(b)))
    return rows


@pytest.mark.parametrize("spec", SPECS)
def test_names_hash_to_the_indices_the_parser_gives(
    tmp_path: pathlib.Path, spec: FeatureSpec
) -> None:
    path = tmp_path / "lines.vw"
    path.write_text("\n".join(LINES) + "\n")
    rows = parsed_rows(path, spec)
    assert len(rows) == len(LINES)
    for line, row in zip(LINES, rows, strict=True):
        assert [i for i, _ in line_names(line, spec)] == row, line


def test_names_are_vw_audit_names() -> None:
    """As VW 9's --audit prints them: ns^name, the default namespace bare, ns^ anonymous."""
    spec = FeatureSpec(interactions=(" f",))
    got = line_names("1 | a :2 12 |f b :3", spec)
    assert got == [
        (92594, "a"),
        (0, ""),
        (12, "12"),
        (146788, "f^b"),
        (34875, "f^"),
        (220754, "a*f^b"),
        (125709, "a*f^"),
        (146788, "*f^b"),
        (34875, "*f^"),
        (143232, "12*f^b"),
        (39647, "12*f^"),
        (116060, "Constant"),
    ]


def test_svmlight_names(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "a.svm"
    path.write_text("1 qid:3 3:1 10:0.5 7:0 # comment\n-1 2:1\n")
    spec = FeatureSpec(bits=10)
    rows = parsed_rows(path, spec, "svmlight")
    assert line_names("1 qid:3 3:1 10:0.5 7:0 # comment", spec, svmlight=True) == [
        (3, "3"),
        (10, "10"),
        (spec.mask & 11650396, "Constant"),
    ]
    assert [i for i, _ in line_names("-1 2:1", spec, svmlight=True)] == rows[1]


def test_invert_hash_lists_every_name_of_an_index_with_its_count(tmp_path: pathlib.Path) -> None:
    spec = FeatureSpec(bits=2, constant=False)  # 4 slots: names collide
    path = tmp_path / "c.vw"
    path.write_text("1 | a b c d e\n1 | a\n")
    index = line_names("1 | a", spec)[0][0]
    found = invert_hash([path], spec, [index, 99])
    assert found[index]["a"] == 2
    assert set(found[index]) == {n for i, n in line_names("1 | a b c d e", spec) if i == index}
    assert found[99] == {}  # asked for, seen nowhere
    capped = invert_hash([path], spec, [0, 1, 2, 3], per_index=1)
    assert all(len(c) <= 1 for c in capped.values())


def test_invert_hash_refuses_formats_without_names(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("y,x\n1,2\n")
    with pytest.raises(ConfigError) as info:
        invert_hash([path], FeatureSpec(), [1])
    assert "VW text or svmlight" in str(info.value)


@pytest.mark.realdata
def test_names_of_vw_test_files_hash_as_the_parser_does(tmp_path: pathlib.Path) -> None:
    src = DATA / "vw_rcv1_small" / "0001.train.vw"
    if not src.exists():
        pytest.skip(f"{src} is absent (../shared/data)")
    lines = src.read_text().splitlines()[:25]
    path = tmp_path / "head.vw"
    path.write_text("\n".join(lines) + "\n")
    spec = FeatureSpec(bits=20, interactions=("ff",))
    for line, row in zip(lines, parsed_rows(path, spec), strict=True):
        assert [i for i, _ in line_names(line, spec)] == row
