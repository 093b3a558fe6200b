"""The CNN configurations of the training-step and memory benchmarks (C1 LeNet-5-like, C2
ResNet-8-like) as data: a layer list, walked once for shapes, multiply-adds and parameter
counts. `modules` turns one into a layer list for steadygrad or PyTorch (both take the same
layer names); `jax_net` into JAX parameters and a forward in NHWC. The training step around
them (loss, clip, Adam) is models.py's, shared with the MLPs. JAX is optional and untyped:
imported by name, so its absence is a runtime skip, not a type error."""

from __future__ import annotations

import functools
import importlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Conv:
    """Conv2d (square kernel), then BatchNorm2d if `bn`, then ReLU if `relu`."""

    out: int
    kernel: int
    stride: int = 1
    padding: int = 0
    bias: bool = True
    bn: bool = False
    relu: bool = True


@dataclass(frozen=True)
class MaxPool:
    kernel: int  # stride = kernel, no padding


@dataclass(frozen=True)
class Block:
    """A ResNet basic block: conv3x3(stride)-BN-ReLU-conv3x3-BN plus the shortcut, then ReLU.
    The shortcut is the identity, or a projection (1x1 conv, stride, no bias, + BN) when
    the stride or the width changes. Its convolutions have no bias (BN follows each)."""

    out: int
    stride: int = 1


@dataclass(frozen=True)
class GlobalAvgPool:
    """AdaptiveAvgPool2d(1)."""


@dataclass(frozen=True)
class Dense:
    """Linear (a Flatten is inserted before the first one), then ReLU if `relu`."""

    out: int
    relu: bool = True


Layer = Conv | MaxPool | Block | GlobalAvgPool | Dense
Shape = tuple[int, ...]  # (C, H, W) per sample, (features,) after the flatten


@dataclass(frozen=True)
class ConvOp:
    """One weighted layer's GEMM, per sample: a conv (kernel > 0) or a linear (kernel 0), with
    its output's spatial size (stride and padding are in out_hw: nothing else reads them)."""

    cin: int
    cout: int
    kernel: int = 0
    bias: bool = True
    out_hw: tuple[int, int] = (1, 1)

    @property
    def macs(self) -> int:
        return self.cout * self.out_hw[0] * self.out_hw[1] * self.cin * max(self.kernel, 1) ** 2

    @property
    def params(self) -> int:
        return self.cout * self.cin * max(self.kernel, 1) ** 2 + self.cout * self.bias


def _out(n: int, kernel: int, stride: int, padding: int = 0) -> int:
    return (n + 2 * padding - kernel) // stride + 1


def _conv(shape: Shape, cout: int, kernel: int, stride: int = 1, padding: int = 0,
          bias: bool = False) -> ConvOp:
    c, h, w = shape
    return ConvOp(c, cout, kernel, bias,
                  (_out(h, kernel, stride, padding), _out(w, kernel, stride, padding)))


def projects(block: Block, cin: int) -> bool:
    return block.stride != 1 or block.out != cin


def walk(layers: tuple[Layer, ...], input_shape: Shape) -> Iterator[tuple[Layer, Shape, Shape]]:
    """(layer, input shape, output shape) per layer, per sample."""
    shape = input_shape
    for layer in layers:
        if isinstance(layer, Conv):
            op = _conv(shape, layer.out, layer.kernel, layer.stride, layer.padding)
            out: Shape = (layer.out, *op.out_hw)
        elif isinstance(layer, MaxPool):
            out = (shape[0], *(_out(n, layer.kernel, layer.kernel) for n in shape[1:]))
        elif isinstance(layer, Block):
            out = (layer.out, *_conv(shape, layer.out, 3, layer.stride, 1).out_hw)
        elif isinstance(layer, GlobalAvgPool):
            out = (shape[0], 1, 1)
        else:
            out = (layer.out,)
        yield layer, shape, out
        shape = out


def ops(layers: tuple[Layer, ...], input_shape: Shape) -> tuple[list[ConvOp], int]:
    """The weighted layers in execution order (the first reads the input) and the
    BatchNorm channel count (each channel: gamma and beta)."""
    out: list[ConvOp] = []
    bn = 0
    for layer, shape, _ in walk(layers, input_shape):
        if isinstance(layer, Conv):
            out.append(_conv(shape, layer.out, layer.kernel, layer.stride, layer.padding,
                             layer.bias))
            bn += layer.out * layer.bn
        elif isinstance(layer, Block):
            first = _conv(shape, layer.out, 3, layer.stride, 1)
            out += [first, _conv((layer.out, *first.out_hw), layer.out, 3, 1, 1)]
            bn += 2 * layer.out
            if projects(layer, shape[0]):
                out.append(_conv(shape, layer.out, 1, layer.stride))
                bn += layer.out
        elif isinstance(layer, Dense):
            out.append(ConvOp(math.prod(shape), layer.out))
    return out, bn


