"""The user guide's examples run: every code block of every page of ``docs/``, in order.

Each page is one test case. Its blocks run in a fresh temporary directory, in the order they
appear, so that a page reads like one session:

- ``python`` blocks share one namespace per page and run as a script would
  (``__name__ == "__main__"``), with this virtual environment's ``bin/`` first on ``PATH`` too
  (a block may start ``shoal``); their ``assert`` lines are the checks.
- ``sh`` blocks run with ``bash`` under ``set -euo pipefail``, with this virtual environment's
  ``bin/`` first on ``PATH`` (so ``shoal`` is the one under test); a block passes when bash
  exits 0. A block that shows a failure tests the exit status itself.
- ``console`` blocks run their ``$ `` lines (and continuation lines) the same way; the other
  lines are sample output and are not compared.

The one way out is the ``skip-test`` marker after the language (a fence line reading
"```sh skip-test"), for examples that cannot run here, such as a Ray cluster's address; the
page says why in its text. Fences spelled ``bash``, ``py`` and the like are refused, so that no
example escapes the test by its spelling.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from shoal.cli import _parser

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
BIN = Path(sys.executable).parent  # the virtual environment's bin/, where `shoal` lives
RUN = {"python", "sh", "console"}
REFUSED = {"bash", "shell", "zsh", "py", "python3", "pycon", "ipython", "shell-session"}
SKIP = "skip-test"
SH_TIMEOUT = 120.0
FENCE = re.compile(r"^(?P<indent> *)(?P<ticks>`{3,})(?P<info>[^`]*)$")
LINK = re.compile(r"\]\((?P<target>[^)#\s]*)(?:#(?P<anchor>[^)\s]*))?\)")


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # of the first line of code, 1-based
    lang: str
    skip: bool
    code: str

    @property
    def where(self) -> str:
        return f"docs/{self.page}:{self.line}"


def blocks(path: Path, page: str | None = None) -> list[Block]:
    """The fenced code blocks of a Markdown page, in order (fences may be indented)."""
    page = page or path.relative_to(DOCS).as_posix()
    out: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, ticks, info = len(m["indent"]), m["ticks"], m["info"].split()
        start = i + 1
        i = start
        while i < len(lines):
            close = FENCE.match(lines[i])
            if close and close["ticks"].startswith(ticks) and not close["info"].strip():
                break
            i += 1
        else:
            raise AssertionError(f"docs/{page}:{start}: code block is never closed")
        code = "\n".join(ln[indent:] if ln[:indent].isspace() else ln for ln in lines[start:i])
        lang = info[0] if info else ""
        out.append(Block(page, start + 1, lang, SKIP in info[1:], code + "\n"))
        i += 1
    return out


def console_commands(code: str) -> str:
    """The commands of a console transcript: ``$ `` lines and their continuation lines."""
    cmds: list[str] = []
    more = False
    for ln in code.splitlines():
        if ln.startswith("$ ") or more:
            cmd = ln[2:] if ln.startswith("$ ") and not more else ln
            cmds.append(cmd)
            more = cmd.endswith("\\")
    return "\n".join(cmds) + "\n"


def run_sh(block: Block, code: str, cwd: Path) -> None:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    try:
        proc = subprocess.run(
            ["bash", "-c", "set -euo pipefail\n" + code],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=SH_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{block.where}: still running after {SH_TIMEOUT:g} s:\n{code}")
    if proc.returncode != 0:
        pytest.fail(
            f"{block.where}: bash exited with {proc.returncode}\n--- block\n{code}"
            f"--- stdout\n{proc.stdout}--- stderr\n{proc.stderr}"
        )


def run_python(block: Block, namespace: dict[str, object]) -> None:
    # blank lines in front, so that tracebacks give the line numbers of the page
    source = "\n" * (block.line - 1) + block.code
    exec(compile(source, f"docs/{block.page}", "exec"), namespace)


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(DOCS).as_posix() for p in PAGES])
def test_page_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert (BIN / "shoal").exists(), f"no shoal command next to {sys.executable}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    namespace: dict[str, object] = {"__name__": "__main__"}
    for block in blocks(page):
        assert block.lang not in REFUSED, (
            f"{block.where}: spell the fence ```sh or ```python so that the example is tested"
        )
        if block.lang not in RUN or block.skip:
            continue
        if block.lang == "python":
            run_python(block, namespace)
        else:
            code = console_commands(block.code) if block.lang == "console" else block.code
            run_sh(block, code, tmp_path)


def anchors(path: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, blanks to '-'."""
    out = set()
    for ln in path.read_text(encoding="utf-8").splitlines():
        if ln.startswith("#"):
            text = ln.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return out


def test_links_between_pages_resolve() -> None:
    """Relative links (and their #anchors) lead somewhere; index.md reaches every page."""
    linked: set[Path] = set()
    for page in [*PAGES, DOCS.parent / "README.md"]:
        text = page.read_text(encoding="utf-8")
        for m in LINK.finditer(text):
            target, anchor = m["target"], m["anchor"]
            if "://" in target or (page.name == "README.md" and not target.startswith("docs/")):
                continue  # the README's other links are not the guide's business
            resolved = (page.parent / target).resolve() if target else page
            assert resolved.exists(), f"{page.name}: link to {target} leads nowhere"
            if anchor and resolved.suffix == ".md":
                assert anchor in anchors(resolved), f"{page.name}: no #{anchor} in {target}"
            linked.add(resolved)
    for page in PAGES:
        assert page == DOCS / "index.md" or page in linked, f"no page links to {page.name}"


def _commands() -> dict[str, argparse.ArgumentParser]:
    top = _parser()
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    return {"": top, **sub.choices}


def test_cli_reference_names_every_command_and_flag() -> None:
    """docs/cli.md keeps up with ``shoal ... --help``: a section per command naming its flags."""
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    sections = {
        m["name"]: m["body"]
        for m in re.finditer(
            r"^## `shoal (?P<name>[a-z]+)[^\n]*\n(?P<body>.*?)(?=^## |\Z)", text, re.M | re.S
        )
    }
    for name, parser in _commands().items():
        body = text if name == "" else sections.get(name)
        assert body is not None, f"docs/cli.md has no section '## `shoal {name} ...`'"
        for action in parser._actions:
            for flag in action.option_strings:
                assert f"`{flag}" in body, (
                    f"docs/cli.md: the {name or 'shoal'} section lacks {flag}"
                )


def test_the_collector_reads_fences_markers_and_transcripts(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "Text.\n\n```python\nx = 1\n```\n\n- In a list:\n\n  ```sh skip-test\n  exit 1\n  ```\n"
        "\n````console\n$ echo a \\\n  b\na b\n$ true\n````\n\n```text\nout\n```\n"
    )
    found = blocks(page, "page.md")
    assert [(b.lang, b.skip, b.line) for b in found] == [
        ("python", False, 4),
        ("sh", True, 10),
        ("console", False, 14),
        ("text", False, 21),
    ]
    assert found[1].code == "exit 1\n"
    assert console_commands(found[2].code) == "echo a \\\n  b\ntrue\n"
