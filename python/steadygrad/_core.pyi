# Type stub of steadygrad._core, the compiled module (cpp/bindings/). Every name the module
# exports is here with its binding's exact signature: positional, keyword-only and default
# arguments as the py::arg lists declare them, and each bound class with its constructor and
# its fields (read-only ones as properties) (tests/test_typing.py checks both directions).
#
# Array arguments are numpy arrays the binding checks without converting: float32 and
# C-contiguous (labels and segment tables: integer arrays). Arguments that take one of a few
# strings ('none'/'relu', 'mean'/'sum', ...) are `str`: the binding raises ValueError naming
# the accepted values. The docstrings live in the module itself (`help(steadygrad._core)`); the
# public functions (sg.ops, the runtime controls) carry a copy for the documentation site, which
# reads this stub without importing the module (tests/test_docstrings.py keeps the copies equal).
# One signature per function: a result that compute_grad / compute_grad_input=False leaves
# out is typed `| None` whatever the flag (no overloads on the flag's value), so a caller
# that needs the gradient narrows it (`assert grad is not None`).
# Names for the checker only: aliases (plain assignments) and @type_check_only classes (the
# dicts some functions return; import them under `if TYPE_CHECKING:`).

from collections.abc import Callable, Sequence
from typing import SupportsIndex, TypedDict, type_check_only

import numpy as np
import numpy.typing as npt

_F32 = npt.NDArray[np.float32]
_I64 = npt.NDArray[np.int64]
_I32 = npt.NDArray[np.int32]
_Labels = npt.NDArray[np.int32] | npt.NDArray[np.int64]
_LossValue = float | npt.NDArray[np.float32]  # reduction 'mean'/'sum' | 'none'

__version__: str
"""The package version (pyproject.toml's, compiled in)."""

# -- runtime controls (isa/runtime.cpp) -------------------------------------------------------

@type_check_only
class CpuInfo(TypedDict):
    isa: str
    isa_best: str
    isa_supported: list[str]
    bf16_path: str
    bf16_path_best: str
    bf16_paths_supported: list[str]
    matmul_precision: str
    threads: int
    forked_child: bool
    cores: int
    cpu: str
    compiler: str
    openmp: int
    version: str

def cpu_info() -> CpuInfo:
    """Return a dict: isa (in use), isa_best, isa_supported, bf16_path (the path a bf16 GEMM takes now: 'amx', 'avx512bf16' or 'reference'), bf16_path_best, bf16_paths_supported, matmul_precision ('highest' or 'bf16'), threads (in use), forked_child (True in a fork()ed child, which runs on 1 thread), cores, cpu, compiler, openmp, version."""
def set_num_threads(n: SupportsIndex) -> None:  # an int or numpy integer, not a bool
    """Set the number of OpenMP threads the kernels use (default: OMP_NUM_THREADS or all cores). In a fork()ed child only 1 is allowed (RuntimeError otherwise): OpenMP's thread pool does not survive fork."""
def get_num_threads() -> int:
    """Number of OpenMP threads the kernels use."""
def set_isa(name: str) -> None:
    """Select the kernel path: 'generic', 'avx2' or 'avx512'. Raises ValueError for an unknown name or a path this CPU/OS cannot run. STEADYGRAD_ISA sets it at import."""
def get_isa() -> str:
    """The kernel path in use."""
def kernel_heap_allocations() -> int: ...  # isa/kernel_allocs.cpp

# -- GEMM (gemm/gemm.cpp, gemm/fma_peak.cpp) -------------------------------------------------

