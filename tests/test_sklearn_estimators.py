"""steadygrad.sklearn's MLPClassifier and MLPRegressor: scikit-learn's own estimator checks
(every one), the model-selection tools, accuracy against scikit-learn's MLP with the same
network, epochs and initial weights, and scikit-learn's semantics checked against float64
numpy: alpha's L2 term in loss_ and in the gradient, partial_fit, warm_start, convergence.
No check is marked as an expected failure: every one passes."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn", reason="scikit-learn is in the test extras")

from conftest import num_threads  # noqa: E402
from sklearn.datasets import (  # noqa: E402
    load_breast_cancer,
    load_diabetes,
    load_digits,
    make_classification,
)
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkClassifier  # noqa: E402
from sklearn.neural_network import MLPRegressor as SkRegressor  # noqa: E402
from sklearn.neural_network._base import LOSS_FUNCTIONS  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import steadygrad as sg  # noqa: E402
from steadygrad import nn  # noqa: E402
from steadygrad.sklearn import MLPClassifier, MLPRegressor  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    """One thread: the results do not depend on the count (static schedules), and two
    threads on two cores shared with other processes spend most of a small fit waiting."""
    with num_threads(1):
        yield


# Small instances, so that each check takes well under a second; enough epochs that
# check_classifiers_train / check_regressors_train reach their score thresholds.
CHECKED = [MLPClassifier(hidden_layer_sizes=(16,), max_iter=200, random_state=0),
           MLPRegressor(hidden_layer_sizes=(16,), max_iter=200, random_state=0)]


_IN_SUBPROCESS = """
import warnings
warnings.simplefilter("error")
from sklearn.exceptions import ConvergenceWarning
warnings.simplefilter("ignore", ConvergenceWarning)
from sklearn.utils import estimator_checks
from steadygrad.sklearn import MLPClassifier, MLPRegressor
getattr(estimator_checks, {func!r})(*{args!r}, {estimator}, **{keywords!r})
"""


def _run_with_array_api_dispatch(estimator: Any, check: Any) -> None:
    """check_array_api_input needs SCIPY_ARRAY_API=1 before scipy is first imported (else it
    skips): run it in a fresh interpreter that has it."""
    code = _IN_SUBPROCESS.format(func=check.func.__name__, args=check.args, estimator=repr(estimator),
                                 keywords=check.keywords)
    env = {**os.environ, "SCIPY_ARRAY_API": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(sg.__file__).parent.parent),
                                                       os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]


@parametrize_with_checks(CHECKED)
def test_sklearn_estimator_checks(estimator: Any, check: Any) -> None:
    """Every check of scikit-learn's suite. Two are skipped by scikit-learn itself where a
    method is absent (check_classifiers_multilabel_output_format_decision_function: there is
    no decision_function, as in scikit-learn's MLPClassifier); the pandas ones need pandas
    (test extra). check_array_api_input runs in a subprocess with SCIPY_ARRAY_API=1."""
    if getattr(check, "func", None) is not None and check.func.__name__ == "check_array_api_input" \
            and os.environ.get("SCIPY_ARRAY_API") != "1":
        _run_with_array_api_dispatch(estimator, check)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # few epochs on the checks' data
        check(estimator)


def _quiet(est: Any, *args: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(*args)


# -- model selection ---------------------------------------------------------------------
def _digits() -> tuple[np.ndarray, ...]:
    X, y = load_digits(return_X_y=True)
    return tuple(train_test_split(X, y, test_size=0.25, random_state=0))


def test_pipeline_grid_search_and_cross_val_score() -> None:
    X_tr, X_te, y_tr, y_te = _digits()
    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(32,), max_iter=15, learning_rate_init=0.01,
                                                         random_state=0))
    _quiet(pipe, X_tr, y_tr)
    assert pipe.score(X_te, y_te) > 0.9
    grid = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1e-2],
                               "mlpclassifier__hidden_layer_sizes": [(16,), (32,)]}, cv=2)
    _quiet(grid, X_tr, y_tr)
    assert set(grid.best_params_) == {"mlpclassifier__alpha", "mlpclassifier__hidden_layer_sizes"}
    assert len(grid.cv_results_["mean_test_score"]) == 4
    assert grid.score(X_te, y_te) > 0.9
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(pipe, X_tr, y_tr, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.85


# -- accuracy against scikit-learn's MLP: same network, epochs, batches, initial weights ----
@pytest.mark.parametrize("data", ["digits", "breast_cancer"])
def test_accuracy_at_least_sklearn(data: str) -> None:
    """Both start from the same weights (drawn from random_state as scikit-learn draws them)
    and train with Adam on batches of 200 for 30 epochs. A run of both at random_state 0..4
    (test accuracy, steadygrad / scikit-learn): digits 0.9644/0.9644, 0.9600/0.9600,
    0.9622/0.9600, 0.9556/0.9533, 0.9511/0.9511; breast_cancer 0.9650/0.9650, 0.9510/0.9510,
    0.9301/0.9301, 0.9371/0.9441, 0.9580/0.9510. The widest gap was one test sample of
    breast_cancer's 143 (0.007) either way, so 0.01 is the margin."""
    X, y = load_digits(return_X_y=True) if data == "digits" else load_breast_cancer(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    scaler = StandardScaler().fit(X_tr)
    X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)
    params = dict(hidden_layer_sizes=(64,), max_iter=30, random_state=0)
    ours = _quiet(MLPClassifier(**params), X_tr, y_tr)
    theirs = _quiet(SkClassifier(**params), X_tr, y_tr)
    assert ours.n_iter_ == theirs.n_iter_ == 30
    assert ours.score(X_te, y_te) >= theirs.score(X_te, y_te) - 0.01
    # Same start, same algorithm: the first epoch's loss agrees closely (float32 vs float64).
    assert ours.loss_curve_[0] == pytest.approx(theirs.loss_curve_[0], rel=1e-2)


@pytest.mark.parametrize("outputs", [1, 2])
def test_regressor_r2_at_least_sklearn(outputs: int) -> None:
    """diabetes (standardised; the second output is the first squared), 64 hidden, 50
    epochs, same initial weights. A run at random_state 0..4 (R^2 steadygrad / scikit-learn):
    one output 0.3522/0.3508, 0.3532/0.3540, 0.3279/0.3304, 0.3592/0.3575, 0.3110/0.3074;
    two outputs 0.0986/0.0999, 0.1629/0.1604, 0.1939/0.1986, 0.1576/0.1569, 0.1677/0.1663:
    gaps within 0.005, so 0.01 is the margin."""
    X, y = load_diabetes(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=0)
    scaler = StandardScaler().fit(X_tr)
    X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)
    mean, std = y_tr.mean(), y_tr.std()
    y_tr, y_te = (y_tr - mean) / std, (y_te - mean) / std
    if outputs == 2:
        y_tr, y_te = np.stack([y_tr, y_tr**2], axis=1), np.stack([y_te, y_te**2], axis=1)
    params = dict(hidden_layer_sizes=(64,), max_iter=50, random_state=0)
    ours = _quiet(MLPRegressor(**params), X_tr, y_tr)
    theirs = _quiet(SkRegressor(**params), X_tr, y_tr)
    assert ours.predict(X_te).shape == y_te.shape
    assert ours.score(X_te, y_te) >= theirs.score(X_te, y_te) - 0.01


