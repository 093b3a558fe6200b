"""nn.Embedding and its kernels (_core.embedding_forward / embedding_backward): torch parity of
the forward and of the weight gradient (repeated indices, padding_idx, int32/int64, any index
shape), on every ISA path, bitwise for any thread count; the backward's write after zero_grad
whatever the gradient buffer held; training as a Sequential's first layer by sg.fit; bad input
named and changing nothing; state_dict interop with torch.

The references are exact: a gathered row is a copy, and a gradient row is the sum of its
indices' rows in index order (torch's dense backward adds them into a zeroed gradient in that
order; numpy's np.add.at adds in that order too), so every comparison below is bit for bit."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pytest
import torch
from conftest import num_threads
from fuzz_support import assert_unchanged, snapshot, torch_threads

import steadygrad as sg
from steadygrad import _core, nn, optim

# dims around the kernels' column blocks: a vector (4 / 8 / 16 lanes), four vectors, tails
DIMS = (1, 3, 8, 17, 64, 71)
INDEX_SHAPES = ((), (7,), (3, 5), (2, 3, 4))


def _indices(rng: np.random.Generator, shape: tuple[int, ...], num: int, dtype: type) -> np.ndarray:
    return rng.integers(0, num, size=shape).astype(dtype)


def _grad_ref(idx: np.ndarray, dy: np.ndarray, num: int, padding_idx: int | None) -> np.ndarray:
    """The weight gradient: each index's row of dy added into a zeroed table, in index order."""
    dim = dy.shape[-1]
    g = np.zeros((num, dim), np.float32)
    np.add.at(g, idx.reshape(-1), dy.reshape(-1, dim))
    if padding_idx is not None:
        g[padding_idx] = 0.0
    return g


def _torch_twin(m: nn.Embedding) -> torch.nn.Embedding:
    t = torch.nn.Embedding(m.num_embeddings, m.embedding_dim, padding_idx=m.padding_idx)
    t.load_state_dict({k: torch.from_numpy(v) for k, v in m.state_dict().items()})
    return t


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
@pytest.mark.parametrize("shape", INDEX_SHAPES, ids=str)
@pytest.mark.parametrize("dim", DIMS)
def test_forward_and_backward_match_torch(isa: str, dim: int, shape: tuple[int, ...],
                                          dtype: type) -> None:
    rng = np.random.default_rng(dim * 31 + len(shape))
    num = 11
    m = nn.Embedding(num, dim, padding_idx=2)
    t = _torch_twin(m)
    idx = _indices(rng, shape, num, dtype)
    idx.reshape(-1)[:3] = 2  # the padding row, and repeated indices
    y = m(idx)
    ty = t(torch.from_numpy(idx))
    np.testing.assert_array_equal(y, ty.detach().numpy(), err_msg=f"{isa} forward")
    np.testing.assert_array_equal(y, m.weight.data[idx])
    assert y.shape == (*shape, dim)
    grads = []
    for step in range(2):  # the first backward writes the gradient, the second accumulates
        dy = rng.standard_normal((*shape, dim)).astype(np.float32)
        if step:
            m(idx)
            ty = t(torch.from_numpy(idx))
        assert m.backward(dy) is None  # indices have no gradient
        ty.backward(torch.from_numpy(dy))
        grads.append(_grad_ref(idx, dy, num, 2))
        np.testing.assert_array_equal(m.weight.grad, t.weight.grad.numpy(),
                                      err_msg=f"{isa} backward {step}")
    np.testing.assert_array_equal(m.weight.grad, grads[0] + grads[1])
    assert not m.weight.grad[2].any()  # padding_idx gets no gradient


@pytest.mark.parametrize("num", [1, 2048, 2049, 50_000], ids=lambda n: f"num{n}")
def test_repeated_indices_every_sort_depth(isa: str, num: int) -> None:
    """One table row (no sort), one radix digit, two digits; many repeats of a few rows and
    a skewed (Zipf-like) draw, as word frequencies are."""
    rng = np.random.default_rng(num)
    dim = 19
    few = rng.integers(0, num, 5)
    for idx in (rng.choice(few, size=(40, 9)), np.minimum(rng.zipf(1.3, size=300) - 1, num - 1)):
        idx = idx.astype(np.int64)
        w = rng.standard_normal((num, dim)).astype(np.float32)
        dw = np.full((num, dim), np.nan, np.float32)  # stale: whatever it held is overwritten
        dy = rng.standard_normal((*idx.shape, dim)).astype(np.float32)
        np.testing.assert_array_equal(_core.embedding_forward(idx, w), w[idx])
        _core.embedding_backward(dy, idx, dw)
        np.testing.assert_array_equal(dw, _grad_ref(idx, dy, num, None), err_msg=isa)


