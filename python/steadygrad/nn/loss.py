"""Losses with torch's names, signatures and defaults: CrossEntropyLoss, NLLLoss,
BCEWithLogitsLoss, BCELoss, MSELoss, L1Loss, SmoothL1Loss, HuberLoss.

`loss_fn(input, target)` computes the loss and its gradient in one C++ call and returns the loss:
a Python float for reduction 'mean' / 'sum', the float32 per-item losses for 'none' (shape
(batch,) for the class losses, the input's shape for the elementwise ones).
`loss_fn.backward(grad_output=None)` returns dL/dinput (an array the loss reuses), like torch's
`loss.backward(gradient)`: for 'mean' / 'sum' grad_output is an optional real scale (default 1);
for 'none' it is required, a float32 array of the loss's shape (the upstream dL/dloss)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from steadygrad import _core
from steadygrad.nn._calls import located
from steadygrad.nn._util import int_arg, real_arg

_REDUCTIONS = ("none", "mean", "sum")


def _legacy_reduction(owner: str, size_average: object, reduce: object, reduction: str) -> str:
    """torch's _Reduction.legacy_get_string: the deprecated size_average / reduce flags, when
    given, decide the reduction (a warning says so, as torch's)."""
    for name, v in (("size_average", size_average), ("reduce", reduce)):
        if v is not None and not isinstance(v, (bool, np.bool_)):
            raise TypeError(f"{owner}: {name} must be a bool or None (deprecated; use reduction=), "
                            f"got {v!r} ({type(v).__name__})")
    if size_average is None and reduce is None:
        return reduction
    warnings.warn(f"{owner}: size_average and reduce args will be deprecated, please use "
                  "reduction instead.", DeprecationWarning, stacklevel=3)
    sa = True if size_average is None else bool(size_average)
    rd = True if reduce is None else bool(reduce)
    return "none" if not rd else ("mean" if sa else "sum")


def _weight_arg(owner: str, name: str, value: object, ndim: int | None = None) -> np.ndarray | None:
    """A weight given to a constructor as a float32 array of its own (None stays None): real
    numbers only, non-negative, of rank ndim when given."""
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{owner}: {name} must be an array of real numbers, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{owner}: {name} must be {ndim}-D (one weight per class), got shape {arr.shape}")
    w = np.array(arr, dtype=np.float32, order="C")
    bad = np.flatnonzero(~(w >= 0))
    if bad.size:
        raise ValueError(f"{owner}: {name} must be non-negative, got {name}.flat[{bad[0]}] = "
                         f"{w.flat[bad[0]]}")
    return w


class _Loss:
    """The call / backward protocol shared by every loss; subclasses give `_compute`."""

    _per_row = False  # 'none' losses per row (class losses) rather than per element

    def __init__(self, reduction: str) -> None:
        if reduction not in _REDUCTIONS:
            raise ValueError(f"{type(self).__name__}: reduction must be 'none', 'mean' or 'sum', "
                             f"got {reduction!r}")
        self.reduction = reduction
        self._grad: np.ndarray | None = None
        self._phase = 0
        self._work: np.ndarray | None = None
        self._loss_shape: tuple[int, ...] = ()

    def _out(self, pred: object) -> np.ndarray | None:
        if not isinstance(pred, np.ndarray) or pred.dtype != np.float32:
            return None
        if self._work is None or self._work.shape != pred.shape or np.may_share_memory(self._work, pred):
            self._work = np.empty(pred.shape, np.float32)
        return self._work

    def _compute(self, pred: np.ndarray, target: np.ndarray) -> tuple[Any, np.ndarray | None]:
        raise NotImplementedError

    def __call__(self, input: np.ndarray, target: np.ndarray) -> Any:
        try:
            loss, grad = self._compute(input, target)
        except (TypeError, ValueError) as e:
            raise located(e, f"{self!r}: ") from e
        self._grad, self._phase = grad, 1
        if self.reduction == "none":
            self._loss_shape = tuple(loss.shape)
            return loss
        return float(loss)

    def forward(self, input: np.ndarray, target: np.ndarray) -> Any:
        return self(input, target)

    def backward(self, grad_output: object = None) -> np.ndarray:
        """dL/dinput of the last call, times the upstream gradient grad_output (see the module
        docstring). A bad grad_output raises and keeps the pending gradient."""
        if self._phase == 0:
            raise RuntimeError(f"{self!r}: backward called before forward")
        if self._phase == 2:
            raise RuntimeError(f"{self!r}: backward called twice for one forward")
        assert self._grad is not None
        if self.reduction == "none":
            g = self._upstream(grad_output)
            np.multiply(self._grad, g[:, None] if self._per_row and self._grad.ndim >= 2 else g,
                        out=self._grad)
        elif grad_output is not None:
            s = real_arg(repr(self), "grad_output (the upstream gradient of a scalar loss)", grad_output)
            if s != 1.0:
                np.multiply(self._grad, np.float32(s), out=self._grad)
        self._phase = 2
        return self._grad

    def _upstream(self, g: object) -> np.ndarray:
        want = self._loss_shape
        if g is None:
            raise RuntimeError(f"{self!r}: backward() of reduction='none' needs grad_output, the "
                               f"upstream gradient of the loss's shape {want} (torch: grad can be "
                               "implicitly created only for scalar outputs)")
        if not isinstance(g, np.ndarray) or g.dtype != np.float32:
            what = f"{g.dtype} array" if isinstance(g, np.ndarray) else type(g).__name__
            raise TypeError(f"{self!r}: grad_output must be a float32 numpy.ndarray of the loss's "
                            f"shape {want}, got {what}")
        if g.shape != want:
            raise ValueError(f"{self!r}: grad_output must have the loss's shape {want}, got {g.shape}")
        return g

    def _args(self) -> str:
        return f"reduction='{self.reduction}'"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._args()})"


