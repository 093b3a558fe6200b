"""BatchNorm1d on (N, C) or (N, C, L) and BatchNorm2d on (N, C, H, W) with torch's semantics:
biased batch variance to normalise, unbiased variance into running_var, momentum=None for a
cumulative average, eval mode on running statistics. One class body (_BatchNorm) and one fused,
deterministic kernel per direction: a channels-last (N, *S, C) array IS (N*S, C) rows of
BatchNorm1d's kernel, so every rank runs on the rows of its channels-last view."""

from __future__ import annotations

import numpy as np

from steadygrad import _core
from steadygrad.nn import running_stats
from steadygrad.nn._layout import FIRST, LAST, first_shape, last_shape, to_first, to_last
from steadygrad.nn._util import check_rows, grad_input_out, real_arg, work_like
from steadygrad.nn.module import Module
from steadygrad.nn.parameter import Parameter
from steadygrad.nn.plan import KernelLayer


class _BatchNorm(KernelLayer, Module):
    """The shared body; a subclass names the ranks it accepts (`_ranks`) and torch's wording
    for them (`_expected`)."""

    _ranks: tuple[int, ...]
    _expected: str

    # Registered with register_buffer (None when track_running_stats=False).
    running_mean: np.ndarray | None
    running_var: np.ndarray | None
    num_batches_tracked: np.ndarray | None

    # What a Sequential's plan may ask of it (nn.plan) besides a KernelLayer's (each element of
    # the input is read before dL/dx is written over it): a ReLU fused into its store, whose
    # backward it applies too (masking grad_output by y > 0, y's sign recomputed from the input
    # bit for bit, so the output is not kept).
    fusable_epilogues = frozenset({"relu"})
    epilogue_masks_grad = True
    # For sg.fit's checks: in training mode it normalises over the batch, which 1 sample cannot.
    normalizes_over_batch = True
    # Channels-last capable (nn._layout): inside a conv run its input and output stay (N, *S, C).
    channels_last = True
    # the pending backward's input and kernel contexts (_core objects): not copied
    # (Module.__getstate__)
    _transient = ("_ctx", "_ctx_reuse", "_x")

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True) -> None:
        super().__init__()
        name = type(self).__name__
        if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)) or num_features < 1:
            raise ValueError(f"{name}: num_features must be a positive int, got {num_features!r}")
        if momentum is not None:
            momentum = real_arg(name, "momentum", momentum)
        eps = real_arg(name, "eps", eps)
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{name}: momentum must be in [0, 1] or None, got {momentum}")
        if not eps >= 0.0:
            raise ValueError(f"{name}: eps must be >= 0, got {eps}")
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
        self._x: np.ndarray | None = None  # the forward's input, as it came
        self._layouts = (FIRST, FIRST)  # the forward's layout_in, layout_out

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            rm, rv, nbt = self.running_mean, self.running_var, self.num_batches_tracked
            assert rm is not None and rv is not None and nbt is not None  # registered in __init__
            rm[...] = 0.0
            rv[...] = 1.0
            nbt[...] = 0

    def forward(self, x: np.ndarray, *, epilogue: str = "none", layout_in: str = FIRST,
                layout_out: str = FIRST) -> np.ndarray:
        rows = self._rows_in(x, layout_in)
        # torch's _BatchNorm.forward: batch statistics in training or when both buffers are
        # None; buffers updated (and counted) only in training with track_running_stats
        use_batch = self.training or (self.running_mean is None and self.running_var is None)
        track = self.track_running_stats or not self.training
        c = (self.num_features,)
        out = None if rows is None else work_like(self, "out", rows.shape, x)
        w, b = self.weight, self.bias
        mean, invstd = self._buffer("save_mean", c), self._buffer("save_invstd", c)
        if self.training and self.track_running_stats:
            running_stats.before_update(self)  # the update below can be taken back (skipped step)
        # Statistics computed elsewhere (SyncBatchNorm: over every rank's rows) are given to the
        # kernel as the ones to normalise by, and the running ones are updated with them there.
        given = self._batch_stats(rows) if use_batch and rows is not None else None
        if given is not None:
            use_batch, track = False, True
        # One context per layer, mode and set of buffers, reused (a context is never changed:
        # the pending backward may hold it). An eval forward on the scratch tape has buffers of
        # its own, so it gets a context of its own.
        d = self.__dict__
        key = (use_batch, epilogue, mean, invstd)
        cached = d.get("_ctx_reuse")
        if (cached is not None and cached[0][0] == use_batch and cached[0][1] == epilogue
                and cached[0][2] is mean and cached[0][3] is invstd):
            ctx = cached[1]
        else:
            ctx = _core.BatchNormContext(mean, invstd, use_batch, epilogue)
            d["_ctx_reuse"] = (key, ctx)
        y = _core.batchnorm_forward(
            x if rows is None else rows, None if w is None else w.data,
            None if b is None else b.data,
            *(given if given is not None else (self.running_mean if track else None,
                                               self.running_var if track else None)),
            self.num_batches_tracked if (self.training and self.track_running_stats
                                         and given is None) else None,
            ctx, momentum=self.momentum, eps=self.eps, out=out)
        d["_x"], d["_ctx"], d["_layouts"] = x, ctx, (layout_in, layout_out)
        return self._rows_out(y, x.shape, layout_in, layout_out)

    def _batch_stats(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Hook: the (mean, biased variance) to normalise this training batch by, having
        updated the running statistics with them; None (here) lets the kernel compute them
        from `rows`. distributed.SyncBatchNorm computes them over every rank's rows."""
        return None

    def _batch_sums(self, g: np.ndarray, ctx: _core.BatchNormContext
                    ) -> tuple[np.ndarray, int] | None:
        """Hook: for a forward normalised by given statistics, the whole batch's (2, C) sums
        of dL/dy and dL/dy * xhat and its row count (having written the parameters'
        gradients); None (here): the kernel reduces its own rows."""
        return None

    def _rows_in(self, x: object, layout_in: str) -> np.ndarray | None:
        """x as the (rows, C) matrix of its channels-last view (converted into a work buffer
        when it comes channels-first), after checking its logical shape; None for what is not
        a float32 array (the binding names what is wrong)."""
        if not isinstance(x, np.ndarray) or x.dtype != np.float32:
            return None
        if x.ndim == 2 and 2 in self._ranks and x.shape[1] == self.num_features:  # (N, C): as it is, one layout
            return x
        self.output_shape(first_shape(x.shape) if layout_in == LAST and x.ndim > 2 else x.shape)
        if x.ndim == 2:  # (N, C): one layout
            return x
        if layout_in == FIRST:
            x = to_last(x, work_like(self, "x_last", last_shape(x.shape), x))
        return x.reshape(-1, self.num_features)

    def _rows_out(self, y: np.ndarray, x_shape: tuple[int, ...], layout_in: str,
                  layout_out: str) -> np.ndarray:
        """The (rows, C) result y shaped as an output in layout_out."""
        if len(x_shape) == 2:
            return y
        shape = x_shape if layout_in == LAST else last_shape(x_shape)  # channels-last
        y = y.reshape(shape)
        if layout_out == LAST:
            return y
        return to_first(y, work_like(self, "out_first", first_shape(shape), y))

    def _backward(self, grad_output: np.ndarray, *, input_grad: bool = True,
                  donate_input: bool = False) -> np.ndarray | None:
        w, b, x, ctx = self.weight, self.bias, self._x, self._ctx
        assert x is not None and ctx is not None
        layout_in, layout_out = self._layouts
        rows_x = ctx.input
        assert isinstance(rows_x, np.ndarray)
        g = grad_output if x.ndim == 2 else self._grad_rows(grad_output, x.shape, layout_in,
                                                              layout_out)
        if x.ndim == 2 or layout_in == LAST:
            # may be x: each element is read before it is written
            dx = grad_input_out(self, x, grad_output, input_grad, donate_input)
            dx_rows = None if dx is None else dx.reshape(rows_x.shape)
        else:  # channels-first: dL/dx goes over this layer's own channels-last copy of x
            dx_rows = rows_x if input_grad else None
        synced = self._batch_sums(g, ctx)
        grads = w is not None and synced is None  # else _batch_sums wrote them
        grad_input = _core.batchnorm_backward(
            g, None if w is None else w.data, None if b is None else b.data,
            ctx, w.grad_buffer if grads and w is not None else None,
            b.grad_buffer if grads and b is not None else None,
            accumulate=w is not None and w.grad_fresh,
            accumulate_bias=b is not None and b.grad_fresh, compute_grad_input=input_grad,
            grad_input=dx_rows, batch_sums=None if synced is None else synced[0],
            batch_count=None if synced is None else synced[1])
        if w is not None and b is not None:
            w.mark_grad_fresh()
            b.mark_grad_fresh()
        if grad_input is None or x.ndim == 2:
            return grad_input
        if layout_in == LAST:
            dx_last: np.ndarray = grad_input.reshape(x.shape)
            return dx_last
        out = grad_input_out(self, x, grad_output, True, donate_input)
        assert out is not None
        return to_first(grad_input.reshape(last_shape(x.shape)), out)

    def _grad_rows(self, g: object, x_shape: tuple[int, ...], layout_in: str,
                   layout_out: str) -> np.ndarray:
        """dL/dy as the (rows, C) matrix of its channels-last view (anything but an array of
        the output's shape goes to the binding as it came, which names what is wrong)."""
        phys_out = x_shape if layout_in == layout_out else (
            first_shape(x_shape) if layout_in == LAST else last_shape(x_shape))
        if not isinstance(g, np.ndarray) or g.dtype != np.float32 or g.shape != phys_out:
            got = getattr(g, "shape", type(g).__name__)
            raise ValueError(f"grad_output must have the output's shape {phys_out}, got {got}")
        if layout_out == FIRST:
            g = to_last(g, work_like(self, "g_last", last_shape(phys_out), g))
        rows: np.ndarray = g.reshape(-1, self.num_features)
        return rows

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        shape = tuple(shape)
        if len(shape) not in self._ranks:
            raise ValueError(f"expected {self._expected} input (got {len(shape)}D input of shape "
                             f"{shape})")
        if len(shape) == 2:
            check_rows(shape, self.num_features)
        elif shape[1] != self.num_features:
            raise ValueError(f"expected input with {self.num_features} channels (num_features) "
                             f"in dim 1, got input of shape {shape}")
        return shape

    def memory(self, shape: tuple[int, ...]) -> tuple[int, int]:
        # channels-last cost: the output rows and dL/dx; conversions at a run's edge are
        # counted by summary() (nn._layout.conversion_bytes)
        n = 4 * int(np.prod(shape))
        return n + 8 * self.num_features, n

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """torch.nn.BatchNorm1d: (N, C) or (N, C, L), normalised per channel over N (and L)."""

    _ranks = (2, 3)
    _expected = "2D or 3D"


class BatchNorm2d(_BatchNorm):
    """torch.nn.BatchNorm2d: (N, C, H, W), normalised per channel over N, H and W."""

    _ranks = (4,)
    _expected = "4D"
