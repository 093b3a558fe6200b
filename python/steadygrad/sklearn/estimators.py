"""MLPClassifier and MLPRegressor: scikit-learn's multi-layer perceptrons trained by steadygrad."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.metrics import accuracy_score, r2_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.multiclass import (
    _check_partial_fit_first_call,
    check_classification_targets,
    type_of_target,
    unique_labels,
)
from sklearn.utils.validation import column_or_1d, validate_data

from steadygrad.sklearn._base import BaseMLP


class MLPClassifier(ClassifierMixin, BaseMLP):
    """Multi-layer perceptron classifier (scikit-learn's MLPClassifier API) trained by
    steadygrad: a softmax output for multiclass y, logistic outputs for binary and
    multi-label (2-d 0/1 indicator) y, scikit-learn's log loss.

    Parameters with scikit-learn's names and defaults: hidden_layer_sizes=(100,),
    activation ('identity', 'logistic', 'tanh', 'relu'), solver ('adam' or 'sgd'; 'lbfgs'
    raises ValueError), alpha (L2 term on the weights, scikit-learn's formula), batch_size
    ('auto' = min(200, n_samples)), learning_rate ('constant', 'invscaling', 'adaptive'; 'sgd'
    only), learning_rate_init, power_t, max_iter (epochs), shuffle, random_state (the initial
    weights, drawn as scikit-learn draws them, the shuffling and the validation split), tol,
    verbose, warm_start, momentum, nesterovs_momentum, early_stopping, validation_fraction,
    beta_1, beta_2, epsilon, n_iter_no_change. steadygrad's own: batch_norm (a BatchNorm1d
    after each hidden Linear), max_grad_norm (gradient clipping fused into the step), dropout
    (a Dropout after each hidden activation; its masks come from sg.manual_seed's generator),
    n_threads (sg's thread count during fit and predict; None leaves it).

    Attributes after fit: loss_, loss_curve_, best_loss_, validation_scores_ and
    best_validation_score_ (early_stopping), n_iter_, t_, n_features_in_, feature_names_in_
    (DataFrame input), n_outputs_, n_layers_, out_activation_, coefs_ / intercepts_ (copies
    of the Linear layers' parameters in scikit-learn's (in, out) layout) and model_, the
    trained steadygrad nn.Sequential (its output is the pre-activation: logits for a
    classifier). Sparse input is refused (densify it first); float64 data trains in float32.
    classes_ holds the class labels (from a LabelBinarizer, as scikit-learn's).
    """

    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool) -> tuple[np.ndarray, np.ndarray]:
        X, y = validate_data(self, X, y, multi_output=True, dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError("warm_start can only be used where `y` has the same classes as in "
                                     f"the previous call to fit. Previously got {self.classes_}, `y` has "
                                     f"{classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has "
                                 f"{self.classes_}. 'y' has {classes}.")
        return np.asarray(X, dtype=np.float32), self._label_binarizer.transform(y).astype(np.float32)

    def _out_activation(self) -> str:
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _val_targets(self, Y_val: np.ndarray) -> Any:
        return self._label_binarizer.inverse_transform(Y_val)

    def _labels(self, proba: np.ndarray) -> Any:
        return self._label_binarizer.inverse_transform(proba.ravel() if self.n_outputs_ == 1 else proba)

    def _score(self, X: np.ndarray, y: Any) -> float:
        proba = self._forward(X, check_input=False)
        return float(accuracy_score(y, self._labels(proba))) if np.isfinite(proba).all() else np.nan

    def fit(self, X: Any, y: Any) -> MLPClassifier:
        """Trains a new network on X (n_samples, n_features) and labels y (n_samples,), or a
        0/1 indicator matrix (n_samples, n_classes) for multi-label, for up to max_iter epochs
        (with warm_start: continues from the fitted network, with a new optimizer)."""
        self._fit(X, y, incremental=False)
        return self

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> MLPClassifier:
        """One epoch over (X, y), continuing the network and its optimizer. The first call
        needs classes= (every label of the whole data set), as scikit-learn's."""
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y if type_of_target(y).startswith("multilabel") else classes)
        self._fit(X, y, incremental=True)
        return self

    def predict(self, X: Any) -> Any:
        """The predicted class of each row of X (an indicator matrix for multi-label)."""
        return self._labels(self._forward(X))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (n_samples, n_classes), in the order of classes_ (float64)."""
        proba = self._forward(X)
        if self.n_outputs_ == 1:
            return np.hstack([1.0 - proba, proba])
        return proba

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """log(predict_proba(X))."""
        proba = self.predict_proba(X)
        log: np.ndarray = np.log(proba, out=proba)
        return log

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, BaseMLP):
    """Multi-layer perceptron regressor (scikit-learn's MLPRegressor API) trained by
    steadygrad: identity output, scikit-learn's half squared error; y may have several
    outputs (n_samples, n_outputs). Parameters and attributes are MLPClassifier's (see its
    docstring), less classes_; out_activation_ is 'identity' and score is R^2.
    """

    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool) -> tuple[np.ndarray, np.ndarray]:
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return np.asarray(X, dtype=np.float32), np.asarray(y, dtype=np.float32)

    def _out_activation(self) -> str:
        return "identity"

    def _values(self, out: np.ndarray) -> np.ndarray:
        return out.ravel() if out.shape[1] == 1 else out

    def _score(self, X: np.ndarray, y: Any) -> float:
        pred = self._values(self._forward(X, check_input=False))
        return float(r2_score(y, pred)) if np.isfinite(pred).all() else np.nan

    def fit(self, X: Any, y: Any) -> MLPRegressor:
        """Trains a new network on X (n_samples, n_features) and targets y (n_samples,) or
        (n_samples, n_outputs) for up to max_iter epochs (warm_start: continues)."""
        self._fit(X, y, incremental=False)
        return self

    def partial_fit(self, X: Any, y: Any) -> MLPRegressor:
        """One epoch over (X, y), continuing the network and its optimizer."""
        self._fit(X, y, incremental=True)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predicted values, (n_samples,) for one output, else (n_samples, n_outputs) (float64)."""
        return self._values(self._forward(X))

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags
