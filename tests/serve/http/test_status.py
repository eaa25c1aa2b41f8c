"""The live status page at ``/``, in a real headless browser, on a server that is learning."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.browser import render
from tests.serve.helpers import event

REPO = Path(__file__).resolve().parents[3]


def test_status_page_draws_every_chart_from_a_learning_server(start, tmp_path: Path) -> None:
    running = start()
    for i in range(40):
        assert running.post("/learn", {"records": [event(i)]}).status_code == 200
        assert running.post("/predict", {"records": [{"u": {"id3": 1}}]}).status_code == 200

    page = running.client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "http://" not in page.text and "https://" not in page.text  # self-contained

    shot = tmp_path / "status.png"
    result = render(f"{running.server.url}/", shot)
    print(f"screenshot of the status page: {shot}")
    assert "Uncaught" not in result.console, result.console
    assert re.search(r'data-scrapes="([2-9]|\d\d+)"', result.dom), "the page never read /metrics"
    error = re.search(r'<div id="error"[^>]*>([^<]*)<', result.dom)
    assert error is not None and error.group(1) == "", error
    points = dict(re.findall(r'id="chart-(\w+)" data-points="(\d+)"', result.dom))
    # every chart that has data to show draws it: requests and latency come from this page's
    # own scrapes, the loss and the model's table from the events learned above
    assert int(points["requests"]) > 0 and int(points["latency"]) > 0, points
    assert int(points["loss"]) > 0, points
    assert re.search(r"<td>events learned</td><td>40</td>", result.dom), result.dom[-3000:]
    assert "<td>kind</td><td>linear</td>" in result.dom  # an FM's says "fm, rank 8"


def test_grafana_dashboard_queries_only_series_the_server_exports(start_both) -> None:
    dashboard = json.loads((REPO / "docs" / "grafana-dashboard.json").read_text())
    queried = {
        re.sub(r"_bucket$", "", name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bshoal_[a-z_]+", target["expr"])
    }
    both = start_both()
    with both.connect() as tcp:
        assert len(tcp.ask("| a", event(1))) == 2
    assert both.http.post("/v1/models/ctr/predict", json={"records": [{"a": 1}]}).is_success
    exported = {
        re.sub(r"_(bucket|count|sum)$", "", line.split("{")[0].split(" ")[0])
        for line in both.http.get("/metrics").text.splitlines()
        if line.startswith("shoal_")
    }
    assert queried - exported == set(), "the dashboard queries series nobody exports"
    assert len(queried) >= 10
