"""Property-based parity with PyTorch: random layer stacks (Linear, BatchNorm1d, ReLU, LeakyReLU,
GELU, Tanh, Sigmoid, Dropout in eval or p=0, Flatten, Identity, Residual), random shapes, modes
and ISA paths; outputs, dL/dx, every parameter gradient and the running statistics against a
float64 torch twin with the same weights (load_state_dict), then optimizer steps (SGD, Adam;
norm or value clipping) against torch's optimizer fed the same gradients. Random conv stacks
(Conv2d, depthwise, BatchNorm2d, ReLU, pooling, residual blocks) likewise, with an Adam step.

Tolerances are error bounds, not flat atols: alongside torch's float64 values each layer runs
an absolute-value computation (`Bound`) that propagates, element by element, a first-order
bound on the float32 error: the incoming error through the layer's |Jacobian| plus the
layer's own rounding (unit roundoff U times the magnitudes summed, e.g. gamma_k |x| |W|^T for
a Linear; tests/stack_bounds.py). A kernel that is wrong by more than a few roundings of the
magnitudes involved fails, wherever the cancellation is."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from conftest import assert_close
from fuzz_support import fuzz_settings, torch_threads
from hypothesis import given
from hypothesis import strategies as st
from stack_bounds import (
    BN,
    Bound,
    Kink,
    Lin,
    Res,
    Seq,
    Smooth,
    TorchGELU,
    TorchResidual,
    U,
    adam_bound,
    grad_bound,
    rnd,
    sgd_bound,
    walk,
)
from stack_bounds import SLACK as SLACK
from stack_bounds import as_np as _np

import steadygrad as sg
from steadygrad import nn, optim


# --- the random stacks -------------------------------------------------------------------
# A spec is a tuple: ("linear", out, bias) | ("bn", momentum, affine, track, eps) | ("relu",)
# | ("leaky", slope) | ("gelu", approximate) | ("tanh",) | ("sigmoid",) | ("silu",)
# | ("softplus",) | ("dropout", p)
# | ("identity",) | ("flatten",) | ("residual", [specs that keep the width]).
def _leaf_specs(width_change: bool, training: bool) -> st.SearchStrategy[tuple]:
    linear = (st.tuples(st.just("linear"), st.integers(1, 24), st.booleans()) if width_change
              else st.tuples(st.just("linear"), st.none(), st.booleans()))
    bn = st.tuples(st.just("bn"), st.sampled_from([0.1, 0.5, None]), st.booleans(),
                   st.booleans(), st.sampled_from([1e-5, 1e-3]))
    return st.one_of(  # the layers with parameters and kernels of their own count twice
        linear, linear, bn, bn,
        st.just(("relu",)),
        st.tuples(st.just("leaky"), st.sampled_from([0.01, 0.2, 1.5])),
        st.tuples(st.just("gelu"), st.sampled_from(["none", "tanh"])),
        st.just(("tanh",)),
        st.just(("sigmoid",)),
        st.just(("silu",)),
        st.just(("softplus",)),
        st.tuples(st.just("dropout"), st.just(0.0) if training else st.sampled_from([0.0, 0.5])),
        st.just(("identity",)),
        st.just(("flatten",)),
    )


@st.composite
def stacks(draw: st.DrawFn, training: bool) -> list[tuple]:
    def layer(depth: int, width_change: bool) -> tuple:
        if depth < 2 and draw(st.integers(0, 5)) == 0:
            inner = [layer(depth + 1, False) for _ in range(draw(st.integers(1, 3)))]
            return ("residual", inner)
        return draw(_leaf_specs(width_change, training))

    return [layer(0, True) for _ in range(draw(st.integers(1, 6)))]


@dataclass
class Case:
    """One generated example: the model, the data of each pass, the mode and the optimizer."""

    specs: list[tuple]
    in_shape: tuple[int, ...]
    training: bool
    seed: int
    passes: list[tuple[float, float, float, bool]]  # (x scale, x offset, dy scale, input_grad)
    opt: tuple[str, dict[str, Any], tuple[str, float] | None] = ("sgd", {}, None)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    training = draw(st.booleans())
    batch = draw(st.integers(2, 12))  # BatchNorm in training needs 2 rows
    if draw(st.booleans()):
        in_shape: tuple[int, ...] = (batch, draw(st.integers(1, 4)), draw(st.integers(1, 5)))
        specs = [("flatten",), *draw(stacks(training))]
    else:
        in_shape = (batch, draw(st.integers(1, 24)))
        specs = draw(stacks(training))
    passes = draw(st.lists(st.tuples(st.sampled_from([0.1, 1.0, 10.0]), st.sampled_from([0.0, 3.0]),
                                     st.sampled_from([1.0, 1e-3]), st.booleans()),
                           min_size=1, max_size=2))
    return Case(specs, in_shape, training, draw(st.integers(0, 2**31 - 1)), passes,
                draw(optimizers()))


@st.composite
def optimizers(draw: st.DrawFn) -> tuple[str, dict[str, Any], tuple[str, float] | None]:
    clip = draw(st.sampled_from([None, ("norm", 0.1), ("norm", 100.0), ("value", 0.01),
                                 ("norm_fn", 0.1), ("value_fn", 0.01)]))
    if draw(st.booleans()):
        momentum = draw(st.sampled_from([0.0, 0.9]))
        nesterov = momentum > 0 and draw(st.booleans())
        kw = {"lr": draw(st.sampled_from([0.1, 1e-3])), "momentum": momentum,
              "dampening": 0.0 if nesterov or momentum == 0 else draw(st.sampled_from([0.0, 0.1])),
              "weight_decay": draw(st.sampled_from([0.0, 1e-2])), "nesterov": nesterov,
              "maximize": draw(st.booleans())}
        return "sgd", kw, clip
    kw = {"lr": draw(st.sampled_from([1e-3, 0.1])),
          "betas": draw(st.sampled_from([(0.9, 0.999), (0.5, 0.9)])),
          "eps": draw(st.sampled_from([1e-8, 1e-4])),
          "weight_decay": draw(st.sampled_from([0.0, 1e-2])), "amsgrad": draw(st.booleans()),
          "decoupled_weight_decay": draw(st.booleans()), "maximize": draw(st.booleans())}
    return "adam", kw, clip


def build(spec: tuple, width: int) -> tuple[nn.Module, torch.nn.Module, Bound, int]:
    """(steadygrad module, torch float64 twin, bound node, output width) for one spec."""
    kind = spec[0]
    if kind == "residual":
        mods = [build(s, width) for s in spec[1]]
        inner_sg = nn.Sequential(*[m[0] for m in mods])
        inner_t = torch.nn.Sequential(*[m[1] for m in mods])
        inner = Seq(inner_sg, inner_t, [m[2] for m in mods])
        sgm = nn.Residual(inner_sg)
        tm = TorchResidual(inner_t)
        return sgm, tm, Res(sgm, tm, inner), width
    if kind == "linear":
        out = width if spec[1] is None else spec[1]
        sgm, tm = nn.Linear(width, out, bias=spec[2]), torch.nn.Linear(width, out, bias=spec[2])
        return sgm, tm, Lin(sgm, tm), out
    if kind == "bn":
        _, momentum, affine, track, eps = spec
        sgm = nn.BatchNorm1d(width, eps=eps, momentum=momentum, affine=affine,
                             track_running_stats=track)
        tm = torch.nn.BatchNorm1d(width, eps=eps, momentum=momentum, affine=affine,
                                  track_running_stats=track)
        return sgm, tm, BN(sgm, tm), width
    if kind in ("relu", "leaky"):
        slope = 0.0 if kind == "relu" else spec[1]
        sgm = nn.ReLU() if kind == "relu" else nn.LeakyReLU(slope)
        tm = torch.nn.ReLU() if kind == "relu" else torch.nn.LeakyReLU(slope)
        return sgm, tm, Kink(sgm, tm, slope), width
    if kind == "gelu":
        sgm, tm = nn.GELU(spec[1]), TorchGELU(spec[1])
        return sgm, tm, Smooth(sgm, tm, "gelu" if spec[1] == "none" else "gelu_tanh"), width
    if kind in ("tanh", "sigmoid", "silu", "softplus"):
        cls = {"tanh": "Tanh", "sigmoid": "Sigmoid", "silu": "SiLU", "softplus": "Softplus"}[kind]
        sgm, tm = getattr(nn, cls)(), getattr(torch.nn, cls)()
        return sgm, tm, Smooth(sgm, tm, kind), width
    simple = {"dropout": (lambda: nn.Dropout(spec[-1]), lambda: torch.nn.Dropout(spec[-1])),
              "identity": (nn.Identity, torch.nn.Identity),
              "flatten": (nn.Flatten, torch.nn.Flatten)}
    sgm, tm = simple[kind][0](), simple[kind][1]()
    return sgm, tm, Bound(sgm, tm), width


def build_model(case: Case, rng: np.random.Generator) -> tuple[nn.Sequential, torch.nn.Module, Seq]:
    sg.manual_seed(case.seed)
    width = int(np.prod(case.in_shape[1:]))
    mods = []
    for spec in case.specs:
        m = build(spec, width)
        mods.append(m)
        width = m[3]
    model = nn.Sequential(*[m[0] for m in mods])
    twin = torch.nn.Sequential(*[m[1] for m in mods]).double()
    root = Seq(model, twin, [m[2] for m in mods])
    for m in model.modules():  # BatchNorm off its defaults: gammas of both signs, used stats
        if isinstance(m, nn.BatchNorm1d):
            if m.affine:
                m.weight.data = rng.uniform(-2, 2, m.num_features).astype(np.float32)
                m.bias.data = rng.standard_normal(m.num_features).astype(np.float32)
            if m.track_running_stats:
                m.running_mean[...] = rng.standard_normal(m.num_features)
                m.running_var[...] = rng.uniform(0.5, 2.0, m.num_features)
                m.num_batches_tracked[...] = rng.integers(0, 4)
    twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()})
    model.train(case.training)
    twin.train(case.training)
    return model, twin, root


# --- the property --------------------------------------------------------------------------
@fuzz_settings(max_examples=30)
@given(case=cases())
def test_random_stack_matches_torch(isa: str, case: Case) -> None:
    rng = np.random.default_rng(case.seed)
    model, twin, root = build_model(case, rng)
    tparams = dict(twin.named_parameters())
    with torch_threads(1):
        for xs, xo, gs, input_grad in case.passes:
            x = (rng.standard_normal(case.in_shape) * xs + xo).astype(np.float32)
            dout = (rng.standard_normal(model.output_shape(x.shape)) * gs).astype(np.float32)
            y = model(x).copy()
            dx = model.backward(dout, input_grad=input_grad)
            dx = None if dx is None else dx.copy()
            xt = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
            yt = root.forward(xt)
            (yt * torch.from_numpy(dout.astype(np.float64))).sum().backward()
            ey = root.fwd(np.zeros(x.shape))
            _, edx = root.bwd(np.zeros(dout.shape))
            assert_close(y, _np(yt), SLACK * ey, what="output")
            if input_grad:
                assert dx is not None
                assert_close(dx, _np(xt.grad), SLACK * edx, what="dL/dx")
            else:
                assert dx is None
        for name, p in model.named_parameters():
            assert p.grad is not None, name
            assert_close(p.grad, _np(tparams[name].grad), SLACK * grad_bound(root, p),
                         what=f"grad {name}")
        tbufs = dict(twin.named_buffers())
        bn_bounds = {id(b.sg_mod): b for b in walk(root) if isinstance(b, BN)}
        for mname, m in model.named_modules():
            if isinstance(m, nn.BatchNorm1d) and m.track_running_stats:
                b = bn_bounds[id(m)]
                assert_close(m.running_mean, _np(tbufs[f"{mname}.running_mean"]), SLACK * b.erm,
                             what=f"{mname}.running_mean")
                assert_close(m.running_var, _np(tbufs[f"{mname}.running_var"]), SLACK * b.erv,
                             what=f"{mname}.running_var")
                assert int(m.num_batches_tracked) == int(tbufs[f"{mname}.num_batches_tracked"])
        _check_optimizer_steps(case, model, rng)


# --- optimizer steps -----------------------------------------------------------------------
def _total_norm(grads: list[np.ndarray]) -> float:
    return math.sqrt(sum(float((g * g).sum()) for g in grads))


def _check_norm(got: float | None, grads: list[np.ndarray], what: str) -> None:
    """A 2-norm of float32 values summed in double: within (n + 4) double roundings."""
    want = _total_norm(grads)
    n = sum(g.size for g in grads)
    assert got is not None and abs(got - want) <= (n + 4) * 2.0**-52 * want, (what, got, want)


def _clip(clip: tuple[str, float] | None, grads: list[np.ndarray],
          norm: float | None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The clipped gradients in float64 (from the float32 ones and steadygrad's pre-clip norm,
    so both sides scale by the same coefficient) and the bound on steadygrad's: the scale
    rounded to float32, then the product; max_grad_value rounded to float32."""
    if clip is None:
        return grads, [np.zeros(g.shape) for g in grads]
    if clip[0].startswith("norm"):
        assert norm is not None
        coef = min(clip[1] / (norm + 1e-6), 1.0)
        return [g * coef for g in grads], [rnd(np.abs(g * coef), 2) for g in grads]
    c = clip[1]
    return ([np.clip(g, -c, c) for g in grads],
            [U * c * (np.abs(g) >= c) + 0.0 * g for g in grads])


