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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from steadygrad.nn.module import Module


@dataclass(frozen=True)
class LayerPlan:
    """One layer's part of a Sequential's plan."""

    index: int
    layer: str
    epilogue: str = "none"  # the activation this layer's forward applies to its output
    absorbed: bool = False  # this (activation) layer runs inside the previous layer's kernel
    producer_masks_grad: bool = False  # absorbed, and the producer's backward applies its grad
    donate_input: bool = False  # backward writes dL/dx over the (dead) input

    def forward_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {}
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
        return f"[{self.index}] {self.layer}: " + ("; ".join(parts) or "runs alone")


def plan_sequential(layers: list[Module]) -> tuple[LayerPlan, ...]:
    """The plan for running `layers` in order."""
    n = len(layers)
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
    return tuple(LayerPlan(i, layers[i].label(), epilogue[i], absorbed[i], masks[i], donate[i])
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