# -- alpha: scikit-learn's loss and gradient, in float64 numpy -------------------------------
ACT = {"relu": lambda z: np.maximum(z, 0.0), "tanh": np.tanh, "identity": lambda z: z,
       "logistic": lambda z: 1.0 / (1.0 + np.exp(-z))}
DACT = {"relu": lambda a: (a > 0).astype(np.float64), "tanh": lambda a: 1.0 - a * a,
        "identity": np.ones_like, "logistic": lambda a: a * (1.0 - a)}


def _forward(coefs: list[np.ndarray], intercepts: list[np.ndarray], X: np.ndarray, act: str,
             out: str) -> list[np.ndarray]:
    a = [X.astype(np.float64)]
    for i, (W, b) in enumerate(zip(coefs, intercepts, strict=True)):
        z = a[-1] @ W.astype(np.float64) + b.astype(np.float64)
        if i < len(coefs) - 1:
            a.append(ACT[act](z))
        elif out == "softmax":
            e = np.exp(z - z.max(axis=1, keepdims=True))
            a.append(e / e.sum(axis=1, keepdims=True))
        else:
            a.append(ACT[out](z))
    return a


def _sklearn_loss(coefs: list[np.ndarray], intercepts: list[np.ndarray], X: np.ndarray,
                  Y: np.ndarray, alpha: float, act: str, out: str) -> float:
    """scikit-learn's batch loss (its own loss functions) plus 0.5 * alpha * ||W||^2 / n."""
    pred = _forward(coefs, intercepts, X, act, out)[-1]
    name = {"softmax": "log_loss", "logistic": "binary_log_loss", "identity": "squared_error"}[out]
    penalty = sum(float(np.sum(W.astype(np.float64) ** 2)) for W in coefs)
    return float(LOSS_FUNCTIONS[name](Y, pred)) + 0.5 * alpha * penalty / len(X)