def _check_optimizer_steps(case: Case, model: nn.Sequential, rng: np.random.Generator) -> None:
    """Two steps of the steadygrad optimizer against torch's on float64 copies of the same
    parameters, fed the same float32 gradients (the model's), clipped by the fused step
    options ("norm", "value") or before the step by optim.clip_grad_norm_ / clip_grad_value_
    ("norm_fn", "value_fn"; torch.nn.utils' semantics). Error bounds follow the update's
    arithmetic element by element (`_sgd_bound`, `_adam_bound`)."""
    kind, kw, clip = case.opt
    params = model.parameters()
    if not params:
        return
    opts: dict[str, Any] = {}
    if clip is not None and clip[0] in ("norm", "value"):
        opts["max_grad_norm" if clip[0] == "norm" else "max_grad_value"] = clip[1]
    tps = [torch.tensor(p.data, dtype=torch.float64, requires_grad=True) for p in params]
    if kind == "sgd":
        opt: optim.Optimizer = optim.SGD(params, **kw, **opts)
        topt: torch.optim.Optimizer = torch.optim.SGD(tps, **kw)
    else:
        opt = optim.Adam(params, **kw, **opts)
        topt = torch.optim.Adam(tps, **kw)
    errs: list[dict[str, np.ndarray]] = [{"p": np.zeros(p.shape)} for p in params]
    for step in range(2):
        if step:
            model.zero_grad()
            x = rng.standard_normal(case.in_shape).astype(np.float32)
            model(x)
            model.backward(rng.standard_normal(model.output_shape(x.shape)).astype(np.float32))
        grads = [p.grad.astype(np.float64) for p in params]
        before = [(tp.detach().numpy().copy(), {k: _np(v).copy() for k, v in topt.state[tp].items()
                                                if isinstance(v, torch.Tensor) and v.ndim})
                  for tp in tps]
        pre_norm = None
        if clip is not None and clip[0] == "norm_fn":
            pre_norm = optim.clip_grad_norm_(params, clip[1])
            _check_norm(pre_norm, grads, "clip_grad_norm_")
        elif clip is not None and clip[0] == "value_fn":
            optim.clip_grad_value_(params, clip[1])
        if clip is not None and clip[0].endswith("_fn"):
            want, bounds = _clip(clip, grads, pre_norm)
            for p, w, eb in zip(params, want, bounds, strict=True):
                assert_close(p.grad, w, SLACK * eb, what=f"{clip[0]} {p.shape}")
            seen = [p.grad.astype(np.float64) for p in params]  # what the step works on
        norm = opt.step()
        _check_norm(norm, seen if clip is not None and clip[0].endswith("_fn") else grads,
                    "step")
        clipped, eclip = _clip(clip, grads, pre_norm if pre_norm is not None else norm)
        for tp, g in zip(tps, clipped, strict=True):
            tp.grad = torch.from_numpy(g)
        topt.step()
        t = step + 1
        for p, tp, cg, eg, (p0, s0), e in zip(params, tps, clipped, eclip, before, errs,
                                              strict=True):
            state = {k: _np(v) for k, v in topt.state[tp].items()
                     if isinstance(v, torch.Tensor) and v.ndim}
            bound = (sgd_bound if kind == "sgd" else adam_bound)(kw, t, p0, s0, np.abs(cg),
                                                                   eg, e)
            assert_close(p.data, _np(tp), SLACK * e["p"], what=f"{kind} step {t}: param {p.shape}")
            ours = opt.state.get(p, {})
            for name, want in state.items():
                assert_close(ours[name], want, SLACK * bound[name],
                             what=f"{kind} step {t}: {name} {p.shape}")


