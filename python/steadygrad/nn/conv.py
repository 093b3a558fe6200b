"""Conv1d and Conv2d with torch's signatures. The kernels run on channels-last arrays
(nn._layout): the forward is one implicit GEMM per group (bias and an optional ReLU in its
epilogue), the backward one call for dL/dw, dL/db and (unless skipped) dL/dx. A 1-d layer is
the 2-d kernel with H = 1. padding_mode other than 'zeros' pads the input explicitly into a work
buffer, runs an unpadded convolution and folds the padded gradient back."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from steadygrad import _core
from steadygrad.nn import init
from steadygrad.nn._conv_padding import fold_into, pad_into
from steadygrad.nn._layout import FIRST, LAST, LAYOUTS, first_shape, last_shape, to_first, to_last
from steadygrad.nn._unbatched import AcceptsUnbatched
from steadygrad.nn._util import grad_input_out, work_like
from steadygrad.nn.module import Module
from steadygrad.nn.parameter import Parameter
from steadygrad.nn.plan import KernelLayer

if TYPE_CHECKING:
    from steadygrad._core import GemmScratch

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")

def _tuple(owner: str, name: str, value: object, nd: int, low: int) -> tuple[int, ...]:
    """An int or a tuple of nd ints, each >= low, as a tuple (torch's _single/_pair)."""
    items = value if isinstance(value, (tuple, list)) else (value,) * nd
    ok = len(items) == nd and all(
        not isinstance(v, bool) and isinstance(v, (int, np.integer)) for v in items)
    if not ok:
        raise TypeError(f"{owner}: {name} must be an int or a tuple of {nd} ints, got {value!r}")
    out = tuple(int(v) for v in items)  # type: ignore[arg-type]  # ints, checked above
    if any(v < low for v in out):
        raise ValueError(f"{owner}: {name} must be >= {low}, got {value!r}")
    return out


class _ConvNd(KernelLayer, Module):
    # Computes channels-last (nn._layout); what a Sequential's plan may ask of it (nn.plan)
    # besides a KernelLayer's (dL/dw reads the input before dL/dx is written): a ReLU in the
    # GEMM's epilogue (masked in the backward by the absorbed ReLU, as for Linear).
    channels_last = True
    fusable_epilogues = frozenset({"relu"})
    # For the diagnostics (steadygrad.diagnostics.probe): `weight` (out, in/groups, *kernel) is
    # a weight layer's; fan-in in_channels/groups * prod(kernel_size), as torch's init computes it.
    weight_layer = True
    _transient = ("_saved",)  # the pending backward's arrays (Module.__getstate__)
    _nd: int
    _spatial: str

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, ...],
                 stride: int | tuple[int, ...] = 1, padding: str | int | tuple[int, ...] = 0,
                 dilation: int | tuple[int, ...] = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros") -> None:
        super().__init__()
        name, nd = type(self).__name__, self._nd
        for arg, v in (("in_channels", in_channels), ("out_channels", out_channels),
                       ("groups", groups)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"{name}: {arg} must be an int, got {v!r}")
            if v < 1:
                raise ValueError(f"{name}: {arg} must be a positive int, got {v!r}")
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        if self.in_channels % self.groups:
            raise ValueError(f"{name}: in_channels must be divisible by groups, got "
                             f"in_channels={in_channels}, groups={groups}")
        if self.out_channels % self.groups:
            raise ValueError(f"{name}: out_channels must be divisible by groups, got "
                             f"out_channels={out_channels}, groups={groups}")
        self.kernel_size = _tuple(name, "kernel_size", kernel_size, nd, 1)
        self.stride = _tuple(name, "stride", stride, nd, 1)
        self.dilation = _tuple(name, "dilation", dilation, nd, 1)
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"{name}: padding must be 'same', 'valid', an int or a tuple "
                                 f"of {nd} ints, got {padding!r}")
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError(f"{name}: padding='same' is not supported for strided "
                                 f"convolutions, got stride={stride!r}")
            self.padding: str | tuple[int, ...] = padding
        else:
            self.padding = _tuple(name, "padding", padding, nd, 0)
        if not isinstance(padding_mode, str) or padding_mode not in PADDING_MODES:
            raise ValueError(f"{name}: padding_mode must be one of {PADDING_MODES}, got "
                             f"{padding_mode!r}")
        self.padding_mode = padding_mode
        # (before, after) per spatial dim; torch's 'same' puts the odd one after
        self._pads: tuple[tuple[int, int], ...]
        if isinstance(self.padding, tuple):
            self._pads = tuple((p, p) for p in self.padding)
        elif self.padding == "same":
            totals = [d * (k - 1) for d, k in zip(self.dilation, self.kernel_size, strict=True)]
            self._pads = tuple((t // 2, t - t // 2) for t in totals)
        else:  # valid
            self._pads = ((0, 0),) * nd
        cig = self.in_channels // self.groups
        self.weight = Parameter(np.zeros((self.out_channels, cig, *self.kernel_size), np.float32))
        if bias:
            self.bias = Parameter(np.zeros(self.out_channels, np.float32))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()
        self._flatten_parameters()
        if self._is_depthwise():  # its kernel never writes dL/dx over the input
            object.__setattr__(self, "grad_into_input", False)
        self._geom_key: tuple[int, ...] | None = None
        self._geom: _core.ConvGeometry | None = None
        # the pending backward's input, kernel input, logical input shape and layouts
        self._saved: tuple[np.ndarray, np.ndarray, tuple[int, ...], str, str] | None = None

    def reset_parameters(self) -> None:
        # torch's _ConvNd default: kaiming_uniform_(a=sqrt(5)), bias U(+-1/sqrt(fan_in))
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.data[0].size
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            init.uniform_(self.bias, -bound, bound)

    # -- geometry -------------------------------------------------------------------------
    def _is_depthwise(self) -> bool:
        """The one dispatch point to the depthwise kernel (cpp/depthwise: groups == in_channels
        > 1; the same arguments as conv2d_forward/backward, but dL/dx never over the input)."""
        return self.groups == self.in_channels > 1

    def _kernels(self) -> tuple[Any, Any]:
        """(forward, backward) _core functions; both take conv2d_forward/backward's arguments."""
        if self._is_depthwise():
            return _core.depthwise_conv2d_forward, _core.depthwise_conv2d_backward
        return _core.conv2d_forward, _core.conv2d_backward

    @property
    def _batched_rank(self) -> int:
        return self._nd + 2

    def _hw(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """(H, W) of a logical (channels-first) input shape; a 1-d layer has H = 1."""
        return (1, shape[2]) if self._nd == 1 else (shape[2], shape[3])

    def _padded(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """((ph0, ph1), (pw0, pw1)) of the 2-d kernel."""
        return ((0, 0), self._pads[0]) if self._nd == 1 else (self._pads[0], self._pads[1])

    def _geometry(self, shape: tuple[int, ...]) -> _core.ConvGeometry:
        """The kernels' geometry for a logical input shape (raises naming the shapes); with a
        padding_mode other than 'zeros' it describes the unpadded conv of the padded input."""
        shape = tuple(int(s) for s in shape)
        if shape == self._geom_key and self._geom is not None:
            return self._geom
        nd = self._nd
        if len(shape) != nd + 2:
            raise ValueError(f"expected a {nd + 1}-D (unbatched) or {nd + 2}-D input (N, C, "
                             f"{self._spatial}), got shape {shape}")
        if shape[1] != self.in_channels:
            raise ValueError(f"expected input with {self.in_channels} channels (N, "
                             f"{self.in_channels}, {self._spatial}), got shape {shape}")
        h, w = self._hw(shape)
        (ph0, ph1), (pw0, pw1) = self._padded()
        if self.padding_mode != "zeros":
            for size, pads, axis in ((h, (ph0, ph1), "H"), (w, (pw0, pw1), "W")):
                if self.padding_mode == "reflect" and max(pads) >= size:
                    raise ValueError(f"padding_mode='reflect' needs padding < the input size, got "
                                     f"padding {pads} for {axis}={size} (input shape {shape})")
                if self.padding_mode == "circular" and max(pads) > size:
                    raise ValueError(f"padding_mode='circular' needs padding <= the input size, "
                                     f"got padding {pads} for {axis}={size} (input shape {shape})")
            h, w = h + ph0 + ph1, w + pw0 + pw1
            ph0 = ph1 = pw0 = pw1 = 0
        kh, kw = (1, *self.kernel_size) if nd == 1 else self.kernel_size
        sh, sw = (1, *self.stride) if nd == 1 else self.stride
        dh, dw = (1, *self.dilation) if nd == 1 else self.dilation
        try:
            geom = _core.ConvGeometry(n=shape[0], h=h, w=w, c_in=self.in_channels,
                                      c_out=self.out_channels, kh=kh, kw=kw, sh=sh, sw=sw,
                                      dh=dh, dw=dw, ph0=ph0, ph1=ph1, pw0=pw0, pw1=pw1,
                                      groups=self.groups)
        except ValueError as e:
            msg = str(e).removeprefix("ConvGeometry: ")
            raise ValueError(f"input of shape {shape} is too small for kernel_size="
                             f"{self.kernel_size}, dilation={self.dilation}, padding="
                             f"{self.padding!r}: {msg}") from None
        self._geom_key, self._geom = shape, geom
        return geom

    def _out_first(self, geom: _core.ConvGeometry) -> tuple[int, ...]:
        if self._nd == 1:
            return (geom.n, geom.c_out, geom.ow)
        return (geom.n, geom.c_out, geom.oh, geom.ow)

    def _in_last(self, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        """The 4-d channels-last (n, h, w, c) the kernels see for a logical input shape."""
        h, w = self._hw(shape)
        return (shape[0], h, w, shape[1])

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return self._out_first(self._geometry(tuple(shape)))

    # -- forward / backward --------------------------------------------------------------
    def _weight4(self, a: np.ndarray) -> np.ndarray:
        return a.reshape(self.out_channels, -1, 1, self.kernel_size[0]) if self._nd == 1 else a

    def _pad_input(self, x4: np.ndarray, geom: _core.ConvGeometry) -> np.ndarray:
        """x4 (n, h, w, c) padded by padding_mode into the work buffer "x_pad"."""
        xp = self._buffer("x_pad", (x4.shape[0], geom.h, geom.w, x4.shape[3]))
        return pad_into(x4, xp, self._padded(), self.padding_mode)

    def forward(self, x: np.ndarray, *, layout_in: str = FIRST, layout_out: str = FIRST,
                epilogue: str = "none") -> np.ndarray:
        for arg, v in (("layout_in", layout_in), ("layout_out", layout_out)):
            if v not in LAYOUTS:
                raise ValueError(f"{arg} must be one of {LAYOUTS}, got {v!r}")
        if not isinstance(x, np.ndarray):
            raise TypeError(f"input must be a numpy.ndarray, got {type(x).__name__}")
        if x.dtype != np.float32:
            raise TypeError(f"input must be float32, got {x.dtype} array of shape {x.shape}")
        if x.ndim != self._nd + 2:
            raise ValueError(f"expected a {self._nd + 1}-D (unbatched) or {self._nd + 2}-D input "
                             f"(N, C, {self._spatial}), got "
                             f"shape {x.shape}" + (" (channels-last)" if layout_in == LAST else ""))
        shape = x.shape if layout_in == FIRST else first_shape(x.shape)
        geom = self._geometry(shape)
        if epilogue not in ("none", "relu"):
            raise ValueError(f"epilogue must be 'none' or 'relu', got {epilogue!r}")
        in_last = self._in_last(shape)
        if layout_in == LAST and x.flags.c_contiguous:
            x4 = x.reshape(in_last)
        else:  # channels-first (or a strided channels-last view): the kernel's own copy
            x4 = self._buffer("x_last", in_last)
            if layout_in == FIRST:
                to_last(x, x4.reshape(last_shape(shape)))
            else:
                np.copyto(x4.reshape(x.shape), x)
        xk = x4 if self.padding_mode == "zeros" else self._pad_input(x4, geom)
        out_first = self._out_first(geom)
        out4 = (geom.n, geom.oh, geom.ow, geom.c_out)
        y: np.ndarray | None
        if layout_out == LAST:
            y = work_like(self, "out", last_shape(out_first), x)
            assert y is not None
            y4 = y.reshape(out4)
        else:
            y4 = self._buffer("out_last", out4)
        b = self.bias
        self._kernels()[0](xk, self._weight4(self.weight.data), None if b is None else b.data,
                             geom, activation=epilogue, out=y4)
        if layout_out == FIRST:
            y = work_like(self, "out", out_first, x)
            assert y is not None
            to_first(y4.reshape(last_shape(out_first)), y)
        self._saved = (x, xk, shape, layout_in, layout_out)
        assert y is not None
        return y

    def _backward(self, grad_output: np.ndarray, *, input_grad: bool = True,
                  donate_input: bool = False) -> np.ndarray | None:
        assert self._saved is not None
        x, xk, shape, layout_in, layout_out = self._saved
        geom = self._geometry(shape)
        out_first = self._out_first(geom)
        want = out_first if layout_out == FIRST else last_shape(out_first)
        if (not isinstance(grad_output, np.ndarray) or grad_output.dtype != np.float32
                or grad_output.shape != want):
            got = getattr(grad_output, "shape", type(grad_output).__name__)
            dt = getattr(grad_output, "dtype", None)
            raise ValueError(f"grad_output must be a float32 array of the output's shape {want}"
                             f"{' (channels-last)' if layout_out == LAST else ''}, got {got}"
                             f"{f' {dt}' if dt is not None and dt != np.float32 else ''}")
        out4 = (geom.n, geom.oh, geom.ow, geom.c_out)
        if layout_out == LAST and grad_output.flags.c_contiguous:
            g4 = grad_output.reshape(out4)
        else:  # into the forward's channels-last output buffer, dead since the forward
            g4 = self._buffer("out_last", out4)
            if layout_out == FIRST:
                to_last(grad_output, g4.reshape(last_shape(out_first)))
            else:
                np.copyto(g4, grad_output.reshape(out4))
        in_last = self._in_last(shape)
        # Where the kernel writes dL/dx (channels-last, of the kernel's input shape): over its
        # own input copy when it has one (dead once dL/dw has read it), else the final array.
        final: np.ndarray | None = None  # what is returned
        dk: np.ndarray | None = None
        if input_grad:
            in_place = self.grad_into_input  # the kernel may write dL/dx over its input
            final = grad_input_out(self, x, grad_output, True, donate_input and in_place)
            assert final is not None
            own_copy = self.padding_mode != "zeros" or layout_in == FIRST
            if not own_copy:
                dk = final.reshape(in_last)
            else:
                dk = xk if in_place else self._buffer("dx_last", xk.shape)
        w, b = self.weight, self.bias
        self._kernels()[1](
            g4, xk, self._weight4(w.data), geom, self._weight4(w.grad_buffer),
            None if b is None else b.grad_buffer, accumulate=w.grad_fresh,
            accumulate_bias=None if b is None else b.grad_fresh,
            compute_grad_input=input_grad, grad_input=dk)
        w.mark_grad_fresh()
        if b is not None:
            b.mark_grad_fresh()
        if not input_grad:
            return None
        assert dk is not None and final is not None
        if self.padding_mode != "zeros":
            into = (self._buffer("x_last", in_last) if layout_in == FIRST
                    else final.reshape(in_last))
            fold_into(dk, into, self._padded(), self.padding_mode)
            dk = into
        if layout_in == FIRST:
            to_first(dk.reshape(last_shape(shape)), final)
        return final

    # -- accounting ----------------------------------------------------------------------
    def memory(self, shape: tuple[int, ...], layout_in: str = FIRST,
               layout_out: str = FIRST) -> tuple[int, int]:
        """(bytes the forward keeps, bytes the backward adds) at input `shape`, for the
        layouts it runs with (standalone: channels-first in and out): the output, the
        channels-last copies of input and output (each also the backward's channels-last
        dL/dx and dL/dy), the padded input of a non-zero padding_mode; the backward's dL/dx."""
        geom = self._geometry(tuple(shape))
        n_in, n_out = int(np.prod(shape)), int(np.prod(self._out_first(geom)))
        keep = n_out
        if layout_in == FIRST:
            keep += n_in
        if layout_out == FIRST:
            keep += n_out
        work = n_in  # dL/dx
        if self.padding_mode != "zeros":
            keep += geom.n * geom.h * geom.w * geom.c_in
        if not self.grad_into_input and (self.padding_mode != "zeros" or layout_in == FIRST):
            work += geom.n * geom.h * geom.w * geom.c_in  # its channels-last dL/dx
        return 4 * keep, 4 * work

    def thread_scratch(self, shape: tuple[int, ...], input_grad: bool = True) -> GemmScratch | None:
        # the GEMMs' packing buffers and the driver workspace, as the C++ sizes them
        geom = self._geometry(tuple(shape))
        if self._is_depthwise():
            return _core.depthwise_conv2d_scratch(geom, input_grad=input_grad)
        return _core.conv2d_scratch(geom, input_grad=input_grad)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0,) * self._nd:
            s += f", padding={self.padding!r}"
        if self.dilation != (1,) * self._nd:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class Conv2d(AcceptsUnbatched, _ConvNd):
    """2-d convolution over (N, C, H, W) (or unbatched (C, H, W)) as torch.nn.Conv2d; weight
    (out, in/groups, kh, kw)."""

    _nd = 2
    _spatial = "H, W"


class Conv1d(AcceptsUnbatched, _ConvNd):
    """1-d convolution over (N, C, L) (or unbatched (C, L)) as torch.nn.Conv1d; weight (out,
    in/groups, k)."""

    _nd = 1
    _spatial = "L"
