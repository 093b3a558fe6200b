"""The convolution's indirect GEMM (cpp/conv/conv_igemm.cpp) against the GEMM it replaces: the
forward and the stride-1 dL/dx read their window taps in place through row pointers, and must
give bitwise what gemm_f32's packed path gives on the explicit im2col matrix (same k blocks,
same FMA chain, same epilogue) — per ISA path and thread count, at depths beyond one k block,
with padding, dilation, stride, channel counts off the register tile, and dense window rows
(the 3-channel stem's forward; every dL/dx here with groups 1 and dilation 1, whose window rows
are read as one run of kw * c_out floats). (Runs shorter than kIgemmMinRun, as the stem's, take the packed gather
instead: the same equality holds for them.)"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import num_threads

from steadygrad import _core

# (n, h, w, c_in, c_out, kh, kw, stride, pad, dilation)
GEOMS = [
    (2, 9, 7, 16, 32, 3, 3, 1, 1, 1),   # one k block
    (2, 6, 6, 64, 24, 3, 3, 1, 1, 1),   # depth 576: two k blocks on every ISA's KC
    (3, 11, 10, 3, 5, 3, 3, 1, 1, 1),   # stem: dense window rows, c_out off NR
    (2, 12, 9, 5, 7, 5, 3, 2, 2, 1),    # stride 2, rectangular window
    (1, 13, 13, 8, 17, 3, 3, 1, 2, 2),  # dilation 2
    (4, 5, 5, 4, 3, 5, 5, 1, 0, 1),     # window as large as the image: no inner rows
]


def _geom(spec: tuple[int, ...]) -> Any:
    n, h, w, ci, co, kh, kw, s, p, d = spec
    return _core.ConvGeometry(n=n, h=h, w=w, c_in=ci, c_out=co, kh=kh, kw=kw, sh=s, sw=s,
                              dh=d, dw=d, ph0=p, ph1=p, pw0=p, pw1=p)


def _taps(g: Any, src: np.ndarray, transposed: bool) -> np.ndarray:
    """The im2col of the gathered A, tap-major: rows are output pixels (forward) or input
    pixels (transposed, stride 1), column t * nch + c channel c of the pixel tap t reads. Tap t
    is window tap (ky, kx) with t = ky * kw + kx forward, t = ky * kw + kw - 1 - kx transposed
    (the order in which a window row's taps read ascending addresses: tap_of in conv_gather.h)."""
    rows_hw = (g.h, g.w) if transposed else (g.oh, g.ow)
    src_hw = (g.oh, g.ow) if transposed else (g.h, g.w)
    nch = src.shape[-1]
    out = np.zeros((g.n, *rows_hw, g.kh * g.kw, nch), np.float32)
    for ky in range(g.kh):
        for kx in range(g.kw):
            for y in range(rows_hw[0]):
                for x in range(rows_hw[1]):
                    if transposed:
                        sy, sx = y + g.ph0 - ky * g.dh, x + g.pw0 - kx * g.dw
                    else:
                        sy, sx = y * g.sh - g.ph0 + ky * g.dh, x * g.sw - g.pw0 + kx * g.dw
                    t = ky * g.kw + (g.kw - 1 - kx if transposed else kx)
                    if 0 <= sy < src_hw[0] and 0 <= sx < src_hw[1]:
                        out[:, y, x, t] = src[:, sy, sx]
    return out.reshape(-1, g.kh * g.kw * nch)


def _packed_gemm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """C = a b on gemm_f32's packed path (a transposed A is always packed, as a gathered one)."""
    return _core.gemm(np.ascontiguousarray(a.T), np.ascontiguousarray(b), trans_a=True)


@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"], indirect=True)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("spec", GEOMS, ids=[str(s) for s in GEOMS])
def test_indirect_gemm_is_the_packed_gemm_bit_for_bit(isa: str, threads: int,
                                                      spec: tuple[int, ...]) -> None:
    g = _geom(spec)
    rng = np.random.default_rng(sum(spec))
    x = rng.standard_normal((g.n, g.h, g.w, g.c_in), dtype=np.float32)
    w = rng.standard_normal((g.c_out, g.c_in, g.kh, g.kw), dtype=np.float32)
    dy = rng.standard_normal((g.n, g.oh, g.ow, g.c_out), dtype=np.float32)
    taps = g.kh * g.kw
    w_fwd = w.reshape(g.c_out, g.c_in, taps).transpose(2, 1, 0).reshape(-1, g.c_out)
    with num_threads(threads):
        y = _core.conv2d_forward(x, w, None, g)
        want = _packed_gemm(_taps(g, x, transposed=False), w_fwd)
        np.testing.assert_array_equal(y.reshape(-1, g.c_out), want)
        if g.sh == 1:
            dx = np.empty_like(x)
            _core.conv2d_backward(dy, x, w, g, np.empty_like(w), grad_input=dx)
            w_rev = w[:, :, :, ::-1].reshape(g.c_out, g.c_in, taps)  # the transposed tap order
            w_dx = w_rev.transpose(2, 0, 1).reshape(-1, g.c_in)
            want_dx = _packed_gemm(_taps(g, dy, transposed=True), w_dx)
            np.testing.assert_array_equal(dx.reshape(-1, g.c_in), want_dx)
