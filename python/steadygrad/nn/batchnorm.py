"""BatchNorm1d on (batch, num_features) with torch's semantics: biased batch variance to
normalise, unbiased variance into running_var, momentum=None for a cumulative average, eval
mode on running statistics. Forward and backward are each one fused, deterministic kernel."""

from __future__ import annotations

import numpy as np

from steadygrad import _core
from steadygrad.nn._util import check_rows, grad_input_out, work_rows
from steadygrad.nn.module import Module
from steadygrad.nn.parameter import Parameter


class BatchNorm1d(Module):
    # "relu" while a Sequential runs the following ReLU fused into this layer: forward stores
    # max(0, y) and the backward masks grad_output by y > 0 in its own kernel, recomputing y's
    # sign from the input (bit for bit), so the output is not kept for the backward.
    _epilogue = "none"

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True) -> None:
        super().__init__()
        if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)) or num_features < 1:
            raise ValueError(f"BatchNorm1d: num_features must be a positive int, got {num_features!r}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"BatchNorm1d: momentum must be in [0, 1] or None, got {momentum}")
        if not eps >= 0.0:
            raise ValueError(f"BatchNorm1d: eps must be >= 0, got {eps}")
        c = int(num_features)
        self.num_features, self.eps, self.momentum = c, float(eps), momentum
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
        if affine:
            self.weight = Parameter(np.ones(c, np.float32))
            self.bias = Parameter(np.zeros(c, np.float32))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(c, np.float32))
            self.register_buffer("running_var", np.ones(c, np.float32))
            self.register_buffer("num_batches_tracked", np.zeros((), np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self._flatten_parameters()
        self._save_mean = np.zeros(c, np.float32)
        self._save_invstd = np.zeros(c, np.float32)
        self._x: np.ndarray | None = None
        self._relu = False  # the forward fused a ReLU
        self._batch_stats = True

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean[...] = 0.0
            self.running_var[...] = 1.0
            self.num_batches_tracked[...] = 0

    def forward(self, x: np.ndarray) -> np.ndarray:
        # torch's _BatchNorm.forward: batch statistics in training or when both buffers are
        # None; buffers updated (and counted) only in training with track_running_stats
        use_batch = self.training or (self.running_mean is None and self.running_var is None)
        track = self.track_running_stats or not self.training
        out = work_rows(self, x, self.num_features)
        w, b = self.weight, self.bias
        y = _core.batchnorm_forward(
            x, None if w is None else w.data, None if b is None else b.data,
            self.running_mean if track else None, self.running_var if track else None,
            self.num_batches_tracked if self.training and self.track_running_stats else None,
            self._save_mean, self._save_invstd, use_batch_stats=use_batch,
            momentum=self.momentum, eps=self.eps, out=out, activation=self._epilogue)
        self._x, self._batch_stats = x, use_batch
        self._relu = self._epilogue == "relu"
        return y

    def _backward(self, grad_output: np.ndarray) -> np.ndarray:
        w, b, x = self.weight, self.bias, self._x
        assert x is not None
        need = self._input_grad
        dx = grad_input_out(self, x, grad_output)  # may be x: each element read before written
        grad_input = _core.batchnorm_backward(
            grad_output, x, None if w is None else w.data, self._save_mean, self._save_invstd,
            None if w is None else w.grad_buffer, None if b is None else b.grad_buffer,
            batch_stats=self._batch_stats, accumulate=w is not None and w.grad_fresh,
            accumulate_bias=b is not None and b.grad_fresh, compute_grad_input=need,
            grad_input=dx, activation="relu" if self._relu else "none",
            bias=None if b is None else b.data)
        if w is not None and b is not None:
            w.mark_grad_fresh()
            b.mark_grad_fresh()
        return grad_input

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        check_rows(shape, self.num_features)
        return tuple(shape)

    def memory(self, shape: tuple[int, ...]) -> tuple[int, int]:
        n = 4 * shape[0] * self.num_features
        return n + 8 * self.num_features, n

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")
