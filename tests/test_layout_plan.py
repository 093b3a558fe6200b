"""The channels-last plan (nn/plan.py, nn/container.py): a Sequential keeps a run of
channels_last layers (layout_agnostic ones between them) channels-last and converts only at the
run's edges; nested Sequential / Residual pass the layouts down; fusion and donation keep
working; results are bitwise those of running each layer on its own; Residual's projection
shortcut against torch; Flatten after the run sees torch's order; Dropout on any shape.
Until the conv layers land, `Scale` (a per-channel scale in numpy honouring layout_in /
layout_out) stands in for a channels-last layer, next to BatchNorm2d."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
from conftest import assert_close, plan_set

from steadygrad import nn
from steadygrad.nn._layout import FIRST, LAST
from steadygrad.nn.parameter import Parameter

torch = pytest.importorskip("torch")

TIME_BUDGET_S = 10
EPS32 = float(np.finfo(np.float32).eps)


class Scale(nn.Module):
    """y = x * weight[c] (+ ReLU epilogue), computed channels-last: what a conv layer does
    with its layouts (converts what arrives channels-first, returns dL/dx in layout_in)."""

    channels_last = True
    fusable_epilogues = frozenset({"relu"})
    owns_output = True
    reads_output_in_backward = False

    def __init__(self, c: int, seed: int = 0) -> None:
        super().__init__()
        self.c = c
        self.weight = Parameter(np.random.default_rng(seed).uniform(0.5, 2, c).astype(np.float32))
        self._flatten_parameters()
        self.calls: list[tuple[str, str]] = []

    def forward(self, x: np.ndarray, *, layout_in: str = FIRST, layout_out: str = FIRST,
                epilogue: str = "none") -> np.ndarray:
        self.calls.append((layout_in, layout_out))
        xl = np.moveaxis(x, 1, -1) if layout_in == FIRST else x
        assert xl.shape[-1] == self.c, f"Scale got {x.shape} as {layout_in}"
        y = xl * self.weight.data
        if epilogue == "relu":
            y = np.maximum(y, 0)
        self._x, self._lay = np.array(xl), (layout_in, layout_out)
        out = self._buffer("out", y.shape if layout_out == LAST else
                           (y.shape[0], y.shape[-1], *y.shape[1:-1]))
        out[...] = y if layout_out == LAST else np.moveaxis(y, -1, 1)
        return out

    def _backward(self, g: np.ndarray) -> np.ndarray:
        layout_in, layout_out = self._lay
        gl = np.moveaxis(g, 1, -1) if layout_out == FIRST else g
        gw = (gl * self._x).reshape(-1, self.c).sum(0, dtype=np.float32)
        self.weight.accumulate_grad(gw.astype(np.float32))
        dx = (gl * self.weight.data).astype(np.float32)
        return np.ascontiguousarray(np.moveaxis(dx, -1, 1) if layout_in == FIRST else dx)

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(shape) < 3 or shape[1] != self.c:
            raise ValueError(f"expected (N, {self.c}, ...), got {tuple(shape)}")
        return tuple(shape)


def _lay(model: nn.Sequential) -> list[tuple[str, str]]:
    return [(lp.layout_in[9:], lp.layout_out[9:]) for lp in model.plan()]  # "first"/"last"


F, L = "first", "last"


def test_a_run_converts_only_at_its_edges() -> None:
    m = nn.Sequential(Scale(3), nn.BatchNorm2d(3), nn.ReLU(), Scale(3, 1), nn.Flatten(),
                      nn.Linear(48, 2))
    assert _lay(m) == [(F, L), (L, L), (L, L), (L, F), (F, F), (F, F)]
    plan = m.plan()
    assert plan[1].epilogue == "relu" and plan[2].absorbed  # fusion inside the run
    assert "layout_in" not in plan[2].forward_kwargs()  # only channels_last layers get them
    assert plan[4].forward_kwargs() == {} and plan[5].forward_kwargs() == {}
    assert plan[0].forward_kwargs() == {"layout_in": "channels_first",
                                        "layout_out": "channels_last"}
    text = "\n".join(lp.describe() for lp in plan)
    assert "[0] Scale(): channels-first -> channels-last (converts its input)" in text
    assert "[3] Scale(): channels-last -> channels-first (converts its output)" in text
    assert "[2] ReLU(): runs inside the previous layer (forward and backward); on channels-last data" in text
    m(np.ones((2, 3, 4, 4), np.float32))
    assert m[0].calls == [(FIRST, LAST)] and m[3].calls == [(LAST, FIRST)]


@pytest.mark.parametrize("layers,want", [
    (lambda: [Scale(3), nn.Flatten(), nn.Linear(12, 2)], [(F, F), (F, F), (F, F)]),
    (lambda: [nn.ReLU(), Scale(3), Scale(3), nn.Tanh()], [(F, F), (F, L), (L, F), (F, F)]),
    (lambda: [Scale(3), nn.Dropout(0.0), nn.Identity(), Scale(3)], [(F, L), (L, L), (L, L), (L, F)]),
    (lambda: [Scale(3), nn.Flatten(0, 0), Scale(3)], [(F, F), (F, F), (F, F)]),
], ids=["run_of_one", "agnostic_outside", "agnostic_inside", "broken_by_other"])
def test_layouts_chosen(layers: Any, want: list[tuple[str, str]]) -> None:
    assert _lay(nn.Sequential(*layers())) == want


def test_nested_containers_pass_the_layouts_down() -> None:
    inner = nn.Sequential(nn.BatchNorm2d(3), nn.ReLU(), Scale(3))
    block = nn.Residual(nn.Sequential(Scale(3), nn.BatchNorm2d(3)))
    proj = nn.Residual(nn.Sequential(Scale(3), nn.ReLU()), shortcut=Scale(3))
    m = nn.Sequential(Scale(3), inner, block, proj, Scale(3), nn.Flatten(), nn.Linear(12, 2))
    assert inner.channels_last and block.channels_last and proj.channels_last
    assert _lay(m)[:5] == [(F, L), (L, L), (L, L), (L, L), (L, F)]
    assert [(lp.layout_in, lp.layout_out) for lp in inner.plan(LAST, LAST)] == [(LAST, LAST)] * 3
    assert _lay(inner) == [(F, L), (L, L), (L, F)]  # used on its own
    assert not nn.Residual(nn.Linear(3, 3)).channels_last
    assert nn.Sequential(nn.ReLU(), nn.Identity()).layout_agnostic
    x = np.random.default_rng(0).standard_normal((2, 3, 2, 2)).astype(np.float32)
    m(x)
    assert block.module[0].calls == [(LAST, LAST)] and proj.shortcut.calls == [(LAST, LAST)]


def _stacks() -> dict[str, Any]:
    return {
        "bn_run": lambda: nn.Sequential(Scale(3), nn.BatchNorm2d(3), nn.ReLU(), Scale(3, 1),
                                        nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(3 * 20, 4)),
        "fused_scale": lambda: nn.Sequential(Scale(3), nn.ReLU(), nn.BatchNorm2d(3), nn.ReLU(),
                                             nn.BatchNorm2d(3), nn.Flatten(),
                                             nn.Linear(3 * 20, 4)),
        "nested": lambda: nn.Sequential(
            Scale(3), nn.Residual(nn.Sequential(nn.BatchNorm2d(3), nn.ReLU(), Scale(3, 2))),
            nn.Residual(nn.Sequential(Scale(3, 3), nn.BatchNorm2d(3)),
                        shortcut=nn.Sequential(Scale(3, 4), nn.BatchNorm2d(3))),
            nn.ReLU(), nn.Flatten(), nn.Linear(3 * 20, 4)),
        "bn1d_ncl": lambda: nn.Sequential(Scale(3), nn.BatchNorm1d(3), nn.ReLU(), Scale(3),
                                          nn.Flatten(), nn.Linear(3 * 20, 4)),
    }


def _standalone(model: nn.Sequential, x: np.ndarray, g: np.ndarray) -> tuple[Any, ...]:
    """Each child run on its own (channels-first in and out), in order and in reverse."""
    ys = [x]
    for child in model:
        ys.append(child(ys[-1]))
    dx = g
    for child in reversed(list(model)):
        dx = child.backward(dx)
    return ys[-1], dx


@pytest.mark.parametrize("name", list(_stacks()))
def test_results_are_those_of_each_layer_alone(isa: str, name: str) -> None:
    model = _stacks()[name]()
    ref = copy.deepcopy(model)
    rng = np.random.default_rng(9)
    shape = (2, 3, 20) if name == "bn1d_ncl" else (2, 3, 4, 5)
    x = rng.standard_normal(shape).astype(np.float32)
    g = rng.standard_normal((2, 4)).astype(np.float32)
    for step in range(2):
        model.zero_grad()
        ref.zero_grad()
        y, dx = model(x), model.backward(g)
        ry, rdx = _standalone(ref, x, g)
        np.testing.assert_array_equal(y, ry, err_msg=f"{name} step {step}: y")
        np.testing.assert_array_equal(dx, rdx, err_msg=f"{name} step {step}: dx")
        for (k, p), q in zip(model.named_parameters(), ref.parameters(), strict=True):
            np.testing.assert_array_equal(p.grad, q.grad, err_msg=f"{name}: {k}")
        for b, rb in zip(model.buffers(), ref.buffers(), strict=True):
            np.testing.assert_array_equal(b, rb)
    if name == "fused_scale":  # a ReLU fused across the layout change, donation after it
        assert plan_set(model, "fused") == {0, 2} and plan_set(model, "donate") == {4}
        assert _lay(model)[:5] == [(F, L), (L, L), (L, L), (L, L), (L, F)]


def test_residual_with_projection_matches_torch(isa: str) -> None:
    """y = shortcut(x) + module(x), standalone and inside a run, against torch in float64."""
    rng = np.random.default_rng(1)
    block = nn.Residual(nn.Sequential(Scale(3, 5), nn.BatchNorm2d(3), nn.ReLU()),
                        shortcut=nn.Sequential(Scale(3, 6), nn.BatchNorm2d(3)))
    for p in block.parameters():
        p.data = rng.uniform(0.5, 1.5, p.shape).astype(np.float32)
    tw = {k: torch.from_numpy(p.data.astype(np.float64)).requires_grad_(True)
          for k, p in block.named_parameters()}

    def tbn(z: Any, pre: str) -> Any:
        return torch.nn.functional.batch_norm(z, None, None, tw[pre + ".weight"],
                                              tw[pre + ".bias"], training=True)

    def tref(z: Any) -> Any:
        sc = lambda k: tw[k].view(1, 3, 1, 1)  # noqa: E731
        main = torch.relu(tbn(z * sc("module.0.weight"), "module.1"))
        return tbn(z * sc("shortcut.0.weight"), "shortcut.1") + main

    for where in ("alone", "in_run"):
        x = rng.standard_normal((3, 3, 4, 4)).astype(np.float32)
        g = rng.standard_normal(x.shape).astype(np.float32)
        model: nn.Module = block
        if where == "in_run":  # between two scales by exactly 1: the block runs (LAST, LAST)
            edges = [Scale(3), Scale(3)]
            for e in edges:
                e.weight.data[...] = 1.0
            model = nn.Sequential(edges[0], block, edges[1])
            assert _lay(model)[1] == (L, L)
        model.zero_grad()
        y = model(x).copy()
        dx = model.backward(g).copy()
        xt = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
        for t in tw.values():
            t.grad = None
        yt = tref(xt)
        (yt * torch.from_numpy(g.astype(np.float64))).sum().backward()
        tol = 256 * EPS32 * (1 + np.abs(yt.detach().numpy()))
        assert_close(y, yt.detach().numpy(), tol, what=f"{where}: y")
        assert_close(dx, xt.grad.numpy(), 256 * EPS32 * 16 * (1 + np.abs(xt.grad.numpy())),
                     what=f"{where}: dx")
        for k, p in block.named_parameters():
            assert_close(p.grad, tw[k].grad.numpy(), 1e-4 * (1 + np.abs(tw[k].grad.numpy())),
                         what=f"{where}: {k}")


def test_residual_first_and_last_in_a_run_convert_the_identity() -> None:
    """A Residual at a run's edge gets layout_in != layout_out: its identity branch is
    converted, and the result is each layer's alone."""
    model = nn.Sequential(nn.Residual(nn.Sequential(Scale(3, 1), nn.BatchNorm2d(3))), Scale(3, 2),
                          nn.Residual(Scale(3, 3)), nn.Flatten(), nn.Linear(3 * 6, 2))
    assert _lay(model)[:3] == [(F, L), (L, L), (L, F)]
    ref = copy.deepcopy(model)
    x = np.random.default_rng(3).standard_normal((2, 3, 2, 3)).astype(np.float32)
    g = np.random.default_rng(4).standard_normal((2, 2)).astype(np.float32)
    y, dx = model(x), model.backward(g)
    ry, rdx = _standalone(ref, x, g)
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_array_equal(dx, rdx)


