"""``shoal eval --report``: charts of a model on labeled data, in one self-contained HTML file.

The charts are SVG drawn here (no script or style from the internet, nothing to install): the
ROC curve, a calibration plot (predicted probability against the observed click rate, per
tenth of the predictions), the distribution of predictions by label, the progressive loss
over the examples of training (when the model file stores it: ``shoal train`` does) and the
largest weights. A few lines of inline script check on load that every chart has marks and
record the result on the page (``data-status``), which the browser test reads.

>>> fpr, tpr = roc_points(np.array([0.9, 0.8, 0.3, 0.1]), np.array([1, 0, 1, 0]))
>>> [float(x) for x in fpr], [float(y) for y in tpr]
([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0])
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shoal.model.modelfile import write_atomic

if TYPE_CHECKING:
    from shoal.data.batch import Batch
    from shoal.model.model import Model

W, H = 460, 300  # a chart's size in pixels
LEFT, RIGHT, TOP, BOTTOM = 64, 14, 30, 42
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
MAX_POINTS = 400  # per drawn line: enough for the eye, small for the file


@dataclass(frozen=True, kw_only=True)
class ReportInput:
    """What a report shows: scores and labels of the evaluation, the model's facts."""

    title: str
    loss: str
    metrics: dict[str, float]
    scores: np.ndarray  # probability (logistic), margin (hinge, squared), top probability
    labels: np.ndarray  # 0/1 for binary losses, else the label as given
    top_weights: Sequence[tuple[int, float]] = ()
    curve: dict[str, list[float]] | None = None  # "examples", "loss", "pass"
    facts: dict[str, str] = field(default_factory=dict)


