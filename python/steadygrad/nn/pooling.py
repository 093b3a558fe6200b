"""Pooling layers with torch's names, signatures and numerics: MaxPool1d/2d (padding is -inf,
the gradient goes to the first maximum of the window in row-major order, a NaN in the window is
its maximum), AvgPool1d/2d (torch's divisors, also for ceil_mode windows running past the padded
edge), AdaptiveAvgPool1d/2d (torch's windows floor(i*in/out) .. ceil((i+1)*in/out), any sizes).

They compute on channels-last arrays (nn/_layout.py): `forward(x, *, layout_in=FIRST,
layout_out=FIRST)`, the backward receiving dL/dy in layout_out and returning dL/dx in
layout_in; used on their own they convert into work buffers. A 1-d layer is the 2-d kernel with
h = 1. Unbatched input ((C, L), (C, H, W)) runs as a batch of one, as in torch. MaxPool keeps int32 argmax indices of the output's size (not its input, not a mask);
AvgPool keeps nothing but the shapes. No parameters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from steadygrad import _core
from steadygrad.nn._layout import FIRST, LAST, LAYOUTS, last_shape, to_first, to_last
from steadygrad.nn._unbatched import AcceptsUnbatched
from steadygrad.nn._util import grad_input_out, int_arg, work_like
from steadygrad.nn.module import Module
from steadygrad.nn.plan import KernelLayer

if TYPE_CHECKING:
    from steadygrad._core import GemmScratch

_Shape = tuple[int, ...]
_Size = int | tuple[int, ...]


def _ints(owner: str, name: str, value: object, dims: int, lo: int) -> tuple[int, ...]:
    """value as `dims` ints >= lo (an int is repeated), else an error naming the argument."""
    if isinstance(value, (tuple, list)):
        if len(value) != dims:
            raise ValueError(f"{owner}: {name} must be an int or a tuple of {dims} ints, got "
                             f"{value!r}")
        vals = tuple(int_arg(owner, name, v) for v in value)
    else:
        vals = (int_arg(owner, name, value),) * dims
    if any(v < lo for v in vals):
        raise ValueError(f"{owner}: {name} must be >= {lo}, got {value!r}")
    return vals


def _float32_array(what: str, a: object) -> np.ndarray:
    if not isinstance(a, np.ndarray) or a.dtype != np.float32:
        got = f"{a.dtype} array" if isinstance(a, np.ndarray) else type(a).__name__
        raise TypeError(f"{what} must be a float32 numpy.ndarray, got {got}")
    return a


class _Pool(KernelLayer, Module):
    """What every pooling layer shares: the layouts, the conversions, the cache for backward.
    A subclass says how many spatial dims it pools (`_dims`), the output's spatial size
    (`_out_spatial`) and runs its kernels on (n, h, w, c) arrays (`_kernel_forward`,
    `_kernel_backward`)."""

    # For a Sequential's plan (nn.plan): a KernelLayer (its backward never reads the input at
    # all; with no parameters to fill, leaving dL/dx out leaves nothing to do), channels-last
    # inside a run of such layers.
    channels_last = True
    _transient = ("_saved",)  # the pending backward's input (Module.__getstate__)
    _dims = 2

    def __init__(self) -> None:
        super().__init__()
        # (input, logical input shape, logical output shape, layout_in, layout_out)
        self._saved: tuple[np.ndarray, _Shape, _Shape, str, str] | None = None

    # -- shapes ------------------------------------------------------------------------
    def _check_rank(self, shape: _Shape) -> None:
        shape = tuple(shape)
        want = 2 + self._dims
        names = "(N, C, L)" if self._dims == 1 else "(N, C, H, W)"
        if len(shape) != want:
            raise ValueError(f"expected {want - 1}-d (unbatched) or {want}-d input {names}, got "
                             f"input of shape {shape}")
        if any(s < 1 for s in shape[1:]):
            raise ValueError(f"expected input {names} with C and the spatial sizes >= 1, got "
                             f"input of shape {shape}")

    def _out_spatial(self, shape: _Shape) -> tuple[int, int]:
        """(oh, ow) of the kernel's view for a checked logical input shape."""
        raise NotImplementedError

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        self._check_rank(shape)
        oh, ow = self._out_spatial(tuple(shape))
        return (shape[0], shape[1], ow) if self._dims == 1 else (shape[0], shape[1], oh, ow)

    @property
    def _batched_rank(self) -> int:
        return self._dims + 2

    def _hw(self, shape: _Shape) -> tuple[int, int]:
        return (1, shape[2]) if self._dims == 1 else (shape[2], shape[3])

    def _kernel_forward(self, x4: np.ndarray, y4: np.ndarray, shape: _Shape) -> None:
        raise NotImplementedError

    def _kernel_backward(self, g4: np.ndarray, dx4: np.ndarray, shape: _Shape) -> None:
        raise NotImplementedError

    # -- forward / backward ------------------------------------------------------------
    def forward(self, x: np.ndarray, *, layout_in: str = FIRST,
                layout_out: str = FIRST) -> np.ndarray:
        for name, lay in (("layout_in", layout_in), ("layout_out", layout_out)):
            if lay not in LAYOUTS:
                raise ValueError(f"{name} must be one of {LAYOUTS}, got {lay!r}")
        x = _float32_array("input", x)
        shape = tuple(x.shape)
        if layout_in == LAST and len(shape) >= 2:
            shape = (shape[0], shape[-1], *shape[1:-1])
        out_shape = self.output_shape(shape)
        n, c = shape[0], shape[1]
        h, w = self._hw(shape)
        oh, ow = self._hw(out_shape)
        x_last = x if layout_in == LAST else to_last(
            x, work_like(self, "x_last", last_shape(shape), x))
        key = "out" if layout_out == LAST else "y_last"
        y_last = work_like(self, key, last_shape(out_shape), x)
        assert y_last is not None
        self._kernel_forward(x_last.reshape(n, h, w, c), y_last.reshape(n, oh, ow, c), shape)
        y = y_last if layout_out == LAST else to_first(
            y_last, work_like(self, "out", out_shape, x))
        self._saved = (x, shape, out_shape, layout_in, layout_out)
        return y

    def _backward(self, grad_output: np.ndarray, *, input_grad: bool = True,
                  donate_input: bool = False) -> np.ndarray | None:
        assert self._saved is not None
        x, shape, out_shape, layout_in, layout_out = self._saved
        want = out_shape if layout_out == FIRST else last_shape(out_shape)
        g = _float32_array("grad_output", grad_output)
        if g.shape != want:
            raise ValueError(f"grad_output must have the output's shape {want} ({layout_out}), "
                             f"got {g.shape}")
        if not input_grad:
            return None
        n, c = shape[0], shape[1]
        h, w = self._hw(shape)
        oh, ow = self._hw(out_shape)
        g_last = g if layout_out == LAST else to_last(
            g, work_like(self, "g_last", last_shape(out_shape), g))
        if layout_in == LAST:
            dx_last = grad_input_out(self, x, g, True, donate_input)
        else:
            dx_last = work_like(self, "dx_last", last_shape(shape), g)
        assert dx_last is not None
        self._kernel_backward(g_last.reshape(n, oh, ow, c), dx_last.reshape(n, h, w, c), shape)
        if layout_in == LAST:
            return dx_last
        dx = grad_input_out(self, x, g, True, donate_input)
        assert dx is not None
        return to_first(dx_last, dx)


