"""The bad-input catalogue: every public sg.ops function, every argument, each bad input with
the exception TYPE and a message fragment it must raise, and a check that no array passed in
(inputs or out) was modified. `python tests/test_bad_input.py` prints the catalogue as a table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

import steadygrad as sg

TIME_BUDGET_S = 10


@dataclass(frozen=True)
class Case:
    fn: str  # sg.ops function
    arg: str  # the argument at fault
    bad: str  # what was passed, in words
    exc: type[Exception]
    fragment: str  # must appear in str(exception)
    make: Callable[[], tuple[tuple, dict]]  # fresh (args, kwargs) for each run

    @property
    def id(self) -> str:
        return f"{self.fn}-{self.arg}-{self.bad}".replace(" ", "_")


def f32(*shape: int) -> np.ndarray:
    return np.arange(np.prod(shape), dtype=np.float32).reshape(shape) / 7 - 1


def readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def strided(*shape: int) -> np.ndarray:
    """A non-C-contiguous view of the given shape (every other column)."""
    return f32(*shape[:-1], 2 * shape[-1])[..., ::2]


def overlapping(n_in: int, n_out: int, shift: int):
    """(input, out) views into one buffer sharing some but not all bytes."""
    buf = f32(n_in + n_out + shift)
    return buf[:n_in], buf[shift:shift + n_out]


CASES: list[Case] = []


def add(fn, arg, bad, exc, fragment, make):
    CASES.append(Case(fn, arg, bad, exc, fragment, make))


# --- gemm: a (4, 6) @ b (6, 5) -> (4, 5) ---------------------------------------------------
def g(a=None, b=None, **kw):
    return (f32(4, 6) if a is None else a, f32(6, 5) if b is None else b), kw


add("gemm", "a", "float64", TypeError, "gemm: a must have dtype float32, got float64",
    lambda: g(a=np.ones((4, 6))))
add("gemm", "a", "int32", TypeError, "a must have dtype float32, got int32",
    lambda: g(a=np.ones((4, 6), np.int32)))
add("gemm", "b", "float16", TypeError, "b must have dtype float32, got float16",
    lambda: g(b=np.ones((6, 5), np.float16)))
add("gemm", "a", "big-endian >f4", TypeError, "a must have dtype float32, got >f4",
    lambda: g(a=np.ones((4, 6), ">f4")))
add("gemm", "a", "list", TypeError, "a must be a numpy.ndarray of float32, got list",
    lambda: g(a=[[1.0] * 6] * 4))
add("gemm", "b", "None", TypeError, "b must be a numpy.ndarray of float32, got NoneType",
    lambda: ((f32(4, 6), None), {}))
add("gemm", "a", "1-D", ValueError, "a must be 2-D, got 1-D array of shape (6,)",
    lambda: g(a=f32(6)))
add("gemm", "b", "3-D", ValueError, "b must be 2-D, got 3-D array of shape (1, 6, 5)",
    lambda: g(b=f32(1, 6, 5)))
add("gemm", "a", "a[:, ::2]", ValueError, "a must be C-contiguous, got a strided view of shape (4, 6)",
    lambda: g(a=strided(4, 6)))
add("gemm", "b", "b.T (F-order)", ValueError, "b must be C-contiguous",
    lambda: g(b=f32(5, 6).T))
add("gemm", "b", "k mismatch", ValueError,
    "gemm: b has shape (300, 20) but trans_b=False needs (k=200, n) to match a of shape "
    "(100, 200) with trans_a=False", lambda: ((f32(100, 200), f32(300, 20)), {}))
add("gemm", "b", "k mismatch, trans_b", ValueError,
    "b has shape (5, 7) but trans_b=True needs (n, k=6)",
    lambda: g(b=f32(5, 7), trans_b=True))
add("gemm", "b", "k mismatch, trans_a", ValueError,
    "b has shape (6, 5) but trans_b=False needs (k=4, n) to match a of shape (4, 6) with "
    "trans_a=True", lambda: g(trans_a=True))
add("gemm", "out", "wrong shape", ValueError, "out must have shape (4, 5), got (5, 4)",
    lambda: g(out=f32(5, 4)))
add("gemm", "out", "float64", TypeError, "out must have dtype float32, got float64",
    lambda: g(out=np.zeros((4, 5))))
add("gemm", "out", "read-only", ValueError, "out must be writeable, got a read-only array",
    lambda: g(out=readonly(f32(4, 5))))
add("gemm", "out", "out[:, ::2]", ValueError, "out must be C-contiguous",
    lambda: g(out=strided(4, 5)))
add("gemm", "out", "is a", ValueError, "out must not overlap a, got arrays sharing memory",
    lambda: (lambda a: ((a, f32(5, 5)), {"out": a}))(f32(5, 5)))
add("gemm", "out", "partly overlaps b", ValueError, "out must not overlap b",
    lambda: (lambda p: ((f32(4, 6), p[0].reshape(6, 5)), {"out": p[1].reshape(4, 5)}))(
        overlapping(30, 20, 10)))
add("gemm", "out", "overlaps bias", ValueError, "out must not overlap bias",
    lambda: (lambda o: g(out=o, bias=o[1]))(f32(4, 5)))
add("gemm", "bias", "shape (6,)", ValueError, "bias must have shape (n=5,), got (6,)",
    lambda: g(bias=f32(6)))
add("gemm", "bias", "2-D (1, 5)", ValueError, "bias must be 1-D, got 2-D array of shape (1, 5)",
    lambda: g(bias=f32(1, 5)))
add("gemm", "bias", "float64", TypeError, "bias must have dtype float32, got float64",
    lambda: g(bias=np.zeros(5)))
add("gemm", "activation", "'gelu'", ValueError, "activation must be None or 'relu', got 'gelu'",
    lambda: g(activation="gelu"))
add("gemm", "activation", "1", TypeError, "activation must be None or 'relu', got 1",
    lambda: g(activation=1))
add("gemm", "beta", "0.5 without out", ValueError, "beta=0.500000 reads out, so out must be given",
    lambda: g(beta=0.5))
add("gemm", "alpha", "'x'", TypeError, "incompatible function arguments",
    lambda: g(alpha="x"))
add("gemm", "trans_a", "None", TypeError, "incompatible function arguments",
    lambda: g(trans_a=None))
add("gemm", "trans_b", "1 (int)", TypeError, "incompatible function arguments",
    lambda: g(trans_b=1))
add("gemm", "trans_a", "positional", TypeError, "incompatible function arguments",
    lambda: ((f32(4, 6), f32(6, 5), True), {}))

# --- activations, forward: x (3, 4) ---------------------------------------------------------
FORWARD = {"relu": (), "leaky_relu": (0.1,), "gelu": (), "tanh": (), "sigmoid": (), "silu": (),
           "elu": (0.5,), "softplus": (2.0, 5.0), "softmax": (-1,), "log_softmax": (0,)}
for name, extra in FORWARD.items():
    def fw(x=None, extra=extra, **kw):
        return (f32(3, 4) if x is None else x, *extra), kw

    add(name, "x", "float64", TypeError, f"{name}: x must have dtype float32, got float64",
        lambda fw=fw: fw(np.ones((3, 4))))
    add(name, "x", "int64", TypeError, "x must have dtype float32, got int64",
        lambda fw=fw: fw(np.ones((3, 4), np.int64)))
    add(name, "x", "list", TypeError, "x must be a numpy.ndarray of float32, got list",
        lambda fw=fw: fw([1.0, 2.0]))
    add(name, "x", "x[:, ::2]", ValueError, "x must be C-contiguous",
        lambda fw=fw: fw(strided(3, 4)))
    add(name, "x", "x.T", ValueError, "x must be C-contiguous", lambda fw=fw: fw(f32(4, 3).T))
    add(name, "out", "wrong shape", ValueError, "out must have the input's shape (3, 4), got (4, 3)",
        lambda fw=fw: fw(out=f32(4, 3)))
    add(name, "out", "float64", TypeError, "out must have dtype float32, got float64",
        lambda fw=fw: fw(out=np.zeros((3, 4))))
    add(name, "out", "read-only", ValueError, "out must be writeable",
        lambda fw=fw: fw(out=readonly(f32(3, 4))))
    add(name, "out", "partly overlaps x", ValueError,
        "out must not overlap x (except by being the very same array)",
        lambda fw=fw: (lambda p: fw(p[0], out=p[1]))(overlapping(12, 12, 5)))

add("gelu", "approximate", "'erf'", ValueError, "gelu: approximate must be 'none' or 'tanh', got 'erf'",
    lambda: ((f32(3),), {"approximate": "erf"}))
add("gelu", "approximate", "None", TypeError, "incompatible function arguments",
    lambda: ((f32(3),), {"approximate": None}))
add("leaky_relu", "negative_slope", "'a'", TypeError, "incompatible function arguments",
    lambda: ((f32(3), "a"), {}))
add("elu", "alpha", "'a'", TypeError, "incompatible function arguments", lambda: ((f32(3), "a"), {}))
add("softplus", "threshold", "None", TypeError, "incompatible function arguments",
    lambda: ((f32(3), 1.0, None), {}))
for name in ("softmax", "log_softmax"):
    add(name, "dim", "2 of 2-d", IndexError,
        f"{name}: Dimension out of range (expected to be in range of [-2, 1], but got 2)",
        lambda: ((f32(3, 4), 2), {}))
    add(name, "dim", "None", TypeError, "incompatible function arguments",
        lambda: ((f32(3, 4), None), {}))
    add(name + "_backward", "dim", "-3 of 2-d", IndexError,
        "Dimension out of range (expected to be in range of [-2, 1], but got -3)",
        lambda: ((f32(3, 4), f32(3, 4), -3), {}))

# --- activations, backward: grad_output (3, 4) and the saved x or y -------------------------
BACKWARD = {"relu_backward": ("x", ()), "leaky_relu_backward": ("x", (0.1,)),
            "gelu_backward": ("x", ()), "tanh_backward": ("y", ()),
            "sigmoid_backward": ("y", ()), "silu_backward": ("x", ()),
            "elu_backward": ("x", (0.5,)), "softplus_backward": ("x", (2.0, 5.0)),
            "softmax_backward": ("y", (1,)), "log_softmax_backward": ("y", (0,))}
for name, (saved, extra) in BACKWARD.items():
    def bw(dy=None, s=None, extra=extra, **kw):
        return (f32(3, 4) if dy is None else dy, f32(3, 4) if s is None else s, *extra), kw

    add(name, "grad_output", "float64", TypeError,
        f"{name}: grad_output must have dtype float32, got float64",
        lambda bw=bw: bw(dy=np.ones((3, 4))))
    add(name, saved, "int32", TypeError, f"{saved} must have dtype float32, got int32",
        lambda bw=bw: bw(s=np.ones((3, 4), np.int32)))
    add(name, saved, "list", TypeError, f"{saved} must be a numpy.ndarray of float32, got list",
        lambda bw=bw: bw(s=[1.0] * 12))
    add(name, saved, "shape != grad_output", ValueError,
        f"{saved} must have the shape of grad_output (3, 4), got (4, 3)",
        lambda bw=bw: bw(s=f32(4, 3)))
    add(name, "grad_output", "[:, ::2]", ValueError, "grad_output must be C-contiguous",
        lambda bw=bw: bw(dy=strided(3, 4)))
    add(name, saved, "[:, ::2]", ValueError, f"{saved} must be C-contiguous",
        lambda bw=bw: bw(s=strided(3, 4)))
    add(name, "out", "wrong shape", ValueError, "out must have the input's shape (3, 4), got (12,)",
        lambda bw=bw: bw(out=f32(12)))
    add(name, "out", "read-only", ValueError, "out must be writeable",
        lambda bw=bw: bw(out=readonly(f32(3, 4))))
    add(name, "out", f"is {saved}", ValueError, f"out must not overlap {saved}",
        lambda bw=bw: (lambda s: bw(s=s, out=s))(f32(3, 4)))
    add(name, "out", "partly overlaps grad_output", ValueError,
        "out must not overlap grad_output (except by being the very same array)",
        lambda bw=bw: (lambda p: bw(dy=p[0].reshape(3, 4), out=p[1].reshape(3, 4)))(
            overlapping(12, 12, 4)))

add("gelu_backward", "approximate", "'exact'", ValueError,
    "gelu_backward: approximate must be 'none' or 'tanh', got 'exact'",
    lambda: ((f32(3), f32(3)), {"approximate": "exact"}))


# --- softmax_cross_entropy: logits (4, 5), labels (4,) --------------------------------------
def sx(logits=None, labels=None, **kw):
    lab = np.array([0, 4, 2, 1], np.int64) if labels is None else labels
    return (f32(4, 5) if logits is None else logits, lab), kw


SX = "softmax_cross_entropy"
add(SX, "logits", "float64", TypeError, f"{SX}: logits must have dtype float32, got float64",
    lambda: sx(logits=np.ones((4, 5))))
add(SX, "logits", "list", TypeError, "logits must be a numpy.ndarray of float32, got list",
    lambda: sx(logits=[[0.0] * 5] * 4))
add(SX, "logits", "1-D", ValueError, "logits must be 2-D, got 1-D array of shape (5,)",
    lambda: sx(logits=f32(5)))
add(SX, "logits", "[:, ::2]", ValueError, "logits must be C-contiguous",
    lambda: sx(logits=strided(4, 5)))
add(SX, "logits", "no classes (4, 0)", ValueError, "logits must have at least one class",
    lambda: sx(logits=f32(4, 0)))
add(SX, "labels", "float32", TypeError, "labels must have dtype int32 or int64, got float32",
    lambda: sx(labels=np.zeros(4, np.float32)))
add(SX, "labels", "uint8", TypeError, "labels must have dtype int32 or int64, got uint8",
    lambda: sx(labels=np.zeros(4, np.uint8)))
add(SX, "labels", "int16", TypeError, "labels must have dtype int32 or int64, got int16",
    lambda: sx(labels=np.zeros(4, np.int16)))
add(SX, "labels", "list", TypeError, "labels must be a numpy.ndarray of int32 or int64, got list",
    lambda: sx(labels=[0, 1, 2, 3]))
add(SX, "labels", "2-D", ValueError, "labels must be 1-D, got 2-D array of shape (4, 1)",
    lambda: sx(labels=np.zeros((4, 1), np.int64)))
add(SX, "labels", "wrong length", ValueError,
    "labels must have shape (batch=4,) to match logits (4, 5), got (3,)",
    lambda: sx(labels=np.zeros(3, np.int32)))
add(SX, "labels", "[::2]", ValueError, "labels must be C-contiguous",
    lambda: sx(labels=np.zeros(8, np.int64)[::2]))
add(SX, "labels", "== classes", ValueError,
    "labels[2] = 5 is out of range for 5 classes (expected 0 <= label < 5)",
    lambda: sx(labels=np.array([0, 1, 5, 2], np.int32)))
add(SX, "labels", "negative", ValueError, "labels[1] = -1 is out of range for 5 classes",
    lambda: sx(labels=np.array([0, -1, 2, 3], np.int64)))
add(SX, "labels", "2**40 (int64)", ValueError, "labels[3] = 1099511627776 is out of range",
    lambda: sx(labels=np.array([0, 1, 2, 2**40], np.int64)))
add(SX, "reduction", "'avg'", ValueError, "reduction must be 'none', 'mean' or 'sum', got 'avg'",
    lambda: sx(reduction="avg"))
add(SX, "label_smoothing", "-0.1", ValueError,
    "label_smoothing must be in [0.0, 1.0], got -0.100000", lambda: sx(label_smoothing=-0.1))
add(SX, "label_smoothing", "1.5", ValueError, "label_smoothing must be in [0.0, 1.0], got 1.5",
    lambda: sx(label_smoothing=1.5))
add(SX, "label_smoothing", "nan", ValueError, "label_smoothing must be in [0.0, 1.0], got nan",
    lambda: sx(label_smoothing=float("nan")))
add(SX, "compute_grad", "None", TypeError, "incompatible function arguments",
    lambda: sx(compute_grad=None))
add(SX, "out", "wrong shape", ValueError, "out must have shape (4, 5), got (5, 4)",
    lambda: sx(out=f32(5, 4)))
add(SX, "out", "float64", TypeError, "out must have dtype float32, got float64",
    lambda: sx(out=np.zeros((4, 5))))
add(SX, "out", "read-only", ValueError, "out must be writeable",
    lambda: sx(out=readonly(f32(4, 5))))
add(SX, "out", "partly overlaps logits", ValueError,
    "out must not overlap logits (except by being the very same array)",
    lambda: (lambda p: sx(logits=p[0].reshape(4, 5), out=p[1].reshape(4, 5)))(
        overlapping(20, 20, 3)))

# --- global_norm: x (any rank) ----------------------------------------------------------------
GN = "global_norm"
add(GN, "x", "float64", TypeError, f"{GN}: x must have dtype float32, got float64",
    lambda: ((np.ones(10),), {}))
add(GN, "x", "list", TypeError, "x must be a numpy.ndarray of float32, got list",
    lambda: (([1.0, 2.0],), {}))
add(GN, "x", "[::2]", ValueError, "x must be C-contiguous", lambda: ((f32(10)[::2],), {}))
for bad in (1.0, 0.0, -np.inf, np.nan, 3.0):
    add(GN, "norm_type", repr(float(bad)), ValueError, "norm_type must be 2.0 or inf, got",
        lambda bad=bad: ((f32(10), bad), {}))
add(GN, "norm_type", "'fro'", TypeError, "incompatible function arguments",
    lambda: ((f32(10), "fro"), {}))


def _snapshot(args, kwargs):
    arrays = [v for v in (*args, *kwargs.values()) if isinstance(v, np.ndarray)]
    return [(a, a.copy()) for a in arrays]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case):
    args, kwargs = case.make()
    before = _snapshot(args, kwargs)
    with pytest.raises(case.exc) as info:
        getattr(sg.ops, case.fn)(*args, **kwargs)
    assert type(info.value) is case.exc, f"raised {type(info.value).__name__}: {info.value}"
    assert case.fragment in str(info.value), (
        f"message {str(info.value)!r} lacks {case.fragment!r}")
    for arr, copy in before:
        np.testing.assert_array_equal(arr, copy, err_msg=f"{case.id}: an argument was modified")


def test_catalogue_covers_every_op():
    assert set(sg.ops.__all__) == {c.fn for c in CASES}, (
        f"ops without bad-input cases: {set(sg.ops.__all__) - {c.fn for c in CASES}}")


def test_ids_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})


def catalogue_markdown() -> str:
    rows = ["| function | argument | bad input | exception | message fragment |",
            "|---|---|---|---|---|"]
    rows += [f"| {c.fn} | {c.arg} | {c.bad} | {c.exc.__name__} | `{c.fragment}` |" for c in CASES]
    return "\n".join(rows)


if __name__ == "__main__":
    print(catalogue_markdown())
