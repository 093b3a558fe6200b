"""steadygrad.onnx.export: the written file passes onnx's full check and, run by onnxruntime,
gives what model.eval()(x) gives (rtol 1e-5, atol from the output's scale) for every built-in
layer and their configurations, at batch sizes other than the example's (the dynamic batch
dimension); initializer names are the state_dict keys; unsupported modules and bad input raise
naming the module and leave no file; the model is unchanged by the export."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import steadygrad as sg
import steadygrad.onnx as sgonnx
from steadygrad import nn
from steadygrad.bench.models_cnn import CNN_CONFIGS, modules

HAVE_RUNTIME = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))
needs_onnx = pytest.mark.skipif(not HAVE_RUNTIME, reason="onnx and onnxruntime are not "
                                "installed (pip install steadygrad[test])")
BATCHES = (1, 3, 17)


def _randomise(model: nn.Module, rng: np.random.Generator) -> nn.Module:
    """Non-trivial BatchNorm/LayerNorm affines and running statistics (the defaults are ones
    and zeros, which would hide a swapped or missing tensor)."""
    for m in model.modules():
        for name in ("running_mean", "running_var"):
            buf = getattr(m, name, None)
            if isinstance(buf, np.ndarray):
                buf[...] = (rng.uniform(0.5, 2.0, buf.shape) if name == "running_var"
                            else rng.normal(0.0, 0.5, buf.shape))
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)):
            for p in (m.weight, m.bias):
                if p is not None:
                    p.data[...] = rng.uniform(0.5, 1.5, p.data.shape) * rng.choice([-1, 1])
    return model


def _tolerance(y: np.ndarray) -> float:
    """atol from the output's scale: rtol 1e-5 of its largest magnitude (plus the smallest
    normal float32, for an all-zero output)."""
    return 1e-5 * float(np.max(np.abs(y), initial=0.0)) + float(np.finfo(np.float32).tiny)


def _session(path: Path) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _check_file(path: Path) -> Any:
    import onnx

    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    return proto


def roundtrip(model: nn.Module, make: Callable[[int], np.ndarray], tmp_path: Path,
              batches: tuple[int, ...] = BATCHES, **kw: Any) -> Any:
    """Export at a batch of 2, then run the one file at each batch size and compare with the
    model's eval forward. Returns the loaded ModelProto."""
    path = tmp_path / "model.onnx"
    sgonnx.export(model, path, make(2), **kw)
    proto = _check_file(path)
    sess = _session(path)
    model.eval()
    for n in batches:
        x = make(n)
        want = model(x).copy()
        (got,) = sess.run(None, {"input": x})
        assert got.dtype == np.float32 and got.shape == want.shape, (n, got.shape, want.shape)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=_tolerance(want),
                                   err_msg=f"batch {n}")
    return proto


def floats(*shape: int, scale: float = 1.0, seed: int = 0) -> Callable[[int], np.ndarray]:
    def make(n: int) -> np.ndarray:
        rng = np.random.default_rng(seed + n)
        return (scale * rng.standard_normal((n, *shape))).astype(np.float32)
    return make


@pytest.fixture(autouse=True)
def _seeded() -> None:
    sg.manual_seed(7)


# -- architectures ---------------------------------------------------------------------------

