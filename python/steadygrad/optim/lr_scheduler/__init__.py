"""Learning-rate schedulers with torch.optim.lr_scheduler's names, arguments and trajectories."""

from __future__ import annotations

from steadygrad.optim.lr_scheduler._base import (
    CosineAnnealingLR,
    ExponentialLR,
    LinearLR,
    LRScheduler,
    MultiStepLR,
    StepLR,
)
from steadygrad.optim.lr_scheduler._composite import OneCycleLR, SequentialLR
from steadygrad.optim.lr_scheduler._plateau import ReduceLROnPlateau

__all__ = [
    "CosineAnnealingLR",
    "ExponentialLR",
    "LRScheduler",
    "LinearLR",
    "MultiStepLR",
    "OneCycleLR",
    "ReduceLROnPlateau",
    "SequentialLR",
    "StepLR",
]
