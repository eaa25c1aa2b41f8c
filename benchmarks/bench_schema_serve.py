"""Serving a schema model: rows/s of JSON objects and OIP column tensors against VW lines.

Two models learn the same Criteo-like rows (the label, 13 counts, 26 hashed categories): a
model with the column schema ``label,I1..I13:num:log1p,C1..C26:cat`` from the TSV file, and a
linear model without one from the same rows as VW lines. Each is served in this process by
``build_app`` over a ``ModelService``, and asked through the ASGI app itself -- routing, body
reading, decoding, records to rows, parsing, scoring, the features kept for feedback, the
response -- with no sockets and no HTTP parser, the same for every form:

- ``vw lines``: ``POST /v1/models/NAME/predict`` of ``{"records": [VW line, ...]}`` (the linear
  model: what the issue compares with);
- ``json objects``: the same path, ``{"records": [{"I1": 3, "C1": "68fd1e64", ...}, ...]}``
  (a missing count is null), to the schema model;
- ``oip tensors``: ``POST /v2/models/NAME/infer`` with one tensor per column (counts FP32 and
  INT64, categories BYTES) in the binary tensor data extension, as tritonclient sends them;
- ``oip json``: the same tensors with their elements as JSON ``data`` (counts FP32, NaN for a
  missing one).

Requests of ``--batch`` rows (100) are sent one after another, the forms taking turns a round
at a time (``--rounds``), so that a shared machine's load hits them alike: each form's cost
against VW lines is the median of its rounds' ratios (``measure``). The load average is
printed with the figures. ``--profile FORM`` runs cProfile
over one form's requests instead.

    python benchmarks/bench_schema_serve.py [--rows 20000] [--rounds 7] [--seconds 1.5]
    python benchmarks/bench_schema_serve.py --profile "json objects"
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import struct
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from shoal.cli import main as shoal_main
from shoal.serve import ModelService, ServiceConfig
from shoal.serve.config import HttpConfig
from shoal.serve.http.app import build_app
from shoal.serve.http.tensors import HEADER

SCHEMA = "label,I1..I13:num:log1p,C1..C26:cat"
INTS = [f"I{k}" for k in range(1, 14)]
CATS = [f"C{k}" for k in range(1, 27)]
FORMS = ("vw lines", "json objects", "oip tensors", "oip json")


def criteo(rows: int, seed: int) -> list[list[str]]:
    """Criteo-like rows as fields (BENCHMARKS.md's click guide's generator): the label, 13
    counts (a tenth missing: empty), 26 categories of 8 hex digits."""
    hidden = np.random.default_rng(0)
    w_cat = hidden.normal(0, 0.6, (26, 1000))
    r = np.random.default_rng(seed)
    counts = r.geometric(0.05, (rows, 13)) - 1
    cats = np.minimum(r.zipf(1.4, (rows, 26)) - 1, 999)
    z = -1.4 + 0.5 * np.log1p(counts[:, 0]) - 0.5 * np.log1p(counts[:, 1])
    z += w_cat[np.arange(26), cats].sum(axis=1) * 0.4
    label = (r.random(rows) < 1 / (1 + np.exp(-z))).astype(int)
    missing = r.random((rows, 13)) < 0.1
    out = []
    for i in range(rows):
        ints = ["" if missing[i, k] else str(counts[i, k]) for k in range(13)]
        hexes = [f"{(k * 7919 + int(c) * 104729) & 0xFFFFFFFF:08x}" for k, c in enumerate(cats[i])]
        out.append([str(label[i]), *ints, *hexes])
    return out


def vw_line(fields: list[str], labeled: bool) -> str:
    """A row as a VW line: counts as ``I1:3`` (missing: left out), categories as ``C1=...``."""
    ints = [f"{n}:{v}" for n, v in zip(INTS, fields[1:14], strict=True) if v]
    cats = [f"{n}={v}" for n, v in zip(CATS, fields[14:], strict=True)]
    return (fields[0] + " " if labeled else "") + "| " + " ".join(ints + cats)


def as_object(fields: list[str]) -> dict[str, Any]:
    ints = {n: int(v) if v else None for n, v in zip(INTS, fields[1:14], strict=True)}
    return {**ints, **dict(zip(CATS, fields[14:], strict=True))}


def oip_binary(rows: list[list[str]]) -> tuple[bytes, str]:
    """One tensor per column as binary tensor data: I1..I6 FP32 (NaN: missing), I7..I13 INT64
    (0 where missing: INT64 holds no NaN), C1..C26 BYTES; the body and its header's length."""
    inputs, blobs = [], []
    for j, name in enumerate(INTS, start=1):
        if j <= 6:
            values = [float(f[j]) if f[j] else np.nan for f in rows]
            blob, datatype = np.array(values, dtype="<f4").tobytes(), "FP32"
        else:
            blob, datatype = (
                np.array([int(f[j] or 0) for f in rows], dtype="<i8").tobytes(),
                "INT64",
            )
        inputs.append(_binary(name, datatype, len(rows), blob))
        blobs.append(blob)
    for j, name in enumerate(CATS, start=14):
        blob = b"".join(struct.pack("<I", len(f[j])) + f[j].encode() for f in rows)
        inputs.append(_binary(name, "BYTES", len(rows), blob))
        blobs.append(blob)
    head = json.dumps({"inputs": inputs, "outputs": [{"name": "probability"}]}).encode()
    return head + b"".join(blobs), str(len(head))


