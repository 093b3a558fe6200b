"""The rules of a public call (nn._calls): results belong to the caller, an eval forward leaves
a pending backward alone, stacked training forwards make backward raise, custom layers'
backward, one instance per model, threads, and running statistics of skipped steps."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest
import torch

import steadygrad as sg
from steadygrad import nn, optim


def _mlp(seed: int = 0) -> nn.Sequential:
    sg.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 16),
                         nn.Tanh(), nn.Linear(16, 3))


def _grads(m: nn.Module) -> np.ndarray:
    st = m.flat_storage
    assert st is not None
    return st.grad.copy()


def test_outputs_belong_to_the_caller(rng: np.random.Generator) -> None:
    m = _mlp()
    xa = rng.standard_normal((8, 6)).astype(np.float32)
    xb = rng.standard_normal((5, 6)).astype(np.float32)  # smaller: the front of the buffers
    a = m(xa)
    a_copy = a.copy()
    b = m(xb)
    np.testing.assert_array_equal(a, a_copy)
    assert not np.shares_memory(a, b)
    m.eval()
    preds = [m(xa), m(xb), m(xa)]
    np.testing.assert_array_equal(preds[0], preds[2])
    assert not any(np.shares_memory(p, q) for i, p in enumerate(preds) for q in preds[i + 1:])


def test_returned_grad_input_is_never_overwritten(rng: np.random.Generator) -> None:
    m = _mlp()
    x = rng.standard_normal((8, 6)).astype(np.float32)
    m(x)
    g1 = m.backward(np.ones((8, 3), np.float32))
    assert g1 is not None
    keep = g1.copy()
    m(x[:4])
    g2 = m.backward(np.full((4, 3), 2.0, np.float32))
    np.testing.assert_array_equal(g1, keep)
    assert g2 is not None and not np.shares_memory(g1, g2)


def test_a_view_of_an_output_keeps_it(rng: np.random.Generator) -> None:
    m = nn.Sequential(nn.Linear(4, 4))
    x = rng.standard_normal((6, 4)).astype(np.float32)
    head = m(x)[:2]  # the output itself is dropped, the view keeps its memory
    keep = head.copy()
    m(rng.standard_normal((6, 4)).astype(np.float32))
    np.testing.assert_array_equal(head, keep)


def test_dropped_outputs_are_reused(rng: np.random.Generator) -> None:
    m = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    x = rng.standard_normal((6, 4)).astype(np.float32)
    first = m(x).__array_interface__["data"][0]
    assert m(x).__array_interface__["data"][0] == first  # nobody kept the first: reused


def test_eval_forward_between_forward_and_backward_leaves_the_gradients(rng: np.random.Generator) -> None:
    x = rng.standard_normal((10, 6)).astype(np.float32)
    xb = rng.standard_normal((7, 6)).astype(np.float32)
    y = rng.integers(0, 3, 10)
    ref, m = _mlp(), _mlp()
    lf = nn.CrossEntropyLoss()
    lf(ref(x), y)
    ref.backward(lf.backward())
    lf(m(x), y)
    g = lf.backward()
    m.eval()
    pred = m(xb)
    m.train()
    m.backward(g)
    np.testing.assert_array_equal(_grads(m), _grads(ref))
    for a, b in zip(m.buffers(), ref.buffers(), strict=True):
        np.testing.assert_array_equal(a, b)  # the eval forward touched no running statistics
    ref.eval()
    np.testing.assert_array_equal(pred, ref(xb))


def test_backward_after_an_eval_forward_still_works(rng: np.random.Generator) -> None:
    # PyTorch backpropagates through eval-mode forwards too (frozen BatchNorm statistics)
    x = rng.standard_normal((10, 6)).astype(np.float32)
    m = _mlp()
    tm = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(),
                             torch.nn.Linear(16, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in m.state_dict().items()})
    m.eval()
    tm.eval()
    out = m(x)
    g = np.ones_like(out)
    dx = m.backward(g)
    tx = torch.from_numpy(x).requires_grad_()
    tm(tx).backward(torch.from_numpy(g))
    assert dx is not None and tx.grad is not None
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_second_training_forward_makes_backward_raise(rng: np.random.Generator) -> None:
    m = _mlp()
    x = rng.standard_normal((8, 6)).astype(np.float32)
    m(x)
    m(x[:4])
    with pytest.raises(RuntimeError, match="forward ran 2 times since the last backward"):
        m.backward(np.ones((4, 3), np.float32))
    m(x)  # and then the model works again
    assert m.backward(np.ones((8, 3), np.float32)) is not None


def test_feeding_the_output_back_in_raises() -> None:
    sg.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    x = np.ones((3, 4), np.float32)
    z = m(m(x))
    with pytest.raises(RuntimeError, match="forward ran 2 times"):
        m.backward(np.ones_like(z))


@pytest.mark.parametrize("shared", ["linear", "relu", "nested"])
def test_a_module_used_twice_is_refused_when_the_model_is_built(shared: str) -> None:
    lin, relu = nn.Linear(4, 4), nn.ReLU()
    with pytest.raises(ValueError, match=r"is the same object as the one at '0'.*once per model"):
        if shared == "linear":
            nn.Sequential(lin, nn.ReLU(), lin)
        elif shared == "relu":
            nn.Sequential(relu, nn.Linear(4, 4), relu)
        else:
            nn.Sequential(lin, nn.Residual(nn.Sequential(lin)))


def test_shared_parameter_ties_weights() -> None:
    a, b = nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False)
    b.weight = a.weight
    m = nn.Sequential(a, nn.Tanh(), b)
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    tw = torch.from_numpy(a.weight.data.copy()).requires_grad_()
    tx = torch.from_numpy(x)
    (torch.tanh(tx @ tw.T) @ tw.T).sum().backward()
    m.zero_grad()
    m.backward(np.ones_like(m(x)))
    assert tw.grad is not None and a.weight.grad is not None
    np.testing.assert_allclose(a.weight.grad, tw.grad.numpy(), rtol=1e-5, atol=1e-6)


class Scale(nn.Module):
    """A custom layer as a user writes it: forward and backward, one parameter."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.s = nn.Parameter(np.full(n, 2.0, np.float32))

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        return x * self.s.data

    def backward(self, grad_output: np.ndarray) -> np.ndarray:  # type: ignore[override]
        self.s.accumulate_grad((grad_output * self.x).sum(0))
        return grad_output * self.s.data


