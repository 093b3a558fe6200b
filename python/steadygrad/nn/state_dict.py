"""state_dict support: the (key -> array) view of a module tree under PyTorch's keys, and
loading into it by copying into the existing arrays (the flat parameter buffer stays whole)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from steadygrad.nn.module import Module


class IncompatibleKeys(NamedTuple):
    missing_keys: list[str]
    unexpected_keys: list[str]


def state_targets(module: Module) -> OrderedDict[str, np.ndarray]:
    """The live arrays (parameter views, buffers) in PyTorch's order: per module, its
    parameters, then its buffers, then its children."""
    targets: OrderedDict[str, np.ndarray] = OrderedDict()
    for mname, m in module.named_modules():
        pre = f"{mname}." if mname else ""
        for k, p in m._parameters.items():
            if p is not None:
                targets[pre + k] = p.data
        for k, b in m._buffers.items():
            if b is not None:
                targets[pre + k] = b
    return targets


def load_state(module: Module, state_dict: Mapping[str, Any], strict: bool) -> IncompatibleKeys:
    targets = state_targets(module)
    missing = [k for k in targets if k not in state_dict]
    unexpected = [k for k in state_dict if k not in targets]
    errors: list[str] = []
    if strict and (missing or unexpected):
        if unexpected:
            errors.append("Unexpected key(s) in state_dict: " +
                          ", ".join(f'"{k}"' for k in unexpected) + ". ")
        if missing:
            errors.append("Missing key(s) in state_dict: " +
                          ", ".join(f'"{k}"' for k in missing) + ". ")
    sources: dict[str, np.ndarray] = {}
    for k, dst in targets.items():
        if k not in state_dict:
            continue
        v = state_dict[k]
        if hasattr(v, "detach"):
            v = v.detach().cpu().numpy()
        src = np.asarray(v)
        if src.shape != dst.shape:
            errors.append(f"size mismatch for {k}: copying a param with shape {src.shape} "
                          f"from checkpoint, the shape in current model is {dst.shape}.")
        elif not np.can_cast(src.dtype, dst.dtype, casting="same_kind"):
            errors.append(f"dtype mismatch for {k}: cannot copy {src.dtype} into {dst.dtype}.")
        sources[k] = src
    if errors:
        raise RuntimeError(f"Error(s) in loading state_dict for {type(module).__name__}:\n\t"
                           + "\n\t".join(errors))
    for k, src in sources.items():
        np.copyto(targets[k], src, casting="same_kind")
    return IncompatibleKeys(missing, unexpected)
