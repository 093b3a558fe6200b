"""sg.ops.softmax_cross_entropy on every ISA path: loss and gradient against a float64
reference and torch.nn.functional.cross_entropy (mean/sum, label_smoothing), int32/int64
labels, logits of +-1e4, C=1, B=0, out aliasing logits, thread-count invariance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_close, float_bits, num_threads

import steadygrad as sg

TIME_BUDGET_S = 15
EPS32 = float(np.finfo(np.float32).eps)


def reference(logits, labels, reduction, eps):
    """float64 loss and dlogits: q = (1-eps) onehot + eps/C, loss_i = lse_i - sum_j q_j x_j."""
    x = logits.astype(np.float64)
    B, C = x.shape
    mx = x.max(axis=1, keepdims=True) if B else np.zeros((0, 1))
    lse = mx[:, 0] + np.log(np.exp(x - mx).sum(axis=1))
    q = np.full((B, C), eps / C)
    q[np.arange(B), labels] += 1.0 - eps
    rows = lse - (q * x).sum(axis=1)
    p = np.exp(x - lse[:, None])
    if reduction == "mean":
        return (rows.sum() / B if B else np.nan), (p - q) / max(B, 1)
    return rows.sum(), p - q


def torch_reference(logits, labels, reduction, eps):
    t = torch.from_numpy(logits.copy()).requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(t, torch.from_numpy(labels.astype(np.int64)),
                                             reduction=reduction, label_smoothing=eps)
    (g,) = torch.autograd.grad(loss, t)
    return float(loss.detach()), g.numpy()


def _case(rng, B, C, label_dtype, scale=3.0):
    logits = (rng.standard_normal((B, C)) * scale).astype(np.float32)
    labels = rng.integers(0, C, B).astype(label_dtype)
    return logits, labels


def _loss_tol(B, C, reduction, loss_ref):
    # Each row: lse from a float32 exp sum of C terms (relative ~eps log C) and float32 x.
    return 16 * EPS32 * (1 + abs(loss_ref)) * (1 if reduction == "mean" else max(B, 1)) ** 0.5


SHAPES = {"1x1": (1, 1), "3x1": (3, 1), "1x7": (1, 7), "5x8": (5, 8), "7x33": (7, 33),
          "17x10": (17, 10), "64x1000": (64, 1000), "2x4097": (2, 4097)}


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("label_dtype", [np.int32, np.int64], ids=["int32", "int64"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_vs_float64(isa, rng, shape, label_dtype, reduction, eps):
    B, C = shape
    logits, labels = _case(rng, B, C, label_dtype)
    logits_copy, labels_copy = logits.copy(), labels.copy()
    loss, grad = sg.ops.softmax_cross_entropy(logits, labels, reduction=reduction,
                                              label_smoothing=eps)
    np.testing.assert_array_equal(logits, logits_copy)
    np.testing.assert_array_equal(labels, labels_copy)
    assert isinstance(loss, float)
    assert grad.shape == (B, C) and grad.dtype == np.float32
    ref_loss, ref_grad = reference(logits, labels, reduction, eps)
    assert abs(loss - ref_loss) <= _loss_tol(B, C, reduction, ref_loss), (
        f"loss {loss!r} vs float64 {ref_loss!r} ({shape}, {reduction}, eps={eps})")
    g_scale = 1.0 / B if reduction == "mean" else 1.0
    assert_close(grad, ref_grad, 8 * EPS32 * g_scale, rtol=8 * EPS32,
                 what=f"dlogits {shape} {reduction} eps={eps}")


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("shape", [(16, 10), (9, 131)], ids=["16x10", "9x131"])
def test_vs_torch(isa, rng, reduction, eps, shape):
    logits, labels = _case(rng, *shape, np.int64)
    loss, grad = sg.ops.softmax_cross_entropy(logits, labels, reduction=reduction,
                                              label_smoothing=eps)
    t_loss, t_grad = torch_reference(logits, labels, reduction, eps)
    assert abs(loss - t_loss) <= 32 * EPS32 * (1 + abs(t_loss)), (loss, t_loss)
    g_scale = 1.0 / shape[0] if reduction == "mean" else 1.0
    assert_close(grad, t_grad, 8 * EPS32 * g_scale, rtol=16 * EPS32, what="dlogits vs torch")


@pytest.mark.parametrize("magnitude", [1e4, 50.0])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_large_logits_stable(isa, rng, magnitude, reduction):
    """Logits of +-1e4: every exp sees x - max <= 0, so the loss is finite and exact-ish."""
    B, C = 6, 37
    logits = rng.choice([-magnitude, magnitude, 0.0, magnitude / 2], (B, C)).astype(np.float32)
    logits[0, 5] = magnitude  # a row whose label is its max
    labels = rng.integers(0, C, B).astype(np.int64)
    labels[0] = 5
    for eps in (0.0, 0.1):
        loss, grad = sg.ops.softmax_cross_entropy(logits, labels, reduction=reduction,
                                                  label_smoothing=eps)
        assert np.isfinite(loss) and np.isfinite(grad).all(), (loss, grad)
        ref_loss, ref_grad = reference(logits, labels, reduction, eps)
        assert abs(loss - ref_loss) <= 16 * EPS32 * (1 + abs(ref_loss)), (loss, ref_loss, eps)
        t_loss, t_grad = torch_reference(logits, labels, reduction, eps)
        assert abs(loss - t_loss) <= 16 * EPS32 * (1 + abs(t_loss)), (loss, t_loss, eps)
        assert_close(grad, ref_grad, 8 * EPS32, rtol=8 * EPS32, what=f"+-{magnitude} eps={eps}")
        assert_close(grad, t_grad, 8 * EPS32, rtol=16 * EPS32, what=f"torch +-{magnitude}")


def test_single_class(isa):
    """C=1: softmax is 1, the loss and the gradient are 0 (with or without smoothing)."""
    logits = np.array([[3.0], [-1e4], [0.0]], np.float32)
    for eps in (0.0, 0.3):
        loss, grad = sg.ops.softmax_cross_entropy(logits, np.zeros(3, np.int32),
                                                  label_smoothing=eps)
        t_loss, t_grad = torch_reference(logits, np.zeros(3, np.int64), "mean", eps)
        assert loss == 0.0 and t_loss == 0.0
        np.testing.assert_array_equal(grad, np.zeros((3, 1), np.float32))
        np.testing.assert_array_equal(t_grad, grad)


@pytest.mark.parametrize("C", [0, 5])
def test_empty_batch_like_torch(isa, C):
    """B=0: mean is 0/0 = nan (as torch), sum is 0; the gradient is empty."""
    logits = np.zeros((0, C), np.float32)
    labels = np.zeros(0, np.int64)
    loss, grad = sg.ops.softmax_cross_entropy(logits, labels, reduction="mean")
    assert np.isnan(loss) and grad.shape == (0, C)
    loss, grad = sg.ops.softmax_cross_entropy(logits, labels, reduction="sum")
    assert loss == 0.0 and grad.shape == (0, C)
    if C:
        t_mean = torch_reference(logits, labels, "mean", 0.0)[0]
        t_sum = torch_reference(logits, labels, "sum", 0.0)[0]
        assert np.isnan(t_mean) and t_sum == 0.0


@pytest.mark.parametrize("shape", [(5, 7), (8, 64), (3, 1)], ids=["5x7", "8x64", "3x1"])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_out_aliasing_logits(isa, rng, shape, eps):
    """out=logits overwrites the logits with their gradient and gives the same loss."""
    logits, labels = _case(rng, *shape, np.int32)
    want_loss, want_grad = sg.ops.softmax_cross_entropy(logits, labels, label_smoothing=eps)
    buf = logits.copy()
    loss, grad = sg.ops.softmax_cross_entropy(buf, labels, label_smoothing=eps, out=buf)
    assert grad is buf
    assert loss == want_loss, f"aliased loss {loss!r} != {want_loss!r}"
    np.testing.assert_array_equal(buf, want_grad)


def test_out_and_compute_grad(isa, rng):
    logits, labels = _case(rng, 4, 9, np.int64)
    out = np.full((4, 9), np.nan, np.float32)
    loss, grad = sg.ops.softmax_cross_entropy(logits, labels, out=out)
    assert grad is out and np.isfinite(out).all()
    loss2, none = sg.ops.softmax_cross_entropy(logits, labels, compute_grad=False)
    assert none is None and loss2 == loss


def test_int32_int64_labels_agree(isa, rng):
    logits, labels = _case(rng, 33, 21, np.int64)
    a = sg.ops.softmax_cross_entropy(logits, labels)
    b = sg.ops.softmax_cross_entropy(logits, labels.astype(np.int32))
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])


def test_thread_count_invariance(isa, rng):
    logits, labels = _case(rng, 300, 257, np.int64)  # B*C past the parallel threshold
    res = []
    for t in (1, 2):
        with num_threads(t):
            res.append(sg.ops.softmax_cross_entropy(logits, labels, label_smoothing=0.05))
    assert float_bits(res[0][0]) == float_bits(res[1][0])
    np.testing.assert_array_equal(res[0][1], res[1][1])


@pytest.mark.parametrize("pos", [0, 5, 20, 36], ids=lambda p: f"col{p}")
def test_nan_logit_poisons_its_row_like_torch(isa, rng, pos):
    logits, labels = _case(rng, 3, 37, np.int64)
    logits[1, pos] = np.nan
    loss, grad = sg.ops.softmax_cross_entropy(logits, labels, reduction="sum")
    # torch's semantics, from the mathematics rather than its kernels (whose non-finite
    # results may depend on the CPU): a NaN logit makes its row's log-sum-exp NaN, so the
    # loss and that row's gradient are NaN; the other rows are as without the NaN row.
    assert np.isnan(loss) and np.isnan(grad[1]).all()
    _, clean_grad = sg.ops.softmax_cross_entropy(logits[[0, 2]], labels[[0, 2]], reduction="sum")
    np.testing.assert_array_equal(grad[[0, 2]], clean_grad)
    assert np.isfinite(clean_grad).all()
