"""Elementwise activations with torch's names: ReLU, LeakyReLU, GELU, Tanh, Sigmoid, SiLU, ELU,
Softplus. Each forward and backward is one sg.ops kernel; the backward works from what forward
cached (the output for Tanh/Sigmoid, the input for the others). Softmax and LogSoftmax, which
work along a dimension, are in nn/softmax.py."""

from __future__ import annotations

from typing import Any, overload

import numpy as np

from steadygrad import _core
from steadygrad.nn._util import real_arg, shape_of, work_like
from steadygrad.nn.module import Module


class _Activation(Module):
    _saves_output = False
    owns_output = True  # for a Sequential's plan (nn.plan); Tanh and Sigmoid read it back
    reads_output_in_backward = False
    layout_agnostic = True  # elementwise: runs on channels-last data inside a conv run
    _transient = ("_saved",)  # the pending backward's input or output (Module.__getstate__)
    # For the diagnostics (steadygrad.diagnostics.probe): a rectifier's unit that is never
    # positive over a batch is dead; an output near a bound of output_bounds is saturated.
    rectifier = False
    output_bounds: tuple[float, float] | None = None

    def __init__(self) -> None:
        super().__init__()
        self._saved: np.ndarray | None = None

    # The sg.ops kernels of an activation without a parameter (ReLU, Tanh, Sigmoid); one with a
    # parameter (LeakyReLU, GELU) overrides _fwd and _bwd to pass it.
    _forward_kernel: staticmethod[..., np.ndarray]
    _backward_kernel: staticmethod[..., np.ndarray]

    def _fwd(self, x: Any, out: np.ndarray | None) -> np.ndarray:
        return self._forward_kernel(x, out=out)

    def _bwd(self, dy: np.ndarray, saved: np.ndarray, out: np.ndarray | None) -> np.ndarray:
        return self._backward_kernel(dy, saved, out=out)

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = self._fwd(x, work_like(self, "out", shape_of(x), x))
        self._saved = y if self._saves_output else x
        return y

    def _saved_for_backward(self, grad_output: np.ndarray) -> np.ndarray:
        """What forward cached, once grad_output is checked for the output's shape."""
        saved = self._saved
        assert saved is not None
        if not isinstance(grad_output, np.ndarray) or grad_output.shape != saved.shape:
            got = getattr(grad_output, "shape", type(grad_output).__name__)
            raise ValueError(f"grad_output must have the output's shape {saved.shape}, got {got}")
        return saved

    def _backward(self, grad_output: np.ndarray) -> np.ndarray:
        saved = self._saved_for_backward(grad_output)
        return self._bwd(grad_output, saved,
                         work_like(self, "dx", saved.shape, grad_output, saved))

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(shape)

    def memory(self, shape: tuple[int, ...]) -> tuple[int, int]:
        n = 4 * int(np.prod(shape))
        return n, n


class ReLU(_Activation):
    """max(x, 0), elementwise on float32 input of any shape (torch.nn.ReLU); NaN stays NaN.

    Inside a Sequential, the forward of a ReLU right after a Linear, Conv1d/Conv2d,
    BatchNorm1d/2d or Residual runs fused into that layer's output store, with no pass and no
    buffer of its own (BatchNorm's backward applies its mask too); `model.plan()` lists what
    fused."""

    # A Sequential's plan (nn.plan) may absorb it into the layer before, as that layer's
    # "relu" epilogue: forward(x, absorbed=True) then passes x (already max(z, 0)) through,
    # and the backward masks by x > 0, which is z > 0, unless the producer's backward applies
    # the mask itself (producer_masks_grad: BatchNorm1d); then it passes the gradient through.
    epilogue = "relu"
    rectifier = True
    _grad_passthrough = False
    _forward_kernel = staticmethod(_core.relu)
    _backward_kernel = staticmethod(_core.relu_backward)

    def forward(self, x: np.ndarray, *, absorbed: bool = False,
                producer_masks_grad: bool = False) -> np.ndarray:
        self._grad_passthrough = absorbed and producer_masks_grad
        if absorbed:
            self._saved = x
            return x
        return super().forward(x)

    def _backward(self, grad_output: np.ndarray) -> np.ndarray:
        if not self._grad_passthrough:
            return super()._backward(grad_output)
        self._saved_for_backward(grad_output)
        return grad_output