def roc_points(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates at every distinct threshold, from (0, 0) to (1, 1)."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order] > 0
    cut = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last row of each distinct score
    tp = np.cumsum(y)[cut]
    fp = (cut + 1) - tp
    pos, neg = max(1, int(y.sum())), max(1, int((~y).sum()))
    return np.r_[0.0, fp / neg], np.r_[0.0, tp / pos]


def calibration(scores: np.ndarray, labels: np.ndarray, bins: int = 10) -> list[tuple]:
    """Per group of equally many predictions (by rank): mean prediction, click rate, rows."""
    order = np.argsort(scores, kind="stable")
    out = []
    for part in np.array_split(order, min(bins, len(order))):
        if len(part):
            out.append((float(scores[part].mean()), float((labels[part] > 0).mean()), len(part)))
    return out


def _thin(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(xs) <= MAX_POINTS:
        return xs, ys
    keep = np.unique(np.linspace(0, len(xs) - 1, MAX_POINTS).round().astype(int))
    return xs[keep], ys[keep]


def _fmt(v: float) -> str:
    if v == 0 or not math.isfinite(v):
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}"


class _Plot:
    """One SVG chart: axes from the ranges, then marks in data coordinates."""

    def __init__(self, title: str, xr: tuple[float, float], yr: tuple[float, float],
                 xlabel: str, ylabel: str) -> None:  # fmt: skip
        self.title, self.xlabel, self.ylabel = title, xlabel, ylabel
        self.x0, self.x1 = xr if xr[1] > xr[0] else (xr[0], xr[0] + 1)
        self.y0, self.y1 = yr if yr[1] > yr[0] else (yr[0], yr[0] + 1)
        self.parts: list[str] = []
        self.legend: list[tuple[str, str]] = []

    def sx(self, x: float) -> float:
        return LEFT + (x - self.x0) / (self.x1 - self.x0) * (W - LEFT - RIGHT)

    def sy(self, y: float) -> float:
        return H - BOTTOM - (y - self.y0) / (self.y1 - self.y0) * (H - TOP - BOTTOM)

    def line(self, xs: Any, ys: Any, color: str, name: str = "", dashed: bool = False) -> None:
        xs, ys = _thin(np.asarray(xs, float), np.asarray(ys, float))
        pts = " ".join(f"{self.sx(x):.1f},{self.sy(y):.1f}" for x, y in zip(xs, ys, strict=True))
        dash = ' stroke-dasharray="4 4"' if dashed else ""
        mark = "" if dashed else ' class="mark"'
        self.parts.append(f'<polyline{mark} points="{pts}" fill="none" stroke="{color}" '
                          f'stroke-width="2"{dash}/>')  # fmt: skip
        if name:
            self.legend.append((name, color))

    def dots(self, xs: Any, ys: Any, sizes: Any, color: str, tips: Sequence[str]) -> None:
        for x, y, r, tip in zip(xs, ys, sizes, tips, strict=True):
            self.parts.append(
                f'<circle class="mark" cx="{self.sx(x):.1f}" cy="{self.sy(y):.1f}" r="{r:.1f}" '
                f'fill="{color}" fill-opacity="0.75"><title>{html.escape(tip)}</title></circle>'
            )

    def bars(self, lefts: Any, rights: Any, heights: Any, color: str, name: str) -> None:
        for a, b, h in zip(lefts, rights, heights, strict=True):
            if h <= 0:
                continue
            x, y = self.sx(a), self.sy(h)
            self.parts.append(
                f'<rect class="mark" x="{x:.1f}" y="{y:.1f}" '
                f'width="{max(0.5, self.sx(b) - x):.1f}" '
                f'height="{self.sy(self.y0) - y:.1f}" fill="{color}" fill-opacity="0.55">'
                f"<title>{_fmt(a)} to {_fmt(b)}: {h:.4g}</title></rect>"
            )
        self.legend.append((name, color))

    def svg(self) -> str:
        axes = [f'<rect x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" '
                f'height="{H - TOP - BOTTOM}" fill="none" stroke="#999"/>']  # fmt: skip
        for i in range(6):
            x = self.x0 + (self.x1 - self.x0) * i / 5
            y = self.y0 + (self.y1 - self.y0) * i / 5
            axes.append(f'<text x="{self.sx(x):.1f}" y="{H - BOTTOM + 16}" '
                        f'text-anchor="middle">{_fmt(x)}</text>')  # fmt: skip
            axes.append(f'<text x="{LEFT - 6}" y="{self.sy(y) + 4:.1f}" '
                        f'text-anchor="end">{_fmt(y)}</text>')  # fmt: skip
        axes.append(f'<text x="{(LEFT + W - RIGHT) / 2}" y="{H - 6}" text-anchor="middle">'
                    f"{html.escape(self.xlabel)}</text>")  # fmt: skip
        axes.append(f'<text transform="translate(14 {(TOP + H - BOTTOM) / 2}) rotate(-90)" '
                    f'text-anchor="middle">{html.escape(self.ylabel)}</text>')  # fmt: skip
        axes.append(f'<text x="{LEFT}" y="18" class="title">{html.escape(self.title)}</text>')
        for i, (name, color) in enumerate(self.legend):
            y = TOP + 14 + 16 * i
            axes.append(f'<rect x="{W - RIGHT - 130}" y="{y - 9}" width="10" height="10" '
                        f'fill="{color}"/><text x="{W - RIGHT - 115}" y="{y}">'
                        f"{html.escape(name)}</text>")  # fmt: skip
        return (f'<figure class="chart"><svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" '
                f'role="img" aria-label="{html.escape(self.title)}">{"".join(axes)}'
                f'{"".join(self.parts)}</svg></figure>')  # fmt: skip


def _note(title: str, text: str) -> str:
    return (f'<figure class="chart note"><h3>{html.escape(title)}</h3>'
            f"<p>{html.escape(text)}</p></figure>")  # fmt: skip


def _roc(r: ReportInput) -> str:
    if r.loss not in ("logistic", "hinge"):
        return _note("ROC curve", f"for binary models only (this one has {r.loss} loss)")
    fpr, tpr = roc_points(r.scores, r.labels)
    p = _Plot(f"ROC curve (AUC {r.metrics.get('auc', float('nan')):.4f})", (0, 1), (0, 1),
              "false positive rate", "true positive rate")  # fmt: skip
    p.line([0, 1], [0, 1], "#bbb", dashed=True)
    p.line(fpr, tpr, COLORS[0], "model")
    return p.svg()


def _calibration(r: ReportInput) -> str:
    if r.loss != "logistic":
        return _note("Calibration", f"for probabilities only (this model has {r.loss} loss)")
    groups = calibration(r.scores, r.labels)
    top = max(max(g[0] for g in groups), max(g[1] for g in groups), 1e-6)
    top = min(1.0, top * 1.1)
    p = _Plot("Calibration: predicted vs observed, per tenth", (0, top), (0, top),
              "mean prediction", "observed positive rate")  # fmt: skip
    p.line([0, top], [0, top], "#bbb", dashed=True)
    p.line([g[0] for g in groups], [g[1] for g in groups], COLORS[0], "model")
    tips = [f"mean prediction {g[0]:.4f}, observed {g[1]:.4f}, {g[2]:,} rows" for g in groups]
    p.dots([g[0] for g in groups], [g[1] for g in groups], [4] * len(groups), COLORS[0], tips)
    return p.svg()


def _distribution(r: ReportInput) -> str:
    lo, hi = (0.0, 1.0) if r.loss == "logistic" else (float(r.scores.min()), float(r.scores.max()))
    edges = np.linspace(lo, hi if hi > lo else lo + 1, 41)
    groups = [("all", np.ones(len(r.scores), bool))]
    if r.loss in ("logistic", "hinge"):
        groups = [("label 0 / -1", r.labels <= 0), ("label 1", r.labels > 0)]
    counts = [np.histogram(r.scores[m], edges)[0] / max(1, len(r.scores)) for _, m in groups]
    p = _Plot("Distribution of predictions", (lo, hi), (0, max(c.max() for c in counts) * 1.1),
              "prediction", "share of rows")  # fmt: skip
    for (name, _), c, color in zip(groups, counts, COLORS, strict=False):
        p.bars(edges[:-1], edges[1:], c, color, name)
    return p.svg()


def _curve(r: ReportInput) -> str:
    c = r.curve
    if not c or len(c.get("examples", [])) < 2:
        return _note("Progressive loss in training", "the model file holds no loss curve: "
                     "train with shoal train --loss-curve to see it here")  # fmt: skip
    xs, ys, passes = np.array(c["examples"]), np.array(c["loss"]), np.array(c["pass"])
    p = _Plot("Progressive loss during training", (0, float(xs.max())),
              (float(ys.min()) * 0.95, float(ys.max()) * 1.05), "examples learned",
              "progressive loss")  # fmt: skip
    for k, n in enumerate(sorted(set(passes.tolist()))):
        m = passes == n
        color = COLORS[k % len(COLORS)]
        p.line(xs[m], ys[m], color, f"pass {int(n)}")
        tips = [
            f"pass {int(n)}: {x:,} examples, loss {y:.5f}"
            for x, y in zip(xs[m], ys[m], strict=True)
        ]
        if m.sum() <= 50:  # few points (a small file is a batch or two): each one shows
            p.dots(xs[m], ys[m], [3] * int(m.sum()), color, tips)
    return p.svg()


def _weights(r: ReportInput) -> str:
    top = list(r.top_weights)[:20]
    if not top:
        return _note("Largest weights", "every weight is zero")
    span = max(abs(w) for _, w in top)
    p = _Plot("Largest weights (hashed index)", (-span, span), (0, len(top)), "weight", "")
    for i, (index, w) in enumerate(top):
        y = len(top) - i - 0.5
        x0, x1 = sorted((0.0, w))
        p.parts.append(
            f'<rect class="mark" x="{p.sx(x0):.1f}" y="{p.sy(y + 0.4):.1f}" '
            f'width="{max(0.5, p.sx(x1) - p.sx(x0)):.1f}" height="{p.sy(0) - p.sy(0.8):.1f}" '
            f'fill="{COLORS[0] if w > 0 else COLORS[1]}"><title>index {index}: {w:+.5f}'
            f'</title></rect><text x="{p.sx(0) + (4 if w < 0 else -4):.1f}" '
            f'y="{p.sy(y) + 4:.1f}" text-anchor="{"start" if w < 0 else "end"}" '
            f'class="small">{index}</text>'
        )
    return p.svg()


STYLE = """body{font:14px system-ui,sans-serif;margin:24px;color:#222}
.charts{display:flex;flex-wrap:wrap;gap:16px}figure{margin:0;border:1px solid #ddd;padding:8px}
svg text{font-size:11px;fill:#333}svg text.title{font-size:13px;font-weight:600}
svg text.small{font-size:9px}.note{width:440px}table{border-collapse:collapse;margin:12px 0}
td,th{padding:2px 12px 2px 0;text-align:left}#status{color:#888;font-size:12px}"""

# Runs in the browser: counts each chart's marks and records the result on the page.
CHECK = """(function(){var errors=[];window.addEventListener('error',function(e){
errors.push(String(e.message));
document.documentElement.dataset.status='error: '+errors.join('; ');});
var figs=document.querySelectorAll('figure.chart:not(.note)'),empty=[];
figs.forEach(function(f){if(f.querySelectorAll('.mark').length===0)
empty.push(f.querySelector('svg').getAttribute('aria-label'));});
var s=empty.length?'empty: '+empty.join(', '):'ok: '+figs.length+' charts';
if(!errors.length){document.documentElement.dataset.status=s;}
document.getElementById('status').textContent=s;})();"""


def render(r: ReportInput) -> str:
    """The whole page."""
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{v:,}</td></tr>"
        if k == "examples"
        else f"<tr><th>{html.escape(k)}</th><td>{v:.6f}</td></tr>"
        for k, v in r.metrics.items()
    )
    facts = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in r.facts.items()
    )
    charts = [_roc(r), _calibration(r), _distribution(r), _curve(r), _weights(r)]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(r.title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{html.escape(r.title)}</h1><table>{rows}{facts}</table>"
        f'<div class="charts">{"".join(charts)}</div><p id="status"></p>'
        f"<script>{CHECK}</script></body></html>\n"
    )


