"""The GEMM precision: sg.set_matmul_precision / sg.get_matmul_precision over the flag that
lives in C++ (cpp/gemm/matmul_precision.h), which every GEMM call reads once."""

from __future__ import annotations

from types import TracebackType

from steadygrad import _core

PRECISIONS: tuple[str, ...] = ("highest", "bf16")


def check_precision(precision: object, where: str) -> str:
    """precision if it is one of PRECISIONS, else the error naming `where` and the choices."""
    if not isinstance(precision, str):
        raise TypeError(f"{where} must be 'highest' or 'bf16', got {type(precision).__name__} "
                        f"{precision!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"{where} must be 'highest' or 'bf16', got {precision!r}")
    return precision


class _RestorePrecision:
    """What set_matmul_precision returns: as a context manager, it puts back the precision
    that was in force before the call when the block ends, also on an exception."""

    def __init__(self, previous: str) -> None:
        self._previous = previous

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        _core._set_matmul_precision(self._previous)

    def __repr__(self) -> str:
        return f"<matmul precision {get_matmul_precision()!r}, restores {self._previous!r}>"


def set_matmul_precision(precision: str) -> _RestorePrecision:
    """Sets the precision of every matrix product (Linear, the convolutions' implicit GEMMs,
    sg.ops.gemm), forward and backward, for the whole process:

    - "highest" (the default): float32 products, float32 accumulation;
    - "bf16": both inputs of each product are rounded to bfloat16 (round to nearest, ties to
      even; NaN and inf kept) as the GEMM packs them, products accumulate in float32.

    Storage stays float32 either way: parameters, gradients, optimizer state, activations and
    outputs (bf16 has float32's exponent range, so no loss scaling is needed). bf16 runs on
    AMX tiles or AVX512-BF16 where the CPU has them, else on a reference path that rounds the
    inputs and multiplies with the float32 kernels (same results for any thread count);
    `sg.cpu_info()["bf16_path"]` says which, STEADYGRAD_BF16_PATH=reference|avx512bf16 lowers it.

    Takes effect at once; the returned object is also a context manager that restores the
    previous precision when the block ends (also on an exception):
    `with sg.set_matmul_precision("bf16"): ...`. Raises ValueError for another string (and
    TypeError for a non-string), changing nothing.
    """
    checked = check_precision(precision, "set_matmul_precision: precision")
    previous = _core._get_matmul_precision()
    _core._set_matmul_precision(checked)
    return _RestorePrecision(previous)


def get_matmul_precision() -> str:
    """The precision in force: "highest" or "bf16" (see set_matmul_precision)."""
    return _core._get_matmul_precision()
