"""The non-finite guard (a skipped step changes no byte), clipping functions against torch,
per-parameter norms, thread-count determinism and every ISA path of the kernels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import num_threads
from optim_helpers import (
    assert_close_params,
    make_params,
    torch_one_thread,  # noqa: F401 (autouse fixture)
)

import steadygrad as sg
from steadygrad import optim
from steadygrad.nn import Parameter, flatten

OPTIMIZERS = [
    (optim.Adam, dict(lr=1e-2, amsgrad=True, weight_decay=0.1)),
    (optim.AdamW, dict(lr=1e-2)),
    (optim.RMSprop, dict(lr=1e-3, centered=True, momentum=0.9, weight_decay=0.1)),
    (optim.SGD, dict(lr=1e-2, momentum=0.9, nesterov=True, weight_decay=0.1)),
    (optim.SGD, dict(lr=1e-2)),
    (optim.Adagrad, dict(lr=1e-2, lr_decay=0.01, weight_decay=0.1, initial_accumulator_value=0.1)),
    (optim.NAdam, dict(lr=1e-2, weight_decay=0.1)),
    (optim.NAdam, dict(lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True)),
]
OPT_IDS = ["adam", "adamw", "rmsprop", "sgd-nesterov", "sgd-plain", "adagrad", "nadam",
           "nadam-decoupled"]


def fill_grads(ps, rng, scale=1.0):
    for p in ps:
        p.grad = (rng.standard_normal(p.shape) * scale).astype(np.float32)


def snapshot(opt):
    """Bytes of parameters, every state buffer and the step counters."""
    return (opt.storage.data.tobytes(), {k: v.tobytes() for k, v in opt._bufs.items()},
            opt._step.tobytes(), repr(opt.state_dict()["state"]))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("cls,kw", OPTIMIZERS, ids=OPT_IDS)
def test_nonfinite_step_is_skipped_byte_for_byte(cls, kw, bad):
    rng = np.random.default_rng(0)
    ps, _ = make_params(rng)
    opt = cls(ps, max_grad_norm=1.0, **kw)
    for _ in range(3):
        fill_grads(ps, rng)
        opt.step()
    before = snapshot(opt)
    fill_grads(ps, rng)
    g = ps[2].grad_buffer
    g[5] = bad
    with pytest.warns(optim.NonFiniteGradientWarning, match=r"parameter 2 \(group 0, index 2, shape \(33,\)\)"):
        norm = opt.step()
    assert not math.isfinite(norm)
    assert snapshot(opt) == before
    assert opt.skipped_steps == 1 and opt.consecutive_skips == 1
    per = opt.last_param_norms
    assert not math.isfinite(per[2]) and np.isfinite(np.delete(per, 2)).all()
    fill_grads(ps, rng)
    assert math.isfinite(opt.step())
    assert opt.consecutive_skips == 0 and opt.skipped_steps == 1
    assert snapshot(opt)[0] != before[0]


def test_warning_names_named_parameters_and_raises_after_limit():
    rng = np.random.default_rng(1)
    ps, _ = make_params(rng)
    named = [(f"layer{i}.w", p) for i, p in enumerate(ps)]
    opt = optim.Adam(named, max_consecutive_skips=2)
    fill_grads(ps, rng)
    ps[1].grad_buffer[0] = np.nan
    ps[3].grad_buffer[0] = np.inf
    for _ in range(2):
        with pytest.warns(optim.NonFiniteGradientWarning, match="'layer1.w'.*'layer3.w'"):
            opt.step()
    before = snapshot(opt)
    with pytest.raises(optim.NonFiniteGradientError, match="max_consecutive_skips=2"):
        opt.step()
    assert snapshot(opt) == before and opt.skipped_steps == 3


def test_skip_disabled_propagates_nan_like_torch():
    rng = np.random.default_rng(2)
    ps, _ = make_params(rng)
    opt = optim.SGD(ps, lr=0.1, skip_nonfinite=False, max_grad_norm=1.0)
    fill_grads(ps, rng)
    ps[0].grad_buffer[0, 0] = np.nan
    assert math.isnan(opt.step())
    # torch's semantics (clip_grad_norm_ then step), from the mathematics rather than its
    # kernels (whose non-finite results may depend on the CPU): a NaN total norm makes the
    # clip coefficient NaN, so every update and every parameter is NaN.
    for p in ps:
        assert np.isnan(p.data).all(), p.shape


@pytest.mark.parametrize("norm_type", [2.0, math.inf, 1.0, 3.0])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    rng = np.random.default_rng(3)
    ps, tps = make_params(rng, [(40, 30), (30,), (9000,)])
    fill_grads(ps, rng)
    for p, tp in zip(ps, tps, strict=False):
        tp.grad = torch.tensor(p.grad)
    ours = optim.clip_grad_norm_(ps, max_norm, norm_type)
    theirs = float(torch.nn.utils.clip_grad_norm_(tps, max_norm, norm_type))
    assert math.isclose(ours, theirs, rel_tol=1e-5)
    for p, tp in zip(ps, tps, strict=False):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_clip_grad_norm_nonfinite_and_error():
    rng = np.random.default_rng(4)
    ps, _ = make_params(rng)
    fill_grads(ps, rng)
    ps[0].grad_buffer[0, 0] = np.inf
    before = ps[1].grad.copy()
    with pytest.raises(RuntimeError, match=r"The total norm of order 2\.0 for gradients"):
        optim.clip_grad_norm_(ps, 1.0, error_if_nonfinite=True)
    np.testing.assert_array_equal(ps[1].grad, before)
    assert optim.clip_grad_norm_(ps, 1.0) == math.inf  # torch: coefficient 0, inf * 0 = NaN
    assert (ps[1].grad == 0).all() and np.isnan(ps[0].grad[0, 0])
    assert math.isnan(optim.clip_grad_norm_(ps, 1.0, norm_type=math.inf))  # NaN now present
    assert optim.clip_grad_norm_([], 1.0) == 0.0


def test_clip_grad_value_matches_torch_and_skips_stale():
    rng = np.random.default_rng(5)
    ps, tps = make_params(rng)
    fill_grads(ps, rng, 3.0)
    ps[1].grad = None
    stale = ps[1].grad_buffer.copy()
    for p, tp in zip(ps, tps, strict=False):
        tp.grad = None if p.grad is None else torch.tensor(p.grad)
    optim.clip_grad_value_(ps, 0.7)
    torch.nn.utils.clip_grad_value_(tps, 0.7)
    for p, tp in zip(ps, tps, strict=False):
        if tp.grad is not None:
            np.testing.assert_array_equal(p.grad, tp.grad.numpy())
    np.testing.assert_array_equal(ps[1].grad_buffer, stale)


def test_clip_functions_on_separate_storages_fall_back():
    rng = np.random.default_rng(6)
    ps = [Parameter(rng.standard_normal(s).astype(np.float32)) for s in [(4, 3), (5,)]]
    for p in ps:
        p.grad = rng.standard_normal(p.shape).astype(np.float32) * 10
    want = math.sqrt(sum(float((p.grad.astype(np.float64) ** 2).sum()) for p in ps))
    assert math.isclose(optim.clip_grad_norm_(ps, 1.0), want, rel_tol=1e-6)
    assert math.isclose(optim.get_total_norm(ps), 1.0, rel_tol=1e-5)
    optim.clip_grad_value_(ps, 0.1)
    assert max(float(np.abs(p.grad).max()) for p in ps) <= np.float32(0.1)


def test_per_parameter_norms_exposed():
    rng = np.random.default_rng(7)
    ps, _ = make_params(rng)
    opt = optim.SGD(ps, lr=0.1, norm_type=math.inf)
    fill_grads(ps, rng)
    ps[2].grad = None
    opt.step()
    per = opt.last_param_norms
    for i, p in enumerate(ps):
        if i == 2:
            assert math.isnan(per[i])
        else:
            assert per[i] == float(np.abs(p.grad).max())
    assert opt.last_grad_norm == np.nanmax(per)


def test_norm_pass_equals_deterministic_sumsq():
    rng = np.random.default_rng(8)
    g = rng.standard_normal(100_003).astype(np.float32)
    off = np.array([0, 16, 50_000], dtype=np.int64)
    ln = np.array([10, 40_000, 50_003], dtype=np.int64)
    total, per = sg._core.grad_norms(g, off, ln, 2.0)
    for o, n, v in zip(off, ln, per, strict=False):
        ref = math.sqrt(float((g[o : o + n].astype(np.float64) ** 2).sum()))
        assert math.isclose(v, ref, rel_tol=1e-12)
    assert math.isclose(total, math.sqrt(sum(per**2)), rel_tol=1e-12)


def run_big(cls, kw, isa=None):
    rng = np.random.default_rng(9)
    ps = [Parameter(rng.standard_normal(s).astype(np.float32)) for s in [(257, 300), (77,), (50001,)]]
    flatten(ps)
    opt = cls([{"params": [ps[0], ps[2]]}, {"params": [ps[1]], "weight_decay": 0.0}],
              max_grad_norm=50.0, **kw)
    norms = []
    for _ in range(5):
        fill_grads(ps, rng)
        norms.append(opt.step())
    return opt.storage.data.copy(), {k: v.copy() for k, v in opt._bufs.items()}, norms


@pytest.mark.parametrize("cls,kw", OPTIMIZERS, ids=OPT_IDS)
def test_bitwise_identical_at_1_and_2_threads(cls, kw):
    with num_threads(1):
        a = run_big(cls, kw)
    with num_threads(2):
        b = run_big(cls, kw)
    np.testing.assert_array_equal(a[0], b[0])
    for k in a[1]:
        np.testing.assert_array_equal(a[1][k], b[1][k])
    assert a[2] == b[2]


@pytest.mark.parametrize("cls,kw", OPTIMIZERS, ids=OPT_IDS)
def test_every_isa_matches_torch(isa, cls, kw):
    rng = np.random.default_rng(10)
    ps, tps = make_params(rng, [(13, 7), (3,), (1000,)])
    opt = cls(ps, max_grad_value=2.0, **kw)
    tkw = dict(kw)
    topt = getattr(torch.optim, cls.__name__)(tps, **tkw)
    for _ in range(20):
        fill_grads(ps, rng, 3.0)
        for p, tp in zip(ps, tps, strict=False):
            tp.grad = torch.tensor(p.grad)
        torch.nn.utils.clip_grad_value_(tps, 2.0)
        opt.step()
        topt.step()
    assert_close_params(ps, tps, what=isa)


def test_norm_pass_is_isa_invariant(isa):
    rng = np.random.default_rng(11)
    g = (rng.standard_normal(70_001) * 1e3).astype(np.float32)
    off, ln = np.array([0, 16], dtype=np.int64), np.array([3, 70_000 - 16], dtype=np.int64)
    total, per = sg._core.grad_norms(g, off, ln, 2.0)
    sg.set_isa("generic")
    total_ref, per_ref = sg._core.grad_norms(g, off, ln, 2.0)
    assert total == total_ref and (per == per_ref).all()


def test_one_kernel_call_per_group_and_one_norm_pass(monkeypatch):
    rng = np.random.default_rng(12)
    ps, _ = make_params(rng)
    calls = {"adam_step": 0, "grad_norms": 0}
    for name in calls:
        real = getattr(sg._core, name)

        def counted(*a, _real=real, _name=name, **k):
            calls[_name] += 1
            return _real(*a, **k)

        monkeypatch.setattr(sg._core, name, counted)
    # Weights (params 0, 2) decay, biases (1, 3) do not: non-contiguous segment sets.
    opt = optim.AdamW([{"params": [ps[0], ps[2]]}, {"params": [ps[1], ps[3]], "weight_decay": 0.0}],
                      max_grad_norm=1.0)
    for _ in range(3):
        fill_grads(ps, rng)
        opt.step()
    assert calls == {"adam_step": 6, "grad_norms": 3}
