"""The service: a served model taught e1..en equals ``shoal train`` on its base data then e1..en,
through snapshots, restarts, rollbacks and swaps."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from shoal import ColumnSchema, FeatureSpec, LearnerConfig, Model, TrainOptions, train
from shoal.data.frames import batch_from_dicts
from shoal.errors import ConfigError
from shoal.serve import ModelService, ServiceConfig
from shoal.serve.errors import RequestError
from shoal.serve.state.eventlog import EventLog
from tests.serve.helpers import event, newest_snapshot, offline


def service(base: Path, state: Path, **kw: object) -> ModelService:
    s = ModelService(ServiceConfig(model_path=str(base), state_dir=str(state), **kw))  # type: ignore[arg-type]
    s.start()
    return s


def drained(s: ModelService) -> Model:
    s.wait_applied(s.info()["logged_seq"]).result(timeout=20)
    return s.learner.live.model


def test_served_model_equals_offline_training(base_model: Path, tmp_path: Path) -> None:
    s = service(base_model, tmp_path / "state", snapshot_every_events=7, learn_batch=5)
    records = [event(i) for i in range(40)]
    seqs = []
    for i in range(0, 40, 3):  # requests of 1 to 3 records; batches of 5; snapshots every 7
        seqs += s.learn(records[i : i + 3]).result()
    assert seqs == list(range(1, 41))
    assert drained(s).to_bytes() == offline(base_model, records, tmp_path).to_bytes()
    periodic = [v.applied_seq for v in s.versions() if v.reason == "periodic"]
    assert len(periodic) >= 4 and periodic == sorted(periodic)  # about one per 7 events
    s.close()
    # the close wrote a snapshot holding everything: nothing to replay
    again = service(base_model, tmp_path / "state")
    assert again.replayed == 0 and again.info()["applied_seq"] == 40
    again.close()


def test_restart_replays_the_log_after_the_last_snapshot(base_model: Path, tmp_path: Path) -> None:
    s = service(base_model, tmp_path / "state", snapshot_every_events=1000)
    records = [event(i) for i in range(25)]
    s.learn(records[:20]).result()
    s.close()
    # events logged but never applied, as after a crash between commit and learning
    log = EventLog(tmp_path / "state" / "events.sqlite", ttl=60, clock=time.time)
    log.open()
    assert log.append(records[20:]).result() == [21, 22, 23, 24, 25]
    log.close()
    again = service(base_model, tmp_path / "state")
    assert again.replayed == 5 and again.info()["applied_seq"] == 25
    assert drained(again).to_bytes() == offline(base_model, records, tmp_path).to_bytes()
    again.close()


def test_an_event_too_large_to_learn_is_left_out_and_the_model_stays_servable(
    base_model: Path, tmp_path: Path
) -> None:
    """1e30 is a valid float32, but its squared gradient is not: that event is logged (it was
    acknowledged) but not learned, now and on every replay; the rest of its request is."""
    s = service(base_model, tmp_path / "state", snapshot_every_events=1000)
    records = [event(0), "1 |u huge |v x:1e30", event(1), event(2)]
    assert s.learn(records).result() == [1, 2, 3, 4]
    model = drained(s)
    expected = offline(base_model, [records[0], *records[2:]], tmp_path).to_bytes()
    assert model.to_bytes() == expected
    assert s.learner.events_rejected == 1
    assert all(np.isfinite(t).all() for t in (model.weights, *model.state.values()))
    s.close()
    Model.load(newest_snapshot(tmp_path / "state"))  # loadable: nothing infinite in it
    shutil.rmtree(tmp_path / "state" / "snapshots")  # replay the whole log on the base model
    again = service(base_model, tmp_path / "state")
    assert again.replayed == 4 and drained(again).to_bytes() == expected
    again.close()


def test_rollback_restores_a_version_and_learning_goes_on_from_it(
    base_model: Path, tmp_path: Path
) -> None:
    s = service(base_model, tmp_path / "state")
    s.learn([event(i) for i in range(10)]).result()
    drained(s)
    v = s.rollback(1).result()
    assert (v.version, v.reason, v.source, v.applied_seq) == (2, "rollback", "v1", 10)
    assert drained(s).to_bytes() == Model.load(base_model).to_bytes()
    s.learn([event(99)]).result()
    expected = offline(base_model, [event(99)], tmp_path).to_bytes()
    assert drained(s).to_bytes() == expected
    s.close()
    again = service(base_model, tmp_path / "state")  # rolled back for good: nothing re-applied
    assert drained(again).to_bytes() == expected
    again.close()


def test_load_swaps_in_a_compatible_model(base_model: Path, tmp_path: Path) -> None:
    s = service(base_model, tmp_path / "state")
    other = tmp_path / "other.shoal"
    Model(FeatureSpec(bits=12), LearnerConfig(loss="logistic", optimizer="ftrl")).save(other)
    v = s.load(str(other)).result()
    assert v.reason == "load" and v.source == str(other)
    s.learn([event(1)]).result()
    assert drained(s).to_bytes() == offline(other, [event(1)], tmp_path).to_bytes()
    squared = tmp_path / "squared.shoal"
    Model(FeatureSpec(bits=4), LearnerConfig(loss="squared")).save(squared)
    with pytest.raises(ConfigError, match="squared loss"):
        s.load(str(squared))
    s.close()


def test_learn_refuses_unlabeled_records_and_bad_labels(base_model: Path, tmp_path: Path) -> None:
    s = service(base_model, tmp_path / "state")
    with pytest.raises(RequestError, match=r"records\[1\]: has no label"):
        s.learn(["1 | a", "| b"])
    with pytest.raises(RequestError, match=r"records\[0\]: label 3 is not valid for logistic"):
        s.learn(["3 | a"])
    with pytest.raises(RequestError, match=r"label: label 2 is not valid"):
        s.feedback("0" * 28, 2)
    assert s.info()["logged_seq"] == 0
    s.close()


def test_objects_sent_to_a_schema_model_hash_through_its_schema(tmp_path: Path) -> None:
    """A model trained on CSV serves JSON objects as rows of its table: same features, same
    updates (learn and feedback), and strings VW text could not hold are kept as they are."""
    schema = ColumnSchema.parse(
        "clicked:label,city:cat,age:num:log1p,hour:num:fill=12,site:cat:ns=s"
    )
    spec = FeatureSpec(bits=12, schema=schema, interactions=("s ",))
    table = tmp_path / "base.csv"
    rows = [f"{i % 2},c{i % 5},{i % 40},{'' if i % 3 else i % 24},site{i % 4}" for i in range(80)]
    table.write_text("clicked,city,age,hour,site\n" + "\n".join(rows) + "\n")
    model = Model(spec, LearnerConfig(loss="logistic"))
    train(model, [table], TrainOptions(parse_threads=1))
    model.save(tmp_path / "csv.shoal")
    records = [
        {"city": "New York", "age": 31, "hour": None, "site": "a b|c:d"},
        {"city": 7, "age": 0.5, "hour": 3, "s": {"site": "x"}},
    ]
    reference = Model.load(tmp_path / "csv.shoal")
    s = service(tmp_path / "csv.shoal", tmp_path / "state")
    got = s.predict(records)
    assert got.values == reference.predict(batch_from_dicts(records, spec)).tolist()
    s.learn(
        [{"label": 1, "features": records[0]}, {"label": 0, "weight": 2, "features": records[1]}]
    )
    s.feedback(got.event_ids[1], 1, 0.5).result()
    reference.learn(batch_from_dicts(records, spec, labels=[1, 0], weights=[1, 2]))
    reference.learn(batch_from_dicts(records[1:], spec, labels=[1], weights=[0.5]))
    assert drained(s).to_bytes() == reference.to_bytes()
    with pytest.raises(RequestError, match=r"records\[0\]\.age: column 'age' is numeric"):
        s.predict([{"age": "old"}])
    with pytest.raises(
        RequestError, match=r"records\[1\]: unknown field 'Age' \(did you mean 'age'"
    ):
        s.predict([{"age": 3}, {"Age": 3}])
    assert s.lines([{"age": 3, "x": 1}], ignore_unknown=True) == s.lines([{"age": 3}])
    with pytest.raises(RequestError, match=r"records\[1\].features: must be a JSON object"):
        s.learn([{"label": 1, "features": {}}, {"label": 1, "features": [1, 2]}])
    s.close()


def test_predict_tells_tags_and_labels_and_may_keep_no_features(
    base_model: Path, tmp_path: Path
) -> None:
    s = service(base_model, tmp_path / "state")
    kept = s.predict(["1 'a1 |u id1", "|u id2", {"u": {"id3": 1}}])
    assert (kept.tags, kept.labeled) == (["a1", "", ""], [True, False, False])
    not_kept = s.predict(["1 'a1 |u id1", "|u id2"], remember=False)
    assert not_kept.values == kept.values[:2] and not_kept.event_ids == []
    s.close()
    with sqlite3.connect(tmp_path / "state" / "events.sqlite") as db:
        ids = {i for (i,) in db.execute("SELECT event_id FROM predictions")}
    assert ids == set(kept.event_ids)  # the features of the first three only
