"""`sg.evaluate` and `sg.predict`: the model in eval mode over batches of the data (and fit's
validation pass, `evaluated`, which is evaluate after its argument checks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from steadygrad import _introspect as intro
from steadygrad.data.batching import shard_bounds
from steadygrad.metrics import MetricFn
from steadygrad.training import checks as check
from steadygrad.training import inputs
from steadygrad.training.checks import Mode
from steadygrad.training.run import Arrays, account, batch_loss, means, summed

__all__ = ["evaluate", "predict"]


def evaluate(model: Any, loss_fn: Any, x: Any, y: Any, batch_size: int = 256, *,
             sample_weight: Any = None, metrics: Sequence[str] | None = None) -> dict[str, float]:
    """Mean loss and the metrics (default: accuracy for integer targets) over (x, y), in eval
    mode, batched; the model's previous train/eval mode is restored. sample_weight weighs a
    loss with reduction='none' as fit does: sum(w * loss) / number of samples. A
    DistributedDataParallel model over several ranks evaluates each rank's contiguous share
    and returns the whole data's means on every rank."""
    x, y = check.data(x, y, "evaluate", intro.integer_input(model))
    batch_size = check.count(batch_size, "evaluate: batch_size")
    w = inputs.sample_weights(sample_weight, len(x), "evaluate: sample_weight")
    if w is not None:
        inputs.per_sample_loss(loss_fn, "evaluate", "sample_weight needs")
    fns = inputs.metric_fns(metrics, y, check.output_shape(model, x, "evaluate"), "evaluate")
    return evaluated(model, loss_fn, (x, y, w), batch_size, fns)


def evaluated(model: Any, loss_fn: Any, data: Arrays, batch_size: int,
               fns: tuple[tuple[str, MetricFn], ...]) -> dict[str, float]:
    x, y, w = data
    comm = intro.communicator(model)  # data parallel: each rank its share, sums reduced
    if comm is not None:
        lo, hi = shard_bounds(len(x), comm.rank, comm.size)
        x, y, w = x[lo:hi], y[lo:hi], None if w is None else w[lo:hi]
    acc = {"loss_sum": 0.0, "n": 0}
    with Mode(model, training=False):
        for lo in range(0, len(x), batch_size):
            hi = lo + batch_size
            pred = model(x[lo:hi])
            loss, _ = batch_loss(loss_fn, pred, y[lo:hi], None if w is None else w[lo:hi])
            account(acc, loss, pred, y[lo:hi], None, fns)
    return means(summed(acc, comm), tuple(name for name, _ in fns))


def predict(model: Any, x: Any, batch_size: int = 256) -> np.ndarray:
    """Model outputs for every row of x, batched, in eval mode (previous mode restored)."""
    x = check.features(x, "predict: x", intro.integer_input(model))
    batch_size = check.count(batch_size, "predict: batch_size")
    out: np.ndarray | None = None
    with Mode(model, training=False):
        for lo in range(0, len(x), batch_size):
            pred = np.asarray(model(x[lo : lo + batch_size]))
            if out is None:
                out = np.empty((len(x), *pred.shape[1:]), dtype=pred.dtype)
            out[lo : lo + len(pred)] = pred  # copy: layers may reuse their output buffers
    assert out is not None
    return out