def test_shapes_are_checked_in_logical_layout_and_errors_name_the_layer() -> None:
    m = nn.Sequential(Scale(3), nn.BatchNorm2d(3), Scale(4), nn.Flatten(), nn.Linear(12, 2))
    with pytest.raises(ValueError, match=r"^Sequential\[2\] Scale\(\): expected \(N, 4, \.\.\.\), "
                                         r"got \(2, 3, 2, 2\)"):
        m(np.zeros((2, 3, 2, 2), np.float32))
    assert m[0].calls == [] and int(m[1].num_batches_tracked) == 0  # checked before running
    r = nn.Residual(Scale(3), shortcut=nn.Sequential(Scale(3), nn.Flatten()))
    with pytest.raises(ValueError, match=r"module maps shape \(2, 3, 2, 2\) to \(2, 3, 2, 2\) but "
                                         r"shortcut to \(2, 12\)"):
        r(np.zeros((2, 3, 2, 2), np.float32))
    with pytest.raises(TypeError, match=r"Residual: shortcut must be an nn\.Module or None"):
        nn.Residual(nn.ReLU(), shortcut=3)  # type: ignore[arg-type]
    shared = Scale(3)
    with pytest.raises(ValueError, match="is the same object"):
        nn.Residual(shared, shortcut=shared)


