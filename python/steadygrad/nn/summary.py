"""model.summary(batch_size): per-layer output shapes, parameter counts and the bytes the model
holds at that batch size (parameters, gradients, buffers, cached activations, workspace)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from steadygrad.nn._layout import FIRST, conversion_bytes
from steadygrad.nn.container import Sequential
from steadygrad.nn.conv import _ConvNd
from steadygrad.nn.dropout import Dropout
from steadygrad.nn.linear import Flatten, Identity
from steadygrad.nn.module import Module
from steadygrad.nn.plan import LayerPlan
from steadygrad.nn.residual import Residual

if TYPE_CHECKING:
    from steadygrad._core import GemmScratch


def _infer_input_shape(model: Module, batch_size: int) -> tuple[int, ...]:
    for m in model.modules():
        for attr in ("in_features", "num_features"):
            if hasattr(m, attr):
                return (batch_size, int(getattr(m, attr)))
        if hasattr(m, "normalized_shape"):  # LayerNorm: (batch, *normalized_shape)
            return (batch_size, *m.normalized_shape)
        if not m._is_container and not isinstance(m, (Identity, Dropout)) and m._modules == {}:
            break
    raise ValueError("summary: cannot infer the input shape; pass input_shape=(features, ...)")


def _passes_grad_on(child: Module, lp: LayerPlan) -> bool:
    """Whether the child's backward hands its grad_output (or a view of it) back."""
    return (lp.absorbed and lp.producer_masks_grad) or isinstance(child, (Flatten, Identity))


def _walk(m: Module, name: str, shape: tuple[int, ...], rows: list[dict[str, Any]],
          input_grad: bool = True, layout_in: str = FIRST,
          layout_out: str = FIRST, grad_dead: bool = False) -> tuple[int, ...]:
    """input_grad: whether this module's backward computes dL/dx (Sequential asks it of every
    child but the first, and of the first only when its own caller does). layout_in/out: the
    layouts the plan gives a channels-last module (nn._layout). grad_dead: nothing reads the
    module's grad_output after its backward (Sequential's grad_is_dead)."""
    if isinstance(m, Sequential):
        plan, children = m.plan(layout_in, layout_out), list(m._modules.values())
        # dead[i]: child i's grad_output is dead after its backward (a buffer of a later child)
        dead, d = [False] * len(children), grad_dead
        for i in range(len(children) - 1, -1, -1):
            dead[i] = d
            d = d or not _passes_grad_on(children[i], plan[i])
        for lp, (key, child) in zip(plan, m._modules.items(), strict=True):
            shape = _walk(child, f"{name}.{key}" if name else key, shape, rows,
                          input_grad or lp.index > 0, lp.layout_in, lp.layout_out,
                          dead[lp.index])
            if lp.absorbed:  # runs in the previous layer's kernel: no output of its own
                rows[-1].update(layer=rows[-1]["layer"] + " (fused)", activation_bytes=0)
                if lp.producer_masks_grad and not (isinstance(m[lp.index - 1], Residual)
                                                   and not dead[lp.index - 1]):
                    # and in its backward: no grad_input either (a Residual masks into a
                    # buffer of the output's size, this row's count, unless it may mask its
                    # dead grad_output in place)
                    rows[-1].update(workspace_bytes=0)
            if lp.donate_input:  # grad_input written over the dead input buffer
                rows[-1].update(workspace_bytes=0)
        return shape
    extra = (0, 0)
    if isinstance(m, Residual):
        out = shape
        for key, branch in m._branches():
            last = bool(getattr(branch, "channels_last", False))
            out = _walk(branch, f"{name}.{key}" if name else key, shape, rows, True,
                        *((layout_in, layout_out) if last else (FIRST, FIRST)))
            if not last and layout_in != layout_out:  # converted by the Residual
                extra = (extra[0] + 4 * int(np.prod(out)), extra[1] + 4 * int(np.prod(shape)))
        if m.shortcut is None and layout_in != layout_out:
            extra = (extra[0] + 4 * int(np.prod(shape)), extra[1] + 4 * int(np.prod(shape)))
        want = m.output_shape(shape)
        if want is not None and tuple(out) != tuple(want):
            raise ValueError(f"summary: Residual at '{name}': branches give {out} and {want}")
        label = ("Residual (x + module(x))" if m.shortcut is None
                 else "Residual (shortcut(x) + module(x))")
    else:
        known = m.output_shape(shape)
        if known is None:
            raise ValueError(f"summary: {m.label()} at '{name}' does not define output_shape()")
        out = known
        label = m.label()
        if getattr(m, "channels_last", False) and not isinstance(m, _ConvNd):
            extra = conversion_bytes(shape, tuple(out), layout_in, layout_out)
    # a conv layer's memory() counts its own buffers for the layouts the plan gives it (its
    # channels-last copies, the padded input, a dL/dx buffer of its own); the others' count
    # their channels-last work, and conversion_bytes the edge conversions
    act, ws = (m.memory(shape, layout_in, layout_out) if isinstance(m, _ConvNd)
               else m.memory(shape))
    if not input_grad and not isinstance(m, Residual):
        ws = 0  # a leaf's workspace is its grad_input buffer, not allocated then
    act, ws = act + extra[0], ws + extra[1]
    scratch = m.thread_scratch(shape, input_grad)
    own = [p for p in m._parameters.values() if p is not None]
    rows.append({
        "name": name or "(model)", "layer": label, "output_shape": tuple(out),
        "params": sum(p.size for p in own),
        "buffer_bytes": sum(b.nbytes for b in m._buffers.values() if b is not None),
        "activation_bytes": act, "workspace_bytes": ws,
        "thread_scratch": scratch, "gemm_workspace_bytes": scratch_bytes([scratch]),
    })
    return tuple(out)


