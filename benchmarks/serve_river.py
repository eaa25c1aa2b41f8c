"""The baseline a Python user would write: FastAPI, a River model, uvicorn with one worker.

    python benchmarks/serve_river.py PORT TRAIN_FILE ROWS

Before it listens, it trains ``river.linear_model.LogisticRegression()`` (River's defaults:
SGD, step 0.01) with ``learn_one`` on the first ROWS lines of TRAIN_FILE, the VW text file that
shoal and VW were trained on. Requests carry the same VW lines as shoal's JSON API
(``{"records": [...]}``); the server turns each into River's dict of features the way VW reads
it (``|c a=0`` -> ``{"c^a=0": 1.0}``, ``|n i0:0.5`` -> ``{"n^i0": 0.5}``) and loops over the
records: ``predict_proba_one`` for ``POST /predict``, ``learn_one`` for ``POST /learn``.

The handlers are ``async def``: they run one at a time on the event loop, so ``learn_one``
never races a prediction (River's models are not thread-safe), and no thread pool is involved.
"""

from __future__ import annotations

import sys
from itertools import islice

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel


class Records(BaseModel):
    records: list[str]


def features(line: str) -> dict[str, float]:
    """The features of a VW text line (label, weight and tag before the first '|' dropped)."""
    out: dict[str, float] = {}
    for part in line.split("|")[1:]:
        words = part.split()
        ns = "" if part[:1].isspace() or not words else words.pop(0)
        for word in words:
            name, colon, value = word.rpartition(":")
            if colon:
                out[f"{ns}^{name}"] = float(value)
            else:
                out[f"{ns}^{word}"] = 1.0
    return out


def label(line: str) -> bool:
    return float(line.split(None, 1)[0]) > 0


def build(train_file: str, rows: int) -> FastAPI:
    from river import linear_model  # here: the tests of features() need no River

    model = linear_model.LogisticRegression()
    with open(train_file, encoding="utf-8") as f:
        for line in islice(f, rows):
            model.learn_one(features(line), label(line))

    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, bool]:
        return {"ready": True}

    @app.post("/predict")
    async def predict(body: Records) -> dict[str, list[float]]:
        return {"predictions": [model.predict_proba_one(features(r))[True] for r in body.records]}

    @app.post("/learn")
    async def learn(body: Records) -> dict[str, int]:
        for r in body.records:
            model.learn_one(features(r), label(r))
        return {"learned": len(body.records)}

    return app


def main() -> None:
    port, train_file, rows = sys.argv[1:]
    app = build(train_file, int(rows))
    uvicorn.run(app, host="127.0.0.1", port=int(port), workers=1, log_level="warning",
                access_log=False)  # fmt: skip


if __name__ == "__main__":
    main()
