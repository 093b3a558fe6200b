"""torch's non-zero padding modes (reflect, replicate, circular) for the convolutions: the
input padded explicitly on channels-last (n, h, w, c) arrays, and the adjoint that folds the
padded input's gradient back onto the pixels each padded position copied (fixed order)."""

from __future__ import annotations

import numpy as np

Pads = tuple[tuple[int, int], tuple[int, int]]  # ((top, bottom), (left, right))


def _pad_index(size: int, before: int, after: int, mode: str) -> np.ndarray:
    """For each position of the padded axis, the input position it copies (np.pad's
    reflect / edge / wrap, which are torch's reflect / replicate / circular)."""
    q = np.arange(-before, size + after)
    if mode == "reflect":
        q = np.abs(q)
        return np.where(q >= size, 2 * (size - 1) - q, q)
    if mode == "replicate":
        return np.clip(q, 0, size - 1)
    return q % size  # circular


def pad_into(x4: np.ndarray, xp: np.ndarray, pads: Pads, mode: str) -> np.ndarray:
    """xp (n, h + top + bottom, w + left + right, c) = x4 (n, h, w, c) padded by mode."""
    (ph0, ph1), (pw0, pw1) = pads
    h, w = x4.shape[1], x4.shape[2]
    xp[:, ph0:ph0 + h, pw0:pw0 + w] = x4
    iw = _pad_index(w, pw0, pw1, mode)
    for j in (*range(pw0), *range(pw0 + w, xp.shape[2])):
        xp[:, ph0:ph0 + h, j] = x4[:, :, iw[j]]
    ih = _pad_index(h, ph0, ph1, mode)
    for i in (*range(ph0), *range(ph0 + h, xp.shape[1])):
        xp[:, i] = xp[:, ph0 + ih[i]]
    return xp


def fold_into(dp: np.ndarray, out: np.ndarray, pads: Pads, mode: str) -> None:
    """out (n, h, w, c) = the gradient of the padded input dp summed back onto the pixels each
    padded position copied (in a fixed order; dp is overwritten)."""
    (ph0, ph1), (pw0, pw1) = pads
    h, w = out.shape[1], out.shape[2]
    iw = _pad_index(w, pw0, pw1, mode)
    for j in (*range(pw0), *range(pw0 + w, dp.shape[2])):
        dp[:, :, pw0 + iw[j]] += dp[:, :, j]
    ih = _pad_index(h, ph0, ph1, mode)
    for i in (*range(ph0), *range(ph0 + h, dp.shape[1])):
        dp[:, ph0 + ih[i], pw0:pw0 + w] += dp[:, i, pw0:pw0 + w]
    np.copyto(out, dp[:, ph0:ph0 + h, pw0:pw0 + w])
