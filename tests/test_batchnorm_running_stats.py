"""BatchNorm1d with running statistics that are None, untracked or uncounted: the layer picks
its statistics as torch's _BatchNorm.forward does (torch 2.13.0 in float64 as the oracle,
forward and backward, train and eval), and the binding refuses null, mistyped or misshapen
running statistics and counters with a clear error instead of dereferencing them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from conftest import assert_close

from steadygrad import _core, nn

torch = pytest.importorskip("torch")

TIME_BUDGET_S = 10
C = 5
EPS32 = float(np.finfo(np.float32).eps)


def _buffers_none(m: Any) -> None:
    m.running_mean = None
    m.running_var = None


def _tracked_after_construction(m: Any) -> None:  # built with track_running_stats=False
    m.track_running_stats = True


def _tracking_off_with_buffers(m: Any) -> None:
    m.running_mean[...] = 0.5  # off the defaults, so using them (or not) shows
    m.running_var[...] = 2.0
    m.track_running_stats = False


def _counter_none(m: Any) -> None:
    m.num_batches_tracked = None


def _counter_none_cumulative(m: Any) -> None:  # torch's average factor is then 0
    m.num_batches_tracked = None
    m.momentum = None


SETUPS: dict[str, tuple[bool, Callable[[Any], None]]] = {  # (track_running_stats, setup)
    "buffers_none": (True, _buffers_none),
    "tracked_after_construction": (False, _tracked_after_construction),
    "tracking_off_with_buffers": (True, _tracking_off_with_buffers),
    "counter_none": (True, _counter_none),
    "counter_none_cumulative": (True, _counter_none_cumulative),
}


def _pair(case: str, training: bool, rng: np.random.Generator) -> tuple[nn.BatchNorm1d, Any]:
    track, setup = SETUPS[case]
    m = nn.BatchNorm1d(C, track_running_stats=track)
    m.weight.data = rng.uniform(0.5, 2.0, C).astype(np.float32)
    m.bias.data = rng.standard_normal(C).astype(np.float32)
    tm = torch.nn.BatchNorm1d(C, track_running_stats=track).double()
    with torch.no_grad():
        tm.weight.copy_(torch.from_numpy(m.weight.data.astype(np.float64)))
        tm.bias.copy_(torch.from_numpy(m.bias.data.astype(np.float64)))
    setup(m)
    setup(tm)
    m.train(training)
    tm.train(training)
    return m, tm


def _buffer_state(m: Any) -> dict[str, np.ndarray | None]:
    state: dict[str, np.ndarray | None] = {}
    for k in ("running_mean", "running_var", "num_batches_tracked"):
        v = getattr(m, k)
        v = v.numpy() if isinstance(v, torch.Tensor) else v
        state[k] = None if v is None else np.array(v, np.float64)
    return state


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("case", list(SETUPS))
def test_statistics_chosen_as_torch(isa: str, case: str, mode: str,
                                    rng: np.random.Generator) -> None:
    m, tm = _pair(case, mode == "train", rng)
    for step in range(2):  # the second step sees the first one's buffer updates
        x = (rng.standard_normal((8, C)) * 3 + 1).astype(np.float32)
        dout = rng.standard_normal((8, C)).astype(np.float32)
        m.zero_grad()
        y = m(x).copy()
        dx = m.backward(dout).copy()
        rv_before = np.inf if tm.running_var is None else tm.running_var.numpy().copy()
        xt = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
        tm.zero_grad()
        yt = tm(xt)
        (yt * torch.from_numpy(dout.astype(np.float64))).sum().backward()
        # error bounds from the magnitudes each result sums (float32 rounding of O(n) terms)
        g, b = m.weight.data.astype(np.float64), m.bias.data.astype(np.float64)
        y64 = yt.detach().numpy()
        xhat = np.abs((y64 - b) / g)
        what = f"{case}/{mode} step {step}"
        assert_close(y, y64, 64 * EPS32 * (np.abs(g) * (1 + xhat) + np.abs(b)), what=f"{what}: y")
        # dx = g invstd (dy - mean(dy) - xhat mean(dy xhat)) (the last two with batch stats);
        # invstd is the batch's or the running one's, so bound by the larger
        invstd = np.maximum(1 / np.sqrt(x.astype(np.float64).var(0) + 1e-5),
                            1 / np.sqrt(rv_before + 1e-5))
        terms = np.abs(dout) + np.abs(dout).mean(0) + xhat * (np.abs(dout) * xhat).mean(0)
        assert_close(dx, xt.grad.numpy(), 64 * EPS32 * np.abs(g) * invstd * terms,
                     what=f"{what}: dx")
        assert_close(m.weight.grad, tm.weight.grad.numpy(),
                     64 * EPS32 * (np.abs(dout) * xhat).sum(0), what=f"{what}: dgamma")
        assert_close(m.bias.grad, tm.bias.grad.numpy(), 64 * EPS32 * np.abs(dout).sum(0),
                     what=f"{what}: dbeta")
        ours, theirs = _buffer_state(m), _buffer_state(tm)
        for k in ours:
            assert (ours[k] is None) == (theirs[k] is None), f"{what}: {k} {ours[k]} vs {theirs[k]}"
            if ours[k] is not None:
                assert_close(ours[k], theirs[k], 16 * EPS32 * (1 + np.abs(theirs[k])),
                             what=f"{what}: {k}")


def test_buffers_none_in_eval_no_longer_crashes() -> None:
    """The report's exact reproducer (a SIGSEGV before): eval on None buffers normalises by
    the batch statistics, as torch does."""
    bn = nn.BatchNorm1d(4)
    bn.eval()
    bn.running_mean = None
    bn.running_var = None
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    y = bn(np.ones((3, 4), np.float32))
    np.testing.assert_array_equal(y, np.zeros((3, 4), np.float32))  # x - mean == 0 exactly
    want = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5)
    assert_close(bn(x), want, 16 * EPS32 * (1 + np.abs(want)), what="eval on batch stats")
    assert int(bn.num_batches_tracked) == 0  # eval never counts


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("missing", ["running_mean", "running_var"])
def test_one_buffer_none_raises_naming_it(mode: str, missing: str) -> None:
    """torch raises too (ValueError in training, RuntimeError in eval); here ValueError in
    both, naming the layer and the buffer, with nothing changed."""
    bn = nn.BatchNorm1d(4)
    bn.train(mode == "train")
    setattr(bn, missing, None)
    before = {k: None if v is None else v.copy() for k, v in _buffer_state(bn).items()}
    with pytest.raises(ValueError, match=rf"BatchNorm1d\(4.*running_mean and running_var must "
                                         rf"both be given or both be None, got {missing}=None"):
        bn(np.ones((3, 4), np.float32))
    for k, v in _buffer_state(bn).items():
        assert (v is None) == (before[k] is None) and (v is None or np.array_equal(v, before[k])), k


# --- the binding gate -------------------------------------------------------------------------
def _bn_args(n: int = 3, c: int = 4, **over: Any) -> tuple[tuple, dict]:
    """batchnorm_forward's positional arguments (the last a fresh BatchNormContext, its
    batch_stats from `use_batch_stats`) and keywords, with `over` replacing any of them."""
    a: dict[str, Any] = {
        "input": np.arange(n * c, dtype=np.float32).reshape(n, c), "weight": None, "bias": None,
        "running_mean": np.zeros(c, np.float32), "running_var": np.ones(c, np.float32),
        "num_batches_tracked": np.zeros((), np.int64)}
    saved: dict[str, Any] = {"save_mean": np.zeros(c, np.float32),
                             "save_invstd": np.zeros(c, np.float32), "use_batch_stats": True}
    kw: dict[str, Any] = {}
    for k, v in over.items():
        (a if k in a else saved if k in saved else kw)[k] = v
    ctx = _core.BatchNormContext(saved["save_mean"], saved["save_invstd"],
                                 batch_stats=saved["use_batch_stats"])
    return (*a.values(), ctx), kw


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


GATE = [  # (id, overrides, exception, message fragment)
    ("eval_running_none", dict(running_mean=None, running_var=None, use_batch_stats=False),
     ValueError, "running_mean and running_var are required when ctx.batch_stats=False"),
    ("mean_none_only", dict(running_mean=None), ValueError,
     "must both be given or both be None, got running_mean=None"),
    ("var_none_only_eval", dict(running_var=None, use_batch_stats=False), ValueError,
     "got running_var=None"),
    ("mean_wrong_shape_eval", dict(running_mean=np.zeros(5, np.float32), use_batch_stats=False),
     ValueError, "running_mean must have shape (4,), got (5,)"),
    ("var_wrong_shape_train", dict(running_var=np.ones(3, np.float32)), ValueError,
     "running_var must have shape (4,), got (3,)"),
    ("var_2d_eval", dict(running_var=np.ones((1, 4), np.float32), use_batch_stats=False),
     ValueError, "running_var must be 1-D, got 2-D"),
    ("mean_float64_eval", dict(running_mean=np.zeros(4), use_batch_stats=False), TypeError,
     "running_mean must have dtype float32, got float64"),
    ("var_list_train", dict(running_var=[1.0] * 4), TypeError,
     "running_var must be a numpy.ndarray of float32, got list"),
    ("mean_readonly_train", dict(running_mean=_readonly(np.zeros(4, np.float32))), ValueError,
     "running_mean must be writeable"),
    ("counter_float", dict(num_batches_tracked=np.zeros((), np.float64)), TypeError,
     "num_batches_tracked must be a writeable int64 array with one element, got float64"),
    ("counter_int", dict(num_batches_tracked=0), TypeError,
     "num_batches_tracked must be a writeable int64 array with one element, got int"),
    ("counter_two", dict(num_batches_tracked=np.zeros(2, np.int64)), TypeError,
     "with one element, got int64 array of shape (2,)"),
    ("counter_big_endian", dict(num_batches_tracked=np.zeros((), ">i8")), TypeError,
     "got >i8"),
    ("counter_readonly", dict(num_batches_tracked=_readonly(np.zeros((), np.int64))), ValueError,
     "num_batches_tracked must be writeable"),
    ("counter_at_max", dict(num_batches_tracked=np.array(np.iinfo(np.int64).max)), ValueError,
     "num_batches_tracked is at the int64 maximum"),
    ("counter_negative_cumulative", dict(num_batches_tracked=np.array(-1, np.int64), momentum=None),
     ValueError, "num_batches_tracked must be >= 0 for momentum=None"),
    ("momentum_str", dict(momentum="0.1"), TypeError,
     "momentum must be a float in [0, 1] or None, got str"),
]


@pytest.mark.parametrize("over,exc,fragment", [g[1:] for g in GATE], ids=[g[0] for g in GATE])
def test_gate_refuses_running_statistics(over: dict, exc: type[Exception], fragment: str) -> None:
    args, kw = _bn_args(**over)
    ctx = args[-1]
    arrays = [v for v in (*args, *kw.values()) if isinstance(v, np.ndarray)]
    arrays += [ctx.save_mean, ctx.save_invstd]
    before = [a.copy() for a in arrays]
    with pytest.raises(exc) as info:
        _core.batchnorm_forward(*args, **kw)
    assert type(info.value) is exc and str(info.value).startswith("batchnorm_forward: ")
    assert fragment in str(info.value), str(info.value)
    for a, b in zip(arrays, before, strict=True):
        np.testing.assert_array_equal(a, b)
    assert ctx.input is None  # the context records nothing of a refused forward


def test_eval_reads_readonly_running_statistics() -> None:
    """Eval only reads the running statistics: read-only ones are accepted (and unchanged)."""
    mean, var = _readonly(np.full(4, 2.0, np.float32)), _readonly(np.full(4, 4.0, np.float32))
    args, kw = _bn_args(running_mean=mean, running_var=var, use_batch_stats=False, eps=0.0)
    y = _core.batchnorm_forward(*args, **kw)
    np.testing.assert_array_equal(y, (args[0] - 2.0) / 2.0)


@pytest.mark.parametrize("momentum,factor", [(0.25, 0.25), (None, 0.0)])
def test_update_without_counter(momentum: float | None, factor: float) -> None:
    """No num_batches_tracked: running statistics move by `momentum` (by 0 for None: torch's
    factor when the module has no counter)."""
    args, kw = _bn_args(num_batches_tracked=None, momentum=momentum)
    x = args[0].astype(np.float64)
    _core.batchnorm_forward(*args, **kw)
    mean, var = factor * x.mean(0), (1 - factor) + factor * x.var(0, ddof=1)
    assert_close(args[3], mean, 8 * EPS32 * (1 + np.abs(mean)), what="running_mean")
    assert_close(args[4], var, 8 * EPS32 * (1 + np.abs(var)), what="running_var")


def test_counter_counts_batches_without_running_statistics() -> None:
    """torch's module counts a training batch even when its buffers are None."""
    args, kw = _bn_args(running_mean=None, running_var=None)
    _core.batchnorm_forward(*args, **kw)
    assert int(args[5]) == 1
