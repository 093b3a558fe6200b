"""BatchNorm1d on (batch, num_features) with torch's semantics: biased batch variance to
normalise, unbiased variance into running_var, momentum=None for a cumulative average, eval
mode on running statistics. Forward and backward are each one fused, deterministic kernel."""

from __future__ import annotations

import numpy as np

from steadygrad import _core
from steadygrad.nn import running_stats
from steadygrad.nn._util import check_rows, grad_input_out, real_arg, work_rows
from steadygrad.nn.module import Module
from steadygrad.nn.parameter import Parameter


class BatchNorm1d(Module):
    # Registered with register_buffer (None when track_running_stats=False).
    running_mean: np.ndarray | None
    running_var: np.ndarray | None
    num_batches_tracked: np.ndarray | None

    # What a Sequential's plan may ask of it (nn.plan): a ReLU fused into its store, whose
    # backward it applies too (masking grad_output by y > 0, y's sign recomputed from the input
    # bit for bit, so the output is not kept); dL/dx left out or written over the input (each
    # element is read before it is written); an output of its own its backward never reads.
    fusable_epilogues = frozenset({"relu"})
    epilogue_masks_grad = True
    grad_into_input = True
    skips_grad_input = True
    owns_output = True
    reads_output_in_backward = False
    # For sg.fit's checks: in training mode it normalises over the batch, which 1 sample cannot.
    normalizes_over_batch = True

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True) -> None:
        super().__init__()
        if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)) or num_features < 1:
            raise ValueError(f"BatchNorm1d: num_features must be a positive int, got {num_features!r}")
        if momentum is not None:
            momentum = real_arg("BatchNorm1d", "momentum", momentum)
        eps = real_arg("BatchNorm1d", "eps", eps)
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
        self._ctx: _core.BatchNormContext | None = None  # what the forward left for the backward
        self._x: np.ndarray | None = None

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            rm, rv, nbt = self.running_mean, self.running_var, self.num_batches_tracked
            assert rm is not None and rv is not None and nbt is not None  # registered in __init__
            rm[...] = 0.0
            rv[...] = 1.0
            nbt[...] = 0

    def forward(self, x: np.ndarray, *, epilogue: str = "none") -> np.ndarray:
        # torch's _BatchNorm.forward: batch statistics in training or when both buffers are
        # None; buffers updated (and counted) only in training with track_running_stats
        use_batch = self.training or (self.running_mean is None and self.running_var is None)
        track = self.track_running_stats or not self.training
        out = work_rows(self, x, self.num_features)
        w, b = self.weight, self.bias
        c = (self.num_features,)
        mean, invstd = self._buffer("save_mean", c), self._buffer("save_invstd", c)
        if self.training and self.track_running_stats:
            running_stats.before_update(self)  # the update below can be taken back (skipped step)
        # One context per layer and set of buffers, reused: its mode is set per forward, the
        # forward fills the rest (an eval forward on the scratch tape has buffers of its own).
        d = self.__dict__
        ctx = d.get("_ctx_reuse")
        if ctx is None or ctx.save_mean is not mean or ctx.save_invstd is not invstd:
            ctx = d["_ctx_reuse"] = _core.BatchNormContext(mean, invstd, use_batch, epilogue)
        else:
            ctx.batch_stats = use_batch
            if ctx.activation != epilogue:
                ctx.activation = epilogue
        y = _core.batchnorm_forward(
            x, None if w is None else w.data, None if b is None else b.data,
            self.running_mean if track else None, self.running_var if track else None,
            self.num_batches_tracked if self.training and self.track_running_stats else None,
            ctx, momentum=self.momentum, eps=self.eps, out=out)
        d["_x"], d["_ctx"] = x, ctx
        return y

    def _backward(self, grad_output: np.ndarray, *, input_grad: bool = True,
                  donate_input: bool = False) -> np.ndarray | None:
        w, b, x = self.weight, self.bias, self._x
        assert x is not None and self._ctx is not None
        need = input_grad
        # may be x: each element is read before it is written
        dx = grad_input_out(self, x, grad_output, input_grad, donate_input)
        grad_input = _core.batchnorm_backward(
            grad_output, None if w is None else w.data, None if b is None else b.data,
            self._ctx, None if w is None else w.grad_buffer, None if b is None else b.grad_buffer,
            accumulate=w is not None and w.grad_fresh,
            accumulate_bias=b is not None and b.grad_fresh, compute_grad_input=need,
            grad_input=dx)
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
