"""steadygrad loads its kernels with a short OpenMP spin (steadygrad._omp): set only while
libgomp loads, so the process environment (child processes, torch's and scikit-learn's own
OpenMP runtimes) is left as it was, and a user's own setting wins."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SCRIPT = ("import json, os, steadygrad as sg; "
          "print(json.dumps([sg._omp.policy, os.environ.get('GOMP_SPINCOUNT'), "
          "os.environ.get('OMP_WAIT_POLICY')]))")


def _run(env: dict[str, str]) -> list[str | None]:
    base = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env={**base, **env}, check=True,
                         capture_output=True, text=True, timeout=120).stdout
    result: list[str | None] = json.loads(out.strip().splitlines()[-1])
    return result


def test_default_spin_is_set_for_the_load_only() -> None:
    policy, spin, wait = _run({})
    assert policy == "GOMP_SPINCOUNT=1000 (steadygrad's default)"
    assert spin is None and wait is None  # taken out of the environment again


@pytest.mark.parametrize("env", [{"OMP_WAIT_POLICY": "active"}, {"GOMP_SPINCOUNT": "50000"}])
def test_the_users_setting_wins(env: dict[str, str]) -> None:
    policy, spin, wait = _run(env)
    (key, value), = env.items()
    assert policy == f"the environment's {key}={value}"
    assert {"GOMP_SPINCOUNT": spin, "OMP_WAIT_POLICY": wait}[key] == value  # untouched
