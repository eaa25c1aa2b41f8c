"""scikit-learn estimators over a shoal ``Model``: ``ShoalClassifier`` and ``ShoalRegressor``.

X is what scikit-learn estimators take: a dense array, a scipy sparse matrix or a DataFrame of
numbers. Column j is the feature ``str(j)`` of the default namespace ``" "``, as in
``shoal.data.frames.batch_from_csr`` (and svmlight's ``j:value``), so ``interactions=("  ",)``
crosses every pair of columns, squares included (VW 9's ``-q``) -- but, as in Vowpal Wabbit, the
pair of columns 0 and j hashes
to ``(0 * FNV_PRIME) ^ j = j``, onto column j itself, so leave column 0 out of interactions
(an empty first column does). ``model_`` is the ``shoal.Model`` learned: save it, serve it,
or go on learning from it with the CLI.

``model="fm"`` learns a factorization machine of ``rank`` (every pair of columns through latent
vectors), ``model="ffm"`` a field-aware one, whose fields are namespaces: ``fields`` gives each
column its namespace letter, either as a string of one letter per column (``fields="uuic"``:
columns 0 and 1 in field ``u``, 2 in ``i``, 3 in ``c``) or as a dict from column (its index,
or its name in a DataFrame or Arrow table) to letter (``{"age": "u", "price": "i"}``). Column
``j`` of namespace ``u`` is the feature ``|u j:value`` of VW text, and hashes as it does, so the
model serves such rows; each letter is a field, and a column given no letter (or a space) stays
in the default namespace, outside every field: it is learned linearly only, as in ``shoal train
--fields``.

Learning is online. ``fit`` starts a new model and makes ``passes`` passes over the rows: the
first in the order given (``fit`` with ``passes=1`` is ``partial_fit`` over the same rows), the
later ones reshuffled when ``shuffle`` is set. ``partial_fit`` makes one pass over the rows it
is given and goes on learning the same model. Needs scikit-learn >= 1.6.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import Tags, check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from shoal.data.batch import Batch
from shoal.data.frames import batch_from_csr, column_hashes
from shoal.errors import ConfigError
from shoal.features.hashing import CONSTANT_HASH
from shoal.features.spec import FeatureSpec
from shoal.model.config import Kind, LearnerConfig, Loss, Optimizer
from shoal.model.factors import field_count
from shoal.model.model import Model

# scikit-learn >= 1.9 refuses all-zero weights unless told; a partial_fit chunk may have them
_ZERO_WEIGHTS_OK = (
    {"allow_all_zero_weights": True}
    if "allow_all_zero_weights" in inspect.signature(_check_sample_weight).parameters
    else {}
)


def _weights(sample_weight: Any, X: Any, *, online: bool) -> np.ndarray:
    """Checked weights: all zero is an error for ``fit``, a chunk with nothing to learn online."""
    extra = _ZERO_WEIGHTS_OK if online else {}
    return _check_sample_weight(
        sample_weight, X, dtype=np.float64, ensure_non_negative=True, **extra
    )


# X: array-like, scipy sparse matrix or array, or DataFrame of numbers; y likewise array-like
MatrixLike = Any
ArrayLike = Any


def _py(value: Any) -> Any:
    """A numpy scalar (as parameter grids hold) as the Python number shoal's configs check."""
    return value.item() if isinstance(value, np.generic) else value


