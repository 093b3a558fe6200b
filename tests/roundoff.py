"""Error bounds for float32 evaluations of a formula, by Monte Carlo arithmetic: the formula
in float64, exactly and K more times with every float32 rounding it makes replaced by a random
relative error of float32's size (Parker, Pierce and Eggert, "Monte Carlo arithmetic", 2000;
the probabilistic model of Higham and Mary, SIAM J. Sci. Comput. 41, 2019). The spread of the
K runs is the rounding error of the formula at this data, correlations and cancellations
included: a value that cancels to something small gets the small absolute spread its terms
allow, not a flat atol, and a wide sum gets sqrt(terms) growth, not a worst case that a deep
network's gradients overstate by orders of magnitude.

Noisy holds the samples along axis 0: [0] is the exact float64 evaluation, [1:] the K
perturbed ones. The model of one float32 evaluation in any order: every product and every
partial sum of a sum or dot product rounds (recursive summation, the worst common order;
blocked, pairwise and FMA evaluations round less), every other operation rounds once, each
rounding a relative error uniform in [-u, u], u = 2^-24 (the many roundings of one sum are
drawn together, as the normal error of their summed variance). An activation kernel adds
its own error (activation_refs: steadygrad's and torch's tolerance), uniform in [-tol, tol].

Noisy.bound() = SIGMA * (root mean square deviation of the K runs from the exact one), SIGMA =
12. One evaluation's error is a sum of many small independent roundings, about normal; over
the ~10^5 elements the parity tests compare, steadygrad and torch (AVX2 and generic paths)
reach 4.7 deviations at most. The deviation estimated from K = 32 runs is above 0.7 of the
true one with probability 99%, and an implementation that sums in another order than the
model's may spread up to ~1.5 times more: 12 deviations are still 5.6 of that, which a
normal error exceeds with probability 2e-8 per element.

A ReLU-like kink is not differentiable: an input within its bound of 0 may land on either
side in a float32 evaluation, which changes the gradient there by all of |dy|; the reference
then takes the side the implementation took (activation_backward's `side`)."""

from __future__ import annotations

from typing import Union

import numpy as np
from activation_refs import RTOL, TINY, Act

U = 2.0**-24
K = 32
SIGMA = 12.0

Operand = Union["Noisy", float, int, np.ndarray]
_rng = np.random.default_rng(0)


def seed(n: int) -> None:
    """Restart the runs' random roundings (a test's bounds then do not depend on test order)."""
    global _rng
    _rng = np.random.default_rng(n)


def _noise(shape: tuple[int, ...]) -> np.ndarray:
    """Uniform in [-1, 1] for the K perturbed runs, 0 for the exact one."""
    out = _rng.uniform(-1.0, 1.0, shape)
    out[0] = 0.0
    return out


def _round(s: np.ndarray) -> np.ndarray:
    return s * (1.0 + U * _noise(s.shape))


def _pair(a: Noisy, b: Noisy) -> tuple[np.ndarray, np.ndarray]:
    """Both operands' samples with their value axes aligned from the right (numpy's
    broadcasting of the values, the sample axis kept first)."""
    nd = max(a.s.ndim, b.s.ndim)

    def aligned(x: Noisy) -> np.ndarray:
        return x.s.reshape(x.s.shape[0], *(1,) * (nd - x.s.ndim), *x.s.shape[1:])

    return aligned(a), aligned(b)