def _shape_repr(w: np.ndarray | None) -> str:
    return "None" if w is None else f"<float32 {tuple(w.shape)}>"


class _ClassLoss(_Loss):
    """Class-index losses over (batch, classes): weight (classes,), ignore_index. As in torch,
    the input may also be (batch, classes, d1, ..., dk) with targets (batch, d1, ..., dk) (or
    probabilities of the input's shape), each position a row, or unbatched (classes,) with a
    0-d target; the kernels see the rows (`_compute_rows`), a copy with classes last."""

    _per_row = True

    def _compute_rows(self, pred: np.ndarray, target: np.ndarray) -> tuple[Any, np.ndarray | None]:
        raise NotImplementedError

    def _compute(self, pred: np.ndarray, target: np.ndarray) -> tuple[Any, np.ndarray | None]:
        if not isinstance(pred, np.ndarray) or not isinstance(target, np.ndarray) or pred.ndim == 2:
            return self._compute_rows(pred, target)
        if pred.ndim == 1:  # unbatched: one row
            loss, grad = self._compute_rows(pred[None], target[None])
            return (loss.reshape(()) if self.reduction == "none" else loss), (
                None if grad is None else grad[0])
        if pred.ndim == 0:
            raise ValueError(f"input must be (batch, classes, ...) or (classes,), got shape {pred.shape}")
        n, c, rest = pred.shape[0], pred.shape[1], pred.shape[2:]
        soft = target.dtype.kind == "f"
        want = pred.shape if soft else (n, *rest)
        if target.shape != want:
            raise ValueError(f"target must have shape {want} for an input of shape {pred.shape} "
                             f"({'probabilities' if soft else 'class indices'}), got {target.shape}")
        rows = np.moveaxis(pred, 1, -1).reshape(-1, c)
        t = np.moveaxis(target, 1, -1).reshape(-1, c) if soft else target.reshape(-1)
        loss, grad = self._compute_rows(rows, t)
        if self.reduction == "none":
            loss = loss.reshape(n, *rest)
        if grad is not None:
            grad = np.ascontiguousarray(np.moveaxis(grad.reshape(n, *rest, c), -1, 1))
        return loss, grad

    def __init__(self, weight: object, ignore_index: int, reduction: str) -> None:
        super().__init__(reduction)
        name = type(self).__name__
        self.weight = _weight_arg(name, "weight", weight, ndim=1)
        self.ignore_index = int_arg(name, "ignore_index", ignore_index)

    def _args(self) -> str:
        s = super()._args()
        if self.weight is not None:
            s += f", weight={_shape_repr(self.weight)}"
        if self.ignore_index != -100:
            s += f", ignore_index={self.ignore_index}"
        return s


