"""First-order float32 error bounds for layer stacks against a float64 torch twin (used by
tests/test_fuzz_nn_torch.py and tests/test_cnn_stack.py). Alongside torch's float64 values each
layer runs an absolute-value computation (`Bound`) that propagates, element by element, a bound
on the float32 error: the incoming error through the layer's |Jacobian| plus the layer's own
rounding (unit roundoff U times the magnitudes summed, e.g. gamma_k |x| |W|^T for a Linear,
the same with |w| through a convolution). A kernel that is wrong by more than a few roundings
of the magnitudes involved fails, wherever the cancellation is. `twin_of` builds the torch
twin and the bound tree of a steadygrad model; `adam_bound` / `sgd_bound` follow an optimizer
step's arithmetic."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from steadygrad import nn

U = 2.0**-24  # float32 unit roundoff
EPS32 = 2 * U
SLACK = 2.0  # margin for the second-order terms the bounds leave out


ETA = 2.0**-126  # float32's smallest normal: the absolute error of a result that underflows


def gamma(n: int) -> float:
    """gamma_n = n U / (1 - n U): the relative error bound of a sum of n float32 terms."""
    return n * U / (1 - n * U)


def rsum(magnitude: Any, n: int) -> Any:
    """The error of a sum of n float32 terms whose absolute values sum to `magnitude`."""
    return gamma(n) * magnitude + n * ETA


def rnd(magnitude: Any, n: float = 1) -> Any:
    """The error of n float32 roundings of results of this magnitude: fl(a op b) =
    (a op b)(1 + d) + e with |d| <= U and |e| <= ETA (gradual underflow, or a flush to zero)."""
    return n * (U * magnitude + ETA)



# --- twins: the steadygrad module, its float64 torch module and the bound node ---------------
class TorchGELU(torch.nn.Module):
    """GELU in float64 without cancellation: torch's own kernel computes 1 + erf(x / sqrt 2)
    (or 1 + tanh), which loses every digit for x << 0 (it returns -0.0 at x = -12.7, where
    GELU is -7e-36), so it would be a worse reference than the float32 kernel under test.
    The erfc / sigmoid forms are the same functions, and autograd differentiates them."""

    def __init__(self, approximate: str) -> None:
        super().__init__()
        self.approximate = approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.approximate == "none":
            return 0.5 * x * torch.special.erfc(-x / math.sqrt(2.0))
        inner = math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)
        return x * torch.sigmoid(2 * inner)  # 0.5 (1 + tanh(z)) = sigmoid(2 z)


class TorchResidual(torch.nn.Module):
    """Holds nn.Residual's branches under its state_dict keys (Res computes with them)."""

    def __init__(self, module: torch.nn.Module, shortcut: torch.nn.Module | None = None) -> None:
        super().__init__()
        self.module = module
        self.shortcut = shortcut


def as_np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


