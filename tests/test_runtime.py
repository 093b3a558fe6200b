"""Runtime controls: cpu_info, thread count, ISA selection (sg.set_isa and STEADYGRAD_ISA at
import, in fresh interpreters), the version, and `python -m steadygrad`."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import num_threads

import steadygrad as sg

TIME_BUDGET_S = 20
ALL_ISAS = ("generic", "avx2", "avx512")


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e.pop("STEADYGRAD_ISA", None)
    e.update(env)
    return subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, text=True,
                          timeout=120)


def test_cpu_info_keys_and_types():
    info = sg.cpu_info()
    types = {"isa": str, "isa_best": str, "isa_supported": list, "threads": int,
             "forked_child": bool, "cores": int, "cpu": str, "compiler": str, "openmp": int,
             "version": str, "bf16_path": str, "bf16_path_best": str,
             "bf16_paths_supported": list, "matmul_precision": str}
    assert set(types) == set(info), f"keys: {sorted(info)}, expected {sorted(types)}"
    # the stub's CpuInfo (what mypy checks callers against) names the same keys
    stub = (Path(sg.__file__).parent / "_core.pyi").read_text()
    body = stub.split("class CpuInfo(TypedDict):")[1].split("\n\n")[0]
    assert set(re.findall(r"^    (\w+):", body, flags=re.M)) == set(types), body
    for key, typ in types.items():
        assert isinstance(info[key], typ), f"cpu_info()[{key!r}] = {info[key]!r}, not {typ}"
    assert info["isa"] in info["isa_supported"] and info["isa_best"] in info["isa_supported"]
    assert "generic" in info["isa_supported"]
    assert set(info["isa_supported"]) <= set(ALL_ISAS)
    assert set(info["bf16_paths_supported"]) <= {"reference", "avx512bf16", "amx"}
    assert "reference" in info["bf16_paths_supported"]
    assert info["bf16_path"] in info["bf16_paths_supported"]
    assert info["bf16_path_best"] in info["bf16_paths_supported"]
    assert info["matmul_precision"] == sg.get_matmul_precision()
    assert info["threads"] >= 1 and info["cores"] >= 1
    assert info["version"] == sg.__version__ == importlib.metadata.version("steadygrad")


def test_num_threads_round_trip():
    with num_threads(1):
        assert sg.get_num_threads() == 1
        assert sg.cpu_info()["threads"] == 1
    with num_threads(3):
        assert sg.get_num_threads() == 3
    with num_threads(np.int64(2)):  # any integer type (__index__) is accepted
        assert sg.get_num_threads() == 2


@pytest.mark.parametrize("bad,exc,fragment", [
    (0, ValueError, "n must be an int in [1, 4096], got 0"),
    (-1, ValueError, "got -1"),
    (10**6, ValueError, "got 1000000"),
    (2**70, ValueError, "got 1180591620717411303424"),  # was a RuntimeError (cast overflow)
    (1.5, TypeError, "n must be an int >= 1, got float"),
    (True, TypeError, "got bool"),
    (np.bool_(True), TypeError, "got bool"),
    ("2", TypeError, "got str"),
    (None, TypeError, "got NoneType"),
])
def test_set_num_threads_rejects(bad, exc, fragment):
    before = sg.get_num_threads()
    with pytest.raises(exc, match="set_num_threads: ") as e:
        sg.set_num_threads(bad)
    assert fragment in str(e.value)
    assert sg.get_num_threads() == before


def test_set_isa_round_trip():
    before = sg.get_isa()
    try:
        for name in sg.cpu_info()["isa_supported"]:
            sg.set_isa(name)
            assert sg.get_isa() == name and sg.cpu_info()["isa"] == name
    finally:
        sg.set_isa(before)


def test_set_isa_unknown_name():
    before = sg.get_isa()
    for bad in ["sse4", "AVX2", ""]:
        with pytest.raises(ValueError, match=f"set_isa: unknown ISA '{bad}': expected one of"):
            sg.set_isa(bad)
    with pytest.raises(TypeError):
        sg.set_isa(2)
    assert sg.get_isa() == before


@pytest.mark.parametrize("name", ALL_ISAS)
def test_set_isa_unsupported(name):
    if name in sg.cpu_info()["isa_supported"]:
        pytest.skip(f"'{name}' is supported here: no unsupported-path error to check")
    before = sg.get_isa()
    with pytest.raises(ValueError, match=f"ISA '{name}' is not supported by this CPU/OS"):
        sg.set_isa(name)
    assert sg.get_isa() == before


@pytest.mark.parametrize("name", ALL_ISAS)
def test_env_selects_isa_at_import(name):
    if name not in sg.cpu_info()["isa_supported"]:
        pytest.skip(f"ISA path '{name}' not supported by this CPU/OS")
    r = _run("import steadygrad as sg; print(sg.get_isa(), sg.cpu_info()['isa'])",
             STEADYGRAD_ISA=name)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [name, name]


def test_env_empty_means_best():
    r = _run("import steadygrad as sg; print(sg.get_isa())", STEADYGRAD_ISA="")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == sg.cpu_info()["isa_best"]


@pytest.mark.parametrize("value,fragment", [
    ("bogus", "STEADYGRAD_ISA=bogus: unknown ISA 'bogus': expected one of 'generic', 'avx2', "
              "'avx512'"),
    ("AVX2", "unknown ISA 'AVX2'"),
    ("unsupported", "is not supported by this CPU/OS"),
])
def test_env_invalid_fails_import(value, fragment):
    if value == "unsupported":
        missing = [i for i in ALL_ISAS if i not in sg.cpu_info()["isa_supported"]]
        if not missing:
            pytest.skip("every ISA path is supported here: no unsupported value to try")
        value = missing[0]
    r = _run("import steadygrad", STEADYGRAD_ISA=value)
    assert r.returncode != 0, f"import succeeded with STEADYGRAD_ISA={value}"
    # pybind11 turns an exception raised while the module initialises into ImportError.
    assert "ImportError: STEADYGRAD_ISA=" in r.stderr and fragment in r.stderr, r.stderr


def test_omp_num_threads_sets_default():
    r = _run("import steadygrad as sg; print(sg.get_num_threads())", OMP_NUM_THREADS="1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1"


def test_python_m_steadygrad_runs():
    r = subprocess.run([sys.executable, "-m", "steadygrad"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"steadygrad {sg.__version__}" in r.stdout
    assert "GFLOP/s" in r.stdout and "isa" in r.stdout, r.stdout
    assert re.search(r"steadygrad \d+\.\d\dx (faster|slower)$", r.stdout.strip()), r.stdout


def test_python_m_steadygrad_help_version_and_no_gemm(capsys: pytest.CaptureFixture[str]) -> None:
    from steadygrad.__main__ import main

    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert text.startswith("usage: python -m steadygrad [-h] [--version] [--no-gemm]")
    for words in ("ISA path in use", "1024^3 float32 GEMM in steadygrad and in numpy",
                  "steadygrad-bench --help", "--no-gemm only print the build and CPU"):
        assert words in text, words
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out == f"steadygrad {sg.__version__}\n"
    main(["--no-gemm"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"steadygrad {sg.__version__}" and len(lines) == 6  # no timing line
    assert lines[2].split() == ["isa", sg.cpu_info()["isa"]]


def test_thread_count_is_the_same_from_every_python_thread() -> None:
    """sg.set_num_threads is process-wide: OpenMP's own count belongs to each calling thread,
    so a kernel run from a worker thread used the default before."""
    import threading

    before = sg.get_num_threads()
    seen: list[int] = []
    try:
        for n in (1, 3):
            sg.set_num_threads(n)
            t = threading.Thread(target=lambda: seen.append(sg.get_num_threads()))
            t.start()
            t.join()
        assert seen == [1, 3]
        assert sg.cpu_info()["threads"] == 3
    finally:
        sg.set_num_threads(before)