def gemm(
    a: _F32, b: _F32, *, trans_a: bool = False, trans_b: bool = False, out: _F32 | None = None,
    alpha: float = 1.0, beta: float = 0.0, bias: _F32 | None = None,
    activation: str | None = None,
) -> _F32:
    """C = activation(alpha * op(a) @ op(b) + beta * out + bias), float32, row-major.

    op(a) is a.T when trans_a else a, (m, k); op(b) likewise, (k, n). beta == 0 writes `out`
    without reading it (NaN or garbage there cannot leak). `bias` has shape (n,), broadcast over
    rows. activation is None or 'relu', fused into the store. Returns `out` (allocated when None).
    Bitwise-identical results for any thread count. Under sg.set_matmul_precision("bf16") a and
    b are rounded to bfloat16 as they are packed and the products accumulate in float32.
    """
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

# -- matmul precision (gemm/matmul_precision.cpp; sg.set_matmul_precision wraps it) ----------

def _set_matmul_precision(precision: str) -> None: ...
def _get_matmul_precision() -> str: ...
def _set_bf16_path(name: str) -> None: ...
def _get_bf16_path() -> str: ...
def _round_bf16(x: _F32) -> _F32: ...

# -- layers (layers/linear.cpp, layers/batchnorm.cpp, layers/embedding.cpp, layers/layernorm.cpp,
# layers/pointwise.cpp)

@type_check_only
class GemmScratch(TypedDict):
    """Thread-local GEMM packing buffers, in bytes: the calling thread's B panel, each team
    member's A block and B micropanels, the calling thread's driver workspace (window tables,
    phase blocks, partial sums of the conv family), and their sum."""

    b_shared: int
    a: list[int]
    b_own: list[int]
    driver: int
    total: int

def linear_scratch(
    batch: int, in_features: int, out_features: int, *, input_grad: bool = True,
    threads: int | None = None,
) -> GemmScratch: ...

def linear_forward(
    input: _F32, weight: _F32, bias: _F32 | None = None, *, out: _F32 | None = None,
    activation: str = "none",
) -> _F32: ...
def linear_backward(
    grad_output: _F32, input: _F32, weight: _F32, grad_weight: _F32,
    grad_bias: _F32 | None = None, *, accumulate: bool = False,
    accumulate_bias: bool | None = None, compute_grad_input: bool = True,
    grad_input: _F32 | None = None,
) -> _F32 | None: ...
class ConvGeometry:
    """One conv/pool call's geometry over a channels-last batch (cpp/layers/conv_geometry.h):
    input (n, h, w, c_in), output (n, oh, ow, c_out), window, stride, dilation, padding."""

    def __init__(
        self, *, n: int, h: int, w: int, c_in: int, c_out: int, kh: int, kw: int,
        sh: int = 1, sw: int = 1, dh: int = 1, dw: int = 1, ph0: int = 0, ph1: int = 0,
        pw0: int = 0, pw1: int = 0, groups: int = 1, ceil_mode: bool = False,
    ) -> None: ...
    @property
    def n(self) -> int: ...
    @property
    def h(self) -> int: ...
    @property
    def w(self) -> int: ...
    @property
    def c_in(self) -> int: ...
    @property
    def c_out(self) -> int: ...
    @property
    def groups(self) -> int: ...
    @property
    def kh(self) -> int: ...
    @property
    def kw(self) -> int: ...
    @property
    def sh(self) -> int: ...
    @property
    def sw(self) -> int: ...
    @property
    def dh(self) -> int: ...
    @property
    def dw(self) -> int: ...
    @property
    def ph0(self) -> int: ...
    @property
    def ph1(self) -> int: ...
    @property
    def pw0(self) -> int: ...
    @property
    def pw1(self) -> int: ...
    @property
    def oh(self) -> int: ...
    @property
    def ow(self) -> int: ...
    # pickling: every field in the struct's order (n, h, w, c_in, c_out, groups, kh, kw, sh, sw,
    # dh, dw, ph0, ph1, pw0, pw1, oh, ow); __setstate__ validates as __init__ does
    def __getstate__(self) -> tuple[int, ...]: ...
    def __setstate__(self, state: tuple[int, ...]) -> None: ...

# -- depthwise convolution (depthwise/depthwise.cpp): channels-last, torch's weight layout ----