class CrossEntropyLoss(_ClassLoss):
    """Softmax cross-entropy of (batch, classes[, d1, ...]) logits (torch.nn.CrossEntropyLoss) against
    int32/int64 class indices (class weights, ignore_index, label smoothing; 'mean' divides by
    the summed weight of the targets not ignored) or float32 class probabilities of the logits'
    shape (ignore_index does not apply; 'mean' divides by the batch)."""

    def __init__(self, weight: object = None, size_average: bool | None = None,
                 ignore_index: int = -100, reduce: bool | None = None, reduction: str = "mean",
                 label_smoothing: float = 0.0) -> None:
        super().__init__(weight, ignore_index,
                         _legacy_reduction("CrossEntropyLoss", size_average, reduce, reduction))
        label_smoothing = real_arg("CrossEntropyLoss", "label_smoothing", label_smoothing)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be in [0.0, 1.0], got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def _compute_rows(self, pred: np.ndarray, target: np.ndarray) -> tuple[Any, np.ndarray | None]:
        return _core.softmax_cross_entropy(pred, target, weight=self.weight,
                                           ignore_index=self.ignore_index,
                                           reduction=self.reduction,
                                           label_smoothing=self.label_smoothing,
                                           out=self._out(pred))

    def _args(self) -> str:
        return f"{super()._args()}, label_smoothing={self.label_smoothing}"


class NLLLoss(_ClassLoss):
    """Negative log-likelihood of (batch, classes[, d1, ...]) log-probabilities against int32/int64 class
    indices (torch.nn.NLLLoss): class weights and ignore_index as CrossEntropyLoss."""

    def __init__(self, weight: object = None, size_average: bool | None = None,
                 ignore_index: int = -100, reduce: bool | None = None,
                 reduction: str = "mean") -> None:
        super().__init__(weight, ignore_index,
                         _legacy_reduction("NLLLoss", size_average, reduce, reduction))

    def _compute_rows(self, pred: np.ndarray, target: np.ndarray) -> tuple[Any, np.ndarray | None]:
        return _core.nll_loss(pred, target, weight=self.weight, ignore_index=self.ignore_index,
                              reduction=self.reduction, out=self._out(pred))


class _ElementLoss(_Loss):
    """Elementwise losses between same-shaped float32 arrays; weights broadcast to the input."""

    def __init__(self, reduction: str) -> None:
        super().__init__(reduction)
        self._broadcast: dict[tuple[str, tuple[int, ...]], np.ndarray] = {}

    def _like(self, name: str, w: np.ndarray | None, pred: object) -> np.ndarray | None:
        """w broadcast to pred's shape (as torch broadcasts a weight), cached per shape."""
        if w is None or not isinstance(pred, np.ndarray) or w.shape == pred.shape:
            return w
        key = (name, tuple(pred.shape))
        b = self._broadcast.get(key)
        if b is None:
            try:
                b = np.ascontiguousarray(np.broadcast_to(w, pred.shape))
            except ValueError:
                raise ValueError(f"{name} of shape {w.shape} cannot be broadcast to the input's "
                                 f"shape {tuple(pred.shape)}") from None
            if len(self._broadcast) >= 8:
                self._broadcast.clear()
            self._broadcast[key] = b
        return b


_ElemKernel = Callable[..., tuple[Any, np.ndarray | None]]


class _PlainElementLoss(_ElementLoss):
    """An elementwise loss with no parameter of its own (MSELoss, L1Loss): torch's constructor
    (with the deprecated size_average / reduce flags) and one kernel, `_core.<_kernel>`."""

    # the kernel's name, looked up in _core at each call (so instrumentation that wraps _core's
    # functions, like CI's kernel-coverage plugin, sees the call)
    _kernel: str

    def __init__(self, size_average: bool | None = None, reduce: bool | None = None,
                 reduction: str = "mean") -> None:
        super().__init__(_legacy_reduction(type(self).__name__, size_average, reduce, reduction))

    def _compute(self, pred: np.ndarray, target: np.ndarray) -> tuple[Any, np.ndarray | None]:
        kernel: _ElemKernel = getattr(_core, self._kernel)
        return kernel(pred, target, reduction=self.reduction, out=self._out(pred))


class MSELoss(_PlainElementLoss):
    """Squared error (torch.nn.MSELoss)."""

    _kernel = "mse_loss"


class L1Loss(_PlainElementLoss):
    """Absolute error (torch.nn.L1Loss); the gradient at 0 is 0."""

    _kernel = "l1_loss"