def test_write_after_zero_grad_ignores_what_the_buffer_held(isa: str) -> None:
    """The first backward after zero_grad gives exactly this batch's gradient: rows the buffer
    held values in (an earlier step's rows, a user's edit, NaN from a clip by a non-finite norm,
    -0.0) are cleared, indexed rows written without reading what was there."""
    rng = np.random.default_rng(5)
    m = nn.Embedding(300, 24)
    opt = optim.SGD(m.parameters(), lr=0.1)
    for step in range(3):
        opt.zero_grad()
        idx = rng.integers(0, 300, (6, 10))
        y = m(idx)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        m.backward(dy)
        np.testing.assert_array_equal(m.weight.grad, _grad_ref(idx, dy, 300, None), err_msg=str(step))
        opt.step()
        g = m.weight.grad  # still readable after the step, until zero_grad
        g[rng.integers(0, 300, 20)] = rng.standard_normal(24).astype(np.float32)  # user edits
        g[7] = np.nan
        g[8] = -0.0
    opt.zero_grad()
    idx = np.array([[1, 1, 299]])
    m(idx)
    dy = rng.standard_normal((1, 3, 24)).astype(np.float32)
    m.backward(dy)
    want = _grad_ref(idx, dy, 300, None)
    assert m.weight.grad.tobytes() == want.tobytes()  # bit for bit: no -0.0 left either


def test_accumulate_touches_only_indexed_rows(isa: str) -> None:
    rng = np.random.default_rng(6)
    num, dim = 40, 9
    idx = np.array([3, 5, 3, 0], np.int32)
    dy = rng.standard_normal((4, dim)).astype(np.float32)
    dw = rng.standard_normal((num, dim)).astype(np.float32)
    dw[10] = np.nan  # not indexed: left as it is (torch's old + 0 would keep NaN as well)
    want = dw + _grad_ref(idx, dy, num, 5)
    _core.embedding_backward(dy, idx, dw, padding_idx=-35, accumulate=True)  # -35 is row 5
    np.testing.assert_array_equal(dw, want)


def test_empty_indices() -> None:
    m = nn.Embedding(6, 3)
    opt = optim.SGD(m.parameters(), lr=0.1)
    m(np.array([1, 2]))
    m.backward(np.ones((2, 3), np.float32))
    opt.zero_grad()
    for shape in ((0,), (2, 0)):
        y = m(np.zeros(shape, np.int64))
        assert y.shape == (*shape, 3)
        m.backward(np.zeros(y.shape, np.float32))
        assert m.weight.grad is not None and not m.weight.grad.any()  # torch's: all zero


def _bits(make: Callable[[], np.ndarray]) -> bytes:
    return make().tobytes()


@pytest.mark.parametrize("kind", ["uniform", "one_row", "sorted"])
def test_thread_count_invariance(kind: str) -> None:
    """Big enough for the parallel paths; every row's sum is one thread's, in index order."""
    rng = np.random.default_rng(7)
    num, dim = 3000, 40
    idx = {"uniform": rng.integers(0, num, (64, 50)), "one_row": np.full((64, 50), 17),
           "sorted": np.sort(rng.integers(0, 200, (64, 50)), axis=None).reshape(64, 50)}[kind]
    w = rng.standard_normal((num, dim)).astype(np.float32)
    dy = rng.standard_normal((*idx.shape, dim)).astype(np.float32)
    old = rng.standard_normal((num, dim)).astype(np.float32)

    def run() -> np.ndarray:
        y = _core.embedding_forward(idx, w)
        dw = old.copy()
        _core.embedding_backward(dy, idx, dw, padding_idx=3)
        acc = old.copy()
        _core.embedding_backward(dy, idx, acc, padding_idx=3, accumulate=True)
        return np.concatenate([y.reshape(-1), dw.reshape(-1), acc.reshape(-1)])

    with num_threads(1):
        ref = _bits(run)
    for n in (2, 3, 4, 7):
        with num_threads(n):
            assert _bits(run) == ref, f"{n} threads"
    want = _grad_ref(idx, dy, num, 3)
    got = np.frombuffer(ref, np.float32)[idx.size * dim:].reshape(2, num, dim)
    np.testing.assert_array_equal(got[0], want)
    np.testing.assert_array_equal(got[1], old + want)