@needs_onnx
def test_mlp_with_batchnorm_and_dropout(tmp_path: Path, rng: np.random.Generator) -> None:
    model = _randomise(nn.Sequential(
        nn.Linear(12, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(32, 16, bias=False), nn.BatchNorm1d(16, affine=False), nn.Tanh(),
        nn.Dropout(0.2), nn.Linear(16, 5)), rng)
    model.train()  # exported in eval form whatever the mode
    roundtrip(model, floats(12), tmp_path)


ACTIVATIONS = [
    nn.ReLU(), nn.LeakyReLU(0.2), nn.ELU(), nn.ELU(alpha=0.3), nn.GELU(),
    nn.GELU(approximate="tanh"), nn.Sigmoid(), nn.Tanh(), nn.SiLU(), nn.Softplus(),
    nn.Softplus(beta=2.0, threshold=3.0), nn.Softplus(beta=0.5, threshold=1.0),
    nn.Softmax(dim=1), nn.LogSoftmax(dim=-1), nn.Identity()]


@needs_onnx
@pytest.mark.parametrize("act", ACTIVATIONS, ids=repr)
def test_each_activation(act: nn.Module, tmp_path: Path) -> None:
    def make(n: int) -> np.ndarray:
        x = floats(40, scale=4.0, seed=3)(n)
        x[:, :4] = [1.5, 2.0, -1.5, 0.0]  # Softplus's thresholds: beta x == threshold exactly
        return x
    roundtrip(nn.Sequential(act), make, tmp_path)


@needs_onnx
@pytest.mark.parametrize("name", ["C1", "C2"])
def test_cnn_configs(name: str, tmp_path: Path, rng: np.random.Generator) -> None:
    cfg = CNN_CONFIGS[name]
    model = _randomise(nn.Sequential(*modules(cfg, nn, nn.Residual)), rng)
    roundtrip(model, floats(*cfg.input_shape), tmp_path)


@needs_onnx
def test_conv1d_stack(tmp_path: Path, rng: np.random.Generator) -> None:
    model = _randomise(nn.Sequential(
        nn.Conv1d(3, 8, 4, padding="same"),  # asymmetric: (1, 2)
        nn.BatchNorm1d(8), nn.ReLU(),
        nn.Conv1d(8, 8, 3, stride=2, padding=2, dilation=2, groups=4, bias=False),
        nn.MaxPool1d(3, stride=2, padding=1, ceil_mode=True), nn.ELU(),
        nn.Conv1d(8, 6, 2, padding="same", padding_mode="reflect"),
        nn.AvgPool1d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
        nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(6, 4)), rng)
    roundtrip(model, floats(3, 37), tmp_path)


CONV2D = [
    dict(padding="same", kernel_size=4),  # torch's split: the odd pad after
    dict(padding="same", kernel_size=(2, 3), dilation=(3, 1)),
    dict(padding="valid", kernel_size=3, stride=(2, 1)),
    dict(padding=(2, 1), kernel_size=3, stride=2, dilation=2),
    dict(padding=1, kernel_size=3, groups=2),
    dict(padding=1, kernel_size=3, groups=4, out_channels=8),  # depthwise
    dict(padding=1, kernel_size=3, bias=False),
    dict(padding=(1, 2), kernel_size=3, padding_mode="reflect"),
    dict(padding=2, kernel_size=3, padding_mode="replicate"),
    dict(padding=(2, 1), kernel_size=3, padding_mode="circular"),
    dict(padding="same", kernel_size=4, padding_mode="circular"),
]


@needs_onnx
@pytest.mark.parametrize("kw", CONV2D, ids=str)
def test_conv2d_configurations(kw: dict[str, Any], tmp_path: Path) -> None:
    kw = {"out_channels": 6, **kw}
    roundtrip(nn.Sequential(nn.Conv2d(4, **kw)), floats(4, 9, 10), tmp_path)


POOL2D = [
    nn.MaxPool2d(2), nn.MaxPool2d(3, stride=2, padding=1),
    nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),  # the last window runs past
    nn.MaxPool2d((3, 2), stride=(2, 3), dilation=(2, 1), ceil_mode=True),
    nn.MaxPool2d(2, stride=3, ceil_mode=True),
    nn.AvgPool2d(2), nn.AvgPool2d(3, stride=2, padding=1),
    nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False),
    nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True),
    nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, divisor_override=5),
    nn.AvgPool2d((2, 3), stride=(3, 2), ceil_mode=True),
    nn.AdaptiveAvgPool2d(1), nn.AdaptiveAvgPool2d((4, 5)), nn.AdaptiveAvgPool2d((2, 1)),
    nn.AdaptiveAvgPool2d((3, 4)),  # unequal, overlapping windows
    nn.AdaptiveAvgPool2d((None, 3)),
]


