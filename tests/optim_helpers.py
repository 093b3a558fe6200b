"""Shared helpers for the optimizer tests: twin steadygrad/torch parameter sets and a
trajectory runner that feeds both the same gradients (optionally clipped torch-side)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from steadygrad.nn import Parameter, flatten


@pytest.fixture(autouse=True)
def torch_one_thread():
    """torch on one thread for these tiny shapes: its OpenMP pool spinning next to ours on a
    2-core machine costs milliseconds per call and proves nothing here."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


SHAPES = [(7, 5), (5,), (33,), (3, 4, 2)]


def make_params(rng: np.random.Generator, shapes: list[tuple[int, ...]] = SHAPES):
    ps = [Parameter(rng.standard_normal(s).astype(np.float32)) for s in shapes]
    flatten(ps)
    tps = [torch.tensor(p.data.copy(), requires_grad=True) for p in ps]
    return ps, tps


def split_groups(items: list[Any], group_opts: list[dict[str, Any]] | None):
    """Parameters 0, 2 in group 0, the rest in group 1 (a non-contiguous subset)."""
    if group_opts is None:
        return items
    g0 = [items[i] for i in range(len(items)) if i % 2 == 0]
    g1 = [items[i] for i in range(len(items)) if i % 2 == 1]
    return [dict(group_opts[0], params=g0), dict(group_opts[1], params=g1)]


def run_trajectory(
    sg_opt: Any,
    torch_opt: torch.optim.Optimizer,
    ps: list[Parameter],
    tps: list[torch.Tensor],
    rng: np.random.Generator,
    steps: int = 50,
    clip: tuple[str, float, float] | None = None,
    stale_every: int = 0,
) -> list[tuple[float | None, float | None]]:
    """Run both optimizers on identical gradients; clip = ("norm", max_norm, norm_type) or
    ("value", clip_value, 0) applied torch-side by torch.nn.utils before its step (steadygrad
    has the same clip fused into its optimizer). Returns (sg norm, torch norm) per step."""
    norms = []
    for t in range(steps):
        scale = [0.05, 1.0, 20.0][t % 3]
        for i, (p, tp) in enumerate(zip(ps, tps, strict=False)):
            if stale_every and i == 1 and t % stale_every == 1:
                p.grad = None
                tp.grad = None
                continue
            g = (rng.standard_normal(p.shape) * scale).astype(np.float32)
            p.grad = g
            tp.grad = torch.tensor(g)
        tnorm = None
        if clip is not None and clip[0] == "norm":
            tnorm = float(torch.nn.utils.clip_grad_norm_(tps, clip[1], norm_type=clip[2]))
        elif clip is not None and clip[0] == "value":
            torch.nn.utils.clip_grad_value_(tps, clip[1])
        n = sg_opt.step()
        torch_opt.step()
        norms.append((n, tnorm))
    return norms


def assert_close_params(ps, tps, rtol=1e-5, atol=1e-6, what=""):
    for i, (p, tp) in enumerate(zip(ps, tps, strict=False)):
        np.testing.assert_allclose(
            p.data, tp.detach().numpy(), rtol=rtol, atol=atol, err_msg=f"{what} param {i} {p.shape}"
        )


def assert_norms(norms, rtol=1e-5):
    for t, (ours, theirs) in enumerate(norms):
        if theirs is not None:
            assert ours is not None and math.isclose(ours, theirs, rel_tol=rtol), (t, ours, theirs)
