"""The bf16 matmul precision in the layers and in training: Linear and Conv2d forward and
backward on each bf16 path against torch in float64 on the bf16-rounded operands (within the
float32-accumulation bound of bf16_refs, computed by the same torch graph on absolute values),
fit(precision=) setting and restoring the flag, and a digits MLP and a small CNN trained in
bf16 reaching the test accuracy of their fp32 run within 0.5 point."""

from __future__ import annotations

import numpy as np
import pytest
from bf16_refs import gemm_bound, round_bf16
from conftest import assert_close

import steadygrad as sg
from steadygrad import nn, optim
from steadygrad.callbacks import Callback

torch = pytest.importorskip("torch")

TIME_BUDGET_S = 25


def _t(a: np.ndarray, grad: bool = False):
    return torch.from_numpy(round_bf16(a).astype(np.float64)).requires_grad_(grad)


def _torch_graph(fn, x, w, dy, b=None):
    """y = fn(x, w, b) and its gradients dx, dw for upstream dy, in float64 on rounded
    operands; and the same on absolute values (the bound's terms: every output is a sum of
    products of the operands, so |terms| come from the same graph on |x|, |w|, |dy|)."""
    out = {}
    for key, f in (("ref", lambda a: a), ("abs", np.abs)):
        tx, tw = _t(f(x), True), _t(f(w), True)
        tb = None if b is None else torch.from_numpy(f(b).astype(np.float64))
        y = fn(tx, tw, tb)
        y.backward(_t(f(dy)))
        out[key] = (y.detach().numpy(), tx.grad.numpy(), tw.grad.numpy())
    return out


def _check_layer(layer, fn, x, k_fwd, k_dx, k_dw, what):
    y = layer(x)
    dy = np.random.default_rng(5).uniform(-1, 1, y.shape).astype(np.float32)
    dx = layer.backward(dy)
    b = None if layer.bias is None else layer.bias.data
    g = _torch_graph(fn, x, layer.weight.data, dy, b)
    for name, got, i, k in (("y", y, 0, k_fwd), ("dx", dx, 1, k_dx),
                            ("dw", layer.weight.grad, 2, k_dw)):
        assert_close(got, g["ref"][i], gemm_bound(k, g["abs"][i]), what=f"{what} {name}")
    if layer.bias is not None:  # a column sum of dy in float32, no GEMM: dy is not rounded
        axes = tuple(i for i in range(dy.ndim) if i != 1)
        db = dy.astype(np.float64).sum(axis=axes)
        n = dy.size // dy.shape[1]
        assert_close(layer.bias.grad, db, gemm_bound(n, np.abs(dy).astype(np.float64).sum(axis=axes)),
                     what=f"{what} db")


@pytest.mark.parametrize("batch", [45, 300])  # 300: past the fp32 small-matrix path's rows
def test_linear_vs_torch(bf16_path, batch):
    sg.manual_seed(0)
    layer = nn.Linear(37, 29)
    x = np.random.default_rng(1).uniform(-1, 1, (batch, 37)).astype(np.float32)
    _check_layer(layer, lambda a, w, b: torch.nn.functional.linear(a, w, b), x, 37, 29, batch,
                 f"Linear batch {batch}")


@pytest.mark.parametrize("cin,cout,stride,groups", [(16, 20, 1, 1), (6, 8, 2, 1), (8, 12, 1, 2),
                                                    (16, 24, 1, 8)])
def test_conv2d_vs_torch(bf16_path, cin, cout, stride, groups):
    """16 channels: the indirect kernel's case in fp32 (it never packs A, so bf16 must not use
    it); stride 2: dL/dx by stride phases; groups: one GEMM per group."""
    sg.manual_seed(0)
    layer = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, groups=groups)
    x = np.random.default_rng(2).uniform(-1, 1, (2, cin, 9, 7)).astype(np.float32)
    cig, cog = cin // groups, cout // groups
    oh, ow = (9 - 1) // stride + 1, (7 - 1) // stride + 1

    def fn(a, w, b):
        return torch.nn.functional.conv2d(a, w, b, stride=stride, padding=1, groups=groups)

    _check_layer(layer, fn, x, cig * 9, cog * 9, 2 * oh * ow,
                 f"Conv2d {cin}->{cout} stride {stride} groups {groups}")