@needs_onnx
@pytest.mark.parametrize("pool", POOL2D, ids=repr)
def test_pool2d_configurations(pool: nn.Module, tmp_path: Path) -> None:
    roundtrip(nn.Sequential(pool), floats(3, 8, 10), tmp_path)


POOL1D = [nn.MaxPool1d(3, stride=2, padding=1, ceil_mode=True),
          nn.MaxPool1d(2, stride=3, dilation=2),
          nn.AvgPool1d(3, stride=2, padding=1, ceil_mode=True),
          nn.AvgPool1d(4, stride=3, padding=2, count_include_pad=False, ceil_mode=True),
          nn.AdaptiveAvgPool1d(4), nn.AdaptiveAvgPool1d(3),
          nn.AdaptiveAvgPool1d(11)]  # more outputs than inputs: windows repeat


@needs_onnx
@pytest.mark.parametrize("pool", POOL1D, ids=repr)
def test_pool1d_configurations(pool: nn.Module, tmp_path: Path) -> None:
    roundtrip(nn.Sequential(pool), floats(3, 8), tmp_path)


@needs_onnx
def test_layernorm_mlp(tmp_path: Path, rng: np.random.Generator) -> None:
    model = _randomise(nn.Sequential(
        nn.Linear(10, 16), nn.LayerNorm(16), nn.GELU(), nn.Linear(16, 16),
        nn.LayerNorm(16, elementwise_affine=False), nn.SiLU(), nn.Linear(16, 16),
        nn.LayerNorm(16, bias=False, eps=1e-3), nn.Linear(16, 3)), rng)
    roundtrip(model, floats(10, scale=3.0), tmp_path)


@needs_onnx
def test_layernorm_over_trailing_dims_of_a_feature_map(tmp_path: Path,
                                                       rng: np.random.Generator) -> None:
    model = _randomise(nn.Sequential(nn.Conv1d(2, 4, 3), nn.LayerNorm((4, 6)), nn.Flatten(),
                                     nn.Linear(24, 2)), rng)
    roundtrip(model, floats(2, 8), tmp_path)


@needs_onnx
@pytest.mark.parametrize("dtype", [np.int64, np.int32])
def test_embedding_model(dtype: type, tmp_path: Path, rng: np.random.Generator) -> None:
    model = _randomise(nn.Sequential(
        nn.Embedding(50, 8, padding_idx=0), nn.LayerNorm(8), nn.Flatten(), nn.Linear(40, 6),
        nn.LogSoftmax(dim=1)), rng)

    def make(n: int) -> np.ndarray:
        return np.random.default_rng(n).integers(0, 50, (n, 5)).astype(dtype)
    roundtrip(model, make, tmp_path)


@needs_onnx
def test_residual_blocks(tmp_path: Path, rng: np.random.Generator) -> None:
    model = _randomise(nn.Sequential(
        nn.Linear(6, 16),
        nn.Residual(nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16))),
        nn.Sequential(nn.Residual(nn.Sequential(nn.Linear(16, 8), nn.BatchNorm1d(8)),
                                  shortcut=nn.Linear(16, 8, bias=False)), nn.ReLU()),
        nn.Residual(nn.Sequential(nn.Residual(nn.Tanh()), nn.Linear(8, 8)), nn.Identity()),
        nn.Linear(8, 2)), rng)
    roundtrip(model, floats(6), tmp_path)


@needs_onnx
def test_batchnorm_forms(tmp_path: Path, rng: np.random.Generator) -> None:
    """(N, C) and (N, C, L) BatchNorm1d, BatchNorm2d, affine=False; and with
    track_running_stats=False eval normalises by the batch's own statistics (so each batch size
    is compared at its own statistics), in both ReduceMean forms (opset 17 and 18)."""
    # each as x + bn(x), so that a later normalisation by the batch does not hide it
    def res(bn: nn.Module) -> nn.Module:
        return nn.Residual(bn)
    model = _randomise(nn.Sequential(
        nn.Conv2d(3, 4, 3), res(nn.BatchNorm2d(4, eps=1e-2)), res(nn.BatchNorm2d(4, affine=False)),
        res(nn.BatchNorm2d(4, track_running_stats=False, eps=0.1)), nn.Flatten(2),
        res(nn.BatchNorm1d(4)), res(nn.BatchNorm1d(4, track_running_stats=False, affine=False)),
        nn.Flatten(), res(nn.BatchNorm1d(36, track_running_stats=False)), nn.Linear(36, 3)), rng)
    for opset in (17, 18):
        roundtrip(model, floats(3, 5, 5), tmp_path, batches=(3, 17), opset=opset)


