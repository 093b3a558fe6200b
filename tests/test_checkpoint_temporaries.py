"""A save killed half way (SIGKILL, the OOM killer) leaves the old checkpoint intact and its
temporary file behind; the next save of the same target removes that temporary, and only it:
not those of a writer still running, of another target, or of unknown origin."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import steadygrad as sg
from steadygrad import nn
from steadygrad.checkpoint import safetensors as st

pytestmark = pytest.mark.skipif(os.name != "posix", reason="stale temporaries are judged by pid (POSIX)")

# Saves a 4 MB model to argv[1] and stops inside the fsync before the rename: the temporary is
# fully written and the old file untouched, as when a slow disk is caught by a SIGKILL.
WRITER = textwrap.dedent(
    """
    import os, sys, time
    import steadygrad as sg
    from steadygrad import nn

    def stuck(fd):
        print("writing", flush=True)
        time.sleep(300)

    os.fsync = stuck
    sg.manual_seed(5)
    sg.save(sys.argv[1], nn.Sequential(nn.Linear(1024, 1024)))
    """
)


def _start_writer(path: os.PathLike) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    ready, _, _ = select.select([proc.stdout], [], [], 120)
    if not ready or proc.stdout.readline().strip() != "writing":
        _kill(proc)
        pytest.fail("the writer subprocess did not reach its fsync")
    return proc


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)  # reaped: its pid no longer exists
    proc.stdout.close()


def _temporaries(directory: os.PathLike, target: str) -> list[str]:
    return sorted(n for n in os.listdir(directory) if n.startswith(f".{target}.") and n.endswith(".tmp"))


def _model(seed: int) -> nn.Module:
    sg.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 4))


def test_next_save_removes_only_temporaries_of_dead_writers_of_that_target(tmp_path):
    path = tmp_path / "c.safetensors"
    old = _model(1)
    sg.save(path, old)
    killed = _start_writer(path)
    live = _start_writer(path)
    try:
        _kill(killed)
        temps = _temporaries(tmp_path, "c.safetensors")
        assert len(temps) == 2 and all(os.path.getsize(tmp_path / t) > 4 << 20 for t in temps)
        dead_tmp = next(t for t in temps if f"-{killed.pid}." in t)
        live_tmp = next(t for t in temps if f"-{live.pid}." in t)

        reloaded = _model(9)
        sg.load(path, reloaded)  # the killed save left the old checkpoint whole
        np.testing.assert_array_equal(reloaded.state_dict()["0.weight"], old.state_dict()["0.weight"])

        host = st._host()
        others = [
            f".other.safetensors.{host}-{killed.pid}.abcd1234.tmp",  # another target, same dead pid
            f".c.safetensors.otherhost-{killed.pid}.abcd1234.tmp",  # another machine (shared disk)
            ".c.safetensors.abcd1234.tmp",  # no pid: nobody can tell whether its writer lives
            f".c.safetensors.{host}-{killed.pid}.tmp.bak",  # not a temporary's name
        ]
        for name in others:
            (tmp_path / name).write_bytes(b"x")

        new = _model(2)
        sg.save(path, new)
        assert not (tmp_path / dead_tmp).exists()
        assert (tmp_path / live_tmp).exists()  # its writer is still running
        for name in others:
            assert (tmp_path / name).exists(), name
        got = _model(9)
        sg.load(path, got)
        np.testing.assert_array_equal(got.state_dict()["0.weight"], new.state_dict()["0.weight"])
    finally:
        _kill(live)
    sg.save(path, new)  # now that writer is gone too
    assert not (tmp_path / live_tmp).exists()
    assert _temporaries(tmp_path, "c.safetensors") == sorted(n for n in others if n.endswith(".tmp")
                                                             and n.startswith(".c."))


def test_the_process_own_pid_counts_as_alive(tmp_path):
    """Another thread of this process may be writing the same target."""
    mine = tmp_path / f".c.safetensors.{st._host()}-{os.getpid()}.abcd1234.tmp"
    mine.write_bytes(b"x")
    sg.save(tmp_path / "c.safetensors", _model(0))
    assert mine.exists()
