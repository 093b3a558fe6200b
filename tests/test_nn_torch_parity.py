"""PyTorch parity (torch 2.13.0 CPU) for every layer, loss and a deep stack: outputs, input
gradients, parameter gradients and running statistics, in train and eval, with a random
upstream gradient (loss = (out * dout).sum()); state_dict round trips; gradient accumulation."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import pytest
from conftest import assert_close
from reference_net import Grads, ReferenceNet
from roundoff import Noisy

torch = pytest.importorskip("torch")

from tests.conftest import plan_set  # noqa: E402

from steadygrad import nn  # noqa: E402

torch.set_default_dtype(torch.float32)
torch.set_num_threads(1)  # tiny shapes: a thread pool only adds overhead on a shared machine


class TorchResidual(torch.nn.Module):
    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.module(x)



def _to_torch(m: nn.Module) -> torch.nn.Module:
    """The torch twin of a steadygrad module tree, with the same weights."""
    tm = _twin(m)
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in m.state_dict().items()})
    tm.train(m.training)
    return tm


def _twin(m: nn.Module) -> torch.nn.Module:
    if isinstance(m, nn.Sequential):
        return torch.nn.Sequential(*[_twin(c) for c in m])
    if isinstance(m, nn.Residual):
        return TorchResidual(_twin(m.module))
    if isinstance(m, nn.Linear):
        return torch.nn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
    if isinstance(m, nn.BatchNorm1d):
        return torch.nn.BatchNorm1d(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)
    if isinstance(m, nn.LeakyReLU):
        return torch.nn.LeakyReLU(m.negative_slope)
    if isinstance(m, nn.GELU):
        return torch.nn.GELU(approximate=m.approximate)
    simple = {nn.ReLU: torch.nn.ReLU, nn.Tanh: torch.nn.Tanh, nn.Sigmoid: torch.nn.Sigmoid,
              nn.Identity: torch.nn.Identity, nn.Flatten: torch.nn.Flatten}
    return simple[type(m)]()


class _Twins:
    """A steadygrad model, its torch twins in float32 and float64 (same weights) and the
    float64 reference with error bounds (reference_net.py, roundoff.py), stepped together.
    Steadygrad, torch float32 and torch float64 are each compared with the reference: the
    float32 ones within the spread their float32 roundings allow at this data (a gradient
    that cancels to a small value is compared at the precision its terms allow, on any ISA
    path; a flat atol of 1e-5 failed on AVX-512 for a 1.8% difference in a value of 7e-4
    that sums terms of O(1)), torch float64 to 1e-6 of it (the reference's formulas are
    torch's). Where a ReLU input lies within its bound of 0, each is checked on the side it
    took."""

    IMPLS = ("steadygrad", "torch", "torch float64")

    def __init__(self, m: nn.Module) -> None:
        self.m, self.tm = m, _to_torch(m)
        self.tm64 = copy.deepcopy(self.tm).double()
        self.ref = ReferenceNet(m)
        self.grads = {impl: Grads() for impl in self.IMPLS}
        self.sides: dict[str, dict[str, np.ndarray]] = {impl: {} for impl in self.IMPLS}
        for impl, tm in (("torch", self.tm), ("torch float64", self.tm64)):
            for name, mod in tm.named_modules():
                if isinstance(mod, (torch.nn.ReLU, torch.nn.LeakyReLU)):
                    mod.register_forward_hook(self._side_hook(impl, f"{name}." if name else ""))

    def _side_hook(self, impl: str, name: str) -> Callable[..., None]:
        def hook(mod: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            self.sides[impl][name] = (inputs[0] > 0).numpy().copy()
        return hook

    def zero_grad(self) -> None:
        for model in (self.m, self.tm, self.tm64, *self.grads.values()):
            model.zero_grad()

    def step(self, x: np.ndarray, dout: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Forward and backward (loss = (out * dout).sum()) in all; compares the outputs and
        the input gradients."""
        y = self.m(x).copy()
        # which side of 0 each ReLU input fell on, read before backward writes over buffers
        self.sides["steadygrad"] = {la.name: la.module._saved > 0 for la in self.ref.kinks()}
        got = {"steadygrad": (y, self.m.backward(dout).copy())}
        for impl, tm, dtype in (("torch", self.tm, np.float32), ("torch float64", self.tm64, np.float64)):
            xt = torch.from_numpy(x.astype(dtype)).requires_grad_(True)
            yt = tm(xt)
            (yt * torch.from_numpy(dout.astype(dtype))).sum().backward()
            got[impl] = (yt.detach().numpy(), xt.grad.numpy())
        ry = self.ref.forward(x)
        backwards: list[tuple[dict[str, np.ndarray], tuple]] = []  # one per distinct set of sides
        for impl, (out, dx) in got.items():
            sides = self.sides[impl]
            same = [b for s, b in backwards if s.keys() == sides.keys()
                    and all(np.array_equal(s[k], sides[k]) for k in s)]
            if not same:
                backwards.append((sides, self.ref.backward(dout, sides)))
            rdx, grads = same[0] if same else backwards[-1][1]
            self.grads[impl].add(grads)
            _check(impl, "output", out, ry)
            _check(impl, "grad_input", dx, rdx)
        return y, got["steadygrad"][1]

    def compare_state(self) -> None:
        """Parameters (unchanged: no optimizer step), gradients and buffers."""
        tparams = {"torch": dict(self.tm.named_parameters()),
                   "torch float64": dict(self.tm64.named_parameters())}
        for name, p in self.m.named_parameters():
            np.testing.assert_array_equal(p.data, tparams["torch"][name].detach().numpy(), err_msg=name)
            grads = {"steadygrad": p.grad, **{impl: None if tp[name].grad is None else tp[name].grad.numpy()
                                              for impl, tp in tparams.items()}}
            for impl, g in grads.items():
                want = self.grads[impl].acc.get(name)
                assert (g is None) == (want is None), f"{impl}: grad {name} is {g}, reference {want}"
                if g is not None:
                    _check(impl, f"grad {name}", g, want)
        bufs = self.ref.buffers()
        tbufs = {"torch": dict(self.tm.named_buffers()), "torch float64": dict(self.tm64.named_buffers())}
        for name, b in self.m.named_buffers():
            if name.endswith("num_batches_tracked"):
                assert int(b) == int(tbufs["torch"][name]), name
                continue
            _check("steadygrad", name, b, bufs[name])
            for impl, tb in tbufs.items():
                _check(impl, name, tb[name].numpy(), bufs[name])


def _check(impl: str, what: str, got: np.ndarray, ref: Noisy) -> None:
    bound = ref.bound()
    if impl == "torch float64":
        # Two float64 evaluations of one formula differ by float64 roundings: u64 / u32 =
        # 2^-29 of the float32 bound; 1e-6 of it leaves room for the order of the sums.
        bound = 1e-6 * bound
    assert_close(got, ref.v, bound, what=f"{what}: {impl} vs float64 reference")


LAYERS = {
    "linear": lambda: nn.Linear(13, 7),
    "linear_nobias": lambda: nn.Linear(13, 7, bias=False),
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "gelu": nn.GELU,
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "identity": nn.Identity,
    "flatten": nn.Flatten,
    "bn": lambda: nn.BatchNorm1d(13),
    "bn_cma": lambda: nn.BatchNorm1d(13, momentum=None),
    "bn_noaffine": lambda: nn.BatchNorm1d(13, affine=False, eps=1e-3),
    "bn_nostats": lambda: nn.BatchNorm1d(13, track_running_stats=False),
    "residual": lambda: nn.Residual(nn.Sequential(nn.Linear(13, 13), nn.Tanh())),
}


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_layer_matches_torch(name: str, mode: str, rng: np.random.Generator) -> None:
    m = LAYERS[name]()
    for p in m.parameters():  # non-trivial gamma/beta for BatchNorm
        p.data = rng.standard_normal(p.shape).astype(np.float32)
    m.train(mode == "train")
    tw = _Twins(m)
    for _ in range(3):  # several steps: running statistics evolve, gradients accumulate
        x = (rng.standard_normal((16, 13)) * 2 + 1).astype(np.float32)
        dout = rng.standard_normal(m.output_shape(x.shape)).astype(np.float32)
        tw.step(x, dout)
    tw.compare_state()


def _deep(rng: np.random.Generator) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(24, 32), nn.BatchNorm1d(32), nn.ReLU(),
        nn.Residual(nn.Sequential(nn.Linear(32, 32), nn.BatchNorm1d(32), nn.GELU())),
        nn.Residual(nn.Sequential(nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 32, bias=False))),
        nn.Linear(32, 48), nn.BatchNorm1d(48, momentum=None), nn.LeakyReLU(0.1),
        nn.Linear(48, 32), nn.Sigmoid(), nn.Identity(), nn.Flatten(),
        nn.Linear(32, 10),
    )


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_deep_stack_matches_torch(isa: str, mode: str, rng: np.random.Generator) -> None:
    m = _deep(rng)
    assert len(list(m.modules())) > 10
    m.train(mode == "train")
    tw = _Twins(m)
    for _ in range(3):
        tw.zero_grad()
        x = rng.standard_normal((32, 24)).astype(np.float32)
        dout = rng.standard_normal((32, 10)).astype(np.float32)
        tw.step(x, dout)
        tw.compare_state()


