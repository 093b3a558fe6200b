"""The compiled step's gradient norms: its backward leaves each parameter gradient's norm
partial as it writes it, and the optimizer's guard and clip take them instead of a separate
pass over the gradients. Checked: the step never calls that pass (segment_norms) and its
norms, skips and parameters equal the eager step's BIT FOR BIT, for the 2-norm and the
inf-norm, finite and non-finite gradients; a norm_type the tape cannot give, and fit with a
callback that may change the gradients before the step, keep the pass."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest
from test_compiled_step import ARCHS, _assert_same, _data, _eager_step, _pair

import steadygrad as sg
from steadygrad import nn, optim
from steadygrad.callbacks import Callback
from steadygrad.optim import optimizer as optimizer_module
from steadygrad.optim._norms import NonFiniteGradientWarning


class _Counted:
    """segment_norms, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self._real = optimizer_module.segment_norms

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self._real(*args, **kwargs)


@pytest.fixture
def norm_pass(monkeypatch: pytest.MonkeyPatch) -> _Counted:
    counted = _Counted()
    monkeypatch.setattr(optimizer_module, "segment_norms", counted)
    return counted


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("norm_type", [2.0, math.inf], ids=["l2", "inf"])
def test_the_step_takes_its_norms_from_the_tape(arch: str, norm_type: float,
                                                norm_pass: _Counted) -> None:
    """4 Adam steps with the fused clip: no norm pass in the compiled steps, and the same
    pre-clip norm, per-parameter norms, parameters and state as the eager steps."""
    def make(p: Any) -> Any:
        return optim.Adam(p, lr=1e-2, max_grad_norm=0.3, norm_type=norm_type)

    comp, eager = _pair(ARCHS[arch], make)
    loss_fn = nn.CrossEntropyLoss()
    step = sg.compile_step(comp[0], loss_fn, comp[1])
    assert step.compiled, step.reason
    x, y = _data()
    for i in range(4):
        before = norm_pass.calls
        lc = step(x, y)
        assert norm_pass.calls == before, f"step {i}: the compiled step ran the norm pass"
        le = _eager_step(eager[0], eager[1], loss_fn, x, y)
        assert norm_pass.calls == before + 1
        assert lc == le
        assert comp[1].last_grad_norm == eager[1].last_grad_norm
        np.testing.assert_array_equal(comp[1].last_param_norms, eager[1].last_param_norms)
        _assert_same(eager, comp, f"step {i}")


@pytest.mark.parametrize("norm_type", [2.0, math.inf], ids=["l2", "inf"])
def test_a_non_finite_gradient_skips_the_compiled_step_as_the_eager_one(
        norm_type: float, norm_pass: _Counted) -> None:
    """An Inf in the batch makes the gradients non-finite: the tape's partials say so and the
    step is skipped (warning, count, running statistics taken back), as the eager step is."""
    comp, eager = _pair(ARCHS["mlp_bn_relu"],
                        lambda p: optim.SGD(p, lr=0.1, momentum=0.9, norm_type=norm_type))
    loss_fn = nn.CrossEntropyLoss()
    step = sg.compile_step(comp[0], loss_fn, comp[1])
    x, y = _data()
    bad = x.copy()
    bad[3, 2] = np.inf
    for i, batch in enumerate([x, bad, x]):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            step(batch, y)
            _eager_step(eager[0], eager[1], loss_fn, batch, y)
        skipped = [w for w in seen if issubclass(w.category, NonFiniteGradientWarning)]
        assert len(skipped) == (2 if i == 1 else 0)
        assert comp[1].skipped_steps == eager[1].skipped_steps == (1 if i >= 1 else 0)
        a, b = comp[1].last_grad_norm, eager[1].last_grad_norm
        assert a == b or (math.isnan(a) and math.isnan(b)) or (a == b == math.inf)
        _assert_same(eager, comp, f"step {i}")
    assert norm_pass.calls == 3  # the eager steps' only


