# Type stub of steadygrad._core, the compiled module (cpp/bindings/). Every name the module
# exports is here with its binding's exact signature: positional, keyword-only and default
# arguments as the py::arg lists declare them (tests/test_typing.py checks both directions).
#
# Array arguments are numpy arrays the binding checks without converting: float32 and
# C-contiguous (labels and segment tables: integer arrays). Arguments that take one of a few
# strings ('none'/'relu', 'mean'/'sum', ...) are `str`: the binding raises ValueError naming
# the accepted values. The docstrings live in the module itself (`help(steadygrad._core)`).
# Names for the checker only: aliases (plain assignments) and @type_check_only classes (the
# dicts some functions return; import them under `if TYPE_CHECKING:`).

from typing import Literal, SupportsIndex, TypedDict, overload, type_check_only

import numpy as np
import numpy.typing as npt

_F32 = npt.NDArray[np.float32]
_I64 = npt.NDArray[np.int64]
_Labels = npt.NDArray[np.int32] | npt.NDArray[np.int64]

__version__: str

# -- runtime controls (module.cpp) ------------------------------------------------------------

@type_check_only
class CpuInfo(TypedDict):
    isa: str
    isa_best: str
    isa_supported: list[str]
    threads: int
    cores: int
    cpu: str
    compiler: str
    openmp: int
    version: str

def cpu_info() -> CpuInfo: ...
def set_num_threads(n: SupportsIndex) -> None: ...  # an int or numpy integer, not a bool
def get_num_threads() -> int: ...
def set_isa(name: str) -> None: ...
def get_isa() -> str: ...

# -- GEMM (bind_gemm.cpp) ---------------------------------------------------------------------

def gemm(
    a: _F32,
    b: _F32,
    *,
    trans_a: bool = False,
    trans_b: bool = False,
    out: _F32 | None = None,
    alpha: float = 1.0,
    beta: float = 0.0,
    bias: _F32 | None = None,
    activation: str | None = None,
) -> _F32: ...
def _fma_peak_gflops(isa: str, seconds: float = 0.2) -> float: ...
def _gemm_uses_sup(trans_a: bool, m: int, lda: int) -> bool: ...
@type_check_only
class GemmBlocking(TypedDict):
    mc: int
    kc: int
    nc: int

@type_check_only
class GemmConstants(TypedDict):
    isa: str
    mr: int
    nr: int
    packed: GemmBlocking
    sup: GemmBlocking
    parallel_min_macs: int
    sup_max_rows: int
    m_split_min_tiles_per_thread: int

def _gemm_constants() -> GemmConstants: ...
def _gemm_workspace_bytes(
    m: int, n: int, k: int, trans_a: bool = False, trans_b: bool = False, threads: int = 1
) -> dict[str, int]: ...

# -- layers (bind_layers.cpp, bind_layers_pointwise.cpp) --------------------------------------

@type_check_only
class GemmScratch(TypedDict):
    """Thread-local GEMM packing buffers, in bytes: the calling thread's B panel, each team
    member's A block and B micropanels, and their sum."""

    b_shared: int
    a: list[int]
    b_own: list[int]
    total: int

def linear_scratch(
    batch: int, in_features: int, out_features: int, *, input_grad: bool = True,
    threads: int | None = None,
) -> GemmScratch: ...

def linear_forward(
    input: _F32,
    weight: _F32,
    bias: _F32 | None = None,
    *,
    out: _F32 | None = None,
    activation: str = "none",
) -> _F32: ...
@overload
def linear_backward(
    grad_output: _F32,
    input: _F32,
    weight: _F32,
    grad_weight: _F32,
    grad_bias: _F32 | None = None,
    *,
    accumulate: bool = False,
    accumulate_bias: bool | None = None,
    compute_grad_input: Literal[True] = True,
    grad_input: _F32 | None = None,
) -> _F32: ...
@overload
def linear_backward(
    grad_output: _F32,
    input: _F32,
    weight: _F32,
    grad_weight: _F32,
    grad_bias: _F32 | None = None,
    *,
    accumulate: bool = False,
    accumulate_bias: bool | None = None,
    compute_grad_input: Literal[False],
    grad_input: _F32 | None = None,
) -> None: ...
@overload
def linear_backward(
    grad_output: _F32,
    input: _F32,
    weight: _F32,
    grad_weight: _F32,
    grad_bias: _F32 | None = None,
    *,
    accumulate: bool = False,
    accumulate_bias: bool | None = None,
    compute_grad_input: bool = True,
    grad_input: _F32 | None = None,
) -> _F32 | None: ...
def batchnorm_forward(
    input: _F32,
    weight: _F32 | None,
    bias: _F32 | None,
    running_mean: _F32 | None,
    running_var: _F32 | None,
    num_batches_tracked: _I64 | None,
    save_mean: _F32,
    save_invstd: _F32,
    *,
    use_batch_stats: bool,
    momentum: float | None = 0.1,
    eps: float = 1e-05,
    out: _F32 | None = None,
    activation: str = "none",
) -> _F32: ...
@overload
def batchnorm_backward(
    grad_output: _F32,
    input: _F32,
    weight: _F32 | None,
    save_mean: _F32,
    save_invstd: _F32,
    grad_weight: _F32 | None,
    grad_bias: _F32 | None,
    *,
    batch_stats: bool,
    accumulate: bool = False,
    accumulate_bias: bool | None = None,
    compute_grad_input: Literal[True] = True,
    grad_input: _F32 | None = None,
    activation: str = "none",
    output: _F32 | None = None,
    bias: _F32 | None = None,
) -> _F32: ...
@overload
def batchnorm_backward(
    grad_output: _F32,
    input: _F32,
    weight: _F32 | None,
    save_mean: _F32,
    save_invstd: _F32,
    grad_weight: _F32 | None,
    grad_bias: _F32 | None,
    *,
    batch_stats: bool,
    accumulate: bool = False,
    accumulate_bias: bool | None = None,
    compute_grad_input: Literal[False],
    grad_input: _F32 | None = None,
    activation: str = "none",
    output: _F32 | None = None,
    bias: _F32 | None = None,
) -> None: ...
@overload
def batchnorm_backward(
    grad_output: _F32,
    input: _F32,
    weight: _F32 | None,
    save_mean: _F32,
    save_invstd: _F32,
    grad_weight: _F32 | None,
    grad_bias: _F32 | None,
    *,
    batch_stats: bool,
    accumulate: bool = False,
    accumulate_bias: bool | None = None,
    compute_grad_input: bool = True,
    grad_input: _F32 | None = None,
    activation: str = "none",
    output: _F32 | None = None,
    bias: _F32 | None = None,
) -> _F32 | None: ...
def add(a: _F32, b: _F32, *, out: _F32 | None = None) -> _F32: ...
def dropout(x: _F32, p: float, seed: int, *, out: _F32 | None = None) -> _F32: ...
@overload
def mse_loss(
    input: _F32,
    target: _F32,
    *,
    reduction: str = "mean",
    compute_grad: Literal[True] = True,
    out: _F32 | None = None,
) -> tuple[float, _F32]: ...
@overload
def mse_loss(
    input: _F32,
    target: _F32,
    *,
    reduction: str = "mean",
    compute_grad: Literal[False],
    out: _F32 | None = None,
) -> tuple[float, None]: ...
@overload
def mse_loss(
    input: _F32,
    target: _F32,
    *,
    reduction: str = "mean",
    compute_grad: bool = True,
    out: _F32 | None = None,
) -> tuple[float, _F32 | None]: ...

