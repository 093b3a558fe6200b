"""One rank of the distributed suite: `[mpiexec -n R] python -m steadygrad.bench.dist_rank
'<json task>'` trains one configuration's step with its share of the global batch (steadygrad's
DistributedDataParallel, or torch's DDP over gloo as the peer) and rank 0 prints one JSON line
with the timing samples. Every rank calls the step the same number of times (rank 0 decides
how many per sample from its warm-up), so the collectives stay matched; one process
(no mpiexec) is the same step undistributed."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from steadygrad.bench.models import CONFIGS, build_steadygrad, build_torch, make_data

Sync = Callable[[int], int]  # rank 0's value, on every rank (and a barrier)


def _samples(step: Callable[[], object], plan: dict[str, Any], sync: Sync) -> list[float]:
    for _ in range(int(plan["warmup"])):
        step()
    t0 = time.perf_counter()
    step()
    calls = sync(max(1, math.ceil(float(plan["min_time"]) / max(time.perf_counter() - t0, 1e-9))))
    out = []
    for _ in range(-(-int(plan["repeat"]) // int(plan["rounds"]))):
        sync(0)
        t0 = time.perf_counter()
        for _ in range(calls):
            step()
        out.append((time.perf_counter() - t0) / calls)
    return out


def _steadygrad(cfg: Any, x: np.ndarray, y: np.ndarray, plan: dict[str, Any]) -> dict[str, Any]:
    import steadygrad.distributed as dist

    comm = dist.init()
    wrapped: list[Any] = []

    def wrap(model: Any) -> Any:
        wrapped.append(dist.DistributedDataParallel(model))
        return wrapped[0]

    # the compiled step (what sg.fit runs), of the DDP model on several ranks
    built = build_steadygrad(cfg, x, y, wrap if comm.size > 1 else None, compiled=True)

    def sync(v: int) -> int:
        buf = np.array([v], np.int64)
        comm.bcast_(buf)
        return int(buf[0])

    result: dict[str, Any] = {"samples": _samples(built.step, plan, sync)}
    if comm.size > 1:
        ddp = wrapped[0]
        waits = []
        for _ in range(10):
            built.step()
            waits.append(ddp.last_wait_s)
        grad = ddp.module.flat_storage.grad.copy()
        result["wait_s"] = float(np.median(waits))
        result["grad_bytes"] = grad.nbytes
        result["allreduce_s"] = _allreduce_s(comm, grad)
        result["allreduce_small_s"] = _allreduce_s(comm, np.zeros(1, np.float32))
    return result


def _allreduce_s(comm: Any, buf: np.ndarray, times: int = 15) -> float:
    out = []
    for _ in range(times):
        comm.barrier()
        t0 = time.perf_counter()
        comm.allreduce_(buf)
        out.append(time.perf_counter() - t0)
    return float(np.median(out))


def _torch(cfg: Any, x: np.ndarray, y: np.ndarray, plan: dict[str, Any], ranks: int,
           rank: int) -> dict[str, Any]:
    import torch
    import torch.distributed as tdist

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    wrap = None
    if ranks > 1:
        tdist.init_process_group("gloo", rank=rank, world_size=ranks)
        wrap = torch.nn.parallel.DistributedDataParallel
    built = build_torch(cfg, x, y, wrap)

    def sync(v: int) -> int:
        if ranks == 1:
            return v
        t = torch.tensor([v], dtype=torch.int64)
        tdist.broadcast(t, 0)
        return int(t.item())

    try:
        return {"samples": _samples(built.step, plan, sync)}
    finally:
        if ranks > 1:
            tdist.destroy_process_group()


def main(task: dict[str, Any]) -> None:
    ranks = int(os.environ.get("PMI_SIZE", os.environ.get("OMPI_COMM_WORLD_SIZE", "1")))
    rank = int(os.environ.get("PMI_RANK", os.environ.get("OMPI_COMM_WORLD_RANK", "0")))
    cfg = CONFIGS[task["config"]]
    x, y = make_data(cfg)
    share = slice(cfg.batch * rank // ranks, cfg.batch * (rank + 1) // ranks)
    x, y = np.ascontiguousarray(x[share]), y[share]
    if task["framework"] == "steadygrad":
        import steadygrad as sg

        sg.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        result = _steadygrad(cfg, x, y, task["plan"])
    else:
        result = _torch(cfg, x, y, task["plan"], ranks, rank)
    if rank == 0:
        print(json.dumps({"result": result}), flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
