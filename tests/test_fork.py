"""Forked children work after the parent ran 2-thread kernels: libgomp's thread pool does not
survive fork, so a pthread_atfork handler puts the child on 1 thread (a child used to block
forever in its first parallel region). Each scenario runs in its own interpreter under a
timeout, so a hang fails the test instead of hanging the suite."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TIME_BUDGET_S = 30
TIMEOUT_S = 120  # generous for a loaded 2-core machine; a hang never finishes at all

PRELUDE = textwrap.dedent("""
    import os, sys, traceback
    import numpy as np
    import steadygrad as sg
    from steadygrad import nn, optim

    N = 96  # 96^3 multiply-adds: over gemm's parallel cut, so 2 threads take part

    def operands(seed):
        r = np.random.default_rng(seed)
        return (r.standard_normal((N, N)).astype(np.float32),
                r.standard_normal((N, N)).astype(np.float32))

    def checked_gemm(seed):
        a, b = operands(seed)
        c = sg.ops.gemm(a, b)
        want = a.astype(np.float64) @ b.astype(np.float64)
        bound = 8 * np.finfo(np.float32).eps * N * (np.abs(a) @ np.abs(b))  # sum of |terms|
        assert np.all(np.abs(c - want) <= bound), "gemm result out of bounds"
        return float(np.abs(c - want).max())

    def train_step():
        sg.manual_seed(0)
        model = nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 3))
        opt = optim.SGD(model.parameters(), lr=0.1)
        loss_fn = nn.CrossEntropyLoss()
        r = np.random.default_rng(1)
        x = r.standard_normal((64, 16)).astype(np.float32)
        y = r.integers(0, 3, 64)
        losses = []
        for _ in range(3):
            opt.zero_grad()
            losses.append(loss_fn(model(x), y))
            model.backward(loss_fn.backward())
            opt.step()
        assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
        return losses

    sg.set_num_threads(2)
    assert sg.get_num_threads() == 2
    checked_gemm(0)  # the parent's 2-thread region creates libgomp's pool
""")

CHILD = PRELUDE + textwrap.dedent("""
    parent_losses = train_step()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            info = sg.cpu_info()
            assert sg.get_num_threads() == 1 and info["threads"] == 1, info
            assert info["forked_child"] is True, info
            checked_gemm(1)
            assert train_step() == parent_losses  # bitwise: 1 and 2 threads agree
            try:
                sg.set_num_threads(2)
                raise AssertionError("set_num_threads(2) was accepted in a forked child")
            except RuntimeError as e:
                assert "forked" in str(e) and "got n=2" in str(e) and "spawn" in str(e), e
            assert sg.get_num_threads() == 1
            sg.set_num_threads(1)  # the usual worker initialiser keeps working
            checked_gemm(2)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status
    assert sg.get_num_threads() == 2 and sg.cpu_info()["forked_child"] is False
    checked_gemm(3)  # the parent's pool is untouched
    print("ok")
""")

POOL = PRELUDE + textwrap.dedent("""
    import multiprocessing as mp

    def worker_threads(_):
        return sg.get_num_threads()

    if __name__ == "__main__":
        with mp.get_context("fork").Pool(2) as pool:
            errors = pool.map(checked_gemm, range(4))
            threads = pool.map(worker_threads, range(2))
        assert len(errors) == 4 and threads == [1, 1], (errors, threads)
        print("ok")
""")


THREAD = PRELUDE + textwrap.dedent("""
    import threading

    def fork_here():  # this thread's own libgomp pool (thread counts are per thread) then fork
        sg.set_num_threads(2)
        checked_gemm(4)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                assert sg.get_num_threads() == 1
                checked_gemm(5)
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        results.append(os.waitstatus_to_exitcode(status))

    results = []
    t = threading.Thread(target=fork_here)
    t.start()
    t.join()
    assert results == [0], results
    print("ok")
""")


def _run(script: str, tmp_path: Path, isa: str) -> None:
    path = tmp_path / "scenario.py"
    path.write_text(script)
    env = dict(os.environ, STEADYGRAD_ISA=isa)
    env.pop("OMP_NUM_THREADS", None)
    # own session: on a hang the whole group goes, forked children and pool workers included
    proc = subprocess.Popen([sys.executable, str(path)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"hung for {TIMEOUT_S} s (a forked child blocked?); output: {out!r} {err!r}")
    finally:
        # leave no straggler behind (e.g. a child still running after a failed assert)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0 and out.strip() == "ok", (proc.returncode, out, err)


def test_forked_child_runs_gemm_and_training(isa: str, tmp_path: Path) -> None:
    _run(CHILD, tmp_path, isa)


def test_fork_pool_workers_compute_gemm(isa: str, tmp_path: Path) -> None:
    _run(POOL, tmp_path, isa)


def test_fork_from_a_worker_thread(isa: str, tmp_path: Path) -> None:
    _run(THREAD, tmp_path, isa)
