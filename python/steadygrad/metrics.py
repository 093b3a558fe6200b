"""The metrics sg.fit and sg.evaluate log by name (`metrics=["accuracy", "top5", "mae"]`), and
the registry users extend: `sg.metrics.register("name", fn)`.

A metric is a function `fn(pred, target) -> per-sample values`: pred is the model's output
for a batch, target the batch's targets (as fit was given them), and it returns a 1-D array
of one value per sample. fit logs its mean over the epoch's trained samples (unweighted:
sample_weight and class_weight weight the loss only, as Keras' `metrics`), and `val_<name>`
over the validation data. A metric that does not suit the model's output or the targets
raises ValueError (fit tries every metric on two targets before the first step). Imports
nothing of steadygrad."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["accuracy", "get", "mean_absolute_error", "mean_squared_error", "names", "register",
           "top_k_accuracy"]

MetricFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

_REGISTRY: dict[str, MetricFn] = {}


def register(name: str, fn: MetricFn, *, replace: bool = False) -> None:
    """Make `fn` available to fit/evaluate as metrics=[name]. Registering a name that exists
    raises unless replace=True (the built-ins too)."""
    if not isinstance(name, str) or not name or name.startswith("val_"):
        raise ValueError(f"metrics.register: name must be a non-empty str not starting with 'val_' "
                         f"(fit adds that prefix for validation), got {name!r}")
    if name in ("loss", "lr") or name.startswith("grad_norm"):
        raise ValueError(f"metrics.register: {name!r} is a name fit already logs")
    if not callable(fn):
        raise TypeError(f"metrics.register: fn must be callable(pred, target), got {type(fn).__name__}")
    if name in _REGISTRY and not replace:
        raise ValueError(f"metrics.register: {name!r} is registered already (pass replace=True)")
    _REGISTRY[name] = fn


def names() -> list[str]:
    """The registered metric names, sorted (the built-ins and those added by register)."""
    return sorted(_REGISTRY)


def get(name: str) -> MetricFn:
    """The registered metric `name`; an unknown name raises ValueError listing the known ones."""
    fn = _REGISTRY.get(name) if isinstance(name, str) else None
    if fn is None:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(names())} "
                         "(add one with sg.metrics.register(name, fn))")
    return fn


def _per_sample(values: object) -> np.ndarray:
    out: np.ndarray = np.asarray(values, dtype=np.float64)
    return out


def _scores(pred: np.ndarray, target: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(batch, C) scores and 1-D integer class labels for a classification metric."""
    if pred.ndim != 2 or pred.shape[1] < 2:
        raise ValueError(f"{what} needs a (batch, classes) output, got shape {pred.shape}")
    if target.dtype.kind not in "iu" or target.shape != pred.shape[:1]:
        raise ValueError(f"{what} needs integer class labels of shape ({len(pred)},), got "
                         f"{target.dtype} targets of shape {target.shape}")
    return pred, target


def accuracy(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """1 where the prediction is right: argmax over classes against integer labels, or
    against the argmax of one-hot/soft targets of the output's shape; for one output (a
    logit) positive against a target > 0.5 (an integer target > 0)."""
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.ndim == 2 and pred.shape[1] > 1:
        if target.shape == pred.shape and target.dtype.kind == "f":
            return _per_sample(pred.argmax(axis=1) == target.argmax(axis=1))
        pred, target = _scores(pred, target, "accuracy")
        return _per_sample(pred.argmax(axis=1) == target)
    if pred.size != len(pred) or target.size != len(pred):
        raise ValueError(f"accuracy needs class scores (batch, C) or one logit per sample, got an "
                         f"output of shape {pred.shape} for targets of shape {target.shape}")
    positive = target > 0 if target.dtype.kind in "iub" else target > 0.5
    return _per_sample((pred.reshape(-1) > 0) == positive.reshape(-1))


def top_k_accuracy(k: int) -> MetricFn:
    """The metric "the label is among the k highest scores", named f"top{k}": a sample counts
    when fewer than k classes score strictly higher than its label (a score tied with the
    label's does not push it out)."""

    def top_k(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
        pred, target = _scores(np.asarray(pred), np.asarray(target), f"top{k}")
        if pred.shape[1] < k:
            raise ValueError(f"top{k} needs at least {k} classes, the output has {pred.shape[1]}")
        label_score = np.take_along_axis(pred, target[:, None].astype(np.intp), axis=1)
        # the label ranks among the k best when fewer than k scores beat it
        return _per_sample(np.count_nonzero(pred > label_score, axis=1) < k)

    top_k.__name__ = f"top{k}"
    return top_k


def _residual(pred: np.ndarray, target: np.ndarray, what: str) -> np.ndarray:
    pred, target = np.asarray(pred), np.asarray(target)
    if target.size != pred.size or len(target) != len(pred):
        raise ValueError(f"{what} needs one target per output value, got an output of shape "
                         f"{pred.shape} for targets of shape {target.shape}")
    return _per_sample(pred.astype(np.float64) - target.reshape(pred.shape)).reshape(len(pred), -1)


def mean_absolute_error(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per sample: the mean of |pred - target| over the sample's outputs."""
    return _per_sample(np.abs(_residual(pred, target, "mae")).mean(axis=1))


def mean_squared_error(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per sample: the mean of (pred - target)^2 over the sample's outputs."""
    return _per_sample(np.square(_residual(pred, target, "mse")).mean(axis=1))


register("accuracy", accuracy)
register("top5", top_k_accuracy(5))
register("mae", mean_absolute_error)
register("mse", mean_squared_error)
