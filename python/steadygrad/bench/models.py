"""The training-step benchmark's configurations (the MLPs here, the CNNs in models_cnn.py) and
one full step (forward, loss, backward, clip 1.0, Adam) in steadygrad, PyTorch and
JAX/Optax, the same for every configuration. Builders only: timing is in train.py, peak
memory in memory.py. Every framework gets the same shapes, data and hyperparameters.
JAX and Optax are optional and untyped: imported by name, so their absence is a runtime
skip, not a type error."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from steadygrad.bench import models_cnn
from steadygrad.bench.models_cnn import CNN_CONFIGS, ConvConfig

LR = 1e-3
MAX_NORM = 1.0
BN_EPS = 1e-5
BN_MOMENTUM = 0.1


def train_flops(layer_macs: Sequence[int], batch: int, *, first_dx: bool) -> float:
    """Flops of one training step as steadygrad-bench counts them: each conv/linear layer's
    multiply-adds per sample (layer_macs, the first layer first) x 2 for the forward, x 2
    for dL/dW and x 2 for dL/dx, times the batch; first_dx=False leaves out the first
    layer's dL/dx (the input needs no gradient: no framework computes it). Pooling,
    BatchNorm, activations, the loss and the optimizer are not counted."""
    total = 6 * sum(layer_macs) - (0 if first_dx else 2 * layer_macs[0])
    return float(total * batch)


@dataclass(frozen=True)
class Config:
    name: str
    batch: int
    dims: tuple[int, ...]  # input, hidden..., output (classes)

    warmup = "T"  # the tiny config the memory suite warms the framework up with
    first_dx = True  # the issue counts the MLPs' first-layer dL/dx (see executed_flops)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.dims[:1]

    @property
    def classes(self) -> int:
        return self.dims[-1]

    @property
    def layer_macs(self) -> list[int]:
        return [a * b for a, b in zip(self.dims[:-1], self.dims[1:], strict=False)]

    @property
    def weights(self) -> int:
        """Weight-matrix elements (the GEMM operands); biases and BN scales excluded."""
        return sum(self.layer_macs)

    @property
    def params(self) -> int:
        """Trainable scalars: Linear weights + biases, BatchNorm gamma + beta."""
        hidden = sum(self.dims[1:-1])
        return self.weights + sum(self.dims[1:]) + 2 * hidden

    @property
    def flops(self) -> float:
        """GEMM flops per step as the issue counts them: 6 per weight per sample (2 forward,
        2 for dW, 2 for dX). No framework computes the first layer's dX (the input needs no
        gradient), so the executed GEMM work is `executed_flops`, a little less."""
        return step_flops(self)

    @property
    def executed_flops(self) -> float:
        return train_flops(self.layer_macs, self.batch, first_dx=False)

    def describe(self) -> str:
        return f"batch {self.batch}, {'-'.join(map(str, self.dims))}"


AnyConfig = Config | ConvConfig


def step_flops(cfg: AnyConfig) -> float:
    """The flops a config's GFLOP/s and % of peak count (train_flops; the MLPs with the
    first layer's dL/dx, as the issue counts them, the CNNs without)."""
    return train_flops(cfg.layer_macs, cfg.batch, first_dx=cfg.first_dx)


MLP_CONFIGS = {
    "S": Config("S", 64, (784, 256, 256, 10)),
    "M": Config("M", 256, (784, 1024, 1024, 10)),
    "L": Config("L", 512, (1024, 4096, 4096, 1024)),
    # tiny: for the test suite (seconds, real measurements), hidden from --help
    "T": Config("T", 8, (16, 32, 32, 4)),
}
CONFIGS: dict[str, AnyConfig] = {**MLP_CONFIGS, **CNN_CONFIGS}