def test_flatten_after_a_run_has_torch_s_order() -> None:
    m = nn.Sequential(Scale(3, 1), Scale(3, 2), nn.Flatten())
    x = np.random.default_rng(5).standard_normal((2, 3, 2, 4)).astype(np.float32)
    w1, w2 = m[0].weight.data.reshape(1, 3, 1, 1), m[1].weight.data.reshape(1, 3, 1, 1)
    np.testing.assert_array_equal(m(x), ((x * w1) * w2).reshape(2, -1))


@pytest.mark.parametrize("shape", [(5, 3, 7), (2, 3, 4, 5)])
def test_dropout_any_shape_and_inside_a_run(shape: tuple[int, ...]) -> None:
    assert nn.Dropout.layout_agnostic
    rng = np.random.default_rng(6)
    x = rng.standard_normal(shape).astype(np.float32) + 3  # no exact zeros
    d = nn.Dropout(0.4)
    y = d(x)
    keep = y != 0
    assert y.shape == shape and 0.2 < 1 - keep.mean() < 0.6
    np.testing.assert_array_equal(y[keep], x[keep] * np.float32(1 / 0.6))
    g = rng.standard_normal(shape).astype(np.float32)
    np.testing.assert_array_equal(d.backward(g), np.where(keep, g * np.float32(1 / 0.6), 0))
    m = nn.Sequential(Scale(3, 1), nn.Dropout(0.4), Scale(3, 2))
    assert _lay(m)[1] == (L, L)
    y = m(x)
    w1 = m[0].weight.data.reshape((1, 3) + (1,) * (len(shape) - 2))
    w2 = m[2].weight.data.reshape(w1.shape)
    full = ((x * w1) * np.float32(1 / 0.6)) * w2
    kept = y != 0
    np.testing.assert_array_equal(y[kept], full[kept])
    assert 0 < kept.mean() < 1


def test_summary_counts_the_edge_conversions() -> None:
    alone = nn.BatchNorm2d(3).summary(2, (3, 4, 4), file=None)
    n = 4 * 2 * 3 * 16
    row = alone["layers"][0]
    assert row["activation_bytes"] == n + 24 + 2 * n  # own rows + input copy + converted output
    assert row["workspace_bytes"] == 0 + n  # dL/dy converted (no dL/dx for the first layer)
    run = nn.Sequential(Scale(3), nn.BatchNorm2d(3), Scale(3), nn.Flatten(), nn.Linear(48, 2))
    rows = run.summary(2, (3, 4, 4), file=None)["layers"]
    bn = next(r for r in rows if r["layer"].startswith("BatchNorm2d"))
    assert bn["activation_bytes"] == n + 24  # inside the run: no conversion