def test_custom_layer_overriding_backward_works_in_a_sequential() -> None:
    sg.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 4), Scale(4), nn.Linear(4, 2))
    x = np.linspace(-1, 1, 15, dtype=np.float32).reshape(5, 3)
    tm = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    tm[0].load_state_dict({k: torch.from_numpy(v) for k, v in m[0].state_dict().items()})
    tm[1].load_state_dict({k: torch.from_numpy(v) for k, v in m[2].state_dict().items()})
    ts = torch.full((4,), 2.0, requires_grad=True)
    for _ in range(2):  # the second backward accumulates, as PyTorch's
        tm[1](tm[0](torch.from_numpy(x)) * ts).sum().backward()
        m.backward(np.ones_like(m(x)))
    assert ts.grad is not None and m[1].s.grad is not None
    np.testing.assert_allclose(m[1].s.grad, ts.grad.numpy(), rtol=1e-5, atol=1e-5)
    assert tm[0].weight.grad is not None
    np.testing.assert_allclose(m[0].weight.grad, tm[0].weight.grad.numpy(), rtol=1e-5, atol=1e-5)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 8), nn.ReLU())
        self.head = nn.Linear(8, 2)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.head(self.body(x))


class Branchy(Net):
    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.head(self.body(x)) + self.head(self.body(x))


def test_module_calling_its_children_in_a_chain_gets_a_backward() -> None:
    sg.manual_seed(0)
    net = Net()
    ref = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    ref[0].load_state_dict(net.body[0].state_dict())
    ref[2].load_state_dict(net.head.state_dict())
    x = np.linspace(-2, 2, 12, dtype=np.float32).reshape(4, 3)
    g = np.arange(8, dtype=np.float32).reshape(4, 2)
    np.testing.assert_array_equal(net(x), ref(x))
    np.testing.assert_array_equal(net.backward(g), ref.backward(g))
    np.testing.assert_array_equal(net.head.weight.grad, ref[2].weight.grad)
    np.testing.assert_array_equal(net.body[0].weight.grad, ref[0].weight.grad)


def test_module_with_a_graph_it_does_not_describe_says_what_to_implement() -> None:
    net = Branchy()
    net(np.ones((2, 3), np.float32))
    with pytest.raises(NotImplementedError) as e:
        net.backward(np.ones((2, 2), np.float32))
    msg = str(e.value)
    assert "Branchy does not implement backward: define Branchy.backward(self, grad_output)" in msg
    assert "Linear(3 -> 8)" not in msg  # names the class, not the whole model


def test_parallel_eval_forwards_from_threads_match_the_reference(rng: np.random.Generator) -> None:
    sg.manual_seed(0)  # wide enough that the kernels (which release the GIL) overlap
    m = nn.Sequential(nn.Linear(64, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, 64))
    m.eval()
    xs = [rng.standard_normal((128, 64)).astype(np.float32) for _ in range(4)]
    want = [m(x).copy() for x in xs]
    bad: list[int] = []

    def work(t: int) -> None:
        for i in range(100):
            k = (i + t) % 4
            if not np.array_equal(m(xs[k]), want[k]):
                bad.append(k)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bad == []


