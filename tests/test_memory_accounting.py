"""model.summary()'s memory accounting: the GEMM's thread-local packing buffers
(_core._gemm_workspace_bytes), optimizer state (summary(optimizer=)), and the build-time
transients that were trimmed (chunked init draws, no per-Parameter temporaries)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import num_threads

import steadygrad as sg
from steadygrad import _core, nn, optim
from steadygrad.nn import init
from steadygrad.nn.parameter import flatten

ws = _core._gemm_workspace_bytes


def test_gemm_workspace_empty_shapes_touch_nothing() -> None:
    for shape in [(0, 5, 5), (5, 0, 5), (5, 5, 0)]:
        assert ws(*shape, threads=2)["total"] == 0


def test_gemm_workspace_single_block_is_the_padded_b_panel() -> None:
    # k=32 and n=48 fit one block of every ISA's blocking, and 48 is a multiple of every NR:
    # the packed B panel is exactly k x n floats.
    # With 4096 rows and 2 threads the team splits M and shares that panel.
    w = ws(4096, 48, 32, threads=2)
    assert w["threads"] == 2 and w["b_own"] == 0
    assert w["b_shared"] == 4 * 32 * 48
    assert w["a"] > 0 and w["a"] % 64 == 0
    assert w["total"] == w["b_shared"] + 2 * w["a"]
    # one thread never splits M: only its own B micropanels (k x n), no shared panel
    one = ws(8, 48, 32, threads=1)
    assert one["threads"] == 1 and one["b_shared"] == 0
    assert one["b_own"] == 4 * 32 * 48
    assert one["total"] == one["a"] + one["b_own"]
    # N split over 2 threads: each packs only its own columns, in whole micropanels (avx2: 3
    # micropanels of 16, the wider thread gets 2)
    half = ws(1024, 48, 32, threads=2)
    assert half["threads"] == 2 and half["b_shared"] == 0
    nr = {"generic": 8, "avx2": 16, "avx512": 32}[sg.get_isa()]
    assert half["b_own"] == 4 * 32 * ((48 // nr + 1) // 2) * nr


def test_gemm_workspace_follows_the_parallel_cut_and_split() -> None:
    assert ws(32, 32, 32, threads=2)["threads"] == 1  # below the parallel cut: one thread
    big_m = ws(4096, 512, 256, threads=2)
    assert big_m["threads"] == 2 and big_m["b_own"] == 0  # M split: B panel shared
    few_rows = ws(64, 1024, 512, threads=2)
    # N split: own B micropanels, no shared panel
    assert few_rows["threads"] == 2 and few_rows["b_own"] > 0 and few_rows["b_shared"] == 0
    assert big_m["total"] == big_m["b_shared"] + 2 * big_m["a"]
    # buffers are bounded by the blocking, not the problem: a larger K or N reuses them
    # column blocks are equal and at most NC (1024 on every ISA) wide
    nc = 1024
    full_shared = ws(4096, nc, 8192, threads=2)["b_shared"]
    full_own = ws(8, nc, 8192, threads=1)["b_own"]
    for n in (4100, 5000, 8192, 65536):
        assert 0 < ws(4096, n, 8192, threads=2)["b_shared"] <= full_shared
        assert 0 < ws(8, n, 8192, threads=1)["b_own"] <= full_own


def test_gemm_workspace_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="_gemm_workspace_bytes"):
        ws(-1, 2, 3)
    with pytest.raises(ValueError, match="threads"):
        ws(1, 2, 3, threads=0)


# The GEMMs cpp/layers/linear.cpp runs for x (batch, in) and w (out, in): y = x w^T,
# dW = dy^T x and, with input_grad, dx = dy w, as (m, n, k, trans_a, trans_b).
def _linear_gemms(batch: int, i: int, o: int, input_grad: bool) -> list[tuple[int, ...]]:
    dx = [(batch, i, o, False, False)] if input_grad else []
    return [(batch, o, i, False, True), (o, i, batch, True, False), *dx]


def _combined(calls: list[dict[str, int]]) -> dict[str, object]:
    """What the per-call workspaces combine to: the max per buffer and per team member."""
    team = max(c["threads"] for c in calls)
    a = [max(c["a"] for c in calls if c["threads"] > t) for t in range(team)]
    b_own = [max(c["b_own"] for c in calls if c["threads"] > t) for t in range(team)]
    b_shared = max(c["b_shared"] for c in calls)
    return {"b_shared": b_shared, "a": a, "b_own": b_own, "total": b_shared + sum(a) + sum(b_own)}


@pytest.mark.parametrize("shape", [(5, 20, 7), (128, 300, 512), (4096, 1024, 64), (0, 3, 4)])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("input_grad", [True, False])
def test_linear_scratch_is_its_gemms_combined(shape: tuple[int, int, int], threads: int,
                                              input_grad: bool) -> None:
    batch, i, o = shape
    calls = [ws(*c, threads=threads) for c in _linear_gemms(batch, i, o, input_grad)]
    got = _core.linear_scratch(batch, i, o, input_grad=input_grad, threads=threads)
    assert got == _combined(calls)
    assert nn.Linear(i, o).thread_scratch((batch, i), input_grad) == _core.linear_scratch(
        batch, i, o, input_grad=input_grad)
    with pytest.raises(ValueError, match="linear_scratch: threads must be >= 1"):
        _core.linear_scratch(batch, i, o, threads=0)


def test_summary_counts_the_first_layer_grad_input_only_when_asked() -> None:
    m = nn.Sequential(nn.Linear(30, 20), nn.BatchNorm1d(20), nn.ReLU(), nn.Linear(20, 4))
    lean, full = m.summary(16, file=None), m.summary(16, file=None, input_grad=True)
    assert lean["layers"][0]["workspace_bytes"] == 0
    assert full["layers"][0]["workspace_bytes"] == 4 * 16 * 30
    assert full["workspace_bytes"] - lean["workspace_bytes"] == 4 * 16 * 30
    # and what backward allocates agrees: no dx buffer for the first layer without input_grad
    x = np.random.default_rng(0).standard_normal((16, 30), dtype=np.float32)
    m(x)
    assert m.backward(np.ones((16, 4), np.float32), input_grad=False) is None
    assert "dx" not in m[0]._work
    m(x)
    assert m.backward(np.ones((16, 4), np.float32)).shape == (16, 30)
    assert m[0]._work["dx"][1].nbytes == 4 * 16 * 30


def test_summary_gemm_workspace_is_the_max_per_buffer_not_the_sum() -> None:
    m = nn.Sequential(nn.Linear(300, 512), nn.ReLU(), nn.Linear(512, 40))
    with num_threads(2):
        s = m.summary(128, file=None, input_grad=True)
        calls = [ws(*c, threads=2) for lin in (m[0], m[2])
                 for c in _linear_gemms(128, lin.in_features, lin.out_features, True)]
    expect = _combined(calls)["total"]
    assert isinstance(expect, int)
    assert s["gemm_workspace_bytes"] == expect
    assert max(c["total"] for c in calls) <= expect < sum(c["total"] for c in calls)
    assert s["total_bytes"] == sum(s[k] for k in ("param_bytes", "grad_bytes", "buffer_bytes",
                                                   "activation_bytes", "workspace_bytes",
                                                   "gemm_workspace_bytes", "optimizer_bytes"))


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(10, 33), nn.ReLU(), nn.Linear(33, 3))


@pytest.mark.parametrize("make,n_bufs", [
    (lambda ps: optim.Adam(ps), 2),
    (lambda ps: optim.AdamW(ps, amsgrad=True), 3),
    (lambda ps: optim.SGD(ps, lr=0.1), 0),
    (lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9), 1),
    (lambda ps: optim.RMSprop(ps, momentum=0.5, centered=True), 3),
])
def test_summary_optimizer_adds_exactly_the_state_bytes(make, n_bufs: int) -> None:
    m = _mlp()
    opt = make(m.parameters())
    base = m.summary(4, file=None)
    before = m.summary(4, file=None, optimizer=opt)  # buffers not allocated yet: predicted
    assert base["optimizer_bytes"] == 0
    assert before["optimizer_bytes"] == n_bufs * base["param_bytes"]
    assert before["total_bytes"] - base["total_bytes"] == before["optimizer_bytes"]
    x = np.random.default_rng(0).standard_normal((4, 10)).astype(np.float32)
    m(x)
    m.backward(np.ones((4, 3), np.float32))
    opt.step()
    after = m.summary(4, file=None, optimizer=opt)
    held = sum(b.nbytes for b in opt._bufs.values())
    assert after["optimizer_bytes"] == held == before["optimizer_bytes"]


def test_summary_optimizer_must_be_an_optimizer() -> None:
    with pytest.raises(TypeError, match="optimizer"):
        _mlp().summary(4, file=None, optimizer=object())


@pytest.mark.parametrize("fn", ["uniform", "normal"])
def test_chunked_init_draws_the_same_values(fn: str) -> None:
    shape = (257, 301)  # several chunks and a partial one
    sg.manual_seed(123)
    arr = np.empty(shape, np.float32)
    if fn == "uniform":
        init.uniform_(arr, -0.3, 0.7)
        ref = np.random.default_rng(123).uniform(-0.3, 0.7, size=shape)
    else:
        init.normal_(arr, 0.5, 2.0)
        ref = np.random.default_rng(123).normal(0.5, 2.0, size=shape)
    np.testing.assert_array_equal(arr, ref.astype(np.float32))
    # a non-contiguous view is still filled as one draw in C order
    sg.manual_seed(5)
    base = np.zeros((40, 600), np.float32)
    init.uniform_(base[:, ::2], 0.0, 1.0)
    np.testing.assert_array_equal(base[:, ::2], np.random.default_rng(5).uniform(0, 1, (40, 300)).astype(np.float32))


def test_parameter_copies_its_input_and_starts_stale_with_zero_grad() -> None:
    src = np.arange(6, dtype=np.float32).reshape(2, 3)
    p = nn.Parameter(src)
    src[0, 0] = 99.0
    assert p.data[0, 0] == 0.0 and not np.shares_memory(p.data, src)
    assert p.grad is None and not p.grad_buffer.any()
    assert p.storage.data.ctypes.data % 64 == 0 and p.storage.grad.ctypes.data % 64 == 0
    p.grad = np.full((2, 3), 2.0, np.float32)
    flatten([p])
    assert p.grad is not None and (p.grad == 2.0).all()  # a fresh gradient moves with it
    p.zero_grad()
    flatten([p])
    assert p.grad is None