@needs_onnx
def test_flatten_dims(tmp_path: Path) -> None:
    for flat in (nn.Flatten(), nn.Flatten(2), nn.Flatten(1, 2), nn.Flatten(-2, -1),
                 nn.Flatten(0, 0)):
        roundtrip(nn.Sequential(nn.Conv2d(2, 3, 1), flat), floats(2, 4, 5), tmp_path)
    proto = roundtrip(nn.Sequential(nn.Flatten(0, 1)), floats(2, 4, 5), tmp_path)
    # the batch merged into the next dim: the output's dim 0 is no longer the batch
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    assert not dims[0].dim_param and not dims[0].HasField("dim_value")


# -- the file's contents ---------------------------------------------------------------------

@needs_onnx
def test_initializers_are_the_state_dict(tmp_path: Path, rng: np.random.Generator) -> None:
    from onnx import numpy_helper

    cfg = CNN_CONFIGS["C2"]
    model = _randomise(nn.Sequential(*modules(cfg, nn, nn.Residual)), rng)
    proto = roundtrip(model, floats(*cfg.input_shape), tmp_path, batches=(3,))
    got = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    want = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert sorted(got) == sorted(want)
    assert "0.weight" in got and "1.running_mean" in got and "3.0.module.0.weight" in got
    for k, v in want.items():
        np.testing.assert_array_equal(got[k], v, err_msg=k)
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", 17)]


@needs_onnx
def test_named_children_keep_their_keys(tmp_path: Path) -> None:
    model = nn.Sequential(OrderedDict(
        fc=nn.Linear(4, 6), act=nn.GELU(), block=nn.Residual(nn.Linear(6, 6)),
        out=nn.Linear(6, 2)))
    proto = roundtrip(model, floats(4), tmp_path)
    assert sorted(t.name for t in proto.graph.initializer) == sorted(model.state_dict())
    with pytest.raises(TypeError, match=r"model\.block\.module \(MyLayer\)"):
        sgonnx.export(nn.Sequential(OrderedDict(fc=nn.Linear(4, 4),
                                                block=nn.Residual(MyLayer()))),
                      tmp_path / "x.onnx", floats(4)(2))


@needs_onnx
def test_dynamic_and_static_batch(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(4, 3))
    path = tmp_path / "static.onnx"
    sgonnx.export(model, path, floats(4)(5), dynamic_batch=False)
    proto = _check_file(path)
    for v in (proto.graph.input[0], proto.graph.output[0]):
        assert v.type.tensor_type.shape.dim[0].dim_value == 5
    sess = _session(path)
    assert sess.run(None, {"input": floats(4)(5)})[0].shape == (5, 3)
    with pytest.raises(Exception, match=r"(?i)dimension|shape"):
        sess.run(None, {"input": floats(4)(3)})
    proto = roundtrip(model, floats(4), tmp_path)
    for v in (proto.graph.input[0], proto.graph.output[0]):
        assert v.type.tensor_type.shape.dim[0].dim_param == "batch"


# -- errors ----------------------------------------------------------------------------------

class MyLayer(nn.Module):
    def forward(self, x: np.ndarray) -> np.ndarray:
        return x

    def _backward(self, grad_output: np.ndarray) -> np.ndarray:
        return grad_output


class MyLinear(nn.Linear):
    """A subclass of a built-in layer: its forward may differ, so it is not exported as one."""