def conv2d_forward(
    input: _F32, weight: _F32, bias: _F32 | None, geom: ConvGeometry, *,
    activation: str = "none", out: _F32 | None = None,
) -> _F32: ...
def conv2d_backward(
    grad_output: _F32, input: _F32, weight: _F32, geom: ConvGeometry, grad_weight: _F32,
    grad_bias: _F32 | None = None, *, accumulate: bool = False,
    accumulate_bias: bool | None = None, compute_grad_input: bool = True,
    grad_input: _F32 | None = None,
) -> _F32 | None: ...
def conv2d_scratch(
    geom: ConvGeometry, *, input_grad: bool = True, threads: int | None = None
) -> GemmScratch: ...
def depthwise_conv2d_scratch(
    geom: ConvGeometry, *, input_grad: bool = True, threads: int | None = None
) -> GemmScratch: ...
def depthwise_conv2d_forward(
    x: _F32, weight: _F32, bias: _F32 | None, geom: ConvGeometry, *, activation: str = "none",
    out: _F32 | None = None,
) -> _F32: ...
def depthwise_conv2d_backward(
    grad_out: _F32, x: _F32, weight: _F32, geom: ConvGeometry, grad_weight: _F32 | None,
    grad_bias: _F32 | None, *, accumulate: bool = False, accumulate_bias: bool | None = None,
    compute_grad_input: bool = True, grad_input: _F32 | None = None,
) -> _F32 | None: ...

class BatchNormContext:
    """What one batchnorm_forward leaves for its batchnorm_backward (autograd's ctx): the mode
    set by the caller, the batch statistics and the input recorded by the forward."""

    def __init__(
        self, save_mean: _F32, save_invstd: _F32, batch_stats: bool, activation: str = "none"
    ) -> None: ...
    @property
    def save_mean(self) -> _F32: ...
    @property
    def save_invstd(self) -> _F32: ...
    batch_stats: bool
    activation: str  # 'none' or 'relu'
    @property
    def input(self) -> _F32 | None: ...  # set by the forward
    output: _F32 | None  # None after each forward; the caller may keep the output here

class StepTape:
    """A compiled step's layers (steadygrad.compiled), recorded once per input shape and run
    as forward(input) and backward(grad_output) with no per-layer Python."""

    def __init__(self, batch: int, in_features: int) -> None: ...
    def add_linear(self, weight: _F32, bias: _F32 | None, grad_weight: _F32,
                   grad_bias: _F32 | None, *, relu: bool = False,
                   on_written: Callable[[], object] | None = None) -> None: ...
    def add_batchnorm(self, weight: _F32 | None, bias: _F32 | None, grad_weight: _F32 | None,
                      grad_bias: _F32 | None, running_mean: _F32 | None,
                      running_var: _F32 | None, num_batches_tracked: _I64 | None, *,
                      momentum: float | None, eps: float, relu: bool = False,
                      on_written: Callable[[], object] | None = None) -> None: ...
    def add_activation(self, name: str, a: float = 0.0, b: float = 0.0) -> None: ...
    def set_cross_entropy(self, weight: _F32 | None, ignore_index: int, reduction: str,
                          label_smoothing: float) -> None: ...
    def add_dropout(self, p: float) -> None: ...
    def run(self, input: _F32, labels: _I64 | _I32, seeds: Sequence[int] = ...,
            norm: float = 0.0) -> float: ...
    def forward(self, input: _F32, seeds: Sequence[int] = ...) -> _F32: ...
    def backward(self, grad_output: _F32, norm: float = 0.0) -> None: ...
    @property
    def output(self) -> _F32: ...
    @property
    def grad_partials(self) -> npt.NDArray[np.float64]: ...
    @property
    def grad_output(self) -> _F32 | None: ...
    @property
    def batch(self) -> int: ...
    @property
    def layers(self) -> int: ...

