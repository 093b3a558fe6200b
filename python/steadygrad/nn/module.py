"""nn.Module: explicit, visible backprop (Torch7 style) with PyTorch's names.

`y = module(x)` runs `forward`, which caches what the backward needs; `module.backward(dy)`
returns dL/dx and fills every Parameter gradient: written by the first backward after
`zero_grad()`, accumulated by later ones. Arrays a call returns are the caller's: later calls
never overwrite them (internal work buffers are reused, and copied out where they would be
returned).

A custom layer subclasses Module and implements `forward(x)` and `backward(grad_output)`
(returning dL/dx, adding its parameters' gradients with `p.accumulate_grad(g)`), and
`output_shape(shape)` if a container should check shapes ahead. A module whose forward only
calls its child modules one after another (`return self.body(self.stem(x))`) needs no
backward: the chain of calls is recorded and run in reverse. Call the module (`model(x)`),
not `model.forward(x)`: the call records that a backward may follow and names the layer in
any error.

The rules a call follows: one training-mode forward, then its backward (a second training
forward before the backward makes the backward raise: only the last inputs are cached); an
eval-mode forward while a training backward is pending leaves that backward's caches alone;
a module instance appears once in a model; calls on one model from several threads run one
at a time (each holds the model's locks), and `train()`/`eval()` are the model's, not the
thread's.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np

from steadygrad.nn import _calls
from steadygrad.nn._accounting import MemoryAccounting
from steadygrad.nn._tree import ModuleTree
from steadygrad.nn.parameter import FlatStorage, Parameter, flatten, shared_storage
from steadygrad.nn.state_dict import IncompatibleKeys, load_state, state_targets

if TYPE_CHECKING:
    pass

# Errors that get the layer's name prefixed on their way out (type preserved).
_NAMED_ERRORS = (TypeError, ValueError, RuntimeError, IndexError)


class Module(ModuleTree, MemoryAccounting):
    """Base class of every layer and container."""

    training: bool
    # Set in __init__ with object.__setattr__ (bypassing the registration in __setattr__).
    _parameters: OrderedDict[str, Parameter | None]
    _buffers: OrderedDict[str, np.ndarray | None]
    _modules: OrderedDict[str, Module]
    _work: dict[str, tuple[np.ndarray, np.ndarray]]  # key -> (raw storage, current view)
    _work_eval: dict[str, tuple[np.ndarray, np.ndarray]]
    _handout: dict[str, np.ndarray]
    _lock: threading.RLock
    _phase: int
    _forwards: int
    _trained_forward: bool
    _chain: list[Module] | None
    _is_container = False
    # Whether the forward's calls of child modules are recorded: only Module's own _backward
    # (the chain replay) reads them, so a class with a backward of its own skips the recording.
    _records_calls = True
    _serial = 0  # nn._calls.next_serial() at the module's last finished forward
    # What a layer can do inside a Sequential's plan (nn.plan explains each); none by default.
    fusable_epilogues: frozenset[str] = frozenset()
    epilogue: str | None = None
    epilogue_masks_grad = False
    grad_into_input = False
    skips_grad_input = False  # its _backward takes input_grad=False and then leaves dL/dx out
    owns_output = False
    reads_output_in_backward = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._records_calls = cls._backward is Module._backward and cls.backward is Module.backward

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_work", {})
        object.__setattr__(self, "_work_eval", {})  # inference forwards during a pending backward
        object.__setattr__(self, "_handout", {})  # caller-owned results (nn._calls.hand_out)
        object.__setattr__(self, "_lock", threading.RLock())
        object.__setattr__(self, "training", True)
        # 0: no forward yet; 1: forward done, backward pending; 2: backward done
        object.__setattr__(self, "_phase", 0)
        # forwards run since the last backward (more than one: the caches hold only the last)
        object.__setattr__(self, "_forwards", 0)
        object.__setattr__(self, "_trained_forward", False)  # the pending forward's mode
        object.__setattr__(self, "_chain", None)  # child calls recorded by the last forward

    # -- registration ------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        params = self.__dict__.get("_parameters")
        if params is None:
            raise AttributeError("cannot assign attributes before Module.__init__() is called")
        if isinstance(value, Parameter):
            params[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
            _calls.structure_changed()
        elif name in params:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as parameter '{name}' "
                                "(nn.Parameter or None expected)")
            params[name] = None
        elif name in self._buffers:
            self._buffers[name] = value
        object.__setattr__(self, name, value)

    # What a copy (copy.deepcopy, pickle) leaves out: the call machinery's locks and its cached
    # lock tree (RLocks cannot be copied), and the state of a pending call. A copy has its
    # parameters, gradients and buffers, and no pending backward: its work buffers would not be
    # known as internal (nn._calls.hand_out would return them to the caller), and what a
    # backward reads (inputs, kernel contexts) would be duplicated or cannot be copied. A layer
    # names its own such attributes in `_transient` (each reset to None).
    _transient: tuple[str, ...] = ()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for key in ("_lock", "_locks", "_tree", "_grads_written"):
            state.pop(key, None)
        state.update(_work={}, _work_eval={}, _handout={}, _phase=0, _forwards=0,
                     _trained_forward=False, _chain=None)
        for key in type(self)._transient:
            if key in state:
                state[key] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__["_lock"] = threading.RLock()
        # A copy (copy.deepcopy, pickle) copies every array on its own, so the parameters'
        # views no longer lie in their storage: flatten them again, as building the model did.
        params = self.parameters()
        if params:
            flatten(params)

    def register_buffer(self, name: str, value: np.ndarray | None) -> None:
        """Register non-trainable state (running statistics) under `name`: in state_dict
        and checkpoints, not among the parameters. None registers the name without a value."""
        self._buffers[name] = value
        object.__setattr__(self, name, value)

    def register_parameter(self, name: str, value: Parameter | None) -> None:
        """Register `value` under `name` (assigning a Parameter attribute does the same);
        None registers the name without a parameter, as torch's optional bias."""
        self._parameters[name] = value
        object.__setattr__(self, name, value)

    def _flatten_parameters(self) -> None:
        """Move every parameter of this module tree into one FlatStorage."""
        params = self.parameters()
        if params:
            flatten(params)

    @property
    def flat_storage(self) -> FlatStorage | None:
        """The one FlatStorage holding all of this module's parameters (None if none/several)."""
        params = self.parameters()
        return shared_storage(params) if params else None

    # -- modes and gradients -----------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Set training mode (mode=False: eval mode) on this module and every descendant;
        returns self."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> Module:
        """Set eval mode (train(False)): BatchNorm normalises with its running statistics,
        Dropout is the identity. Returns self."""
        return self.train(False)

    def zero_grad(self) -> None:
        """Mark every gradient stale (reads None); the next backward writes it. No memset."""
        for p in self.parameters():
            p.zero_grad()

    # -- forward / backward ------------------------------------------------------------
    def forward(self, x: np.ndarray) -> np.ndarray:
        """The layer's computation for a batch: a custom layer overrides it, keeping what its
        backward needs. Call the module (`model(x)`), not forward, to run it."""
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def _backward(self, grad_output: np.ndarray) -> np.ndarray | None:
        """The layer's backward: dL/dx (None only where the plan passed input_grad=False to a
        layer that `skips_grad_input`). Built-in layers override this; a custom layer may
        override `backward` instead. The default runs the child calls the forward recorded,
        when they form a chain from the input to the output."""
        custom = type(self).backward is not Module.backward
        if custom:  # a subclass's own backward(grad_output) is the implementation
            return type(self).backward(self, grad_output)
        chain = self._chain
        if chain is None:
            name = type(self).__name__
            raise NotImplementedError(
                f"{name} does not implement backward: define {name}.backward(self, "
                "grad_output) returning dL/dinput (add parameter gradients with "
                "p.accumulate_grad(g)); a forward that only calls child modules one after "
                "another needs none")
        g = grad_output
        for child in reversed(chain):
            g = child._run_backward(g, True)
        return g

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...] | None:
        """Shape of the output for an input of `shape`; raises ValueError on a bad shape.
        None means unknown (a custom module that does not say): checks stop there."""
        return None

    def label(self) -> str:
        """One-line description used in error messages and summaries."""
        if self._is_container or (self._modules and type(self).__repr__ is Module.__repr__):
            return type(self).__name__
        return repr(self)

    def _run_forward(self, x: np.ndarray, **plan: Any) -> np.ndarray:
        """forward(x, **plan), with the bookkeeping a backward relies on. `plan`: what a
        Sequential's plan asks of this layer (nn.plan.LayerPlan.forward_kwargs)."""
        d = self.__dict__  # bookkeeping written directly: this runs once per layer and call
        if self._records_calls:
            calls: list[tuple[Module, Any, Any]] = []
            stack = _calls.recorders()
            stack.append(calls)
            try:
                y = self.forward(x, **plan)
            finally:
                stack.pop()
            d["_chain"] = _calls.chain_of(calls, x, y) if calls else None
        else:
            y = self.forward(x, **plan)
        # Training forwards pile up until a backward; an inference forward replaces what was
        # pending from another inference forward (nobody backpropagates through both).
        stacked = d["_phase"] == 1 and d["_trained_forward"]
        d["_phase"] = 1
        d["_forwards"] = d["_forwards"] + 1 if stacked else 1
        d["_trained_forward"] = self.training
        d["_serial"] = _calls.next_serial()
        return y

    @overload
    def _run_backward(self, grad_output: np.ndarray, input_grad: Literal[True] = True,
                      **plan: Any) -> np.ndarray: ...
    @overload
    def _run_backward(self, grad_output: np.ndarray, input_grad: bool,
                      **plan: Any) -> np.ndarray | None: ...
    def _run_backward(self, grad_output: np.ndarray, input_grad: bool = True,
                      **plan: Any) -> np.ndarray | None:
        """_backward(grad_output, **plan) after checking it matches one forward. input_grad
        False: dL/dx is not wanted (passed on to layers that can leave it out)."""
        if self._phase == 0:
            raise RuntimeError("backward called before forward")
        if self._phase == 2:
            raise RuntimeError("backward called twice for one forward (run forward again first)")
        if self._forwards > 1:
            n = self._forwards
            raise _calls.StackedForwardsError(
                f"forward ran {n} times since the last backward, but only the last run's inputs "
                "are kept, so this backward would not match the output it came from. Call "
                "backward after each training forward; run forwards that need no backward "
                "under model.eval(); use a module instance once per model (share weights "
                "through the Parameter instead)")
        if not input_grad and self.skips_grad_input:
            plan["input_grad"] = False
        grad_input = self._backward(grad_output, **plan)
        d = self.__dict__
        d["_phase"] = 2
        d["_forwards"] = 0
        hook = d.get("_grads_written")
        if hook is not None:  # this layer's parameter gradients are final for this backward
            hook(self)
        return grad_input if input_grad else None

    def _on_grads_written(self, hook: Any) -> None:
        """Have `hook(self)` called each time this module's backward returns (its own
        parameters' gradients are then written): distributed.DistributedDataParallel starts
        reducing a bucket of the flat gradient as soon as every layer writing it has run.
        None removes it. Not copied with the module (Module.__getstate__)."""
        if hook is None:
            self.__dict__.pop("_grads_written", None)
        else:
            object.__setattr__(self, "_grads_written", hook)

    def _error_prefix(self, err: BaseException) -> str:
        if not self._is_container:
            return f"{self.label()}: "
        # Errors from children arrive located ("Sequential[2] Linear(...): "); own ones get the name.
        return "" if getattr(err, "_sg_located", False) else f"{type(self).__name__}: "

    def __call__(self, x: np.ndarray) -> np.ndarray:
        token = _calls.enter(self)
        nested = token[1] > 0
        try:
            if not self.training and self._phase == 1 and self._trained_forward:
                return self._forward_call(_calls.forward_on_scratch, x, nested)
            before = _calls.next_serial()
            try:
                return self._forward_call(Module._run_forward, x, nested)
            except BaseException:
                mods = _calls.tree(self)[0]
                if any(m._serial > before for m in mods):  # some layer's forward ran
                    _calls.forget_pending(mods)
                raise
        finally:
            _calls.leave(token)

    def _forward_call(self, run: Any, x: np.ndarray, nested: bool) -> np.ndarray:
        try:
            y = run(self, x)
        except _NAMED_ERRORS as e:
            raise _calls.located(e, self._error_prefix(e)) from e
        if nested:  # inside another module's forward: the result is an intermediate
            _calls.record(self, x, y)
            return y  # type: ignore[no-any-return]
        return _calls.hand_out(self, "out", y)  # type: ignore[no-any-return]

    def backward(self, grad_output: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """dL/dx for dL/dy = grad_output; fills every parameter's gradient.

        input_grad=False returns None and lets the first layer skip computing dL/dx (for a
        Linear first layer that saves one of its three GEMMs); parameter gradients are the same.
        A custom layer overrides this method (or `_backward`) with its own backward.
        """
        token = _calls.enter(self)
        try:
            try:
                g = self._run_backward(grad_output, input_grad)
            except _calls.StackedForwardsError as e:
                _calls.forget_pending(_calls.tree(self)[0])  # start afresh with the next forward
                raise _calls.located(e, self._error_prefix(e)) from e
            except _NAMED_ERRORS as e:
                raise _calls.located(e, self._error_prefix(e)) from e
            if token[1] > 0 or g is None:
                return g
            return _calls.hand_out(self, "dx", g)  # type: ignore[no-any-return]
        finally:
            _calls.leave(token)

    def _in_child(self, key: str, child: Module, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run fn(*args, **kwargs) for child `key`, naming the child (index, label) in any error."""
        try:
            return fn(*args, **kwargs)
        except _NAMED_ERRORS as e:
            raise self._located(key, child, e) from e

    def _located(self, key: str, child: Module, err: BaseException) -> BaseException:
        """err from child `key`, its message prefixed with where it happened."""
        return _calls.located(err, f"{type(self).__name__}[{key}] {child._error_prefix(err)}")

    def _buffer(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        """A float32 work array kept across calls. Its storage only grows: a smaller batch
        (e.g. the last one of an epoch) gets a view of the front, so nothing is reallocated
        when the full batch size comes back."""
        entry = self._work.get(key)
        if entry is not None and entry[1].shape == shape:
            return entry[1]
        n = int(np.prod(shape))
        if entry is not None and entry[0].size >= n:
            raw = entry[0]
        else:
            raw = np.empty(n, np.float32)
            _calls.note_work_buffer(raw)
        view = raw[:n].reshape(shape)
        self._work[key] = (raw, view)
        return view

    def _forget_buffer(self, key: str) -> None:
        self._work.pop(key, None)

    # -- state_dict --------------------------------------------------------------------
    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Copies of every parameter and buffer under PyTorch's keys (e.g. '0.weight')."""
        return OrderedDict((k, np.array(v, copy=True)) for k, v in state_targets(self).items())

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Copy values into the existing parameter views and buffers (never replaces them).

        Accepts numpy arrays or anything np.asarray understands (a PyTorch state_dict works
        as is, or converted with `.numpy()`). Everything is checked before anything is copied;
        problems raise RuntimeError with PyTorch's wording.
        """
        return load_state(self, state_dict, strict)
