"""Losses with torch's names: CrossEntropyLoss (logits, integer targets) and MSELoss.
`loss_fn(pred, target)` computes the loss and its gradient in one C++ call and returns the
loss as a Python float; `loss_fn.backward()` returns dL/dpred (an array the loss reuses)."""

from __future__ import annotations

import numpy as np

from steadygrad import _core
from steadygrad.nn._calls import located
from steadygrad.nn._util import real_arg


class _Loss:
    def __init__(self, reduction: str) -> None:
        if reduction not in ("mean", "sum"):
            raise ValueError(f"{type(self).__name__}: reduction must be 'mean' or 'sum', got {reduction!r}")
        self.reduction = reduction
        self._grad: np.ndarray | None = None
        self._phase = 0
        self._work: np.ndarray | None = None

    def _out(self, pred: object) -> np.ndarray | None:
        if not isinstance(pred, np.ndarray) or pred.dtype != np.float32:
            return None
        if self._work is None or self._work.shape != pred.shape or np.may_share_memory(self._work, pred):
            self._work = np.empty(pred.shape, np.float32)
        return self._work

    def _compute(self, pred: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
        raise NotImplementedError

    def __call__(self, input: np.ndarray, target: np.ndarray) -> float:
        try:
            loss, grad = self._compute(input, target)
        except (TypeError, ValueError) as e:
            raise located(e, f"{self!r}: ") from e
        self._grad, self._phase = grad, 1
        return float(loss)

    def forward(self, input: np.ndarray, target: np.ndarray) -> float:
        return self(input, target)

    def backward(self) -> np.ndarray:
        """dL/dinput of the last call."""
        if self._phase == 0:
            raise RuntimeError(f"{self!r}: backward called before forward")
        if self._phase == 2:
            raise RuntimeError(f"{self!r}: backward called twice for one forward")
        self._phase = 2
        assert self._grad is not None
        return self._grad


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy of (batch, classes) logits against int32/int64 class indices."""

    def __init__(self, reduction: str = "mean", label_smoothing: float = 0.0) -> None:
        super().__init__(reduction)
        label_smoothing = real_arg("CrossEntropyLoss", "label_smoothing", label_smoothing)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be in [0.0, 1.0], got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def _compute(self, pred: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
        return _core.softmax_cross_entropy(pred, target, reduction=self.reduction,
                                           label_smoothing=self.label_smoothing,
                                           out=self._out(pred))

    def __repr__(self) -> str:
        return f"CrossEntropyLoss(reduction='{self.reduction}', label_smoothing={self.label_smoothing})"


class MSELoss(_Loss):
    """Mean (or summed) squared error between same-shaped float32 arrays."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__(reduction)

    def _compute(self, pred: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
        return _core.mse_loss(pred, target, reduction=self.reduction, out=self._out(pred))

    def __repr__(self) -> str:
        return f"MSELoss(reduction='{self.reduction}')"
