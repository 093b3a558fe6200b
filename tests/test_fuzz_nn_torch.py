"""Property-based parity with PyTorch: random layer stacks (Linear, BatchNorm1d, ReLU, LeakyReLU,
GELU, Tanh, Sigmoid, Dropout in eval or p=0, Flatten, Identity, Residual), random shapes, modes
and ISA paths; outputs, dL/dx, every parameter gradient and the running statistics against a
float64 torch twin with the same weights (load_state_dict), then optimizer steps (SGD, Adam;
norm or value clipping) against torch's optimizer fed the same gradients.

Tolerances are error bounds, not flat atols: alongside torch's float64 values each layer runs
an absolute-value computation (`Bound`) that propagates, element by element, a first-order
bound on the float32 error: the incoming error through the layer's |Jacobian| plus the
layer's own rounding (unit roundoff U times the magnitudes summed, e.g. gamma_k |x| |W|^T for
a Linear). A kernel that is wrong by more than a few roundings of the magnitudes involved
fails, wherever the cancellation is."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
from conftest import assert_close
from fuzz_support import fuzz_settings, torch_threads
from hypothesis import given
from hypothesis import strategies as st

import steadygrad as sg
from steadygrad import nn, optim

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


# --- the random stacks -------------------------------------------------------------------
# A spec is a tuple: ("linear", out, bias) | ("bn", momentum, affine, track, eps) | ("relu",)
# | ("leaky", slope) | ("gelu", approximate) | ("tanh",) | ("sigmoid",) | ("silu",)
# | ("softplus",) | ("dropout", p)
# | ("identity",) | ("flatten",) | ("residual", [specs that keep the width]).
def _leaf_specs(width_change: bool, training: bool) -> st.SearchStrategy[tuple]:
    linear = (st.tuples(st.just("linear"), st.integers(1, 24), st.booleans()) if width_change
              else st.tuples(st.just("linear"), st.none(), st.booleans()))
    bn = st.tuples(st.just("bn"), st.sampled_from([0.1, 0.5, None]), st.booleans(),
                   st.booleans(), st.sampled_from([1e-5, 1e-3]))
    return st.one_of(  # the layers with parameters and kernels of their own count twice
        linear, linear, bn, bn,
        st.just(("relu",)),
        st.tuples(st.just("leaky"), st.sampled_from([0.01, 0.2, 1.5])),
        st.tuples(st.just("gelu"), st.sampled_from(["none", "tanh"])),
        st.just(("tanh",)),
        st.just(("sigmoid",)),
        st.just(("silu",)),
        st.just(("softplus",)),
        st.tuples(st.just("dropout"), st.just(0.0) if training else st.sampled_from([0.0, 0.5])),
        st.just(("identity",)),
        st.just(("flatten",)),
    )


@st.composite
def stacks(draw: st.DrawFn, training: bool) -> list[tuple]:
    def layer(depth: int, width_change: bool) -> tuple:
        if depth < 2 and draw(st.integers(0, 5)) == 0:
            inner = [layer(depth + 1, False) for _ in range(draw(st.integers(1, 3)))]
            return ("residual", inner)
        return draw(_leaf_specs(width_change, training))

    return [layer(0, True) for _ in range(draw(st.integers(1, 6)))]


@dataclass
class Case:
    """One generated example: the model, the data of each pass, the mode and the optimizer."""

    specs: list[tuple]
    in_shape: tuple[int, ...]
    training: bool
    seed: int
    passes: list[tuple[float, float, float, bool]]  # (x scale, x offset, dy scale, input_grad)
    opt: tuple[str, dict[str, Any], tuple[str, float] | None] = ("sgd", {}, None)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    training = draw(st.booleans())
    batch = draw(st.integers(2, 12))  # BatchNorm in training needs 2 rows
    if draw(st.booleans()):
        in_shape: tuple[int, ...] = (batch, draw(st.integers(1, 4)), draw(st.integers(1, 5)))
        specs = [("flatten",), *draw(stacks(training))]
    else:
        in_shape = (batch, draw(st.integers(1, 24)))
        specs = draw(stacks(training))
    passes = draw(st.lists(st.tuples(st.sampled_from([0.1, 1.0, 10.0]), st.sampled_from([0.0, 3.0]),
                                     st.sampled_from([1.0, 1e-3]), st.booleans()),
                           min_size=1, max_size=2))
    return Case(specs, in_shape, training, draw(st.integers(0, 2**31 - 1)), passes,
                draw(optimizers()))


@st.composite
def optimizers(draw: st.DrawFn) -> tuple[str, dict[str, Any], tuple[str, float] | None]:
    clip = draw(st.sampled_from([None, ("norm", 0.1), ("norm", 100.0), ("value", 0.01),
                                 ("norm_fn", 0.1), ("value_fn", 0.01)]))
    if draw(st.booleans()):
        momentum = draw(st.sampled_from([0.0, 0.9]))
        nesterov = momentum > 0 and draw(st.booleans())
        kw = {"lr": draw(st.sampled_from([0.1, 1e-3])), "momentum": momentum,
              "dampening": 0.0 if nesterov or momentum == 0 else draw(st.sampled_from([0.0, 0.1])),
              "weight_decay": draw(st.sampled_from([0.0, 1e-2])), "nesterov": nesterov,
              "maximize": draw(st.booleans())}
        return "sgd", kw, clip
    kw = {"lr": draw(st.sampled_from([1e-3, 0.1])),
          "betas": draw(st.sampled_from([(0.9, 0.999), (0.5, 0.9)])),
          "eps": draw(st.sampled_from([1e-8, 1e-4])),
          "weight_decay": draw(st.sampled_from([0.0, 1e-2])), "amsgrad": draw(st.booleans()),
          "decoupled_weight_decay": draw(st.booleans()), "maximize": draw(st.booleans())}
    return "adam", kw, clip


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
    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module


def _np(t: torch.Tensor) -> np.ndarray:
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
        self.x_t, self.x = x, _np(x)
        y = self._torch(x)
        if y is x:  # identity-like layers: give the output a gradient of its own
            y = x.view_as(x)
        y.retain_grad()
        self.y_t, self.y = y, _np(y)
        return y

    def _torch(self, x: torch.Tensor) -> torch.Tensor:
        return self.t_mod(x)

    @property
    def dy(self) -> np.ndarray:
        g = self.y_t.grad
        return np.zeros_like(self.y) if g is None else _np(g)

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
    def __init__(self, sg_mod: nn.Module, t_mod: torch.nn.Module, inner: Bound) -> None:
        super().__init__(sg_mod, t_mod)
        self.inner = inner

    def _torch(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.inner.forward(x)

    def fwd(self, ex: np.ndarray) -> np.ndarray:
        return ex + self.inner.fwd(ex) + rnd(np.abs(self.y))

    def bwd(self, edy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mag, edx = self.inner.bwd(edy)
        mag = np.abs(self.dy) + mag
        return mag, edy + edx + rnd(mag)


class Lin(Bound):
    def fwd(self, ex: np.ndarray) -> np.ndarray:
        w = np.abs(_np(self.t_mod.weight))
        b = np.abs(_np(self.t_mod.bias)) if self.t_mod.bias is not None else 0.0
        k = w.shape[1]
        self.ex = ex
        return ex @ w.T + rsum((np.abs(self.x) + ex) @ w.T + b, k + 1)

    def bwd(self, edy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = np.abs(_np(self.t_mod.weight))
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


class BN(Bound):
    """BatchNorm1d. In batch-statistics mode, with s = sqrt(var + eps) and xhat = (x - mean)/s,
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
            self.rm, self.rv = _np(t.running_mean).copy(), _np(t.running_var).copy()
            nbt = int(t.num_batches_tracked)
            self.momentum = t.momentum if t.momentum is not None else 1.0 / (nbt + 1)
        return super().forward(x)

    def _gamma(self) -> np.ndarray:
        w = self.t_mod.weight
        return np.ones(self.x.shape[1]) if w is None else _np(w)

    def _block(self) -> int:
        return min(self.x.shape[0], self.ROW_BLOCK) + 1

    def fwd(self, ex: np.ndarray) -> np.ndarray:
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
                            + rnd(np.abs(_np(self.t_mod.running_mean)))
                            + U * m * (np.abs(mean) + np.abs(self.rm)))
                e_unb = (2 / (n - 1)) * (np.abs(x - mean) * ex).sum(0) + unbiased * rel_var
                self.erv = ((1 - m) * self.erv + m * e_unb
                            + rnd(np.abs(_np(self.t_mod.running_var)))
                            + U * m * (unbiased + self.rv))
        else:
            s = np.sqrt(self.rv + eps)
            xh = (x - self.rm) / s
            rel_s = self.erv / (2 * (self.rv + eps)) + 3 * U
            exh = (ex + self.erm + rnd(np.abs(x - self.rm))) / s + np.abs(xh) * rel_s
        self.s, self.xh, self.exh, self.rel_s = s, xh, exh, rel_s
        return g * exh + rnd(np.abs(self.y)) + rnd(np.abs(g * xh))

    def bwd(self, edy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def build(spec: tuple, width: int) -> tuple[nn.Module, torch.nn.Module, Bound, int]:
    """(steadygrad module, torch float64 twin, bound node, output width) for one spec."""
    kind = spec[0]
    if kind == "residual":
        mods = [build(s, width) for s in spec[1]]
        inner_sg = nn.Sequential(*[m[0] for m in mods])
        inner_t = torch.nn.Sequential(*[m[1] for m in mods])
        inner = Seq(inner_sg, inner_t, [m[2] for m in mods])
        sgm = nn.Residual(inner_sg)
        tm = TorchResidual(inner_t)
        return sgm, tm, Res(sgm, tm, inner), width
    if kind == "linear":
        out = width if spec[1] is None else spec[1]
        sgm, tm = nn.Linear(width, out, bias=spec[2]), torch.nn.Linear(width, out, bias=spec[2])
        return sgm, tm, Lin(sgm, tm), out
    if kind == "bn":
        _, momentum, affine, track, eps = spec
        sgm = nn.BatchNorm1d(width, eps=eps, momentum=momentum, affine=affine,
                             track_running_stats=track)
        tm = torch.nn.BatchNorm1d(width, eps=eps, momentum=momentum, affine=affine,
                                  track_running_stats=track)
        return sgm, tm, BN(sgm, tm), width
    if kind in ("relu", "leaky"):
        slope = 0.0 if kind == "relu" else spec[1]
        sgm = nn.ReLU() if kind == "relu" else nn.LeakyReLU(slope)
        tm = torch.nn.ReLU() if kind == "relu" else torch.nn.LeakyReLU(slope)
        return sgm, tm, Kink(sgm, tm, slope), width
    if kind == "gelu":
        sgm, tm = nn.GELU(spec[1]), TorchGELU(spec[1])
        return sgm, tm, Smooth(sgm, tm, "gelu" if spec[1] == "none" else "gelu_tanh"), width
    if kind in ("tanh", "sigmoid", "silu", "softplus"):
        cls = {"tanh": "Tanh", "sigmoid": "Sigmoid", "silu": "SiLU", "softplus": "Softplus"}[kind]
        sgm, tm = getattr(nn, cls)(), getattr(torch.nn, cls)()
        return sgm, tm, Smooth(sgm, tm, kind), width
    simple = {"dropout": (lambda: nn.Dropout(spec[-1]), lambda: torch.nn.Dropout(spec[-1])),
              "identity": (nn.Identity, torch.nn.Identity),
              "flatten": (nn.Flatten, torch.nn.Flatten)}
    sgm, tm = simple[kind][0](), simple[kind][1]()
    return sgm, tm, Bound(sgm, tm), width


def build_model(case: Case, rng: np.random.Generator) -> tuple[nn.Sequential, torch.nn.Module, Seq]:
    sg.manual_seed(case.seed)
    width = int(np.prod(case.in_shape[1:]))
    mods = []
    for spec in case.specs:
        m = build(spec, width)
        mods.append(m)
        width = m[3]
    model = nn.Sequential(*[m[0] for m in mods])
    twin = torch.nn.Sequential(*[m[1] for m in mods]).double()
    root = Seq(model, twin, [m[2] for m in mods])
    for m in model.modules():  # BatchNorm off its defaults: gammas of both signs, used stats
        if isinstance(m, nn.BatchNorm1d):
            if m.affine:
                m.weight.data = rng.uniform(-2, 2, m.num_features).astype(np.float32)
                m.bias.data = rng.standard_normal(m.num_features).astype(np.float32)
            if m.track_running_stats:
                m.running_mean[...] = rng.standard_normal(m.num_features)
                m.running_var[...] = rng.uniform(0.5, 2.0, m.num_features)
                m.num_batches_tracked[...] = rng.integers(0, 4)
    twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()})
    model.train(case.training)
    twin.train(case.training)
    return model, twin, root


def _bound_of(node: Seq, p: nn.Parameter) -> np.ndarray:
    parts = _collect(node, id(p))
    return np.sum(parts, axis=0)


def _collect(node: Bound, key: int) -> list[np.ndarray]:
    out = list(node.grads.get(key, []))
    for child in getattr(node, "children", []):
        out += _collect(child, key)
    inner = getattr(node, "inner", None)
    if inner is not None:
        out += _collect(inner, key)
    return out


# --- the property --------------------------------------------------------------------------
@fuzz_settings(max_examples=30)
@given(case=cases())
def test_random_stack_matches_torch(isa: str, case: Case) -> None:
    rng = np.random.default_rng(case.seed)
    model, twin, root = build_model(case, rng)
    tparams = dict(twin.named_parameters())
    with torch_threads(1):
        for xs, xo, gs, input_grad in case.passes:
            x = (rng.standard_normal(case.in_shape) * xs + xo).astype(np.float32)
            dout = (rng.standard_normal(model.output_shape(x.shape)) * gs).astype(np.float32)
            y = model(x).copy()
            dx = model.backward(dout, input_grad=input_grad)
            dx = None if dx is None else dx.copy()
            xt = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
            yt = root.forward(xt)
            (yt * torch.from_numpy(dout.astype(np.float64))).sum().backward()
            ey = root.fwd(np.zeros(x.shape))
            _, edx = root.bwd(np.zeros(dout.shape))
            assert_close(y, _np(yt), SLACK * ey, what="output")
            if input_grad:
                assert dx is not None
                assert_close(dx, _np(xt.grad), SLACK * edx, what="dL/dx")
            else:
                assert dx is None
        for name, p in model.named_parameters():
            assert p.grad is not None, name
            assert_close(p.grad, _np(tparams[name].grad), SLACK * _bound_of(root, p),
                         what=f"grad {name}")
        tbufs = dict(twin.named_buffers())
        bn_bounds = {id(b.sg_mod): b for b in _walk(root) if isinstance(b, BN)}
        for mname, m in model.named_modules():
            if isinstance(m, nn.BatchNorm1d) and m.track_running_stats:
                b = bn_bounds[id(m)]
                assert_close(m.running_mean, _np(tbufs[f"{mname}.running_mean"]), SLACK * b.erm,
                             what=f"{mname}.running_mean")
                assert_close(m.running_var, _np(tbufs[f"{mname}.running_var"]), SLACK * b.erv,
                             what=f"{mname}.running_var")
                assert int(m.num_batches_tracked) == int(tbufs[f"{mname}.num_batches_tracked"])
        _check_optimizer_steps(case, model, rng)