def _sklearn_grads(coefs: list[np.ndarray], intercepts: list[np.ndarray], X: np.ndarray,
                   Y: np.ndarray, alpha: float, act: str, out: str) -> tuple[list[np.ndarray], ...]:
    """scikit-learn's backprop: delta = output - Y (canonical links), (a^T delta + alpha W) / n."""
    a = _forward(coefs, intercepts, X, act, out)
    n = len(X)
    delta = a[-1] - Y
    gw: list[np.ndarray] = [np.empty(0)] * len(coefs)
    gb: list[np.ndarray] = [np.empty(0)] * len(coefs)
    for i in range(len(coefs) - 1, -1, -1):
        gw[i] = (a[i].T @ delta + alpha * coefs[i].astype(np.float64)) / n
        gb[i] = delta.mean(axis=0)
        if i:
            delta = (delta @ coefs[i].T.astype(np.float64)) * DACT[act](a[i])
    return gw, gb


def _problems() -> list[tuple[str, Any, np.ndarray, np.ndarray, str]]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 3))
    multi = rng.integers(0, 3, 12)
    binary = (X[:, 0] > 0).astype(np.int64)
    labels = (rng.random((12, 3)) > 0.5).astype(np.int64)
    values = np.stack([X[:, 0] - X[:, 1], X[:, 2] * 2.0], axis=1)
    return [("multiclass", MLPClassifier, X, multi, "softmax"),
            ("binary", MLPClassifier, X, binary, "logistic"),
            ("multilabel", MLPClassifier, X, labels, "logistic"),
            ("multioutput", MLPRegressor, X, values, "identity")]


def _targets(est: Any, y: np.ndarray) -> np.ndarray:
    if isinstance(est, MLPClassifier):
        return np.asarray(est._label_binarizer.transform(y), dtype=np.float64)
    return y.reshape(len(y), -1).astype(np.float64)


@pytest.mark.parametrize("act", ["relu", "tanh"])
@pytest.mark.parametrize("problem", _problems(), ids=lambda p: p[0])
def test_alpha_in_loss_matches_sklearns_formula(problem: Any, act: str) -> None:
    """loss_ of one full-batch epoch is scikit-learn's loss at the weights it started from
    (those of the previous fit, warm_start), L2 term included; alpha large enough to matter."""
    _, cls, X, y, out = problem
    alpha = 0.5
    est = _quiet(cls(hidden_layer_sizes=(5, 4), activation=act, alpha=alpha, batch_size=len(X),
                     max_iter=3, random_state=0), X, y)
    assert est.out_activation_ == out
    coefs, intercepts = est.coefs_, est.intercepts_
    assert [W.shape for W in coefs] == [(3, 5), (5, 4), (4, est.n_outputs_)]
    expected = _sklearn_loss(coefs, intercepts, X, _targets(est, y), alpha, act, out)
    penalty = 0.5 * alpha * sum(float(np.sum(W.astype(np.float64) ** 2)) for W in coefs) / len(X)
    assert penalty > 0.01 * expected  # the L2 term is a visible part of the loss
    est.set_params(warm_start=True, max_iter=1)
    _quiet(est, X, y)
    assert est.loss_ == pytest.approx(expected, rel=2e-6)
    assert len(est.loss_curve_) == 4


