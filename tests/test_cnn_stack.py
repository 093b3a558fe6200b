"""Whole conv stacks (issue 13's cross-layer guarantees): a conv + BatchNorm2d + ReLU + pool +
residual network (identity and stride-2 projection blocks, global average pool, Linear head),
a Conv1d + BatchNorm1d(N, C, L) + MaxPool1d/AvgPool1d stack and one with depthwise convs
(groups = C, multiplier 1 and 2) and Dropout(p=0), against a float64 torch twin with the same
weights (load_state_dict of our state_dict): outputs, dL/dx, every parameter gradient and the
running statistics over 3 training steps with random upstream gradients and Adam
(torch.optim.Adam with our hyperparameters, fed our gradients), then in eval mode. Tolerances
are the propagated first-order float32 error bounds of tests/stack_bounds.py (the fuzzer's);
as they compound with depth, each part of a stack is also checked on its own input within its
own rounding. Also: the plan keeps the whole conv run channels-last (conversions only at its edges), the
stack's results are bitwise those of each layer run on its own, and bitwise equal at 1 and 2
threads for forward, backward and the Adam step."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from conftest import assert_close, num_threads
from fuzz_support import model_state, optimizer_state, torch_threads
from stack_bounds import BN, SLACK, adam_bound, as_np, grad_bound, twin_of, walk

import steadygrad as sg
from steadygrad import nn, optim
from steadygrad.nn._layout import FIRST, LAST


def resnet() -> nn.Sequential:
    def block(c: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c),
                             nn.ReLU(), nn.Conv2d(c, c, 3, padding=1, bias=False),
                             nn.BatchNorm2d(c))

    down = nn.Residual(
        nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16),
                      nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1, bias=False),
                      nn.BatchNorm2d(16, momentum=None)),
        shortcut=nn.Sequential(nn.Conv2d(8, 16, 1, stride=2, bias=False), nn.BatchNorm2d(16)))
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Sequential(nn.Residual(block(8)), nn.ReLU()),
                         down, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(16, 10))


def conv1d() -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(2, 6, 5, padding=2), nn.BatchNorm1d(6), nn.ReLU(),
                         nn.MaxPool1d(2), nn.Conv1d(6, 8, 3, dilation=2), nn.BatchNorm1d(8),
                         nn.ReLU(), nn.AvgPool1d(2), nn.Flatten(), nn.Linear(8 * 3, 5))


def depthwise() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(6, 6, 3, padding=1, groups=6), nn.BatchNorm2d(6), nn.ReLU(),
                         nn.Dropout(0.0), nn.Conv2d(6, 12, 3, stride=2, groups=6), nn.ReLU(),
                         nn.AvgPool2d(2, padding=1), nn.Flatten(), nn.Linear(12 * 9, 4))


# name: (model, input shape)
STACKS: dict[str, tuple[Callable[[], nn.Sequential], tuple[int, ...]]] = {
    "resnet": (resnet, (4, 3, 10, 10)),
    "conv1d": (conv1d, (3, 2, 20)),
    "depthwise": (depthwise, (3, 3, 11, 11)),
}
ADAM = {"lr": 1e-2, "betas": (0.9, 0.99), "eps": 1e-8, "weight_decay": 1e-3, "amsgrad": False,
        "decoupled_weight_decay": False, "maximize": False}


def _build(name: str, seed: int = 3) -> tuple[nn.Sequential, tuple[int, ...]]:
    sg.manual_seed(seed)
    make, shape = STACKS[name]
    model = make()
    rng = np.random.default_rng(seed)
    for m in model.modules():  # BatchNorm off its defaults: gammas of both signs, used stats
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.weight.data = rng.uniform(-2, 2, m.num_features).astype(np.float32)
            m.bias.data = rng.standard_normal(m.num_features).astype(np.float32)
            if m.running_mean is not None:
                m.running_mean[...] = rng.standard_normal(m.num_features)
                m.running_var[...] = rng.uniform(0.5, 2.0, m.num_features)
    return model, shape


def _load(twin: torch.nn.Module, model: nn.Module, params_only: bool = False) -> None:
    params = {k for k, _ in model.named_parameters()}
    sd = {k: torch.from_numpy(np.array(v, dtype=np.float64 if v.dtype == np.float32 else v.dtype))
          for k, v in model.state_dict().items() if not params_only or k in params}
    twin.load_state_dict(sd, strict=not params_only)


def _against_twin(model: nn.Module, twin: torch.nn.Module, root: Any, x: np.ndarray,
                  dy: np.ndarray, y: np.ndarray, dx: np.ndarray, what: str,
                  scale: float = 1.0) -> None:
    """Our output y, dL/dx and parameter gradients (each times `scale`: 1 + an injected bias
    for the bounds' tightness check) against the float64 twin's forward + backward of (x, dy),
    within the bounds propagated through the twin's tree."""
    for node in walk(root):
        node.grads = {}
    xt = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
    twin.zero_grad()
    yt = root.forward(xt)
    (yt * torch.from_numpy(dy.astype(np.float64))).sum().backward()
    ey = root.fwd(np.zeros(x.shape))
    _, edx = root.bwd(np.zeros(dy.shape))
    assert_close(y * scale, as_np(yt), SLACK * ey, what=f"{what}: output")
    assert_close(dx * scale, as_np(xt.grad), SLACK * edx, what=f"{what}: dL/dx")
    tparams = dict(twin.named_parameters())
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert_close(p.grad * scale, as_np(tparams[name].grad), SLACK * grad_bound(root, p),
                     what=f"{what}: grad {name}")


def _compare_pass(model: nn.Sequential, twin: torch.nn.Module, root: Any, x: np.ndarray,
                  dy: np.ndarray, what: str) -> None:
    """One forward + backward of ours and of the twin (dL/dy = dy), all results within their
    bounds: output, dL/dx, every parameter gradient, every running statistic."""
    model.zero_grad()
    _against_twin(model, twin, root, x, dy, model(x).copy(), model.backward(dy).copy(), what)
    tbufs = dict(twin.named_buffers())
    bns = {id(b.sg_mod): b for b in walk(root) if isinstance(b, BN)}
    for mname, m in model.named_modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.track_running_stats:
            b = bns[id(m)]
            assert_close(m.running_mean, as_np(tbufs[f"{mname}.running_mean"]), SLACK * b.erm,
                         what=f"{what}: {mname}.running_mean")
            assert_close(m.running_var, as_np(tbufs[f"{mname}.running_var"]), SLACK * b.erv,
                         what=f"{what}: {mname}.running_var")
            assert int(m.num_batches_tracked) == int(tbufs[f"{mname}.num_batches_tracked"])


class _TorchAdam:
    """torch.optim.Adam on float64 copies of our parameters, fed our float32 gradients, and the
    bounds of adam_bound (tests/stack_bounds.py) on how far ours may be from it."""

    def __init__(self, params: list[nn.Parameter]) -> None:
        self.params = params
        self.tps = [torch.tensor(p.data, dtype=torch.float64, requires_grad=True) for p in params]
        self.opt = torch.optim.Adam(self.tps, **ADAM)
        self.errs: list[dict[str, np.ndarray]] = [{"p": np.zeros(p.shape)} for p in params]
        self.t = 0

    def _state(self, tp: torch.Tensor) -> dict[str, np.ndarray]:
        return {k: as_np(v).copy() for k, v in self.opt.state[tp].items()
                if isinstance(v, torch.Tensor) and v.ndim}

    def step_and_compare(self, ours: optim.Optimizer, what: str) -> None:
        grads = [p.grad.astype(np.float64) for p in self.params]
        before = [(as_np(tp).copy(), self._state(tp)) for tp in self.tps]
        ours.step()
        for tp, g in zip(self.tps, grads, strict=True):
            tp.grad = torch.from_numpy(g)
        self.opt.step()
        self.t += 1
        for p, tp, g, (p0, s0), e in zip(self.params, self.tps, grads, before, self.errs,
                                         strict=True):
            bound = adam_bound(ADAM, self.t, p0, s0, np.abs(g), np.zeros(g.shape), e)
            assert_close(p.data, as_np(tp), SLACK * e["p"], what=f"{what}: param {p.shape}")
            for name, want in self._state(tp).items():
                assert_close(ours.state[p][name], want, SLACK * bound[name],
                             what=f"{what}: {name} {p.shape}")


@pytest.mark.parametrize("name", list(STACKS))
def test_stack_matches_torch_over_adam_steps_and_in_eval(isa: str, name: str) -> None:
    model, shape = _build(name)
    twin, root, out_shape = twin_of(model, shape)
    twin.double()
    _load(twin, model)
    rng = np.random.default_rng(11)
    opt = optim.Adam(model.parameters(), **{k: ADAM[k] for k in ("lr", "betas", "eps",
                                                                  "weight_decay")})
    tadam = _TorchAdam(model.parameters())
    with torch_threads(1):
        for step in range(3):
            x = rng.standard_normal(shape).astype(np.float32)
            dy = rng.standard_normal(out_shape).astype(np.float32)
            _compare_pass(model, twin, root, x, dy, f"{name} train step {step}")
            tadam.step_and_compare(opt, f"{name} Adam step {step}")
            _load(twin, model, params_only=True)  # the next pass starts from the same weights
        model.eval()
        twin.eval()
        x = rng.standard_normal(shape).astype(np.float32)
        _compare_pass(model, twin, root, x, rng.standard_normal(out_shape).astype(np.float32),
                      f"{name} eval")


def _leaf_check(child: nn.Module, x: np.ndarray, dy: np.ndarray, what: str,
                bias: float = 0.0) -> None:
    """One child of a stack against its own float64 torch twin on the stack's float32 input
    and upstream gradient for it (no incoming error: the bounds are the child's own
    rounding). bias: scale our results by 1 + bias (the bounds' tightness check)."""
    model = copy.deepcopy(child)
    twin, root, _ = twin_of(model, x.shape)
    twin.double()
    _load(twin, model)
    twin.train(model.training)
    model.zero_grad()
    y = model(x).copy()
    _against_twin(model, twin, root, x, dy, y, model.backward(dy).copy(), what, 1 + bias)


def _inputs_and_grads(model: nn.Sequential, x: np.ndarray, g: np.ndarray
                      ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each child's input and the upstream gradient it receives in the stack (children run
    one by one on copies: bitwise what the stack computes, test_results_are_bitwise_...)."""
    ref = copy.deepcopy(model)
    xs = [x]
    for child in ref:
        xs.append(child(xs[-1]).copy())
    gs = [g]
    for child in reversed(list(ref)):
        gs.append(child.backward(gs[-1]).copy())
    return xs[:-1], gs[::-1][1:]


@pytest.mark.parametrize("name", list(STACKS))
def test_each_part_of_the_stack_matches_torch_on_its_own_input(isa: str, name: str) -> None:
    """The end-to-end bounds compound through depth (first-order worst cases: on the ResNet
    they reach the size of the output itself), so each top-level child is also checked alone,
    on the float32 input and upstream gradient it gets in the stack, within its own rounding:
    with the stack bitwise equal to its children run alone, that pins every layer of it."""
    model, shape = _build(name)
    rng = np.random.default_rng(13)
    x = rng.standard_normal(shape).astype(np.float32)
    g = rng.standard_normal(model.output_shape(shape)).astype(np.float32)
    with torch_threads(1):
        for mode in ("train", "eval"):
            model.train(mode == "train")
            xs, gs = _inputs_and_grads(model, x, g)
            for i, child in enumerate(model):
                _leaf_check(child, xs[i], gs[i], f"{name} {mode} [{i}] {child.label()}")


def test_bounds_are_tight_enough_to_catch_a_small_bias() -> None:
    """The bounds must not let a wrong kernel through: a conv's output, dL/dx or weight
    gradient off by 1e-4 relative is outside its own-rounding bounds, and the end-to-end
    output of the Conv1d stack off by 2e-2 is outside the propagated ones."""
    model, shape = _build("conv1d")
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape).astype(np.float32)
    g = rng.standard_normal(model.output_shape(shape)).astype(np.float32)
    xs, gs = _inputs_and_grads(model, x, g)
    with torch_threads(1):
        for i in (0, 4):  # the two convolutions
            _leaf_check(model[i], xs[i], gs[i], "exact")
            with pytest.raises(AssertionError, match="out of tolerance"):
                _leaf_check(model[i], xs[i], gs[i], "biased", bias=1e-4)
        twin, root, _ = twin_of(model, shape)
        twin.double()
        _load(twin, model)
        y = model(x).copy()
        yt = root.forward(torch.from_numpy(x.astype(np.float64)))
        ey = root.fwd(np.zeros(x.shape))
    assert_close(y, as_np(yt), SLACK * ey, what="exact")
    with pytest.raises(AssertionError, match="out of tolerance"):
        assert_close(y * (1 + 2e-2), as_np(yt), SLACK * ey, what="biased")


def _layouts(plan: Any) -> list[tuple[str, str]]:
    return [(lp.layout_in, lp.layout_out) for lp in plan]


@pytest.mark.parametrize("name", list(STACKS))
def test_the_conv_run_is_channels_last_and_converts_only_at_its_edges(name: str) -> None:
    model, _ = _build(name)
    lay = _layouts(model.plan())
    head = next(i for i, m in enumerate(model) if isinstance(m, nn.Flatten))
    assert lay[0] == (FIRST, LAST)  # the input converted once
    assert lay[1:head - 1] == [(LAST, LAST)] * (head - 2)  # inside the run: no conversion
    assert lay[head - 1] == (LAST, FIRST)  # the run's output converted once, before Flatten
    assert lay[head:] == [(FIRST, FIRST)] * (len(model) - head)
    # nested containers inside the run get (LAST, LAST) all the way down
    for i, m in enumerate(model):
        if isinstance(m, nn.Sequential) and 0 < i < head - 1:
            assert _layouts(m.plan(LAST, LAST)) == [(LAST, LAST)] * len(m)
            for child in m:
                if isinstance(child, nn.Residual):
                    inner = child.module
                    assert isinstance(inner, nn.Sequential)
                    assert _layouts(inner.plan(LAST, LAST)) == [(LAST, LAST)] * len(inner)
    text = "\n".join(lp.describe() for lp in model.plan())
    assert text.count("converts its input") == 1 and text.count("converts its output") == 1


def _standalone(model: nn.Sequential, x: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, ...]:
    """Each child run on its own (channels-first in and out), in order and in reverse."""
    ys = [x]
    for child in model:
        ys.append(child(ys[-1]))
    dx = g
    for child in reversed(list(model)):
        dx = child.backward(dx)
    return ys[-1], dx


@pytest.mark.parametrize("name", list(STACKS))
def test_results_are_bitwise_those_of_each_layer_alone(name: str) -> None:
    model, shape = _build(name)
    ref = copy.deepcopy(model)
    rng = np.random.default_rng(9)
    for step in range(2):
        x = rng.standard_normal(shape).astype(np.float32)
        g = rng.standard_normal(model.output_shape(shape)).astype(np.float32)
        model.zero_grad()
        ref.zero_grad()
        y, dx = model(x), model.backward(g)
        ry, rdx = _standalone(ref, x, g)
        np.testing.assert_array_equal(y, ry, err_msg=f"{name} step {step}: y")
        np.testing.assert_array_equal(dx, rdx, err_msg=f"{name} step {step}: dx")
        assert model_state(model) == model_state(ref), f"{name} step {step}"


def _train(model: nn.Sequential, shape: tuple[int, ...], threads: int) -> dict[str, Any]:
    """Two steps of forward, backward (input_grad=False, as fit runs) and Adam at `threads`
    threads; every output, parameter, gradient, buffer and optimizer state bit for bit."""
    rng = np.random.default_rng(4)
    opt = optim.Adam(model.parameters(), lr=1e-2, max_grad_norm=1.0)
    out: dict[str, Any] = {}
    with num_threads(threads):
        for step in range(2):
            x = rng.standard_normal(shape).astype(np.float32)
            opt.zero_grad()
            y = model(x)
            out[f"y{step}"] = y.tobytes()
            g = rng.standard_normal(y.shape).astype(np.float32)
            model.backward(g, input_grad=False)
            out[f"norm{step}"] = opt.step()
        model.eval()
        out["eval"] = model(x).tobytes()
    return {**out, **model_state(model), **optimizer_state(opt)}


@pytest.mark.parametrize("name,batch", [("resnet", 16), ("conv1d", 32), ("depthwise", 16)])
def test_bitwise_equal_at_1_and_2_threads(isa: str, name: str, batch: int) -> None:
    model, shape = _build(name)
    big = (batch, *shape[1:])  # past the kernels' parallel cuts
    one = _train(copy.deepcopy(model), big, 1)
    two = _train(model, big, 2)
    differ = [k for k in one if one[k] != two[k]]
    assert not differ, f"{name}: differs between 1 and 2 threads: {differ}"
