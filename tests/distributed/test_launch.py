"""Separate MPI jobs started from the test (on rank 0; rank 1 waits at a barrier): a rank that
raises brings the whole job down with its message, and a 2-rank DDP step runs across a real
network (each rank in its own network namespace, joined by a veth pair, MPICH over TCP)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import uuid

import pytest
from mpi_support import agree, launch_env

import steadygrad as sg
import steadygrad.distributed as dist

# where the steadygrad under test was imported from (the checkout's python/, or site-packages)
PYTHONPATH = os.path.dirname(os.path.dirname(sg.__file__))


def _on_rank0(fn):  # type: ignore[no-untyped-def]
    """Run fn() on rank 0 only; every rank returns its (collective) verdict and reason."""
    result: tuple[bool, str] = (True, "")
    if dist.rank() == 0:
        try:
            result = fn()
        except Exception as e:  # a failed launch fails the test on both ranks
            result = (False, f"{type(e).__name__}: {e}")
    dist.barrier()
    return agree(result[0]), result[1]


def _job(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """`mpiexec *args` as a job of its own, with this checkout's steadygrad."""
    env = launch_env()
    env["PYTHONPATH"] = PYTHONPATH
    return subprocess.run(["mpiexec", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


FAILING = """
    import steadygrad.distributed as dist
    dist.init()
    if dist.rank() == 1:
        raise RuntimeError("rank 1 gave up")
    dist.barrier()  # rank 0 would wait here forever
    print("rank 0 got past the barrier")
"""


def test_a_rank_that_raises_aborts_the_whole_job():
    """mpiexec python (no `-m mpi4py`): dist.init()'s excepthook prints rank 1's traceback
    and aborts, so rank 0, blocked in a barrier, ends too: the job fails within the timeout
    with rank 1's message, and rank 0 never got past the barrier."""
    def run() -> tuple[bool, str]:
        if shutil.which("mpiexec") is None:
            return False, "mpiexec not found"
        p = _job(["-n", "2", sys.executable, "-c", textwrap.dedent(FAILING)], timeout=60)
        out = p.stdout + p.stderr
        ok = p.returncode != 0 and "rank 1 gave up" in out and "got past" not in out
        return ok, f"rc={p.returncode}: {out[-2000:]}"

    ok, why = _on_rank0(run)
    assert ok, why


ACROSS = """
import sys
import numpy as np
import steadygrad as sg
import steadygrad.distributed as dist
from steadygrad import nn
dist.init()
r = dist.rank()
sg.manual_seed(r)  # different values: the wrap broadcasts rank 0's
model = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 4))
ddp = dist.DistributedDataParallel(model)
x = np.random.default_rng(r).standard_normal((8, 512)).astype(np.float32)
loss = nn.MSELoss()
loss(ddp(x), np.zeros((8, 4), np.float32))
ddp.backward(loss.backward())
g = model.flat_storage.grad.copy()
both = g.copy()
dist.communicator().allreduce_(both)  # identical on both ranks: the sum is twice each
print(f"rank {r} equal={np.array_equal(both, 2 * g)} nbytes={g.nbytes}", flush=True)
"""


def _ns(*cmd: str) -> None:
    subprocess.run(["ip", *cmd], check=True, capture_output=True, timeout=30)


def _rx_bytes(ns: str) -> int:
    out = subprocess.run(["ip", "netns", "exec", ns, "cat", "/sys/class/net/sg0/statistics/rx_bytes"],
                         check=True, capture_output=True, text=True, timeout=30).stdout
    return int(out)


def _netns_available() -> str | None:
    if shutil.which("ip") is None:
        return "iproute2's ip is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"sgprobe{uuid.uuid4().hex[:6]}"
    try:
        _ns("netns", "add", probe)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        return f"ip netns add failed: {getattr(e, 'stderr', e)!r}"
    _ns("netns", "del", probe)
    return None


def test_two_ranks_train_across_a_veth_pair_between_network_namespaces():
    """Rank 0 in one namespace, rank 1 in another, joined only by a veth pair (10.231.x.1 and
    .2, each end named sg0): MPICH treats them as separate hosts (MPIR_CVAR_NOLOCAL, no
    shared memory) and talks TCP on sg0. The DDP step's gradients agree on both ranks, and at
    least the gradient buffer's size went through the veth (its rx_bytes)."""
    why = None
    if dist.rank() == 0:
        why = _netns_available()
    flag = agree(why is None)
    if not flag:
        dist.barrier()
        pytest.skip(why or "network namespaces are unavailable on rank 0")
    tag = uuid.uuid4().hex[:6]
    names = (f"sgA{tag}", f"sgB{tag}")

    def run() -> tuple[bool, str]:
        made: list[str] = []
        try:
            for ns in names:
                _ns("netns", "add", ns)
                made.append(ns)
            _ns("link", "add", f"va{tag}", "type", "veth", "peer", "name", f"vb{tag}")
            for i, (ns, dev) in enumerate(zip(names, (f"va{tag}", f"vb{tag}"), strict=True)):
                _ns("link", "set", dev, "netns", ns)
                _ns("-n", ns, "link", "set", dev, "name", "sg0")
                _ns("-n", ns, "addr", "add", f"10.231.{int(tag[:2], 16)}.{i + 1}/24", "dev", "sg0")
                _ns("-n", ns, "link", "set", "sg0", "up")
                _ns("-n", ns, "link", "set", "lo", "up")
            before = _rx_bytes(names[0])
            env_args = ["env", "MPIR_CVAR_NOLOCAL=1", "UCX_NET_DEVICES=sg0", "UCX_TLS=tcp",
                        "FI_PROVIDER=tcp", "FI_TCP_IFACE=sg0"]
            args = []
            for i, ns in enumerate(names):
                args += [*([":"] if i else []), "-n", "1", "ip", "netns", "exec", ns, *env_args,
                         sys.executable, "-c", ACROSS]
            p = _job(args, timeout=120)
            moved = _rx_bytes(names[0]) - before
            out = p.stdout + p.stderr
            ok = (p.returncode == 0 and out.count("equal=True") == 2
                  and moved >= (512 * 512 + 512 + 512 * 4 + 4) * 4)
            return ok, f"rc={p.returncode} rx_bytes +{moved}: {out[-2000:]}"
        finally:
            for ns in made:  # deleting a namespace deletes its end of the veth, and the pair
                subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)

    ok, why = _on_rank0(run)
    assert ok, why


def test_the_distributed_benchmark_runs_a_two_rank_step():
    """steadygrad-bench distributed's launcher on the tiny configuration, 2 ranks x 1
    thread: rank 0 reports positive step times, the allreduce of the gradient buffer
    (its size: the tiny MLP's parameters, padded) and the wait after the backward."""
    def run() -> tuple[bool, str]:
        from steadygrad.bench import distributed
        from steadygrad.bench.models import CONFIGS
        from steadygrad.bench.suite import Plan

        saved, job = dict(os.environ), launch_env()
        os.environ.clear()
        os.environ.update(job)  # the launched job is one of its own
        try:
            r = distributed.launch("T", "steadygrad", "2x1", Plan(repeat=2), timeout=120)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        cfg = CONFIGS["T"]
        ok = (all(s > 0 for s in r["samples"]) and r["allreduce_s"] > 0 and r["wait_s"] >= 0
              and r["grad_bytes"] >= 4 * cfg.params)
        return ok, str(r)

    ok, why = _on_rank0(run)
    assert ok, why
