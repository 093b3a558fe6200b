"""nn.Module mechanics: the flat parameter buffer, gradient freshness, traversal and names,
state_dict/load_state_dict, train/eval, summary, repr, buffer reuse, init and manual_seed."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from cnn_blocks import traced_peak
from conftest import assert_close, gemm_tolerance

import steadygrad as sg
from steadygrad import nn, optim
from steadygrad.nn import init

torch = pytest.importorskip("torch")


def _model() -> nn.Sequential:
    return nn.Sequential(nn.Linear(10, 16), nn.BatchNorm1d(16), nn.ReLU(),
                         nn.Residual(nn.Sequential(nn.Linear(16, 16), nn.Tanh())),
                         nn.Dropout(0.1), nn.Linear(16, 3, bias=False))


def test_parameters_are_aligned_views_of_one_flat_buffer() -> None:
    m = _model()
    params = m.parameters()
    storage = m.flat_storage
    assert storage is not None and nn.shared_storage(params) is storage
    assert storage.data.ctypes.data % 64 == 0 and storage.grad.ctypes.data % 64 == 0
    for p in params:
        assert p.data.ctypes.data % 64 == 0 and p.grad_buffer.ctypes.data % 64 == 0
        assert np.shares_memory(p.data, storage.data) and np.shares_memory(p.grad_buffer, storage.grad)
        np.testing.assert_array_equal(storage.data[p.offset:p.offset + p.size], p.data.ravel())
    assert m[3].flat_storage is storage  # nested containers share the model's buffer
    assert sum(p.size for p in params) == 10 * 16 + 16 + 32 + 16 * 16 + 16 + 16 * 3


def test_names_match_torch() -> None:
    m = _model()
    assert [n for n, _ in m.named_parameters()] == [
        "0.weight", "0.bias", "1.weight", "1.bias", "3.module.0.weight", "3.module.0.bias", "5.weight"]
    assert [n for n, _ in m.named_buffers()] == ["1.running_mean", "1.running_var", "1.num_batches_tracked"]
    assert len(m.buffers()) == 3
    assert [n for n, _ in m.named_children()] == ["0", "1", "2", "3", "4", "5"]
    assert [n for n, _ in m.named_modules()][:6] == ["", "0", "1", "2", "3", "3.module"]


def test_zero_grad_then_write_then_accumulate(rng: np.random.Generator) -> None:
    m = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    x = rng.standard_normal((5, 4)).astype(np.float32)
    d = rng.standard_normal((5, 3)).astype(np.float32)
    assert all(p.grad is None for p in m.parameters())
    for p in m.parameters():
        p.grad_buffer[...] = np.nan  # a memset is never needed: beta = 0 does not read it
    m(x)
    m.backward(d)
    first = [p.grad.copy() for p in m.parameters()]
    assert all(np.isfinite(g).all() for g in first)
    m(x)
    m.backward(d)
    for g1, p in zip(first, m.parameters(), strict=True):
        np.testing.assert_allclose(p.grad, 2 * g1, rtol=1e-6, atol=1e-7)
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())
    m(x)
    m.backward(d)
    for g1, p in zip(first, m.parameters(), strict=True):
        np.testing.assert_allclose(p.grad, g1, rtol=1e-6, atol=1e-7)


def test_train_eval_and_dropout_reproducible_with_manual_seed(rng: np.random.Generator) -> None:
    m = nn.Sequential(nn.Dropout(0.5))
    x = rng.standard_normal((50, 40)).astype(np.float32) + 3
    sg.manual_seed(3)
    a = m(x).copy()
    sg.manual_seed(3)
    b = m(x).copy()
    c = m(x).copy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(b, c)
    m.eval()
    assert not m.training and not m[0].training
    assert m(x) is x


def test_manual_seed_makes_init_reproducible() -> None:
    sg.manual_seed(11)
    a = nn.Linear(20, 30).state_dict()
    sg.manual_seed(11)
    b = nn.Linear(20, 30).state_dict()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    bound = 1 / math.sqrt(20)
    assert np.abs(a["weight"]).max() <= bound and np.abs(a["bias"]).max() <= bound
    assert np.abs(a["weight"]).max() > 0.9 * bound


def test_outputs_reuse_buffers_across_steps(rng: np.random.Generator) -> None:
    m = nn.Sequential(nn.Linear(8, 8), nn.ReLU())
    x = rng.standard_normal((4, 8)).astype(np.float32)
    y1 = m(x)
    g1 = m.backward(np.ones((4, 8), np.float32))
    ptrs = (y1.__array_interface__["data"][0], g1.__array_interface__["data"][0])
    work = {k: v[0] for k, v in m[0]._work.items()}
    del y1, g1  # the caller dropped them: the next results may reuse their memory
    y2 = m(x)
    g2 = m.backward(np.ones((4, 8), np.float32))
    assert (y2.__array_interface__["data"][0], g2.__array_interface__["data"][0]) == ptrs
    assert {k: v[0] for k, v in m[0]._work.items()} == work  # internal buffers: the same
    lin = nn.Linear(8, 8)
    z = lin(x)
    z2 = lin(z)  # the layer's own output as input gets a fresh buffer, not an aliasing error
    z64, w64 = z.astype(np.float64), lin.weight.data.astype(np.float64)
    # float64 reference, bounded by the summed magnitudes as in the GEMM tests
    tol = gemm_tolerance(8, (np.abs(z64) @ np.abs(w64).T + np.abs(lin.bias.data)) / np.sqrt(8))
    assert_close(z2, z64 @ w64.T + lin.bias.data, tol, what="Linear on its own output")


def test_load_state_dict_copies_into_views_and_checks_before_copying(rng: np.random.Generator) -> None:
    m = _model()
    sd = m.state_dict()
    views = [p.data for p in m.parameters()]
    new = {k: (rng.standard_normal(v.shape).astype(v.dtype) if v.dtype != np.int64 else np.array(7))
           for k, v in sd.items()}
    assert m.load_state_dict(new) == ([], [])
    for v, p in zip(views, m.parameters(), strict=True):
        assert v is p.data
    np.testing.assert_array_equal(m[0].weight.data, new["0.weight"])
    assert int(m[1].num_batches_tracked) == 7
    before = m.state_dict()
    bad = dict(new, **{"0.weight": np.zeros((3, 3), np.float32)})
    with pytest.raises(RuntimeError, match=r"size mismatch for 0.weight"):
        m.load_state_dict(bad)
    missing = {k: v for k, v in new.items() if k != "5.weight"}
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "5.weight"'):
        m.load_state_dict(dict(missing, extra=np.zeros(1)))
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, before[k])  # nothing was copied
    res = m.load_state_dict(dict(missing, extra=np.zeros(1)), strict=False)
    assert res.missing_keys == ["5.weight"] and res.unexpected_keys == ["extra"]


def test_repr_and_summary() -> None:
    m = _model()
    r = repr(m)
    assert "(0): Linear(10 -> 16)" in r and "(5): Linear(16 -> 3, bias=False)" in r
    assert "BatchNorm1d(16, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)" in r
    buf = io.StringIO()
    s = m.summary(32, file=buf)
    assert s["params"] == sum(p.size for p in m.parameters())
    assert s["param_bytes"] == m.flat_storage.data.nbytes >= 4 * s["params"]
    assert s["grad_bytes"] == s["param_bytes"]
    # activations: each layer's output buffer (+ BN's saved mean/invstd); Flatten/Identity none,
    # nor the ReLU fused into the BatchNorm before it (no output, no grad_input of its own)
    assert s["activation_bytes"] == 4 * 32 * (16 + 16 + 16 + 16 + 16 + 16 + 3) + 8 * 16
    # grad_input buffers: none for the first Linear (input_grad=False, as sg.fit) nor for the
    # BatchNorm (written in place over its input, the Linear's output, dead by then) nor for
    # the Residual (its sum goes over its branch's dL/dx, the inner Linear's buffer)
    assert s["workspace_bytes"] == 4 * 32 * (16 + 16 + 16 + 16)
    assert m.summary(32, file=None, input_grad=True)["workspace_bytes"] == 4 * 32 * (10 + 16 * 4)
    assert [r["layer"] for r in s["layers"]][2] == "ReLU() (fused)"
    assert "Linear(10 -> 16)" in buf.getvalue() and "total" in buf.getvalue()
    with pytest.raises(ValueError, match="input shape"):
        nn.Sequential(nn.ReLU()).summary(4, file=None)
    assert nn.Sequential(nn.Flatten(), nn.Linear(12, 2)).summary(4, (3, 4), file=None)["input_shape"] == (4, 3, 4)


def test_summary_infers_the_input_width_past_identity_and_dropout_layers_of_any_name() -> None:
    class Noise(nn.Dropout):
        pass

    m = nn.Sequential(nn.Identity(), Noise(0.1), nn.Linear(12, 2))
    assert m.summary(4, file=None)["input_shape"] == (4, 12)


@pytest.mark.parametrize("nl,param", [("linear", None), ("sigmoid", None), ("tanh", None), ("relu", None),
                                       ("leaky_relu", None), ("leaky_relu", 0.3), ("selu", None)])
def test_calculate_gain_matches_torch(nl: str, param: float | None) -> None:
    assert init.calculate_gain(nl, param) == pytest.approx(torch.nn.init.calculate_gain(nl, param))


def test_init_distributions_follow_torch_formulas() -> None:
    sg.manual_seed(0)
    w = np.empty((400, 300), np.float32)
    fan_in, fan_out = 300, 400
    init.xavier_uniform_(w, gain=2.0)
    b = 2.0 * math.sqrt(6 / (fan_in + fan_out))
    assert np.abs(w).max() <= b and np.abs(w).max() > 0.99 * b
    init.xavier_normal_(w)
    assert w.std() == pytest.approx(math.sqrt(2 / (fan_in + fan_out)), rel=0.02)
    init.kaiming_uniform_(w, a=0, mode="fan_out", nonlinearity="relu")
    b = math.sqrt(2) * math.sqrt(3 / fan_out)
    assert np.abs(w).max() <= b and np.abs(w).max() > 0.99 * b
    init.kaiming_normal_(w, nonlinearity="relu")
    assert w.std() == pytest.approx(math.sqrt(2 / fan_in), rel=0.02)
    p = nn.Parameter(np.empty((3, 4), np.float32))
    view = p.data
    assert init.constant_(p, 2.5) is p and (view == 2.5).all()
    init.zeros_(p)
    assert (p.data == 0).all()
    init.ones_(p)
    assert (p.data == 1).all()
    init.uniform_(w, -0.5, 0.25)
    assert w.min() >= -0.5 and w.max() <= 0.25
    init.normal_(w, 3.0, 0.5)
    assert w.mean() == pytest.approx(3.0, abs=0.01) and w.std() == pytest.approx(0.5, rel=0.02)
    with pytest.raises(ValueError, match="Fan in and fan out"):
        init.xavier_uniform_(np.empty(5, np.float32))
    with pytest.raises(ValueError, match="Mode fan_avg not supported"):
        init.kaiming_uniform_(w, mode="fan_avg")
    with pytest.raises(ValueError, match="Unsupported nonlinearity"):
        init.calculate_gain("swish")


def test_backward_without_input_grad_gives_same_parameter_grads(rng: np.random.Generator) -> None:
    x = rng.standard_normal((6, 10)).astype(np.float32)
    d = rng.standard_normal((6, 3)).astype(np.float32)
    sg.manual_seed(5)
    a = nn.Sequential(nn.BatchNorm1d(10), nn.Linear(10, 3))
    sg.manual_seed(5)
    b = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 3))
    for m in (a, b):
        m(x)
        dx = m.backward(d).copy()
        grads = [p.grad.copy() for p in m.parameters()]
        m.zero_grad()
        m(x)
        assert m.backward(d, input_grad=False) is None
        for g, p in zip(grads, m.parameters(), strict=True):
            np.testing.assert_array_equal(g, p.grad)
        m(x)
        np.testing.assert_array_equal(m.backward(d), dx)  # the next backward computes it again


def test_smaller_batch_reuses_the_front_of_the_buffers(rng: np.random.Generator) -> None:
    m = nn.Sequential(nn.Linear(8, 8), nn.Tanh())
    m(rng.standard_normal((16, 8)).astype(np.float32))
    raw = m[0]._work["out"][0]
    y_part = m(rng.standard_normal((5, 8)).astype(np.float32))
    inner = m[0]._work["out"]
    assert inner[0] is raw and inner[1].shape == (5, 8) and np.shares_memory(inner[1], raw)
    assert y_part.shape == (5, 8) and y_part.flags.c_contiguous


def test_training_steps_bitwise_identical_for_any_thread_count(rng: np.random.Generator) -> None:
    from tests.conftest import num_threads

    x = rng.standard_normal((260, 64)).astype(np.float32)
    y = rng.integers(0, 10, 260)
    results = []
    for t in (1, 2, 3):
        with num_threads(t):
            sg.manual_seed(0)
            m = nn.Sequential(nn.Linear(64, 520), nn.BatchNorm1d(520), nn.GELU(), nn.Dropout(0.2),
                              nn.Residual(nn.Sequential(nn.Linear(520, 520), nn.BatchNorm1d(520))),
                              nn.Linear(520, 10))
            lf = nn.CrossEntropyLoss()
            losses = []
            for _ in range(2):
                losses.append(lf(m(x), y))
                m.backward(lf.backward())
            results.append((losses, m.flat_storage.grad.copy(), [b.copy() for b in m.buffers()]))
    for r in results[1:]:
        assert r[0] == results[0][0]
        np.testing.assert_array_equal(r[1], results[0][1])
        for a, b in zip(r[2], results[0][2], strict=True):
            np.testing.assert_array_equal(a, b)


def test_custom_module_without_output_shape_works_in_sequential(rng: np.random.Generator) -> None:
    class Double(nn.Module):  # changes the shape and does not say so
        def forward(self, x: np.ndarray) -> np.ndarray:
            return np.concatenate([x, x], axis=1)

        def _backward(self, grad_output: np.ndarray) -> np.ndarray:
            h = grad_output.shape[1] // 2
            return grad_output[:, :h] + grad_output[:, h:]

    m = nn.Sequential(nn.Linear(3, 4), Double(), nn.Linear(8, 2))
    x = rng.standard_normal((5, 3)).astype(np.float32)
    assert m(x).shape == (5, 2)
    assert m.backward(np.ones((5, 2), np.float32)).shape == (5, 3)
    with pytest.raises(ValueError, match=r"Sequential\[1\] Linear\(3 -> 2\): linear_forward: input must have shape .* got \(5, 6\)"):
        nn.Sequential(Double(), nn.Linear(3, 2))(x)


@pytest.mark.parametrize("kind", ["mixed", "bn_mlp"])
def test_steady_state_training_step_allocates_no_arrays(rng: np.random.Generator, kind: str) -> None:

    if kind == "mixed":
        m = nn.Sequential(nn.Linear(100, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Dropout(0.1),
                          nn.Residual(nn.Sequential(nn.Linear(256, 256), nn.GELU())), nn.Linear(256, 10))
    else:  # the benchmark's blocks: grad_input written over dead activations, fused ReLUs
        m = nn.Sequential(nn.Linear(100, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Linear(256, 256),
                          nn.BatchNorm1d(256), nn.ReLU(), nn.Linear(256, 10))
    opt = optim.Adam(m.parameters(), lr=1e-3, max_grad_norm=1.0)
    lf = nn.CrossEntropyLoss()
    x = rng.standard_normal((128, 100)).astype(np.float32)
    y = np.arange(128) % 10

    def step() -> None:
        opt.zero_grad()
        lf(m(x), y)
        m.backward(lf.backward(), input_grad=kind == "mixed")
        opt.step()

    step()
    peak = traced_peak(step)
    assert peak < 32 * 1024, f"{peak} bytes allocated in steady state (one activation is 128 KiB)"
