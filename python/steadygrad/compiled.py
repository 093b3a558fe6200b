"""`sg.compile_step`: a training step whose layers run in one C++ call, with no Python per layer.

`compile_step(model, loss_fn, optimizer)` reads the model's Sequential plan (nn.plan: which ReLU
fuses into which layer) and records, once per input shape, a `_core.StepTape`: one forward and
one backward closure per layer, each calling the same kernel driver with the same arguments as
the layer's eager binding. A step is then zero_grad, `tape.run(x, labels)` (every layer's
forward, a CrossEntropyLoss and every layer's backward in one call; any other loss module runs
between `tape.forward` and `tape.backward`, as in the eager loop) and `optimizer.step()`:
bitwise the eager step's parameters, gradients, running statistics and loss, so diagnostics,
checkpoints and resume see no difference.

What compiles: an `nn.Sequential` whose children are Linear, BatchNorm1d (training mode, on
(N, C) input), the elementwise activations (ReLU, LeakyReLU, GELU, Tanh, Sigmoid, SiLU, ELU,
Softplus), Identity and Dropout (its seed drawn from sg's generator as the layer draws it),
each of exactly that class (a subclass may override what it computes), no parameter shared
between layers, on a 2-D float32 input. Anything else
runs the eager step; `compile_step` says why once (`CompileFallbackWarning`), `reason` keeps it.
A layer instance wrapped for the step (the diagnostics' layer taps replace `forward` on the
instance) runs that step eagerly, so what the taps record is the same. A layer's
gradients-written hook (Module._on_grads_written) is called by the tape as soon as that
layer's backward has written them, as the eager backward calls it; a DistributedDataParallel
model compiles through the module it wraps, its buckets' allreduces started by those hooks
while the tape's backward goes on.

The tape holds its own activation buffers (one output and one dL/dx per layer); the parameter
gradients go where the eager backward writes them, into the flat gradient buffer.
"""

from __future__ import annotations

import contextlib
import functools
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from steadygrad import _core, nn
from steadygrad import random as _random
from steadygrad._threads import Contention
from steadygrad.nn import _calls, running_stats

__all__ = ["CompileFallbackWarning", "CompiledStep", "compile_step"]

# (loss_fn, prediction, targets, sample weights) -> (loss, grad_output or None)
LossOf = Callable[[Any, np.ndarray, Any, "np.ndarray | None"], tuple[float, Any]]


_NO_AVERAGING = contextlib.nullcontext()


class CompileFallbackWarning(UserWarning):
    """compile_step met a model it cannot compile: its steps run eagerly (same results)."""


# Kernel name of each elementwise activation class and its parameters, as the layer passes them.
_ACTIVATIONS: dict[type[Any], Any] = {
    nn.ReLU: lambda m: ("relu", ()),
    nn.LeakyReLU: lambda m: ("leaky_relu", m._kernel_args),
    nn.Tanh: lambda m: ("tanh", ()),
    nn.Sigmoid: lambda m: ("sigmoid", ()),
    nn.SiLU: lambda m: ("silu", ()),
    nn.ELU: lambda m: ("elu", m._kernel_args),
    nn.Softplus: lambda m: ("softplus", m._kernel_args),
    nn.GELU: lambda m: ("gelu_tanh" if m.approximate == "tanh" else "gelu", ()),
}
_SUPPORTED = (nn.Linear, nn.BatchNorm1d, nn.Identity, nn.Dropout, *_ACTIVATIONS)


def unwrap(model: Any) -> tuple[Any, Any]:
    """(the model whose layers compile, its data-parallel wrapper or None): a wrapper
    (distributed.DistributedDataParallel, marked `compiled_wrapper`) is compiled through the
    module it wraps, with its before_forward() and averaging() around the tape."""
    if getattr(type(model), "compiled_wrapper", False):
        return model.module, model
    return model, None


def unsupported(model: Any) -> str | None:
    """Why `model` cannot be compiled (None: it can). Checked once; what can change between
    steps (a child's training mode, a layer replaced) is part of the tape's key."""
    model = unwrap(model)[0]
    if type(model) is not nn.Sequential:
        return f"the model is a {type(model).__name__}, not an nn.Sequential"
    seen: set[int] = set()
    for name, m in model.named_children():
        if type(m) not in _SUPPORTED:
            return (f"layer '{name}' is a {type(m).__name__}, which has no compiled form "
                    f"(compiled: {', '.join(sorted(t.__name__ for t in _SUPPORTED))})")
        for p in m.parameters():
            if id(p) in seen:
                return f"layer '{name}' shares a parameter with an earlier layer"
            seen.add(id(p))
    return None