class _SwitchLoss(_ElementLoss):
    """An elementwise loss with one real parameter, where it switches from quadratic to linear
    (SmoothL1Loss's beta, HuberLoss's delta), named by `_param`: checked by the constructor
    (non-negative; positive where `_positive`), passed to `_kernel` by that name, shown by
    repr."""

    # the kernel's name, looked up in _core at each call (so instrumentation that wraps _core's
    # functions, like CI's kernel-coverage plugin, sees the call)
    _kernel: str
    _param: str
    _positive = False

    def __init__(self, reduction: str, value: object) -> None:
        super().__init__(reduction)
        owner, name = type(self).__name__, self._param
        v = real_arg(owner, name, value)
        if not (v > 0 if self._positive else v >= 0):
            raise ValueError(f"{owner}: {name} must be "
                             f"{'positive' if self._positive else 'non-negative'}, got {v}")
        setattr(self, name, v)

    def _compute(self, pred: np.ndarray, target: np.ndarray) -> tuple[Any, np.ndarray | None]:
        kernel: _ElemKernel = getattr(_core, self._kernel)
        return kernel(pred, target, reduction=self.reduction, out=self._out(pred),
                      **{self._param: getattr(self, self._param)})

    def _args(self) -> str:
        return f"{super()._args()}, {self._param}={getattr(self, self._param)}"


class SmoothL1Loss(_SwitchLoss):
    """torch.nn.SmoothL1Loss: 0.5 d^2 / beta where |d| < beta, else |d| - beta / 2 (beta 0 is
    L1Loss)."""

    _kernel = "smooth_l1_loss"
    _param = "beta"
    beta: float

    def __init__(self, size_average: bool | None = None, reduce: bool | None = None,
                 reduction: str = "mean", beta: float = 1.0) -> None:
        super().__init__(_legacy_reduction("SmoothL1Loss", size_average, reduce, reduction), beta)


class HuberLoss(_SwitchLoss):
    """torch.nn.HuberLoss: 0.5 d^2 where |d| < delta, else delta (|d| - delta / 2)."""

    _kernel = "huber_loss"
    _param = "delta"
    _positive = True
    delta: float

    def __init__(self, reduction: str = "mean", delta: float = 1.0) -> None:
        super().__init__(reduction, delta)


class BCELoss(_ElementLoss):
    """Binary cross-entropy of probabilities in [0, 1] (torch.nn.BCELoss: each log clamped at
    -100); weight broadcast to the input."""

    def __init__(self, weight: object = None, size_average: bool | None = None,
                 reduce: bool | None = None, reduction: str = "mean") -> None:
        super().__init__(_legacy_reduction("BCELoss", size_average, reduce, reduction))
        self.weight = _weight_arg("BCELoss", "weight", weight)

    def _compute(self, pred: np.ndarray, target: np.ndarray) -> tuple[Any, np.ndarray | None]:
        return _core.binary_cross_entropy(pred, target, weight=self._like("weight", self.weight, pred),
                                          reduction=self.reduction, out=self._out(pred))

    def _args(self) -> str:
        s = super()._args()
        return s if self.weight is None else f"{s}, weight={_shape_repr(self.weight)}"


class BCEWithLogitsLoss(_ElementLoss):
    """Sigmoid + binary cross-entropy on logits in one stable pass
    (torch.nn.BCEWithLogitsLoss): finite for any finite logit; weight broadcast to the input,
    pos_weight (typically (classes,)) broadcast over the input's last dimension."""

    def __init__(self, weight: object = None, size_average: bool | None = None,
                 reduce: bool | None = None, reduction: str = "mean",
                 pos_weight: object = None) -> None:
        super().__init__(_legacy_reduction("BCEWithLogitsLoss", size_average, reduce, reduction))
        self.weight = _weight_arg("BCEWithLogitsLoss", "weight", weight)
        self.pos_weight = _weight_arg("BCEWithLogitsLoss", "pos_weight", pos_weight)

    def _compute(self, pred: np.ndarray, target: np.ndarray) -> tuple[Any, np.ndarray | None]:
        return _core.binary_cross_entropy_with_logits(
            pred, target, weight=self._like("weight", self.weight, pred),
            pos_weight=self._like("pos_weight", self.pos_weight, pred),
            reduction=self.reduction, out=self._out(pred))

    def _args(self) -> str:
        s = super()._args()
        if self.weight is not None:
            s += f", weight={_shape_repr(self.weight)}"
        if self.pos_weight is not None:
            s += f", pos_weight={_shape_repr(self.pos_weight)}"
        return s
