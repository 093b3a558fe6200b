"""The bf16 matmul precision at the GEMM level (sg.ops.gemm under sg.set_matmul_precision):
every bf16 path against float64 of the bf16-rounded inputs within the float32-accumulation
bound of bf16_refs (shapes around the active tile and k block, all transposes, the
alpha/beta/bias/ReLU epilogue, the parallel and M-split drivers), the rounding itself against
numpy and torch (ties to even, NaN, inf, subnormals, overflow) on the packed operands, thread
count independence, and the precision flag's API. Paths this CPU lacks are skipped, naming it."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from bf16_refs import gemm_bound, round_bf16
from conftest import assert_close, num_threads

import steadygrad as sg
from steadygrad import _core

TIME_BUDGET_S = 20


def _ref(a, b, trans_a, trans_b, alpha=1.0, beta=0.0, c0=None, bias=None, relu=False):
    """float64 of the bf16-rounded operands (C and bias stay float32) and its error bound."""
    a64 = round_bf16(a).astype(np.float64)
    b64 = round_bf16(b).astype(np.float64)
    a64, b64 = (a64.T if trans_a else a64), (b64.T if trans_b else b64)
    ref = alpha * (a64 @ b64)
    terms = abs(alpha) * (np.abs(a64) @ np.abs(b64))
    if beta != 0.0:
        ref += beta * c0.astype(np.float64)
        terms += abs(beta) * np.abs(c0.astype(np.float64))
    if bias is not None:
        ref += bias.astype(np.float64)
        terms += np.abs(bias.astype(np.float64))
    if relu:
        ref = np.maximum(ref, 0.0)
    return ref, gemm_bound(a64.shape[1], terms)


def _check(rng, m, n, k, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, bias=False,
           relu=False):
    a = rng.uniform(-1, 1, (k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.uniform(-1, 1, (n, k) if trans_b else (k, n)).astype(np.float32)
    bv = rng.uniform(-1, 1, n).astype(np.float32) if bias else None
    c0 = rng.uniform(-1, 1, (m, n)).astype(np.float32)
    out = c0.copy() if beta != 0.0 else np.full((m, n), np.nan, np.float32)
    got = sg.ops.gemm(a, b, trans_a=trans_a, trans_b=trans_b, out=out, alpha=alpha, beta=beta,
                      bias=bv, activation="relu" if relu else None)
    want, bound = _ref(a, b, trans_a, trans_b, alpha, beta, c0, bv, relu)
    what = f"bf16 gemm m={m} n={n} k={k} ta={trans_a} tb={trans_b} a={alpha} b={beta}"
    assert_close(got, want, bound, what=what)
    return a, b, got


def _shapes():
    c = _core._gemm_constants()
    mr, nr, kc = c["mr"], c["nr"], c["packed"]["kc"]
    return [(1, 1, 1), (mr - 1, nr + 1, 3), (mr + 1, 2 * nr - 3, 2), (2 * mr + 3, nr, 17),
            (3, 5, kc + 9), (300, 2 * nr + 5, 33)]  # 300 rows: past the fp32 sup-path limit


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_gemm_matches_float64_of_rounded_inputs(bf16_path, rng, trans_a, trans_b):
    for m, n, k in _shapes():
        _check(rng, m, n, k, trans_a, trans_b)


def test_gemm_epilogue(bf16_path, rng):
    c = _core._gemm_constants()
    m, n, k = c["mr"] + 2, c["nr"] + 3, 45
    _check(rng, m, n, k, beta=1.0, bias=True, relu=True)
    _check(rng, m, n, k, alpha=0.5, beta=-1.5, bias=True)
    _check(rng, m, n, k, trans_a=True, alpha=1.5, relu=True)
    _check(rng, c["mr"], c["nr"], c["packed"]["kc"] + 3, beta=1.0, bias=True)  # full tiles


def test_bf16_differs_from_fp32(bf16_path, rng):
    """The rounding happens: fp32 products of the same inputs are far outside the bound."""
    a = rng.uniform(-1, 1, (40, 200)).astype(np.float32)
    b = rng.uniform(-1, 1, (200, 30)).astype(np.float32)
    want, bound = _ref(a, b, False, False)
    with sg.set_matmul_precision("highest"):
        fp32 = sg.ops.gemm(a, b)
    assert (np.abs(fp32 - want) > bound).mean() > 0.5


def test_thread_count_independent(bf16_path, rng):
    c = _core._gemm_constants()
    # A team splits N here, and M (a shared B panel) in the tall case.
    tall = c["m_split_min_tiles_per_thread"] * 2 * c["mr"] + 5
    for m, n, k, ta in ((130, 150, 70, False), (97, 260, 41, True), (tall, 24, 9, False)):
        a = rng.uniform(-1, 1, (k, m) if ta else (m, k)).astype(np.float32)
        b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
        results = []
        for t in (1, 2, 3):
            with num_threads(t):
                results.append(sg.ops.gemm(a, b, trans_a=ta))
        for r in results[1:]:
            assert np.array_equal(r, results[0]), (m, n, k, ta)
        want, bound = _ref(a, b, ta, False)
        assert_close(results[0], want, bound, what=f"m={m} n={n} k={k}")


# -- the rounding --------------------------------------------------------------------------

def _special_values() -> np.ndarray:
    f = np.float32
    tiny = np.finfo(f).tiny
    one_ulp = 2.0**-7  # bf16's spacing at 1
    vals = [0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, -np.nan,
            1 + one_ulp / 2,          # tie between 1 and 1 + ulp: to even (1)
            1 + 3 * one_ulp / 2,      # tie between 1 + ulp and 1 + 2 ulp: to even (1 + 2 ulp)
            1 + one_ulp / 2 + 2**-23,  # just past the tie: up
            -(1 + 3 * one_ulp / 2),
            np.finfo(f).max,          # rounds past bf16's largest finite: inf
            3.3895313892515355e38,    # bf16's largest finite
            tiny, tiny * 1.5, tiny / 3, -tiny / 7, 1e-45, 2.0**-133 * 1.5, 5e-39]
    return np.array(vals, dtype=np.float32)


def test_round_bf16_matches_numpy_and_torch(isa, rng):  # baseline code, run on each path
    torch = pytest.importorskip("torch")
    x = np.concatenate([_special_values(), rng.standard_normal(5000).astype(np.float32),
                        rng.uniform(-1, 1, 5000).astype(np.float32) * 1e-39,
                        rng.integers(0, 2**32, 5000, dtype=np.uint64).astype(np.uint32)
                        .view(np.float32)])
    got = _core._round_bf16(x)
    ref = round_bf16(x)
    assert np.array_equal(np.isnan(got), np.isnan(x))
    fin = ~np.isnan(x)
    assert np.array_equal(got[fin].view(np.uint32), ref[fin].view(np.uint32))
    via_torch = torch.from_numpy(x).to(torch.bfloat16).float().numpy()
    assert np.array_equal(got[fin].view(np.uint32), via_torch[fin].view(np.uint32))
    # what mathematics says about the ties and the ends
    s = _core._round_bf16(_special_values())
    assert s[8] == 1.0 and s[9] == 1 + 2 * 2.0**-7 and s[10] == 1 + 2.0**-7
    assert s[11] == -(1 + 2 * 2.0**-7) and s[12] == np.inf and s[13] == np.float32(3.3895313892515355e38)
    assert np.isnan(s[6]) and np.isnan(s[7]) and s[4] == np.inf and s[5] == -np.inf
    assert np.signbit(s[1]) and s[1] == 0.0


@pytest.mark.parametrize("trans", [False, True])
def test_packing_rounds_both_operands(bf16_path, trans):
    """A (m, 1) times [[1]], and [[1]] times B (1, n): k = 1, so C is the packed operand
    itself, rounded (NaN, inf, subnormals and ties included). Native paths flush subnormal
    inputs to zero (the instructions' DAZ), so they are left out there."""
    x = _special_values()
    if bf16_path != "reference":
        x = x[(np.abs(x) >= np.finfo(np.float32).tiny) | ~np.isfinite(x) | (x == 0)]
    one = np.ones((1, 1), np.float32)
    col = x.reshape(1, -1) if trans else x.reshape(-1, 1)
    via_a = sg.ops.gemm(col, one, trans_a=trans).ravel()
    row = x.reshape(-1, 1) if trans else x.reshape(1, -1)
    via_b = sg.ops.gemm(one, row, trans_b=trans).ravel()
    want = round_bf16(x)
    for got, what in ((via_a, "A"), (via_b, "B")):
        assert np.array_equal(np.isnan(got), np.isnan(want)), what
        fin = ~np.isnan(want)
        assert np.array_equal(got[fin], want[fin]), (what, got[fin], want[fin])


# -- the flag --------------------------------------------------------------------------------

def test_precision_default_set_get_and_context_manager():
    assert sg.get_matmul_precision() == "highest"
    assert sg.cpu_info()["matmul_precision"] == "highest"
    sg.set_matmul_precision("bf16")
    try:
        assert sg.get_matmul_precision() == "bf16"
    finally:
        sg.set_matmul_precision("highest")
    with sg.set_matmul_precision("bf16"):
        assert sg.get_matmul_precision() == "bf16"
        with sg.set_matmul_precision("highest"):
            assert sg.get_matmul_precision() == "highest"
        assert sg.get_matmul_precision() == "bf16"
    assert sg.get_matmul_precision() == "highest"
    with pytest.raises(KeyError), sg.set_matmul_precision("bf16"):
        raise KeyError("inside")
    assert sg.get_matmul_precision() == "highest"


@pytest.mark.parametrize("bad", ["fp16", "BF16", "", "high", "medium"])
def test_precision_bad_value(bad):
    with sg.set_matmul_precision("bf16"):
        with pytest.raises(ValueError, match=r"precision must be 'highest' or 'bf16', got"):
            sg.set_matmul_precision(bad)
        assert sg.get_matmul_precision() == "bf16"
    with pytest.raises(TypeError, match="precision must be 'highest' or 'bf16'"):
        sg.set_matmul_precision(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="_set_matmul_precision"):
        _core._set_matmul_precision(bad)
    assert sg.get_matmul_precision() == "highest"


def test_bf16_path_switch_errors():
    with pytest.raises(ValueError, match="unknown bf16 path 'fast'"):
        _core._set_bf16_path("fast")
    for name in ("avx512bf16", "amx"):
        if name not in sg.cpu_info()["bf16_paths_supported"]:
            before = _core._get_bf16_path()
            with pytest.raises(ValueError, match=f"bf16 path '{name}' is not supported"):
                _core._set_bf16_path(name)
            assert _core._get_bf16_path() == before
    assert sg.cpu_info()["bf16_path_best"] in sg.cpu_info()["bf16_paths_supported"]


def _import_with(env_value: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STEADYGRAD_BF16_PATH": env_value}
    code = "import steadygrad as sg; print(sg.cpu_info()['bf16_path'], sg._core._get_bf16_path())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)


def test_env_var_lowers_the_path_at_import():
    r = _import_with("reference")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["reference", "reference"]
    r = _import_with("bfloat")
    assert r.returncode != 0 and "STEADYGRAD_BF16_PATH=bfloat: unknown bf16 path" in r.stderr
    for name in ("avx512bf16", "amx"):
        r = _import_with(name)
        if name in sg.cpu_info()["bf16_paths_supported"]:
            assert r.returncode == 0 and r.stdout.split()[1] == name, r.stderr
        else:
            assert r.returncode != 0 and f"bf16 path '{name}' is not supported" in r.stderr


def test_bf16_packs_a_and_the_accounting_says_so():
    """bf16 rounds A while packing it, so the small-matrix path (A read in place) is off, and
    the scratch accounting sizes the packed A block it then uses."""
    c = _core._gemm_constants()
    m, n, k = 64, 100, 100  # an MLP batch: the fp32 sup path
    kc = min(c["sup"]["kc"], k)
    fp32 = _core._gemm_workspace_bytes(m, n, k)
    assert _core._gemm_uses_sup(False, m, k) and fp32["a"] == -(-c["mr"] * kc * 4 // 64) * 64
    with sg.set_matmul_precision("bf16"):
        assert not _core._gemm_uses_sup(False, m, k)
        bf16 = _core._gemm_workspace_bytes(m, n, k)
        if sg.cpu_info()["bf16_path"] == "reference":  # fp32 panels, the packed block's size
            kc = min(c["packed"]["kc"], k)
            assert bf16["a"] == -(-c["packed"]["mc"] * kc * 4 // 64) * 64
        assert bf16["a"] > fp32["a"]