def test_big_table_three_radix_digits() -> None:
    """A table of more than 2^22 rows: the sort takes three 11-bit digits."""
    rng = np.random.default_rng(8)
    num = (1 << 22) + 5
    idx = np.concatenate([rng.integers(0, num, 500), [num - 1, 0, num - 1, 1 << 22]])
    dy = rng.standard_normal((idx.size, 1)).astype(np.float32)
    dw = np.ones((num, 1), np.float32)
    _core.embedding_backward(dy, idx, dw)
    np.testing.assert_array_equal(dw, _grad_ref(idx, dy, num, None))


# -- the layer -------------------------------------------------------------------------------

def test_init_repr_and_padding_idx_as_torch() -> None:
    sg.manual_seed(0)
    m = nn.Embedding(400, 50, padding_idx=-1)
    t = torch.nn.Embedding(400, 50, padding_idx=-1)
    assert m.padding_idx == t.padding_idx == 399
    assert repr(m) == repr(t) == "Embedding(400, 50, padding_idx=399)"
    assert repr(nn.Embedding(3, 2)) == repr(torch.nn.Embedding(3, 2))
    w = m.weight.data
    assert w.shape == (400, 50) and w.dtype == np.float32
    assert not w[399].any()
    body = w[:399].astype(np.float64)
    n = body.size  # N(0, 1): mean within 6 standard errors, std within 6 of its own
    assert abs(body.mean()) < 6 / np.sqrt(n)
    assert abs(body.std() - 1.0) < 6 * np.sqrt(0.5 / n)
    assert list(m.state_dict()) == list(t.state_dict()) == ["weight"]


def test_state_dict_interop_with_torch() -> None:
    m = nn.Embedding(12, 5, padding_idx=0)
    t = torch.nn.Embedding(12, 5, padding_idx=0)
    m.load_state_dict(t.state_dict())
    idx = np.array([[0, 3, 11], [4, 4, 0]])
    np.testing.assert_array_equal(m(idx), t(torch.from_numpy(idx)).detach().numpy())
    t2 = torch.nn.Embedding(12, 5, padding_idx=0)
    t2.load_state_dict({k: torch.from_numpy(v) for k, v in m.state_dict().items()})
    assert torch.equal(t2.weight, t.weight)


def test_summary_counts_what_the_layer_holds() -> None:
    model = nn.Sequential(nn.Embedding(100, 8), nn.Flatten(), nn.Linear(8 * 5, 3))
    assert model.output_shape((4, 5)) == (4, 3)
    row = model.summary(4, input_shape=(5,), file=None)["layers"][0]
    assert row["output_shape"] == (4, 5, 8) and row["params"] == 800
    model(np.zeros((4, 5), np.int64))
    model.backward(np.ones((4, 3), np.float32), input_grad=False)
    emb = model[0]
    held = emb._work["out"][0].nbytes + emb._sort.nbytes  # its output, the backward's sort keys
    assert row["activation_bytes"] == held and row["workspace_bytes"] == 0


def test_strided_indices_are_taken_as_torch_takes_them() -> None:
    m = nn.Embedding(9, 4)
    idx = np.arange(18).reshape(3, 6) % 9
    view = idx[:, ::2]
    np.testing.assert_array_equal(m(view), m.weight.data[view])
    m.backward(np.ones((3, 3, 4), np.float32))
    np.testing.assert_array_equal(m.weight.grad, _grad_ref(view, np.ones((3, 3, 4), np.float32), 9, None))


def _seq(seed: int, num: int, length: int, dim: int, classes: int) -> nn.Sequential:
    sg.manual_seed(seed)
    return nn.Sequential(nn.Embedding(num, dim, padding_idx=0), nn.Flatten(),
                         nn.Linear(length * dim, classes))