class _ParamActivation(_Activation):
    """An activation with real parameters (LeakyReLU's negative_slope, ELU's alpha, Softplus's
    beta and threshold), each declared as a `_KernelArg` class attribute and passed positionally
    to both kernels after their arrays, in declaration order. The constructor checks each
    value; repr shows them."""

    _params: tuple[str, ...] = ()  # the _KernelArg names, in declaration order
    _kernel_args: tuple[float, ...]

    def __init__(self, *values: float) -> None:
        super().__init__()
        owner = type(self).__name__
        self._kernel_args = tuple(real_arg(owner, name, v)
                                  for name, v in zip(self._params, values, strict=True))

    def _fwd(self, x: Any, out: np.ndarray | None) -> np.ndarray:
        return self._forward_kernel(x, *self._kernel_args, out=out)

    def _bwd(self, dy: np.ndarray, saved: np.ndarray, out: np.ndarray | None) -> np.ndarray:
        return self._backward_kernel(dy, saved, *self._kernel_args, out=out)

    def extra_repr(self) -> str:
        return ", ".join(f"{n}={v}" for n, v in zip(self._params, self._kernel_args, strict=True))


class _KernelArg:
    """One real parameter of a _ParamActivation, the public attribute of its name (read and
    assigned as torch's). The value lives in the instance's `_kernel_args`, the tuple the
    kernels are called with, so a forward or backward reads no attribute by name."""

    def __set_name__(self, owner: type[_ParamActivation], name: str) -> None:
        self.index = len(owner._params)
        owner._params = (*owner._params, name)

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> _KernelArg: ...
    @overload
    def __get__(self, obj: _ParamActivation, owner: type[Any]) -> float: ...
    def __get__(self, obj: _ParamActivation | None, owner: type[Any]) -> _KernelArg | float:
        return self if obj is None else obj._kernel_args[self.index]

    def __set__(self, obj: _ParamActivation, value: float) -> None:
        args, i = obj._kernel_args, self.index
        obj._kernel_args = (*args[:i], value, *args[i + 1:])


class LeakyReLU(_ParamActivation):
    """x for x > 0, else negative_slope * x (torch.nn.LeakyReLU, default slope 0.01)."""

    negative_slope = _KernelArg()
    _forward_kernel = staticmethod(_core.leaky_relu)
    _backward_kernel = staticmethod(_core.leaky_relu_backward)
    rectifier = True  # for the diagnostics, as ReLU

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__(negative_slope)


class GELU(_Activation):
    """x * Phi(x), Phi the standard normal CDF (torch.nn.GELU): approximate='none' computes
    it with erf, approximate='tanh' with torch's tanh approximation
    0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))."""

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def _fwd(self, x: Any, out: np.ndarray | None) -> np.ndarray:
        return _core.gelu(x, approximate=self.approximate, out=out)

    def _bwd(self, dy: np.ndarray, saved: np.ndarray, out: np.ndarray | None) -> np.ndarray:
        return _core.gelu_backward(dy, saved, approximate=self.approximate, out=out)

    def extra_repr(self) -> str:
        return f"approximate='{self.approximate}'"


class Tanh(_Activation):
    """tanh(x), elementwise (torch.nn.Tanh). The backward works from the saved output,
    1 - y^2."""

    _saves_output = True
    output_bounds = (-1.0, 1.0)
    reads_output_in_backward = True

    _forward_kernel = staticmethod(_core.tanh)
    _backward_kernel = staticmethod(_core.tanh_backward)


class Sigmoid(_Activation):
    """1 / (1 + exp(-x)), elementwise (torch.nn.Sigmoid). The backward works from the saved
    output, y * (1 - y); its slope is at most 0.25, which is why deep sigmoid stacks lose
    their gradient (see sg.check_init)."""

    _saves_output = True
    output_bounds = (0.0, 1.0)
    reads_output_in_backward = True

    _forward_kernel = staticmethod(_core.sigmoid)
    _backward_kernel = staticmethod(_core.sigmoid_backward)


class SiLU(_Activation):
    """x * sigmoid(x) (torch.nn.SiLU, also called swish)."""

    _forward_kernel = staticmethod(_core.silu)
    _backward_kernel = staticmethod(_core.silu_backward)


class ELU(_ParamActivation):
    """x for x > 0, else alpha * (exp(x) - 1) (torch.nn.ELU; expm1, accurate near 0)."""

    alpha = _KernelArg()
    _forward_kernel = staticmethod(_core.elu)
    _backward_kernel = staticmethod(_core.elu_backward)

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__(alpha)


class Softplus(_ParamActivation):
    """log(1 + exp(beta * x)) / beta, and x where beta * x > threshold (torch.nn.Softplus's
    linear region)."""

    beta = _KernelArg()
    threshold = _KernelArg()
    _forward_kernel = staticmethod(_core.softplus)
    _backward_kernel = staticmethod(_core.softplus_backward)

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__(beta, threshold)