class _Record(Callback):
    def __init__(self, fail_at: int | None = None) -> None:
        self.seen: list[str] = []
        self.fail_at = fail_at

    def on_batch_begin(self, step: int) -> None:
        self.seen.append(sg.get_matmul_precision())
        if step == self.fail_at:
            raise RuntimeError("stop here")


def _tiny_fit(**kw):
    sg.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    x = np.random.default_rng(0).standard_normal((20, 4)).astype(np.float32)
    y = np.arange(20) % 3
    opt = optim.SGD(model.parameters(), lr=0.1)
    return model, sg.fit(model, nn.CrossEntropyLoss(), opt, x, y, epochs=1, batch_size=8,
                         verbose=0, **kw)


def test_fit_precision_sets_and_restores():
    rec = _Record()
    _tiny_fit(precision="bf16", callbacks=[rec])
    assert rec.seen == ["bf16"] * 3
    assert sg.get_matmul_precision() == "highest"
    with sg.set_matmul_precision("bf16"):
        rec = _Record()
        _tiny_fit(precision="highest", callbacks=[rec])
        assert rec.seen == ["highest"] * 3
        assert sg.get_matmul_precision() == "bf16"
        rec = _Record()
        _tiny_fit(callbacks=[rec])  # None: as it is
        assert rec.seen == ["bf16"] * 3
    rec = _Record(fail_at=1)
    with pytest.raises(RuntimeError, match="stop here"):
        _tiny_fit(precision="bf16", callbacks=[rec])
    assert rec.seen == ["bf16"] * 2 and sg.get_matmul_precision() == "highest"


def test_fit_bad_precision_changes_nothing():
    sg.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3))
    before = {k: v.copy() for k, v in model.state_dict().items()}
    x = np.zeros((8, 4), np.float32)
    y = np.zeros(8, np.int64)
    opt = optim.SGD(model.parameters(), lr=0.1)
    for bad, err in (("fp16", ValueError), ("", ValueError), (16, TypeError)):
        with pytest.raises(err, match=r"fit: precision must be 'highest' or 'bf16', got"):
            sg.fit(model, nn.CrossEntropyLoss(), opt, x, y, epochs=1, verbose=0, precision=bad)
    assert sg.get_matmul_precision() == "highest"
    for k, v in model.state_dict().items():
        assert np.array_equal(v, before[k]), k


def _digits():
    datasets = pytest.importorskip("sklearn.datasets")
    model_selection = pytest.importorskip("sklearn.model_selection")
    x, y = datasets.load_digits(return_X_y=True)
    xtr, xte, ytr, yte = model_selection.train_test_split(x, y, test_size=0.25, stratify=y,
                                                          random_state=0)
    mean, std = xtr.mean(0), xtr.std(0) + 1.0
    return (((xtr - mean) / std).astype(np.float32), ytr.astype(np.int64),
            ((xte - mean) / std).astype(np.float32), yte.astype(np.int64))


def _accuracies(build, shape, epochs):
    xtr, ytr, xte, yte = _digits()
    acc = {}
    for precision in ("highest", "bf16"):
        sg.manual_seed(0)
        model = build()
        opt = optim.Adam(model.parameters(), lr=3e-3)
        sg.fit(model, nn.CrossEntropyLoss(), opt, xtr.reshape(shape), ytr, epochs=epochs,
               batch_size=32, seed=0, verbose=0, precision=precision)
        with sg.set_matmul_precision(precision):
            acc[precision] = sg.evaluate(model, nn.CrossEntropyLoss(), xte.reshape(shape),
                                         yte)["accuracy"]
    return acc


def test_digits_mlp_bf16_matches_fp32_accuracy():
    acc = _accuracies(lambda: nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)),
                      (-1, 64), 12)
    assert acc["highest"] > 0.96, acc
    assert abs(acc["bf16"] - acc["highest"]) <= 0.005, acc


def test_digits_cnn_bf16_matches_fp32_accuracy():
    def build():
        return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Flatten(),
                             nn.Linear(16 * 16, 10))
    acc = _accuracies(build, (-1, 1, 8, 8), 6)
    assert acc["highest"] > 0.95, acc
    assert abs(acc["bf16"] - acc["highest"]) <= 0.005, acc