def scratch_bytes(scratches: list[GemmScratch | None]) -> int:
    """Bytes the thread-local packing buffers and driver workspace reach over the layers'
    `scratches`: each buffer
    is reused and only grows, so it is the max over the layers, per buffer and per thread, not
    the sum."""
    got = [s for s in scratches if s is not None]
    if not got:
        return 0
    # the calling thread's B panel and driver workspace
    total = max(s["b_shared"] for s in got) + max(s.get("driver", 0) for s in got)
    for t in range(max(len(s["a"]) for s in got)):  # team member t's A block, B micropanels
        total += (max(s["a"][t] for s in got if len(s["a"]) > t)
                  + max(s["b_own"][t] for s in got if len(s["b_own"]) > t))
    return total


def optimizer_state_bytes(optimizer: Any) -> int:
    """Bytes of an optimizer's state buffers (flat, parameter-storage sized): those it holds and
    those its first step will allocate."""
    state_bytes = getattr(optimizer, "state_bytes", None)
    if state_bytes is None:
        raise TypeError(f"summary: optimizer must be a steadygrad optimizer, got {type(optimizer).__name__}")
    return int(state_bytes())


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def summarize(model: Module, batch_size: int, input_shape: tuple[int, ...] | None,
              file: TextIO | None, optimizer: Any = None, input_grad: bool = False) -> dict[str, Any]:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"summary: batch_size must be a positive int, got {batch_size!r}")
    shape = ((batch_size, *input_shape) if input_shape is not None
             else _infer_input_shape(model, int(batch_size)))
    rows: list[dict[str, Any]] = []
    _walk(model, "", shape, rows, input_grad)
    params = model.parameters()
    storage = model.flat_storage
    if storage is not None:  # the flat buffers, padding included: what is really allocated
        param_bytes, grad_bytes = storage.data.nbytes, storage.grad.nbytes
    else:
        param_bytes = grad_bytes = sum(p.data.nbytes for p in params)
    out: dict[str, Any] = {
        "batch_size": int(batch_size),
        "input_shape": tuple(shape),
        "params": sum(p.size for p in params),
        "param_bytes": int(param_bytes),
        "grad_bytes": int(grad_bytes),
        "buffer_bytes": sum(r["buffer_bytes"] for r in rows),
        "activation_bytes": sum(r["activation_bytes"] for r in rows),
        "workspace_bytes": sum(r["workspace_bytes"] for r in rows),
        # one set of thread-local buffers serves every layer's GEMMs: the max over all calls
        "gemm_workspace_bytes": scratch_bytes([r["thread_scratch"] for r in rows]),
        "optimizer_bytes": 0 if optimizer is None else optimizer_state_bytes(optimizer),
        "layers": rows,
    }
    out["total_bytes"] = (out["param_bytes"] + out["grad_bytes"] + out["buffer_bytes"]
                          + out["activation_bytes"] + out["workspace_bytes"]
                          + out["gemm_workspace_bytes"] + out["optimizer_bytes"])
    if file is not None:
        print(format_table(out), file=file)
    return out


def format_table(s: dict[str, Any]) -> str:
    head = f"{'name':<16} {'layer':<44} {'output shape':<16} {'params':>10} {'activations':>12}"
    lines = [head, "-" * len(head)]
    for r in s["layers"]:
        lines.append(f"{r['name']:<16} {r['layer'][:44]:<44} {r['output_shape']!s:<16} "
                     f"{r['params']:>10,} {_fmt_bytes(r['activation_bytes']):>12}")
    lines.append("-" * len(head))
    lines.append(f"batch size {s['batch_size']}, input {s['input_shape']}")
    lines.append(f"parameters: {s['params']:,} ({_fmt_bytes(s['param_bytes'])}), "
                 f"gradients: {_fmt_bytes(s['grad_bytes'])}, buffers: {_fmt_bytes(s['buffer_bytes'])}")
    lines.append(f"activations: {_fmt_bytes(s['activation_bytes'])}, workspace (grad_input): "
                 f"{_fmt_bytes(s['workspace_bytes'])}, GEMM packing: {_fmt_bytes(s['gemm_workspace_bytes'])}, "
                 f"optimizer state: {_fmt_bytes(s['optimizer_bytes'])}")
    lines.append(f"total: {_fmt_bytes(s['total_bytes'])}")
    return "\n".join(lines)
