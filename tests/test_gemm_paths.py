"""sg.ops.gemm on every ISA path and both kernel paths (packed; small-matrix "sup" with A read
in place): randomized shapes against float64 numpy, bitwise equality across thread counts,
and beta == 0 never reading the output."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import gemm_tolerance, num_threads
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import steadygrad as sg

_fma_peak_gflops = sg._core._fma_peak_gflops
_gemm_uses_sup = sg._core._gemm_uses_sup

# Sizes that straddle the edges the kernels care about: register tiles (MR 6/14, NR 8/16/32),
# the sup/packed boundary (m = 256), the cache blocks (MC 96/336, KC 384: k just under/over
# one and two blocks). The M split (200 micro-tile rows per thread) is in THREAD_CASES.
M_SIZES = st.one_of(st.integers(1, 15), st.sampled_from([95, 96, 97, 250, 256, 257, 300]))
N_SIZES = st.one_of(st.integers(1, 40), st.sampled_from([63, 64, 65, 129]))
K_SIZES = st.one_of(st.integers(0, 20), st.sampled_from([383, 384, 385, 769, 800]))


def reference(a, b, ta, tb, alpha, beta, c0, bias, relu):
    a64 = (a.T if ta else a).astype(np.float64)
    b64 = (b.T if tb else b).astype(np.float64)
    r = alpha * (a64 @ b64)
    if beta != 0.0:
        r += beta * c0.astype(np.float64)
    if bias is not None:
        r += bias
    return np.maximum(r, 0.0) if relu else r


def operands(rng, m, n, k, ta, tb):
    a = rng.uniform(-1, 1, (k, m) if ta else (m, k)).astype(np.float32)
    b = rng.uniform(-1, 1, (n, k) if tb else (k, n)).astype(np.float32)
    return a, b


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(m=M_SIZES, n=N_SIZES, k=K_SIZES, ta=st.booleans(), tb=st.booleans(),
       alpha=st.sampled_from([1.0, 0.5, -2.0]), beta=st.sampled_from([0.0, 1.0, -0.5]),
       with_bias=st.booleans(), relu=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_gemm_matches_float64(isa, m, n, k, ta, tb, alpha, beta, with_bias, relu, seed):
    rng = np.random.default_rng(seed)
    a, b = operands(rng, m, n, k, ta, tb)
    c0 = rng.uniform(-1, 1, (m, n)).astype(np.float32)
    bias = rng.uniform(-1, 1, n).astype(np.float32) if with_bias else None
    out = c0.copy() if beta != 0.0 else np.full((m, n), np.nan, np.float32)
    got = sg.ops.gemm(a, b, trans_a=ta, trans_b=tb, out=out, alpha=alpha, beta=beta, bias=bias,
                      activation="relu" if relu else None)
    assert got is out
    want = reference(a, b, ta, tb, alpha, beta, c0, bias, relu)
    # |a|, |b| <= 1: partial sums grow like sqrt(k), so the rounding error like k * eps.
    tol = gemm_tolerance(k, scale=abs(alpha) * max(k, 1) ** 0.5) + 4 * np.finfo(np.float32).eps
    np.testing.assert_allclose(got, want, rtol=0, atol=tol)


def test_both_paths_are_reachable():
    # The rule the tests above and below rely on (trans_a, m, lda): A is read in place for few
    # rows of an untransposed A whose rows are not 4 KiB apart; packed otherwise.
    assert _gemm_uses_sup(False, 64, 784)
    assert _gemm_uses_sup(False, 256, 256)
    assert not _gemm_uses_sup(False, 257, 256)
    assert not _gemm_uses_sup(True, 64, 64)
    assert not _gemm_uses_sup(False, 64, 1024)


def _m_split_rows(threads: int) -> int:
    """The fewest rows for which a team of `threads` splits M on the active ISA path."""
    c = sg._core._gemm_constants()
    return c["m_split_min_tiles_per_thread"] * threads * c["mr"]


THREAD_CASES = {
    # (m, n, k, trans_a, trans_b), team sizes expected to split M: sup and packed with an N
    # split (each thread its own column range, its own B panel, no barrier), k over two
    # blocks, every transpose mode, n over NC (equal column blocks inside each thread's
    # range), and M splits (a B panel shared by the team, packed together between barriers)
    # at the active ISA's threshold (AVX2 6-row, AVX-512 14-row micro-tiles).
    "64x300x500_NT": lambda: ((64, 300, 500, False, True), ()),
    "250x130x800_NN": lambda: ((250, 130, 800, False, False), ()),
    "300x200x800_TN": lambda: ((300, 200, 800, True, False), ()),
    "40x333x385_TT": lambda: ((40, 333, 385, True, True), ()),
    "257x97x70_NT": lambda: ((257, 97, 70, False, True), ()),
    "n_over_nc_7x4200x300": lambda: ((7, 4200, 300, False, False), ()),  # several column blocks
    "n_just_over_nc_200x1030x50": lambda: ((200, 1030, 50, True, True), ()),  # 2 equal blocks
    "m_split_2_ragged_TN": lambda: ((_m_split_rows(2) + 5, 70, 420, True, False), (2,)),
    "m_split_2_and_3_NT": lambda: ((_m_split_rows(3) + 3, 40, 64, False, True), (2, 3)),
}


@pytest.mark.parametrize("case", THREAD_CASES.values(), ids=THREAD_CASES.keys())
def test_bitwise_identical_across_threads(isa, case):
    (m, n, k, ta, tb), m_split_teams = case()
    for threads in (2, 3):  # the case probes the split it is named for, on this ISA path
        split = sg._core._gemm_workspace_bytes(m, n, k, trans_a=ta, threads=threads)["b_shared"] > 0
        assert split == (threads in m_split_teams), (threads, m_split_teams)
    rng = np.random.default_rng(m * 7 + n)
    a, b = operands(rng, m, n, k, ta, tb)
    bias = rng.uniform(-1, 1, n).astype(np.float32)
    c0 = rng.uniform(-1, 1, (m, n)).astype(np.float32)
    outs = []
    for threads in (1, 2, 3):  # 3: uneven row and column ranges (oversubscribed on 2 cores)
        with num_threads(threads):
            out = c0.copy()
            sg.ops.gemm(a, b, trans_a=ta, trans_b=tb, out=out, alpha=0.75, beta=1.0, bias=bias,
                        activation="relu")
            outs.append(out)
    assert outs[0].tobytes() == outs[1].tobytes() == outs[2].tobytes()
    want = reference(a, b, ta, tb, 0.75, 1.0, c0, bias, True)
    np.testing.assert_allclose(outs[0], want, rtol=0, atol=gemm_tolerance(k, scale=k**0.5))


@pytest.mark.parametrize("m,n,k,ta", [(64, 70, 300, False), (300, 70, 300, True), (5, 3, 0, False)])
def test_beta_zero_never_reads_out(isa, m, n, k, ta):
    rng = np.random.default_rng(3)
    a, b = operands(rng, m, n, k, ta, False)
    for threads in (1, 2):
        with num_threads(threads):
            out = np.full((m, n), np.nan, np.float32)
            sg.ops.gemm(a, b, trans_a=ta, out=out, beta=0.0)
            assert np.isfinite(out).all()
            np.testing.assert_allclose(out, reference(a, b, ta, False, 1.0, 0.0, None, None, False),
                                       rtol=0, atol=gemm_tolerance(k, scale=max(k, 1) ** 0.5))


def test_fma_peak_probe(isa):
    gflops = _fma_peak_gflops(isa, 0.01)
    # Any working vector unit does more than 0.1 GFLOP/s; 0 or NaN would mean a broken probe.
    assert np.isfinite(gflops) and gflops > 0.1


def test_fma_peak_probe_validates():
    with pytest.raises(ValueError, match="_fma_peak_gflops: isa must be"):
        _fma_peak_gflops("sse9", 0.01)
    with pytest.raises(ValueError, match="seconds must be in"):
        _fma_peak_gflops("generic", 0.0)
    missing = [i for i in ("avx2", "avx512") if i not in sg.cpu_info()["isa_supported"]]
    if missing:
        with pytest.raises(ValueError, match="not supported"):
            _fma_peak_gflops(missing[-1], 0.01)
