"""Copies of modules (copy.deepcopy, pickle) after calls: every layer and container copies
after a forward and backward (the call machinery's lock tree, BatchNorm's kernel contexts and
the cached ConvGeometry used to make that fail), a copy has the original's parameters,
gradients and buffers and no pending backward, its outputs are the caller's, and it trains
bit for bit as the original does. ConvGeometry pickles with every field and refuses a state
whose output size the window does not give."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fuzz_support import model_state

from steadygrad import _core, nn, optim

Copier = Callable[[Any], Any]
COPIERS: dict[str, Copier] = {"deepcopy": copy.deepcopy,
                              "pickle": lambda m: pickle.loads(pickle.dumps(m))}

# (factory, input shape) of every exported layer (nn.__all__'s modules) and the containers
LAYERS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "Linear": (lambda: nn.Linear(6, 4), (3, 6)),
    "BatchNorm1d": (lambda: nn.BatchNorm1d(6), (3, 6)),
    "BatchNorm1d_ncl": (lambda: nn.BatchNorm1d(3), (2, 3, 5)),
    "BatchNorm2d": (lambda: nn.BatchNorm2d(3), (2, 3, 4, 4)),
    "LayerNorm": (lambda: nn.LayerNorm((3, 4)), (2, 5, 3, 4)),
    "Conv1d": (lambda: nn.Conv1d(3, 4, 3, padding=1), (2, 3, 7)),
    "Conv2d": (lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1), (2, 3, 7, 6)),
    "Conv2d_reflect": (lambda: nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"), (2, 3, 5, 5)),
    "Conv2d_depthwise": (lambda: nn.Conv2d(4, 8, 3, groups=4), (2, 4, 5, 5)),
    "MaxPool1d": (lambda: nn.MaxPool1d(2), (2, 3, 6)),
    "MaxPool2d": (lambda: nn.MaxPool2d(3, 2, 1, ceil_mode=True), (2, 3, 7, 6)),
    "AvgPool1d": (lambda: nn.AvgPool1d(3, 2), (2, 3, 7)),
    "AvgPool2d": (lambda: nn.AvgPool2d(2), (2, 3, 6, 6)),
    "AdaptiveAvgPool1d": (lambda: nn.AdaptiveAvgPool1d(1), (2, 3, 6)),
    "AdaptiveAvgPool2d": (lambda: nn.AdaptiveAvgPool2d(1), (2, 3, 4, 4)),
    "ReLU": (nn.ReLU, (3, 5)),
    "LeakyReLU": (lambda: nn.LeakyReLU(0.1), (3, 5)),
    "GELU": (nn.GELU, (3, 5)),
    "Tanh": (nn.Tanh, (3, 5)),
    "Sigmoid": (nn.Sigmoid, (3, 5)),
    "SiLU": (nn.SiLU, (3, 5)),
    "ELU": (lambda: nn.ELU(0.5), (3, 5)),
    "Softplus": (lambda: nn.Softplus(2.0, 5.0), (3, 5)),
    "Softmax": (lambda: nn.Softmax(1), (2, 3, 4)),
    "LogSoftmax": (nn.LogSoftmax, (3, 5)),
    "Dropout": (lambda: nn.Dropout(0.3), (3, 5)),
    "Embedding": (lambda: nn.Embedding(20, 4, padding_idx=1), (3, 5)),  # indices < 10: 2 * x fits
    "Identity": (nn.Identity, (3, 5)),
    "Flatten": (nn.Flatten, (2, 3, 4)),
    "Residual": (lambda: nn.Residual(nn.Sequential(nn.Linear(5, 5), nn.Tanh())), (3, 5)),
    "cnn": (lambda: nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Residual(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)),
                    shortcut=nn.Conv2d(4, 4, 1)),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)), (2, 3, 6, 6)),
}


def test_every_exported_layer_is_listed() -> None:
    exported = {name for name in nn.__all__ if isinstance(getattr(nn, name), type)
                and issubclass(getattr(nn, name), nn.Module)
                and name not in ("Module", "Sequential")
                # ModuleList has no forward: its copies are tests/test_nn_container_edits.py's
                and name != "ModuleList"}
    listed = {type(make()).__name__ for make, _ in LAYERS.values()}
    assert exported <= listed, exported - listed


def _called(make: Callable[[], nn.Module], shape: tuple[int, ...]) -> tuple[nn.Module, Any]:
    """A module after a training forward + backward and then a pending training forward with
    an eval forward in between (every cache of the call machinery filled)."""
    rng = np.random.default_rng(0)
    m = make()
    if getattr(m, "integer_input", False):  # a lookup table (Embedding): integer indices
        x = rng.integers(0, 10, shape)
    else:
        x = rng.standard_normal(shape).astype(np.float32)
    y = m(x)
    m.backward(np.ones(y.shape, np.float32))
    m(x)
    m.eval()
    m(x)
    m.train()
    return m, x


@pytest.mark.parametrize("how", list(COPIERS))
@pytest.mark.parametrize("name", list(LAYERS))
def test_copies_after_calls(name: str, how: str) -> None:
    make, shape = LAYERS[name]
    m, x = _called(make, shape)
    c = COPIERS[how](m)
    assert model_state(c) == model_state(m)  # parameters, gradients (fresh or not), buffers
    with pytest.raises(RuntimeError, match="backward called before forward"):
        c.backward(np.ones(m.output_shape(shape), np.float32))  # no pending backward copied
    # the copy's outputs are the caller's, not its work buffers (eval: no backward pending)
    c.eval()
    a = c(x)
    a0 = a.copy()
    c(2 * x)
    np.testing.assert_array_equal(a, a0)
    c.train()
    if name == "Dropout":  # the mask comes from sg's RNG: its continuation is checked elsewhere
        return
    # the original's pending backward is intact, and the copy computes the same gradients
    # (its running statistics saw one more batch)
    g = np.random.default_rng(1).standard_normal(a.shape).astype(np.float32)
    m.backward(g)
    c(x)
    c.backward(g)
    grads = [{k: v for k, v in model_state(t).items() if not k.startswith("buffer")}
             for t in (c, m)]
    assert grads[0] == grads[1]


@pytest.mark.parametrize("how", list(COPIERS))
def test_a_copied_cnn_trains_bit_for_bit_as_the_original(how: str) -> None:
    make, shape = LAYERS["cnn"]
    m, x = _called(make, shape)
    m.backward(np.ones((2, 2), np.float32))  # the pending one
    opt = optim.Adam(m.parameters(), lr=1e-2)
    opt.step()
    c = COPIERS[how](m)
    copt = optim.Adam(c.parameters(), lr=1e-2)
    copt.load_state_dict(opt.state_dict())
    rng = np.random.default_rng(2)
    for _ in range(2):
        xb = rng.standard_normal(shape).astype(np.float32)
        g = rng.standard_normal((2, 2)).astype(np.float32)
        for model, o in ((m, opt), (c, copt)):
            o.zero_grad()
            model(xb)
            model.backward(g)
            o.step()
        assert model_state(c) == model_state(m)
    m.eval()
    c.eval()
    np.testing.assert_array_equal(c(x), m(x))


GEOMETRIES = [dict(n=2, h=7, w=6, c_in=4, c_out=8, kh=3, kw=2, sh=2, sw=1, dh=1, dw=2, ph0=1,
                   ph1=2, pw0=0, pw1=1, groups=2),
              dict(n=1, h=7, w=6, c_in=3, c_out=3, kh=3, kw=3, sh=2, sw=2, ph0=1, ph1=1, pw0=1,
                   pw1=1, ceil_mode=True)]
FIELDS = ("n", "h", "w", "c_in", "c_out", "groups", "kh", "kw", "sh", "sw", "dh", "dw", "ph0",
          "ph1", "pw0", "pw1", "oh", "ow")


def _fields(g: _core.ConvGeometry) -> tuple[int, ...]:
    return tuple(getattr(g, f) for f in FIELDS)


@pytest.mark.parametrize("kw", GEOMETRIES)
@pytest.mark.parametrize("how", list(COPIERS))
def test_conv_geometry_round_trips(kw: dict[str, Any], how: str) -> None:
    g = _core.ConvGeometry(**kw)
    c = COPIERS[how](g)
    assert isinstance(c, _core.ConvGeometry) and c is not g
    assert _fields(c) == _fields(g)
    if kw.get("ceil_mode"):  # ceil_mode's extra window is kept
        assert (g.oh, g.ow) == (4, 4) != _fields(_core.ConvGeometry(
            **{k: v for k, v in kw.items() if k != "ceil_mode"}))[-2:]


def test_conv_geometry_refuses_a_bad_state() -> None:
    g = _core.ConvGeometry(**GEOMETRIES[0])
    state = g.__getstate__()
    assert state == _fields(g)
    for i, bad in ((FIELDS.index("oh"), g.oh + 1), (FIELDS.index("groups"), 3),
                   (FIELDS.index("h"), 0)):
        s = list(state)
        s[i] = bad
        with pytest.raises(ValueError, match="ConvGeometry"):
            _core.ConvGeometry.__new__(_core.ConvGeometry).__setstate__(tuple(s))


class _Stack(nn.Module):
    """A custom module calling the members of a ModuleList in a chain (no backward of its own)."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([nn.Linear(5, 5), nn.Tanh(), nn.Linear(5, 2)])
        self._flatten_parameters()

    def forward(self, x: np.ndarray) -> np.ndarray:
        for b in self.blocks:
            x = b(x)
        return x


def test_module_list_in_a_custom_module_copies_after_a_call() -> None:
    m, x = _called(_Stack, (3, 5))
    copies = (copy.deepcopy(m), pickle.loads(pickle.dumps(m)))
    m.backward(np.ones((3, 2), np.float32))  # the original's pending forward (copies have none)
    for c in copies:
        g = np.random.default_rng(1).standard_normal((3, 2)).astype(np.float32)
        m.zero_grad()
        c.zero_grad()
        ya, yb = m(x), c(x)
        np.testing.assert_array_equal(ya, yb)
        np.testing.assert_array_equal(m.backward(g), c.backward(g))
        for (_, p), (_, q) in zip(m.named_parameters(), c.named_parameters(), strict=True):
            np.testing.assert_array_equal(p.grad, q.grad)