def test_training_from_two_threads_is_never_silently_wrong(rng: np.random.Generator) -> None:
    # Each thread: forward, backward on a shared model. Every backward that goes through must
    # have used its own forward (the gradients equal a single-threaded replay), else it raises.
    m = _mlp()
    xs = [rng.standard_normal((16, 6)).astype(np.float32) for _ in range(2)]
    g = np.ones((16, 3), np.float32)
    ref = []
    for x in xs:
        r = _mlp()
        r(x)
        r.backward(g, input_grad=False)
        ref.append(_grads(r))
    results: list[tuple[int, str]] = []
    gate = threading.Lock()

    def work(t: int) -> None:
        for _ in range(40):
            try:
                with gate:  # one step = zero_grad, forward, backward, read: atomic per thread
                    m.zero_grad()
                    m(xs[t])
                    m.backward(g, input_grad=False)
                    ok = np.array_equal(_grads(m), ref[t])
                results.append((t, "ok" if ok else "wrong"))
            except RuntimeError:
                results.append((t, "raised"))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ("wrong" not in {r for _, r in results}) and len(results) == 80
    # Without the gate, interleaved forwards are caught instead of mixing caches:
    raised = 0
    for _ in range(3):
        m(xs[0])
        m(xs[1])  # "the other thread's" forward
        try:
            m.backward(g, input_grad=False)
        except RuntimeError:
            raised += 1
    assert raised == 3


def test_nan_batch_leaves_running_statistics_as_they_were(rng: np.random.Generator) -> None:
    m = _mlp()
    opt = optim.Adam(m.parameters(), lr=1e-2)
    lf = nn.CrossEntropyLoss()
    x = rng.standard_normal((16, 6)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    for _ in range(2):
        opt.zero_grad()
        lf(m(x), y)
        m.backward(lf.backward(), input_grad=False)
        opt.step()
    before = [b.copy() for b in m.buffers()]
    bad = x.copy()
    bad[3, 2] = np.nan
    opt.zero_grad()
    lf(m(bad), y)
    m.backward(lf.backward(), input_grad=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt.step()
    assert opt.skipped_steps == 1
    for a, b in zip(m.buffers(), before, strict=True):
        np.testing.assert_array_equal(a, b)
    m.eval()
    assert np.isfinite(m(x)).all()
    m.train()
    opt.zero_grad()  # and a good step afterwards updates them again
    lf(m(x), y)
    m.backward(lf.backward(), input_grad=False)
    opt.step()
    assert not np.array_equal(m[1].running_mean, before[0])


def test_nan_batch_in_fit_leaves_running_statistics(rng: np.random.Generator) -> None:
    x = rng.standard_normal((64, 6)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    x[40, 0] = np.inf  # in the third batch of 16
    m = _mlp()
    opt = optim.SGD(m.parameters(), lr=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sg.fit(m, nn.CrossEntropyLoss(), opt, x, y, epochs=1, batch_size=16, shuffle=False,
               verbose=0)
    assert opt.skipped_steps == 1
    assert all(np.isfinite(b).all() for b in m.buffers())
    assert int(m[1].num_batches_tracked) == 3  # the skipped batch is not counted either


def test_deepcopy_gives_an_independent_model_with_its_own_lock(rng: np.random.Generator) -> None:
    import copy

    m = _mlp()
    x = rng.standard_normal((8, 6)).astype(np.float32)
    m.eval()
    c = copy.deepcopy(m)
    assert c._lock is not m._lock and c[0]._lock is not m[0]._lock
    np.testing.assert_array_equal(c(x), m(x))
    c[0].weight.data[...] = 0.0
    assert not np.array_equal(c(x), m(x))


def test_a_deepcopy_trains_like_the_original(rng: np.random.Generator) -> None:
    import copy

    x = rng.standard_normal((16, 6)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    m = _mlp()
    c = copy.deepcopy(m)
    st = c.flat_storage
    assert st is not None and all(np.shares_memory(p.data, st.data) for p in c.parameters())
    for model in (m, c):
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        lf = nn.CrossEntropyLoss()
        for _ in range(3):
            opt.zero_grad()
            lf(model(x), y)
            model.backward(lf.backward(), input_grad=False)
            opt.step()
    for (k, a), (_, b) in zip(m.state_dict().items(), c.state_dict().items(), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=k)
    assert not np.array_equal(m[0].weight.data, _mlp()[0].weight.data)  # it did train