def curve_points(points: Sequence[tuple[int, int, float]], limit: int = 200) -> str:
    """A loss curve (examples, pass, loss) as the JSON stored in a model file, thinned to
    ``limit`` points and without the non-finite losses of batches with no label."""
    pts = [p for p in points if math.isfinite(p[2])]
    if len(pts) > limit:
        keep = sorted(set(np.linspace(0, len(pts) - 1, limit).round().astype(int).tolist()))
        pts = [pts[i] for i in keep]
    return json.dumps(
        {
            "examples": [int(p[0]) for p in pts],
            "pass": [int(p[1]) for p in pts],
            "loss": [round(float(p[2]), 6) for p in pts],
        }
    )


# -- from an evaluation ------------------------------------------------------------------


def keeping_scores(
    model: Model, batches: Iterable[Batch], kept: list[tuple[np.ndarray, np.ndarray]]
) -> Iterator[Batch]:
    """The batches, as they pass: each labeled row's score and label go into ``kept``."""
    for batch in batches:
        yield batch
        keep = ~np.isnan(batch.labels)
        if model.config.loss == "logistic":
            scores = model.predict_proba(batch)
        elif model.config.loss == "multiclass":
            scores = model.predict_proba(batch).max(axis=1)
        else:
            scores = model.decision_function(batch)
        kept.append((scores[keep], batch.labels[keep]))


