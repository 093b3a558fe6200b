"""Write a layer in numpy, with its own backward, and train it inside a Sequential with sg.fit.

The layer is a learnable Swish, y = x * sigmoid(beta * x) with one beta per feature (beta = 1
is SiLU). The model Linear -> LearnableSwish -> Linear learns two interleaved spirals from a
seeded DataLoader; the script prints the layer's gradient check against central finite
differences, the loss of the first and last epochs, the validation accuracy and the betas.
README.md ("Writing a layer") walks through it.

    python examples/custom_layer.py [--epochs 40]
"""

from __future__ import annotations

import argparse

import numpy as np

import steadygrad as sg
from steadygrad import nn, optim
from steadygrad.data import DataLoader


class LearnableSwish(nn.Module):
    """y = x * sigmoid(beta * x) per feature of a (batch, features) input."""

    def __init__(self, features: int, beta: float = 1.0) -> None:
        super().__init__()  # first: registers what the assignments below add
        self.features = features
        self.beta = nn.Parameter(np.full(features, beta, np.float32))  # a trainable tensor

    def forward(self, x: np.ndarray) -> np.ndarray:
        if x.ndim != 2 or x.shape[1] != self.features:
            raise ValueError(f"expected input of shape (batch, {self.features}), got {x.shape}")
        s = 1.0 / (1.0 + np.exp(-self.beta.data * x))
        self._x, self._s = x, s  # what backward needs (the last forward's, as every layer)
        out = self._buffer("out", x.shape)  # a float32 work array reused on every call
        np.multiply(x, s, out=out)
        return out

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        x, s, beta = self._x, self._s, self.beta.data
        ds = s * (1.0 - s)  # sigmoid'(beta x)
        # dL/dbeta = sum over the batch of dL/dy * x^2 sigmoid'; added to what is there already
        self.beta.accumulate_grad((grad_output * x * x * ds).sum(axis=0))
        # dL/dx = dL/dy * (s + beta x sigmoid')
        dx = self._buffer("dx", x.shape)
        np.multiply(grad_output, s + beta * x * ds, out=dx)
        return dx

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(shape) != 2 or shape[1] != self.features:
            raise ValueError(f"expected input of shape (batch, {self.features}), got {tuple(shape)}")
        return tuple(shape)

    def __repr__(self) -> str:
        return f"LearnableSwish({self.features})"


def spirals(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    t = rng.uniform(0.25, 1.0, n) * 3 * np.pi
    x = np.stack([t * np.cos(t + np.pi * y), t * np.sin(t + np.pi * y)], axis=1) / (3 * np.pi)
    return (x + rng.normal(0, 0.02, x.shape)).astype(np.float32), y.astype(np.int64)


def gradient_check(layer: LearnableSwish, seed: int = 1) -> float:
    """Largest relative error of the layer's backward (dL/dx and dL/dbeta) against central
    differences of L = sum(y * g) computed in float64."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((5, layer.features)).astype(np.float32)
    g = rng.standard_normal((5, layer.features)).astype(np.float32)
    layer.zero_grad()
    layer(x)
    dx = layer.backward(g).astype(np.float64)
    dbeta = layer.beta.grad.astype(np.float64)
    x64, b64, g64, h = x.astype(np.float64), layer.beta.data.astype(np.float64), g.astype(np.float64), 1e-6

    def loss(xv: np.ndarray, bv: np.ndarray) -> float:
        return float(np.sum(xv / (1.0 + np.exp(-bv * xv)) * g64))

    fd_x = np.zeros_like(x64)
    for i in np.ndindex(x64.shape):
        e = np.zeros_like(x64)
        e[i] = h
        fd_x[i] = (loss(x64 + e, b64) - loss(x64 - e, b64)) / (2 * h)
    fd_b = np.array([(loss(x64, b64 + h * e) - loss(x64, b64 - h * e)) / (2 * h)
                     for e in np.eye(len(b64))])
    err = max(np.max(np.abs(dx - fd_x) / (np.abs(fd_x) + 1e-3)),
              np.max(np.abs(dbeta - fd_b) / (np.abs(fd_b) + 1e-3)))
    return float(err)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=40)
    args = ap.parse_args()

    sg.manual_seed(0)
    print(f"gradient check: max relative error {gradient_check(LearnableSwish(4, beta=0.7)):.2e}")

    x, y = spirals(1200)
    x_val, y_val = spirals(400, seed=1)
    model = nn.Sequential(nn.Linear(2, 64), LearnableSwish(64), nn.Linear(64, 64), LearnableSwish(64),
                          nn.Linear(64, 2))
    opt = optim.Adam(model.parameters(), lr=1e-2)
    loader = DataLoader(x, y, batch_size=64, shuffle=True, seed=0)
    history = sg.fit(model, nn.CrossEntropyLoss(), opt, loader, epochs=args.epochs,
                     validation_data=(x_val, y_val), verbose=0)
    print(f"loss: first epoch {history['loss'][0]:.4f}, last epoch {history['loss'][-1]:.4f}")
    print(f"validation accuracy: {history['val_accuracy'][-1]:.4f}")
    betas = model[1].beta.data
    print(f"learned beta: mean {betas.mean():.3f}, range [{betas.min():.3f}, {betas.max():.3f}]")


if __name__ == "__main__":
    main()