class _WindowPool(_Pool):
    """Max and average pooling: a (kh, kw) window with stride, padding (and dilation)."""

    _name = ""

    def __init__(self, kernel_size: _Size, stride: _Size | None, padding: _Size,
                 dilation: _Size, ceil_mode: bool) -> None:
        super().__init__()
        name, d = self._name, self._dims
        self._k = _ints(name, "kernel_size", kernel_size, d, 1)
        self._s = self._k if stride is None else _ints(name, "stride", stride, d, 1)
        self._p = _ints(name, "padding", padding, d, 0)
        self._d = _ints(name, "dilation", dilation, d, 1)
        for k, p in zip(self._k, self._p, strict=True):
            if p > k // 2:  # torch's rule (the dilated window's half is looser)
                raise ValueError(f"{name}: pad should be smaller than or equal to half of "
                                 f"kernel size, but got pad={p} and kernel_size={k}")
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding
        self.ceil_mode = bool(ceil_mode)
        self._geoms: dict[_Shape, _core.ConvGeometry] = {}

    def _geometry(self, shape: _Shape) -> _core.ConvGeometry:
        g = self._geoms.get(shape)
        if g is not None:
            return g
        if self._dims == 1:
            kh = sh = dh = 1
            ph = 0
            (kw,), (sw,), (pw,), (dw,) = self._k, self._s, self._p, self._d
        else:
            (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self._k, self._s, self._p, self._d
        h, w = self._hw(shape)
        try:
            g = _core.ConvGeometry(n=shape[0], h=h, w=w, c_in=shape[1], c_out=shape[1], kh=kh,
                                   kw=kw, sh=sh, sw=sw, dh=dh, dw=dw, ph0=ph, ph1=ph, pw0=pw,
                                   pw1=pw, ceil_mode=self.ceil_mode)
        except ValueError:
            dil = f", dilation={self.dilation}" if hasattr(self, "dilation") else ""
            raise ValueError(
                f"input of shape {shape} is too small: the window (kernel_size="
                f"{self.kernel_size}{dil}) is larger than the padded input (padding="
                f"{self.padding}), so the output would be empty") from None
        if len(self._geoms) > 16:
            self._geoms.clear()
        self._geoms[shape] = g
        return g

    def _out_spatial(self, shape: _Shape) -> tuple[int, int]:
        g = self._geometry(shape)
        return g.oh, g.ow

    def thread_scratch(self, shape: tuple[int, ...], input_grad: bool = True) -> GemmScratch:
        return _core.pool2d_scratch(self._geometry(tuple(shape)))  # the window tables


class _MaxPool(_WindowPool):
    def __init__(self, kernel_size: _Size, stride: _Size | None = None, padding: _Size = 0,
                 dilation: _Size = 1, return_indices: bool = False,
                 ceil_mode: bool = False) -> None:
        super().__init__(kernel_size, stride, padding, dilation, ceil_mode)
        self.dilation = dilation
        if return_indices:
            raise ValueError(f"{self._name}: return_indices=True is not supported (the argmax "
                             "indices are kept internally for the backward)")
        self.return_indices = False

    def _indices(self, shape: _Shape) -> np.ndarray:
        # int32 argmax indices in a float32 work buffer's storage (same size; eval forwards
        # during a pending backward get their own, as every work buffer does)
        return self._buffer("indices", last_shape(self.output_shape(shape))).view(np.int32)

    def _kernel_forward(self, x4: np.ndarray, y4: np.ndarray, shape: _Shape) -> None:
        idx = self._indices(shape).reshape(y4.shape)
        _core.max_pool2d_forward(x4, self._geometry(shape), out=y4, indices=idx)

    def _kernel_backward(self, g4: np.ndarray, dx4: np.ndarray, shape: _Shape) -> None:
        idx = self._indices(shape).reshape(g4.shape)
        _core.max_pool2d_backward(g4, idx, self._geometry(shape), grad_input=dx4)

    def memory(self, shape: tuple[int, ...]) -> tuple[int, int]:
        out = int(np.prod(self.output_shape(shape)))
        return 4 * out + 4 * out, 4 * int(np.prod(shape))  # output + int32 indices; dL/dx

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class MaxPool2d(AcceptsUnbatched, _MaxPool):
    """torch.nn.MaxPool2d on (N, C, H, W) or unbatched (C, H, W) (return_indices=True is not
    supported)."""

    _name = "MaxPool2d"


class MaxPool1d(AcceptsUnbatched, _MaxPool):
    """torch.nn.MaxPool1d on (N, C, L) or unbatched (C, L) (return_indices=True is not
    supported)."""

    _name = "MaxPool1d"
    _dims = 1


class _AvgPool(_WindowPool):
    def __init__(self, kernel_size: _Size, stride: _Size | None, padding: _Size,
                 ceil_mode: bool, count_include_pad: bool,
                 divisor_override: int | None) -> None:
        super().__init__(kernel_size, stride, padding, 1, ceil_mode)
        if divisor_override is not None:
            divisor_override = int_arg(self._name, "divisor_override", divisor_override)
            if divisor_override == 0:
                raise ValueError(f"{self._name}: divisor must be not zero, got "
                                 "divisor_override=0")
        self.count_include_pad = bool(count_include_pad)
        self.divisor_override = divisor_override

    def _kernel_forward(self, x4: np.ndarray, y4: np.ndarray, shape: _Shape) -> None:
        _core.avg_pool2d_forward(x4, self._geometry(shape),
                                 count_include_pad=self.count_include_pad,
                                 divisor_override=self.divisor_override, out=y4)

    def _kernel_backward(self, g4: np.ndarray, dx4: np.ndarray, shape: _Shape) -> None:
        _core.avg_pool2d_backward(g4, self._geometry(shape),
                                  count_include_pad=self.count_include_pad,
                                  divisor_override=self.divisor_override, grad_input=dx4)

    def memory(self, shape: tuple[int, ...]) -> tuple[int, int]:
        return 4 * int(np.prod(self.output_shape(shape))), 4 * int(np.prod(shape))

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(AcceptsUnbatched, _AvgPool):
    """torch.nn.AvgPool2d on (N, C, H, W) (or unbatched (C, H, W))."""

    _name = "AvgPool2d"

    def __init__(self, kernel_size: _Size, stride: _Size | None = None, padding: _Size = 0,
                 ceil_mode: bool = False, count_include_pad: bool = True,
                 divisor_override: int | None = None) -> None:
        super().__init__(kernel_size, stride, padding, ceil_mode, count_include_pad,
                         divisor_override)


class AvgPool1d(AcceptsUnbatched, _AvgPool):
    """torch.nn.AvgPool1d on (N, C, L) (or unbatched (C, L))."""

    _name = "AvgPool1d"
    _dims = 1

    def __init__(self, kernel_size: _Size, stride: _Size | None = None, padding: _Size = 0,
                 ceil_mode: bool = False, count_include_pad: bool = True) -> None:
        super().__init__(kernel_size, stride, padding, ceil_mode, count_include_pad, None)
        # torch's AvgPool1d keeps its sizes as 1-tuples
        self.kernel_size, self.stride, self.padding = self._k, self._s, self._p


class _AdaptiveAvgPool(_Pool):
    _name = ""

    def __init__(self, output_size: Any) -> None:
        super().__init__()
        d, name = self._dims, self._name
        sizes = tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size,) * d
        if len(sizes) != d:
            raise ValueError(f"{name}: output_size must be an int{'' if d == 1 else ', None'} or "
                             f"a tuple of {d}, got {output_size!r}")
        checked: list[int | None] = []
        for s in sizes:
            if s is None:
                checked.append(None)
                continue
            v = int_arg(name, "output_size", s)
            if v < 1:
                raise ValueError(f"{name}: output_size must be positive, got {output_size!r}")
            checked.append(v)
        self.output_size = output_size
        self._sizes = tuple(checked)

    def _out_spatial(self, shape: _Shape) -> tuple[int, int]:
        spatial = shape[2:]
        out = tuple(s if o is None else o for o, s in zip(self._sizes, spatial, strict=True))
        return (1, out[0]) if self._dims == 1 else (out[0], out[1])

    def thread_scratch(self, shape: tuple[int, ...], input_grad: bool = True) -> GemmScratch:
        h, w = self._hw(tuple(shape))  # the window tables
        return _core.adaptive_avg_pool2d_scratch((h, w), self._out_spatial(tuple(shape)))

    def _kernel_forward(self, x4: np.ndarray, y4: np.ndarray, shape: _Shape) -> None:
        _core.adaptive_avg_pool2d_forward(x4, (y4.shape[1], y4.shape[2]), out=y4)

    def _kernel_backward(self, g4: np.ndarray, dx4: np.ndarray, shape: _Shape) -> None:
        _core.adaptive_avg_pool2d_backward(g4, (dx4.shape[1], dx4.shape[2]), grad_input=dx4)

    def memory(self, shape: tuple[int, ...]) -> tuple[int, int]:
        return 4 * int(np.prod(self.output_shape(shape))), 4 * int(np.prod(shape))

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveAvgPool2d(AcceptsUnbatched, _AdaptiveAvgPool):
    """torch.nn.AdaptiveAvgPool2d on (N, C, H, W) (or unbatched (C, H, W)); output_size an int
    or (oh, ow), None keeping that input size."""

    _name = "AdaptiveAvgPool2d"


class AdaptiveAvgPool1d(AcceptsUnbatched, _AdaptiveAvgPool):
    """torch.nn.AdaptiveAvgPool1d on (N, C, L) (or unbatched (C, L))."""

    _name = "AdaptiveAvgPool1d"
    _dims = 1
