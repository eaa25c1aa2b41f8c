"""The live status page at ``/``: one self-contained HTML file (``status.html``).

The page loads nothing from anywhere but the server: every second it reads ``/metrics`` and
``/v2/health/ready`` and draws, from the difference between two scrapes, requests and learned
events per second, HTTP latency and learn-to-visible delay (p50 and p99, interpolated in the
histograms' buckets), the progressive loss over time and the live model's version. Being drawn
from ``/metrics`` alone, it shows what Prometheus would, for the whole server.
"""

from __future__ import annotations

from importlib.resources import files

STATUS_PAGE = files("shoal.serve.http").joinpath("status.html").read_text(encoding="utf-8")
