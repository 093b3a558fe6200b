"""A residual block's buffers (issue 13, C2's memory): the ReLU after a Residual runs in the
Residual's sum (its output is the mask), the sum goes over the module branch's output (a
BatchNorm's, which its backward never reads), dL/dx over the module branch's dL/dx, and the
ReLU's gradient over a dead grad_output. Results are bitwise those of the unfused layers;
summary() counts what is allocated."""

from __future__ import annotations

import numpy as np
import pytest

import steadygrad as sg
from steadygrad import nn


class _Unfused(nn.Sequential):
    """A ReLU in a container of its own: nothing fuses it, it keeps its own output and dL/dx."""


def _block(cin: int, cout: int, stride: int, fused: bool) -> nn.Module:
    body = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(), nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
                         nn.BatchNorm2d(cout))
    short = None if stride == 1 and cin == cout else nn.Sequential(
        nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
    return nn.Sequential(nn.Residual(body, shortcut=short), nn.ReLU() if fused else _Unfused(nn.ReLU()))


def _net(fused: bool, outer: bool = False) -> nn.Sequential:
    blocks: list[nn.Module] = [_block(4, 4, 1, fused), _block(4, 8, 2, fused)]
    if outer:  # a block inside another Residual's branch: its grad_output is shared
        blocks = [nn.Residual(nn.Sequential(_block(4, 4, 1, fused))), blocks[1]]
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), *blocks, nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 3))


@pytest.mark.parametrize("outer", [False, True])
def test_fused_residual_relu_is_bitwise_the_unfused_one(outer: bool,
                                                        rng: np.random.Generator) -> None:
    sg.manual_seed(0)
    a = _net(True, outer)
    b = _net(False, outer)
    b.load_state_dict(a.state_dict())
    if not outer:
        assert "fuses relu" in a[1].plan()[0].describe()
    x = rng.standard_normal((5, 3, 9, 9)).astype(np.float32)
    for _ in range(2):
        ya, yb = a(x), b(x)
        np.testing.assert_array_equal(ya, yb)
        g = rng.standard_normal(ya.shape).astype(np.float32)
        g_copy = g.copy()
        np.testing.assert_array_equal(a.backward(g), b.backward(g.copy()))
        np.testing.assert_array_equal(g, g_copy)  # the caller's gradient is never overwritten
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            np.testing.assert_array_equal(p.grad, q.grad)


def test_residual_block_holds_no_sum_dx_or_relu_buffers(rng: np.random.Generator) -> None:
    m = _net(True)
    x = rng.standard_normal((5, 3, 9, 9)).astype(np.float32)
    m.backward(np.ones_like(m(x)))
    for i in (1, 2):
        res, relu = m[i][0], m[i][1]
        assert res._work == {}, f"block {i}: {sorted(res._work)}"  # sum, dL/dx, masked dL/dy
        assert relu._work == {}
    s = m.summary(5, (3, 9, 9), file=None)
    rows = {r["name"]: r for r in s["layers"]}
    for i in ("1", "2"):
        assert rows[f"{i}.0"]["activation_bytes"] == rows[f"{i}.0"]["workspace_bytes"] == 0
        assert rows[f"{i}.1"]["activation_bytes"] == rows[f"{i}.1"]["workspace_bytes"] == 0


def test_a_shared_grad_output_is_masked_into_a_buffer_of_its_own(
        rng: np.random.Generator) -> None:
    """Inside another Residual's branch the block's grad_output is also the outer shortcut's:
    the mask goes to a buffer, which summary counts on the fused ReLU's row."""
    m = _net(True, outer=True)
    x = rng.standard_normal((5, 3, 9, 9)).astype(np.float32)
    m.backward(np.ones_like(m(x)))
    inner = m[1].module[0]
    assert sorted(inner[0]._work) == ["grad_relu"]
    rows = {r["name"]: r for r in m.summary(5, (3, 9, 9), file=None)["layers"]}
    assert rows["1.module.0.1"]["workspace_bytes"] == inner[0]._work["grad_relu"][1].nbytes
