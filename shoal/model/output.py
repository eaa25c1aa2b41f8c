"""Predictions as text, one line per record: what ``shoal predict`` writes and what the TCP line
server replies, so that both always agree.

A value is written by ``repr``: the shortest text that reads back as the same number (a
probability, a class, a margin), so nothing is lost on the way. A tag follows after one blank,
as Vowpal Wabbit writes it in its predictions file and its daemon's replies.

>>> prediction_line(0.75, "ad1"), prediction_line(3)
('0.75 ad1', '3')
"""

from __future__ import annotations


def prediction_line(value: float, tag: str = "") -> str:
    """One prediction (a Python number, from ``ndarray.tolist()``) and its tag, if any."""
    text = repr(value)
    return f"{text} {tag}" if tag else text