def batchnorm_forward(
    input: _F32, weight: _F32 | None, bias: _F32 | None, running_mean: _F32 | None,
    running_var: _F32 | None, num_batches_tracked: _I64 | None, ctx: BatchNormContext, *,
    momentum: float | None = 0.1, eps: float = 1e-05, out: _F32 | None = None,
) -> _F32: ...
def batchnorm_backward(
    grad_output: _F32, weight: _F32 | None, bias: _F32 | None, ctx: BatchNormContext,
    grad_weight: _F32 | None, grad_bias: _F32 | None, *, accumulate: bool = False,
    accumulate_bias: bool | None = None, compute_grad_input: bool = True,
    grad_input: _F32 | None = None, batch_sums: _F32 | None = None, batch_count: int | None = None,
) -> _F32 | None: ...
def embedding_forward(indices: _Labels, weight: _F32, *, out: _F32 | None = None) -> _F32: ...
def embedding_backward(grad_output: _F32, indices: _Labels, grad_weight: _F32, *,
                       padding_idx: int | None = None, accumulate: bool = False,
                       scratch: _I64 | None = None) -> None: ...
# LayerNorm (layers/layernorm.cpp) on (rows, features); save_mean/save_rstd are (rows,), the
# forward writes them; layernorm_backward returns None when compute_grad_input=False
def layernorm_forward(
    input: _F32, weight: _F32 | None, bias: _F32 | None, save_mean: _F32, save_rstd: _F32, *,
    eps: float = 1e-05, out: _F32 | None = None,
) -> _F32: ...
def layernorm_backward(
    grad_output: _F32, input: _F32, weight: _F32 | None, save_mean: _F32, save_rstd: _F32,
    grad_weight: _F32 | None, grad_bias: _F32 | None, *, accumulate: bool = False,
    accumulate_bias: bool | None = None, compute_grad_input: bool = True,
    grad_input: _F32 | None = None,
) -> _F32 | None: ...
def add(a: _F32, b: _F32, *, out: _F32 | None = None) -> _F32: ...
def dropout(x: _F32, p: float, seed: int, *, out: _F32 | None = None) -> _F32: ...

# -- layout conversion (layout/layout.cpp) ----------------------------------------------------

def to_channels_last(x: _F32, out: _F32 | None = None) -> _F32: ...
def to_channels_first(x: _F32, out: _F32 | None = None) -> _F32: ...

# -- elementwise losses (layers/elem_loss.cpp): the loss is a float for 'mean'/'sum', the
# per-element losses for 'none'; the gradient is None when compute_grad=False

def mse_loss(
    input: _F32, target: _F32, *, reduction: str = "mean", compute_grad: bool = True,
    out: _F32 | None = None,
) -> tuple[_LossValue, _F32 | None]: ...
def l1_loss(
    input: _F32, target: _F32, *, reduction: str = "mean", compute_grad: bool = True,
    out: _F32 | None = None,
) -> tuple[_LossValue, _F32 | None]: ...
def smooth_l1_loss(
    input: _F32, target: _F32, *, reduction: str = "mean", beta: float = 1.0,
    compute_grad: bool = True, out: _F32 | None = None,
) -> tuple[_LossValue, _F32 | None]: ...
def huber_loss(
    input: _F32, target: _F32, *, reduction: str = "mean", delta: float = 1.0,
    compute_grad: bool = True, out: _F32 | None = None,
) -> tuple[_LossValue, _F32 | None]: ...
def binary_cross_entropy(
    input: _F32, target: _F32, *, weight: _F32 | None = None, reduction: str = "mean",
    compute_grad: bool = True, out: _F32 | None = None,
) -> tuple[_LossValue, _F32 | None]: ...
def binary_cross_entropy_with_logits(
    input: _F32, target: _F32, *, weight: _F32 | None = None, pos_weight: _F32 | None = None,
    reduction: str = "mean", compute_grad: bool = True, out: _F32 | None = None,
) -> tuple[_LossValue, _F32 | None]: ...

