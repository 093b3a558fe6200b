"""The communicator: a tiny protocol (rank, size, in-place allreduce and broadcast of numpy
buffers, barrier, abort) with a one-process default that does nothing and an MPI one over
mpi4py. `init()` picks one once per process: MPI when the process was started by an MPI
launcher (mpiexec), else the one-process default, so a script runs unchanged without MPI.
mpi4py is imported only then, inside `init()`."""

from __future__ import annotations

import os
import sys
import time
from types import TracebackType
from typing import Any, NoReturn, Protocol, runtime_checkable

import numpy as np

__all__ = ["Communicator", "MPICommunicator", "Request", "SingleProcessCommunicator",
           "barrier", "communicator", "init", "is_main", "rank", "world_size"]

# Set by the launchers in every rank's environment: MPICH/Hydra and Intel MPI (PMI_*), Open
# MPI (OMPI_*), PMIx-based ones (PMIX_RANK).
_LAUNCHER_ENV = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE")


@runtime_checkable
class Request(Protocol):
    """A non-blocking collective in flight."""

    def wait(self) -> None: ...
    def test(self) -> bool: ...


@runtime_checkable
class Communicator(Protocol):
    """What the distributed layer needs of a process group. Buffers are C-contiguous numpy
    arrays, reduced (summed) or broadcast in place; every rank calls each collective in the
    same order. Optional: `threaded_progress` (default False), True when requests may be
    tested from a thread other than the one that made them."""

    @property
    def rank(self) -> int: ...
    @property
    def size(self) -> int: ...
    def allreduce_(self, buf: np.ndarray) -> None: ...
    def iallreduce_(self, buf: np.ndarray) -> Request: ...
    def bcast_(self, buf: np.ndarray, root: int = 0) -> None: ...
    def barrier(self) -> None: ...
    def abort(self, code: int = 1) -> NoReturn: ...


class _Done:
    """A request that completed when it was made (one process: nothing to exchange)."""

    def wait(self) -> None:
        pass

    def test(self) -> bool:
        return True


class SingleProcessCommunicator:
    """One rank: every collective leaves the buffer as it is."""

    rank = 0
    size = 1

    def allreduce_(self, buf: np.ndarray) -> None:
        pass

    def iallreduce_(self, buf: np.ndarray) -> Request:
        return _Done()

    def bcast_(self, buf: np.ndarray, root: int = 0) -> None:
        pass

    def barrier(self) -> None:
        pass

    def abort(self, code: int = 1) -> NoReturn:
        os._exit(code)


def _contiguous(buf: np.ndarray, what: str) -> np.ndarray:
    if not isinstance(buf, np.ndarray) or not buf.flags.c_contiguous or not buf.flags.writeable:
        got = type(buf).__name__ if not isinstance(buf, np.ndarray) else "a non-contiguous or read-only array"
        raise ValueError(f"{what}: buf must be a writeable C-contiguous numpy array, got {got}")
    return buf


class _MPIRequest:
    def __init__(self, req: Any) -> None:
        self._req = req

    def wait(self) -> None:
        self._req.Wait()

    def test(self) -> bool:
        return bool(self._req.Test())