def _binary(name: str, datatype: str, n: int, blob: bytes) -> dict[str, Any]:
    parameters = {"binary_data_size": len(blob)}
    return {"name": name, "shape": [n], "datatype": datatype, "parameters": parameters}


def oip_json(rows: list[list[str]]) -> bytes:
    """FP32 counts (NaN: missing) and BYTES categories as JSON ``data``."""
    inputs = [
        {"name": n, "shape": [len(rows)], "datatype": "FP32",
         "data": [float(f[j]) if f[j] else float("nan") for f in rows]}
        for j, n in enumerate(INTS, start=1)
    ] + [
        {"name": n, "shape": [len(rows)], "datatype": "BYTES", "data": [f[j] for f in rows]}
        for j, n in enumerate(CATS, start=14)
    ]  # fmt: skip
    return json.dumps({"inputs": inputs, "outputs": [{"name": "probability"}]}).encode()


class Asgi:
    """Requests to an ASGI app in this process, one at a time."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        return self.loop.run_until_complete(self._post(path, body, headers))

    async def _post(self, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        raw.append((b"content-length", str(len(body)).encode()))
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
            "root_path": "", "headers": raw, "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 8080),
        }  # fmt: skip
        sent = False
        status, chunks = 0, []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.sleep(3600)
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        out = b"".join(chunks)
        if status != 200:
            raise SystemExit(f"{path}: {status} {out[:300]!r}")
        return out


def train_models(work: Path, rows: list[list[str]]) -> tuple[Path, Path]:
    """The schema model (from TSV) and the linear model (from VW lines) of the same rows."""
    tsv, vw = work / "train.tsv", work / "train.vw"
    tsv.write_text("".join("\t".join(f) + "\n" for f in rows))
    vw.write_text("".join(vw_line(f, True) + "\n" for f in rows))
    schema_model, vw_model = work / "schema.shoal", work / "vw.shoal"
    for argv in (
        ["train", str(tsv), "--schema", SCHEMA, "--bits", "20", "-o", str(schema_model)],
        ["train", str(vw), "--bits", "20", "-o", str(vw_model)],
    ):
        if shoal_main(argv) != 0:
            raise SystemExit(f"shoal {' '.join(argv)} failed")
    return schema_model, vw_model


def requests(rows: list[list[str]], batch: int) -> dict[str, list[Callable[[Asgi], bytes]]]:
    """Each form's requests of ``batch`` rows, as calls."""
    out: dict[str, list[Callable[[Asgi], bytes]]] = {f: [] for f in FORMS}
    json_type = {"Content-Type": "application/json"}
    for i in range(0, len(rows) - batch + 1, batch):
        part = rows[i : i + batch]
        vw = json.dumps({"records": [vw_line(f, False) for f in part]}).encode()
        objects = json.dumps({"records": [as_object(f) for f in part]}).encode()
        binary, length = oip_binary(part)
        in_json = oip_json(part)
        out["vw lines"].append(lambda a, b=vw: a.post("/v1/models/vw/predict", b, json_type))
        out["json objects"].append(
            lambda a, b=objects: a.post("/v1/models/schema/predict", b, json_type)
        )
        head = {"Content-Type": "application/octet-stream", HEADER: length}
        out["oip tensors"].append(
            lambda a, b=binary, h=head: a.post("/v2/models/schema/infer", b, h)
        )
        out["oip json"].append(lambda a, b=in_json: a.post("/v2/models/schema/infer", b, json_type))
    return out


