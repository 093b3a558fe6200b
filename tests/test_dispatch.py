"""ISA dispatch: the kernel tables follow the active path. The path is chosen when it is set (at
import from STEADYGRAD_ISA, or by sg.set_isa) and every family's table is re-pointed then, not
looked up per call. The GEMM table is the one whose choice shows from Python: the width NR of
its packed B micropanels sets the bytes _gemm_workspace_bytes reports."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import steadygrad as sg
from steadygrad import _core

ALL_ISAS = ("generic", "avx2", "avx512")
# The register tile's width per path (cpp/gemm/f32_gemm_ukernel__<isa>.cpp).
NR = {"generic": 8, "avx2": 16, "avx512": 32}
# One thread packs all n columns of B in ceil(n / NR) zero-padded micropanels of k x NR floats;
# n = 40 gives a different size on every path (40, 48 and 64 columns).
N, K = 40, 32


def _expected_b_bytes(isa: str) -> int:
    nr = NR[isa]
    return 4 * K * (-(-N // nr)) * nr


def _b_bytes() -> int:
    return int(_core._gemm_workspace_bytes(8, N, K, threads=1)["b_own"])


def test_set_isa_repoints_the_gemm_table_every_way() -> None:
    supported = list(sg.cpu_info()["isa_supported"])
    before = sg.get_isa()
    # every path after every other one (and after itself), so no switch leaves a table behind
    order = [a for a in supported for _ in supported] + supported[::-1]
    seen = []
    try:
        for name in order:
            sg.set_isa(name)
            seen.append((name, _b_bytes(), _expected_b_bytes(name)))
    finally:
        sg.set_isa(before)
    wrong = [s for s in seen if s[1] != s[2]]
    assert not wrong, f"(isa, B panel bytes, expected) after set_isa: {wrong} (all: {seen})"


@pytest.mark.parametrize("name", ALL_ISAS)
def test_env_isa_points_the_gemm_table_at_import(name: str) -> None:
    if name not in sg.cpu_info()["isa_supported"]:
        pytest.skip(f"ISA path '{name}' not supported by this CPU/OS")
    env = dict(os.environ, STEADYGRAD_ISA=name)
    code = ("from steadygrad import _core; "
            f"print(_core._gemm_workspace_bytes(8, {N}, {K}, threads=1)['b_own'])")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) == _expected_b_bytes(name), f"STEADYGRAD_ISA={name}: {r.stdout}"
