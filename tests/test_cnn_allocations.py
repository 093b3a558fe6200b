"""A CNN training step after warm-up allocates nothing (issue 13): the kernels take their work
memory from the layers' buffers and the grow-only thread-local scratch (GEMM packing buffers,
the drivers' workspace of cpp/common/driver_workspace.h), whose size the layers report
(thread_scratch) as a function of the geometry. _core.kernel_heap_allocations() counts the heap
allocations the kernels make (operator new outside the GIL, scratch grows); tracemalloc counts
the Python side's arrays."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from cnn_blocks import resblock, traced_peak

import steadygrad as sg
from steadygrad import _core, nn, optim
from steadygrad.nn.summary import scratch_bytes

NETS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    # strided convolutions (the stride-phase dL/dx), residual blocks, adaptive pooling
    "resnet": (lambda: nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        resblock(8, 8, 1), resblock(8, 16, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(16, 10)), (3, 16, 16)),
    # depthwise (with a channel multiplier), max and average pooling, 1-d layers
    "depthwise": (lambda: nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 12, 3, padding=1, groups=6),
        nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(12, 12, 3, stride=2, padding=1, groups=12),
        nn.AvgPool2d(2, ceil_mode=True), nn.Flatten(), nn.Linear(12 * 4, 10)), (3, 16, 16)),
    "1d": (lambda: nn.Sequential(
        nn.Conv1d(4, 8, 5, padding=2), nn.BatchNorm1d(8), nn.ReLU(), nn.AvgPool1d(2),
        nn.Conv1d(8, 8, 3, padding=1, groups=8), nn.ReLU(), nn.MaxPool1d(3, stride=2),
        nn.Conv1d(8, 8, 3, stride=3), nn.AdaptiveAvgPool1d(2), nn.Flatten(),
        nn.Linear(16, 10)), (4, 256)),
}


BATCH = 12


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", sorted(NETS))
def test_cnn_training_step_allocates_nothing_after_warm_up(name: str, threads: int) -> None:
    make, shape = NETS[name]
    rng = np.random.default_rng(0)
    sg.manual_seed(0)
    m = make()
    opt = optim.Adam(m.parameters(), lr=1e-3, max_grad_norm=1.0)
    lf = nn.CrossEntropyLoss()
    x = rng.standard_normal((BATCH, *shape)).astype(np.float32)
    y = np.arange(BATCH) % 10

    def step() -> None:
        opt.zero_grad()
        lf(m(x), y)
        m.backward(lf.backward(), input_grad=True)
        opt.step()

    old = sg.get_num_threads()
    sg.set_num_threads(threads)
    try:
        step()  # warm-up: buffers, scratch and the plan are made here
        before = _core.kernel_heap_allocations()
        peak = traced_peak(step)
        grown = _core.kernel_heap_allocations() - before
    finally:
        sg.set_num_threads(old)
    assert grown == 0, f"{name}: the kernels allocated {grown} times in 3 steady-state steps"
    # Python's own temporaries (tuples, dicts of keyword arguments) only: the input batch, the
    # smallest array of the conv stack, is 32 KiB or more
    assert 4 * BATCH * int(np.prod(shape)) >= 32 * 1024
    assert peak < 16 * 1024, f"{name}: {peak} bytes allocated in steady state"


def _pool_geom(**kw: int) -> _core.ConvGeometry:
    return _core.ConvGeometry(n=2, h=9, w=7, c_in=5, c_out=5, **kw)


@pytest.mark.parametrize("threads", [1, 2])
def test_kernel_calls_allocate_only_on_the_first_call(threads: int, rng: np.random.Generator) -> None:
    """Each kernel family directly: the first call may grow the scratch, a second call of the
    same geometry allocates nothing."""
    x = rng.standard_normal((2, 9, 7, 5)).astype(np.float32)
    pg = _pool_geom(kh=3, kw=2, sh=2, sw=2, ph0=1, ph1=1, pw0=1, pw1=1, ceil_mode=True)
    y = np.empty((2, pg.oh, pg.ow, 5), np.float32)
    idx = np.empty((2, pg.oh, pg.ow, 5), np.int32)
    dx = np.empty_like(x)
    dg = _core.ConvGeometry(n=2, h=9, w=7, c_in=5, c_out=10, kh=3, kw=3, sh=2, sw=1, ph0=1,
                            ph1=1, pw0=1, pw1=1, groups=5)
    wd = rng.standard_normal((10, 1, 3, 3)).astype(np.float32)
    yd = np.empty((2, dg.oh, dg.ow, 10), np.float32)
    gwd, gbd = np.empty_like(wd), np.empty(10, np.float32)
    cg = _core.ConvGeometry(n=2, h=9, w=7, c_in=5, c_out=4, kh=3, kw=2, sh=2, sw=3, ph0=1,
                            ph1=1, pw0=0, pw1=1)
    wc = rng.standard_normal((4, 5, 3, 2)).astype(np.float32)
    yc = np.empty((2, cg.oh, cg.ow, 4), np.float32)
    gwc = np.empty_like(wc)
    ya = np.empty((2, 3, 2, 5), np.float32)
    calls: dict[str, Callable[[], object]] = {
        "max_pool2d": lambda: (_core.max_pool2d_forward(x, pg, out=y, indices=idx),
                               _core.max_pool2d_backward(y, idx, pg, grad_input=dx)),
        "avg_pool2d": lambda: (_core.avg_pool2d_forward(x, pg, out=y, count_include_pad=False),
                               _core.avg_pool2d_backward(y, pg, grad_input=dx,
                                                         count_include_pad=False)),
        "adaptive_avg_pool2d": lambda: (
            _core.adaptive_avg_pool2d_forward(x, (3, 2), out=ya),
            _core.adaptive_avg_pool2d_backward(ya, (9, 7), grad_input=dx)),
        "depthwise": lambda: (
            _core.depthwise_conv2d_forward(x, wd, None, dg, out=yd),
            _core.depthwise_conv2d_backward(yd, x, wd, dg, gwd, gbd, grad_input=dx)),
        "conv2d (stride phases)": lambda: (
            _core.conv2d_forward(x, wc, None, cg, out=yc),
            _core.conv2d_backward(yc, x, wc, cg, gwc, None, grad_input=dx)),
    }
    old = sg.get_num_threads()
    sg.set_num_threads(threads)
    try:
        for name, call in calls.items():
            call()
            before = _core.kernel_heap_allocations()
            call()
            assert _core.kernel_heap_allocations() == before, name
    finally:
        sg.set_num_threads(old)


def test_allocation_counter_counts_kernel_allocations() -> None:
    """The counter is live: a scratch buffer growing for a larger geometry is counted (so the
    zeros above are not a counter that never moves)."""
    g = _core.ConvGeometry(n=1, h=3, w=3, c_in=2, c_out=2, kh=2, kw=2)
    _core.max_pool2d_forward(np.zeros((1, 3, 3, 2), np.float32), g)
    before = _core.kernel_heap_allocations()
    big = _core.ConvGeometry(n=1, h=5000, w=3, c_in=2, c_out=2, kh=2, kw=2)
    _core.max_pool2d_forward(np.zeros((1, 5000, 3, 2), np.float32), big)
    assert _core.kernel_heap_allocations() > before


def _phase_block_bytes(g: _core.ConvGeometry) -> int:
    """The largest stride phase's dL/dx block (rows x c_in / groups floats) over the phases any
    window tap reaches, from the geometry (cpp/conv/conv_gather.h's phases)."""
    def taps(r: int, k: int, s: int, d: int, p: int) -> int:
        return sum((r + p - t * d) % s == 0 for t in range(k))

    most = 0
    for ry in range(g.sh):
        for rx in range(g.sw):
            if taps(ry, g.kh, g.sh, g.dh, g.ph0) and taps(rx, g.kw, g.sw, g.dw, g.pw0):
                hp, wp = -(-(g.h - ry) // g.sh), -(-(g.w - rx) // g.sw)
                most = max(most, g.n * hp * wp * (g.c_in // g.groups))
    return 4 * most


@pytest.mark.parametrize("stride", [(2, 2), (3, 1), (2, 3)])
def test_conv2d_scratch_counts_the_stride_phase_block(stride: tuple[int, int]) -> None:
    """The strided dL/dx's phase block lives in the driver workspace and conv2d_scratch counts
    it (it used to be a thread-local vector nobody counted): at least the block, at most the
    block plus a few cache lines of tap tables and the weight-permutation row."""
    g = _core.ConvGeometry(n=8, h=31, w=17, c_in=12, c_out=6, kh=3, kw=3, sh=stride[0],
                           sw=stride[1], ph0=1, ph1=1, pw0=1, pw1=1)
    block = _phase_block_bytes(g)
    with_dx = _core.conv2d_scratch(g, input_grad=True)
    without = _core.conv2d_scratch(g, input_grad=False)
    assert block <= with_dx["driver"] <= block + 64 * 8 + 4 * 12 * 9 + 64
    assert without["driver"] < block  # no dL/dx: the permutation row only
    assert with_dx["total"] == (with_dx["b_shared"] + with_dx["driver"] + sum(with_dx["a"])
                                + sum(with_dx["b_own"]))


def test_summary_counts_the_driver_workspace_once() -> None:
    """One workspace serves every layer's driver on the calling thread: summary adds the
    largest layer's, not the sum."""
    m = nn.Sequential(nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.ReLU(),
                      nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8), nn.MaxPool2d(2),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    s = m.summary(16, (4, 32, 32), file=None, input_grad=True)
    rows = {r["name"]: r["thread_scratch"] for r in s["layers"] if r["thread_scratch"]}
    assert sorted(rows) == ["0", "2", "3", "4", "6"]
    assert rows["6"]["driver"] == 0 and min(rows[k]["driver"] for k in "0234") > 0  # Linear: none
    gemm_only = [dict(r, driver=0) for r in rows.values()]
    assert s["gemm_workspace_bytes"] == (scratch_bytes(gemm_only)
                                         + max(r["driver"] for r in rows.values()))