def test_sequential_trained_by_fit_matches_torch() -> None:
    rng = np.random.default_rng(9)
    num, length, dim, classes, n = 30, 6, 5, 4, 48
    x = rng.integers(0, num, (n, length)).astype(np.int32)
    y = rng.integers(0, classes, n)
    model = _seq(1, num, length, dim, classes)
    tmodel = torch.nn.Sequential(torch.nn.Embedding(num, dim, padding_idx=0), torch.nn.Flatten(),
                                 torch.nn.Linear(length * dim, classes))
    tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    opt = optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.5, momentum=0.9)
    h = sg.fit(model, nn.CrossEntropyLoss(), opt, x, y, epochs=3, batch_size=16, shuffle=False,
               verbose=0, validation_data=(x[:8].astype(np.int64), y[:8]))
    with torch_threads(1):
        for _ in range(3):
            for lo in range(0, n, 16):
                topt.zero_grad()
                out = tmodel(torch.from_numpy(x[lo:lo + 16]).long())
                torch.nn.functional.cross_entropy(out, torch.from_numpy(y[lo:lo + 16])).backward()
                topt.step()
    for k, v in model.state_dict().items():
        want = tmodel.state_dict()[k].numpy()
        np.testing.assert_allclose(v, want, rtol=1e-4, atol=1e-5, err_msg=k)
    assert h["loss"][-1] < h["loss"][0]
    pred = sg.predict(model, x[:5])
    np.testing.assert_allclose(pred, tmodel(torch.from_numpy(x[:5]).long()).detach().numpy(),
                               rtol=1e-4, atol=1e-5)
    assert set(sg.evaluate(model, nn.CrossEntropyLoss(), x, y)) == {"loss", "accuracy"}


def test_a_linear_after_it_writes_dx_over_its_output() -> None:
    """Embedding's output is its own and its backward never reads it, so the plan lets the
    Linear after it write dL/dx over it; the gradients stay torch's."""
    sg.manual_seed(3)
    model = nn.Sequential(nn.Embedding(30, 8, padding_idx=4), nn.Linear(8, 3))
    assert [lp.donate_input for lp in model.plan()] == [False, True]
    tmodel = torch.nn.Sequential(torch.nn.Embedding(30, 8, padding_idx=4), torch.nn.Linear(8, 3))
    tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    rng = np.random.default_rng(10)
    for _ in range(2):  # write, then accumulate
        idx = rng.integers(0, 30, 20)
        idx[:4] = 4
        dy = rng.standard_normal((20, 3)).astype(np.float32)
        model(idx)
        assert model.backward(dy) is None
        tmodel(torch.from_numpy(idx)).backward(torch.from_numpy(dy))
    for (name, p), tp in zip(model.named_parameters(), tmodel.parameters(), strict=True):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-5, atol=1e-6, err_msg=name)
    assert not model[0].weight.grad[4].any()


def test_fit_refuses_float_x_for_an_embedding_model() -> None:
    model = _seq(2, 10, 3, 2, 2)
    opt = optim.SGD(model.parameters(), lr=0.1)
    before = snapshot(model, opt)
    with pytest.raises(TypeError, match=r"fit: x must hold integer indices \(int32 or int64\).*"
                                        r"float64 array of shape \(4, 3\)"):
        sg.fit(model, nn.CrossEntropyLoss(), opt, np.zeros((4, 3)), np.zeros(4, np.int64),
               epochs=1, batch_size=2, verbose=0)
    assert_unchanged(before, snapshot(model, opt), "fit with float x")
    # other integer types are widened to int64 (as a LongTensor would be made)
    sg.fit(model, nn.CrossEntropyLoss(), opt, np.ones((4, 3), np.uint8), np.zeros(4, np.int64),
           epochs=1, batch_size=2, verbose=0)


# -- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("bad,where", [(12, "indices[1, 2]"), (-1, "indices[0, 0]")])
def test_out_of_range_index_is_named_and_changes_nothing(bad: int, where: str) -> None:
    model = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(12, 2))
    opt = optim.SGD(model.parameters(), lr=0.1)
    good = np.array([[1, 2, 3], [4, 5, 6]])
    out = model(good)
    kept = out.copy()
    before = snapshot(model, opt)
    idx = good.copy()
    idx[tuple(int(i) for i in where[8:-1].split(", "))] = bad
    msg = re.escape(f"Sequential[0] Embedding(10, 4): embedding_forward: {where} = {bad} is out "
                    "of range for num_embeddings=10 (expected 0 <= index < 10)")
    with pytest.raises(IndexError, match=msg):
        model(idx)
    assert_unchanged(before, snapshot(model, opt), "a forward with a bad index")
    np.testing.assert_array_equal(out, kept)
    model.backward(np.ones((2, 2), np.float32))  # the earlier forward's backward is intact
    w = model[0].weight
    np.testing.assert_array_equal(w.grad, _grad_ref(good, np.broadcast_to(
        (np.ones((2, 2), np.float32) @ model[2].weight.data).reshape(2, 3, 4), (2, 3, 4)),
        10, None))