class _ShoalEstimator(BaseEstimator):
    """The parameters, the model they make, and learning in passes: shared by both estimators.

    Parameters are stored as given and checked at ``fit`` by ``FeatureSpec`` and
    ``LearnerConfig``, whose errors become ``ValueError`` as scikit-learn expects.
    """

    _losses: tuple[str, ...]  # the values of ``loss`` this estimator takes
    _coef_1d = False  # coef_ of one output as (n_features,), not (1, n_features)
    model_: Model  # set by fit and partial_fit
    _namespaces: str | None  # each column's namespace letter (fields), None: all default

    def __init__(
        self,
        *,
        loss: Loss = "logistic",
        optimizer: Optimizer = "normalized",
        learning_rate: float | None = None,
        l1: float = 0.0,
        l2: float = 0.0,
        power_t: float = 0.5,
        initial_t: float = 0.0,
        ftrl_beta: float = 1.0,
        bits: int = 18,
        interactions: tuple[str, ...] = (),
        constant: bool = True,
        passes: int = 5,
        shuffle: bool = True,
        random_state: int | np.random.RandomState | None = None,
        model: Kind = "linear",
        rank: int | None = None,
        factor_rate: float | None = None,
        l2_factors: float = 0.0,
        fields: str | Mapping[Any, str] | None = None,
    ) -> None:
        self.loss = loss
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.l1 = l1
        self.l2 = l2
        self.power_t = power_t
        self.initial_t = initial_t
        self.ftrl_beta = ftrl_beta
        self.bits = bits
        self.interactions = interactions
        self.constant = constant
        self.passes = passes
        self.shuffle = shuffle
        self.random_state = random_state
        self.model = model
        self.rank = rank
        self.factor_rate = factor_rate
        self.l2_factors = l2_factors
        self.fields = fields

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def _new_model(self, loss: Loss, classes: int = 2) -> Model:
        """A fresh model of ``loss`` from the parameters, checked; keeps the namespace of
        each column (``fields``) for every later batch."""
        name = type(self).__name__
        if self.loss not in self._losses:
            raise ValueError(f"{name}: loss must be one of {self._losses}, got {self.loss!r}")
        passes = _py(self.passes)
        if not isinstance(passes, int) or isinstance(passes, bool) or passes < 1:
            raise ValueError(f"{name}: passes must be an integer >= 1, got {self.passes!r}")
        if not isinstance(self.shuffle, bool | np.bool_):
            raise ValueError(f"{name}: shuffle must be True or False, got {self.shuffle!r}")
        self._namespaces = self._column_namespaces()
        fields = tuple(dict.fromkeys((self._namespaces or "").replace(" ", "")))
        if self.model == "ffm" and not fields:
            raise ValueError(
                f"{name}: model='ffm' needs fields: the namespace letter of each column, as "
                "fields='uuic' or {column: letter}"
            )
        p = {k: _py(v) for k, v in self.get_params().items()}
        p["rank"] = p["rank"] or 0  # None: shoal's default rank
        learner = ("optimizer", "learning_rate", "power_t", "initial_t", "l1", "l2", "ftrl_beta",
                   "model", "rank", "factor_rate", "l2_factors")  # fmt: skip
        try:
            spec = FeatureSpec(
                bits=p["bits"],
                interactions=tuple(p["interactions"]),
                constant=p["constant"],
                fields=fields,
            )
            config = LearnerConfig(loss=loss, classes=classes, **{k: p[k] for k in learner})
            return Model(spec, config)
        except (ConfigError, TypeError) as e:
            raise ValueError(f"{name}: {e}") from e

    def _column_namespaces(self) -> str | None:
        """The namespace letter of each column of X (``fields``), or None: all in the default
        namespace."""
        fields, n, name = self.fields, self.n_features_in_, type(self).__name__
        if fields is None:
            return None
        if isinstance(fields, str):
            if len(fields) != n:
                raise ValueError(
                    f"{name}: fields needs one namespace letter per column, {n} feature(s), "
                    f"got {len(fields)} in {fields!r}"
                )
            return fields
        if not isinstance(fields, Mapping):
            raise ValueError(
                f"{name}: fields must be a string of one namespace letter per column or a dict "
                f"from column to letter, got {fields!r}"
            )
        names = list(getattr(self, "feature_names_in_", ()))
        letters = [" "] * n
        for column, letter in fields.items():
            j = names.index(column) if column in names else _py(column)
            if not isinstance(j, int) or isinstance(j, bool) or not 0 <= j < n:
                raise ValueError(f"{name}: fields names column {column!r}, but X has {n} "
                                 f"feature(s){f' named {names}' if names else ''}")  # fmt: skip
            if not isinstance(letter, str) or len(letter) != 1:
                raise ValueError(
                    f"{name}: fields gives column {column!r} {letter!r}: a namespace is one letter"
                )
            letters[j] = letter
        return "".join(letters)

    def _learn(self, X: Any, labels: np.ndarray, weights: np.ndarray, passes: int) -> None:
        """``passes`` passes over the rows: the first in order, the others reshuffled."""
        spec, ns = self.model_.spec, self._namespaces
        batch = batch_from_csr(X, spec, labels, weights, ns)
        rng = check_random_state(self.random_state) if self.shuffle and passes > 1 else None
        for p in range(passes):
            if p > 0 and rng is not None:
                rows = rng.permutation(X.shape[0])
                batch = batch_from_csr(X[rows], spec, labels[rows], weights[rows], ns)
            self.model_.learn(batch)

    def _batch(self, X: MatrixLike) -> Batch:
        """Rows to predict, checked against what the model was fitted on."""
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse="csr", dtype=np.float64, reset=False)
        return batch_from_csr(X, self.model_.spec, namespaces=self._namespaces)

    # -- what was learned, per column --------------------------------------------------------

    def _slots(self) -> np.ndarray:
        """The hashed slot of each column: where its weight and factors are."""
        check_is_fitted(self)
        spec = self.model_.spec
        return column_hashes(self.n_features_in_, spec, self._namespaces)[0] & spec.mask

    @property
    def coef_(self) -> np.ndarray:
        """The linear weight of each column (a copy of its slot of ``Model.linear_weights``):
        (1, n_features) for two classes, (K, n_features) for K classes, (n_features,) for the
        regressor. Columns whose hashes collide share a weight; interactions' weights and an
        FM's factors (``factors_``) are not in it."""
        m = self.model_
        w = m.linear_weights.reshape(m.spec.size, m.config.outputs)[self._slots()].T
        return w.astype(np.float64)[0] if self._coef_1d else w.astype(np.float64)

    @property
    def intercept_(self) -> np.ndarray:
        """The constant feature's weight, (1,) or (K,) for K classes; zeros without it."""
        check_is_fitted(self)
        m = self.model_
        k = m.config.outputs
        if not m.spec.constant:
            return np.zeros(k)
        lin = m.linear_weights.reshape(m.spec.size, k)
        return lin[CONSTANT_HASH & m.spec.mask].astype(np.float64)

    @property
    def factors_(self) -> np.ndarray:
        """Each column's latent vectors, a copy: (n_features, rank) for an FM, (n_features,
        fields, rank) for an FFM, where ``[j, f]`` is the vector column j pairs with the
        columns of field ``model_.spec.fields[f]`` (zeros for a column outside every field).
        A linear model has none."""
        slots = self._slots()
        m = self.model_
        if not m.config.factorized:
            raise AttributeError("factors_: a linear model (model='linear') has no factors")
        shape = (len(slots), field_count(m.spec, m.config), m.config.rank)
        v = m.weights.reshape(m.spec.size, m.width)[slots, 1:].reshape(shape).astype(np.float64)
        if m.config.model == "fm":
            return v[:, 0]
        v[np.frombuffer((self._namespaces or "").encode(), np.uint8) == ord(" ")] = 0.0
        return v