@pytest.mark.parametrize("problem", _problems(), ids=lambda p: p[0])
def test_alpha_in_gradient_matches_sklearn_over_uneven_batches(problem: Any) -> None:
    """One epoch of plain SGD over batches of 5, 5 and 2 (no shuffle): each step is
    scikit-learn's gradient with alpha * W / batch size on the weights only; loss_ the
    size-weighted mean of the batch losses. Checked against float64 numpy, step by step."""
    _, cls, X, y, out = problem
    alpha, lr = 0.3, 0.1
    est = _quiet(cls(hidden_layer_sizes=(4,), activation="tanh", alpha=alpha, max_iter=1,
                     random_state=1), X, y)
    Y = _targets(est, y)
    coefs = [W.astype(np.float64) for W in est.coefs_]
    intercepts = [b.astype(np.float64) for b in est.intercepts_]
    est.set_params(warm_start=True, solver="sgd", momentum=0.0, learning_rate_init=lr,
                   batch_size=5, shuffle=False)
    total = 0.0
    for lo in range(0, len(X), 5):
        xb, yb = X[lo:lo + 5], Y[lo:lo + 5]
        total += _sklearn_loss(coefs, intercepts, xb, yb, alpha, "tanh", out) * len(xb)
        gw, gb = _sklearn_grads(coefs, intercepts, xb, yb, alpha, "tanh", out)
        coefs = [W - lr * g for W, g in zip(coefs, gw, strict=True)]
        intercepts = [b - lr * g for b, g in zip(intercepts, gb, strict=True)]
    _quiet(est, X, y)
    for got, want in zip(est.coefs_ + est.intercepts_, coefs + intercepts, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert est.loss_ == pytest.approx(total / len(X), rel=1e-5)


# -- partial_fit, warm_start, pickling -------------------------------------------------------
@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_partial_fit_epochs_equal_fit(cls: Any) -> None:
    """k partial_fit calls (no shuffling) are the k epochs of fit(max_iter=k), bit for bit:
    same initial weights, same batches, one optimizer carried across the calls."""
    X, y = load_digits(return_X_y=True)
    X = X[:300] / 16.0
    y = y[:300] if cls is MLPClassifier else X[:, :2] @ np.array([1.0, -2.0]) + y[:300] / 10
    params = dict(hidden_layer_sizes=(20,), shuffle=False, random_state=3, batch_size=64)
    full = _quiet(cls(max_iter=4, **params), X, y)
    inc = cls(**params)
    for _ in range(4):
        if cls is MLPClassifier:
            inc.partial_fit(X, y, classes=np.arange(10))
        else:
            inc.partial_fit(X, y)
    assert inc.n_iter_ == 1 and inc.t_ == full.t_ == 4 * 300
    assert inc.loss_curve_ == full.loss_curve_
    for a, b in zip(inc.coefs_ + inc.intercepts_, full.coefs_ + full.intercepts_, strict=True):
        np.testing.assert_array_equal(a, b)


def test_partial_fit_needs_classes_first_and_keeps_them() -> None:
    X, y = load_digits(return_X_y=True)
    clf = MLPClassifier(hidden_layer_sizes=(8,), random_state=0)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(X[:50], y[:50])
    clf.partial_fit(X[:50], y[:50] % 3, classes=[0, 1, 2, 7])
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2, 7])
    assert clf.predict_proba(X[:5]).shape == (5, 4)
    with pytest.raises(ValueError, match="classes not in"):
        clf.partial_fit(X[:50], y[:50])


def test_warm_start_continues_from_fitted_weights() -> None:
    X_tr, _, y_tr, _ = _digits()
    X_tr = X_tr / 16.0
    clf = _quiet(MLPClassifier(hidden_layer_sizes=(32,), max_iter=3, random_state=0), X_tr, y_tr)
    first = list(clf.loss_curve_)
    clf.set_params(warm_start=True, max_iter=3)
    _quiet(clf, X_tr, y_tr)
    assert clf.n_iter_ == 3 and len(clf.loss_curve_) == 6 and clf.loss_curve_[:3] == first
    assert clf.loss_curve_[3] < first[2]  # picked up where it stopped, not from a new start
    fresh = _quiet(MLPClassifier(hidden_layer_sizes=(32,), max_iter=3, random_state=0), X_tr, y_tr)
    assert fresh.loss_curve_ == first  # without warm_start a fit starts over
    with pytest.raises(ValueError, match="warm_start can only be used"):
        clf.fit(X_tr, y_tr % 5)


def test_pickle_keeps_network_and_optimizer() -> None:
    X, y = load_digits(return_X_y=True)
    X = X[:200] / 16.0
    clf = MLPClassifier(hidden_layer_sizes=(16,), shuffle=False, random_state=0)
    clf.partial_fit(X, y[:200], classes=np.arange(10))
    copy = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(copy.predict_proba(X), clf.predict_proba(X))
    clf.partial_fit(X, y[:200])
    copy.partial_fit(X, y[:200])  # Adam's moments and step came along
    np.testing.assert_array_equal(copy.coefs_[0], clf.coefs_[0])


# -- convergence, schedules, early stopping: scikit-learn's counts ---------------------------
def _blobs() -> tuple[np.ndarray, np.ndarray]:
    return make_classification(n_samples=200, n_features=6, random_state=0)


