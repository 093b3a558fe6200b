"""DistributedDataParallel: data parallelism over the flat gradient buffer. Every rank holds the
whole model; each trains on its own part of the batch, and `backward` averages the gradients
across ranks before it returns, so the optimizer (clip, non-finite skip, step) runs locally
and identically everywhere.

The flat buffer is cut into contiguous buckets of whole parameters, from its end (the last
layer's gradients are written first). Module._on_grads_written tells the bucketing when a
layer's backward has returned; a bucket's non-blocking allreduce starts as soon as every layer
writing into it has, while the backward of the layers before it runs. The backward waits for
them all and divides by the number of ranks before it returns. Between the first bucket and
that wait a helper thread (progress.py) tests the requests, so MPI moves them on while the
layers compute instead of in the final wait."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from steadygrad.distributed.comm import Communicator, communicator
from steadygrad.distributed.progress import Progress
from steadygrad.nn.module import Module
from steadygrad.nn.parameter import FlatStorage

__all__ = ["DistributedDataParallel"]


class _Buckets:
    """The buckets of one flat gradient buffer and which layers write each (a tied weight's
    bucket waits for all of its layers)."""

    def __init__(self, storage: FlatStorage, model: Module, cap: int) -> None:
        self.storage = storage
        owners: dict[int, list[Module]] = {}
        for m in model.modules():
            for p in m._parameters.values():
                if p is not None:
                    owners.setdefault(id(p), []).append(m)
        ranges: list[tuple[int, int, list[Module]]] = []
        hi, writers = storage.numel, list[Module]()
        for i in range(len(storage.params) - 1, -1, -1):
            writers += owners.get(id(storage.params[i]), [])
            lo = storage.offsets[i]
            if hi - lo >= cap or i == 0:
                ranges.append((0 if i == 0 else lo, hi, writers))
                hi, writers = lo, []
        self.ranges = [(lo, hi) for lo, hi, _ in ranges]
        self.writers = [len({id(m) for m in w}) for _, _, w in ranges]
        self.of_module: dict[int, list[int]] = {}
        for b, (_, _, w) in enumerate(ranges):
            for m in {id(m): m for m in w}.values():
                self.of_module.setdefault(id(m), []).append(b)
        self.modules = list({id(m): m for _, _, w in ranges for m in w}.values())


class DistributedDataParallel(Module):
    """Wraps `module` for data-parallel training on every rank of `communicator` (default:
    steadygrad.distributed.init()'s). At wrap time rank 0's parameters and buffers are
    broadcast to every rank. `backward` averages the gradients across ranks before returning,
    in buckets of about `bucket_cap_mb` MB of the flat gradient buffer, each reduced with a
    non-blocking allreduce started as soon as the layers writing it have run their backward.
    With broadcast_buffers (torch's default) every training forward first copies rank 0's
    buffers (BatchNorm's running statistics) to the others; SyncBatchNorm keeps them equal by
    itself. forward, state_dict, load_state_dict and the names of parameters and layers are
    the wrapped module's: a checkpoint holds its keys (no "module." prefix, unlike torch), so
    it loads into the bare model too.
    progress_thread (default True): a helper thread tests the allreduces in flight while the
    backward runs (see steadygrad.distributed.progress), where the communicator allows it
    (`threaded_progress`: MPI_THREAD_MULTIPLE); False, or a communicator without it, tests
    them only between layers.
    `last_wait_s`: seconds the last backward waited for communication after its layers were
    done (the part of the allreduce the backward did not hide). The parameters stay bitwise
    equal on every rank as long as the MPI library's allreduce hands every rank the same sum
    (MPICH's and Open MPI's algorithms do; tests/distributed checks it with a checksum)."""

    skips_grad_input = True  # input_grad=False is passed on to the wrapped module
    # steadygrad.compiled compiles `module` and runs before_forward() and averaging() around
    # its tape, whose layers call the same gradients-written hooks as the eager backward
    compiled_wrapper = True
    communicator: Communicator
    broadcast_buffers: bool
    last_wait_s: float
    _buckets: _Buckets | None
    # the backward in progress: the requests in flight by bucket, which buckets started, how
    # many of each bucket's layers are still to run, which layers ran
    _active: bool
    _order: list[int]  # the buckets in the order they started (their requests: _progress)
    _started: list[bool]
    _remaining: list[int]
    _done_layers: set[int]
    _staging: np.ndarray

    def __init__(self, module: Module, communicator: Communicator | None = None, *,
                 bucket_cap_mb: float = 1.0, broadcast_buffers: bool = True,
                 progress_thread: bool = True) -> None:
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError("DistributedDataParallel: module must be an nn.Module, got "
                            f"{type(module).__name__}")
        if isinstance(module, DistributedDataParallel):
            raise TypeError("DistributedDataParallel: module is already wrapped")
        if (isinstance(bucket_cap_mb, bool) or not isinstance(bucket_cap_mb, (int, float))
                or not bucket_cap_mb > 0):
            raise ValueError("DistributedDataParallel: bucket_cap_mb must be a positive number, "
                             f"got {bucket_cap_mb!r}")
        if not isinstance(progress_thread, bool):
            raise TypeError("DistributedDataParallel: progress_thread must be a bool, got "
                            f"{type(progress_thread).__name__}")
        params = module.parameters()
        storage = module.flat_storage
        if params and storage is None:
            raise ValueError("DistributedDataParallel: the module's parameters lie in several "
                             "flat buffers; build the model as one container (Sequential) so "
                             "they share one")
        comm = _resolve(communicator)
        self.module = module
        self.communicator, self.broadcast_buffers = comm, bool(broadcast_buffers)
        self.last_wait_s = 0.0
        self._active, self._order, self._started, self._remaining = False, [], [], []
        self._done_layers = set()
        self._staging = np.empty(0, np.uint8)  # the buffers' broadcast
        threaded = progress_thread and bool(getattr(comm, "threaded_progress", False))
        self._progress = Progress(threaded)
        cap = max(int(bucket_cap_mb * 2**20) // 4, 1)
        self._buckets = None if storage is None else _Buckets(storage, module, cap)
        if comm.size > 1:
            if storage is not None:
                comm.bcast_(storage.data)
            self._broadcast_buffers()
            if self._buckets is not None:
                for m in self._buckets.modules:
                    m._on_grads_written(self._layer_done)

    def _broadcast_buffers(self) -> None:
        """Rank 0's buffers to every rank in one broadcast (their bytes side by side in a
        staging array, as torch coalesces them): a BatchNorm model's training forward made one
        collective per running statistic."""
        bufs = self.module.buffers()
        if len(bufs) < 2 or not all(b.flags.c_contiguous for b in bufs):
            for buf in bufs:
                self.communicator.bcast_(buf)
            return
        raw = [b.reshape(-1).view(np.uint8) for b in bufs]
        total = sum(r.size for r in raw)
        if self._staging.size != total:
            self._staging = np.empty(total, np.uint8)
        staging, root = self._staging, self.communicator.rank == 0
        if root:
            np.concatenate(raw, out=staging)
        self.communicator.bcast_(staging)
        if not root:
            o = 0
            for r in raw:
                r[...] = staging[o:o + r.size]
                o += r.size

    # -- what the wrapped module does --------------------------------------------------
    def forward(self, x: np.ndarray) -> np.ndarray:
        self.before_forward()
        return self.module._run_forward(x)

    def before_forward(self) -> None:
        """What a training forward does first (eager or compiled): with broadcast_buffers,
        copy rank 0's buffers to every rank."""
        if self.training and self.broadcast_buffers and self.communicator.size > 1:
            self._broadcast_buffers()

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...] | None:
        return self.module.output_shape(shape)

    def state_dict(self) -> Any:
        return self.module.state_dict()

    def load_state_dict(self, state_dict: Any, strict: bool = True) -> Any:
        return self.module.load_state_dict(state_dict, strict)

    # The wrapped module's tree under its own names (parameters "0.weight", not
    # "module.0.weight"): state_dict keys, checkpoints and the layer names fit and the
    # diagnostics show are the bare model's. The wrapper itself comes first, named as the
    # wrapped module is.
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        yield prefix, self
        yield from self.module.named_modules(prefix)

    def named_children(self) -> list[tuple[str, Module]]:
        return self.module.named_children()

    def summary(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The wrapped module's summary (Module.summary): one rank's memory."""
        return self.module.summary(*args, **kwargs)

    def extra_repr(self) -> str:
        return f"world_size={self.communicator.size}"

    # -- the gradient average ----------------------------------------------------------
    def _backward(self, grad_output: np.ndarray, *, input_grad: bool = True) -> np.ndarray | None:
        with self.averaging():
            return self.module._run_backward(grad_output, input_grad)

    @contextlib.contextmanager
    def averaging(self) -> Iterator[None]:
        """Around one backward of the wrapped module's layers (eager, or compiled:
        steadygrad.compiled runs the layers' backward in one call that calls the same hooks):
        buckets start as their layers finish; on leaving, the rest start and every bucket is
        waited on and divided by the number of ranks. A backward that raises averages
        nothing (its rank aborts the job)."""
        buckets = self._buckets
        if self.communicator.size == 1 or buckets is None:
            yield
            return
        self._remaining = list(buckets.writers)
        self._started = [False] * len(buckets.ranges)
        self._done_layers, self._order, self._active = set(), [], True
        try:
            yield
        except BaseException:
            self._progress.end()  # a failed backward averages nothing (its rank aborts)
            self._order = []
            raise
        finally:
            self._active = False
        t0 = time.perf_counter()
        for b in range(len(buckets.ranges)):  # layers whose backward did not run
            if not self._started[b]:
                self._start(buckets, b)
        size = self.communicator.size
        # end(): the thread tests nothing more, the waits below are ours
        for b, req in zip(self._order, self._progress.end(), strict=True):
            req.wait()
            lo, hi = buckets.ranges[b]
            view = buckets.storage.grad[lo:hi]
            np.divide(view, size, out=view)
        self.last_wait_s = time.perf_counter() - t0
        self._order = []

    def _start(self, buckets: _Buckets, b: int) -> None:
        lo, hi = buckets.ranges[b]
        self._started[b] = True
        req = self.communicator.iallreduce_(buckets.storage.grad[lo:hi])
        self._order.append(b)
        # The last bucket to start has no backward left to hide behind: the final wait is
        # next, and waking the thread for it would only make the waits contend with it.
        self._progress.add(req, wake=self._active and not all(self._started))

    def _layer_done(self, m: Module) -> None:
        """A layer's backward returned: start each bucket all of whose layers have."""
        buckets = self._buckets
        if not self._active or buckets is None or id(m) in self._done_layers:
            return  # a backward not run by this wrapper, or the layer ran twice
        self._done_layers.add(id(m))
        for b in buckets.of_module.get(id(m), ()):
            self._remaining[b] -= 1
            if self._remaining[b] == 0 and not self._started[b]:
                self._start(buckets, b)
        if not self._progress.threaded:  # (else its thread does) MPI moves non-blocking
            self._progress.poll()  # collectives only inside MPI calls


def _resolve(comm: Communicator | None) -> Communicator:
    if comm is None:
        return communicator()
    if not isinstance(comm, Communicator):
        raise TypeError("communicator must implement steadygrad.distributed.Communicator, got "
                        f"{type(comm).__name__}")
    return comm