class ShoalClassifier(ClassifierMixin, _ShoalEstimator):
    """A linear classifier, or a factorization machine, over hashed features, learned online by
    a shoal ``Model``.

    Two classes use ``loss`` ("logistic", or "hinge" which gives no probabilities), with
    ``classes_[0]`` as shoal's label -1 and ``classes_[1]`` as +1. More classes use shoal's
    softmax loss with labels 1..K in ``classes_`` order, whatever ``loss`` says.

    ``optimizer`` is "normalized" (VW's default update: features need no scaling), "sgd",
    "adagrad" or "ftrl"; ``learning_rate=None`` takes shoal's default for it. ``l1``, ``l2``,
    ``power_t``, ``initial_t`` and ``ftrl_beta`` are as in ``LearnerConfig``; ``bits``,
    ``interactions`` and ``constant`` as in ``FeatureSpec``. ``passes`` (5) is the number of
    passes ``fit`` makes, ``shuffle`` and ``random_state`` how the rows are reordered between
    them. ``model`` is "linear", "fm" or "ffm" (two classes only); ``rank`` (None: 8),
    ``factor_rate`` (None: 0.05) and ``l2_factors`` are as in ``LearnerConfig``, ``fields`` the
    namespace of each column (see the module's doc). ``coef_`` and ``intercept_`` are the linear
    weights of the columns and of the constant, ``factors_`` an FM's latent vectors.

    >>> X = [[1.0, 0.0], [0.0, 1.0]] * 10
    >>> clf = ShoalClassifier(random_state=0).fit(X, ["spam", "ham"] * 10)
    >>> clf.predict([[1.0, 0.0], [0.0, 1.0]]).tolist()
    ['spam', 'ham']
    >>> clf.classes_.tolist(), clf.predict_proba([[1.0, 0.0]]).round(2).tolist()
    (['ham', 'spam'], [[0.07, 0.93]])
    """

    _losses = ("logistic", "hinge")

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        assert tags.classifier_tags is not None  # ClassifierMixin's
        tags.classifier_tags.multi_class = self.model == "linear"  # an FM learns one output
        return tags

    def fit(
        self, X: MatrixLike, y: ArrayLike, sample_weight: ArrayLike | None = None
    ) -> ShoalClassifier:
        """Learn a new model from X and y with ``passes`` passes over the rows."""
        X, y = validate_data(self, X, y, accept_sparse="csr", dtype=np.float64)
        check_classification_targets(y)
        sw = _weights(sample_weight, X, online=False)
        classes, idx = np.unique(y, return_inverse=True)
        present = len(np.unique(idx[sw > 0]))
        if present < 2:
            raise ValueError(
                f"{type(self).__name__} needs rows of at least 2 classes with a positive "
                f"sample_weight, got {present} class"
            )
        self.model_ = self._new_model(self._loss_for(len(classes)), len(classes))
        self.classes_ = classes
        self._learn(X, self._labels(idx), sw, int(self.passes))
        return self

    def partial_fit(
        self,
        X: MatrixLike,
        y: ArrayLike,
        classes: ArrayLike | None = None,
        sample_weight: ArrayLike | None = None,
    ) -> ShoalClassifier:
        """Learn from one pass over X and y, going on from the model so far.

        ``classes`` (every class there will be) is needed on the first call only.
        """
        first = not hasattr(self, "model_")
        X, y = validate_data(self, X, y, accept_sparse="csr", dtype=np.float64, reset=first)
        check_classification_targets(y)
        if first:
            if classes is None:
                raise ValueError("classes must be given on the first call to partial_fit")
            all_classes = np.unique(np.asarray(classes))
            if len(all_classes) < 2:
                raise ValueError(f"classes must hold at least 2 classes, got {len(all_classes)}")
            self.model_ = self._new_model(self._loss_for(len(all_classes)), len(all_classes))
            self.classes_ = all_classes
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(f"classes {np.unique(classes)} are not classes_ {self.classes_}")
        unknown = ~np.isin(y, self.classes_)
        if unknown.any():
            raise ValueError(f"label {y[np.argmax(unknown)]!r} is not in classes_ {self.classes_}")
        sw = _weights(sample_weight, X, online=True)
        self._learn(X, self._labels(np.asarray(np.searchsorted(self.classes_, y))), sw, passes=1)
        return self

    def _loss_for(self, n_classes: int) -> Loss:
        if n_classes > 2 and self.model != "linear":  # the wording is scikit-learn's check's
            raise ValueError(
                f"{type(self).__name__}(model={self.model!r}): Only binary classification is "
                f"supported. The target has {n_classes} classes: use model='linear', or one "
                "model per class (sklearn.multiclass.OneVsRestClassifier)"
            )
        return "multiclass" if n_classes > 2 else self.loss

    def _labels(self, idx: np.ndarray) -> np.ndarray:
        """shoal's labels of class indices: -1/+1 for two classes, else 1..K."""
        k = self.model_.config.outputs
        return (2.0 * idx - 1.0) if k == 1 else idx + 1.0

    def decision_function(self, X: MatrixLike) -> np.ndarray:
        """Margins: (n,) for two classes (positive means ``classes_[1]``), else (n, K)."""
        batch = self._batch(X)
        return self.model_.decision_function(batch)

    def predict(self, X: MatrixLike) -> np.ndarray:
        """The class of each row: the sign of its margin, or its largest margin."""
        m = self.decision_function(X)
        return self.classes_[(m > 0).astype(np.intp) if m.ndim == 1 else np.argmax(m, axis=1)]

    @available_if(lambda self: self.loss == "logistic")
    def predict_proba(self, X: MatrixLike) -> np.ndarray:
        """Class probabilities, (n, K) in ``classes_`` order (logistic loss only)."""
        batch = self._batch(X)
        p = self.model_.predict_proba(batch)
        return np.column_stack([1.0 - p, p]) if p.ndim == 1 else p


