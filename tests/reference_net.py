"""A float64 twin of a steadygrad model with error bounds (roundoff.Noisy: the exact value and
Monte Carlo runs of its float32 roundings) on every output, input gradient, parameter
gradient and running statistic: the formulas of torch's layers
(Linear, BatchNorm1d in train and eval, the activations, Residual, Identity, Flatten), started
from the model's own float32 parameters and buffers. Running statistics update like
BatchNorm1d's (momentum, or the cumulative average for momentum=None). backward returns the
parameter gradients of that one backward; Grads accumulates them like Parameter.grad."""

from __future__ import annotations

import numpy as np
import roundoff
from activation_refs import ACTS, Act, elu, leaky, softplus
from roundoff import Noisy, activation, activation_backward

from steadygrad import nn

Sides = dict[str, np.ndarray]  # layer name -> the implementation's x > 0 at a ReLU-like kink


class _Layer:
    def __init__(self, module: nn.Module, name: str) -> None:
        self.module, self.name = module, name  # name: the prefix of the module's own names
        self.buffers: dict[str, Noisy] = {}

    def _param(self, attr: str) -> Noisy | None:
        p = getattr(self.module, attr)
        return None if p is None else Noisy.of(p.data.copy())

    def forward(self, x: Noisy) -> Noisy:
        raise NotImplementedError

    def backward(self, dy: Noisy, sides: Sides, grads: dict[str, Noisy]) -> Noisy:
        raise NotImplementedError

    def children(self) -> list[_Layer]:
        return []


class _Linear(_Layer):
    def __init__(self, module: nn.Linear, name: str) -> None:
        super().__init__(module, name)
        w = self._param("weight")
        assert w is not None
        self.w, self.b = w, self._param("bias")

    def forward(self, x: Noisy) -> Noisy:
        self.x = x
        y = x @ self.w.T
        return y if self.b is None else y + self.b

    def backward(self, dy: Noisy, sides: Sides, grads: dict[str, Noisy]) -> Noisy:
        grads[self.name + "weight"] = dy.T @ self.x
        if self.b is not None:
            grads[self.name + "bias"] = dy.sum(0)
        return dy @ self.w


class _BatchNorm(_Layer):
    def __init__(self, module: nn.BatchNorm1d, name: str) -> None:
        super().__init__(module, name)
        self.gamma, self.beta = self._param("weight"), self._param("bias")
        if module.track_running_stats:
            self.buffers = {"running_mean": Noisy.of(module.running_mean.copy()),
                            "running_var": Noisy.of(module.running_var.copy())}
            self.tracked = int(module.num_batches_tracked)

    def forward(self, x: Noisy) -> Noisy:
        m = self.module
        self.batch = m.training or not m.track_running_stats
        if self.batch:
            mean = x.mean(0)
            xc = x - mean
            var = (xc * xc).mean(0)  # biased, to normalise (two passes, as both kernels)
        else:
            mean, var = self.buffers["running_mean"], self.buffers["running_var"]
            xc = x - mean
        self.invstd = 1.0 / (var + m.eps).sqrt()
        self.xhat = xc * self.invstd
        if m.training and m.track_running_stats:
            self.tracked += 1
            f = 1.0 / self.tracked if m.momentum is None else m.momentum
            n = x.shape[0]
            unbiased = var * (n / (n - 1)) if n > 1 else var
            for key, stat in (("running_mean", mean), ("running_var", unbiased)):
                self.buffers[key] = (1.0 - f) * self.buffers[key] + f * stat
        # The output as torch's kernel forms it, x * a + (beta - mean * a): it rounds more
        # than steadygrad's (x - mean) * a + beta where |mean| >> std, so its spread covers both.
        a = self.invstd if self.gamma is None else self.gamma * self.invstd
        shift = -(mean * a) if self.beta is None else self.beta - mean * a
        return x * a + shift

    def backward(self, dy: Noisy, sides: Sides, grads: dict[str, Noisy]) -> Noisy:
        if self.gamma is not None:
            grads[self.name + "weight"] = (dy * self.xhat).sum(0)
            grads[self.name + "bias"] = dy.sum(0)
        k = self.invstd if self.gamma is None else self.gamma * self.invstd
        if not self.batch:
            return dy * k
        return (dy - dy.mean(0) - self.xhat * (dy * self.xhat).mean(0)) * k