@pytest.mark.parametrize("params", [
    dict(tol=1e9),
    dict(tol=1e9, n_iter_no_change=3),
    dict(solver="sgd", learning_rate="adaptive", tol=1e9, n_iter_no_change=2),
    dict(early_stopping=True, tol=1e9, n_iter_no_change=4),
], ids=["tol", "n_iter_no_change", "adaptive", "early_stopping"])
def test_stopping_epochs_match_sklearn(params: dict[str, Any]) -> None:
    """With a tol no epoch can meet, when training stops depends only on the counting rules:
    n_iter_ equals scikit-learn's (adaptive: the learning rate is divided by 5 until <= 1e-6)."""
    X, y = _blobs()
    common = dict(hidden_layer_sizes=(8,), max_iter=100, random_state=0, **params)
    ours = MLPClassifier(**common).fit(X, y)
    theirs = SkClassifier(**common).fit(X, y)
    assert 1 < ours.n_iter_ == theirs.n_iter_ < 100
    assert len(ours.loss_curve_) == ours.n_iter_
    if params.get("early_stopping"):
        assert ours.validation_scores_ is not None and len(ours.validation_scores_) == ours.n_iter_
        assert ours.validation_scores_ == pytest.approx(theirs.validation_scores_, abs=0.051)
        assert ours.best_validation_score_ == max(ours.validation_scores_)
        assert ours.best_loss_ is None
    else:
        assert ours.best_loss_ == min(ours.loss_curve_) and ours.validation_scores_ is None
    if params.get("learning_rate") == "adaptive":
        assert ours._optimizer.param_groups[0]["lr"] <= 1e-6


def test_early_stopping_restores_the_best_epoch() -> None:
    """Stopped 3 epochs after its best validation score, the estimator holds the weights of
    that epoch: those of the same fit run for exactly that many epochs (same split, same
    batches; its last epoch is its best, so its restore changes nothing)."""
    X, y = load_digits(return_X_y=True)
    X, y = X[:400] / 16.0, y[:400]
    params = dict(hidden_layer_sizes=(16,), early_stopping=True, tol=0.0, n_iter_no_change=2,
                  learning_rate_init=0.2, random_state=0)
    ours = MLPClassifier(max_iter=200, **params).fit(X, y)
    assert ours.validation_scores_ is not None
    best = int(np.argmax(ours.validation_scores_)) + 1
    assert best == ours.n_iter_ - 3 and ours.validation_scores_[-1] < ours.best_validation_score_
    ref = _quiet(MLPClassifier(max_iter=best, **params), X, y)
    assert ref.best_validation_score_ == ours.best_validation_score_
    for a, b in zip(ours.coefs_ + ours.intercepts_, ref.coefs_ + ref.intercepts_, strict=True):
        np.testing.assert_array_equal(a, b)


def test_convergence_warning_at_max_iter_and_invscaling() -> None:
    X, y = _blobs()
    clf = MLPClassifier(hidden_layer_sizes=(8,), solver="sgd", learning_rate="invscaling",
                        learning_rate_init=0.1, power_t=0.25, max_iter=3, random_state=0)
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(3\) reached"):
        clf.fit(X, y)
    assert clf.t_ == 600
    for g in clf._optimizer.param_groups:
        assert g["lr"] == pytest.approx(0.1 / (600 + 1) ** 0.25)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf.partial_fit(X, y)  # one epoch by design: no warning


# -- outputs, attributes, arguments ---------------------------------------------------------
def test_multilabel_and_multioutput_shapes() -> None:
    X, y = _blobs()
    Y = np.stack([y, 1 - y, (X[:, 0] > 0).astype(int)], axis=1)
    clf = _quiet(MLPClassifier(hidden_layer_sizes=(8,), max_iter=50, random_state=0), X, Y)
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 3
    assert clf.predict(X).shape == (200, 3) and set(np.unique(clf.predict(X))) <= {0, 1}
    assert clf.predict_proba(X).shape == (200, 3)
    reg = _quiet(MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0), X, Y * 1.5)
    assert reg.predict(X).shape == (200, 3) and reg.n_outputs_ == 3
    reg1 = _quiet(MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0), X, Y[:, 0])
    assert reg1.predict(X).shape == (200,)