@pytest.mark.parametrize("x,err,msg", [
    (np.array([1.0, 2.0], np.float32), TypeError,
     r"indices must have dtype int32 or int64, got float32 array of shape \(2,\)"),
    (np.array([1, 2], np.uint8), TypeError, r"indices must have dtype int32 or int64, got uint8"),
    ([1, 2], TypeError, r"indices must be a numpy.ndarray of int32 or int64, got list"),
])
def test_bad_index_types(x: object, err: type, msg: str) -> None:
    m = nn.Embedding(5, 3)
    before = snapshot(m)
    with pytest.raises(err, match=r"Embedding\(5, 3\): embedding_forward: " + msg):
        m(x)  # type: ignore[arg-type]
    assert_unchanged(before, snapshot(m), "a bad forward")


def test_bad_grad_output_changes_nothing() -> None:
    m = nn.Embedding(5, 3)
    idx = np.array([[1, 2]])
    m(idx)
    m.backward(np.ones((1, 2, 3), np.float32))
    m(idx)
    before = snapshot(m)
    with pytest.raises(ValueError, match=r"Embedding\(5, 3\): embedding_backward: grad_output "
                                         r"must have the output's shape indices.shape \+ "
                                         r"\(embedding_dim,\) \(1, 2, 3\), got \(2, 3\)"):
        m.backward(np.ones((2, 3), np.float32))
    assert_unchanged(before, snapshot(m), "a bad backward")
    with pytest.raises(TypeError, match="grad_output must have dtype float32"):
        m.backward(np.ones((1, 2, 3)))
    assert_unchanged(before, snapshot(m), "a bad backward")


def test_bad_constructor_arguments() -> None:
    with pytest.raises(ValueError, match=r"Embedding: Padding_idx must be within num_embeddings "
                                         r"\(-5 <= padding_idx < 5\), got 5"):
        nn.Embedding(5, 2, padding_idx=5)
    with pytest.raises(ValueError, match="Padding_idx must be within"):
        nn.Embedding(5, 2, padding_idx=-6)
    with pytest.raises(ValueError, match="Embedding: num_embeddings must be a non-negative int"):
        nn.Embedding(-1, 2)
    with pytest.raises(ValueError, match="Embedding: embedding_dim must be a non-negative int"):
        nn.Embedding(3, 2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Embedding: padding_idx must be an int"):
        nn.Embedding(3, 2, padding_idx=1.0)  # type: ignore[arg-type]


def test_binding_checks() -> None:
    idx = np.array([0, 1, 1])
    dy = np.ones((3, 2), np.float32)
    dw = np.zeros((4, 2), np.float32)
    with pytest.raises(ValueError, match=r"padding_idx must be within num_embeddings=4 "
                                         r"\(\[-4, 4\)\), got 4"):
        _core.embedding_backward(dy, idx, dw, padding_idx=4)
    with pytest.raises(ValueError, match=r"scratch must be an int64 array of at least "
                                         r"2 \* indices.size = 6 elements, got int64 \(5,\)"):
        _core.embedding_backward(dy, idx, dw, scratch=np.empty(5, np.int64))
    with pytest.raises(ValueError, match="grad_weight must not overlap grad_output"):
        _core.embedding_backward(dw[:3], idx, dw)
    with pytest.raises(IndexError, match=r"embedding_backward: indices\[2\] = 4 is out of range"):
        _core.embedding_backward(dy, np.array([0, 1, 4]), dw)
    assert not dw.any()
    w = np.ones((4, 2), np.float32)
    with pytest.raises(ValueError, match="out must not overlap weight"):
        _core.embedding_forward(np.array([[0]]), w, out=w[:1].reshape(1, 1, 2))
    with pytest.raises(ValueError, match=r"out must have the shape indices.shape \+ "
                                         r"\(embedding_dim,\) \(3, 2\), got \(3, 3\)"):
        _core.embedding_forward(idx, w, out=np.empty((3, 3), np.float32))
