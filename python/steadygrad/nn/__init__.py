"""Layers, containers, losses and initialisation with PyTorch names and explicit backprop.

    model = nn.Sequential(nn.Linear(784, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Linear(256, 10))
    loss_fn = nn.CrossEntropyLoss()
    model.zero_grad()
    loss = loss_fn(model(x), y)                  # a Python float
    model.backward(loss_fn.backward())           # returns dL/dx, fills every Parameter.grad

Building a container moves all parameters into one flat buffer (`model.flat_storage`);
arrays a call returns (outputs, dL/dx) are the caller's and never overwritten by later calls.
The rules of a call (one training forward per backward, eval forwards during a pending
backward, custom layers, threads) are in `help(nn.Module)`.
"""

from __future__ import annotations

from steadygrad.nn import init
from steadygrad.nn.activation import ELU, GELU, LeakyReLU, ReLU, Sigmoid, SiLU, Softplus, Tanh
from steadygrad.nn.batchnorm import BatchNorm1d, BatchNorm2d
from steadygrad.nn.container import Sequential
from steadygrad.nn.conv import Conv1d, Conv2d
from steadygrad.nn.dropout import Dropout
from steadygrad.nn.embedding import Embedding
from steadygrad.nn.layernorm import LayerNorm
from steadygrad.nn.linear import Flatten, Identity, Linear
from steadygrad.nn.loss import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    HuberLoss,
    L1Loss,
    MSELoss,
    NLLLoss,
    SmoothL1Loss,
)
from steadygrad.nn.module import Module
from steadygrad.nn.module_list import ModuleList
from steadygrad.nn.parameter import FlatStorage, Parameter, flatten, shared_storage
from steadygrad.nn.pooling import (
    AdaptiveAvgPool1d,
    AdaptiveAvgPool2d,
    AvgPool1d,
    AvgPool2d,
    MaxPool1d,
    MaxPool2d,
)
from steadygrad.nn.residual import Residual
from steadygrad.nn.softmax import LogSoftmax, Softmax

__all__ = [
    "ELU",
    "GELU",
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AvgPool1d",
    "AvgPool2d",
    "BCELoss",
    "BCEWithLogitsLoss",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv1d",
    "Conv2d",
    "CrossEntropyLoss",
    "Dropout",
    "Embedding",
    "FlatStorage",
    "Flatten",
    "HuberLoss",
    "Identity",
    "L1Loss",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "LogSoftmax",
    "MSELoss",
    "MaxPool1d",
    "MaxPool2d",
    "Module",
    "ModuleList",
    "NLLLoss",
    "Parameter",
    "ReLU",
    "Residual",
    "Sequential",
    "SiLU",
    "Sigmoid",
    "SmoothL1Loss",
    "Softmax",
    "Softplus",
    "Tanh",
    "flatten",
    "init",
    "shared_storage",
]
