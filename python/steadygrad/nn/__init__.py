"""Layers, containers, losses and initialisation with PyTorch names and explicit backprop."""

from __future__ import annotations

from steadygrad.nn.parameter import FlatStorage, Parameter, flatten, shared_storage

__all__ = ["FlatStorage", "Parameter", "flatten", "shared_storage"]
