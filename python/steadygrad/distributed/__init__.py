"""steadygrad.distributed: data-parallel training on MPI (`pip install "steadygrad[mpi]"`,
launched with `mpiexec -n 4 python train.py`; docs/distributed.md is the guide).

    import steadygrad.distributed as dist
    dist.init()                                   # joins the MPI job; one process without it
    model = dist.DistributedDataParallel(dist.convert_sync_batchnorm(model))
    sg.fit(model, loss, opt, x, y, epochs=5, batch_size=256)  # each rank: its shard

Imported only when asked for (`import steadygrad` does not), and mpi4py only by init() under
an MPI launcher. It sits on top of nn and optim next to training: it imports `_core` and `nn`;
`training` knows nothing of it (fit reads a wrapped model's `communicator`)."""

from __future__ import annotations

from steadygrad.distributed.comm import (
    Communicator,
    MPICommunicator,
    Request,
    SingleProcessCommunicator,
    barrier,
    communicator,
    init,
    is_main,
    rank,
    world_size,
)
from steadygrad.distributed.ddp import DistributedDataParallel
from steadygrad.distributed.syncbn import SyncBatchNorm, convert_sync_batchnorm

__all__ = ["Communicator", "DistributedDataParallel", "MPICommunicator", "Request",
           "SingleProcessCommunicator", "SyncBatchNorm", "barrier", "communicator",
           "convert_sync_batchnorm", "init", "is_main", "rank", "world_size"]