@dataclass(frozen=True)
class ConvConfig:
    """A CNN benchmark configuration: NCHW input of `input_shape` per sample, `layers` in
    order, the last a Dense without ReLU giving the class logits."""

    name: str
    batch: int
    input_shape: tuple[int, int, int]
    layers: tuple[Layer, ...]
    label: str = ""
    warmup: str = "CT"  # the tiny config the memory suite warms the framework up with
    first_dx: bool = False  # the flop count leaves out the first layer's dL/dx

    @property
    def classes(self) -> int:
        last = self.layers[-1]
        assert isinstance(last, Dense) and not last.relu, self.name
        return last.out

    @property
    def layer_macs(self) -> list[int]:
        return [op.macs for op in ops(self.layers, self.input_shape)[0]]

    @property
    def params(self) -> int:
        weighted, bn = ops(self.layers, self.input_shape)
        return sum(op.params for op in weighted) + 2 * bn

    def describe(self) -> str:
        parts = []
        for layer in self.layers:
            if isinstance(layer, Conv):
                s = f" s{layer.stride}" if layer.stride != 1 else ""
                parts.append(f"conv{layer.kernel}x{layer.kernel} {layer.out}{s}"
                             + ("+BN" if layer.bn else ""))
            elif isinstance(layer, MaxPool):
                parts.append(f"maxpool{layer.kernel}")
            elif isinstance(layer, Block):
                parts.append(f"block {layer.out}" + (f" s{layer.stride}" if layer.stride != 1
                                                     else ""))
            elif isinstance(layer, GlobalAvgPool):
                parts.append("avgpool")
            else:
                parts.append(f"fc {layer.out}")
        shape = "x".join(map(str, self.input_shape))
        return f"batch {self.batch}, {shape}, {self.label}: {', '.join(parts)}"


CNN_CONFIGS = {
    "C1": ConvConfig("C1", 64, (1, 28, 28), (
        Conv(6, 5), MaxPool(2), Conv(16, 5), MaxPool(2),
        Dense(120), Dense(84), Dense(10, relu=False)), "LeNet-5-like"),
    "C2": ConvConfig("C2", 64, (3, 32, 32), (
        Conv(16, 3, padding=1, bias=False, bn=True), Block(16), Block(32, 2), Block(64, 2),
        GlobalAvgPool(), Dense(10, relu=False)), "ResNet-8-like"),
    # tiny: every layer kind, for the test suite and the memory suite's warm-up; hidden
    "CT": ConvConfig("CT", 4, (3, 8, 8), (
        Conv(4, 3, padding=1, bias=False, bn=True), MaxPool(2), Block(4), Block(8, 2),
        GlobalAvgPool(), Dense(6), Dense(3, relu=False)), "tiny CNN"),
}


def modules(cfg: ConvConfig, nn: Any, residual: Callable[..., Any]) -> list[Any]:
    """The network's layers from `nn` (steadygrad.nn or torch.nn: the same names and
    signatures); `residual(body, shortcut)` adds the two branches (nn.Residual in
    steadygrad, `torch_residual()` in PyTorch). A Block is Sequential(residual, ReLU)."""
    out: list[Any] = []
    for layer, shape, _ in walk(cfg.layers, cfg.input_shape):
        if isinstance(layer, Conv):
            out.append(nn.Conv2d(shape[0], layer.out, layer.kernel, stride=layer.stride,
                                 padding=layer.padding, bias=layer.bias))
            out += [nn.BatchNorm2d(layer.out)] * layer.bn + [nn.ReLU()] * layer.relu
        elif isinstance(layer, MaxPool):
            out.append(nn.MaxPool2d(layer.kernel))
        elif isinstance(layer, Block):
            c, k = shape[0], layer.out
            body = nn.Sequential(
                nn.Conv2d(c, k, 3, stride=layer.stride, padding=1, bias=False),
                nn.BatchNorm2d(k), nn.ReLU(),
                nn.Conv2d(k, k, 3, stride=1, padding=1, bias=False), nn.BatchNorm2d(k))
            shortcut = (nn.Sequential(nn.Conv2d(c, k, 1, stride=layer.stride, bias=False),
                                      nn.BatchNorm2d(k)) if projects(layer, c) else None)
            out.append(nn.Sequential(residual(body, shortcut), nn.ReLU()))
        elif isinstance(layer, GlobalAvgPool):
            out.append(nn.AdaptiveAvgPool2d(1))
        else:
            if len(shape) > 1:
                out.append(nn.Flatten())
            out.append(nn.Linear(math.prod(shape), layer.out))
            out += [nn.ReLU()] * layer.relu
    return out


@functools.cache
def torch_residual() -> type:
    """PyTorch has no residual container: module(x) + shortcut(x) (identity when None),
    named as steadygrad's nn.Residual names them, so the state_dict keys agree."""
    import torch

    class Residual(torch.nn.Module):
        def __init__(self, body: torch.nn.Module, shortcut: torch.nn.Module | None) -> None:
            super().__init__()
            self.module = body
            self.shortcut = shortcut if shortcut is not None else torch.nn.Identity()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.module(x) + self.shortcut(x)  # type: ignore[no-any-return]

    return Residual


