"""The steadygrad side of the estimators: the network a parameter set describes (initialised
as scikit-learn's MLP draws its weights), the loss scaled to scikit-learn's definition
and the (in, out) views of its weights."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np

from steadygrad import nn

ACTIVATIONS = {"identity": nn.Identity, "logistic": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}


def build(units: Sequence[int], activation: str, batch_norm: bool, dropout: float,
          rs: np.random.RandomState) -> nn.Sequential:
    """Linear layers through `units` (inputs, hidden..., outputs), each hidden one followed by
    [BatchNorm1d], the activation and [Dropout]. Weights and biases are drawn from `rs` in
    scikit-learn's order and law (Glorot uniform, bound sqrt(f / (fan_in + fan_out)), f = 2
    for 'logistic', 6 otherwise), so one random_state gives both libraries the same start."""
    layers: list[nn.Module] = []
    linears: list[nn.Linear] = []
    for i, (fan_in, fan_out) in enumerate(pairwise(units)):
        lin = nn.Linear(fan_in, fan_out)
        linears.append(lin)
        layers.append(lin)
        if i < len(units) - 2:
            if batch_norm:
                layers.append(nn.BatchNorm1d(fan_out))
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    model = nn.Sequential(*layers)
    factor = 2.0 if activation == "logistic" else 6.0
    for lin in linears:
        fan_out, fan_in = lin.weight.shape
        bound = np.sqrt(factor / (fan_in + fan_out))
        lin.weight.data = rs.uniform(-bound, bound, (fan_in, fan_out)).T
        assert lin.bias is not None
        lin.bias.data = rs.uniform(-bound, bound, fan_out)
    return model


def linears(model: nn.Sequential) -> list[nn.Linear]:
    """The network's Linear layers, input side first."""
    return [m for m in model if isinstance(m, nn.Linear)]


def coefs(model: nn.Sequential) -> list[np.ndarray]:
    """Each Linear's weight as a new (in, out) array, scikit-learn's coefs_ layout."""
    return [np.array(lin.weight.data.T) for lin in linears(model)]


def intercepts(model: nn.Sequential) -> list[np.ndarray]:
    """Each Linear's bias as a new array, scikit-learn's intercepts_."""
    return [np.array(lin.bias.data) for lin in linears(model) if lin.bias is not None]


def param_groups(model: nn.Sequential) -> list[dict[str, Any]]:
    """Two groups: the Linear weights (which alpha's L2 term decays) and everything else."""
    weights = [lin.weight for lin in linears(model)]
    ids = {id(p) for p in weights}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return [{"params": weights}, {"params": rest, "weight_decay": 0.0}]


class ScaledLoss:
    """A steadygrad loss reported times `value_scale` and differentiated times `grad_scale`:
    scikit-learn's losses sum over outputs (binary log loss) or halve the mean squared error
    while its gradient is (prediction - y) / n_samples."""

    def __init__(self, loss: Any, value_scale: float, grad_scale: float) -> None:
        self.loss, self.value_scale, self.grad_scale = loss, value_scale, grad_scale

    def __call__(self, pred: np.ndarray, target: np.ndarray) -> float:
        return self.value_scale * float(self.loss(pred, target))

    def backward(self) -> np.ndarray:
        grad: np.ndarray = self.loss.backward(self.grad_scale)
        return grad

    def __repr__(self) -> str:
        return f"ScaledLoss({self.loss!r}, value_scale={self.value_scale}, grad_scale={self.grad_scale})"