def test_bounds_are_tight_enough_to_catch_a_one_ulp_bias() -> None:
    """The bounds must not be so loose that a wrong kernel passes: a Linear output off by
    1e-4 relative (a few hundred ulps) is outside its bound."""
    model = nn.Sequential(nn.Linear(8, 5))
    twin = torch.nn.Sequential(torch.nn.Linear(8, 5)).double()
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    node = Seq(model, twin, [Lin(model[0], twin[0])])
    x = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    y = model(x).copy()
    yt = node.forward(torch.from_numpy(x.astype(np.float64)))
    ey = node.fwd(np.zeros(x.shape))
    assert_close(y, _np(yt), SLACK * ey, what="exact")
    with pytest.raises(AssertionError, match="out of tolerance"):
        assert_close(y * (1 + 1e-4), _np(yt), SLACK * ey, what="biased")


# --- random conv stacks --------------------------------------------------------------------
# Conv2d (kernel 1-3, stride 1-2, padding, groups 1 / depthwise, bias), BatchNorm2d, ReLU,
# MaxPool2d / AvgPool2d, residual blocks with and without a projection; then global average
# pooling, Flatten and a Linear. Forward, backward and an Adam step against a float64 torch
# twin within the stack's error bounds (tests/test_cnn_stack.py's comparison).
@st.composite
def conv_stacks(draw: st.DrawFn) -> tuple[nn.Sequential, tuple[int, ...]]:
    c = draw(st.integers(1, 4))
    h, w = draw(st.integers(4, 11)), draw(st.integers(4, 11))
    shape = (draw(st.integers(2, 4)), c, h, w)
    layers: list[nn.Module] = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["conv", "depthwise", "residual", "pool"]))
        if kind == "residual":
            out = draw(st.sampled_from([c, 2 * c]))
            stride = draw(st.integers(1, 2)) if min(h, w) >= 4 else 1
            body = nn.Sequential(nn.Conv2d(c, out, 3, stride, 1, bias=False), nn.BatchNorm2d(out),
                                 nn.ReLU(), nn.Conv2d(out, out, 3, 1, 1, bias=False),
                                 nn.BatchNorm2d(out))
            short = None if stride == 1 and out == c else nn.Sequential(
                nn.Conv2d(c, out, 1, stride, bias=False), nn.BatchNorm2d(out))
            layers += [nn.Residual(body, shortcut=short), nn.ReLU()]
            c, h, w = out, (h - 1) // stride + 1, (w - 1) // stride + 1
            continue
        if kind == "pool":
            if min(h, w) < 2:
                continue
            # (the max pool's bound, tests/stack_bounds.py, is for floor windows only)
            pool = nn.MaxPool2d(2) if draw(st.booleans()) else nn.AvgPool2d(
                2, ceil_mode=draw(st.booleans()), count_include_pad=draw(st.booleans()))
            layers.append(pool)
            h, w = pool.output_shape((1, c, h, w))[2:]
            continue
        k = draw(st.integers(1, 3))
        stride = draw(st.integers(1, 2))
        pad = draw(st.integers(0, k // 2))
        if h + 2 * pad < k or w + 2 * pad < k:
            continue
        out = c * draw(st.integers(1, 2)) if kind == "depthwise" else draw(st.integers(1, 5))
        conv = nn.Conv2d(c, out, k, stride, pad, groups=c if kind == "depthwise" else 1,
                         bias=draw(st.booleans()))
        layers.append(conv)
        c, h, w = out, *conv.output_shape((1, c, h, w))[2:]
        if draw(st.booleans()):
            layers.append(nn.BatchNorm2d(c))
        if draw(st.booleans()):
            layers.append(nn.ReLU())
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 3)]
    seed = draw(st.integers(0, 2**16))
    sg.manual_seed(seed)
    return nn.Sequential(*layers), shape


@fuzz_settings(max_examples=20)
@given(stack=conv_stacks(), seed=st.integers(0, 2**16))
def test_random_conv_stack_matches_torch(isa: str, stack: tuple[nn.Sequential, tuple[int, ...]],
                                         seed: int) -> None:
    from stack_bounds import twin_of
    from test_cnn_stack import ADAM, _compare_pass, _load, _TorchAdam

    model, shape = stack
    twin, root, out_shape = twin_of(model, shape)
    twin.double()
    _load(twin, model)
    rng = np.random.default_rng(seed)
    opt = optim.Adam(model.parameters(), **{k: ADAM[k] for k in ("lr", "betas", "eps",
                                                                  "weight_decay")})
    tadam = _TorchAdam(model.parameters())
    with torch_threads(1):
        x = rng.standard_normal(shape).astype(np.float32)
        dy = rng.standard_normal(out_shape).astype(np.float32)
        _compare_pass(model, twin, root, x, dy, "conv stack")
        tadam.step_and_compare(opt, "conv stack Adam step")