def make_data(cfg: AnyConfig, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded batch (NCHW for the CNNs) and its integer labels."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((cfg.batch, *cfg.input_shape), dtype=np.float32)
    y = rng.integers(0, cfg.classes, size=cfg.batch, dtype=np.int64)
    return x, y


StepFn = Callable[[], object]


@dataclass(frozen=True)
class Built:
    """A framework's training step on one config, with the model (and optimizer) it trains
    (memory.py sizes steadygrad's prediction from them)."""

    step: StepFn
    model: object
    optimizer: object = None
    # the step's phases in order (steadygrad only): (name, call) whose calls in turn are one
    # step, for the train suite's per-phase breakdown
    phases: tuple[tuple[str, StepFn], ...] = ()


def _layers(cfg: AnyConfig, nn: Any, residual: Callable[..., Any]) -> list[Any]:
    """The config's network as a layer list from `nn` (steadygrad.nn or torch.nn)."""
    if isinstance(cfg, ConvConfig):
        return models_cnn.modules(cfg, nn, residual)
    layers: list[Any] = []
    for a, b in zip(cfg.dims[:-2], cfg.dims[1:-1], strict=False):
        layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU()]
    layers.append(nn.Linear(cfg.dims[-2], cfg.dims[-1]))
    return layers


Wrap = Callable[[Any], Any]  # model -> the model trained (a data-parallel wrapper)


def build_steadygrad(cfg: AnyConfig, x: np.ndarray, y: np.ndarray,
                     wrap: Wrap | None = None, *, compiled: bool = False) -> Built:
    """The step is the documented training loop body (of `wrap(model)` when given:
    steadygrad.distributed.DistributedDataParallel in the distributed suite), or
    (compiled=True) the sg.compile_step of the same model, what sg.fit runs: bitwise the same
    step. The phases are the step's parts called one by one (the compiled step's forward,
    the loss module and its backward, then the tape's backward)."""
    import steadygrad as sg
    from steadygrad import nn, optim

    model = nn.Sequential(*_layers(cfg, nn, nn.Residual))
    if wrap is not None:
        model = wrap(model)
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.Adam(model.parameters(), lr=LR, max_grad_norm=MAX_NORM)
    model.train()
    comp = sg.compile_step(model, loss_fn, opt) if compiled else None
    box: dict[str, Any] = {}

    def forward() -> object:
        opt.zero_grad()
        box["pred"] = model(x) if comp is None else comp.forward(x)
        return None

    def loss() -> object:
        loss_fn(box["pred"], y)
        box["g"] = loss_fn.backward()
        return None

    def backward() -> object:
        # input_grad=False: like torch and JAX (the batch does not require grad), the first
        # layer's dL/dx is not computed.
        if comp is None:
            model.backward(box["g"], input_grad=False)
        else:
            comp.backward(box["g"])
        return None

    def step() -> object:
        if comp is not None:  # forward, loss and backward in the tape's one call, as fit runs it
            opt.zero_grad()
            comp.forward_backward(x, y, offer_norms=True)  # as fit runs it
        else:
            forward()
            loss()
            backward()
        return opt.step()

    return Built(step, model, opt, (("forward", forward), ("loss", loss),
                                    ("backward", backward), ("optimizer", opt.step)))


def build_torch(cfg: AnyConfig, x: np.ndarray, y: np.ndarray,
                wrap: Wrap | None = None, *, autocast: bool = False) -> Built:
    """wrap: torch.nn.parallel.DistributedDataParallel in the distributed suite.
    autocast=True: the forward and the loss under torch.autocast("cpu", dtype=bfloat16), as
    a PyTorch user turns bf16 on (fp32 parameters and optimizer, bf16 GEMMs)."""
    import contextlib

    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(*_layers(cfg, torch.nn, models_cnn.torch_residual()))
    if wrap is not None:
        model = wrap(model)
    model.train()
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=LR, fused=True)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> object:
        opt.zero_grad(set_to_none=True)
        with (torch.autocast("cpu", dtype=torch.bfloat16) if autocast
              else contextlib.nullcontext()):
            loss = loss_fn(model(xt), yt)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, MAX_NORM)
        opt.step()
        return norm

    return Built(step, model, opt)


