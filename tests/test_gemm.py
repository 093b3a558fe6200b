"""sg.ops.gemm against a float64 numpy reference on every ISA path: shapes around the active
path's register tile and cache blocks (from sg._core._gemm_constants()), odd sizes, all transposes, the alpha/beta/bias/relu epilogue, NaN in `out`
with beta=0, zero-size dimensions and thread-count invariance."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close, gemm_tolerance, num_threads

import steadygrad as sg

TIME_BUDGET_S = 30


def _operands(rng, m, n, k, trans_a, trans_b):
    a = rng.uniform(-1, 1, (k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.uniform(-1, 1, (n, k) if trans_b else (k, n)).astype(np.float32)
    return a, b


def _reference(a, b, trans_a, trans_b, alpha, beta, c0, bias, activation):
    """float64 result and a per-element error bound. A float32 dot product of length k
    accumulates k roundings of partial sums, so its error scales with eps * sum_i |a_i b_i|
    (which grows with k); gemm_tolerance(k, s) is 32 eps sqrt(k) s, so s = sum|a_i b_i|/sqrt(k)."""
    a64 = a.astype(np.float64).T if trans_a else a.astype(np.float64)
    b64 = b.astype(np.float64).T if trans_b else b.astype(np.float64)
    k = a64.shape[1]
    ref = alpha * (a64 @ b64)
    scale = abs(alpha) * (np.abs(a64) @ np.abs(b64))
    if beta != 0.0:
        ref += beta * c0.astype(np.float64)
        scale += np.abs(beta * c0.astype(np.float64))
    if bias is not None:
        ref += bias.astype(np.float64)
        scale += np.abs(bias.astype(np.float64))
    if activation == "relu":
        ref = np.maximum(ref, 0.0)
    return ref, gemm_tolerance(k, scale / np.sqrt(max(k, 1))) + 1e-30


def check_gemm(rng, m, n, k, *, trans_a=False, trans_b=False, alpha=1.0, beta=0.0,
               with_bias=False, activation=None, what=""):
    a, b = _operands(rng, m, n, k, trans_a, trans_b)
    bias = rng.uniform(-1, 1, n).astype(np.float32) if with_bias else None
    if beta == 0.0:
        out = np.full((m, n), np.nan, np.float32)  # must be written without being read
        c0 = None
    else:
        c0 = rng.uniform(-1, 1, (m, n)).astype(np.float32)
        out = c0.copy()
    a_copy, b_copy = a.copy(), b.copy()
    got = sg.ops.gemm(a, b, trans_a=trans_a, trans_b=trans_b, out=out, alpha=alpha, beta=beta,
                      bias=bias, activation=activation)
    assert got is out
    np.testing.assert_array_equal(a, a_copy)
    np.testing.assert_array_equal(b, b_copy)
    ref, tol = _reference(a, b, trans_a, trans_b, alpha, beta, c0, bias, activation)
    assert_close(got, ref, tol, what=f"gemm m={m} n={n} k={k} trans_a={trans_a} "
                 f"trans_b={trans_b} alpha={alpha} beta={beta} bias={with_bias} "
                 f"activation={activation} isa={sg.get_isa()} {what}")


# (m, n, k) named after what they probe, from the active ISA's register tile MR x NR and
# blocking MC, KC, NC (sg._core._gemm_constants(): AVX2 6x16, AVX-512 14x32, generic 6x8;
# KC 384, NC 1024), so every path sees its own edges.
SHAPES = {
    "1x1x1": lambda c: (1, 1, 1),
    "tile_exact_k7": lambda c: (c["mr"], c["nr"], 7),
    "subtile_k17": lambda c: (c["mr"] - 1, c["nr"] - 1, 17),
    "tile_plus_one_k63": lambda c: (c["mr"] + 1, c["nr"] + 1, 63),
    "odd_17x7_k65": lambda c: (17, 7, 65),
    "k_lt_kc": lambda c: (13, 33, c["sup"]["kc"] - 1),
    "k_eq_kc": lambda c: (12, 32, c["sup"]["kc"]),
    "k_gt_kc": lambda c: (63, 65, c["sup"]["kc"] + 1),
    "k_gt_2kc": lambda c: (2 * c["mr"], 2 * c["nr"] - 1, 2 * c["sup"]["kc"] + 1),
    "m_gt_sup_mc": lambda c: (c["sup"]["mc"] + 1, 17, 63),
    "m_gt_packed_mc": lambda c: (max(c["packed"]["mc"], c["sup_max_rows"]) + 1, 9, 17),
    "row_1x1000_k7": lambda c: (1, 1000, 7),
    "col_1000x1_k17": lambda c: (1000, 1, 17),
    "n_gt_4nc": lambda c: (7, 4 * c["sup"]["nc"] + 1, 17),
    "square_257": lambda c: (257, 257, 257),
    "k_1000": lambda c: (65, 63, 1000),
    "big_1000x257x65": lambda c: (1000, 257, 65),
}




@pytest.mark.parametrize("name", SHAPES)
def test_shapes(isa, rng, name):
    shape = SHAPES[name](sg._core._gemm_constants())
    check_gemm(rng, *shape)  # n_gt_4nc at 2 threads: one range of 2 NC, one of 2 NC + 1


@pytest.mark.parametrize("trans_a", [False, True], ids=["N", "T"])
@pytest.mark.parametrize("trans_b", [False, True], ids=["N", "T"])
@pytest.mark.parametrize("shape", [(17, 65, 257), (63, 7, 1000), (1, 17, 65), (65, 1, 7)],
                         ids=lambda s: "x".join(map(str, s)))
def test_transposes(isa, rng, trans_a, trans_b, shape):
    check_gemm(rng, *shape, trans_a=trans_a, trans_b=trans_b)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.75])
@pytest.mark.parametrize("beta", [0.0, 1.0, 0.5])
@pytest.mark.parametrize("with_bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("activation", [None, "relu"])
def test_epilogue(isa, rng, alpha, beta, with_bias, activation):
    # k > KC on every path, so beta is applied in the first k block and bias/relu in the last.
    check_gemm(rng, 19, 37, 400, trans_a=True, alpha=alpha, beta=beta, with_bias=with_bias,
               activation=activation)


@pytest.mark.parametrize("fill", [np.nan, np.inf, -np.inf, 3.0e38])
def test_beta_zero_never_reads_out(isa, rng, fill):
    for m, n, k in [(7, 17, 63), (65, 33, 300), (5, 9, 0)]:
        a, b = _operands(rng, m, n, k, False, False)
        out = np.full((m, n), fill, np.float32)
        sg.ops.gemm(a, b, out=out, beta=0.0)
        assert np.isfinite(out).all(), f"m={m} n={n} k={k}: {fill} in out leaked with beta=0"
        assert_close(out, a.astype(np.float64) @ b, gemm_tolerance(k, np.abs(a) @ np.abs(b) / np.sqrt(max(k, 1))),
                     what=f"beta=0 over {fill} m={m} n={n} k={k}")


def test_out_none_allocates(isa, rng):
    a, b = _operands(rng, 9, 11, 13, False, True)
    c = sg.ops.gemm(a, b, trans_b=True)
    assert c.shape == (9, 11) and c.dtype == np.float32 and c.flags.c_contiguous
    assert_close(c, a.astype(np.float64) @ b.T, gemm_tolerance(13, np.abs(a) @ np.abs(b.T) / np.sqrt(13)), what="out=None")


def test_nan_in_a_propagates_through_relu(isa, rng):
    """A NaN operand gives NaN in its row (relu keeps NaN, like torch.relu); other rows are fine."""
    a, b = _operands(rng, 8, 20, 30, False, False)
    a[3, 5] = np.nan
    c = sg.ops.gemm(a, b, activation="relu")
    assert np.isnan(c[3]).all(), f"row 3 should be NaN, got {c[3]}"
    others = np.delete(np.arange(8), 3)
    assert_close(c[others], np.maximum(a[others].astype(np.float64) @ b, 0),
                 gemm_tolerance(30, np.abs(a[others]) @ np.abs(b) / np.sqrt(30)), what="rows without NaN")


@pytest.mark.parametrize("trans_a", [False, True], ids=["N", "T"])
@pytest.mark.parametrize("trans_b", [False, True], ids=["N", "T"])
@pytest.mark.parametrize("m,n", [(0, 5), (4, 0), (0, 0)])
def test_zero_size_m_n(isa, rng, trans_a, trans_b, m, n):
    a, b = _operands(rng, m, n, 3, trans_a, trans_b)
    c = sg.ops.gemm(a, b, trans_a=trans_a, trans_b=trans_b)
    assert c.shape == (m, n) and c.dtype == np.float32


@pytest.mark.parametrize("beta", [0.0, 1.0, -2.0])
@pytest.mark.parametrize("with_bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, True)], ids=["NN", "TT"])
def test_k_zero_is_beta_c_plus_bias(isa, rng, beta, with_bias, activation, trans_a, trans_b):
    m, n = 5, 19
    a, b = _operands(rng, m, n, 0, trans_a, trans_b)
    c0 = rng.uniform(-1, 1, (m, n)).astype(np.float32)
    out = c0.copy() if beta != 0.0 else np.full((m, n), np.nan, np.float32)
    bias = rng.uniform(-1, 1, n).astype(np.float32) if with_bias else None
    sg.ops.gemm(a, b, trans_a=trans_a, trans_b=trans_b, out=out, alpha=1.5, beta=beta,
                bias=bias, activation=activation)
    ref = beta * c0.astype(np.float64) if beta != 0.0 else np.zeros((m, n))
    if bias is not None:
        ref = ref + bias
    if activation == "relu":
        ref = np.maximum(ref, 0)
    assert_close(out, ref, 1e-6, rtol=1e-6, what=f"k=0 beta={beta}")


def test_k_zero_out_none_gives_zeros(isa):
    c = sg.ops.gemm(np.zeros((3, 0), np.float32), np.zeros((0, 4), np.float32))
    np.testing.assert_array_equal(c, np.zeros((3, 4), np.float32))


@pytest.mark.parametrize("shape", [(200, 300, 129), (1000, 65, 257)], ids=["200x300x129", "1000x65x257"])
def test_thread_count_invariance(isa, rng, shape):
    m, n, k = shape
    a, b = _operands(rng, m, n, k, False, True)
    bias = rng.standard_normal(n).astype(np.float32)
    results = []
    for t in (1, 2):
        with num_threads(t):
            results.append(sg.ops.gemm(a, b, trans_b=True, bias=bias, activation="relu"))
    np.testing.assert_array_equal(results[0], results[1],
                                  err_msg=f"gemm {shape} differs between 1 and 2 threads")
