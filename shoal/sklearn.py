"""scikit-learn estimators over a shoal ``Model``: ``ShoalClassifier`` and ``ShoalRegressor``.

X is what scikit-learn estimators take: a dense array, a scipy sparse matrix or a DataFrame of
numbers. Column j is the feature ``str(j)`` of the default namespace ``" "``, as in
``shoal.data.frames.batch_from_csr`` (and svmlight's ``j:value``), so ``interactions=("  ",)``
crosses every pair of columns, squares included (VW 9's ``-q``) -- but, as in Vowpal Wabbit, the
pair of columns 0 and j hashes
to ``(0 * FNV_PRIME) ^ j = j``, onto column j itself, so leave column 0 out of interactions
(an empty first column does). ``model_`` is the ``shoal.Model`` learned: save it, serve it,
or go on learning from it with the CLI.

Learning is online. ``fit`` starts a new model and makes ``passes`` passes over the rows: the
first in the order given (``fit`` with ``passes=1`` is ``partial_fit`` over the same rows), the
later ones reshuffled when ``shuffle`` is set. ``partial_fit`` makes one pass over the rows it
is given and goes on learning the same model. Needs scikit-learn >= 1.6.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import Tags, check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from shoal.data.batch import Batch
from shoal.data.frames import batch_from_csr
from shoal.errors import ConfigError
from shoal.features.spec import FeatureSpec
from shoal.model.config import LearnerConfig, Loss, Optimizer
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
    model_: Model  # set by fit and partial_fit

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

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def _new_model(self, loss: Loss, classes: int = 2) -> Model:
        """A fresh model of ``loss`` from the parameters, checked."""
        name = type(self).__name__
        if self.loss not in self._losses:
            raise ValueError(f"{name}: loss must be one of {self._losses}, got {self.loss!r}")
        passes = _py(self.passes)
        if not isinstance(passes, int) or isinstance(passes, bool) or passes < 1:
            raise ValueError(f"{name}: passes must be an integer >= 1, got {self.passes!r}")
        if not isinstance(self.shuffle, bool | np.bool_):
            raise ValueError(f"{name}: shuffle must be True or False, got {self.shuffle!r}")
        p = {k: _py(v) for k, v in self.get_params().items()}
        learner = ("optimizer", "learning_rate", "power_t", "initial_t", "l1", "l2", "ftrl_beta")
        try:
            spec = FeatureSpec(
                bits=p["bits"], interactions=tuple(p["interactions"]), constant=p["constant"]
            )
            config = LearnerConfig(loss=loss, classes=classes, **{k: p[k] for k in learner})
        except (ConfigError, TypeError) as e:
            raise ValueError(f"{name}: {e}") from e
        return Model(spec, config)

    def _learn(self, X: Any, labels: np.ndarray, weights: np.ndarray, passes: int) -> None:
        """``passes`` passes over the rows: the first in order, the others reshuffled."""
        spec = self.model_.spec
        batch = batch_from_csr(X, spec, labels, weights)
        rng = check_random_state(self.random_state) if self.shuffle and passes > 1 else None
        for p in range(passes):
            if p > 0 and rng is not None:
                rows = rng.permutation(X.shape[0])
                batch = batch_from_csr(X[rows], spec, labels[rows], weights[rows])
            self.model_.learn(batch)

    def _batch(self, X: MatrixLike) -> Batch:
        """Rows to predict, checked against what the model was fitted on."""
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse="csr", dtype=np.float64, reset=False)
        return batch_from_csr(X, self.model_.spec)


class ShoalClassifier(ClassifierMixin, _ShoalEstimator):
    """A linear classifier over hashed features, learned online by a shoal ``Model``.

    Two classes use ``loss`` ("logistic", or "hinge" which gives no probabilities), with
    ``classes_[0]`` as shoal's label -1 and ``classes_[1]`` as +1. More classes use shoal's
    softmax loss with labels 1..K in ``classes_`` order, whatever ``loss`` says.

    ``optimizer`` is "normalized" (VW's default update: features need no scaling), "sgd",
    "adagrad" or "ftrl"; ``learning_rate=None`` takes shoal's default for it. ``l1``, ``l2``,
    ``power_t``, ``initial_t`` and ``ftrl_beta`` are as in ``LearnerConfig``; ``bits``,
    ``interactions`` and ``constant`` as in ``FeatureSpec``. ``passes`` (5) is the number of
    passes ``fit`` makes, ``shuffle`` and ``random_state`` how the rows are reordered between
    them.

    >>> X = [[1.0, 0.0], [0.0, 1.0]] * 10
    >>> clf = ShoalClassifier(random_state=0).fit(X, ["spam", "ham"] * 10)
    >>> clf.predict([[1.0, 0.0], [0.0, 1.0]]).tolist()
    ['spam', 'ham']
    >>> clf.classes_.tolist(), clf.predict_proba([[1.0, 0.0]]).round(2).tolist()
    (['ham', 'spam'], [[0.07, 0.93]])
    """

    _losses = ("logistic", "hinge")

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
    """A linear regressor over hashed features (squared loss), learned online by shoal.

    The parameters are ``ShoalClassifier``'s; ``loss`` can only be "squared".

    >>> X = [[0.0], [1.0]] * 10
    >>> reg = ShoalRegressor(learning_rate=0.5, passes=20, random_state=0)
    >>> reg = reg.fit(X, [1.0, 3.0] * 10)
    >>> reg.predict([[0.0], [1.0]]).round(1).tolist()
    [1.0, 3.0]
    """

    _losses = ("squared",)

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