def jax_batchnorm(h: Any, axes: tuple[int, ...], p: Any, st: Any) -> tuple[Any, Any]:
    """Training-mode BatchNorm over `axes` (the channel axis last), as torch's: normalised
    by the biased batch variance, the running variance updated with the unbiased one."""
    jax = importlib.import_module("jax")
    n = int(np.prod([h.shape[a] for a in axes]))
    mean = h.mean(axes)
    var = h.var(axes)
    out = (h - mean) * jax.lax.rsqrt(var + BN_EPS) * p["gamma"] + p["beta"]
    return out, {"mean": (1 - BN_MOMENTUM) * st["mean"] + BN_MOMENTUM * mean,
                 "var": (1 - BN_MOMENTUM) * st["var"] + BN_MOMENTUM * var * (n / (n - 1))}


def _jax_mlp(cfg: Config, key: Any) -> tuple[Any, Any, models_cnn.JaxApply]:
    jax = importlib.import_module("jax")
    jnp = importlib.import_module("jax.numpy")
    params: list[dict[str, Any]] = []
    bn_state: list[dict[str, Any]] = []
    for i, (a, b) in enumerate(zip(cfg.dims[:-1], cfg.dims[1:], strict=False)):
        key, k1 = jax.random.split(key)
        bound = 1.0 / np.sqrt(a)
        layer = {"w": jax.random.uniform(k1, (a, b), jnp.float32, -bound, bound),
                 "b": jnp.zeros((b,), jnp.float32)}
        if i < len(cfg.dims) - 2:
            layer["gamma"] = jnp.ones((b,), jnp.float32)
            layer["beta"] = jnp.zeros((b,), jnp.float32)
            bn_state.append({"mean": jnp.zeros((b,), jnp.float32),
                             "var": jnp.ones((b,), jnp.float32)})
        params.append(layer)

    def apply(params: Any, bn_state: Any, xb: Any) -> tuple[Any, Any]:
        h, new_state = xb, []
        for layer, st in zip(params[:-1], bn_state, strict=True):
            h, ns = jax_batchnorm(h @ layer["w"] + layer["b"], (0,), layer, st)
            h = jax.nn.relu(h)
            new_state.append(ns)
        return h @ params[-1]["w"] + params[-1]["b"], new_state

    return params, bn_state, apply


def build_jax(cfg: AnyConfig, x: np.ndarray, y: np.ndarray) -> Built:
    """jit-compiled step with optax.chain(clip_by_global_norm(1.0), adam); buffers donated
    so XLA updates parameters and state in place, as the other two frameworks do. CNNs run
    in NHWC (models_cnn.JAX_LAYOUT): the batch is transposed once, here."""
    jax = importlib.import_module("jax")
    jnp = importlib.import_module("jax.numpy")
    optax = importlib.import_module("optax")

    key = jax.random.PRNGKey(0)
    if isinstance(cfg, ConvConfig):
        params, bn_state, apply = models_cnn.jax_net(cfg, key, jax_batchnorm)
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    else:
        params, bn_state, apply = _jax_mlp(cfg, key)

    def loss_fn(params: Any, bn_state: Any, xb: Any, yb: Any) -> tuple[Any, Any]:
        logits, new_state = apply(params, bn_state, xb)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()
        return loss, new_state

    tx = optax.chain(optax.clip_by_global_norm(MAX_NORM), optax.adam(LR))
    opt_state = tx.init(params)

    def train_step(params: Any, bn_state: Any, opt_state: Any, xb: Any,
                   yb: Any) -> tuple[Any, Any, Any, Any]:
        (loss, new_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, bn_state, xb, yb)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_state, opt_state, loss

    jstep = jax.jit(train_step, donate_argnums=(0, 1, 2))
    xj, yj = jnp.asarray(x), jnp.asarray(y.astype(np.int32))
    state = [params, bn_state, opt_state]

    def step() -> object:
        p, s, o, loss = jstep(state[0], state[1], state[2], xj, yj)
        state[:] = [p, s, o]
        return loss.block_until_ready()

    return Built(step, state)


BUILDERS: dict[str, Callable[[AnyConfig, np.ndarray, np.ndarray], Built]] = {
    "steadygrad": build_steadygrad, "torch": build_torch, "jax": build_jax,
    "steadygrad_compiled": functools.partial(build_steadygrad, compiled=True)}