def test_probabilities_binary_and_multiclass() -> None:
    X, y = _blobs()
    clf = _quiet(MLPClassifier(hidden_layer_sizes=(8,), max_iter=20, random_state=0), X,
                 np.where(y == 1, "yes", "no"))
    np.testing.assert_array_equal(clf.classes_, ["no", "yes"])
    p = clf.predict_proba(X)
    assert p.dtype == np.float64 and p.shape == (200, 2)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[p.argmax(axis=1)])
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(p))
    # the network's output is the logit: predict_proba is its sigmoid in float64
    z = sg.predict(clf.model_, X.astype(np.float32)).astype(np.float64)[:, 0]
    np.testing.assert_allclose(p[:, 1], 1.0 / (1.0 + np.exp(-z)), rtol=1e-12)


def test_steadygrad_options_build_the_network() -> None:
    X_tr, X_te, y_tr, y_te = _digits()
    X_tr, X_te = X_tr / 16.0, X_te / 16.0
    params = dict(hidden_layer_sizes=(32, 16), learning_rate_init=0.01, max_iter=10, random_state=0)
    clf = _quiet(MLPClassifier(batch_norm=True, dropout=0.1, max_grad_norm=1.0, n_threads=1,
                               **params), X_tr, y_tr)
    kinds = [type(m) for m in clf.model_]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Dropout] * 2 + [nn.Linear]
    assert clf._optimizer.max_grad_norm == 1.0
    plain = _quiet(MLPClassifier(**params), X_tr, y_tr)
    assert clf.score(X_te, y_te) > 0.9 and plain.score(X_te, y_te) > 0.9
    before = sg.get_num_threads()
    clf.set_params(n_threads=2).predict(X_te)
    assert sg.get_num_threads() == before  # the thread count is restored after each call


@pytest.mark.parametrize("params, match", [
    (dict(solver="lbfgs"), "solver='lbfgs' is not supported"),
    (dict(activation="softsign"), "'activation' parameter"),
    (dict(hidden_layer_sizes=(10, 0)), "hidden_layer_sizes must be positive integers"),
    (dict(alpha=-1.0), "'alpha' parameter"),
    (dict(batch_size=0), "'batch_size' parameter"),
    (dict(dropout=1.0), "'dropout' parameter"),
])
def test_bad_parameters_raise_at_fit(params: dict[str, Any], match: str) -> None:
    X, y = _blobs()
    clf = MLPClassifier(**params)  # scikit-learn's rule: __init__ and set_params never raise
    with pytest.raises(ValueError, match=match):
        clf.fit(X, y)
    assert not hasattr(clf, "model_")


def test_partial_fit_refuses_early_stopping_before_building() -> None:
    X, y = _blobs()
    clf = MLPClassifier(early_stopping=True)
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping=True"):
        clf.partial_fit(X, y, classes=[0, 1])
    assert not hasattr(clf, "model_")


def test_verbose_prints_sklearns_lines_and_batch_size_is_clipped(capsys: pytest.CaptureFixture[str]) -> None:
    X, y = _blobs()
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, batch_size=500, verbose=True,
                        random_state=0)
    with pytest.warns(UserWarning, match="It is going to be clipped"), \
            pytest.warns(ConvergenceWarning):
        clf.fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"Iteration {i + 1}, loss = {loss:.8f}" for i, loss in enumerate(clf.loss_curve_)]


def test_feature_names_from_a_dataframe() -> None:
    pd = pytest.importorskip("pandas", reason="pandas is in the test extras")
    X, y = _blobs()
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(6)])
    clf = _quiet(MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0), df, y)
    np.testing.assert_array_equal(clf.feature_names_in_, df.columns)
    with pytest.warns(UserWarning, match="feature names"):
        clf.predict(X)


def test_import_error_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "steadygrad.sklearn" or m.startswith("steadygrad.sklearn.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn raises ImportError
    with pytest.raises(ImportError, match="pip install scikit-learn"):
        import steadygrad.sklearn  # noqa: F401


def test_guide_page_examples_run(capsys: pytest.CaptureFixture[str]) -> None:
    """docs/sklearn.md's code blocks run as written and print what the page says they do."""
    page = (Path(__file__).resolve().parent.parent / "docs" / "sklearn.md").read_text()
    blocks = [b.split("```", 1)[0] for b in page.split("```python\n")[1:]]
    assert len(blocks) == 2
    for block in blocks:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # the page says it warns
            exec(compile(block, "docs/sklearn.md", "exec"), {})
    out = capsys.readouterr().out
    accuracy = float(out.split("test accuracy")[1].split()[0])
    assert accuracy > 0.9 and "best {" in out and "Sequential" in out
