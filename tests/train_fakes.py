"""Minimal numpy stand-ins with the nn/optim API the training tools use (Module with
forward/backward/named_parameters/state_dict, an SGD with state_dict). They let the loop,
callbacks and checkpoint tests probe edge cases (a load_state_dict that fails half-way) that
the real classes never produce."""

from __future__ import annotations

from typing import Any

import numpy as np

from steadygrad.nn.parameter import Parameter, flatten


class FakeModule:
    def __init__(self) -> None:
        self._modules: dict[str, FakeModule] = {}
        self.training = True

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def named_children(self):
        return list(self._modules.items())

    def _params(self) -> list[tuple[str, Parameter]]:
        return []

    def named_parameters(self, prefix: str = ""):
        out = [(prefix + n, p) for n, p in self._params()]
        for name, m in self._modules.items():
            out += m.named_parameters(prefix + name + ".")
        return out

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def buffers(self, prefix: str = "") -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for name, m in self._modules.items():
            out.update(m.buffers(prefix + name + "."))
        return out

    def state_dict(self) -> dict[str, np.ndarray]:
        sd = {n: p.data.copy() for n, p in self.named_parameters()}
        sd.update({k: v.copy() for k, v in self.buffers().items()})
        return sd

    def load_state_dict(self, sd: dict[str, np.ndarray]) -> None:
        for n, p in self.named_parameters():
            p.data = sd[n]
        for k, v in self.buffers().items():
            v[...] = sd[k]

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.zero_grad()

    def train(self, mode: bool = True):
        self.training = mode
        for m in self._modules.values():
            m.train(mode)
        return self

    def eval(self):
        return self.train(False)


class FakeLinear(FakeModule):
    def __init__(self, n_in: int, n_out: int, rng: np.random.Generator, gain: float = 1.0) -> None:
        super().__init__()
        self.weight = Parameter((rng.standard_normal((n_out, n_in)) * gain / np.sqrt(n_in)).astype(np.float32))
        self.bias = Parameter(np.zeros(n_out, np.float32))

    def _params(self):
        return [("weight", self.weight), ("bias", self.bias)]

    def forward(self, x):
        self.x = x
        return x @ self.weight.data.T + self.bias.data

    def backward(self, dy):
        dw, db = dy.T @ self.x, dy.sum(0)
        if self.weight.grad_fresh:
            dw, db = dw + self.weight.grad_buffer, db + self.bias.grad_buffer
        self.weight.grad, self.bias.grad = dw, db
        return dy @ self.weight.data


class FakeReLU(FakeModule):
    rectifier = True  # what diagnostics read (as on nn.ReLU), whatever the class is called

    def forward(self, x):
        self.mask = x > 0
        return np.where(self.mask, x, 0).astype(np.float32)

    def backward(self, dy):
        return np.where(self.mask, dy, 0).astype(np.float32)


class FakeSigmoid(FakeModule):
    output_bounds = (0.0, 1.0)

    def forward(self, x):
        self.y = (1 / (1 + np.exp(-x))).astype(np.float32)
        return self.y

    def backward(self, dy):
        return (dy * self.y * (1 - self.y)).astype(np.float32)


class RunningStat(FakeModule):
    """Identity that keeps a BatchNorm-like running_var buffer (updated in train mode)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.running_var = np.ones(n, np.float32)

    def buffers(self, prefix: str = ""):
        return {prefix + "running_var": self.running_var}

    def forward(self, x):
        if self.training:
            self.running_var[...] = 0.9 * self.running_var + 0.1 * x.var(0)
        return x

    def backward(self, dy):
        return dy


class FakeSequential(FakeModule):
    def __init__(self, *layers: FakeModule) -> None:
        super().__init__()
        self._modules = {str(i): m for i, m in enumerate(layers)}
        flatten(self.parameters())

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def backward(self, dy):
        for m in reversed(list(self._modules.values())):
            dy = m.backward(dy)
        return dy


class FakeCE:
    def __call__(self, logits, y):
        z = logits - logits.max(1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        self.d = p.copy()
        self.d[np.arange(len(y)), y] -= 1
        self.d = (self.d / len(y)).astype(np.float32)
        return float(-np.log(p[np.arange(len(y)), y] + 1e-30).mean())

    def backward(self):
        return self.d


class FakeMSE:
    def __call__(self, pred, y):
        self.d = (2 * (pred - y) / pred.size).astype(np.float32)
        return float(((pred - y) ** 2).mean())

    def backward(self):
        return self.d


class FakeSGD:
    """SGD with momentum over the flat buffer; step() returns the pre-clip norm."""

    def __init__(self, params, lr: float = 0.1, momentum: float = 0.9) -> None:
        self.params = list(params)
        self.param_groups = [{"lr": lr, "momentum": momentum}]
        self.storage = self.params[0].storage
        self.buf = np.zeros_like(self.storage.data)
        self.step_count = 0
        self.skipped_steps = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.zero_grad()

    def step(self) -> float:
        g = self.storage.grad
        norm = float(np.sqrt(np.sum(g.astype(np.float64) ** 2)))
        if not np.isfinite(norm):
            self.skipped_steps += 1
            return norm
        self.buf[...] = self.param_groups[0]["momentum"] * self.buf + g
        self.storage.data[...] -= self.param_groups[0]["lr"] * self.buf
        self.step_count += 1
        return norm

    def state_dict(self) -> dict[str, Any]:
        return {"state": {"momentum_buffer": self.buf.copy(), "step": self.step_count,
                          "skipped_steps": self.skipped_steps},
                "param_groups": [dict(g) for g in self.param_groups]}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        self.buf[...] = sd["state"]["momentum_buffer"]
        self.step_count = int(sd["state"]["step"])
        self.skipped_steps = int(sd["state"]["skipped_steps"])
        self.param_groups = [dict(g) for g in sd["param_groups"]]


class FakeStepLR:
    def __init__(self, optimizer: FakeSGD, step_size: int, gamma: float = 0.5) -> None:
        self.optimizer, self.step_size, self.gamma = optimizer, step_size, gamma
        self.last_epoch = 0

    def step(self) -> None:
        self.last_epoch += 1
        if self.last_epoch % self.step_size == 0:
            for g in self.optimizer.param_groups:
                g["lr"] *= self.gamma

    def state_dict(self):
        return {"last_epoch": self.last_epoch, "step_size": self.step_size, "gamma": self.gamma}

    def load_state_dict(self, sd):
        self.last_epoch, self.step_size, self.gamma = sd["last_epoch"], sd["step_size"], sd["gamma"]


def mlp(sizes: list[int], seed: int = 0, act=FakeReLU, gain: float = 1.0) -> FakeSequential:
    rng = np.random.default_rng(seed)
    layers: list[FakeModule] = []
    for i in range(len(sizes) - 1):
        layers.append(FakeLinear(sizes[i], sizes[i + 1], rng, gain))
        if i < len(sizes) - 2:
            layers.append(act())
    return FakeSequential(*layers)


def blobs(n: int = 256, d: int = 8, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d)) * 3
    y = rng.integers(0, k, n)
    x = (centers[y] + rng.standard_normal((n, d))).astype(np.float32)
    return x, y.astype(np.int64)
