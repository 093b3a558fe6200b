"""Temporary per-layer taps for diagnostics: wraps each leaf layer's forward (and optionally
backward) on the instance, records summary statistics of what passes through, and unwraps.
Statistics are numpy reductions over arrays already computed, taken only when asked.

What a layer class may declare (class attributes, read with a default, so subclasses keep them
and any object can take part): `rectifier = True` (ReLU, LeakyReLU): a unit never positive
over the batch is dead, and the dead fraction is reported; `output_bounds = (lo, hi)` (Sigmoid,
Tanh): the fraction of outputs within SATURATION_MARGIN of a bound is reported as saturated;
`weight_layer = True` (Linear, Conv1d, Conv2d): `layer.weight` has shape (out, fan_in...), each
output a weighted sum of prod(weight.shape[1:]) inputs (in_features; in_channels/groups x the
kernel taps), which gives its init gain; its weight's rank - 2 is the number of spatial dims it
convolves over, which names the BatchNorm a suggestion recommends.

Units: statistics across the batch are per unit, a unit being one element of a sample's
output: a feature of a 2-D (N, F) output, a (channel, position) of a convolution's 3-D or 4-D
one. Their mean, mean std and dead fraction do not depend on the order of the units, so a
layer inside a channels-last run (nn._layout) reports what it would on torch's layout."""

from __future__ import annotations

from typing import Any

import numpy as np

from steadygrad._introspect import named_layers

SATURATION_MARGIN = 0.01


def is_rectifier(layer: Any) -> bool:
    return bool(getattr(layer, "rectifier", False))


def output_bounds(layer: Any) -> tuple[float, float] | None:
    bounds = getattr(layer, "output_bounds", None)
    return None if bounds is None else (float(bounds[0]), float(bounds[1]))


def is_weight_layer(layer: Any) -> bool:
    return bool(getattr(layer, "weight_layer", False)) and getattr(layer, "weight", None) is not None


def fan_in(layer: Any) -> int | None:
    """Inputs per output of a weight layer (torch's fan-in): in_features for Linear,
    in_channels/groups * prod(kernel_size) for a convolution; None for other layers."""
    if not is_weight_layer(layer):
        return None
    return int(np.prod(layer.weight.shape[1:]))


def spatial_dims(layer: Any) -> int:
    """Spatial dims a weight layer convolves over (0 for Linear); 0 for other layers."""
    return len(layer.weight.shape) - 2 if is_weight_layer(layer) else 0


def init_gain(layer: Any) -> float | None:
    """std(weight) * sqrt(fan_in): the factor by which the layer scales a unit-variance input
    (Kaiming for ReLU: sqrt(2); Xavier/LeCun for tanh: ~1; torch's default init: 1/sqrt(3))."""
    n = fan_in(layer)
    if n is None:
        return None
    w = np.asarray(layer.weight.data)
    return float(np.std(w, dtype=np.float64)) * float(np.sqrt(n))


def _column_moments(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-unit sums of x and x^2 over the batch, accumulated in float64 (two reductions, no
    temporaries beyond x*x; np.std would make three passes and two float64 copies)."""
    a2 = a.reshape(a.shape[0], -1)
    s1 = np.add.reduce(a2, axis=0, dtype=np.float64)
    s2 = np.add.reduce(np.square(a2, dtype=np.float64), axis=0)
    return s1, s2, a2.shape[0]


def _unit_std_from(s1: np.ndarray, s2: np.ndarray, n: int) -> float:
    mean = s1 / n
    var = np.maximum(s2 / n - mean * mean, 0.0)
    return float(np.mean(np.sqrt(var)))


def unit_std(a: np.ndarray) -> float:
    """Mean over units of the std across the batch: the part of the signal that differs between
    samples (a layer can have a large overall spread yet map every sample to the same output)."""
    a = np.asarray(a)
    if a.ndim < 2 or a.shape[0] < 2:
        return float(np.std(a, dtype=np.float64))
    return _unit_std_from(*_column_moments(a))


def act_stats(layer: Any, out: np.ndarray) -> dict[str, float]:
    out = np.asarray(out)
    if out.ndim < 2 or out.shape[0] < 2 or out.size == 0:
        s = {"mean": float(np.mean(out, dtype=np.float64)) if out.size else 0.0,
             "std": float(np.std(out, dtype=np.float64)) if out.size else 0.0}
        s["finite"] = bool(np.isfinite(s["mean"]) and np.isfinite(s["std"]))
    else:
        s1, s2, n = _column_moments(out)
        total1, total2 = float(s1.sum()), float(s2.sum())
        # NaN/Inf anywhere propagates into the sums (|x| would need to exceed 1e154 to overflow).
        s = {"mean": total1 / out.size, "std": _unit_std_from(s1, s2, n),
             "finite": bool(np.isfinite(total1) and np.isfinite(total2))}
    if is_rectifier(layer) and out.ndim >= 2:
        alive = np.any(out.reshape(out.shape[0], -1) > 0, axis=0)
        s["dead"] = 1.0 - float(np.count_nonzero(alive)) / alive.size
    bounds = output_bounds(layer)
    if bounds is not None:
        near = (out < bounds[0] + SATURATION_MARGIN) | (out > bounds[1] - SATURATION_MARGIN)
        s["saturated"] = float(np.count_nonzero(near)) / max(out.size, 1)
    return s


class LayerProbe:
    """`with LayerProbe(model, backward=True) as p: ...` fills p.forward_stats[name] and
    p.backward_stats[name] (std of the gradient w.r.t. the layer's input and output)."""

    def __init__(self, model: Any, backward: bool = False) -> None:
        self.layers = list(named_layers(model))
        self.backward = backward
        self.forward_stats: dict[str, dict[str, float]] = {}
        self.backward_stats: dict[str, dict[str, float]] = {}

    def _wrap_forward(self, name: str, layer: Any) -> Any:
        orig = layer.forward

        def forward(x: np.ndarray, *args: Any, **kwargs: Any) -> Any:
            out = orig(x, *args, **kwargs)
            self.forward_stats[name] = act_stats(layer, out)
            return out

        return forward

    @staticmethod
    def _backward_attr(layer: Any) -> str:
        # nn.Module containers call a child's `_backward` (the public `backward` adds error
        # context around it); plain objects only have `backward`.
        return "_backward" if hasattr(layer, "_backward") else "backward"

    def _wrap_backward(self, name: str, layer: Any) -> Any:
        orig = getattr(layer, self._backward_attr(layer))

        def backward(dy: np.ndarray, *args: Any, **kwargs: Any) -> Any:
            dx = orig(dy, *args, **kwargs)
            # no dL/dx (a first layer asked not to, an Embedding's indices): no grad_in_std
            stats = {"grad_out_std": float(np.std(dy, dtype=np.float64))}
            if dx is not None:
                stats["grad_in_std"] = float(np.std(dx, dtype=np.float64))
            self.backward_stats[name] = stats
            return dx

        return backward

    def __enter__(self) -> LayerProbe:
        for name, layer in self.layers:
            layer.forward = self._wrap_forward(name, layer)
            if self.backward:
                setattr(layer, self._backward_attr(layer), self._wrap_backward(name, layer))
        return self

    def __exit__(self, *exc: object) -> None:
        for _, layer in self.layers:
            # The wrappers live in the instance dict; removing them exposes the class methods.
            layer.__dict__.pop("forward", None)
            layer.__dict__.pop("backward", None)
            layer.__dict__.pop("_backward", None)