def test_a_norm_type_the_tape_cannot_give_keeps_the_pass(norm_pass: _Counted) -> None:
    comp, eager = _pair(ARCHS["mlp_bn_relu"],
                        lambda p: optim.Adam(p, lr=1e-2, max_grad_norm=0.3, norm_type=3.0))
    loss_fn = nn.CrossEntropyLoss()
    step = sg.compile_step(comp[0], loss_fn, comp[1])
    x, y = _data()
    for i in range(2):
        step(x, y)
        _eager_step(eager[0], eager[1], loss_fn, x, y)
        assert comp[1].last_grad_norm == eager[1].last_grad_norm
        _assert_same(eager, comp, f"step {i}")
    assert norm_pass.calls == 4


class _HalveGrads(Callback):
    """Changes the gradients between the backward and the step."""

    def on_before_optimizer_step(self, step: int) -> None:
        for p in self.loop.model.parameters():
            np.multiply(p.grad_buffer, 0.5, out=p.grad_buffer)


@pytest.mark.parametrize("callbacks", [[], [_HalveGrads()]], ids=["plain", "halving"])
def test_fit_offers_the_tapes_norms_only_when_no_callback_may_change_the_gradients(
        callbacks: list[Callback], norm_pass: _Counted, monkeypatch: pytest.MonkeyPatch) -> None:
    """fit's compiled steps take the tape's norms, unless a callback has an
    on_before_optimizer_step; either way the history and parameters are the eager fit's."""
    x, y = _data(n=64)
    results = []
    for compiled in (True, False):
        if not compiled:
            monkeypatch.setattr("steadygrad.training.run.unsupported", lambda m: "eager")
        sg.manual_seed(5)
        model = ARCHS["mlp_bn_relu"]()
        opt = optim.Adam(model.parameters(), lr=1e-2, max_grad_norm=0.3)
        before = norm_pass.calls
        hist = sg.fit(model, nn.CrossEntropyLoss(), opt, x, y, epochs=2, batch_size=16,
                      callbacks=list(callbacks), verbose=0, seed=1)
        passes = norm_pass.calls - before
        assert passes == (0 if compiled and not callbacks else 8), (compiled, passes)
        storage = model.flat_storage
        assert storage is not None
        results.append((hist.history["loss"], storage.data.copy()))
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_forward_backward_offers_norms_only_when_asked(norm_pass: _Counted) -> None:
    """The public forward_backward, after which a caller may still change the gradients
    (clip_grad_norm_, gradient surgery), offers nothing unless told offer_norms=True."""
    comp, _ = _pair(ARCHS["mlp_bn_relu"], lambda p: optim.Adam(p, lr=1e-2, max_grad_norm=0.3))
    step = sg.compile_step(comp[0], nn.CrossEntropyLoss(), comp[1])
    x, y = _data()
    for offer, passes in ((False, 1), (True, 0)):
        before = norm_pass.calls
        comp[1].zero_grad()
        step.forward_backward(x, y, offer_norms=offer)
        for p in comp[0].parameters():  # what a caller may do between the two
            np.multiply(p.grad_buffer, 2.0, out=p.grad_buffer)
        comp[1].step()
        assert norm_pass.calls - before == passes


@pytest.mark.parametrize("norm_type", [2.0, math.inf], ids=["l2", "inf"])
def test_combine_norm_partials_is_grad_norms_combine(norm_type: float) -> None:
    """combine_norm_partials on the segments' partials gives grad_norms' total and per-segment
    norms bit for bit (1-element segments, whose partial is x*x or |x| in float64 exactly; a
    NaN wins the inf-norm); bad arguments raise."""
    from steadygrad import _core

    rng = np.random.default_rng(2)
    g = rng.standard_normal(7).astype(np.float32)
    g[4] = np.nan if norm_type == math.inf else g[4]
    off, ln = np.arange(7, dtype=np.int64), np.ones(7, np.int64)
    total, per = _core.grad_norms(g, off, ln, norm_type)
    g64 = g.astype(np.float64)
    partials = np.abs(g64) if norm_type == math.inf else g64 * g64  # a 1-element segment's
    got = _core.combine_norm_partials(partials, norm_type)
    assert got == total or (math.isnan(got) and math.isnan(total))
    np.testing.assert_array_equal(partials, per)
    with pytest.raises(TypeError, match=r"partials must be a float64 numpy\.ndarray"):
        _core.combine_norm_partials(np.zeros(3, np.float32), 2.0)
    with pytest.raises(ValueError, match=r"norm_type must be 2\.0 or inf"):
        _core.combine_norm_partials(np.zeros(3), 3.0)