@needs_onnx
@pytest.mark.parametrize(("model", "where"), [
    (lambda: nn.Sequential(nn.Linear(4, 4), nn.ReLU(), MyLayer()), r"model\[2\] \(MyLayer\)"),
    (lambda: nn.Sequential(nn.Linear(4, 4), nn.Residual(nn.Sequential(nn.ReLU(), MyLinear(4, 4)))),
     r"model\[1\]\.module\[1\] \(MyLinear\)"),
    (lambda: nn.Sequential(nn.Linear(4, 4), nn.ModuleList([nn.ReLU()])),
     r"model\[1\] \(ModuleList\)"),
    (lambda: MyLayer(), r"^model \(MyLayer\)"),
])
def test_unsupported_module_names_it_and_writes_nothing(model: Callable[[], nn.Module],
                                                        where: str, tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    with pytest.raises(TypeError, match=where):
        sgonnx.export(model(), path, floats(4)(2))
    assert list(tmp_path.iterdir()) == []


@needs_onnx
def test_bad_input_raises_and_keeps_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(b"old")
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(5, 2))
    with pytest.raises(ValueError, match=r"model\[2\] \(Linear\).*\(batch, 5\)"):
        sgonnx.export(model, path, floats(4)(2))
    with pytest.raises(TypeError, match=r"model\[0\] \(Linear\) takes float32 input, got int64"):
        sgonnx.export(model, path, np.zeros((2, 4), np.int64))
    with pytest.raises(TypeError, match=r"model\[0\] \(Embedding\) takes integer"):
        sgonnx.export(nn.Sequential(nn.Embedding(5, 2)), path, floats(3)(2))
    with pytest.raises(TypeError, match="example_input must be a numpy array"):
        sgonnx.export(model, path, floats(4)(2).astype(np.float64))
    with pytest.raises(ValueError, match=r"opset must be in \[17, "):
        sgonnx.export(model, path, floats(4)(2), opset=16)
    with pytest.raises(ValueError, match=r"model\[0\] \(Conv2d\): the export needs a batched"):
        sgonnx.export(nn.Sequential(nn.Conv2d(3, 2, 1)), path, floats(4, 4)(3))
    assert path.read_bytes() == b"old" and list(tmp_path.iterdir()) == [path]


@needs_onnx
@pytest.mark.parametrize("training", [True, False])
def test_export_leaves_the_model_unchanged(training: bool, tmp_path: Path,
                                           rng: np.random.Generator) -> None:
    cfg = CNN_CONFIGS["C2"]
    model = _randomise(nn.Sequential(*modules(cfg, nn, nn.Residual), nn.Dropout(0.3)), rng)
    model.train(training)
    x = floats(*cfg.input_shape)(4)
    model(x)  # a forward whose backward is pending (when training)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    sgonnx.export(model, tmp_path / "m.onnx", x)
    assert [m.training for m in model.modules()] == modes
    after = model.state_dict()
    assert list(after) == list(before)
    for k, v in before.items():
        np.testing.assert_array_equal(after[k], v, err_msg=k)
    if training:  # the pending backward still runs
        model.backward(np.ones((4, cfg.classes), np.float32))


def test_import_without_onnx_and_a_clear_error_from_export(tmp_path: Path) -> None:
    """With onnx unimportable, `import steadygrad.onnx` works and export names the extra."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'onnx' or name.startswith('onnx.'):\n"
        "            raise ImportError('blocked for the test')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import numpy as np, steadygrad.onnx as so, steadygrad as sg\n"
        "assert sg.onnx is so\n"
        "try:\n"
        "    so.export(sg.nn.Sequential(sg.nn.Linear(2, 2)), sys.argv[1],\n"
        "              np.zeros((1, 2), np.float32))\n"
        "except ImportError as e:\n"
        "    print('ImportError:', e)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.onnx")], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert "ImportError:" in out and "pip install steadygrad[onnx]" in out
    assert list(tmp_path.iterdir()) == []


@needs_onnx
def test_the_guide_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/onnx.md's example, as written (it compares onnxruntime with model.eval())."""
    text = (Path(__file__).parent.parent / "docs" / "onnx.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/onnx.md", "exec"), {})
    assert (tmp_path / "model.onnx").is_file()