# JAX: (params, state, x) -> (logits, new state); `bn(h, axes, p, st) -> (h, new st)` is
# models.py's training-mode BatchNorm (batch statistics, running-statistic update)
JaxBN = Callable[[Any, tuple[int, ...], Any, Any], tuple[Any, Any]]
JaxApply = Callable[[Any, Any, Any], tuple[Any, Any]]

# XLA:CPU runs a convolution as Eigen's spatial convolution in NHWC with HWIO kernels; other
# dimension orders get transposes around every conv. The batch is converted once, untimed.
JAX_LAYOUT = ("NHWC", "HWIO", "NHWC")


def jax_net(cfg: ConvConfig, key: Any, bn: JaxBN) -> tuple[Any, Any, JaxApply]:
    """Parameters (torch's default init bounds: U(+-1/sqrt(fan_in)); BN gamma 1, beta 0),
    BatchNorm state and the forward of `cfg` in NHWC (input: the NCHW batch transposed)."""
    jax = importlib.import_module("jax")
    jnp = importlib.import_module("jax.numpy")
    lax = jax.lax
    keys = iter(jax.random.split(key, 64))

    def conv_p(op: ConvOp) -> dict[str, Any]:
        fan_in = op.cin * max(op.kernel, 1) ** 2
        bound = 1.0 / np.sqrt(fan_in)
        shape = (op.kernel, op.kernel, op.cin, op.cout) if op.kernel else (op.cin, op.cout)
        p = {"w": jax.random.uniform(next(keys), shape, jnp.float32, -bound, bound)}
        if op.bias:
            p["b"] = jax.random.uniform(next(keys), (op.cout,), jnp.float32, -bound, bound)
        return p

    def bn_p(c: int) -> tuple[dict[str, Any], dict[str, Any]]:
        return ({"gamma": jnp.ones((c,), jnp.float32), "beta": jnp.zeros((c,), jnp.float32)},
                {"mean": jnp.zeros((c,), jnp.float32), "var": jnp.ones((c,), jnp.float32)})

    params: list[dict[str, Any]] = []
    state: list[dict[str, Any]] = []
    for layer, shape, _ in walk(cfg.layers, cfg.input_shape):
        p: dict[str, Any] = {}
        s: dict[str, Any] = {}
        if isinstance(layer, Conv):
            p["conv"] = conv_p(ConvOp(shape[0], layer.out, layer.kernel, bias=layer.bias))
            if layer.bn:
                p["bn"], s["bn"] = bn_p(layer.out)
        elif isinstance(layer, Block):
            k = layer.out
            p["conv1"] = conv_p(ConvOp(shape[0], k, 3, bias=False))
            p["conv2"] = conv_p(ConvOp(k, k, 3, bias=False))
            p["bn1"], s["bn1"] = bn_p(k)
            p["bn2"], s["bn2"] = bn_p(k)
            if projects(layer, shape[0]):
                p["proj"] = conv_p(ConvOp(shape[0], k, 1, bias=False))
                p["bn_proj"], s["bn_proj"] = bn_p(k)
        elif isinstance(layer, Dense):
            p["fc"] = conv_p(ConvOp(math.prod(shape), layer.out))
        params.append(p)
        state.append(s)

    spatial = (0, 1, 2)

    def conv(h: Any, p: dict[str, Any], stride: int, padding: int) -> Any:
        y = lax.conv_general_dilated(h, p["w"], (stride, stride), [(padding, padding)] * 2,
                                     dimension_numbers=JAX_LAYOUT)
        return y + p["b"] if "b" in p else y

    def apply(params: Any, state: Any, x: Any) -> tuple[Any, Any]:
        h, new_state = x, []
        for layer, p, st in zip(cfg.layers, params, state, strict=True):
            ns: dict[str, Any] = {}
            if isinstance(layer, Conv):
                h = conv(h, p["conv"], layer.stride, layer.padding)
                if layer.bn:
                    h, ns["bn"] = bn(h, spatial, p["bn"], st["bn"])
                h = jax.nn.relu(h) if layer.relu else h
            elif isinstance(layer, MaxPool):
                k = layer.kernel
                h = lax.reduce_window(h, -jnp.inf, lax.max, (1, k, k, 1), (1, k, k, 1), "VALID")
            elif isinstance(layer, Block):
                y, ns["bn1"] = bn(conv(h, p["conv1"], layer.stride, 1), spatial, p["bn1"],
                                  st["bn1"])
                y, ns["bn2"] = bn(conv(jax.nn.relu(y), p["conv2"], 1, 1), spatial, p["bn2"],
                                  st["bn2"])
                if "proj" in p:
                    h, ns["bn_proj"] = bn(conv(h, p["proj"], layer.stride, 0), spatial,
                                          p["bn_proj"], st["bn_proj"])
                h = jax.nn.relu(y + h)
            elif isinstance(layer, GlobalAvgPool):
                h = h.mean(axis=(1, 2), keepdims=True)
            else:
                h = h.reshape(h.shape[0], -1) @ p["fc"]["w"] + p["fc"]["b"]
                h = jax.nn.relu(h) if layer.relu else h
            new_state.append(ns)
        return h, new_state

    return params, state, apply