def _walk(node: Bound) -> list[Bound]:
    out = [node]
    for child in getattr(node, "children", []):
        out += _walk(child)
    inner = getattr(node, "inner", None)
    return out + (_walk(inner) if inner is not None else [])


# --- optimizer steps -----------------------------------------------------------------------
def _total_norm(grads: list[np.ndarray]) -> float:
    return math.sqrt(sum(float((g * g).sum()) for g in grads))


def _check_norm(got: float | None, grads: list[np.ndarray], what: str) -> None:
    """A 2-norm of float32 values summed in double: within (n + 4) double roundings."""
    want = _total_norm(grads)
    n = sum(g.size for g in grads)
    assert got is not None and abs(got - want) <= (n + 4) * 2.0**-52 * want, (what, got, want)


def _clip(clip: tuple[str, float] | None, grads: list[np.ndarray],
          norm: float | None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The clipped gradients in float64 (from the float32 ones and steadygrad's pre-clip norm,
    so both sides scale by the same coefficient) and the bound on steadygrad's: the scale
    rounded to float32, then the product; max_grad_value rounded to float32."""
    if clip is None:
        return grads, [np.zeros(g.shape) for g in grads]
    if clip[0].startswith("norm"):
        assert norm is not None
        coef = min(clip[1] / (norm + 1e-6), 1.0)
        return [g * coef for g in grads], [rnd(np.abs(g * coef), 2) for g in grads]
    c = clip[1]
    return ([np.clip(g, -c, c) for g in grads],
            [U * c * (np.abs(g) >= c) + 0.0 * g for g in grads])


def _check_optimizer_steps(case: Case, model: nn.Sequential, rng: np.random.Generator) -> None:
    """Two steps of the steadygrad optimizer against torch's on float64 copies of the same
    parameters, fed the same float32 gradients (the model's), clipped by the fused step
    options ("norm", "value") or before the step by optim.clip_grad_norm_ / clip_grad_value_
    ("norm_fn", "value_fn"; torch.nn.utils' semantics). Error bounds follow the update's
    arithmetic element by element (`_sgd_bound`, `_adam_bound`)."""
    kind, kw, clip = case.opt
    params = model.parameters()
    if not params:
        return
    opts: dict[str, Any] = {}
    if clip is not None and clip[0] in ("norm", "value"):
        opts["max_grad_norm" if clip[0] == "norm" else "max_grad_value"] = clip[1]
    tps = [torch.tensor(p.data, dtype=torch.float64, requires_grad=True) for p in params]
    if kind == "sgd":
        opt: optim.Optimizer = optim.SGD(params, **kw, **opts)
        topt: torch.optim.Optimizer = torch.optim.SGD(tps, **kw)
    else:
        opt = optim.Adam(params, **kw, **opts)
        topt = torch.optim.Adam(tps, **kw)
    errs: list[dict[str, np.ndarray]] = [{"p": np.zeros(p.shape)} for p in params]
    for step in range(2):
        if step:
            model.zero_grad()
            x = rng.standard_normal(case.in_shape).astype(np.float32)
            model(x)
            model.backward(rng.standard_normal(model.output_shape(x.shape)).astype(np.float32))
        grads = [p.grad.astype(np.float64) for p in params]
        before = [(tp.detach().numpy().copy(), {k: _np(v).copy() for k, v in topt.state[tp].items()
                                                if isinstance(v, torch.Tensor) and v.ndim})
                  for tp in tps]
        pre_norm = None
        if clip is not None and clip[0] == "norm_fn":
            pre_norm = optim.clip_grad_norm_(params, clip[1])
            _check_norm(pre_norm, grads, "clip_grad_norm_")
        elif clip is not None and clip[0] == "value_fn":
            optim.clip_grad_value_(params, clip[1])
        if clip is not None and clip[0].endswith("_fn"):
            want, bounds = _clip(clip, grads, pre_norm)
            for p, w, eb in zip(params, want, bounds, strict=True):
                assert_close(p.grad, w, SLACK * eb, what=f"{clip[0]} {p.shape}")
            seen = [p.grad.astype(np.float64) for p in params]  # what the step works on
        norm = opt.step()
        _check_norm(norm, seen if clip is not None and clip[0].endswith("_fn") else grads,
                    "step")
        clipped, eclip = _clip(clip, grads, pre_norm if pre_norm is not None else norm)
        for tp, g in zip(tps, clipped, strict=True):
            tp.grad = torch.from_numpy(g)
        topt.step()
        t = step + 1
        for p, tp, cg, eg, (p0, s0), e in zip(params, tps, clipped, eclip, before, errs,
                                              strict=True):
            state = {k: _np(v) for k, v in topt.state[tp].items()
                     if isinstance(v, torch.Tensor) and v.ndim}
            bound = (_sgd_bound if kind == "sgd" else _adam_bound)(kw, t, p0, s0, np.abs(cg),
                                                                   eg, e)
            assert_close(p.data, _np(tp), SLACK * e["p"], what=f"{kind} step {t}: param {p.shape}")
            ours = opt.state.get(p, {})
            for name, want in state.items():
                assert_close(ours[name], want, SLACK * bound[name],
                             what=f"{kind} step {t}: {name} {p.shape}")


def _sgd_bound(kw: dict[str, Any], t: int, p0: np.ndarray, s0: dict[str, np.ndarray],
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


def _adam_bound(kw: dict[str, Any], t: int, p0: np.ndarray, s0: dict[str, np.ndarray],
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


def test_bounds_are_tight_enough_to_catch_a_one_ulp_bias() -> None:
    """The bounds must not be so loose that a wrong kernel passes: a Linear output off by
    1e-4 relative (a few hundred ulps) is outside its bound."""
    model = nn.Sequential(nn.Linear(8, 5))
    twin = torch.nn.Sequential(torch.nn.Linear(8, 5)).double()
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    node = Seq(model, twin, [Lin(model[0], twin[0])])
    x = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    y = model(x).copy()
    yt = node.forward(torch.from_numpy(x.astype(np.float64)))
    ey = node.fwd(np.zeros(x.shape))
    assert_close(y, _np(yt), SLACK * ey, what="exact")
    with pytest.raises(AssertionError, match="out of tolerance"):
        assert_close(y * (1 + 1e-4), _np(yt), SLACK * ey, what="biased")