def _recorded(m: Any) -> tuple[Any, ...]:
    """What a tape bakes in of a layer besides its parameters (whose flat buffer is checked on
    its own): its mode, settings and buffers, and its gradients-written hook (the tape calls
    it); a change records a new tape."""
    d = m.__dict__
    hook = d.get("_grads_written")
    if type(m) is nn.BatchNorm1d:
        return (m.training, m.momentum, m.eps, m.track_running_stats,
                id(d["running_mean"]), id(d["running_var"]), id(d["num_batches_tracked"]),
                id(m.weight), id(m.bias), hook)
    if type(m) is nn.Dropout:
        return (m.training, m.p)
    if type(m) is nn.Linear:
        return (id(m.weight), id(m.bias), hook)
    return (m.training, _ACTIVATIONS[type(m)](m) if type(m) in _ACTIVATIONS else None)


class CompiledStep:
    """A model's training step as two C++ calls (see the module docstring). `step(x, y)` runs
    zero_grad, forward, loss, backward and `optimizer.step()` and returns the loss (a float);
    `output` is the last step's prediction (the tape's buffer: overwritten by the next step).
    `compiled` says whether the steps run compiled, `reason` why not."""

    def __init__(self, model: Any, loss_fn: Any, optimizer: Any, *, warn: bool = True) -> None:
        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer
        self.output: np.ndarray | None = None
        self._tape: Any = None
        self._tapes: dict[tuple[Any, ...], Any] = {}
        self._loss_keys: dict[int, tuple[Any, ...]] = {}  # id(tape) -> its loss's arguments
        self._drops: dict[int, int] = {}  # id(tape) -> its Dropout layers (seeds a step draws)
        # id(tape) -> the parameters whose gradients it writes, in its grad_partials order
        self._grads: dict[int, list[Any]] = {}
        self._contention = Contention()
        self._bind()
        if self.reason is not None and warn:
            warnings.warn(f"compile_step: {self.reason}; its steps run eagerly (same results)",
                          CompileFallbackWarning, stacklevel=3)

    def _bind(self) -> None:
        """Read the model's layers (again, after its structure changed)."""
        self.reason = unsupported(self.model)
        ok = self.reason is None
        self._generation = _calls.structure_generation()
        self._inner, self._wrapper = unwrap(self.model)
        inner = self._inner
        self._children: list[Any] = list(inner.children()) if ok else []
        self._params: list[Any] = list(inner.parameters()) if ok else []
        self._bns = [m for m in self._children if type(m) is nn.BatchNorm1d]
        self._read_stores()

    def _read_stores(self) -> None:
        """Note the flat buffers the parameters live in (and forget every tape)."""
        self._stores = list({id(p.storage): p.storage for p in self._params}.values())
        self._store_gens = tuple(s.generation for s in self._stores)
        self._tapes.clear()
        self._loss_keys.clear()
        self._drops.clear()
        self._grads.clear()

    @property
    def compiled(self) -> bool:
        return self.reason is None

    def __call__(self, x: np.ndarray, y: Any) -> float:
        """One training step on (x, y); returns the loss."""
        with self._contention.step():  # fewer threads while other processes hold the cores
            self.optimizer.zero_grad()
            loss = self.forward_backward(x, y, offer_norms=True)
            self.optimizer.step()
        return loss

    def forward_backward(self, x: np.ndarray, y: Any, loss_of: LossOf | None = None,
                         w: np.ndarray | None = None, *, offer_norms: bool = False) -> float:
        """forward, loss and backward on (x, y) after the caller's zero_grad; returns the
        loss. A CrossEntropyLoss on class indices runs inside the tape's one call (the same
        kernel and arguments as the loss module's); any other loss is
        `loss_of(loss_fn, pred, y, w)` -> (loss, grad_output or None: loss_fn.backward()'s;
        sg.fit passes its batch_loss), by default the loss module's own value.
        offer_norms=True: the optimizer's next step takes its gradient norms from the tape's
        backward (computed as each layer wrote its gradients) instead of a pass of its own;
        only for a caller that changes no gradient before that step (the step's own call,
        and fit when no callback has an on_before_optimizer_step)."""
        tape = self._tape_for(x)
        norm = self._norm_asked(tape) if offer_norms else 0.0
        if tape is not None and self._fuses_loss(tape, y):
            self._begin(tape)
            with self._averaging():
                loss = float(tape.run(x, y, self._seeds(tape), norm))
            self.output = tape.output
            self._written(tape, norm)
            return loss
        pred = self._forward(x, tape)
        if loss_of is None:
            loss, g = float(self.loss_fn(pred, y)), None
        else:
            loss, g = loss_of(self.loss_fn, pred, y, w)
        self._backward(self.loss_fn.backward() if g is None else self.loss_fn.backward(g), norm)
        return loss

    def _norm_asked(self, tape: Any) -> float:
        """The norm the optimizer's next step computes (2 or inf; 0: none, or one the tape
        cannot give, or no tape), which the tape's backward then computes for it."""
        opt = self.optimizer
        if tape is None or self._wrapper is not None or not hasattr(opt, "_offer_norms"):
            return 0.0  # (averaged gradients are not those the tape's backward saw)
        if not (opt.skip_nonfinite or opt.max_grad_norm is not None):
            return 0.0
        nt = opt.norm_type
        return nt if nt == 2.0 or nt == math.inf else 0.0

    def _fuses_loss(self, tape: Any, y: object) -> bool:
        """Whether the loss runs in the tape: a CrossEntropyLoss (mean or sum) on an integer
        label vector, its arguments those the tape was given."""
        lf = self.loss_fn
        if (type(lf) is not nn.CrossEntropyLoss or lf.reduction == "none"
                or not isinstance(y, np.ndarray) or y.ndim != 1 or y.dtype.kind not in "iu"):
            return False
        key = (lf.weight, lf.ignore_index, lf.reduction, lf.label_smoothing)
        held = self._loss_keys.get(id(tape))
        if held is None or held[0] is not key[0] or held[1:] != key[1:]:
            tape.set_cross_entropy(*key)
            self._loss_keys[id(tape)] = key
        return True

    # -- the two halves (sg.fit calls them with its own loss and callbacks between) --------
    def forward(self, x: np.ndarray) -> np.ndarray:
        """The model's training forward on x (after the caller's zero_grad). Compiled when
        the tape applies, else the eager `model(x)`."""
        return self._forward(x, self._tape_for(x))

    def _forward(self, x: np.ndarray, tape: Any) -> np.ndarray:
        self._tape = tape
        if tape is None:
            pred: np.ndarray = self.model(x)
        else:
            self._begin(tape)
            pred = tape.forward(x, self._seeds(tape))
        self.output = pred
        return pred

    def _begin(self, tape: Any) -> None:
        """What a compiled training forward does before the tape runs (the eager forwards'
        part outside the layers' kernels)."""
        self._tape = tape
        for bn in self._bns:
            running_stats.before_update(bn)  # a skipped step can take the update back
        if self._wrapper is not None:
            self._wrapper.before_forward()  # rank 0's buffers, as DDP's forward

    def _averaging(self) -> Any:
        """Around the tape's backward: the data-parallel wrapper's gradient average, or
        nothing (one reusable null context: no object made per step)."""
        return _NO_AVERAGING if self._wrapper is None else self._wrapper.averaging()

    def _written(self, tape: Any, norm: float) -> None:
        """After the tape's backward: gradients fresh, and (norm 2/inf) its norm partials
        offered to the optimizer's next step."""
        for p in self._params:
            p.mark_grad_fresh()
        if norm:
            self.optimizer._offer_norms(norm, tape.grad_partials, self._grads[id(tape)])

    def backward(self, grad_output: np.ndarray) -> None:
        """The backward of the last forward: parameter gradients written, no dL/dx of x."""
        self._backward(grad_output, 0.0)

    def _backward(self, grad_output: np.ndarray, norm: float) -> None:
        """backward(), the tape's norm partials offered to the optimizer when norm is 2/inf."""
        tape = self._tape
        if tape is None:
            self.model.backward(grad_output, input_grad=False)
            return
        with self._averaging():
            tape.backward(grad_output, norm)
        self._written(tape, norm)

    def _seeds(self, tape: Any) -> tuple[int, ...]:
        """A seed per Dropout of the tape, drawn in layer order as their forwards draw them
        (the empty tuple, no allocation, for a tape without Dropout)."""
        n = self._drops.get(id(tape), 0)
        return tuple(_random.draw_seed() for _ in range(n)) if n else ()

    def _tape_for(self, x: object) -> Any:
        """The tape for this input and the model as it is now, recorded on first use; None
        when this step runs eagerly."""
        if self._generation != _calls.structure_generation():
            self._bind()  # a layer added, removed or replaced
        if self.reason is not None or not isinstance(x, np.ndarray) or x.ndim != 2:
            return None
        children = self._children
        for m in children:
            d = m.__dict__
            if "forward" in d or "_backward" in d:
                return None  # wrapped on the instance (the diagnostics' layer taps)
        # Where the parameters live: a move into another flat buffer (nn.flatten) bumps the
        # old buffer's generation, and every tape must then point at the new one.
        if tuple(s.generation for s in self._stores) != self._store_gens:
            self._read_stores()
        key = (x.shape, x.dtype, x.flags.c_contiguous, tuple(_recorded(m) for m in children))
        tape = self._tapes.get(key, False)
        if tape is False:
            if len(self._tapes) >= 8:  # a few shapes (the last batch's) are the norm
                self._tapes.clear()
                self._loss_keys.clear()
                self._drops.clear()
                self._grads.clear()
            tape = self._record(x)
            self._tapes[key] = tape
        return tape

    def _record(self, x: np.ndarray) -> Any:
        """A new tape for x's shape, or None when this input or mode does not compile (the
        eager step then reports whatever is wrong with it)."""
        if x.dtype != np.float32 or x.shape[0] < 1 or not x.flags.c_contiguous:
            return None
        try:
            self._inner.output_shape(x.shape)
        except (ValueError, TypeError):
            return None
        tape = _core.StepTape(x.shape[0], x.shape[1])
        drops = 0
        grads: list[Any] = []  # in the order the tape's partials are
        for lp, m in zip(self._inner.plan(), self._children, strict=True):
            kind = type(m)
            if kind is nn.Dropout and m.training and m.p > 0.0:
                tape.add_dropout(m.p)
                drops += 1
                continue
            if lp.absorbed or kind is nn.Identity or kind is nn.Dropout:
                continue  # runs inside the layer before it / passes its input through
            relu = lp.epilogue == "relu"
            hook = m.__dict__.get("_grads_written")
            on_written = None if hook is None else functools.partial(hook, m)
            if kind is nn.Linear:
                b = m.bias
                grads += [m.weight] + ([] if b is None else [b])
                tape.add_linear(m.weight.data, None if b is None else b.data, m.weight.grad_buffer,
                                None if b is None else b.grad_buffer, relu=relu,
                                on_written=on_written)
            elif kind is nn.BatchNorm1d:
                if not m.training or x.shape[0] < 2:
                    return None
                w, b = m.weight, m.bias
                grads += [p for p in (w, b) if p is not None]
                track = m.track_running_stats
                tape.add_batchnorm(
                    None if w is None else w.data, None if b is None else b.data,
                    None if w is None else w.grad_buffer, None if b is None else b.grad_buffer,
                    m.running_mean if track else None, m.running_var if track else None,
                    m.num_batches_tracked if track else None, momentum=m.momentum, eps=m.eps,
                    relu=relu, on_written=on_written)
            else:
                name, args = _ACTIVATIONS[kind](m)
                tape.add_activation(name, *args)
        if not tape.layers:
            return None
        self._drops[id(tape)] = drops
        self._grads[id(tape)] = grads
        return tape


def compile_step(model: Any, loss_fn: Any, optimizer: Any) -> CompiledStep:
    """The training step of `model` with `loss_fn` and `optimizer` as two C++ calls per step
    (see steadygrad.compiled): `step = sg.compile_step(model, loss_fn, opt)`, then
    `loss = step(x, y)` for each batch, bitwise the eager step (`opt.zero_grad()`,
    `loss_fn(model(x), y)`, `model.backward(loss_fn.backward(), input_grad=False)`,
    `opt.step()`). A model it cannot compile warns once (CompileFallbackWarning, naming the
    layer) and runs eagerly. `sg.fit` uses it by itself when the model compiles."""
    return CompiledStep(model, loss_fn, optimizer)
