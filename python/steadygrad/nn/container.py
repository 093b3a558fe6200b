"""Containers: Sequential here (ModuleList in nn/module_list.py, Residual in nn/residual.py). Building one moves every parameter of the
tree into one flat, 64-byte-aligned buffer (`model.flat_storage`), so an optimizer step, a norm
or a checkpoint is one pass over one array. Build the model before creating its optimizer.
A child's error is re-raised with its index and label: "Sequential[2] Linear(256 -> 10): ...".

Editing a Sequential or ModuleList (append, extend, insert, item assignment, del, +=) keeps
torch's keys and renumbering, checks the used-once rule (a failed edit changes nothing) and
moves the edited container's parameters into one new flat buffer again. An optimizer created
before the edit keeps the parameters it was given, as torch's does, and follows them to the new
buffer at its next step; a module added later is trained by an optimizer created after the
edit. A slice (`model[1:3]`) is a container of the same modules, sharing their parameters where
they are (it moves nothing)."""

from __future__ import annotations

import operator
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Any, overload

import numpy as np

from steadygrad.nn import _calls
from steadygrad.nn._layout import FIRST, LAST, first_shape
from steadygrad.nn.module import _NAMED_ERRORS, Module
from steadygrad.nn.plan import LayerPlan, container_kind, plan_sequential

# A Sequential's plan for one (layout_in, layout_out): (structure generation it was made for,
# the plan, its forward and backward kwargs)
_Plan = tuple[int, tuple[LayerPlan, ...], list[dict[str, Any]], list[dict[str, Any]]]


def check_used_once(container: Module) -> None:
    """Raise if one module object appears twice in the tree: its forward caches serve one
    backward, so a second use would silently take the first one's gradients."""
    seen: dict[int, str] = {}
    for name, m in container.named_modules():
        if id(m) in seen:
            raise ValueError(
                f"{type(container).__name__}: the module at '{name}' ({m.label()}) is the same "
                f"object as the one at '{seen[id(m)] or 'the top'}'; a module instance can be "
                "used once per model (its forward keeps the inputs its backward needs). Use a "
                "separate instance; to share weights, assign the same Parameter to both")
        seen[id(m)] = name


def _module_arg(owner: str, what: str, m: object) -> Module:
    if not isinstance(m, Module):
        raise TypeError(f"{owner}: {what} must be an nn.Module, got {type(m).__name__}")
    return m


