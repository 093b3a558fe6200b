"""What the distributed tests share (how they run: tests/conftest.py's distributed section):
collective verdicts, the models (an
MLP and a CNN, each with or without BatchNorm) with their float64 torch twins, and the
environment for launching a separate MPI job from a test."""

from __future__ import annotations

import os
import zlib

import numpy as np
import torch

import steadygrad as sg
import steadygrad.distributed as dist
from steadygrad import nn

U = float(np.finfo(np.float32).eps) / 2  # float32's unit roundoff


def agree(ok: bool) -> bool:
    """True on every rank when `ok` holds on every rank (one allreduce)."""
    buf = np.array([0.0 if ok else 1.0])
    dist.communicator().allreduce_(buf)
    return buf[0] == 0.0


def checksum(arrays: list[np.ndarray]) -> int:
    """crc32 of the arrays' bytes, in order."""
    crc = 0
    for a in arrays:
        crc = zlib.crc32(np.ascontiguousarray(a).tobytes(), crc)
    return crc


def same_on_every_rank(value: int) -> bool:
    """Whether every rank holds the same integer (a checksum allreduce: the sum equals
    ranks * value on every rank exactly when the values agree; the verdict is collective)."""
    comm = dist.communicator()
    buf = np.array([value], np.int64)
    comm.allreduce_(buf)
    return agree(int(buf[0]) == comm.size * value)


def build(kind: str, norm: bool) -> nn.Sequential:
    """An MLP on (N, 6) or a CNN on (N, 3, 6, 6), 4 classes; BatchNorm1d/2d after the first
    layer when norm."""
    if kind == "mlp":
        layers = [nn.Linear(6, 16), *( [nn.BatchNorm1d(16)] if norm else []), nn.ReLU(),
                  nn.Linear(16, 4)]
    else:
        layers = [nn.Conv2d(3, 5, 3, padding=1), *([nn.BatchNorm2d(5)] if norm else []),
                  nn.ReLU(), nn.Flatten(), nn.Linear(5 * 36, 4)]
    return nn.Sequential(*layers)


def data(kind: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (n, 6) if kind == "mlp" else (n, 3, 6, 6)
    return rng.standard_normal(shape).astype(np.float32), rng.integers(0, 4, n)


def torch_twin(model: sg.nn.Module, kind: str, norm: bool) -> torch.nn.Module:
    """The same network in torch, float64, holding `model`'s values (torch's keys)."""
    if kind == "mlp":
        layers: list[torch.nn.Module] = [torch.nn.Linear(6, 16), *([torch.nn.BatchNorm1d(16)] if norm else []),
                                         torch.nn.ReLU(), torch.nn.Linear(16, 4)]
    else:
        layers = [torch.nn.Conv2d(3, 5, 3, padding=1), *([torch.nn.BatchNorm2d(5)] if norm else []),
                  torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(5 * 36, 4)]
    twin = torch.nn.Sequential(*layers).double()
    twin.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in model.state_dict().items()})
    return twin


def torch_grads(twin: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """The float64 gradients of the mean cross-entropy of (x, y), by parameter name."""
    twin.zero_grad()
    out = twin(torch.from_numpy(x.astype(np.float64)))
    torch.nn.functional.cross_entropy(out, torch.from_numpy(y)).backward()
    return {k: p.grad.numpy() for k, p in twin.named_parameters()}


def launch_env() -> dict[str, str]:
    """This process's environment without what its own MPI launcher set (a job started from
    a test is a separate job), one thread per rank."""
    drop = ("PMI_", "PMIX_", "HYDRA_", "HYD_", "MPIR_", "MPI_LOCAL", "OMPI_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["OMP_NUM_THREADS"] = "1"
    return env
