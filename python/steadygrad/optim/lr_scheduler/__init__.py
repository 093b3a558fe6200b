"""Learning-rate schedulers with torch.optim.lr_scheduler's names, arguments and trajectories.
Each declares in `interval` whether one step() is an epoch or an optimizer step (for sg.fit)."""

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
from steadygrad.optim.lr_scheduler._cyclic import CyclicLR
from steadygrad.optim.lr_scheduler._lambda import LambdaLR, MultiplicativeLR
from steadygrad.optim.lr_scheduler._plateau import ReduceLROnPlateau
from steadygrad.optim.lr_scheduler._restarts import CosineAnnealingWarmRestarts

__all__ = [
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "CyclicLR",
    "ExponentialLR",
    "LRScheduler",
    "LambdaLR",
    "LinearLR",
    "MultiStepLR",
    "MultiplicativeLR",
    "OneCycleLR",
    "ReduceLROnPlateau",
    "SequentialLR",
    "StepLR",
]