@dataclass
class Bound:
    """A node of the absolute-value computation, mirroring one layer. forward(x) runs the torch
    layer (recording its input and output); fwd(ex) maps a bound on |x_sg - x| to one on the
    output; bwd(edy) maps a bound on the incoming gradient to (|dx| magnitude, bound on dx)
    and adds the bounds of this layer's parameter gradients into `grads` (by parameter)."""

    sg_mod: nn.Module
    t_mod: torch.nn.Module
    grads: dict[int, list[np.ndarray]] = field(default_factory=dict)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.x_t, self.x = x, as_np(x)
        y = self._torch(x)
        if y is x:  # identity-like layers: give the output a gradient of its own
            y = x.view_as(x)
        y.retain_grad()
        self.y_t, self.y = y, as_np(y)
        return y

    def _torch(self, x: torch.Tensor) -> torch.Tensor:
        return self.t_mod(x)

    @property
    def dy(self) -> np.ndarray:
        g = self.y_t.grad
        return np.zeros_like(self.y) if g is None else as_np(g)

    def fwd(self, ex: np.ndarray) -> np.ndarray:
        return ex.reshape(self.y.shape)  # exact layers (Identity, Flatten, Dropout in eval or p=0)

    def bwd(self, edy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.abs(self.dy).reshape(self.x.shape), edy.reshape(self.x.shape)

    def add_grad(self, p: nn.Parameter, bound: np.ndarray, magnitude: np.ndarray) -> None:
        # A second backward accumulates: G = G1 + G2 adds one rounding of |G1| + |G2|.
        self.grads.setdefault(id(p), []).append(bound + rnd(magnitude, 2))


class Seq(Bound):
    def __init__(self, sg_mod: nn.Module, t_mod: torch.nn.Module, children: list[Bound]) -> None:
        super().__init__(sg_mod, t_mod)
        self.children = children

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c in self.children:
            x = c.forward(x)
        return x

    def fwd(self, ex: np.ndarray) -> np.ndarray:
        for c in self.children:
            ex = c.fwd(ex)
        return ex

    def bwd(self, edy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mag = np.zeros(0)
        for c in reversed(self.children):
            mag, edy = c.bwd(edy)
        return mag, edy


class Res(Bound):
    """y = shortcut(x) + inner(x) (the identity shortcut when None): one rounding of the sum,
    in the forward and in dL/dx."""

    def __init__(self, sg_mod: nn.Module, t_mod: torch.nn.Module, inner: Bound,
                 shortcut: Bound | None = None) -> None:
        super().__init__(sg_mod, t_mod)
        self.inner, self.shortcut = inner, shortcut

    def _torch(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.shortcut is None else self.shortcut.forward(x)
        return skip + self.inner.forward(x)

    def fwd(self, ex: np.ndarray) -> np.ndarray:
        skip = ex if self.shortcut is None else self.shortcut.fwd(ex)
        return skip + self.inner.fwd(ex) + rnd(np.abs(self.y))

    def bwd(self, edy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mag, edx = self.inner.bwd(edy)
        if self.shortcut is None:
            mag_s, edx_s = np.abs(self.dy), edy
        else:
            mag_s, edx_s = self.shortcut.bwd(edy)
        mag = mag_s + mag
        return mag, edx_s + edx + rnd(mag)


class Lin(Bound):
    def fwd(self, ex: np.ndarray) -> np.ndarray:
        w = np.abs(as_np(self.t_mod.weight))
        b = np.abs(as_np(self.t_mod.bias)) if self.t_mod.bias is not None else 0.0
        k = w.shape[1]
        self.ex = ex
        return ex @ w.T + rsum((np.abs(self.x) + ex) @ w.T + b, k + 1)

    def bwd(self, edy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = np.abs(as_np(self.t_mod.weight))
        dy, ady, ax, ex = self.dy, np.abs(self.dy), np.abs(self.x), self.ex
        n = dy.shape[0]
        big_dy, big_x = ady + edy, ax + ex
        mag_w = big_dy.T @ big_x
        self.add_grad(self.sg_mod.weight, mag_w - ady.T @ ax + rsum(mag_w, n + 1), mag_w)
        if self.sg_mod.bias is not None:
            mag_b = big_dy.sum(0)
            self.add_grad(self.sg_mod.bias, edy.sum(0) + rsum(mag_b, n + 1), mag_b)
        mag = ady @ w
        return mag, edy @ w + rsum(big_dy @ w, w.shape[0] + 1)


class Kink(Bound):
    """ReLU and LeakyReLU: exact forward (one rounding for the slope); where |x| is within
    its error bound the sign, hence the slope the backward applies, may differ from torch's."""

    def __init__(self, sg_mod: nn.Module, t_mod: torch.nn.Module, slope: float) -> None:
        super().__init__(sg_mod, t_mod)
        self.slope = slope

    def fwd(self, ex: np.ndarray) -> np.ndarray:
        self.ex = ex
        # the slope rounded to float32, then the product rounded: 2 U |y| where x < 0
        return max(1.0, abs(self.slope)) * ex + (rnd(np.abs(self.y), 2) if self.slope else 0.0)

    def bwd(self, edy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = self.slope
        d = np.where(self.x > 0, 1.0, abs(s))
        ambiguous = np.abs(self.x) <= self.ex
        ady = np.abs(self.dy)
        mag = d * ady
        return mag, d * edy + np.where(ambiguous, abs(1 - s) * (ady + edy), 0.0) + rnd(mag, 2)


_SQRT_2PI = math.sqrt(2 * math.pi)


class Smooth(Bound):
    """Tanh, Sigmoid, GELU, SiLU, Softplus: |f(x + e) - f(x)| <= (|f'(x)| + e) e (|f''| <= 1
    for all of them: SiLU's is at most 1/2, Softplus's (beta 1) 1/4);
    own rounding from tests/test_activations.py's accuracy contract (8 eps relative, plus the
    GELU terms justified there)."""

    def __init__(self, sg_mod: nn.Module, t_mod: torch.nn.Module, kind: str) -> None:
        super().__init__(sg_mod, t_mod)
        self.kind = kind

    def _deriv(self) -> np.ndarray:
        x, y = self.x, self.y
        if self.kind == "tanh":
            return 1 - y * y
        if self.kind == "sigmoid":
            return y * (1 - y)
        if self.kind in ("silu", "softplus"):
            e = np.exp(-np.abs(x))
            sig = np.where(x >= 0, 1 / (1 + e), e / (1 + e))
            if self.kind == "softplus":
                return np.where(x > 20, 1.0, sig)
            return sig * (1 + x * (1 - sig))
        if self.kind == "gelu":
            phi = np.exp(-0.5 * x * x) / _SQRT_2PI
            return np.where(x != 0, y / np.where(x != 0, x, 1), 0.5) + x * phi
        c = math.sqrt(2 / math.pi)  # gelu tanh
        t = np.tanh(c * (x + 0.044715 * x**3))
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x)

    def fwd(self, ex: np.ndarray) -> np.ndarray:
        ax, ay = np.abs(self.x), np.abs(self.y)
        own = 8 * EPS32 * ay + 4 * ETA
        if self.kind == "gelu":
            own = own + 2 * EPS32 * ax * ax * ay
        elif self.kind == "gelu_tanh":
            own = own + 4 * EPS32 * ax
        elif self.kind in ("silu", "softplus"):  # tests/activation_refs.py's terms
            own = own + 4 * EPS32 * ax * ay + 4 * EPS32 * ax
        self.ex, self.ey = ex, (np.abs(self._deriv()) + ex) * ex + own
        return self.ey

    def bwd(self, edy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d, ady, ax, y, ey = np.abs(self._deriv()), np.abs(self.dy), np.abs(self.x), self.y, self.ey
        if self.kind == "tanh":  # f' from the saved output: 1 - y^2
            dd = (2 * np.abs(y) + ey) * ey + 4 * U
        elif self.kind == "sigmoid":  # y (1 - y)
            dd = (np.abs(1 - 2 * y) + ey) * ey + 4 * U
        elif self.kind == "gelu":
            dd = self.ex + 4 * EPS32 + 2 * EPS32 * ax * ax * d
        elif self.kind in ("silu", "softplus"):
            dd = self.ex + 4 * EPS32 * (1 + ax)
        else:
            dd = self.ex + 4 * EPS32 * (1 + ax**3)
        mag = d * ady
        return mag, (d + dd) * edy + ady * (dd + 8 * EPS32 * d) + rnd(mag, 4)


def rows(a: np.ndarray) -> np.ndarray:
    """(N, C, *S) as the (N * prod(S), C) rows of its channels-last view; (N, C) as it is."""
    return a if a.ndim == 2 else np.moveaxis(a, 1, -1).reshape(-1, a.shape[1])


def unrows(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The inverse of rows for a channels-first `shape`."""
    if len(shape) == 2:
        return a
    return np.moveaxis(a.reshape(shape[0], *shape[2:], shape[1]), -1, 1)


class BN(Bound):
    """BatchNorm1d / BatchNorm2d, on the rows of the channels-last view (each channel over N
    and the spatial positions, as the kernel sees it). In batch-statistics mode, with s = sqrt(var + eps) and xhat = (x - mean)/s,
    the input error moves xhat by (e + mean(e))/s + |xhat| mean(|xhat| e)/s. The kernel's own
    rounding (cpp/layers/batchnorm_impl.h, colreduce_impl.h): column sums in float over blocks
    of ROW_BLOCK rows (gamma_block times the sum of magnitudes), the mean and x - mean rounded,
    a two-pass variance (3 U plus the block sum, relative), invstd and gamma * invstd rounded,
    one fma. Running statistics carry their bounds from call to call."""

    ROW_BLOCK = 128  # colreduce_impl.h's kRowBlock

    def __init__(self, sg_mod: nn.BatchNorm1d, t_mod: torch.nn.BatchNorm1d) -> None:
        super().__init__(sg_mod, t_mod)
        c = sg_mod.num_features
        self.erm, self.erv = np.zeros(c), np.zeros(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.t_mod
        self.batch_stats = t.training or not t.track_running_stats
        if t.track_running_stats:
            self.rm, self.rv = as_np(t.running_mean).copy(), as_np(t.running_var).copy()
            nbt = int(t.num_batches_tracked)
            self.momentum = t.momentum if t.momentum is not None else 1.0 / (nbt + 1)
        y = super().forward(x)
        self.shape = tuple(self.x.shape)
        self.x, self.y = rows(self.x), rows(self.y)
        return y

    @property
    def dy(self) -> np.ndarray:
        return rows(super().dy.reshape(self.shape))

    def fwd(self, ex: np.ndarray) -> np.ndarray:
        return unrows(self._fwd_rows(rows(ex)), self.shape)

    def bwd(self, edy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mag, edx = self._bwd_rows(rows(edy.reshape(self.shape)))
        return unrows(mag, self.shape), unrows(edx, self.shape)

    def _gamma(self) -> np.ndarray:
        w = self.t_mod.weight
        return np.ones(self.x.shape[1]) if w is None else as_np(w)

    def _block(self) -> int:
        return min(self.x.shape[0], self.ROW_BLOCK) + 1

    def _fwd_rows(self, ex: np.ndarray) -> np.ndarray:
        x, n, nb = self.x, self.x.shape[0], self._block()
        g = np.abs(self._gamma())
        eps = self.t_mod.eps
        if self.batch_stats:
            mean, var = x.mean(0), x.var(0)
            s = np.sqrt(var + eps)
            xh, axh = (x - mean) / s, np.abs(x - mean) / s
            e_mean = rsum(np.abs(x).mean(0), nb)  # own rounding of the mean (and its float)
            rel_var = 3 * U + gamma(nb) + (e_mean / s) ** 2
            rel_s = (axh * ex).mean(0) / s + rel_var / 2 + 2 * U
            exh = ((ex + ex.mean(0) + e_mean + rnd(np.abs(x - mean))) / s
                   + axh * (axh * ex).mean(0) / s + axh * rel_s)
            if self.t_mod.track_running_stats and self.t_mod.training:
                # (1 - m) r + m v in double, m rounded to float32 (U m |v - r|), then a float
                m = self.momentum
                unbiased = var * n / (n - 1)
                self.erm = ((1 - m) * self.erm + m * (ex.mean(0) + e_mean)
                            + rnd(np.abs(as_np(self.t_mod.running_mean)))
                            + U * m * (np.abs(mean) + np.abs(self.rm)))
                e_unb = (2 / (n - 1)) * (np.abs(x - mean) * ex).sum(0) + unbiased * rel_var
                self.erv = ((1 - m) * self.erv + m * e_unb
                            + rnd(np.abs(as_np(self.t_mod.running_var)))
                            + U * m * (unbiased + self.rv))
        else:
            s = np.sqrt(self.rv + eps)
            xh = (x - self.rm) / s
            rel_s = self.erv / (2 * (self.rv + eps)) + 3 * U
            exh = (ex + self.erm + rnd(np.abs(x - self.rm))) / s + np.abs(xh) * rel_s
        self.s, self.xh, self.exh, self.rel_s = s, xh, exh, rel_s
        return g * exh + rnd(np.abs(self.y)) + rnd(np.abs(g * xh))

    def _bwd_rows(self, edy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dy, ady, xh, axh, exh = self.dy, np.abs(self.dy), self.xh, np.abs(self.xh), self.exh
        nb = self._block()
        k = np.abs(self._gamma()) / self.s
        # sum dy and sum dy * xhat (xhat recomputed from x: one more rounding, two for dy xhat)
        e_sdy, m_sdy = edy.sum(0), (ady + edy).sum(0)
        e_sdyx = (edy * axh + ady * exh).sum(0) + rnd((ady * axh).sum(0), 2)
        m_sdyx = ((ady + edy) * (axh + exh)).sum(0)
        if self.sg_mod.affine:
            self.add_grad(self.sg_mod.weight, e_sdyx + rsum(m_sdyx, nb), m_sdyx)
            self.add_grad(self.sg_mod.bias, e_sdy + rsum(m_sdy, nb), m_sdy)
        if not self.batch_stats:
            mag = k * ady
            return mag, k * edy + mag * self.rel_s + rnd(mag, 2)
        n = dy.shape[0]
        c1, c2 = dy.mean(0), (dy * xh).mean(0)
        a = dy - c1 - xh * c2
        e_c1 = (e_sdy + rsum(m_sdy, nb)) / n
        e_c2 = (e_sdyx + rsum(m_sdyx, nb)) / n + rnd(np.abs(c2), 2)  # float, times invstd
        ea = (edy + e_c1 + axh * e_c2 + exh * np.abs(c2) + rnd(ady + np.abs(c1))
              + rnd(axh * np.abs(c2), 2) + rnd(np.abs(a)))
        mag = k * (ady + np.abs(c1) + axh * np.abs(c2))
        return mag, k * (ea + np.abs(a) * self.rel_s) + rnd(k * np.abs(a), 2)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))


def _as2d(a: torch.Tensor) -> torch.Tensor:
    """A 1-d layer's (N, C, L) as the (N, C, 1, L) the 2-d formulas take."""
    return a.unsqueeze(2) if a.ndim == 3 else a


def _vjp(f: Any, shape: tuple[int, ...], g: np.ndarray) -> np.ndarray:
    """The transpose of the linear map f (torch, float64) applied to g: f's gradient at any
    input of `shape` for the upstream gradient g."""
    a = torch.zeros(shape, dtype=torch.float64, requires_grad=True)
    f(a).backward(_t(g))
    return as_np(a.grad)


class Conv(Bound):
    """Conv1d / Conv2d (zeros padding): y = conv(x, w) + b. A sum of k = c_in/groups * kh * kw
    products plus the bias per output: conv(e, |w|) carried in, gamma_(k+1) conv(|x| + e, |w|)
    + |b| its own. dL/dx sums up to c_out/groups * kh * kw products per input pixel, dL/dw and
    dL/db one per output pixel; each is the same linear map on the magnitudes."""

    def _conv(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        t = self.t_mod
        f = torch.nn.functional.conv1d if x.ndim == 3 else torch.nn.functional.conv2d
        return f(x, w, None, t.stride, t.padding, t.dilation, t.groups)

    def _w(self) -> np.ndarray:
        return np.abs(as_np(self.t_mod.weight))

    def fwd(self, ex: np.ndarray) -> np.ndarray:
        w = _t(self._w())
        b = self.t_mod.bias
        ab = 0.0 if b is None else np.abs(as_np(b)).reshape(1, -1, *(1,) * (ex.ndim - 2))
        k = int(np.prod(self.t_mod.weight.shape[1:]))
        self.ex = ex
        carried = as_np(self._conv(_t(ex), w))
        return carried + rsum(as_np(self._conv(_t(np.abs(self.x) + ex), w)) + ab, k + 1)

    def bwd(self, edy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = _t(self._w())
        ady, ax, ex = np.abs(self.dy), np.abs(self.x), self.ex
        pix = ady.size // ady.shape[1]
        big_dy, big_x = ady + edy, ax + ex
        wshape = tuple(self.t_mod.weight.shape)
        mag_w = _vjp(lambda v: self._conv(_t(big_x), v), wshape, big_dy)
        exact_w = _vjp(lambda v: self._conv(_t(ax), v), wshape, ady)
        self.add_grad(self.sg_mod.weight, mag_w - exact_w + rsum(mag_w, pix + 1), mag_w)
        if self.sg_mod.bias is not None:
            axes = (0, *range(2, edy.ndim))
            mag_b = big_dy.sum(axes)
            self.add_grad(self.sg_mod.bias, edy.sum(axes) + rsum(mag_b, pix + 1), mag_b)
        k_dx = wshape[0] // self.t_mod.groups * int(np.prod(wshape[2:]))
        shape = tuple(self.x.shape)
        mag = _vjp(lambda v: self._conv(v, w), shape, ady)
        carried = _vjp(lambda v: self._conv(v, w), shape, edy)
        return mag, carried + rsum(_vjp(lambda v: self._conv(v, w), shape, big_dy), k_dx + 1)


class AvgPool(Bound):
    """AvgPool / AdaptiveAvgPool: a sum of at most `window` inputs divided (twice at most, the
    kernel's pool_divide) per output; the backward is its transpose, dL/dy / divisor summed
    over the windows that hold a pixel (at most `window` of them)."""

    def __init__(self, sg_mod: nn.Module, t_mod: torch.nn.Module, window: int) -> None:
        super().__init__(sg_mod, t_mod)
        self.window = window

    def fwd(self, ex: np.ndarray) -> np.ndarray:
        f, k = self.t_mod, self.window
        self.ex = ex
        big = as_np(f(_t(np.abs(self.x) + ex)))
        return as_np(f(_t(ex))) + rsum(big, k) + rnd(np.abs(self.y), 2)

    def bwd(self, edy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        shape, f, k = tuple(self.x.shape), self.t_mod, self.window
        ady = np.abs(self.dy)
        mag = _vjp(f, shape, ady)
        quotients = rnd(ady + edy, 2)  # dL/dy / divisor, rounded (twice at most)
        return mag, _vjp(f, shape, edy + quotients) + rsum(_vjp(f, shape, ady + edy), k)


class MaxPool(Bound):
    """MaxPool (ceil_mode False): |max(x + e) - max(x)| <= max(e) over the window. The
    backward sends dL/dy to the window's maximum; where another element of the window lies
    within the errors of the maximum, either may be the float32 one, and each such candidate
    may receive all of dL/dy or none of it. Overlapping windows sum their shares."""

    def fwd(self, ex: np.ndarray) -> np.ndarray:
        assert not self.t_mod.ceil_mode
        self.ex = ex
        return as_np(self.t_mod(_t(ex)))

    def _windows(self, a: np.ndarray, fill: float) -> torch.Tensor:
        """(N, C, K, L): the K elements of each of the L windows (padding = fill)."""
        t = self.t_mod
        k, s, p, d = (torch.nn.modules.utils._pair(v) for v in (t.kernel_size, t.stride,
                                                                 t.padding, t.dilation))
        if a.ndim == 3:  # 1-d: the window runs along W
            k, s, p, d = ((1, k[0]), (1, s[0]), (0, p[0]), (1, d[0]))
        x = torch.nn.functional.pad(_as2d(_t(a)), (p[1], p[1], p[0], p[0]), value=fill)
        n, c = x.shape[:2]
        cols = torch.nn.functional.unfold(x.reshape(n * c, 1, *x.shape[2:]), k, d, 0, s)
        self._fold = (x.shape[2:], k, d, s, p)
        return cols.reshape(n, c, cols.shape[1], cols.shape[2])

    def _fold_back(self, cols: torch.Tensor, shape: tuple[int, ...]) -> np.ndarray:
        size, k, d, s, p = self._fold
        n, c = shape[:2]
        img = torch.nn.functional.fold(cols.reshape(n * c, *cols.shape[2:]), size, k, d, 0, s)
        img = img.reshape(n, c, *size)[:, :, p[0]:size[0] - p[0], p[1]:size[1] - p[1]]
        return as_np(img).reshape(shape)

    def bwd(self, edy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        shape = tuple(self.x.shape)
        xw = self._windows(self.x, -math.inf)
        ew = self._windows(self.ex, 0.0)
        top = xw.argmax(2, keepdim=True)  # the first maximum
        xmax, emax = xw.gather(2, top), ew.gather(2, top)
        cand = (xw + ew >= xmax - emax).double()
        ambiguous = cand.sum(2, keepdim=True) > 1
        ady = _t(np.abs(self.dy)).reshape(*xmax.shape[:2], 1, -1)
        e = _t(edy).reshape(ady.shape)
        at_top = torch.zeros_like(xw).scatter(2, top, 1.0)
        mag = self._fold_back(at_top * ady, shape)
        share = torch.where(ambiguous, cand * (ady + e), at_top * e)
        n_over = int(np.prod(xw.shape[2:3]))  # overlapping windows (at most K) per pixel
        big = self._fold_back(torch.where(ambiguous, cand, at_top) * (ady + e), shape)
        return mag, self._fold_back(share, shape) + rsum(big, n_over)


def _window(m: nn.Module, shape: tuple[int, ...]) -> int:
    """The most inputs one output of an average pool sums."""
    if isinstance(m, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)):
        return int(np.prod(shape[2:]))
    return int(np.prod(m._k))


def twin_of(m: nn.Module, shape: tuple[int, ...]) -> tuple[torch.nn.Module, Bound, tuple[int, ...]]:
    """The float64 torch twin of a steadygrad module (weights not yet loaded: load_state_dict
    from the steadygrad model's state_dict), its bound node, and its output shape for input
    `shape` (logical)."""
    T = torch.nn
    out = m.output_shape(shape)
    if isinstance(m, nn.Sequential):
        parts = []
        for child in m:
            parts.append(twin_of(child, shape))
            shape = parts[-1][2]
        tm = T.Sequential(*[p[0] for p in parts])
        return tm, Seq(m, tm, [p[1] for p in parts]), shape
    if isinstance(m, nn.Residual):
        inner = twin_of(m.module, shape)
        sc = None if m.shortcut is None else twin_of(m.shortcut, shape)
        tm = TorchResidual(inner[0], None if sc is None else sc[0])
        return tm, Res(m, tm, inner[1], None if sc is None else sc[1]), out
    if isinstance(m, (nn.Conv1d, nn.Conv2d)):
        assert m.padding_mode == "zeros" and isinstance(m.padding, tuple)
        cls = T.Conv1d if isinstance(m, nn.Conv1d) else T.Conv2d
        tm = cls(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation,
                 m.groups, m.bias is not None)
        return tm, Conv(m, tm), out
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        cls = T.BatchNorm1d if isinstance(m, nn.BatchNorm1d) else T.BatchNorm2d
        tm = cls(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)
        return tm, BN(m, tm), out
    if isinstance(m, nn.Linear):
        tm = T.Linear(m.in_features, m.out_features, m.bias is not None)
        return tm, Lin(m, tm), out
    if isinstance(m, (nn.ReLU, nn.LeakyReLU)):
        slope = getattr(m, "negative_slope", 0.0)
        tm = T.ReLU() if isinstance(m, nn.ReLU) else T.LeakyReLU(slope)
        return tm, Kink(m, tm, slope), out
    if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d)):
        cls = T.MaxPool1d if isinstance(m, nn.MaxPool1d) else T.MaxPool2d
        tm = cls(m.kernel_size, m.stride, m.padding, m.dilation, ceil_mode=m.ceil_mode)
        return tm, MaxPool(m, tm), out
    if isinstance(m, (nn.AvgPool1d, nn.AvgPool2d)):
        cls = T.AvgPool1d if isinstance(m, nn.AvgPool1d) else T.AvgPool2d
        tm = cls(m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad)
        return tm, AvgPool(m, tm, _window(m, shape)), out
    if isinstance(m, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)):
        cls = T.AdaptiveAvgPool1d if isinstance(m, nn.AdaptiveAvgPool1d) else T.AdaptiveAvgPool2d
        tm = cls(m.output_size)
        return tm, AvgPool(m, tm, _window(m, shape)), out
    simple = {nn.Flatten: T.Flatten, nn.Identity: T.Identity}
    if isinstance(m, nn.Dropout):
        assert m.p == 0.0 or not m.training, "a bound needs Dropout in eval or p = 0"
        tm = T.Dropout(m.p)
    else:
        tm = simple[type(m)]()
    return tm, Bound(m, tm), out


def walk(node: Bound) -> list[Bound]:
    """Every node of a bound tree."""
    out = [node]
    for child in [*getattr(node, "children", []), getattr(node, "inner", None),
                  getattr(node, "shortcut", None)]:
        if child is not None:
            out += walk(child)
    return out


def grad_bound(root: Bound, p: nn.Parameter) -> np.ndarray:
    """The bound on parameter p's gradient, summed over the backwards it accumulates."""
    return np.sum([g for node in walk(root) for g in node.grads.get(id(p), [])], axis=0)


def sgd_bound(kw: dict[str, Any], t: int, p0: np.ndarray, s0: dict[str, np.ndarray],
               cg: np.ndarray, eg: np.ndarray, e: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    lr, mu, wd, damp = kw["lr"], kw["momentum"], kw["weight_decay"], kw["dampening"]
    geff = cg + wd * np.abs(p0)
    e_geff = eg + wd * e["p"] + rnd(geff, 3)
    upd, e_upd = geff, e_geff
    out: dict[str, np.ndarray] = {}
    if mu:
        if "momentum_buffer" in s0:
            buf0 = np.abs(s0["momentum_buffer"])
            buf = mu * buf0 + (1 - damp) * geff
            e["momentum_buffer"] = (mu * e["momentum_buffer"] + (1 - damp) * e_geff
                                    + rnd(buf, 4))
        else:
            buf = geff
            e["momentum_buffer"] = e_geff
        out["momentum_buffer"] = e["momentum_buffer"]
        if kw["nesterov"]:
            upd = geff + mu * buf
            e_upd = e_geff + mu * e["momentum_buffer"] + rnd(upd, 3)
        else:
            upd, e_upd = buf, e["momentum_buffer"]
    e["p"] = e["p"] + lr * e_upd + rnd((np.abs(p0) + lr * upd), 3)
    return out


def adam_bound(kw: dict[str, Any], t: int, p0: np.ndarray, s0: dict[str, np.ndarray],
                cg: np.ndarray, eg: np.ndarray, e: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    lr, (b1, b2), eps, wd = kw["lr"], kw["betas"], kw["eps"], kw["weight_decay"]
    coupled = wd and not kw["decoupled_weight_decay"]
    ap = np.abs(p0)
    geff = cg + (wd * ap if coupled else 0.0)
    e_geff = eg + ((wd * e["p"] + rnd(geff, 2)) if coupled else 0.0)
    zero = np.zeros_like(ap)
    m0 = np.abs(s0.get("exp_avg", zero))
    v0 = s0.get("exp_avg_sq", zero)
    m = b1 * m0 + (1 - b1) * geff
    v = b2 * v0 + (1 - b2) * geff * geff
    e["exp_avg"] = b1 * e.get("exp_avg", zero) + (1 - b1) * e_geff + rnd((m0 + geff), 4)
    e["exp_avg_sq"] = (b2 * e.get("exp_avg_sq", zero) + (1 - b2) * (2 * geff + e_geff) * e_geff
                       + rnd(v, 4))
    out = {"exp_avg": e["exp_avg"], "exp_avg_sq": e["exp_avg_sq"]}
    vd, evd = v, e["exp_avg_sq"]
    if kw["amsgrad"]:
        vmax0 = s0.get("max_exp_avg_sq", zero)
        vd = np.maximum(vmax0, v)
        e["max_exp_avg_sq"] = np.maximum(e.get("max_exp_avg_sq", zero), e["exp_avg_sq"])
        evd = out["max_exp_avg_sq"] = e["max_exp_avg_sq"]
    bc1, ibc2 = 1 - b1**t, 1 / math.sqrt(1 - b2**t)
    sq = np.sqrt(vd)
    e_sq = sq - np.sqrt(np.maximum(vd - evd, 0.0)) + rnd(sq)
    den = sq * ibc2 + eps
    e_den = ibc2 * e_sq + rnd(den, 3)
    r = m / den
    e_r = (e["exp_avg"] + r * e_den) / np.maximum(den - e_den, eps / 2) + rnd(r)
    ss = lr / bc1
    decay = 1 - lr * wd if (wd and not coupled) else 1.0
    e["p"] = e["p"] * decay + ss * e_r + rnd((ss * r + ap), 3)
    return out


