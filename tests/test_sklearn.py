"""The scikit-learn estimators: scikit-learn's own conformance checks, agreement with the
underlying ``shoal.Model``, online learning, and accuracy on a9a inside a grid search."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import BaseEstimator
from sklearn.datasets import load_svmlight_file, make_blobs, make_classification
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MaxAbsScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from shoal.data.frames import batch_from_csr
from shoal.data.reader import TextReader
from shoal.model.model import Model
from shoal.sklearn import ShoalClassifier, ShoalRegressor

ESTIMATORS = (ShoalClassifier, ShoalRegressor)

ONLINE_WEIGHTS = (
    "shoal learns online, a row at a time: a row of weight 2 is one update (the importance-"
    "invariant closed form of the normalized optimizer, or one step of twice the size), not two "
    "updates, and the repeated rows are learned in another order, so the two models differ."
)


def expected_failed_checks(estimator: BaseEstimator) -> dict[str, str]:
    return {
        "check_sample_weight_equivalence_on_dense_data": ONLINE_WEIGHTS,
        "check_sample_weight_equivalence_on_sparse_data": ONLINE_WEIGHTS,
    }


# FM and FFM with few bits: each check makes many models, each drawing its factors afresh
FM = {"model": "fm", "rank": 4, "bits": 12}
FFM = {"model": "ffm", "rank": 2, "bits": 12, "fields": {0: "a", 1: "b"}}  # other columns: linear


@parametrize_with_checks(
    [ShoalClassifier(), ShoalRegressor(), *(c(**kw) for kw in (FM, FFM) for c in ESTIMATORS)],
    expected_failed_checks=expected_failed_checks,
    xfail_strict=True,  # a check that starts passing must be taken off the list
)
def test_sklearn_conformance(estimator: BaseEstimator, check) -> None:
    check(estimator)


def blobs(n: int = 300, centers: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    X, y = make_blobs(n_samples=n, centers=centers, random_state=seed)
    return X / np.abs(X).max(axis=0), y


def test_string_labels_map_to_shoal_labels_in_classes_order() -> None:
    X, y = blobs(centers=3)
    names = np.array(["cat", "ant", "bee"])[y]
    clf = ShoalClassifier(random_state=0).fit(sp.csr_matrix(X), names)
    assert clf.classes_.tolist() == ["ant", "bee", "cat"]
    assert clf.model_.config.loss == "multiclass"
    assert clf.model_.config.classes == 3
    assert clf.score(X, names) > 0.9
    # class k of classes_ is shoal's label k + 1
    batch = batch_from_csr(X, clf.model_.spec)
    assert_array_equal(clf.predict(X), clf.classes_[clf.model_.predict(batch) - 1])


@pytest.mark.parametrize("loss", ["logistic", "hinge"])
def test_binary_predictions_are_the_models(loss: str) -> None:
    X, y = make_classification(n_samples=200, random_state=0)
    clf = ShoalClassifier(loss=loss, random_state=0).fit(X, np.where(y == 1, "yes", "no"))
    batch = batch_from_csr(X, clf.model_.spec)
    margins = clf.model_.decision_function(batch)
    assert_array_equal(clf.decision_function(X), margins)
    # classes_[1] ("yes") is shoal's +1
    assert_array_equal(clf.predict(X), np.where(margins > 0, "yes", "no"))
    if loss == "logistic":
        assert_array_equal(clf.predict_proba(X)[:, 1], clf.model_.predict_proba(batch))
    else:
        assert not hasattr(clf, "predict_proba")


def test_multiclass_proba_is_the_models() -> None:
    X, y = blobs(centers=4)
    clf = ShoalClassifier(random_state=0).fit(X, y)
    batch = batch_from_csr(X, clf.model_.spec)
    assert_array_equal(clf.predict_proba(X), clf.model_.predict_proba(batch))
    assert_array_equal(clf.decision_function(X), clf.model_.decision_function(batch))


def test_regressor_predictions_are_the_models() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0]) + 3.0
    reg = ShoalRegressor(learning_rate=0.5, passes=10, random_state=0).fit(X, y)
    assert reg.score(X, y) > 0.99
    assert_array_equal(reg.predict(X), reg.model_.predict(batch_from_csr(X, reg.model_.spec)))


@pytest.mark.parametrize("centers", [2, 3])
def test_partial_fit_over_chunks_is_fit_with_one_pass(centers: int) -> None:
    X, y = blobs(centers=centers)
    w = np.random.default_rng(1).uniform(0.5, 2.0, size=len(y))
    whole = ShoalClassifier(passes=1).fit(X, y, sample_weight=w)
    online = ShoalClassifier()
    for rows in np.array_split(np.arange(len(y)), 7):
        online.partial_fit(X[rows], y[rows], classes=np.unique(y), sample_weight=w[rows])
    assert_array_equal(online.model_.weights, whole.model_.weights)
    assert_array_equal(online.predict_proba(X), whole.predict_proba(X))


def test_regressor_partial_fit_over_chunks_is_fit_with_one_pass() -> None:
    X, y = blobs()
    y = X @ np.array([2.0, -1.0])
    whole = ShoalRegressor(passes=1).fit(X, y)
    online = ShoalRegressor()
    for rows in np.array_split(np.arange(len(y)), 5):
        online.partial_fit(X[rows], y[rows])
    assert_array_equal(online.predict(X), whole.predict(X))


def test_passes_in_order_without_shuffle_are_repeated_partial_fits() -> None:
    X, y = blobs()
    whole = ShoalClassifier(passes=3, shuffle=False).fit(X, y)
    online = ShoalClassifier()
    for _ in range(3):
        online.partial_fit(X, y, classes=[0, 1])
    assert_array_equal(online.model_.weights, whole.model_.weights)


def test_shuffling_is_seeded() -> None:
    X, y = blobs()
    a, b, c = (ShoalClassifier(passes=3, random_state=s).fit(X, y) for s in (7, 7, 8))
    assert_array_equal(a.model_.weights, b.model_.weights)
    assert not np.array_equal(a.model_.weights, c.model_.weights)


def test_partial_fit_rejects_what_it_cannot_learn() -> None:
    X, y = blobs()
    with pytest.raises(ValueError, match="classes must be given"):
        ShoalClassifier().partial_fit(X, y)
    clf = ShoalClassifier().partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match="not in classes_"):
        clf.partial_fit(X, y + 1)
    with pytest.raises(ValueError, match="not classes_"):
        clf.partial_fit(X, y, classes=[0, 1, 2])


@pytest.mark.parametrize(
    "params",
    [
        {"loss": "squared"},
        {"optimizer": "adam"},
        {"learning_rate": 0.0},
        {"bits": 0},
        {"interactions": ("abcd",)},
        {"passes": 0},
        {"l2": -1.0},
    ],
)
def test_bad_parameters_raise_value_error_at_fit(params: dict) -> None:
    X, y = blobs(n=20)
    clf = ShoalClassifier(**params)  # constructors only store
    with pytest.raises(ValueError, match=next(iter(params))):
        clf.fit(X, y)


def test_numpy_scalars_from_a_grid_are_accepted() -> None:
    X, y = blobs(n=50)
    clf = ShoalClassifier(bits=np.int64(12), l2=np.float64(1e-4), passes=np.int64(2)).fit(X, y)
    assert clf.model_.spec.bits == 12


def test_interactions_cross_columns_of_the_default_namespace() -> None:
    # Column 0 stays empty: as in Vowpal Wabbit, the pair (0, j) hashes to (0 * prime) ^ j = j,
    # onto column j itself (see shoal.sklearn's docstring).
    X = np.array([[0, 0, 0], [0, 0, 1], [0, 1, 0], [0, 1, 1]] * 10, dtype=float)
    y = np.logical_xor(X[:, 1], X[:, 2])  # not linearly separable without x1 * x2
    kw = {"learning_rate": 0.5, "passes": 50, "random_state": 0}
    assert ShoalClassifier(interactions=("  ",), **kw).fit(X, y).score(X, y) == 1.0
    assert ShoalClassifier(**kw).fit(X, y).score(X, y) < 1.0


def test_dataframe_input_records_feature_names() -> None:
    pd = pytest.importorskip("pandas")
    X, y = blobs()
    frame = pd.DataFrame(X, columns=["height", "width"])
    clf = ShoalClassifier(random_state=0).fit(frame, y)
    assert clf.feature_names_in_.tolist() == ["height", "width"]
    assert_array_equal(
        clf.predict_proba(frame), ShoalClassifier(random_state=0).fit(X, y).predict_proba(X)
    )


def test_model_save_load_round_trip(tmp_path: Path) -> None:
    X, y = blobs(centers=3)
    clf = ShoalClassifier(optimizer="ftrl", l1=0.01, random_state=0).fit(X, y)
    clf.model_.save(tmp_path / "blobs.model")
    loaded = Model.load(tmp_path / "blobs.model")
    assert loaded.spec == clf.model_.spec and loaded.config == clf.model_.config
    batch = batch_from_csr(X, loaded.spec)
    assert_array_equal(loaded.predict_proba(batch), clf.predict_proba(X))
    # the loaded model can go on learning where the estimator left off
    clf.partial_fit(X, y)
    loaded.learn(batch_from_csr(X, loaded.spec, labels=y + 1.0))
    assert_array_equal(loaded.weights, clf.model_.weights)


@pytest.mark.realdata
def test_a9a_grid_search_in_a_pipeline(data_dir: Path) -> None:
    X, y = load_svmlight_file(str(data_dir / "a9a" / "a9a"), n_features=123)
    X_test, y_test = load_svmlight_file(str(data_dir / "a9a" / "a9a.t"), n_features=123)
    pipe = make_pipeline(MaxAbsScaler(), ShoalClassifier(random_state=0))
    grid = {"shoalclassifier__learning_rate": [0.05, 0.2], "shoalclassifier__l2": [0.0, 1e-5]}
    search = GridSearchCV(pipe, grid, cv=3).fit(X, y)
    assert search.best_estimator_[-1].classes_.tolist() == [-1.0, 1.0]
    assert search.score(X_test, y_test) >= 0.845


# -- factorization machines ------------------------------------------------------------------

KINDS = {
    "linear": {},
    "fm": {"model": "fm", "rank": 3},
    "ffm": {"model": "ffm", "rank": 3, "fields": "aabc "},  # column 4: no field, linear only
}


@pytest.mark.parametrize("kind", KINDS)
def test_coef_intercept_and_factors_are_what_single_columns_add(kind: str) -> None:
    """The margin of one column j is intercept_ + coef_[j]; a pair of columns adds the dot
    product of their factors (an FFM's: each one's vector for the other's field)."""
    X, y = make_classification(n_samples=300, n_features=5, random_state=0)
    clf = ShoalClassifier(random_state=0, **KINDS[kind]).fit(X, y)
    eye = np.eye(5)
    margin = clf.decision_function
    zero = margin(np.zeros((1, 5)))[0]
    assert clf.coef_.shape == (1, 5) and clf.intercept_.shape == (1,)
    assert zero == pytest.approx(clf.intercept_[0], abs=1e-6)
    assert_allclose(margin(eye) - zero, clf.coef_[0], atol=1e-6)
    assert np.abs(clf.coef_).max() > 0.01  # the check is not of zeros
    if kind == "linear":
        assert not hasattr(clf, "factors_")
        return
    v = clf.factors_
    field = {"a": 0, "b": 1, "c": 2}
    for i, j in [(0, 1), (0, 2), (2, 3), (1, 4)]:
        pair = margin([eye[i] + eye[j]])[0] - margin(eye[[i, j]]).sum() + zero
        if kind == "fm":
            assert v.shape == (5, 3)
            expected = v[i] @ v[j]
        else:  # column 4 is in no field: no vectors, it pairs with nothing
            assert v.shape == (5, 3, 3) and not v[4].any()
            fi, fj = (field.get("aabc "[c]) for c in (i, j))
            expected = 0.0 if None in (fi, fj) else v[i, fj] @ v[j, fi]
        assert pair == pytest.approx(expected, abs=1e-6)
        assert (abs(expected) > 1e-5) == (kind == "fm" or j != 4)  # not a check of zeros


def test_multiclass_coef_has_a_row_per_class() -> None:
    X, y = blobs(centers=3)
    clf = ShoalClassifier(random_state=0).fit(X, y)
    assert clf.coef_.shape == (3, 2) and clf.intercept_.shape == (3,)
    assert_allclose(clf.decision_function(X), X @ clf.coef_.T + clf.intercept_, atol=1e-5)


def test_regressor_coef_is_one_dimensional() -> None:
    X = np.random.default_rng(0).normal(size=(200, 3))
    reg = ShoalRegressor(model="fm", random_state=0).fit(X, X @ [1.0, 2.0, 0.0])
    assert reg.coef_.shape == (3,) and reg.factors_.shape == (3, 8)
    assert_allclose(reg.predict(np.eye(3)) - reg.intercept_, reg.coef_, atol=1e-5)


def test_fm_learns_a_product_of_columns_that_a_linear_model_cannot() -> None:
    X = np.random.default_rng(0).uniform(-1, 1, size=(2000, 4))
    y = 3.0 * X[:, 0] * X[:, 1] + X[:, 2]
    kw = {"passes": 10, "random_state": 0}
    assert ShoalRegressor(model="fm", rank=2, **kw).fit(X, y).score(X, y) > 0.95
    assert ShoalRegressor(**kw).fit(X, y).score(X, y) < 0.5


def test_ffm_columns_hash_as_the_namespaces_of_vw_text(tmp_path: Path) -> None:
    """A DataFrame's columns named in ``fields`` are features ``|letter j:value``: the model
    predicts the same rows in VW text as the estimator does (and so serves them)."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(2)
    X = rng.integers(-8, 9, size=(300, 4)) / 8.0  # exact in float32 and in text
    y = ((X[:, 0] + X[:, 1]) * X[:, 2] > 0).astype(int)  # u times i
    frame = pd.DataFrame(X, columns=["age", "city", "item", "price"])
    fields = {"age": "u", "city": "u", "item": "i"}  # price: no field, linear only
    clf = ShoalClassifier(model="ffm", fields=fields, random_state=0).fit(frame, y)
    assert clf.model_.spec.fields == ("u", "i")
    text = tmp_path / "rows.vw"
    text.write_text("".join(f"|u 0:{a} 1:{b} |i 2:{c} | 3:{d}\n" for a, b, c, d in X.tolist()))
    [batch] = TextReader(spec=clf.model_.spec).read_all([text])
    assert_array_equal(clf.model_.predict(batch), clf.predict_proba(frame)[:, 1])
    assert clf.score(frame, y) > 0.8
    # an Arrow table's columns are named as a DataFrame's
    pa = pytest.importorskip("pyarrow")
    arrow = ShoalClassifier(model="ffm", fields=fields, random_state=0).fit(pa.table(frame), y)
    assert_array_equal(arrow.model_.weights, clf.model_.weights)


def test_ffm_partial_fit_over_chunks_is_fit_with_one_pass() -> None:
    X, y = make_classification(n_samples=200, n_features=4, random_state=1)
    kw = {"model": "ffm", "fields": {0: "a", 1: "b", 3: "b"}, "rank": 2}
    whole = ShoalClassifier(passes=1, **kw).fit(X, y)
    online = ShoalClassifier(**kw)
    for rows in np.array_split(np.arange(len(y)), 4):
        online.partial_fit(X[rows], y[rows], classes=[0, 1])
    assert_array_equal(online.model_.weights, whole.model_.weights)
    assert_array_equal(online.factors_, whole.factors_)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"model": "svm"}, "model"),
        ({"rank": 4}, "--rank"),  # linear
        ({"fields": "ab"}, "fields"),  # linear
        ({"model": "ffm"}, "needs fields"),
        ({"model": "ffm", "fields": "abc"}, "one namespace letter per column"),
        ({"model": "ffm", "fields": {"height": "a"}}, "names column 'height'"),
        ({"model": "ffm", "fields": {0: "ab"}}, "one letter"),
        ({"model": "ffm", "fields": ["a", "b"]}, "a string of one namespace letter"),
        ({"model": "ffm", "fields": "ab", "interactions": ("ab",)}, "interactions"),
        ({"model": "fm", "factor_rate": 0.0}, "factor_rate"),
        ({"model": "fm", "l2_factors": -1.0}, "l2_factors"),
        ({"model": "fm", "rank": 1000}, "rank"),
    ],
)
def test_bad_factor_parameters_raise_value_error_at_fit(params: dict, match: str) -> None:
    X, y = blobs(n=20)
    with pytest.raises(ValueError, match=match):
        ShoalClassifier(**params).fit(X, y)