def _act_of(module: nn.Module) -> Act:
    if isinstance(module, nn.LeakyReLU):
        return leaky(module.negative_slope)
    if isinstance(module, nn.GELU):
        return ACTS["gelu" if module.approximate == "none" else "gelu_tanh"]
    if isinstance(module, nn.ELU):
        return elu(module.alpha)
    if isinstance(module, nn.Softplus):
        return softplus(module.beta, module.threshold)
    if isinstance(module, nn.SiLU):
        return ACTS["silu"]
    return ACTS[{nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid"}[type(module)]]


class _Activation(_Layer):
    def __init__(self, module: nn.Module, name: str) -> None:
        super().__init__(module, name)
        self.act = _act_of(module)

    def forward(self, x: Noisy) -> Noisy:
        self.x = x
        self.y = activation(self.act, x)
        return self.y

    def backward(self, dy: Noisy, sides: Sides, grads: dict[str, Noisy]) -> Noisy:
        return activation_backward(self.act, dy, self.x, self.y, sides.get(self.name))


class _Reshape(_Layer):  # Identity, Flatten: no arithmetic
    def forward(self, x: Noisy) -> Noisy:
        self.shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy: Noisy, sides: Sides, grads: dict[str, Noisy]) -> Noisy:
        return dy.reshape(*self.shape)


class _Sequential(_Layer):
    def __init__(self, module: nn.Sequential, name: str) -> None:
        super().__init__(module, name)
        self.layers = [build(c, f"{name}{key}.") for key, c in module._modules.items()]

    def forward(self, x: Noisy) -> Noisy:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dy: Noisy, sides: Sides, grads: dict[str, Noisy]) -> Noisy:
        for layer in reversed(self.layers):
            dy = layer.backward(dy, sides, grads)
        return dy

    def children(self) -> list[_Layer]:
        return self.layers


class _Residual(_Layer):
    def __init__(self, module: nn.Residual, name: str) -> None:
        super().__init__(module, name)
        self.inner = build(module.module, f"{name}module.")

    def forward(self, x: Noisy) -> Noisy:
        return x + self.inner.forward(x)

    def backward(self, dy: Noisy, sides: Sides, grads: dict[str, Noisy]) -> Noisy:
        return dy + self.inner.backward(dy, sides, grads)

    def children(self) -> list[_Layer]:
        return [self.inner]


def build(module: nn.Module, name: str = "") -> _Layer:
    for cls, layer in ((nn.Sequential, _Sequential), (nn.Residual, _Residual),
                       (nn.Linear, _Linear), (nn.BatchNorm1d, _BatchNorm),
                       (nn.Identity, _Reshape), (nn.Flatten, _Reshape)):
        if isinstance(module, cls):
            return layer(module, name)
    return _Activation(module, name)


class ReferenceNet:
    """ref = ReferenceNet(model); y = ref.forward(x); dx, grads = ref.backward(dout, sides):
    Noisy arrays (.v the exact value, .bound() the float32 error bound), grads and
    ref.buffers() by the model's parameter and buffer names."""

    def __init__(self, model: nn.Module, seed: int = 0) -> None:
        roundoff.seed(seed)
        self.root = build(model)

    def layers(self) -> list[_Layer]:
        out, todo = [], [self.root]
        while todo:
            layer = todo.pop(0)
            out.append(layer)
            todo[:0] = layer.children()
        return out

    def kinks(self) -> list[_Layer]:
        """The ReLU-like layers, whose backward needs the implementation's side near 0."""
        return [la for la in self.layers() if isinstance(la, _Activation) and la.act.kink]

    def forward(self, x: np.ndarray) -> Noisy:
        return self.root.forward(Noisy.of(x))

    def backward(self, dout: np.ndarray, sides: Sides | None = None) -> tuple[Noisy, dict[str, Noisy]]:
        grads: dict[str, Noisy] = {}
        dx = self.root.backward(Noisy.of(dout), sides or {}, grads)
        return dx, grads

    def buffers(self) -> dict[str, Noisy]:
        return {layer.name + k: b for layer in self.layers() for k, b in layer.buffers.items()}


class Grads:
    """Parameter gradients accumulated over backwards (the first after zero_grad writes)."""

    def __init__(self) -> None:
        self.acc: dict[str, Noisy] = {}

    def zero_grad(self) -> None:
        self.acc = {}

    def add(self, grads: dict[str, Noisy]) -> None:
        for name, g in grads.items():
            self.acc[name] = g if name not in self.acc else self.acc[name] + g
