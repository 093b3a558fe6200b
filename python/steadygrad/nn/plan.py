"""The fusion and buffer plan of a Sequential: decided once per structure from what each layer
declares it can do, handed to each layer as keyword arguments of its forward and backward.

What a layer class declares (class attributes, so subclasses keep them):
- `fusable_epilogues`: activations its forward can apply to its own output in the same pass
  (Linear: in the GEMM's epilogue; BatchNorm1d: in its store). Its forward then takes
  `epilogue=` and its backward knows from its own forward what it fused.
- `epilogue`: for an activation layer, the name under which it can be absorbed that way. An
  absorbed layer's forward takes `absorbed=True` (its input is already activated) and
  `producer_masks_grad=` (whether the producer's backward applies its gradient too).
- `epilogue_masks_grad`: the layer's backward applies a fused epilogue's gradient itself
  (BatchNorm1d recomputes the sign of its output); otherwise the absorbed layer does.
- `grad_into_input`: its backward reads its input whole before writing dL/dx, so it may write
  dL/dx over the input (`donate_input=True`) when nothing reads that input afterwards.
- `skips_grad_input`: its backward can leave dL/dx out (`input_grad=False`).
- `owns_output` / `reads_output_in_backward`: its output is a buffer of its own (not a view of
  its input) / its backward reads that output (Tanh and Sigmoid do; Linear and BatchNorm1d
  do not). Together they say when the output is dead once the next layer's backward ran.
- `channels_last` / `layout_agnostic` (nn._layout): the layer computes on channels-last arrays
  and takes `layout_in=` / `layout_out=` / is elementwise and runs on either layout. A run of
  channels-last layers (with layout-agnostic ones between them) stays channels-last: its first
  layer converts its input, its last one its output, so the layers around the run (Flatten,
  Linear) see torch's channels-first layout. Sequential and Residual are channels-last
  themselves when every child is channels-last or layout-agnostic (and pass the layouts on).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from steadygrad.nn._layout import FIRST, LAST

if TYPE_CHECKING:
    from steadygrad.nn.module import Module


class KernelLayer:
    """The declarations shared by the layers that run a forward and a backward kernel of their
    own (Linear, the convolutions, the batch norms, the pooling layers): the forward writes an
    output of its own that its backward never reads; the backward reads its input whole before
    it writes dL/dx, so dL/dx may go over the input, or be left out. A mixin before Module
    (`class Linear(KernelLayer, Module)`); each layer adds what else it can do (epilogues,
    channels-last)."""

    grad_into_input = True
    skips_grad_input = True
    owns_output = True
    reads_output_in_backward = False


@dataclass(frozen=True)
class LayerPlan:
    """One layer's part of a Sequential's plan."""

    index: int
    layer: str
    epilogue: str = "none"  # the activation this layer's forward applies to its output
    absorbed: bool = False  # this (activation) layer runs inside the previous layer's kernel
    producer_masks_grad: bool = False  # absorbed, and the producer's backward applies its grad
    donate_input: bool = False  # backward writes dL/dx over the (dead) input
    layout_in: str = FIRST  # the layout its input arrives in (nn._layout)
    layout_out: str = FIRST  # the layout its output leaves in
    takes_layout: bool = False  # channels_last: the layouts are passed to it

    def forward_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {}
        if self.takes_layout and (self.layout_in, self.layout_out) != (FIRST, FIRST):
            kw["layout_in"], kw["layout_out"] = self.layout_in, self.layout_out
        if self.epilogue != "none":
            kw["epilogue"] = self.epilogue
        if self.absorbed:
            kw["absorbed"] = True
            kw["producer_masks_grad"] = self.producer_masks_grad
        return kw

    def backward_kwargs(self) -> dict[str, Any]:
        return {"donate_input": True} if self.donate_input else {}

    def describe(self) -> str:
        parts = []
        if self.epilogue != "none":
            parts.append(f"fuses {self.epilogue} into its output")
        if self.absorbed:
            parts.append("runs inside the previous layer" +
                         (" (forward and backward)" if self.producer_masks_grad else
                          " (forward; masks the gradient itself)"))
        if self.donate_input:
            parts.append("writes dL/dx over its input")
        if self.takes_layout and (self.layout_in, self.layout_out) != (FIRST, FIRST):
            edge = {(FIRST, LAST): " (converts its input)", (LAST, FIRST): " (converts its output)",
                    (LAST, LAST): ""}[(self.layout_in, self.layout_out)]
            parts.append(f"{_short(self.layout_in)} -> {_short(self.layout_out)}{edge}")
        elif self.layout_in == LAST:
            parts.append("on channels-last data")
        return f"[{self.index}] {self.layer}: " + ("; ".join(parts) or "runs alone")


def _short(layout: str) -> str:
    return "channels-last" if layout == LAST else "channels-first"


def layout_kind(m: Module) -> str:
    """'last' (channels_last), 'agnostic' (layout_agnostic) or 'first' (neither)."""
    if getattr(m, "channels_last", False):
        return "last"
    return "agnostic" if getattr(m, "layout_agnostic", False) else "first"


def container_kind(children: list[Module]) -> str:
    """A container's layout_kind from its children's: agnostic if they all are, channels-last if
    each one is channels-last or agnostic, else channels-first."""
    kinds = {layout_kind(c) for c in children}
    if not kinds or "first" in kinds:
        return "first"
    return "last" if "last" in kinds else "agnostic"


def boundary_layouts(layers: list[Module], layout_in: str = FIRST,
                     layout_out: str = FIRST) -> list[str]:
    """The layout of the data between layers i-1 and i (index 0: the input, n: the output):
    channels-last where the nearest layer on each side that is not layout-agnostic is
    channels-last (or the container's edge arrives / must leave channels-last)."""
    n = len(layers)
    kinds = [layout_kind(m) for m in layers]
    out = [layout_in] + [FIRST] * (n - 1) + [layout_out] if n else [layout_in]
    for b in range(1, n):
        left = next((kinds[j] for j in range(b - 1, -1, -1) if kinds[j] != "agnostic"), None)
        right = next((kinds[j] for j in range(b, n) if kinds[j] != "agnostic"), None)
        left_last = layout_in == LAST if left is None else left == "last"
        right_last = layout_out == LAST if right is None else right == "last"
        out[b] = LAST if left_last and right_last else FIRST
    return out


def plan_sequential(layers: list[Module], layout_in: str = FIRST,
                    layout_out: str = FIRST) -> tuple[LayerPlan, ...]:
    """The plan for running `layers` in order, from input in `layout_in` to output in
    `layout_out` (a nested Sequential inside a channels-last run gets the run's layouts)."""
    n = len(layers)
    lay = boundary_layouts(layers, layout_in, layout_out)
    epilogue = ["none"] * n
    absorbed = [False] * n
    masks = [False] * n
    for i in range(n - 1):
        a, b = layers[i], layers[i + 1]
        name = getattr(b, "epilogue", None)
        if absorbed[i] or name is None or name not in getattr(a, "fusable_epilogues", ()):
            continue
        epilogue[i], absorbed[i + 1] = name, True
        masks[i + 1] = bool(getattr(a, "epilogue_masks_grad", False))
    donate = [i > 0 and bool(getattr(layers[i], "grad_into_input", False))
              and _input_dead_after_backward(layers, i, absorbed, masks) for i in range(n)]
    return tuple(LayerPlan(i, layers[i].label(), epilogue[i], absorbed[i], masks[i], donate[i],
                           lay[i], lay[i + 1], layout_kind(layers[i]) == "last")
                 for i in range(n))


def _input_dead_after_backward(layers: list[Module], i: int, absorbed: list[bool],
                               masks: list[bool]) -> bool:
    """Whether layer i's input is a buffer of an earlier layer that nothing reads once layer
    i's backward has run: the producer does not read its output, and every absorbed layer in
    between (which passes that buffer on) leaves the gradient to the producer."""
    p = i - 1
    while p > 0 and absorbed[p]:
        if not masks[p]:  # it masks the gradient by the buffer, after layer i's backward
            return False
        p -= 1
    if absorbed[p]:
        return False
    prod = layers[p]
    return bool(getattr(prod, "owns_output", False)) and not getattr(
        prod, "reads_output_in_backward", True)