class _ModuleSequence(Module):
    """What Sequential and ModuleList share: numbered children that can be edited like a list
    (torch's keys and renumbering), each edit checked and followed by a re-flattening."""

    _is_container = True

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(list(self._modules.values()))

    def _position(self, idx: object, *, inserting: bool = False) -> int:
        """idx (negative counts from the end) as a position, or torch's IndexError."""
        name = type(self).__name__
        try:
            i = operator.index(idx)  # type: ignore[arg-type]
        except TypeError:
            raise TypeError(f"{name} indices must be integers or slices, not "
                            f"{type(idx).__name__}") from None
        n = len(self._modules)
        if not -n <= i <= (n if inserting else n - 1):
            raise IndexError(f"Index out of range: {i}" if inserting else
                             f"index {i} is out of range")
        return i + n if i < 0 else i

    def _install(self, items: list[tuple[str, Module]]) -> None:
        """Make `items` the children (registration only: no check, no flattening)."""
        for key in self._modules:
            self.__dict__.pop(key, None)
        self._modules.clear()
        for key, m in items:
            self._modules[key] = m
            object.__setattr__(self, key, m)
        _calls.structure_changed()

    def _edit(self, items: list[tuple[str, Module]]) -> None:
        """Replace the children by `items` if the tree still uses each module once (else raise
        and leave everything as it was), then flatten the parameters into one buffer again."""
        for key, m in items:
            _module_arg(type(self).__name__, f"the module for [{key}]", m)
        old = list(self._modules.items())
        old_tree = self.modules()
        self._install(items)
        try:
            check_used_once(self)
        except ValueError:
            self._install(old)
            raise
        # A forward's caches describe the old structure: no backward may use them (a removed
        # module used elsewhere later must not count that forward as pending either).
        _calls.forget_pending([m for m in old_tree if m is not self])
        self._edited()
        self._flatten_parameters()

    def _edited(self) -> None:
        """Hook: what a subclass caches about its children (Sequential: shapes checked)."""

    def _view(self, items: list[tuple[str, Module]]) -> Any:
        """A new container of this class over `items` (a slice): the modules are shared, their
        parameters stay where they are."""
        view = type(self)()
        view._install(items)
        return view

    def _numbered(self, modules: Iterable[Module], start: int = 0) -> list[tuple[str, Module]]:
        return [(str(start + i), m) for i, m in enumerate(modules)]

    def __setitem__(self, idx: int, module: Module) -> None:
        items = list(self._modules.items())
        i = self._position(idx)
        items[i] = (items[i][0], module)
        self._edit(items)

    def __delitem__(self, idx: int | slice) -> None:
        mods = list(self._modules.values())
        if isinstance(idx, slice):
            del mods[idx]
        else:
            del mods[self._position(idx)]
        self._edit(self._numbered(mods))  # renumbered, as torch does

    def append(self, module: Module) -> Any:
        """Add `module` at the end (key str(len(self))); returns self."""
        self._edit([*self._modules.items(), (str(len(self)), module)])
        return self

    def extend(self, modules: Iterable[Module]) -> Any:
        """Append every module of `modules`, in one edit; returns self."""
        name = type(self).__name__
        if not isinstance(modules, Iterable):
            raise TypeError(f"{name}.extend should be called with an iterable, but got "
                            f"{type(modules).__name__}")
        self._edit([*self._modules.items(), *self._numbered(list(modules), len(self))])
        return self

    def insert(self, index: int, module: Module) -> Any:
        """Insert `module` before position `index` (-len(self) <= index <= len(self)); the
        modules from there on are renumbered. Returns self."""
        _module_arg(type(self).__name__, "module", module)
        i = self._position(index, inserting=True)
        items = list(self._modules.items())
        tail = [m for _, m in items[i:]]
        self._edit(items[:i] + self._numbered([module, *tail], i))
        return self

    def pop(self, key: int | slice) -> Any:
        """Remove and return the module at `key` (a container of them for a slice)."""
        v = self[key]
        del self[key]
        return v

    def __iadd__(self, other: Iterable[Module]) -> Any:
        return self.extend(other)

    @overload
    def __getitem__(self, idx: slice) -> Any: ...
    @overload
    def __getitem__(self, idx: int) -> Module: ...
    def __getitem__(self, idx: int | slice) -> Any:
        if isinstance(idx, slice):
            return self._view(self._slice_items(idx))
        return list(self._modules.values())[self._position(idx)]

    def _slice_items(self, idx: slice) -> list[tuple[str, Module]]:
        return self._numbered(list(self._modules.values())[idx])