def test_gradient_accumulation_over_two_backwards_matches_torch(rng: np.random.Generator) -> None:
    m = _deep(rng)
    tw = _Twins(m)
    for p in m.parameters():  # stale buffers full of garbage: the first backward must not read them
        p.grad_buffer[...] = np.nan
    m.zero_grad()
    for _ in range(2):
        x = rng.standard_normal((8, 24)).astype(np.float32)
        dout = rng.standard_normal((8, 10)).astype(np.float32)
        tw.step(x, dout)
    tw.compare_state()


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("dtype", [np.int64, np.int32])
def test_cross_entropy_matches_torch(reduction: str, smoothing: float, dtype: type, rng: np.random.Generator) -> None:
    x = (rng.standard_normal((20, 9)) * 3).astype(np.float32)
    y = rng.integers(0, 9, 20).astype(dtype)
    lf = nn.CrossEntropyLoss(reduction=reduction, label_smoothing=smoothing)
    loss = lf(x, y)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    lt = torch.nn.CrossEntropyLoss(reduction=reduction, label_smoothing=smoothing)(xt, torch.from_numpy(y.astype(np.int64)))
    lt.backward()
    assert isinstance(loss, float)
    assert loss == pytest.approx(lt.item(), rel=1e-5)
    np.testing.assert_allclose(lf.backward(), xt.grad.numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mse_matches_torch(reduction: str, rng: np.random.Generator) -> None:
    p, t = rng.standard_normal((2, 11, 5)).astype(np.float32)
    lf = nn.MSELoss(reduction=reduction)
    loss = lf(p, t)
    pt = torch.from_numpy(p.copy()).requires_grad_(True)
    lt = torch.nn.MSELoss(reduction=reduction)(pt, torch.from_numpy(t))
    lt.backward()
    assert loss == pytest.approx(lt.item(), rel=1e-5)
    np.testing.assert_allclose(lf.backward(), pt.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_state_dict_round_trip_with_torch(rng: np.random.Generator) -> None:
    m = _deep(rng)
    tm = _twin(m)  # independently initialised torch model
    x = rng.standard_normal((16, 24)).astype(np.float32)
    tm.train()
    tm(torch.from_numpy(x))  # move running stats / num_batches_tracked off their defaults
    tsd = tm.state_dict()
    assert list(m.state_dict()) == list(tsd)
    views = [p.data for p in m.parameters()]
    m.load_state_dict({k: v.numpy() for k, v in tsd.items()})  # torch -> steadygrad (numpy)
    assert all(np.shares_memory(v, p.data) for v, p in zip(views, m.parameters(), strict=True))
    m.load_state_dict(tsd)  # torch tensors directly
    sd = m.state_dict()
    for k, v in tsd.items():
        np.testing.assert_array_equal(sd[k], v.numpy(), err_msg=k)
    assert sd["1.num_batches_tracked"].dtype == np.int64
    tm2 = _twin(m)  # steadygrad -> torch
    tm2.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    m.eval()
    tm2.eval()
    ref = ReferenceNet(m).forward(x)  # float64, bound from the magnitudes summed
    _check("steadygrad", "eval forward after loading torch's state", m(x), ref)
    _check("torch", "eval forward after loading steadygrad's state",
           tm2(torch.from_numpy(x)).detach().numpy(), ref)


def test_linear_relu_fused_in_sequential_matches_torch(isa: str, rng: np.random.Generator) -> None:
    m = nn.Sequential(nn.Linear(12, 20), nn.ReLU(), nn.Linear(20, 20), nn.ReLU(), nn.ReLU(), nn.Linear(20, 4))
    assert plan_set(m, 'fused') == {0, 2}
    tw = _Twins(m)
    x = rng.standard_normal((9, 12)).astype(np.float32)
    dout = rng.standard_normal((9, 4)).astype(np.float32)
    tw.step(x, dout)
    tw.compare_state()
    assert m[1]._saved is m[0]._work["out"][1]  # the ReLU ran inside the Linear's GEMM
    z = m[0](x)  # run alone, the Linear is not fused
    _check("steadygrad", "Linear alone", z, ReferenceNet(m[0]).forward(x))
    assert (z < 0).any()
    rows = m.summary(9, file=None)["layers"]
    assert rows[1]["layer"] == "ReLU() (fused)" and rows[1]["activation_bytes"] == 0
    assert rows[4]["activation_bytes"] == 4 * 9 * 20  # ReLU after ReLU is not fused


def _bn_relu_mlp() -> nn.Sequential:
    # 70 features: one full 64-channel tile plus a ragged one (vector tails on every ISA path)
    return nn.Sequential(nn.Linear(12, 40), nn.BatchNorm1d(40), nn.ReLU(),
                         nn.Linear(40, 70), nn.BatchNorm1d(70, momentum=None), nn.ReLU(),
                         nn.Linear(70, 5))


def _unfused_step(m: nn.Sequential, x: np.ndarray, dout: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward and backward layer by layer: every ReLU runs as its own pass."""
    for layer in m:
        x = layer(x)
    y, g = x.copy(), dout
    for layer in reversed(list(m)):
        g = layer.backward(g)
    return y, g.copy()


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_linear_bn_relu_fused_in_sequential_matches_torch(isa: str, mode: str, rng: np.random.Generator) -> None:
    m = _bn_relu_mlp()
    assert plan_set(m, 'fused_masked') == {1, 4} and plan_set(m, 'fused') == {1, 4}
    for p in m.parameters():
        if len(p.shape) == 1:  # non-trivial gamma/beta (some negative gammas)
            p.data = rng.standard_normal(p.shape).astype(np.float32)
    for bn in (m[1], m[4]):  # eval runs on non-default running statistics
        bn.running_mean[...] = rng.standard_normal(bn.num_features)
        bn.running_var[...] = rng.uniform(0.5, 2.0, bn.num_features)
    m.train(mode == "train")
    tw = _Twins(m)
    for step in range(3):  # running statistics evolve; gradients accumulate after step 0
        if step == 2:
            tw.zero_grad()
        x = (rng.standard_normal((33, 12)) * 2 + 0.5).astype(np.float32)
        dout = rng.standard_normal((33, 5)).astype(np.float32)
        tw.step(x, dout)
        tw.compare_state()
        h = m[2]._saved
        # the fused ReLU passed BatchNorm's own output buffer on, and the next Linear's
        # backward wrote its grad_input over it (dead by then): no dx buffer of its own
        assert h is m[1]._work["out"][1] and "dx" not in m[3]._work
    for relu in (m[2], m[5]):  # the fused ReLUs never allocated an output or a grad_input
        assert relu._work == {}
    # Bitwise the same as the unfused chain (each ReLU its own forward and backward pass)
    twin = _bn_relu_mlp()
    twin.load_state_dict(m.state_dict())
    twin.train(mode == "train")
    m.zero_grad()
    x = rng.standard_normal((33, 12)).astype(np.float32)
    dout = rng.standard_normal((33, 5)).astype(np.float32)
    yf, dxf = m(x).copy(), m.backward(dout).copy()
    yu, dxu = _unfused_step(twin, x, dout)
    assert "out" in twin[2]._work  # the unfused ReLU did run on its own
    np.testing.assert_array_equal(yf, yu)
    np.testing.assert_array_equal(dxf, dxu)
    for (name, p), q in zip(m.named_parameters(), twin.parameters(), strict=True):
        np.testing.assert_array_equal(p.grad, q.grad, err_msg=name)
    for (name, b), c in zip(m.named_buffers(), twin.buffers(), strict=True):
        np.testing.assert_array_equal(b, c, err_msg=name)
    z = m[1](m[0](x))  # run alone, BatchNorm is not fused
    assert (z < 0).any()
    rows = m.summary(33, file=None)["layers"]
    assert rows[2]["layer"] == "ReLU() (fused)"
    assert rows[2]["activation_bytes"] == 0 and rows[2]["workspace_bytes"] == 0
    assert rows[5]["activation_bytes"] == 0 and rows[5]["workspace_bytes"] == 0
    unfused = nn.Sequential(nn.Linear(12, 40), nn.BatchNorm1d(40), nn.Tanh())
    assert unfused.summary(33, file=None)["layers"][2]["workspace_bytes"] == 4 * 33 * 40


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_grad_input_written_over_dead_inputs_matches_torch(isa: str, mode: str,
                                                           rng: np.random.Generator) -> None:
    # Every in-place pattern: Linear after Linear, BatchNorm after Linear, Linear after a
    # plain BatchNorm, Linear after a fused BatchNorm+ReLU, BatchNorm after BatchNorm; and the
    # layers that must not donate: after a Tanh, after a Linear+ReLU (the ReLU's backward
    # reads that output), and the first layer (the caller's array).
    m = nn.Sequential(nn.Linear(9, 20), nn.Linear(20, 24), nn.BatchNorm1d(24), nn.Linear(24, 16),
                      nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 16), nn.BatchNorm1d(16),
                      nn.BatchNorm1d(16), nn.Tanh(), nn.Linear(16, 12), nn.ReLU(),
                      nn.Linear(12, 7))
    assert plan_set(m, 'donate') == {1, 2, 3, 4, 6, 7, 8}
    m.train(mode == "train")
    tw = _Twins(m)
    for _ in range(2):
        x = rng.standard_normal((21, 9)).astype(np.float32)
        keep = x.copy()
        dout = rng.standard_normal((21, 7)).astype(np.float32)
        tw.zero_grad()
        tw.step(x, dout)
        tw.compare_state()
        np.testing.assert_array_equal(x, keep)  # the caller's input is never written
    for i in plan_set(m, 'donate'):
        assert "dx" not in m[i]._work, i
    for i in (10, 12):  # after Tanh, after Linear+ReLU: grad_input buffers of their own
        assert "dx" in m[i]._work, i
