"""The bad-input catalogue: each bad call raises the right exception type, its message names
the layer (with its index in the Sequential) and the shapes, and parameters, gradients and
running statistics are left exactly as they were."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from steadygrad import nn


def _model() -> nn.Sequential:
    return nn.Sequential(nn.Linear(10, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))


def _snapshot(m: nn.Module) -> list[np.ndarray]:
    s = m.flat_storage
    assert s is not None
    return [s.data.copy(), s.grad.copy(), *(b.copy() for b in m.buffers())]


def _unchanged(m: nn.Module, snap: list[np.ndarray]) -> None:
    for a, b in zip(snap, _snapshot(m), strict=True):
        np.testing.assert_array_equal(a, b)


X = np.ones((4, 10), np.float32)
X[0] = 2.0
G = np.ones((4, 3), np.float32)

FORWARD_CASES: list[tuple[str, Callable[[], nn.Module], object, type, str]] = [
    ("feature_size", _model, np.ones((4, 11), np.float32), ValueError,
     r"Sequential\[0\] Linear\(10 -> 16\): expected input of shape \(batch, 10\), got \(4, 11\)"),
    ("dtype", _model, X.astype(np.float64), TypeError,
     r"Sequential\[0\] Linear\(10 -> 16\): linear_forward: input must have dtype float32, got float64 array of shape \(4, 10\)"),
    ("rank", _model, np.ones((4, 10, 1), np.float32), ValueError,
     r"Sequential\[0\] Linear\(10 -> 16\): expected input of shape \(batch, 10\), got \(4, 10, 1\)"),
    ("not_an_array", _model, [[1.0] * 10], TypeError, r"Sequential\[0\] Linear\(10 -> 16\): .*numpy.ndarray"),
    ("mid_stack_mismatch",
     lambda: nn.Sequential(nn.Linear(10, 16), nn.BatchNorm1d(16), nn.Linear(15, 3)), X, ValueError,
     r"Sequential\[2\] Linear\(15 -> 3\): expected input of shape \(batch, 15\), got \(4, 16\)"),
    ("nested", lambda: nn.Sequential(nn.Linear(10, 10), nn.Residual(nn.Sequential(nn.Linear(9, 10)))),
     X, ValueError, r"Sequential\[1\] Residual\[module\] Sequential\[0\] Linear\(9 -> 10\): .*\(4, 10\)"),
    ("residual_shape", lambda: nn.Sequential(nn.Residual(nn.Linear(10, 4))), X, ValueError,
     r"Sequential\[0\] Residual: module maps shape \(4, 10\) to \(4, 4\)"),
    ("bn_batch_of_one", lambda: nn.Sequential(nn.BatchNorm1d(10)), X[:1], ValueError,
     r"Sequential\[0\] BatchNorm1d\(10, .*\): .*Expected more than 1 value per channel when training"),
    ("non_contiguous", _model, np.ones((10, 4), np.float32).T, ValueError, r"C-contiguous"),
    ("bn2d_rank", lambda: nn.Sequential(nn.BatchNorm2d(10)), X, ValueError,
     r"Sequential\[0\] BatchNorm2d\(10, .*\): expected 4D input \(got 2D input of shape \(4, 10\)\)"),
    ("bn2d_channels", lambda: nn.Sequential(nn.Identity(), nn.BatchNorm2d(3)),
     np.ones((2, 4, 3, 3), np.float32), ValueError,
     r"Sequential\[1\] BatchNorm2d\(3, .*\): expected input with 3 channels \(num_features\) in "
     r"dim 1, got input of shape \(2, 4, 3, 3\)"),
    ("bn1d_rank", lambda: nn.Sequential(nn.BatchNorm1d(10)), np.ones((2, 10, 1, 1), np.float32),
     ValueError, r"Sequential\[0\] BatchNorm1d\(10, .*\): expected 2D or 3D input \(got 4D input"),
    ("residual_shortcut_shape",
     lambda: nn.Sequential(nn.Residual(nn.Linear(10, 4), shortcut=nn.Linear(10, 5))), X, ValueError,
     r"Sequential\[0\] Residual: module maps shape \(4, 10\) to \(4, 4\) but shortcut to \(4, 5\)"),
]


@pytest.mark.parametrize("case", FORWARD_CASES, ids=[c[0] for c in FORWARD_CASES])
def test_bad_forward_input(case: tuple) -> None:
    _, make, x, exc, msg = case
    m = make()
    snap = _snapshot(m)
    with pytest.raises(exc, match=msg):
        m(x)
    _unchanged(m, snap)


def _primed() -> nn.Sequential:
    m = _model()
    m(X)
    return m


BACKWARD_CASES: list[tuple[str, Callable[[], nn.Module], object, type, str]] = [
    ("before_forward", _model, G, RuntimeError, r"^Sequential: backward called before forward"),
    ("grad_shape", _primed, np.ones((4, 4), np.float32), ValueError,
     r"Sequential\[3\] Linear\(16 -> 3\): linear_backward: grad_output must have the output's shape "
     r"\(batch=4, out_features=3\), got \(4, 4\)"),
    ("grad_dtype", _primed, G.astype(np.float64), TypeError,
     r"Sequential\[3\] Linear\(16 -> 3\): .*grad_output must have dtype float32, got float64"),
    ("leaf_before_forward", lambda: nn.Linear(10, 3), G, RuntimeError,
     r"^Linear\(10 -> 3\): backward called before forward"),
]


@pytest.mark.parametrize("case", BACKWARD_CASES, ids=[c[0] for c in BACKWARD_CASES])
def test_bad_backward(case: tuple) -> None:
    _, make, g, exc, msg = case
    m = make()
    snap = _snapshot(m)
    with pytest.raises(exc, match=msg):
        m.backward(g)
    _unchanged(m, snap)


def test_failed_backward_keeps_the_forward_and_backward_twice_raises() -> None:
    m = _primed()
    with pytest.raises(ValueError):
        m.backward(np.ones((4, 4), np.float32))
    m.backward(G)  # the forward's cache survived the rejected call
    snap = _snapshot(m)
    with pytest.raises(RuntimeError, match=r"^Sequential: backward called twice for one forward"):
        m.backward(G)
    _unchanged(m, snap)
    lin = nn.Linear(10, 3)
    lin(X)
    lin.backward(G)
    with pytest.raises(RuntimeError, match=r"^Linear\(10 -> 3\): backward called twice"):
        lin.backward(G)


@pytest.mark.parametrize("target,exc,msg", [
    (np.array([0, 7, 1, 2]), ValueError, r"labels\[1\] = 7 is out of range for 3 classes"),
    (np.array([0, -1, 1, 2], np.int32), ValueError, r"labels\[1\] = -1 is out of range"),
    (np.array([0.0, 1, 1, 2]), TypeError, r"labels must have dtype int32 or int64, got float64 array of shape \(4,\) \(class indices; float32 probabilities must have the logits' shape \(4, 3\)\)"),
    (np.array([0, 1, 2]), ValueError, r"labels must have shape \(batch=4,\) to match logits \(4, 3\), got \(3,\)"),
])
def test_bad_cross_entropy_targets(target: np.ndarray, exc: type, msg: str) -> None:
    lf = nn.CrossEntropyLoss()
    with pytest.raises(exc, match=r"^CrossEntropyLoss\(reduction='mean', label_smoothing=0.0\): .*" + msg):
        lf(G, target)
    with pytest.raises(RuntimeError, match="backward called before forward"):
        lf.backward()


def test_bad_mse_and_constructor_arguments() -> None:
    with pytest.raises(ValueError, match=r"^MSELoss\(reduction='mean'\): .*target must have the input's shape \(4, 3\), got \(4, 2\)"):
        nn.MSELoss()(G, np.ones((4, 2), np.float32))
    with pytest.raises(ValueError, match="reduction must be 'none', 'mean' or 'sum', got 'avg'"):
        nn.CrossEntropyLoss(reduction="avg")
    with pytest.raises(TypeError, match=r"Sequential: argument 1 must be an nn.Module, got int"):
        nn.Sequential(nn.ReLU(), 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"dropout probability has to be between 0 and 1, but got 1\.5"):
        nn.Dropout(1.5)
    with pytest.raises(ValueError, match="approximate must be 'none' or 'tanh'"):
        nn.GELU("fast")


@pytest.mark.parametrize("make,name", [
    (lambda: nn.BatchNorm1d(4, eps="3"), "eps"), (lambda: nn.BatchNorm1d(4, momentum=[1]), "momentum"),
    (lambda: nn.BatchNorm2d(4, eps="3"), "eps"), (lambda: nn.BatchNorm2d(4, momentum=[1]), "momentum"),
    (lambda: nn.CrossEntropyLoss(label_smoothing=None), "label_smoothing"),
    (lambda: nn.Dropout("3"), "p"), (lambda: nn.LeakyReLU(None), "negative_slope"),
    (lambda: nn.Flatten(-0.5), "start_dim"), (lambda: nn.Flatten(1, float("nan")), "end_dim"),
])
def test_constructor_arguments_of_the_wrong_type_are_named(make, name) -> None:
    with pytest.raises(TypeError, match=rf"\b{name} must be"):
        make()
