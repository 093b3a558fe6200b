"""Parameter initialisation with torch.nn.init's names, arguments and formulas.

Each function fills a Parameter (its `.data` view, in place, so the flat buffer stays whole)
or a float numpy array, and returns it. Random draws come from `steadygrad.random`, so
`sg.manual_seed` makes them reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from steadygrad import random as _random
from steadygrad.nn.parameter import Parameter

T = TypeVar("T", Parameter, np.ndarray)

_LINEAR_FNS = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
               "conv_transpose3d")


def _array(tensor: Parameter | np.ndarray, fn: str) -> np.ndarray:
    arr = tensor.data if isinstance(tensor, Parameter) else tensor
    if not isinstance(arr, np.ndarray) or arr.dtype.kind != "f":
        raise TypeError(f"{fn}: expected a Parameter or a float numpy array, got {type(tensor).__name__}")
    if not arr.flags.writeable:
        raise ValueError(f"{fn}: the array is read-only")
    return arr


def _fill(arr: np.ndarray, values: np.ndarray | float) -> None:
    arr[...] = np.asarray(values).astype(arr.dtype, copy=False)


# Elements per draw: the generator makes float64, so a whole-tensor draw would be a transient
# twice a float32 weight's size, freed into glibc's heap where it stays resident (peak RSS).
# Drawing in chunks consumes the stream in the same order, so the values do not change.
_CHUNK = 1 << 14


def _fill_random(arr: np.ndarray, draw: Callable[[Any], np.ndarray]) -> None:
    flat = arr.reshape(-1) if arr.flags.c_contiguous else None
    if flat is None or arr.size <= _CHUNK:
        _fill(arr, draw(arr.shape))
        return
    for lo in range(0, flat.size, _CHUNK):
        hi = min(flat.size, lo + _CHUNK)
        _fill(flat[lo:hi], draw(hi - lo))


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """Recommended gain for a nonlinearity (torch.nn.init.calculate_gain)."""
    if nonlinearity in _LINEAR_FNS or nonlinearity == "sigmoid":
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3.0
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = float(param)
        else:
            raise ValueError(f"negative_slope {param} not a valid number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4.0
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


def _calculate_fan_in_and_fan_out(arr: np.ndarray) -> tuple[int, int]:
    if arr.ndim < 2:
        raise ValueError(
            "Fan in and fan out can not be computed for tensor with fewer than 2 dimensions"
        )
    receptive = int(np.prod(arr.shape[2:])) if arr.ndim > 2 else 1
    return arr.shape[1] * receptive, arr.shape[0] * receptive


def _fan(arr: np.ndarray, mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"Mode {mode} not supported, please use one of fan_in, fan_out")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(arr)
    return fan_in if mode == "fan_in" else fan_out


def uniform_(tensor: T, a: float = 0.0, b: float = 1.0) -> T:
    """Fill with draws from U(a, b) (torch.nn.init.uniform_), from sg's generator."""
    arr = _array(tensor, "uniform_")
    gen = _random.generator()
    _fill_random(arr, lambda size: gen.uniform(a, b, size=size))
    return tensor


def normal_(tensor: T, mean: float = 0.0, std: float = 1.0) -> T:
    """Fill with draws from N(mean, std^2) (torch.nn.init.normal_), from sg's generator."""
    arr = _array(tensor, "normal_")
    gen = _random.generator()
    _fill_random(arr, lambda size: gen.normal(mean, std, size=size))
    return tensor


def constant_(tensor: T, val: float) -> T:
    """Fill with the value val (torch.nn.init.constant_)."""
    _array(tensor, "constant_")[...] = val
    return tensor


def zeros_(tensor: T) -> T:
    """Fill with 0 (torch.nn.init.zeros_)."""
    return constant_(tensor, 0.0)


def ones_(tensor: T) -> T:
    """Fill with 1 (torch.nn.init.ones_)."""
    return constant_(tensor, 1.0)


def xavier_uniform_(tensor: T, gain: float = 1.0) -> T:
    """U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio, 2010)."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(_array(tensor, "xavier_uniform_"))
    a = gain * math.sqrt(6.0 / float(fan_in + fan_out))
    return uniform_(tensor, -a, a)


def xavier_normal_(tensor: T, gain: float = 1.0) -> T:
    """N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(_array(tensor, "xavier_normal_"))
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / float(fan_in + fan_out)))


def _kaiming_std(tensor: Parameter | np.ndarray, fn: str, a: float, mode: str,
                 nonlinearity: str) -> float | None:
    """He et al.'s std = gain / sqrt(fan) for `tensor`; None for an empty tensor, which the
    kaiming initialisers leave as it is (before mode or nonlinearity is checked)."""
    arr = _array(tensor, fn)
    if 0 in arr.shape:
        return None
    return calculate_gain(nonlinearity, a) / math.sqrt(_fan(arr, mode))


def kaiming_uniform_(tensor: T, a: float = 0.0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu") -> T:
    """U(-b, b) with b = gain * sqrt(3 / fan) (He et al., 2015)."""
    std = _kaiming_std(tensor, "kaiming_uniform_", a, mode, nonlinearity)
    if std is None:
        return tensor
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(tensor: T, a: float = 0.0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu") -> T:
    """N(0, std^2) with std = gain / sqrt(fan) (He et al., 2015)."""
    std = _kaiming_std(tensor, "kaiming_normal_", a, mode, nonlinearity)
    return tensor if std is None else normal_(tensor, 0.0, std)


__all__ = [
    "calculate_gain",
    "constant_",
    "kaiming_normal_",
    "kaiming_uniform_",
    "normal_",
    "ones_",
    "uniform_",
    "xavier_normal_",
    "xavier_uniform_",
    "zeros_",
]
