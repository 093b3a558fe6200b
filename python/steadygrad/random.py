"""The library's random state: one numpy Generator used by `nn.init` and `nn.Dropout`.

`sg.manual_seed(seed)` replaces it, so initialisation and dropout masks are reproducible.
Dropout draws one 64-bit seed per forward from it; the mask itself comes from a
counter-based hash in C++ (identical for any thread count or ISA path).
"""

from __future__ import annotations

import numpy as np

__all__ = ["draw_seed", "generator", "manual_seed"]

_generator = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed the library's generator (as torch.manual_seed) and return it."""
    global _generator
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"manual_seed: seed must be an int, got {type(seed).__name__}")
    _generator = np.random.default_rng(int(seed))
    return _generator


def generator() -> np.random.Generator:
    """The current generator (replaced by manual_seed, so fetch it on each use)."""
    return _generator


def draw_seed() -> int:
    """A fresh 64-bit seed for a counter-based kernel (e.g. one dropout mask)."""
    return int(_generator.integers(0, 2**63 - 1, dtype=np.int64))