# -- pooling over channels-last (n, h, w, c) batches (pooling/pooling.cpp) ------------------

def max_pool2d_forward(
    input: _F32, geom: ConvGeometry, *, out: _F32 | None = None, indices: _I32 | None = None
) -> tuple[_F32, _I32]: ...
def max_pool2d_backward(
    grad_output: _F32, indices: _I32, geom: ConvGeometry, *, grad_input: _F32 | None = None
) -> _F32: ...
def avg_pool2d_forward(
    input: _F32, geom: ConvGeometry, *, count_include_pad: bool = True,
    divisor_override: int | None = None, out: _F32 | None = None,
) -> _F32: ...
def avg_pool2d_backward(
    grad_output: _F32, geom: ConvGeometry, *, count_include_pad: bool = True,
    divisor_override: int | None = None, grad_input: _F32 | None = None,
) -> _F32: ...
def adaptive_avg_pool2d_forward(
    input: _F32, output_size: tuple[int, int], *, out: _F32 | None = None
) -> _F32: ...
def adaptive_avg_pool2d_backward(
    grad_output: _F32, input_size: tuple[int, int], *, grad_input: _F32 | None = None
) -> _F32: ...
def pool2d_scratch(geom: ConvGeometry) -> GemmScratch: ...
def adaptive_avg_pool2d_scratch(
    input_size: tuple[int, int], output_size: tuple[int, int]
) -> GemmScratch: ...

# -- activations, softmax, softmax cross-entropy, buffer norm ------------------------------
# (layers/activations.cpp, layers/softmax.cpp, layers/softmax_xent.cpp, reduce/norm.cpp)

def relu(x: _F32, *, out: _F32 | None = None) -> _F32:
    """max(x, 0); NaN stays NaN."""
def relu_backward(grad_output: _F32, x: _F32, *, out: _F32 | None = None) -> _F32:
    """grad_output where x > 0, else 0."""
def leaky_relu(x: _F32, negative_slope: float = 0.01, *, out: _F32 | None = None) -> _F32:
    """x where x > 0, else negative_slope * x."""
def leaky_relu_backward(
    grad_output: _F32, x: _F32, negative_slope: float = 0.01, *, out: _F32 | None = None
) -> _F32:
    """grad_output * (1 if x > 0 else negative_slope)."""
def gelu(x: _F32, *, approximate: str = "none", out: _F32 | None = None) -> _F32:
    """GELU as torch.nn.functional.gelu: approximate='none' (erf) or 'tanh'."""
def gelu_backward(
    grad_output: _F32, x: _F32, *, approximate: str = "none", out: _F32 | None = None
) -> _F32:
    """Gradient of gelu with respect to its input x."""
def tanh(x: _F32, *, out: _F32 | None = None) -> _F32:
    """tanh(x)."""
def tanh_backward(grad_output: _F32, y: _F32, *, out: _F32 | None = None) -> _F32:
    """grad_output * (1 - y^2), from the forward output y."""
def sigmoid(x: _F32, *, out: _F32 | None = None) -> _F32:
    """1 / (1 + exp(-x))."""
def sigmoid_backward(grad_output: _F32, y: _F32, *, out: _F32 | None = None) -> _F32:
    """grad_output * y * (1 - y), from the forward output y."""
def silu(x: _F32, *, out: _F32 | None = None) -> _F32:
    """x * sigmoid(x)."""
def silu_backward(grad_output: _F32, x: _F32, *, out: _F32 | None = None) -> _F32:
    """grad_output * sigmoid(x) * (1 + x * (1 - sigmoid(x)))."""
def softplus(
    x: _F32, beta: float = 1.0, threshold: float = 20.0, *, out: _F32 | None = None
) -> _F32:
    """log1p(exp(beta * x)) / beta, and x where beta * x > threshold."""