class MPICommunicator:
    """A Communicator over an mpi4py communicator (COMM_WORLD by default): buffer-protocol
    calls (Allreduce with MPI.IN_PLACE, Iallreduce, Bcast), no pickling. `threaded_progress`:
    whether MPI runs at MPI_THREAD_MULTIPLE (mpi4py's default), so that
    DistributedDataParallel's helper thread may test requests. `barrier()` waits
    on a non-blocking barrier with short sleeps, so a rank that waits long (for rank 0 writing
    a checkpoint) leaves its core to the others instead of spinning."""

    def __init__(self, comm: Any = None) -> None:
        from mpi4py import MPI  # only here: steadygrad never needs mpi4py otherwise

        self._mpi = MPI
        self._comm = MPI.COMM_WORLD if comm is None else comm
        self._rank, self._size = int(self._comm.Get_rank()), int(self._comm.Get_size())
        self.threaded_progress = MPI.Query_thread() == MPI.THREAD_MULTIPLE

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def size(self) -> int:
        return self._size

    @property
    def comm(self) -> Any:
        """The mpi4py communicator."""
        return self._comm

    def allreduce_(self, buf: np.ndarray) -> None:
        self._comm.Allreduce(self._mpi.IN_PLACE, _contiguous(buf, "allreduce_"), op=self._mpi.SUM)

    def iallreduce_(self, buf: np.ndarray) -> Request:
        buf = _contiguous(buf, "iallreduce_")
        return _MPIRequest(self._comm.Iallreduce(self._mpi.IN_PLACE, buf, op=self._mpi.SUM))

    def bcast_(self, buf: np.ndarray, root: int = 0) -> None:
        self._comm.Bcast(_contiguous(buf, "bcast_"), root=root)

    def barrier(self) -> None:
        req = self._comm.Ibarrier()
        while not req.Test():
            time.sleep(0.001)

    def abort(self, code: int = 1) -> NoReturn:
        self._comm.Abort(code)
        raise SystemExit(code)  # not reached: Abort ends every rank

    def __deepcopy__(self, memo: dict[int, Any]) -> MPICommunicator:
        return self  # a process group, not data: a copied model (copy.deepcopy) shares it


_current: Communicator | None = None


def launched_by_mpi() -> bool:
    """Whether an MPI launcher started this process (its environment says so), or mpi4py's
    MPI is already imported (`python -m mpi4py`, or the script imported it)."""
    return "mpi4py.MPI" in sys.modules or any(k in os.environ for k in _LAUNCHER_ENV)


def _abort_on_exception(comm: Communicator) -> None:
    """An uncaught exception on one rank prints its traceback, then aborts every rank (the
    others would otherwise wait forever in their next collective). `python -m mpi4py` does the
    same; this covers `mpiexec python train.py`."""
    previous = sys.excepthook

    def hook(kind: type[BaseException], err: BaseException, tb: TracebackType | None) -> None:
        previous(kind, err, tb)
        sys.stderr.flush()
        # The launcher forwards our output from a pipe on its own time; Abort tears its proxies
        # down, so without a pause the traceback was sometimes cut after its first line.
        time.sleep(0.5)
        comm.abort(1)

    sys.excepthook = hook


def init(comm: Communicator | None = None) -> Communicator:
    """Join the MPI job when launched by mpiexec (mpi4py's COMM_WORLD; ImportError naming the
    extra to install when mpi4py is missing), else a one-process no-op; returns the
    communicator, which rank(), world_size(), barrier() and the distributed classes then use.
    Called again it returns the same one; `comm` installs a Communicator of your own."""
    global _current
    if comm is not None:
        if not isinstance(comm, Communicator):
            raise TypeError("init: comm must implement steadygrad.distributed.Communicator "
                            f"(rank, size, allreduce_, iallreduce_, bcast_, barrier, abort), got "
                            f"{type(comm).__name__}")
        _current = comm
        return comm
    if _current is not None:
        return _current
    if launched_by_mpi():
        try:
            made: Communicator = MPICommunicator()
        except ImportError as e:
            raise ImportError("steadygrad.distributed.init: this process was started by an MPI "
                              "launcher but mpi4py is not installed; pip install "
                              "'steadygrad[mpi]' (mpi4py and MPICH)") from e
        if made.size > 1:
            _abort_on_exception(made)
    else:
        made = SingleProcessCommunicator()
    _current = made
    return made


def communicator() -> Communicator:
    """The communicator init() chose (calling init() first if nobody has)."""
    return _current if _current is not None else init()


def rank() -> int:
    """This process's rank in the job, 0 to world_size() - 1."""
    return communicator().rank


def world_size() -> int:
    """The number of processes in the job (1 without MPI)."""
    return communicator().size


def is_main() -> bool:
    """Whether this is rank 0, the one that prints and writes files."""
    return communicator().rank == 0


def barrier() -> None:
    """Wait until every rank has reached this call."""
    communicator().barrier()
