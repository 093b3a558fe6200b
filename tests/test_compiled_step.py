"""sg.compile_step and fit's use of it: N compiled steps equal N eager steps BIT FOR BIT (loss,
parameters, gradients, running statistics, optimizer state) over every compiled layer, fused
epilogue and option, several losses and optimizers, every ISA path and 1 and 2 threads; models
that do not compile warn once and run eagerly; structure, mode, batch-size and storage changes
re-record the tape; bad input is reported as the eager step reports it, changing nothing."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from conftest import num_threads

import steadygrad as sg
from steadygrad import nn, optim
from steadygrad.compiled import CompiledStep, CompileFallbackWarning

TIME_BUDGET_S = 60

Build = Callable[[], nn.Sequential]

ARCHS: dict[str, Build] = {
    # Linear + ReLU fused into the GEMM; BatchNorm1d + ReLU fused into its store
    "mlp_bn_relu": lambda: nn.Sequential(nn.Linear(12, 24), nn.BatchNorm1d(24), nn.ReLU(),
                                         nn.Linear(24, 16), nn.ReLU(), nn.Linear(16, 5)),
    # every standalone activation, one with parameters, an activation first (no dL/dx)
    "activations": lambda: nn.Sequential(
        nn.Tanh(), nn.Linear(12, 16), nn.LeakyReLU(0.2), nn.Linear(16, 16), nn.Sigmoid(),
        nn.Linear(16, 16), nn.GELU(), nn.Linear(16, 16), nn.GELU(approximate="tanh"),
        nn.Linear(16, 16), nn.SiLU(), nn.Linear(16, 16), nn.ELU(0.7), nn.Linear(16, 16),
        nn.Softplus(2.0, 5.0), nn.Linear(16, 5)),
    # Dropout (seeds drawn as the layers draw them), also first (no dL/dx) and p=1
    "dropout": lambda: nn.Sequential(
        nn.Dropout(0.2), nn.Linear(12, 24), nn.ReLU(), nn.Dropout(0.5), nn.Linear(24, 24),
        nn.Dropout(1.0), nn.Tanh(), nn.Linear(24, 5)),
    # BatchNorm options, bias-free Linear, pass-through layers, a ReLU right after BN's output
    "bn_options": lambda: nn.Sequential(
        nn.Linear(12, 20, bias=False), nn.BatchNorm1d(20, affine=False), nn.Identity(),
        nn.Linear(20, 20), nn.BatchNorm1d(20, momentum=None), nn.Dropout(0.0), nn.ReLU(),
        nn.Linear(20, 20), nn.BatchNorm1d(20, track_running_stats=False), nn.Tanh(),
        nn.Linear(20, 5)),
}

OPTIMIZERS: dict[str, Callable[[Any], Any]] = {
    "adam_clip": lambda p: optim.Adam(p, lr=1e-2, max_grad_norm=0.5),
    "sgd_nesterov": lambda p: optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True,
                                        weight_decay=1e-3),
    "adamw": lambda p: optim.AdamW(p, lr=1e-2),
    "rmsprop_value_clip": lambda p: optim.RMSprop(p, lr=1e-3, max_grad_value=0.1),
}


def _data(classes: int = 5, n: int = 32) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 12)).astype(np.float32)
    return x, rng.integers(0, classes, n)


def _pair(build: Build, make_opt: Callable[[Any], Any]) -> tuple[Any, Any]:
    out = []
    for _ in range(2):
        sg.manual_seed(3)
        model = build()
        model.train()
        out.append((model, make_opt(model.parameters())))
    return out[0], out[1]


def _eager_step(model: Any, opt: Any, loss_fn: Any, x: np.ndarray, y: Any) -> float:
    opt.zero_grad()
    loss = float(loss_fn(model(x), y))
    model.backward(loss_fn.backward(), input_grad=False)
    opt.step()
    return loss


def _assert_same(a: tuple[Any, Any], b: tuple[Any, Any], what: str) -> None:
    (ma, oa), (mb, ob) = a, b
    for (name, va), (_, vb) in zip(ma.state_dict().items(), mb.state_dict().items(), strict=True):
        np.testing.assert_array_equal(np.asarray(vb), np.asarray(va), err_msg=f"{what}: {name}")
    for pa, pb in zip(ma.parameters(), mb.parameters(), strict=True):
        np.testing.assert_array_equal(pb.grad_buffer, pa.grad_buffer, err_msg=f"{what}: grad")
    sa, sb = oa.state_dict()["state"], ob.state_dict()["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        for field in sa[k]:
            np.testing.assert_array_equal(np.asarray(sb[k][field]), np.asarray(sa[k][field]),
                                          err_msg=f"{what}: optimizer state {k}.{field}")


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
def test_compiled_steps_equal_eager_steps_bitwise(isa: str, arch: str, opt_name: str) -> None:
    x, y = _data()
    eager, comp = _pair(ARCHS[arch], OPTIMIZERS[opt_name])
    le, lc = nn.CrossEntropyLoss(), nn.CrossEntropyLoss()
    step = sg.compile_step(comp[0], lc, comp[1])
    assert step.compiled, step.reason
    model, opt = eager
    for i in range(4):
        sg.manual_seed(100 + i)  # the same Dropout seeds for both
        opt.zero_grad()
        pred = model(x)
        a = float(le(pred, y))
        model.backward(le.backward(), input_grad=False)
        opt.step()
        sg.manual_seed(100 + i)
        b = step(x, y)
        assert a == b, f"step {i}: loss {b!r} != eager {a!r}"
        np.testing.assert_array_equal(step.output, pred, err_msg=f"step {i}: prediction")
    _assert_same(eager, comp, f"{arch}/{opt_name} on {isa}")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("loss", ["mse", "bce", "ce_smooth_sum", "ce_weight_ignore", "ce_soft",
                                  "nll"])
def test_any_loss_and_thread_count(threads: int, loss: str) -> None:
    """The loss runs as in the eager loop (any loss module); thread count changes nothing."""
    x, labels = _data(classes=4, n=48)
    rng = np.random.default_rng(1)
    if loss == "mse":
        make, y = nn.MSELoss, rng.standard_normal((48, 4)).astype(np.float32)
    elif loss == "bce":
        make, y = nn.BCEWithLogitsLoss, (rng.random((48, 4)) > 0.5).astype(np.float32)
    elif loss == "ce_smooth_sum":
        def make() -> Any:
            return nn.CrossEntropyLoss(label_smoothing=0.1, reduction="sum")
        y = labels
    elif loss == "ce_weight_ignore":  # inside the tape's call, with every argument
        def make() -> Any:
            return nn.CrossEntropyLoss(weight=np.array([1.0, 0.5, 2.0, 0.0], np.float32),
                                       ignore_index=2, label_smoothing=0.05)
        y = labels.astype(np.int32)
    elif loss == "ce_soft":  # probabilities: the loss module runs between the tape's calls
        make = nn.CrossEntropyLoss
        y = rng.dirichlet(np.ones(4), 48).astype(np.float32)
    else:
        def build_nll() -> nn.Sequential:
            return nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 4), nn.LogSoftmax(1))
        make, y = nn.NLLLoss, labels
    def build() -> nn.Sequential:
        return nn.Sequential(nn.Linear(12, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 4))
    if loss == "nll":  # LogSoftmax has no compiled form: the whole step runs eagerly
        with num_threads(threads):
            eager, comp = _pair(build_nll, OPTIMIZERS["adam_clip"])
            with pytest.warns(CompileFallbackWarning, match="layer '3' is a LogSoftmax"):
                step = sg.compile_step(comp[0], make(), comp[1])
            assert not step.compiled and "LogSoftmax" in (step.reason or "")
            for _ in range(3):
                assert _eager_step(*eager, make(), x, y) == step(x, y)
        _assert_same(eager, comp, "nll fallback")
        return
    with num_threads(threads):
        eager, comp = _pair(build, OPTIMIZERS["adam_clip"])
        le = make()
        step = sg.compile_step(comp[0], make(), comp[1])
        for _ in range(4):
            assert _eager_step(*eager, le, x, y) == step(x, y)
    _assert_same(eager, comp, f"{loss} at {threads} threads")


class Custom(nn.Module):
    def forward(self, x: np.ndarray) -> np.ndarray:
        return x * 2.0

    def _backward(self, grad_output: np.ndarray) -> np.ndarray:
        return grad_output * 2.0


@pytest.mark.parametrize("model, words", [
    (lambda: nn.Sequential(nn.Linear(12, 8), Custom(), nn.Linear(8, 5)), "layer '1' is a Custom"),
    (lambda: nn.Sequential(nn.Sequential(nn.Linear(12, 5))), "layer '0' is a Sequential"),
    (lambda: nn.Linear(12, 5), "the model is a Linear"),
])
def test_models_that_do_not_compile_warn_once_and_run_eagerly(model: Callable[[], Any],
                                                              words: str) -> None:
    x, y = _data()
    eager, comp = _pair(model, OPTIMIZERS["adam_clip"])
    with pytest.warns(CompileFallbackWarning, match=words):
        step = sg.compile_step(comp[0], nn.CrossEntropyLoss(), comp[1])
    sg.manual_seed(9)  # the same Dropout masks for both runs
    want = [_eager_step(*eager, nn.CrossEntropyLoss(), x, y) for _ in range(3)]
    sg.manual_seed(9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once: the steps say nothing
        assert [step(x, y) for _ in range(3)] == want
    _assert_same(eager, comp, words)


def test_shared_parameter_does_not_compile() -> None:
    a = nn.Linear(8, 8)
    b = nn.Linear(8, 8)
    b.weight = a.weight
    model = nn.Sequential(nn.Linear(12, 8), a, nn.ReLU(), b, nn.Linear(8, 5))
    with pytest.warns(CompileFallbackWarning, match="layer '3' shares a parameter"):
        sg.compile_step(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1))


def test_changes_between_steps_re_record_the_tape() -> None:
    """A smaller last batch, a child switched to eval mode (that step runs eagerly), a setting
    and a buffer changed, a layer appended, parameters moved into a new flat buffer: each step
    still equals the eager one."""
    x, y = _data(n=40)
    eager, comp = _pair(ARCHS["mlp_bn_relu"], OPTIMIZERS["adam_clip"])
    le, lc = nn.CrossEntropyLoss(), nn.CrossEntropyLoss()
    step = sg.compile_step(comp[0], lc, comp[1])

    def both(xb: np.ndarray, yb: np.ndarray, what: str) -> None:
        assert _eager_step(*eager, le, xb, yb) == step(xb, yb), what
        _assert_same(eager, comp, what)

    both(x[:32], y[:32], "batch 32")
    both(x[32:], y[32:], "batch 8")
    both(x[:32], y[:32], "batch 32 again")
    for m in (eager[0], comp[0]):
        m[1].eval()
    assert step._tape_for(x[:32]) is None  # an eval-mode BatchNorm1d: this step runs eagerly
    both(x[:32], y[:32], "BatchNorm1d in eval mode")
    for m in (eager[0], comp[0]):
        m[1].train()
        m[1].momentum = 0.5  # a setting the tape baked in
    both(x[:32], y[:32], "BatchNorm1d momentum changed")
    for m in (eager[0], comp[0]):
        m[1].running_mean = np.full(24, 0.25, np.float32)  # a buffer replaced
    both(x[:32], y[:32], "running_mean replaced")
    for m in (eager[0], comp[0]):
        m.append(nn.Tanh())
    both(x[:32], y[:32], "Tanh appended")
    for model, _opt in (eager, comp):
        nn.flatten(list(model.parameters()))  # a new flat buffer; the optimizer follows it
    both(x[:32], y[:32], "parameters moved")


def test_bad_input_is_reported_as_eagerly_and_changes_nothing() -> None:
    """Wrong features, dtype, a batch of one for BatchNorm: the eager step's errors; a label
    out of range: checked before the tape runs (no running statistic moves)."""
    x, y = _data()
    (model, opt), _ = _pair(ARCHS["mlp_bn_relu"], OPTIMIZERS["adam_clip"])
    step = sg.compile_step(model, nn.CrossEntropyLoss(), opt)
    step(x, y)
    before = {k: np.array(v, copy=True) for k, v in model.state_dict().items()}
    state = opt.state_dict()
    with pytest.raises(ValueError, match=r"Linear\(12 -> 24\): expected input of shape \(batch, 12\)"):
        step(x[:, :10], y)
    with pytest.raises(TypeError, match="float32"):
        step(x.astype(np.float64), y)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        step(x[:1], y[:1])
    bad = y.copy()
    bad[7] = 5
    with pytest.raises(ValueError, match=r"labels\[7\] = 5 is out of range for 5 classes"):
        step(x, bad)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(np.asarray(v), before[k], err_msg=k)
    assert opt.state_dict()["state"].keys() == state["state"].keys()


def test_a_non_finite_step_is_skipped_and_the_running_stats_rolled_back() -> None:
    x, y = _data()
    bad = x.copy()
    bad[3, 2] = np.inf
    eager, comp = _pair(ARCHS["mlp_bn_relu"], OPTIMIZERS["adam_clip"])
    step = sg.compile_step(comp[0], nn.CrossEntropyLoss(), comp[1])
    le = nn.CrossEntropyLoss()
    for xb in (x, bad, x):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optim.NonFiniteGradientWarning)
            a = _eager_step(*eager, le, xb, y)
            b = step(xb, y)
        assert a == b or (np.isnan(a) and np.isnan(b))
    assert comp[1].skipped_steps == eager[1].skipped_steps == 1
    _assert_same(eager, comp, "after a skipped step")


def test_fit_uses_the_compiled_step_and_gives_the_eager_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    """fit compiles a model that compiles: the same History and parameters as with the
    compiled step turned off, and the tape is what ran."""
    x, y = _data(n=70)
    calls: list[int] = []
    real = CompiledStep._fuses_loss

    def counting(self: CompiledStep, tape: Any, yb: object) -> bool:
        fused = real(self, tape, yb)
        calls.append(int(fused))
        return fused

    def run() -> tuple[Any, Any]:
        (model, opt), _ = _pair(ARCHS["mlp_bn_relu"], OPTIMIZERS["adam_clip"])
        h = sg.fit(model, nn.CrossEntropyLoss(), opt, x, y, epochs=3, batch_size=16, seed=1,
                   validation_data=(x[:20], y[:20]), verbose=0)
        return h, model

    monkeypatch.setattr(CompiledStep, "_fuses_loss", counting)
    h1, m1 = run()
    assert calls == [1] * 15  # 3 epochs x 5 batches (the last one of 6): one tape call each
    monkeypatch.setattr("steadygrad.training.run.unsupported", lambda model: "off")
    h2, m2 = run()
    assert len(calls) == 15  # not used: the eager fit
    assert h1.history == h2.history | {"samples_per_s": h1.history["samples_per_s"]}
    assert h1.steps == h2.steps
    for (k, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items(), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=k)


def test_a_layer_with_a_gradients_written_hook_runs_the_step_eagerly() -> None:
    """Module._on_grads_written (data parallelism's bucketing) is called as in the eager step."""
    x, y = _data()
    (model, opt), _ = _pair(ARCHS["mlp_bn_relu"], OPTIMIZERS["adam_clip"])
    step = sg.compile_step(model, nn.CrossEntropyLoss(), opt)
    step(x, y)
    seen: list[str] = []
    model[3]._on_grads_written(lambda m: seen.append(type(m).__name__))
    step(x, y)
    assert seen == ["Linear"]
    model[3]._on_grads_written(None)
    step(x, y)
    assert seen == ["Linear"]  # unhooked: compiled again, no call


def test_a_ninth_input_shape_recording_over_the_full_cache_keeps_its_dropout_seeds() -> None:
    """The tape cache holds 8 shapes; the 9th clears it before recording (it cleared after,
    which dropped the new tape's Dropout count and its seeds with it). 10 batch sizes in turn,
    compiled against eager, bit for bit."""
    comp, eager = _pair(ARCHS["dropout"], lambda p: optim.SGD(p, lr=0.1))
    lc = nn.CrossEntropyLoss()
    step = sg.compile_step(comp[0], lc, comp[1])
    for n in range(3, 13):
        x, y = _data(n=n)
        sg.manual_seed(n)
        a = step(x, y)
        sg.manual_seed(n)
        assert a == _eager_step(eager[0], eager[1], lc, x, y)
    _assert_same(eager, comp, "after 10 shapes")
