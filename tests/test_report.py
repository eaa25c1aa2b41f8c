"""``shoal eval --report``: the charts' numbers, and the page in a real headless browser."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from shoal.cli import main
from shoal.data.synthetic import generate_clicks
from shoal.model import metrics, modelfile
from shoal.model.model import Model
from shoal.report import ReportInput, calibration, render, roc_points
from tests.browser import render as render_page


def test_the_roc_curve_has_the_auc_of_the_metrics() -> None:
    rng = np.random.default_rng(3)
    labels = (rng.random(2000) < 0.3).astype(float)
    scores = np.round(np.clip(labels * 0.2 + rng.random(2000) * 0.8, 0, 1), 2)  # many ties
    fpr, tpr = roc_points(scores, labels)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    assert area == pytest.approx(metrics.auc(scores, labels), abs=1e-12)


def test_calibration_groups_hold_every_row_in_order_of_prediction() -> None:
    scores = np.linspace(0, 1, 1001)
    labels = (scores > 0.5).astype(float)
    groups = calibration(scores, labels)
    assert sum(g[2] for g in groups) == 1001 and len(groups) == 10
    assert [g[0] for g in groups] == sorted(g[0] for g in groups)
    assert groups[0][1] == 0.0 and groups[-1][1] == 1.0


def test_a_model_file_without_a_curve_says_so_instead_of_an_empty_chart() -> None:
    page = render(
        ReportInput(title="t", loss="logistic", metrics={"auc": 0.5}, scores=np.array([0.2, 0.7]),
                    labels=np.array([0.0, 1.0]), top_weights=[(3, 0.5)], curve=None)
    )  # fmt: skip
    assert "holds no loss curve: train with shoal train --loss-curve" in page
    assert "<script src" not in page and "http" not in page.split("<script>")[1]


def test_the_report_renders_in_a_headless_browser(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "clicks.vw"
    generate_clicks(data, 40_000)
    model, report = tmp_path / "m.shoal", tmp_path / "report.html"
    assert main(["train", str(data), "-o", str(model), "--passes", "2", "--loss-curve"]) == 0
    curve = modelfile.load(model).extra["loss_curve"]
    assert '"pass": [1' in curve and "2]" in curve  # both passes' losses are stored
    assert main(["eval", str(model), str(data), "--report", str(report)]) == 0
    capsys.readouterr()
    page = report.read_text()
    assert "<script src" not in page and "<link" not in page  # self-contained: no fetch at all

    shot = tmp_path / "report.png"
    page_ = render_page(report.resolve().as_uri(), shot)
    status = re.search(r'<html[^>]*data-status="([^"]*)"', page_.dom)
    assert status is not None, "the page's check never ran (a script error?)"
    assert status[1] == "ok: 5 charts", status[1]  # no chart without marks, no script error
    assert page_.console == "", page_.console
    assert shot.stat().st_size > 10_000
    with capsys.disabled():
        print(f"\nreport screenshot: {shot}")


@pytest.mark.parametrize("kind", ["linear", "fm", "ffm"])
def test_the_weights_chart_shows_the_largest_linear_weights(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """By hashed slot: an FM's factors share its weight array but are no feature's weight."""
    data = tmp_path / "clicks.vw"
    generate_clicks(data, 3000)
    model, report = tmp_path / "m.shoal", tmp_path / "report.html"
    fields = ["--fields", "c,n"] if kind == "ffm" else []  # the click data's namespaces
    argv = ["train", str(data), "-o", str(model), "--model", kind, "--bits", "14", *fields]
    assert main(argv) == 0
    assert main(["eval", str(model), str(data), "--report", str(report)]) == 0
    capsys.readouterr()
    titles = re.findall(r"<title>index (\d+): ([-+.\d]+)<", report.read_text())
    shown = [(int(i), float(w)) for i, w in titles]
    weights = Model.load(model).linear_weights
    assert len(shown) == 20
    assert all(w == pytest.approx(float(weights[i]), abs=1e-5) for i, w in shown)
    assert [abs(w) for _, w in shown] == pytest.approx(
        np.sort(np.abs(weights))[::-1][:20], abs=1e-5
    )
    assert f"<th>kind</th><td>{kind}" in report.read_text()
