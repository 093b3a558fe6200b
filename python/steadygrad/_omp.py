"""Loads `_core` with the OpenMP wait policy steadygrad's kernels want.

libgomp's default lets a thread that reaches a barrier spin for 300,000 rounds (milliseconds)
before it sleeps. On a quiet machine that only burns a core between parallel regions; on a
shared one it is a disaster: while one of our threads spins, the sibling it waits for may be
the one descheduled, and a 2-thread step measured 10-50x slower than the 1-thread step beside
another busy process (a 0.03 s scikit-learn-sized fit took 0.4-2.4 s). A short spin keeps the
quiet-machine speed (the regions of one compiled step follow each other within microseconds)
and lets a waiting thread give its core back under contention.

libgomp reads its settings once, when it is loaded, so this module sets GOMP_SPINCOUNT for that
moment only, imports `_core` (which loads libgomp), and takes the variable out of the
environment again, so that child processes and other libraries' OpenMP runtimes (torch and
scikit-learn ship their own) keep theirs. A user's OMP_WAIT_POLICY or GOMP_SPINCOUNT always
wins. `policy` says what happened. steadygrad's own `__init__` imports this module first.
"""

from __future__ import annotations

import os

SPIN_COUNT = 1000  # rounds of `pause` before a waiting thread sleeps: microseconds, not ms


def _loaded(name: str) -> bool:
    """Whether a shared library whose file name starts with `name` is already mapped."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            return any(f"/{name}" in line for line in f)
    except OSError:
        return False


_USER = {k: os.environ[k] for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in os.environ}
_EARLIER = not _USER and _loaded("libgomp.so")  # another extension brought libgomp already
_SET = not _USER and not _EARLIER
if _SET:
    os.environ["GOMP_SPINCOUNT"] = str(SPIN_COUNT)
try:
    from steadygrad import _core  # noqa: F401  (loads libgomp, which reads its settings now)
finally:
    if _SET:
        del os.environ["GOMP_SPINCOUNT"]

if _USER:
    policy = "the environment's " + ", ".join(f"{k}={v}" for k, v in _USER.items())
elif _EARLIER:
    policy = "libgomp's own (it was loaded before steadygrad)"
else:
    policy = f"GOMP_SPINCOUNT={SPIN_COUNT} (steadygrad's default)"
