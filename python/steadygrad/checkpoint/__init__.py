"""Checkpoints: `save` and `load` of a model, optimizer, scheduler, sg's RNG state and user
extras (format.py: nested state as JSON metadata plus flat tensors, the model's structure
fingerprint, validation of everything before anything is copied, rollback) in a safetensors
container (safetensors.py: the file format itself, written atomically, read as hostile input).
It works on any object with state_dict/load_state_dict, so it imports only numpy and
`steadygrad._introspect`: never nn, optim, training or diagnostics."""

from __future__ import annotations

from steadygrad.checkpoint.format import load, save
from steadygrad.checkpoint.tree import CheckpointError

__all__ = ["CheckpointError", "load", "save"]
