"""DistributedDataParallel's overlap of communication with the backward, in one process over a
fake 2-rank communicator (both ranks hold the same batch: the sum is twice the buffer, applied
when a request completes, so the average is the one-process gradient exactly). Two mechanisms:
the helper thread that tests requests while a layer computes (progress.py), and the compiled
step's tape calling each layer's gradients-written hook, so buckets start inside its one
backward call. The 2-rank runs under mpiexec are tests/distributed/."""

from __future__ import annotations

import threading
from typing import Any, NoReturn

import numpy as np
import pytest
from test_compiled_step import _eager_step

import steadygrad as sg
import steadygrad.distributed as dist
from steadygrad import nn, optim


class _Request:
    """Completes (doubles its buffer) at its `after`-th test, or at wait. Records the threads
    that tested it and whether two calls on it ever overlapped (MPI forbids that)."""

    def __init__(self, comm: _TwoRanks, buf: np.ndarray) -> None:
        self.comm, self.buf, self.done = comm, buf, False
        self.testers: list[int] = []
        self._busy = False

    def _enter(self) -> None:
        if self._busy:
            self.comm.overlaps += 1
        self._busy = True

    def _complete(self) -> None:
        if not self.done:
            self.buf *= 2.0
            self.done = True

    def test(self) -> bool:
        self._enter()
        try:
            self.testers.append(threading.get_ident())
            if threading.get_ident() != self.comm.main:
                self.comm.tested_by_helper.set()
            if len(self.testers) >= self.comm.after:
                self._complete()
            return self.done
        finally:
            self._busy = False

    def wait(self) -> None:
        self._enter()
        try:
            self._complete()
        finally:
            self._busy = False


class _TwoRanks:
    """A Communicator of 2 ranks whose other rank holds this one's gradients."""

    rank, size = 0, 2

    def __init__(self, threaded: bool, after: int = 3) -> None:
        self.threaded_progress = threaded
        self.after = after
        self.main = threading.get_ident()
        self.requests: list[_Request] = []
        self.overlaps = 0
        self.tested_by_helper = threading.Event()
        self.on_start: Any = None  # called with the buffer as each allreduce starts

    def allreduce_(self, buf: np.ndarray) -> None:
        buf *= 2.0

    def iallreduce_(self, buf: np.ndarray) -> _Request:
        if self.on_start is not None:
            self.on_start(buf)
        req = _Request(self, buf)
        self.requests.append(req)
        return req

    def bcast_(self, buf: np.ndarray, root: int = 0) -> None:
        pass

    def barrier(self) -> None:
        pass

    def abort(self, code: int = 1) -> NoReturn:
        raise SystemExit(code)


class _WaitForHelper(nn.Module):
    """An identity layer whose backward returns once the helper thread has tested a request
    (a long layer's GEMM, during which only that thread can move the allreduce on)."""

    def __init__(self, comm: _TwoRanks) -> None:
        super().__init__()
        self.comm = comm

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x

    def _backward(self, grad_output: np.ndarray, **plan: Any) -> np.ndarray:
        self.comm.tested_by_helper.wait(timeout=30.0)
        return grad_output


def _model() -> nn.Sequential:
    return nn.Sequential(nn.Linear(6, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 32),
                         nn.ReLU(), nn.Linear(32, 4))


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((16, 6)).astype(np.float32), rng.integers(0, 4, 16)


