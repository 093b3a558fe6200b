"""Optimizers over the flat parameter buffer (one fused C++ kernel per parameter group and
step, clipping and a non-finite guard folded in), gradient clipping and LR schedulers."""

from __future__ import annotations

from steadygrad.optim import lr_scheduler
from steadygrad.optim._norms import NonFiniteGradientError, NonFiniteGradientWarning
from steadygrad.optim.adagrad import Adagrad
from steadygrad.optim.adam import Adam, AdamW
from steadygrad.optim.clip import clip_grad_norm_, clip_grad_value_, get_total_norm
from steadygrad.optim.nadam import NAdam
from steadygrad.optim.optimizer import Optimizer
from steadygrad.optim.rmsprop import RMSprop
from steadygrad.optim.sgd import SGD

__all__ = [
    "SGD",
    "Adagrad",
    "Adam",
    "AdamW",
    "NAdam",
    "NonFiniteGradientError",
    "NonFiniteGradientWarning",
    "Optimizer",
    "RMSprop",
    "clip_grad_norm_",
    "clip_grad_value_",
    "get_total_norm",
    "lr_scheduler",
]