class Sequential(_ModuleSequence):
    """Runs its modules in order; backward runs them in reverse. Takes modules, or one
    OrderedDict of name -> module (torch's form, keeping the names). Indexing, slicing,
    append/extend/insert/pop, item assignment, del, + and += behave as torch's."""

    skips_grad_input = True  # its first child may leave dL/dx out

    def __init__(self, *modules: Module | OrderedDict[str, Module]) -> None:
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            items = [(_child_key(self, k), m) for k, m in modules[0].items()]
            for key, m in items:
                _module_arg("Sequential", f"the module for key {key!r}", m)
        else:
            items = [(str(i), _module_arg("Sequential", f"argument {i}", m))
                     for i, m in enumerate(modules)]
        self._install(items)
        check_used_once(self)
        self._checked_shape: tuple[tuple[int, ...], str] | None = None  # (x.shape, layout_in)
        self._plans: dict[tuple[str, str], _Plan] = {}  # by (layout_in, layout_out)
        self._plan: _Plan = (-1, (), [], [])  # the one the last forward ran (its backward's)
        self._edits = 0  # edits of the children; the forward notes the count for its backward
        self._forward_edits = 0
        self._flatten_parameters()

    def _edited(self) -> None:
        self._checked_shape = None
        self._edits += 1

    def _slice_items(self, idx: slice) -> list[tuple[str, Module]]:
        return list(self._modules.items())[idx]  # torch keeps the keys of a Sequential's slice

    def __add__(self, other: Sequential) -> Sequential:
        if not isinstance(other, Sequential):
            raise ValueError("add operator supports only objects of Sequential class, but "
                             f"{type(other)} is given.")
        return Sequential(*self, *other)

    def __iadd__(self, other: Iterable[Module]) -> Any:
        if not isinstance(other, Sequential):
            raise ValueError("add operator supports only objects of Sequential class, but "
                             f"{type(other)} is given.")
        return self.extend(other)

    # Channels-last (nn._layout) when every child is channels-last or layout-agnostic.
    @property
    def channels_last(self) -> bool:
        return container_kind(list(self._modules.values())) == "last"

    @property
    def layout_agnostic(self) -> bool:
        return container_kind(list(self._modules.values())) == "agnostic"

    def output_shape(self, shape: tuple[int, ...] | None) -> tuple[int, ...] | None:
        for key, m in self._modules.items():
            if shape is None:  # past a module of unknown output shape: nothing more to check
                return None
            shape = self._in_child(key, m, m.output_shape, shape)
        return shape

    def plan(self, layout_in: str = FIRST, layout_out: str = FIRST) -> tuple[LayerPlan, ...]:
        """Which child fuses an epilogue, which runs inside the one before it, which writes
        its dL/dx over its input, which layout each child's input and output have (nn.plan):
        decided from what the children declare, once per structure (and, nested in a
        channels-last run, per the layouts the run gives it). `print(*model.plan(),
        sep="\n")` shows it."""
        return self._plan_entry(layout_in, layout_out)[1]

    def _plan_entry(self, layout_in: str, layout_out: str) -> _Plan:
        gen = _calls.structure_generation()
        entry = self._plans.get((layout_in, layout_out))
        if entry is None or entry[0] != gen:
            plan = plan_sequential(list(self._modules.values()), layout_in, layout_out)
            entry = (gen, plan, [lp.forward_kwargs() for lp in plan],
                     [lp.backward_kwargs() for lp in plan])
            self._plans[(layout_in, layout_out)] = entry
        return entry

    def forward(self, x: np.ndarray, *, layout_in: str = FIRST,
                layout_out: str = FIRST) -> np.ndarray:
        # Check the whole chain's shapes once per input shape, so a mismatch deep in the stack
        # is reported before any layer runs (no running statistics or RNG state touched).
        # Shapes are the logical (channels-first) ones whatever the layout.
        if isinstance(x, np.ndarray) and (x.shape, layout_in) != self._checked_shape:
            self.output_shape(first_shape(x.shape) if layout_in == LAST and x.ndim > 2
                              else x.shape)
            self._checked_shape = (x.shape, layout_in)
        entry = self._plan_entry(layout_in, layout_out)
        d = self.__dict__  # (no registration needed: once per call)
        d["_plan"], d["_forward_edits"] = entry, self._edits
        for kw, (key, m) in zip(entry[2], self._modules.items(), strict=True):
            try:  # _in_child's naming, inlined: this loop runs once per layer and step
                x = m._run_forward(x, **kw)
            except _NAMED_ERRORS as e:
                raise self._located(key, m, e) from e
        return x

    # It takes grad_is_dead (see _backward) and passes it on to the children that take it.
    accepts_dead_grad = True

    def _backward(self, grad_output: np.ndarray, *, input_grad: bool = True,
                  grad_is_dead: bool = False) -> np.ndarray:
        """grad_is_dead: the caller reads grad_output no more, so the child that receives it
        may overwrite it (a dL/dy its own next child produced is dead once it is read too)."""
        if self._forward_edits != self._edits:
            _calls.forget_pending(_calls.tree(self)[0])  # the next forward starts afresh
            raise RuntimeError("its modules were changed (append, insert, del, ...) after the "
                               "forward; run the forward again before the backward")
        g: Any = grad_output  # None only after the first child, when input_grad is False
        items = list(self._modules.items())
        bwd = self._plan[3]
        if len(bwd) != len(items):  # the structure changed since the forward
            bwd = self._plan_entry(FIRST, FIRST)[3]
        for i in range(len(items) - 1, -1, -1):
            key, m = items[i]
            kw = bwd[i]
            if getattr(m, "accepts_dead_grad", False) and (
                    grad_is_dead or not np.may_share_memory(g, grad_output)):
                kw = {**kw, "grad_is_dead": True}
            try:
                g = m._run_backward(g, input_grad or i > 0, **kw)
            except _NAMED_ERRORS as e:
                raise self._located(key, m, e) from e
        return g  # type: ignore[no-any-return]


def _child_key(owner: Module, key: object) -> str:
    """key as a child's name, checked as torch's add_module checks it."""
    if not isinstance(key, str):
        raise TypeError(f"module name should be a string. Got {type(key).__name__}")
    if "." in key:
        raise KeyError(f'module name can\'t contain ".", got: {key}')
    if key == "":
        raise KeyError('module name can\'t be empty string ""')
    if hasattr(owner, key) and key not in owner._modules:
        raise KeyError(f"attribute '{key}' already exists")
    return key