def _grads_of(model: nn.Module, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    loss = nn.CrossEntropyLoss()
    model.zero_grad()
    loss(model(x), y)
    model.backward(loss.backward(), input_grad=False)
    assert model.flat_storage is not None
    return model.flat_storage.grad.copy()


def test_the_helper_thread_tests_requests_while_a_layer_computes() -> None:
    """The first layer's backward blocks until a request has been tested from another thread:
    the backward completes only because the helper drove the allreduce of the later layers'
    bucket meanwhile. No request is ever tested by two threads at once, the helper stops
    before the final waits, and the averaged gradient is the one-process gradient."""
    x, y = _data()
    sg.manual_seed(0)
    alone = _TwoRanks(False)
    alone.tested_by_helper.set()  # one process: nothing to wait for
    bare = nn.Sequential(_WaitForHelper(alone), *_model())
    want = _grads_of(bare, x, y)
    comm = _TwoRanks(threaded=True)
    sg.manual_seed(0)
    model = nn.Sequential(_WaitForHelper(comm), *_model())
    ddp = dist.DistributedDataParallel(model, communicator=comm, bucket_cap_mb=1e-3)
    for step in range(3):
        comm.tested_by_helper.clear()
        got = _grads_of(ddp, x, y)
        assert comm.tested_by_helper.is_set(), f"step {step}: the helper tested nothing"
        assert np.array_equal(got, want)
    assert comm.overlaps == 0
    assert len(ddp._buckets.ranges) > 1
    helper = {t for r in comm.requests for t in r.testers} - {comm.main}
    assert len(helper) == 1  # one thread, reused from step to step
    progress = ddp._progress
    assert progress is not None and progress.tests > 0
    before = progress.tests
    threading.Event().wait(0.01)
    assert progress.tests == before  # idle between backwards


@pytest.mark.parametrize("threaded", [False, True], ids=["no-thread", "thread"])
def test_without_a_helper_thread_requests_are_tested_between_layers(threaded: bool) -> None:
    """progress_thread=False (or a communicator without threaded_progress): no thread is made;
    the backward tests the oldest request after each layer, on its own thread."""
    comm = _TwoRanks(threaded=threaded)
    x, y = _data()
    ddp = dist.DistributedDataParallel(_model(), communicator=comm, bucket_cap_mb=1e-3,
                                       progress_thread=False)
    assert ddp._progress._thread is None
    _grads_of(ddp, x, y)
    assert {t for r in comm.requests for t in r.testers} <= {comm.main}
    assert any(r.testers for r in comm.requests)


@pytest.mark.parametrize("threaded", [False, True], ids=["no-thread", "thread"])
def test_the_compiled_step_starts_buckets_inside_its_backward(threaded: bool) -> None:
    """A DDP model compiles (through the module it wraps); the tape calls the layers' hooks, so
    the last layers' bucket starts while the first layer's gradient is not yet written (its
    buffer still holds the NaN put there before the step). 3 Adam steps with clipping equal
    the eager DDP steps bit for bit."""
    x, y = _data(1)
    runs = []
    for compiled in (True, False):
        comm = _TwoRanks(threaded=threaded)
        sg.manual_seed(4)
        model = _model()
        ddp = dist.DistributedDataParallel(model, communicator=comm, bucket_cap_mb=1e-3)
        opt = optim.Adam(ddp.parameters(), lr=1e-2, max_grad_norm=1.0)
        loss_fn = nn.CrossEntropyLoss()
        step = sg.compile_step(ddp, loss_fn, opt)
        assert step.compiled, step.reason
        first = model[0].weight.grad_buffer
        unwritten: list[bool] = []
        comm.on_start = lambda buf, g=first, out=unwritten: out.append(bool(np.isnan(g).all()))
        losses = []
        for _ in range(3):
            first.fill(np.nan)
            losses.append(step(x, y) if compiled else _eager_step(ddp, opt, loss_fn, x, y))
        n = len(ddp._buckets.ranges)
        assert n > 1 and len(unwritten) == 3 * n
        assert unwritten[:n - 1] == [True] * (n - 1)  # all but the first layer's bucket
        assert comm.overlaps == 0
        storage = model.flat_storage
        assert storage is not None
        runs.append((losses, storage.data.copy(), storage.grad.copy(),
                     [b.copy() for b in model.buffers()]))
    (lc, pc, gc, bc), (le, pe, ge, be) = runs
    assert lc == le
    assert np.array_equal(pc, pe) and np.array_equal(gc, ge)
    assert all(np.array_equal(a, b) for a, b in zip(bc, be, strict=True))


def test_fit_compiles_a_ddp_model() -> None:
    """sg.fit's step for a DistributedDataParallel model is the compiled one (the wrapper is
    no longer a reason to run eagerly)."""
    from steadygrad.compiled import unsupported

    ddp = dist.DistributedDataParallel(_model(), communicator=_TwoRanks(False))
    assert unsupported(ddp) is None
    assert unsupported(dist.DistributedDataParallel(nn.Sequential(nn.LogSoftmax(1)),
                                                    communicator=_TwoRanks(False))) is not None


def test_a_hook_that_raises_in_the_compiled_backward_propagates_and_averages_nothing() -> None:
    """The tape calls a layer's hook with the GIL taken; an error there (an MPI failure, say)
    leaves the tape's call as the same exception, and DDP abandons that backward's requests."""
    comm = _TwoRanks(threaded=True)
    x, y = _data()
    ddp = dist.DistributedDataParallel(_model(), communicator=comm, bucket_cap_mb=1e-3)
    opt = optim.SGD(ddp.parameters(), lr=0.1)
    step = sg.compile_step(ddp, nn.CrossEntropyLoss(), opt)
    step(x, y)

    def fail(buf: np.ndarray) -> None:
        raise RuntimeError("the network went away")

    comm.on_start = fail
    with pytest.raises(RuntimeError, match="the network went away"):
        step(x, y)
    assert ddp._order == [] and not ddp._active
    comm.on_start = None
    step(x, y)  # the next step runs as usual


def test_a_forked_child_gets_a_fresh_progress_thread() -> None:
    """After a fork the child's Progress has a new lock and no thread (the parent's lock may
    have been held by its thread at the fork); it starts its own when a bucket comes."""
    import os

    from steadygrad.distributed.progress import Progress

    p = Progress(threaded=True)
    p.add(_Request(_TwoRanks(True, after=1), np.zeros(2, np.float32)), wake=True)
    p._lock.acquire()  # as if the thread were inside a test when the process forked
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if the lock is free and no thread is recorded
        ok = p._thread is None and p._lock.acquire(timeout=2.0)
        os._exit(0 if ok else 1)
    p._lock.release()
    p.end()
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