def softplus_backward(
    grad_output: _F32, x: _F32, beta: float = 1.0, threshold: float = 20.0, *,
    out: _F32 | None = None
) -> _F32:
    """grad_output * sigmoid(beta * x), and grad_output where beta * x > threshold."""
def elu(x: _F32, alpha: float = 1.0, *, out: _F32 | None = None) -> _F32:
    """x where x > 0, else alpha * expm1(x)."""
def elu_backward(
    grad_output: _F32, x: _F32, alpha: float = 1.0, *, out: _F32 | None = None
) -> _F32:
    """grad_output * (1 if x > 0 else alpha * exp(x))."""
def softmax(x: _F32, dim: int, *, out: _F32 | None = None) -> _F32:
    """softmax(x) along dim (max-subtracted)."""
def softmax_backward(grad_output: _F32, y: _F32, dim: int, *, out: _F32 | None = None) -> _F32:
    """y * (grad_output - sum(grad_output * y)) along dim, from the forward output y."""
def log_softmax(x: _F32, dim: int, *, out: _F32 | None = None) -> _F32:
    """log_softmax(x) along dim (max-subtracted)."""
def log_softmax_backward(
    grad_output: _F32, y: _F32, dim: int, *, out: _F32 | None = None
) -> _F32:
    """grad_output - exp(y) * sum(grad_output) along dim, from the forward output y."""
# softmax cross-entropy and NLL (layers/softmax_xent.cpp): labels are class indices or, for
# softmax_cross_entropy, float32 probabilities of the logits' shape
def softmax_cross_entropy(
    logits: _F32, labels: _Labels | _F32, *, weight: _F32 | None = None,
    ignore_index: int = -100, reduction: str = "mean", label_smoothing: float = 0.0,
    compute_grad: bool = True, out: _F32 | None = None,
) -> tuple[_LossValue, _F32 | None]:
    """Softmax cross-entropy of (batch, classes) logits, as torch.nn.functional.cross_entropy,
    in one pass: labels are int32/int64 class indices (batch,) (ignore_index rows count for
    nothing; 'mean' divides by the summed weight of the others) or float32 probabilities of the
    logits' shape ('mean' divides by the batch). weight: optional (classes,) class weights.

    Returns (loss, dlogits): loss is a Python float for 'mean'/'sum', the float32 (batch,) row
    losses for 'none'; dlogits the gradient of that loss, for 'none' of the rows' sum (None when
    compute_grad=False). Stable for logits of any finite magnitude. `out` may be logits itself.
    """
def nll_loss(
    input: _F32, labels: _Labels, *, weight: _F32 | None = None, ignore_index: int = -100,
    reduction: str = "mean", compute_grad: bool = True, out: _F32 | None = None,
) -> tuple[_LossValue, _F32 | None]: ...
def global_norm(x: _F32, norm_type: float = 2.0) -> float:
    """L2 (norm_type=2) or max-abs (norm_type=inf) norm of a float32 buffer. Bitwise identical for any thread count and ISA path."""

# -- optimizers over flat buffers (optim/optim.cpp) ------------------------------------------
# seg_offsets/seg_lengths: int64 arrays of equal length, one entry per parameter segment.
# Each step kernel takes its hyperparameters as one bound struct; its `pre` is the struct's
# own GradPreHyper (reading it gives a view that writes through, assigning one copies it).

def combine_norm_partials(partials: npt.NDArray[np.float64], norm_type: float = 2.0) -> float: ...
def grad_norms(
    grad: _F32,
    seg_offsets: _I64,
    seg_lengths: _I64,
    norm_type: float = 2.0,
    out: npt.NDArray[np.float64] | None = None,
) -> tuple[float, npt.NDArray[np.float64]]: ...
class GradPreHyper:
    """What every update kernel does to a gradient before using it: scale, clamp, negate."""

    def __init__(
        self, *, grad_scale: float = 1.0, clip_value: float | None = None, maximize: bool = False
    ) -> None: ...
    grad_scale: float
    clip_value: float | None
    maximize: bool