class ShoalRegressor(RegressorMixin, _ShoalEstimator):
    """A linear regressor, or a factorization machine, over hashed features (squared loss),
    learned online by shoal.

    The parameters are ``ShoalClassifier``'s; ``loss`` can only be "squared".

    >>> X = [[0.0], [1.0]] * 10
    >>> reg = ShoalRegressor(learning_rate=0.5, passes=20, random_state=0)
    >>> reg = reg.fit(X, [1.0, 3.0] * 10)
    >>> reg.predict([[0.0], [1.0]]).round(1).tolist()
    [1.0, 3.0]
    """

    _losses = ("squared",)
    _coef_1d = True

    def __init__(
        self,
        *,
        loss: Loss = "squared",
        optimizer: Optimizer = "normalized",
        learning_rate: float | None = None,
        l1: float = 0.0,
        l2: float = 0.0,
        power_t: float = 0.5,
        initial_t: float = 0.0,
        ftrl_beta: float = 1.0,
        bits: int = 18,
        interactions: tuple[str, ...] = (),
        constant: bool = True,
        passes: int = 5,
        shuffle: bool = True,
        random_state: int | np.random.RandomState | None = None,
        model: Kind = "linear",
        rank: int | None = None,
        factor_rate: float | None = None,
        l2_factors: float = 0.0,
        fields: str | Mapping[Any, str] | None = None,
    ) -> None:
        super().__init__(
            loss=loss,
            optimizer=optimizer,
            learning_rate=learning_rate,
            l1=l1,
            l2=l2,
            power_t=power_t,
            initial_t=initial_t,
            ftrl_beta=ftrl_beta,
            bits=bits,
            interactions=interactions,
            constant=constant,
            passes=passes,
            shuffle=shuffle,
            random_state=random_state,
            model=model,
            rank=rank,
            factor_rate=factor_rate,
            l2_factors=l2_factors,
            fields=fields,
        )

    def fit(
        self, X: MatrixLike, y: ArrayLike, sample_weight: ArrayLike | None = None
    ) -> ShoalRegressor:
        """Learn a new model from X and y with ``passes`` passes over the rows."""
        X, y = validate_data(self, X, y, accept_sparse="csr", dtype=np.float64, y_numeric=True)
        sw = _weights(sample_weight, X, online=False)
        self.model_ = self._new_model("squared")
        self._learn(X, y, sw, int(self.passes))
        return self

    def partial_fit(
        self, X: MatrixLike, y: ArrayLike, sample_weight: ArrayLike | None = None
    ) -> ShoalRegressor:
        """Learn from one pass over X and y, going on from the model so far."""
        first = not hasattr(self, "model_")
        X, y = validate_data(
            self, X, y, accept_sparse="csr", dtype=np.float64, y_numeric=True, reset=first
        )
        if first:
            self.model_ = self._new_model("squared")
        sw = _weights(sample_weight, X, online=True)
        self._learn(X, y, sw, passes=1)
        return self

    def predict(self, X: MatrixLike) -> np.ndarray:
        """``w . x`` for each row."""
        batch = self._batch(X)
        return self.model_.predict(batch)
