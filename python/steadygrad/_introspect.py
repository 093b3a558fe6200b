"""Duck-typed views of models and optimizers for the training tools (callbacks, fit,
diagnostics, checkpoints): layer walking, the global RNG, learning rates. Kept in one place so
the tools depend on the nn/optim API through a handful of small functions; it imports only
`steadygrad.random`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from steadygrad import random


def children(module: Any) -> list[tuple[str, Any]]:
    """Direct sub-modules as (name, module); none for an object without named_children."""
    return list(module.named_children()) if hasattr(module, "named_children") else []


def named_layers(model: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every leaf module (a layer with no children) in forward order, PyTorch-style dotted names."""
    kids = children(model)
    if not kids:
        yield prefix or type(model).__name__, model
        return
    for name, child in kids:
        yield from named_layers(child, f"{prefix}.{name}" if prefix else str(name))


def integer_input(model: Any) -> bool:
    """Whether the model takes integer indices as input: the model, or else its first layer in
    forward order, declares `integer_input = True` (nn.Embedding does)."""
    own = getattr(model, "integer_input", None)
    if own is not None:
        return bool(own)
    first = next(named_layers(model), None)
    return first is not None and bool(getattr(first[1], "integer_input", False))


def communicator(model: Any) -> Any:
    """The communicator of a model wrapped for data parallelism over more than one rank
    (steadygrad.distributed.DistributedDataParallel's `communicator`), else None: fit and
    evaluate then shard the data and reduce what they log across its ranks."""
    comm = getattr(model, "communicator", None)
    return comm if comm is not None and getattr(comm, "size", 1) > 1 else None


def global_rng() -> np.random.Generator:
    """The numpy Generator behind sg.manual_seed (init, Dropout seeds). manual_seed replaces
    the object, so this is looked up on every use."""
    return random.generator()


def get_lr(optimizer: Any) -> float:
    groups = getattr(optimizer, "param_groups", None)
    if groups:
        return float(groups[0]["lr"])
    return float(getattr(optimizer, "lr", float("nan")))


def set_lr(optimizer: Any, lr: float) -> None:
    groups = getattr(optimizer, "param_groups", None)
    if groups:
        for g in groups:
            g["lr"] = lr
    else:
        optimizer.lr = lr


def skipped_steps(optimizer: Any) -> int:
    return int(getattr(optimizer, "skipped_steps", 0) or 0)


def training_mode(model: Any) -> bool:
    return bool(getattr(model, "training", True))


def optimizer_param_norms(optimizer: Any) -> np.ndarray | None:
    """Per-parameter gradient norms from the optimizer's last norm pass
    (`Optimizer.last_param_norms`); None before its first step or for an optimizer without it."""
    norms = getattr(optimizer, "last_param_norms", None)
    return None if norms is None else np.asarray(norms, dtype=np.float64)