# `pre = ...` below: the binding's default is GradPreHyper() (grad_scale 1, no clamp).
# The *Hyper classes below are parallel on purpose (the duplicates tool pairs their field
# lists): one bound struct per optimizer, each field typed, as cpp/bindings/optim/hyper.cpp
# binds them.
class AdamHyper:
    def __init__(
        self,
        *,
        lr: float,
        beta1: float,
        beta2: float,
        eps: float,
        weight_decay: float,
        amsgrad: bool,
        decoupled: bool,
        step: int = 1,
        pre: GradPreHyper = ...,
    ) -> None: ...
    lr: float
    beta1: float
    beta2: float
    eps: float
    weight_decay: float
    amsgrad: bool
    decoupled: bool
    step: int
    pre: GradPreHyper

class RmspropHyper:
    def __init__(
        self,
        *,
        lr: float,
        alpha: float,
        eps: float,
        weight_decay: float,
        momentum: float,
        centered: bool,
        pre: GradPreHyper = ...,
    ) -> None: ...
    lr: float
    alpha: float
    eps: float
    weight_decay: float
    momentum: float
    centered: bool
    pre: GradPreHyper

class SgdHyper:
    def __init__(
        self,
        *,
        lr: float,
        momentum: float,
        dampening: float,
        weight_decay: float,
        nesterov: bool,
        first: bool = False,
        pre: GradPreHyper = ...,
    ) -> None: ...
    lr: float
    momentum: float
    dampening: float
    weight_decay: float
    nesterov: bool
    first: bool
    pre: GradPreHyper

class AdagradHyper:
    def __init__(
        self,
        *,
        lr: float,
        lr_decay: float,
        weight_decay: float,
        eps: float,
        step: int = 1,
        pre: GradPreHyper = ...,
    ) -> None: ...
    lr: float
    lr_decay: float
    weight_decay: float
    eps: float
    step: int
    pre: GradPreHyper

class NadamHyper:
    def __init__(
        self,
        *,
        lr: float,
        beta1: float,
        beta2: float,
        eps: float,
        weight_decay: float,
        momentum_decay: float,
        decoupled: bool,
        step: int = 1,
        mu_product: float = 1.0,
        pre: GradPreHyper = ...,
    ) -> None: ...
    lr: float
    beta1: float
    beta2: float
    eps: float
    weight_decay: float
    momentum_decay: float
    decoupled: bool
    step: int
    mu_product: float
    pre: GradPreHyper

def grad_scale_clamp(
    grad: _F32, seg_offsets: _I64, seg_lengths: _I64, pre: GradPreHyper
) -> None: ...
def adam_step(
    param: _F32,
    grad: _F32,
    exp_avg: _F32,
    exp_avg_sq: _F32,
    max_exp_avg_sq: _F32 | None,
    seg_offsets: _I64,
    seg_lengths: _I64,
    hyper: AdamHyper,
) -> None: ...
def rmsprop_step(
    param: _F32,
    grad: _F32,
    square_avg: _F32,
    grad_avg: _F32 | None,
    momentum_buffer: _F32 | None,
    seg_offsets: _I64,
    seg_lengths: _I64,
    hyper: RmspropHyper,
) -> None: ...
def sgd_step(
    param: _F32,
    grad: _F32,
    momentum_buffer: _F32 | None,
    seg_offsets: _I64,
    seg_lengths: _I64,
    hyper: SgdHyper,
) -> None: ...
def adagrad_step(
    param: _F32,
    grad: _F32,
    sum: _F32,
    seg_offsets: _I64,
    seg_lengths: _I64,
    hyper: AdagradHyper,
) -> None: ...
def nadam_step(
    param: _F32,
    grad: _F32,
    exp_avg: _F32,
    exp_avg_sq: _F32,
    seg_offsets: _I64,
    seg_lengths: _I64,
    hyper: NadamHyper,
) -> float: ...