def write_report(
    path: str,
    model: Model,
    result: dict[str, float],
    kept: list[tuple[np.ndarray, np.ndarray]],
    *,
    model_path: str,
    data: Sequence[str],
    extra: dict[str, str],
) -> None:
    """``shoal eval --report``: the page for ``model`` evaluated on ``data``, written
    atomically; ``kept`` holds the scores and labels that ``keeping_scores`` collected."""
    from shoal.model.largest import largest_weights

    cfg = model.config
    try:
        curve = json.loads(extra["loss_curve"]) if "loss_curve" in extra else None
    except ValueError:
        curve = None  # a damaged curve is no reason to fail the evaluation
    page = render(
        ReportInput(
            title=f"shoal eval {Path(model_path).name}",
            loss=cfg.loss,
            metrics={**result, "examples": int(result["examples"])},
            scores=np.concatenate([s for s, _ in kept]),
            labels=np.concatenate([y for _, y in kept]),
            top_weights=[(t.index, t.value) for t in largest_weights(model, 20)],
            curve=curve,
            facts={
                "model": str(model_path),
                "data": " ".join(data),
                "kind": cfg.model + (f", rank {cfg.rank}" if cfg.factorized else ""),
                "loss": cfg.loss,
                "optimizer": cfg.optimizer,
                "examples learned": f"{model.examples_learned:,}",
            },
        )
    )
    write_atomic(Path(path), page.encode())