# -- activations, softmax cross-entropy, buffer norm (bind_ops.cpp) --------------------------

def relu(x: _F32, *, out: _F32 | None = None) -> _F32: ...
def relu_backward(grad_output: _F32, x: _F32, *, out: _F32 | None = None) -> _F32: ...
def leaky_relu(x: _F32, negative_slope: float = 0.01, *, out: _F32 | None = None) -> _F32: ...
def leaky_relu_backward(
    grad_output: _F32, x: _F32, negative_slope: float = 0.01, *, out: _F32 | None = None
) -> _F32: ...
def gelu(x: _F32, *, approximate: str = "none", out: _F32 | None = None) -> _F32: ...
def gelu_backward(
    grad_output: _F32, x: _F32, *, approximate: str = "none", out: _F32 | None = None
) -> _F32: ...
def tanh(x: _F32, *, out: _F32 | None = None) -> _F32: ...
def tanh_backward(grad_output: _F32, y: _F32, *, out: _F32 | None = None) -> _F32: ...
def sigmoid(x: _F32, *, out: _F32 | None = None) -> _F32: ...
def sigmoid_backward(grad_output: _F32, y: _F32, *, out: _F32 | None = None) -> _F32: ...
@overload
def softmax_cross_entropy(
    logits: _F32,
    labels: _Labels,
    *,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    compute_grad: Literal[True] = True,
    out: _F32 | None = None,
) -> tuple[float, _F32]: ...
@overload
def softmax_cross_entropy(
    logits: _F32,
    labels: _Labels,
    *,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    compute_grad: Literal[False],
    out: _F32 | None = None,
) -> tuple[float, None]: ...
@overload
def softmax_cross_entropy(
    logits: _F32,
    labels: _Labels,
    *,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    compute_grad: bool = True,
    out: _F32 | None = None,
) -> tuple[float, _F32 | None]: ...
def global_norm(x: _F32, norm_type: float = 2.0) -> float: ...

# -- optimizers over flat buffers (bind_optim.cpp) -------------------------------------------
# seg_offsets/seg_lengths: int64 arrays of equal length, one entry per parameter segment.

def grad_norms(
    grad: _F32,
    seg_offsets: _I64,
    seg_lengths: _I64,
    norm_type: float = 2.0,
    out: npt.NDArray[np.float64] | None = None,
) -> tuple[float, npt.NDArray[np.float64]]: ...
def grad_scale_clamp(
    grad: _F32,
    seg_offsets: _I64,
    seg_lengths: _I64,
    scale: float = 1.0,
    clip_value: float | None = None,
) -> None: ...
def adam_step(
    param: _F32,
    grad: _F32,
    exp_avg: _F32,
    exp_avg_sq: _F32,
    max_exp_avg_sq: _F32 | None,
    seg_offsets: _I64,
    seg_lengths: _I64,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    step: int,
    amsgrad: bool = False,
    decoupled: bool = False,
    maximize: bool = False,
    grad_scale: float = 1.0,
    clip_value: float | None = None,
) -> None: ...
def rmsprop_step(
    param: _F32,
    grad: _F32,
    square_avg: _F32,
    grad_avg: _F32 | None,
    momentum_buffer: _F32 | None,
    seg_offsets: _I64,
    seg_lengths: _I64,
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    centered: bool = False,
    maximize: bool = False,
    grad_scale: float = 1.0,
    clip_value: float | None = None,
) -> None: ...
def sgd_step(
    param: _F32,
    grad: _F32,
    momentum_buffer: _F32 | None,
    seg_offsets: _I64,
    seg_lengths: _I64,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool = False,
    first: bool = False,
    maximize: bool = False,
    grad_scale: float = 1.0,
    clip_value: float | None = None,
) -> None: ...
