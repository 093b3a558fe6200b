"""Network pieces the CNN tests share (imported by test modules and by the fresh processes
some of them start)."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

from steadygrad import nn


def resblock(cin: int, cout: int, stride: int) -> nn.Module:
    """A ResNet basic block (conv3x3-BN-ReLU-conv3x3-BN + shortcut, then ReLU), as C2's."""
    body = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(), nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
                         nn.BatchNorm2d(cout))
    short = None if stride == 1 and cin == cout else nn.Sequential(
        nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
    return nn.Sequential(nn.Residual(body, shortcut=short), nn.ReLU())


def traced_peak(step: Callable[[], object], times: int = 3) -> int:
    """Peak bytes Python's allocator holds (tracemalloc) over `times` calls of step."""
    tracemalloc.start()
    try:
        for _ in range(times):
            step()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