class Noisy:
    __slots__ = ("s",)

    def __init__(self, samples: np.ndarray) -> None:
        self.s = samples  # shape (K + 1, *value shape)

    @staticmethod
    def of(x: Operand) -> Noisy:
        """An operand: float32 arrays and float32-exact numbers are exact in every run; other
        numbers (0.1, eps = 1e-5) carry the rounding that float32 makes of them."""
        if isinstance(x, Noisy):
            return x
        v = np.asarray(x, dtype=np.float64)
        s = np.broadcast_to(v, (K + 1, *v.shape)).copy()
        exact = np.asarray(x).dtype == np.float32 or np.array_equal(v.astype(np.float32), v)
        return Noisy(s if exact else _round(s))

    @property
    def v(self) -> np.ndarray:
        """The exact float64 value."""
        return self.s[0]

    @property
    def shape(self) -> tuple[int, ...]:
        return self.s.shape[1:]

    def spread(self) -> np.ndarray:
        return np.sqrt(((self.s[1:] - self.s[0]) ** 2).mean(axis=0))

    def bound(self) -> np.ndarray:
        return SIGMA * self.spread()

    def __add__(self, other: Operand) -> Noisy:
        sa, sb = _pair(self, Noisy.of(other))
        return Noisy(_round(sa + sb))

    __radd__ = __add__

    def __neg__(self) -> Noisy:
        return Noisy(-self.s)

    def __sub__(self, other: Operand) -> Noisy:
        return self + (-Noisy.of(other))

    def __rsub__(self, other: Operand) -> Noisy:
        return Noisy.of(other) + (-self)

    def __mul__(self, other: Operand) -> Noisy:
        sa, sb = _pair(self, Noisy.of(other))
        return Noisy(_round(sa * sb))

    __rmul__ = __mul__

    def __truediv__(self, other: Operand) -> Noisy:
        sa, sb = _pair(self, Noisy.of(other))
        return Noisy(_round(sa / sb))

    def __rtruediv__(self, other: Operand) -> Noisy:
        return Noisy.of(other) / self

    def sqrt(self) -> Noisy:
        return Noisy(_round(np.sqrt(self.s)))

    @staticmethod
    def _summed(exact_terms: np.ndarray, axis: int, products: bool) -> np.ndarray:
        """The spread recursive summation adds along `axis`: each partial sum s_j rounds (and
        each term, for products without FMA), a relative error of variance u^2 / 3: a normal
        error of variance u^2 / 3 (sum s_j^2 + sum t_j^2) per result and run. The partial
        sums of the exact run stand for every run's (they differ by O(u))."""
        partial = np.cumsum(exact_terms, axis=axis)
        var = (partial**2).sum(axis=axis) - np.take(partial, 0, axis=axis) ** 2
        if products:
            var = var + (exact_terms**2).sum(axis=axis)
        out = _rng.standard_normal((K + 1, *var.shape))
        out[0] = 0.0
        return out * np.sqrt(var * (U * U / 3.0))

    def __matmul__(self, other: Operand) -> Noisy:
        o = Noisy.of(other)
        terms = self.v[:, :, None] * o.v[None, :, :]  # (m, k, n) of the exact run
        return Noisy(self.s @ o.s + self._summed(terms, axis=1, products=True))

    def sum(self, axis: int = 0) -> Noisy:
        return Noisy(self.s.sum(axis=axis + 1) + self._summed(self.v, axis=axis, products=False))

    def mean(self, axis: int = 0) -> Noisy:
        return self.sum(axis) / self.shape[axis]

    @property
    def T(self) -> Noisy:
        return Noisy(np.swapaxes(self.s, -1, -2))

    def reshape(self, *shape: int) -> Noisy:
        return Noisy(self.s.reshape(self.s.shape[0], *shape))


def _kernel(v: np.ndarray, tol: np.ndarray) -> np.ndarray:
    """An activation kernel's own error on top of its exact result (not on the exact run)."""
    return v + tol * _noise(v.shape)


def activation(act: Act, x: Noisy) -> Noisy:
    """y = f(x) through an activation kernel, steadygrad's or torch's (RTOL, fwd_atol,
    torch_atol of activation_refs)."""
    y = act.ref(x.s)
    return Noisy(_kernel(y, TINY + 2 * RTOL * np.abs(y) + act.fwd_atol(x.s, y) + act.torch_atol(x.s)))


def near_kink(act: Act, x: Noisy) -> np.ndarray:
    """Inputs a float32 evaluation may put on either side of a ReLU-like kink at 0 (not the
    exact zeros every evaluation gives, such as a ReLU's output fed to another)."""
    if not act.kink:
        return np.zeros(x.shape, bool)
    bound = x.bound()
    return (np.abs(x.v) <= bound) & (bound > 0)


def activation_backward(act: Act, dy: Noisy, x: Noisy, y: Noisy,
                        side: np.ndarray | None = None) -> Noisy:
    """dx = dy * f'(x), f' from x or from the forward's y (act.saved), plus the kernel's own
    error. At a kink f' jumps: where x lies within its bound of 0, `side` (the
    implementation's x > 0, read from its forward) says which branch every run takes;
    elsewhere the implementation must agree with the exact side."""
    d = act.dref(x.s, y.s)
    if act.kink:
        near = near_kink(act, x)
        if side is None:
            assert not near.any(), "an input within its bound of the kink needs `side`"
        else:
            flipped = (side != (x.v > 0)) & ~near
            assert not flipped.any(), (f"{int(flipped.sum())} ReLU masks differ from the reference "
                                       "where the input is clear of 0 (beyond its error bound)")
            chosen = act.dref(np.where(side, 1.0, -1.0), y.v)
            d = np.where(near, chosen, d)
        d = np.where(near, d, act.dref(x.v, y.v))  # runs follow the exact side off the kink
    v = dy.s * d
    tol = TINY + 2 * RTOL * np.abs(v) + (act.bwd_atol(x.s, d) + act.torch_atol(x.s)) * np.abs(dy.s)
    return Noisy(_kernel(v, tol))
