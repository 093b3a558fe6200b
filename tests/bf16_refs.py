"""References for the bf16 matmul precision: bfloat16 rounding in numpy, and the error bound of
a GEMM on bf16 inputs with float32 accumulation.

The bound: a product of two bf16 values (8 significant bits each) is exact in float32 (24), so
the only roundings are the sums. Any order of evaluation of a length-k sum (the reference
path's k-ordered FMA chain, vdpbf16ps' pairs, the AMX tiles' chunks) with the epilogue's few
operations (alpha, beta, bias: at most 3 more roundings) has |error| <= gamma(k + 3) * S with
gamma(n) = n u / (1 - n u), u = 2^-24, and S the same expression on absolute values
(Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., eq. 3.5 and lemma 3.1). It
is a worst case, so it holds for every path; the reference path's FMAs round less."""

from __future__ import annotations

import numpy as np

U = 2.0**-24


def round_bf16(x: np.ndarray) -> np.ndarray:
    """float32 x rounded to the nearest bfloat16, ties to even, as float32; NaN stays NaN (a
    quiet one), inf stays inf, subnormals round like normals, overflow goes to inf."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    out = np.where(nan, (u | 0x00400000) & 0xFFFF0000, rounded).astype(np.uint32)
    return out.view(np.float32).reshape(np.shape(x))


def gamma(n: int) -> float:
    return n * U / (1.0 - n * U)


def gemm_bound(k: int, abs_terms: np.ndarray) -> np.ndarray:
    """The error bound of a float32-accumulated length-k product whose absolute terms
    (|alpha| |A| |B| + |beta| |C| + |bias|, in float64) are abs_terms."""
    return gamma(k + 3) * abs_terms
