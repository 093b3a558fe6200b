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


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _lines(floats: int) -> int:
    """Bytes AlignedBuffer allocates for this many floats: whole 64-byte lines."""
    return _cdiv(4 * floats, 64) * 64


def _k_block(k: int, kc: int) -> int:
    """The k block the driver uses: equal blocks of at most KC, rounded up to 8 (gemm_plan)."""
    return min(kc, _cdiv(_cdiv(k, _cdiv(k, kc)), 8) * 8, k)


def _m_split_rows(c: dict, threads: int) -> int:
    """The fewest rows for which a team of `threads` splits M (whole MR-row micro-tiles)."""
    return c["m_split_min_tiles_per_thread"] * threads * c["mr"]


def test_gemm_workspace_empty_shapes_touch_nothing(isa: str) -> None:
    for shape in [(0, 5, 5), (5, 0, 5), (5, 5, 0)]:
        assert ws(*shape, threads=2)["total"] == 0


def test_gemm_workspace_single_block_is_the_padded_b_panel(isa: str) -> None:
    # Expectations from the active ISA's constants (AVX2 6x16, AVX-512 14x32, generic 6x8).
    c = _core._gemm_constants()
    assert c["isa"] == isa
    mr, nr = c["mr"], c["nr"]
    n = 3 * nr  # one column block of every ISA's blocking, 3 micropanels
    # A team of 2 splits M from m_split_min_tiles_per_thread * 2 micro-tile rows on (more
    # than sup_max_rows: A packed in MC-row blocks) and shares one k x n B panel.
    m = _m_split_rows(c, 2)
    # one k block, past the parallel cut, a multiple of 16 (the panel fills whole cache lines)
    k = max(32, -(-c["parallel_min_macs"] // (m * n * 16)) * 16)
    assert k < c["packed"]["kc"] and n <= c["packed"]["nc"]
    assert m > c["sup_max_rows"] and m * n * k >= c["parallel_min_macs"]
    w = ws(m, n, k, threads=2)
    assert w["threads"] == 2 and w["b_own"] == 0
    assert w["b_shared"] == 4 * k * n
    assert w["a"] == _lines(c["packed"]["mc"] * k)
    assert w["total"] == w["b_shared"] + 2 * w["a"]
    # one micro-tile row fewer: the team splits N instead, each thread packing only its own
    # columns, in whole micropanels (3 micropanels over 2 threads: the wider thread gets 2)
    below = ws(m - mr, n, k, threads=2)
    assert below["threads"] == 2 and below["b_shared"] == 0
    assert below["b_own"] == 4 * k * 2 * nr
    assert below["total"] == 2 * (below["a"] + below["b_own"])
    # one thread never splits M: only its own B micropanels (k x n), no shared panel; few
    # rows of an untransposed A are read in place, so A's buffer is one MR-row edge sliver
    one = ws(8, n, k, threads=1)
    assert one["threads"] == 1 and one["b_shared"] == 0
    assert one["b_own"] == 4 * k * n
    assert one["a"] == _lines(mr * k)
    assert one["total"] == one["a"] + one["b_own"]


def test_gemm_workspace_follows_the_parallel_cut_and_split(isa: str) -> None:
    c = _core._gemm_constants()
    cut = c["parallel_min_macs"]
    m_cut = _cdiv(cut, 64 * 64)  # the fewest rows of a 64 x 64 right-hand side that go parallel
    assert ws(m_cut - 1, 64, 64, threads=2)["threads"] == 1  # below the parallel cut: one thread
    assert ws(m_cut, 64, 64, threads=2)["threads"] == 2
    big_m = ws(_m_split_rows(c, 2), 512, 256, threads=2)
    assert big_m["threads"] == 2 and big_m["b_own"] == 0  # M split: B panel shared
    assert big_m["b_shared"] == 4 * 256 * 512  # k < KC, n < NC and a multiple of every NR
    assert big_m["total"] == big_m["b_shared"] + 2 * big_m["a"]
    few_rows = ws(64, 1024, 512, threads=2)
    # N split: own B micropanels, no shared panel; each thread owns half of the 1024 columns
    # (a whole number of micropanels on every ISA), in k blocks of the small-matrix path
    assert 1024 % (2 * c["nr"]) == 0 and c["sup"]["nc"] >= 512
    assert few_rows["threads"] == 2 and few_rows["b_shared"] == 0
    assert few_rows["b_own"] == 4 * _k_block(512, c["sup"]["kc"]) * 512
    # buffers are bounded by the blocking, not the problem: a larger K or N reuses them
    # (column blocks are equal and at most NC wide, k blocks at most KC deep)
    nc, nc_sup = c["packed"]["nc"], c["sup"]["nc"]
    full_shared = ws(_m_split_rows(c, 2), nc, 8192, threads=2)["b_shared"]  # packed path
    full_own = ws(8, nc_sup, 8192, threads=1)["b_own"]  # few rows: the small-matrix path
    assert full_shared == 4 * nc * _k_block(8192, c["packed"]["kc"])
    assert full_own == 4 * nc_sup * _k_block(8192, c["sup"]["kc"])
    for n in (max(nc, nc_sup) + 4, 5000, 8192, 65536):
        assert 0 < ws(_m_split_rows(c, 2), n, 8192, threads=2)["b_shared"] <= full_shared
        assert 0 < ws(8, n, 8192, threads=1)["b_own"] <= full_own


def _equal_block(length: int, max_block: int, align: int) -> int:
    if length <= 0:
        return align
    return min(max_block, _cdiv(_cdiv(length, _cdiv(length, max_block)), align) * align)


def _own_column_blocks(c: dict, n: int, tn: int) -> list[int]:
    """The column block each of tn threads packs its own B micropanels in under an N split
    (gemm_f32: whole-micropanel column ranges, equal blocks of at most NC in each)."""
    nr, panels = c["nr"], _cdiv(n, c["nr"])
    widths = [min(n, panels * (t + 1) // tn * nr) - min(n, panels * t // tn * nr) for t in range(tn)]
    return [_equal_block(w, c["sup"]["nc"], nr) for w in widths if w > 0]


def _rule(c: dict, m: int, n: int, k: int, trans_a: bool, threads: int) -> dict[str, int]:
    """The driver's rule (gemm.cpp: gemm_plan, GemmPlan::m_split, gemm_workspace) restated
    from the active ISA's constants, for contiguous operands (lda = k, or m when transposed).
    b_own is given as the bounds it must lie in: at least the widest column block any thread
    packs (b_own_need), at most min(NC, its column range) columns (b_own_cap)."""
    if 0 in (m, n, k):
        return {"threads": 0, "b_shared": 0, "a": 0, "b_own_need": 0, "b_own_cap": 0}
    sup = not trans_a and m <= c["sup_max_rows"] and (m if trans_a else k) % 1024 != 0
    bl = c["sup" if sup else "packed"]
    assert bl["nc"] == c["sup"]["nc"]  # _own_column_blocks assumes one NC for both paths
    kc_max = _k_block(k, bl["kc"])
    nth = threads if m * n * k >= c["parallel_min_macs"] and threads > 1 else 1
    tm = nth if _cdiv(m, c["mr"]) >= c["m_split_min_tiles_per_thread"] * nth else 1
    own_cols = _cdiv(_cdiv(n, c["nr"]), nth // tm) * c["nr"]
    split_n = tm == 1
    return {"threads": nth,
            "b_shared": 0 if split_n else _lines(kc_max * _equal_block(n, bl["nc"], c["nr"])),
            "a": _lines((c["mr"] if sup else bl["mc"]) * kc_max),
            "b_own_need": _lines(kc_max * max(_own_column_blocks(c, n, nth))) if split_n else 0,
            "b_own_cap": _lines(kc_max * min(bl["nc"], own_cols)) if split_n else 0}


def _check_rule(c: dict, m: int, n: int, k: int, trans_a: bool, threads: int) -> None:
    got = ws(m, n, k, trans_a=trans_a, threads=threads)
    want = _rule(c, m, n, k, trans_a, threads)
    what = f"m={m} n={n} k={k} trans_a={trans_a} threads={threads}: {got} vs {want}"
    assert [got[key] for key in ("threads", "b_shared", "a")] == \
        [want[key] for key in ("threads", "b_shared", "a")], what
    assert want["b_own_need"] <= got["b_own"] <= want["b_own_cap"], what
    assert got["total"] == got["b_shared"] + got["threads"] * (got["a"] + got["b_own"]), what


@pytest.mark.parametrize("threads", [1, 2, 3, 16])  # 16: the default on a 16-core machine
def test_gemm_workspace_is_the_rule_for_any_team(isa: str, threads: int) -> None:
    c = _core._gemm_constants()
    rows = sorted({1, 7, c["mr"], c["sup_max_rows"], c["sup_max_rows"] + 1, 1000,
                   _m_split_rows(c, threads) - c["mr"], _m_split_rows(c, threads),
                   _m_split_rows(c, threads) + 1})
    for m in rows:
        for n in (1, c["nr"] + 1, 333, c["packed"]["nc"] + 1, 5000):
            for k in (1, 64, 385, 1000):
                for trans_a in (False, True):
                    _check_rule(c, m, n, k, trans_a, threads)


def test_gemm_own_b_buffer_holds_every_threads_column_block(isa: str) -> None:
    # Under an N split with 2 threads, a range of exactly 2*NC columns is packed in 2 blocks of
    # NC, while the widest range (one micropanel more) is cut into 3 thinner blocks.
    c = _core._gemm_constants()
    nc = c["sup"]["nc"]
    for n in (2 * nc + 1, 4 * nc + 1, 2 * nc + c["nr"]):
        k = max(64, -(-c["parallel_min_macs"] // (7 * n)))
        assert ws(7, n, k, threads=2)["threads"] == 2  # past the parallel cut: an N split
        _check_rule(c, 7, n, k, False, 2)


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


def _combined(calls: list[dict[str, int]], driver: int = 0) -> dict[str, object]:
    """What the per-call workspaces combine to: the max per buffer and per team member, plus
    the driver workspace (cpp/common/driver_workspace.h) the layer's drivers carve."""
    team = max(c["threads"] for c in calls)
    a = [max(c["a"] for c in calls if c["threads"] > t) for t in range(team)]
    b_own = [max(c["b_own"] for c in calls if c["threads"] > t) for t in range(team)]
    b_shared = max(c["b_shared"] for c in calls)
    return {"b_shared": b_shared, "a": a, "b_own": b_own, "driver": driver,
            "total": b_shared + driver + sum(a) + sum(b_own)}



def _conv_driver(g: _core.ConvGeometry, input_grad: bool) -> int:
    """The driver workspace of a conv forward + backward (cpp/conv/conv.cpp): dw's
    permutation row unless a plain GEMM; a strided dL/dx's tap tables and phase block."""
    cig, taps = g.c_in // g.groups, g.kh * g.kw
    pointwise = taps == 1 and (g.sh, g.sw, g.ph0, g.ph1, g.pw0, g.pw1) == (1, 1, 0, 0, 0, 0)
    row = 0 if pointwise else _lines(cig * taps)  # pieces on whole lines, like AlignedBuffer's
    if not input_grad or (g.sh, g.sw) == (1, 1) or pointwise:
        return row

    def taps_of(r: int, k: int, s: int, d: int, p: int) -> int:
        return sum((r + p - t * d) % s == 0 for t in range(k))

    block = max([g.n * (-(-(g.h - ry) // g.sh)) * (-(-(g.w - rx) // g.sw)) * cig
                 for ry in range(g.sh) for rx in range(g.sw)
                 if taps_of(ry, g.kh, g.sh, g.dh, g.ph0) and taps_of(rx, g.kw, g.sw, g.dw, g.pw0)],
                default=0)
    tables = 2 * _lines(2 * g.kh) + 2 * _lines(2 * g.kw) + _lines(2 * taps)  # int64s
    return max(row, tables + _lines(block))


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


def _conv_gemms(g: _core.ConvGeometry, input_grad: bool) -> list[tuple[int, int, int, bool, bool]]:
    """(m, n, k, trans_a, trans_b) of the GEMMs a conv forward + backward runs per group
    (cpp/conv/conv.cpp, groups=1 here): a gathered A is packed as a transposed one; trans_b
    None marks the indirect GEMM (cpp/conv/conv_igemm.cpp), sized by _igemm below."""
    cig, cog, taps = g.c_in // g.groups, g.c_out // g.groups, g.kh * g.kw
    m, mi = g.n * g.oh * g.ow, g.n * g.h * g.w
    if taps == 1 and (g.sh, g.sw, g.ph0, g.ph1, g.pw0, g.pw1) == (1, 1, 0, 0, 0, 0):
        calls = [(m, cog, cig, False, True), (cog, cig, m, True, False)]
        return calls + ([(mi, cig, cog, False, False)] if input_grad else [])
    # the indirect GEMM where its runs (a dense window row of kw * cig, else a tap's channels)
    # reach kIgemmMinRun = 16 k steps (cpp/conv/conv_igemm.h), else the packed gather
    fwd_run = g.kw * cig if g.dw == 1 and g.groups == 1 else cig
    fwd = None if fwd_run >= 16 else False
    calls = [(m, cog, taps * cig, True, fwd), (cog, taps * cig, m, True, False)]
    if not input_grad:
        return calls
    if (g.sh, g.sw) == (1, 1):
        return [*calls, (mi, cig, taps * cog, True, None if cog >= 16 else False)]

    def axis(r: int, size: int, k: int, s: int, dil: int, pad: int) -> tuple[int, int]:
        """A stride phase's pixels and taps along one axis (dL/dx by stride phase)."""
        return (size - r + s - 1) // s if r < size else 0, sum(
            (r + pad - t * dil) % s == 0 for t in range(k))

    for ry in range(g.sh):
        hp, ty = axis(ry, g.h, g.kh, g.sh, g.dh, g.ph0)
        for rx in range(g.sw):
            wp, tx = axis(rx, g.w, g.kw, g.sw, g.dw, g.pw0)
            calls.append((g.n * hp * wp, cig, ty * tx * cog, True, False))
    return calls


def _igemm(m: int, n: int, k: int, threads: int) -> dict[str, int]:
    """The indirect GEMM's workspace: the whole packed B (ceil(n / NR) micropanels of depth k)
    in the caller's shared-B buffer; it runs on a team when gemm_f32 would."""
    c = _core._gemm_constants()
    team = threads if m * n * k >= c["parallel_min_macs"] and threads > 1 else 1
    return {"threads": team, "b_shared": _lines(_cdiv(n, c["nr"]) * c["nr"] * k), "a": 0,
            "b_own": 0}


@pytest.mark.parametrize("geom", [dict(n=8, h=20, w=20, c_in=16, c_out=32, kh=3, kw=3, ph0=1,
                                       ph1=1, pw0=1, pw1=1),
                                  dict(n=64, h=8, w=8, c_in=64, c_out=64, kh=1, kw=1),
                                  dict(n=2, h=9, w=7, c_in=3, c_out=5, kh=5, kw=3, sh=2)])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("input_grad", [True, False])
def test_conv_scratch_is_its_gemms_combined(geom: dict[str, int], threads: int,
                                            input_grad: bool) -> None:
    g = _core.ConvGeometry(**geom)
    calls = [_igemm(*c[:3], threads=threads) if c[4] is None else ws(*c, threads=threads)
             for c in _conv_gemms(g, input_grad)]
    assert _core.conv2d_scratch(g, input_grad=input_grad, threads=threads) == _combined(
        calls, _conv_driver(g, input_grad))
    layer = nn.Conv2d(g.c_in, g.c_out, (g.kh, g.kw), stride=(g.sh, g.sw), padding=(g.ph0, g.pw0))
    shape = (g.n, g.c_in, g.h, g.w)
    assert layer.thread_scratch(shape, input_grad) == _core.conv2d_scratch(g, input_grad=input_grad)
    with pytest.raises(ValueError, match="conv2d_scratch: threads must be >= 1"):
        _core.conv2d_scratch(g, threads=0)


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


def test_summary_gemm_workspace_is_the_max_per_buffer_not_the_sum(isa: str) -> None:
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
