"""The channels-first <-> channels-last conversion kernel (cpp/layout/, _core.to_channels_last /
to_channels_first, nn._layout.to_last / to_first): exact against numpy's moveaxis for odd
shapes around the 8x8 block and the 64x64 tile, on every ISA path and for 1 and 2 threads;
its binding refuses bad arguments naming them and writes nothing."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import num_threads

from steadygrad import _core
from steadygrad.nn import _layout

TIME_BUDGET_S = 10

# (n, c, *spatial): below, at and past the 8x8 register block and the 64-element cache tile
SHAPES = [(1, 1, 1), (2, 3, 5), (3, 8, 8), (1, 9, 17), (2, 64, 64), (1, 65, 130), (2, 7, 129),
          (1, 1, 1, 1), (2, 3, 4, 5), (1, 16, 8, 8), (3, 17, 9, 13), (1, 130, 1, 67),
          (2, 33, 33, 3), (4, 5, 32, 32)]


def _x(shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(sum(shape))
    return rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("shape", SHAPES, ids=[str(s) for s in SHAPES])
def test_round_trip_matches_numpy(isa: str, shape: tuple[int, ...]) -> None:
    x = _x(shape)
    want = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    out = np.full(_layout.last_shape(shape), np.nan, np.float32)
    y = _layout.to_last(x, out)
    assert y is out
    np.testing.assert_array_equal(y, want, err_msg=f"to_last {shape} on {isa}")
    back = np.full(shape, np.nan, np.float32)
    np.testing.assert_array_equal(_layout.to_first(y, back), x, err_msg=f"to_first {shape}")
    np.testing.assert_array_equal(_core.to_channels_last(x), want)  # out allocated
    assert _layout.first_shape(want.shape) == shape


def test_thread_count_gives_the_same_bits() -> None:
    x = _x((3, 70, 40, 41))  # large enough for the parallel path
    got = []
    for t in (1, 2):
        with num_threads(t):
            got.append((_core.to_channels_last(x), _core.to_channels_first(
                np.ascontiguousarray(np.moveaxis(x, 1, -1)))))
    np.testing.assert_array_equal(got[0][0], got[1][0])
    np.testing.assert_array_equal(got[0][1], got[1][1])
    np.testing.assert_array_equal(got[0][0], np.moveaxis(x, 1, -1))
    np.testing.assert_array_equal(got[0][1], x)


def _bad_cases() -> list[tuple[str, dict, type[Exception], str]]:
    x = _x((2, 3, 4, 5))
    buf = np.zeros(400, np.float32)
    ro = np.zeros((2, 4, 5, 3), np.float32)
    ro.flags.writeable = False
    return [
        ("to_channels_last", dict(x=x.astype(np.float64)), TypeError,
         "to_channels_last: x must have dtype float32, got float64"),
        ("to_channels_last", dict(x=[1.0]), TypeError, "x must be a numpy.ndarray"),
        ("to_channels_last", dict(x=_x((2, 3))), ValueError,
         "to_channels_last: x must have rank 3 (n, c, l) or 4 (n, c, h, w), got shape (2, 3)"),
        ("to_channels_first", dict(x=_x((1, 2, 3, 4, 5))), ValueError,
         "to_channels_first: x must have rank 3 (n, l, c) or 4 (n, h, w, c)"),
        ("to_channels_last", dict(x=_x((2, 3, 4, 10))[..., ::2]), ValueError,
         "x must be C-contiguous"),
        ("to_channels_last", dict(x=x, out=np.zeros((2, 3, 4, 5), np.float32)), ValueError,
         "to_channels_last: out must have shape (2, 4, 5, 3) (x (2, 3, 4, 5) in channels-last "
         "order), got (2, 3, 4, 5)"),
        ("to_channels_first", dict(x=x, out=np.zeros((2, 4, 5, 3), np.float32)), ValueError,
         "to_channels_first: out must have shape (2, 5, 3, 4)"),
        ("to_channels_last", dict(x=x, out=np.zeros((2, 4, 5, 3))), TypeError,
         "out must have dtype float32, got float64"),
        ("to_channels_last", dict(x=x, out=ro), ValueError, "out must be writeable"),
        ("to_channels_last", dict(x=buf[:120].reshape(2, 3, 4, 5),
                                  out=buf[60:180].reshape(2, 4, 5, 3)), ValueError,
         "out must not overlap x"),
        ("to_channels_last", dict(x=x, out=x.reshape(2, 4, 5, 3)), ValueError,
         "out must not overlap x"),
    ]


@pytest.mark.parametrize("case", range(len(_bad_cases())))
def test_binding_refuses_bad_arguments(case: int) -> None:
    fn, kw, exc, fragment = _bad_cases()[case]
    arrays = {k: v.copy() for k, v in kw.items() if isinstance(v, np.ndarray)}
    with pytest.raises(exc) as info:
        getattr(_core, fn)(**kw)
    assert type(info.value) is exc
    assert fragment in str(info.value), str(info.value)
    for k, v in arrays.items():
        np.testing.assert_array_equal(kw[k], v, err_msg=f"{fn}: {k} was modified")
