"""steadygrad: fast, stable neural-network training on the CPU.

Hot paths (GEMM, layer backward passes, fused optimizer steps) are C++ with AVX-512/AVX2
kernels chosen at run time; this package is the thin Python layer over them. Layers, bottom
up: `_core` (the compiled kernels), `ops`, `random`, `nn`, `optim`; then the training tools:
`callbacks` (fit's hook interface), `checkpoint` (sg.save / sg.load), `diagnostics`
(sg.check_init, GradientMonitor), `data` (sg.data.DataLoader), `metrics` (what fit logs by
name, and its registry), `compiled` (sg.compile_step: a step's layers as two C++ calls) and, on
top, `training` (sg.fit / evaluate / predict).
ARCHITECTURE.md at the repository root has the picture.
"""

from __future__ import annotations

from steadygrad import (
    _omp,  # noqa: F401  first: loads _core with steadygrad's OpenMP wait policy
    callbacks,
    checkpoint,
    compiled,
    data,
    diagnostics,
    metrics,
    nn,
    onnx,
    ops,
    optim,
    training,
)
from steadygrad._core import (
    __version__,
    cpu_info,
    get_isa,
    get_num_threads,
    set_isa,
    set_num_threads,
)
from steadygrad._precision import get_matmul_precision, set_matmul_precision
from steadygrad.checkpoint import load, save
from steadygrad.compiled import compile_step
from steadygrad.diagnostics import check_init
from steadygrad.random import manual_seed
from steadygrad.training import evaluate, fit, predict

__all__ = [
    "__version__",
    "callbacks",
    "check_init",
    "checkpoint",
    "compile_step",
    "compiled",
    "cpu_info",
    "data",
    "diagnostics",
    "evaluate",
    "fit",
    "get_isa",
    "get_matmul_precision",
    "get_num_threads",
    "load",
    "manual_seed",
    "metrics",
    "nn",
    "onnx",
    "ops",
    "optim",
    "predict",
    "save",
    "set_isa",
    "set_matmul_precision",
    "set_num_threads",
    "training",
]