def timed(calls: list[Callable[[Asgi], bytes]], app: Asgi, seconds: float) -> tuple[int, float]:
    """Requests sent (cycling through ``calls``) in about ``seconds``, and the time taken."""
    n, start = 0, time.perf_counter()
    while True:
        calls[n % len(calls)](app)
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n, elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=20_000, help="training rows")
    p.add_argument("--batch", type=int, default=100, help="rows per request")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--seconds", type=float, default=1.5, help="per form and round")
    p.add_argument("--profile", choices=FORMS, help="cProfile one form instead")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        schema_model, vw_model = train_models(work, criteo(args.rows, 1))
        calls = requests(criteo(50 * args.batch, 2), args.batch)
        configs = [
            ServiceConfig(model_path=str(m), state_dir=str(work / f"state-{name}"), name=name)
            for name, m in (("schema", schema_model), ("vw", vw_model))
        ]
        with ModelService(configs[0]) as schema, ModelService(configs[1]) as vw:
            app = Asgi(build_app({"schema": schema, "vw": vw}, HttpConfig()))
            check(calls, app)
            for form in FORMS:  # warm-up: compiled kernels loaded, caches filled
                timed(calls[form], app, 0.3)
            if args.profile:
                profile(calls[args.profile], app, args.seconds * args.rounds)
                return
            measure(calls, app, args)


def check(calls: dict[str, list[Callable[[Asgi], bytes]]], app: Asgi) -> None:
    """The schema model's forms predict alike (the binary tensors' missing counts are 0, so
    only the other three are compared), and differ from a constant."""
    objects = json.loads(calls["json objects"][0](app))["predictions"]
    tensors = json.loads(calls["oip json"][0](app))["outputs"][0]["data"]
    assert np.allclose(np.float32(objects), tensors), "objects and tensors disagree"
    assert len(set(objects)) > 10, "a constant model"


def profile(calls: list[Callable[[Asgi], bytes]], app: Asgi, seconds: float) -> None:
    """cProfile of one form's requests; cProfile sees one thread, so the work that a request
    of more than ``INLINE_RECORDS`` hands to a thread runs on the loop's thread here."""

    async def here(call: Callable[..., Any], /, *args: Any) -> Any:
        return call(*args)

    asyncio.to_thread = here  # type: ignore[assignment]
    prof = cProfile.Profile()
    prof.enable()
    n, elapsed = timed(calls, app, seconds)
    prof.disable()
    print(f"{n} requests in {elapsed:.2f} s (under the profiler)")
    stats = pstats.Stats(prof).sort_stats("tottime")
    stats.print_stats(30)
    if os.environ.get("CALLERS"):
        stats.print_callers(os.environ["CALLERS"])


def measure(calls: dict[str, list[Callable[[Asgi], bytes]]], app: Asgi, args: Any) -> None:
    """Each form's best rows/s, and its cost against VW lines: the median over the rounds of
    the ratio within a round (the forms of a round run seconds apart, so a shared machine's
    load, which moves by tens of percent within a minute, cancels out of each ratio)."""
    load = os.getloadavg()
    rates: dict[str, list[float]] = {f: [] for f in FORMS}
    for _ in range(args.rounds):
        for form in FORMS:
            n, elapsed = timed(calls[form], app, args.seconds)
            rates[form].append(n * args.batch / elapsed)
    load_after = os.getloadavg()
    print(f"load average (1 min) {load[0]:.2f} before, {load_after[0]:.2f} after; "
          f"{os.cpu_count()} CPUs; {args.rounds} rounds of {args.seconds:g} s")  # fmt: skip
    print(
        f"\n| request of {args.batch} rows | best rows/s | cost vs VW lines: median of rounds "
        "(lowest-highest) |\n|---|--:|--:|"
    )
    vw = np.array(rates["vw lines"])
    for form in FORMS:
        ratios = vw / np.array(rates[form])
        print(
            f"| {form} | {max(rates[form]):,.0f} | {np.median(ratios):.2f}x "
            f"({ratios.min():.2f}-{ratios.max():.2f}) |"
        )


if __name__ == "__main__":
    main()
