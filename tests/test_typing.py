"""Type information: the package ships `py.typed` and a `_core.pyi` that matches the compiled
module (every name both ways, every signature's parameters, kinds and defaults), a caller's
type checker gets precise types from it, and `mypy --strict` accepts the package.

The stub is compared with the module by introspection, not by mypy's stubtest: stubtest
cannot see a pybind11 function's signature (there is no __text_signature__), so it compares
names only, and it runs without a cache (some 20 s a run). The signatures are compared with
the one pybind11 writes on the first line of each docstring."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path

import pytest

import steadygrad
from steadygrad import _core

PKG = Path(steadygrad.__file__).resolve().parent
STUB = PKG / "_core.pyi"
ROOT = Path(__file__).resolve().parent.parent


def _mypy_env() -> dict[str, str]:
    """The environment of a mypy subprocess: this process's steadygrad comes first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PKG.parent), *filter(None, [env.get("PYTHONPATH")])])
    return env


@pytest.fixture(scope="module")
def mypy_cache(request: pytest.FixtureRequest,
               tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """A mypy cache folder per kind of run (a run with other options would rewrite another's
    cache): under pytest's cache, so that a rerun takes seconds, else temporary."""
    pytest.importorskip("mypy", reason="mypy is in the test extras: pip install -e '.[test]'")
    cache = getattr(request.config, "cache", None)
    base = cache.mkdir("mypy") if cache is not None else tmp_path_factory.mktemp("mypy")

    def folder(kind: str) -> Path:
        path = base / kind
        path.mkdir(exist_ok=True)
        return path

    return folder


def _config(cache: Path) -> Path:
    """A mypy config file with only the cache folder (no project settings)."""
    cfg = cache / "mypy.ini"
    cfg.write_text(f"[mypy]\ncache_dir = {cache}\n")
    return cfg


def test_package_ships_type_information() -> None:
    assert (PKG / "py.typed").is_file(), f"py.typed missing from {PKG}"
    assert STUB.is_file(), f"_core.pyi missing from {PKG}"


def _stub_tree() -> ast.Module:
    return ast.parse(STUB.read_text())


def _type_only(node: ast.stmt) -> bool:
    """A stub name that does not exist at run time: an alias (plain assignment) or a class
    marked @type_check_only (e.g. the TypedDict of cpu_info's result)."""
    if isinstance(node, ast.Assign):
        return True
    return isinstance(node, ast.ClassDef) and any(
        ast.unparse(d).endswith("type_check_only") for d in node.decorator_list)


def _stub_names() -> set[str]:
    names: set[str] = set()
    for node in _stub_tree().body:
        if _type_only(node):
            continue
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def _module_names() -> set[str]:
    """What the compiled module exports: its names but the attributes every module has."""
    standard = set(dir(types.ModuleType("m"))) | {"__file__"}
    return {n for n in dir(_core) if n not in standard}


def test_stub_names_match_compiled_module() -> None:
    stub, module = _stub_names(), _module_names()
    assert stub == module, (f"exported by _core but not in _core.pyi: {sorted(module - stub)}; "
                            f"in _core.pyi but not exported by _core: {sorted(stub - module)}")


# -- signatures ------------------------------------------------------------------------------

def _params(fn: ast.FunctionDef) -> list[tuple[str, str, str, object]]:
    """(name, kind, annotation, default) per parameter; default is `...` when there is none."""
    a = fn.args
    pos = [*a.posonlyargs, *a.args]
    pos_defaults = [None] * (len(pos) - len(a.defaults)) + list(a.defaults)
    out = []
    for kind, args, defaults in (("positional", pos, pos_defaults),
                                 ("keyword", a.kwonlyargs, a.kw_defaults)):
        for arg, d in zip(args, defaults, strict=True):
            ann = "" if arg.annotation is None else ast.unparse(arg.annotation)
            default = ... if d is None else ast.literal_eval(d)
            out.append((arg.arg, kind, ann, default))
    assert a.vararg is None and a.kwarg is None, f"{fn.name}: *args/**kwargs"
    return out


def _stub_functions() -> dict[str, list[ast.FunctionDef]]:
    """Each function the stub defines: its overloads in order, or its one definition."""
    out: dict[str, list[ast.FunctionDef]] = {}
    for node in _stub_tree().body:
        if isinstance(node, ast.FunctionDef):
            out.setdefault(node.name, []).append(node)
    return out


def _runtime_function(name: str) -> ast.FunctionDef:
    """The signature pybind11 puts on the first line of the docstring, parsed."""
    doc = getattr(_core, name).__doc__ or ""
    line = doc.split("\n", 1)[0]
    assert line.startswith(f"{name}("), f"{name}: no pybind11 signature in {doc[:80]!r}"
    fn = ast.parse(f"def {line}: ...").body[0]
    assert isinstance(fn, ast.FunctionDef)
    return fn


# pybind11's annotation of a converted C++ argument -> the stub's
_ARG_TYPES = {
    "bool": {"bool", "Literal[True]", "Literal[False]"},
    "str": {"str"},
    "typing.SupportsInt | typing.SupportsIndex": {"int"},
    "typing.SupportsFloat | typing.SupportsIndex": {"float"},
}
_RETURN_TYPES = {"None": ("None",), "bool": ("bool",), "int": ("int",), "float": ("float",),
                 "str": ("str",), "numpy.ndarray": ("_F32", "npt.NDArray["),
                 "tuple": ("tuple[",),
                 "dict": ("dict[", "CpuInfo", "GemmConstants", "GemmScratch")}


def _compiled_functions() -> list[str]:
    return sorted(n for n in _module_names()
                  if isinstance(getattr(_core, n), types.BuiltinFunctionType))


@pytest.mark.parametrize("name", _compiled_functions())
def test_stub_signature_matches_binding(name: str) -> None:
    """Parameter names, order, kinds (positional or keyword-only) and defaults as the binding
    declares them; the types where the binding converts (bool, str, int, float); the return
    type's kind. Overloads each have the binding's parameters; the last is the general one,
    with the binding's defaults."""
    defs = _stub_functions().get(name)
    assert defs, f"_core.{name} is not in _core.pyi"
    runtime = _runtime_function(name)
    want = _params(runtime)
    for fn in defs:
        got = _params(fn)
        assert [(n, k) for n, k, _, _ in got] == [(n, k) for n, k, _, _ in want], name
        for (pname, _, ann, default), (_, _, rt_ann, rt_default) in zip(got, want, strict=True):
            if default is not ... or fn is defs[-1]:
                assert (type(default), default) == (type(rt_default), rt_default), \
                    f"{name}({pname}): default {default!r} in the stub, {rt_default!r} in the binding"
            if rt_ann in _ARG_TYPES:
                assert ann in _ARG_TYPES[rt_ann], f"{name}({pname}): {ann} for pybind11's {rt_ann}"
    rt_ret = ast.unparse(runtime.returns) if runtime.returns is not None else ""
    ret = ast.unparse(defs[-1].returns) if defs[-1].returns is not None else ""
    if rt_ret in _RETURN_TYPES:
        assert ret.startswith(_RETURN_TYPES[rt_ret]), f"{name}: returns {ret}, binding {rt_ret}"


def test_stub_constants_have_the_modules_types() -> None:
    annotated = {n.target.id: ast.unparse(n.annotation) for n in _stub_tree().body
                 if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    assert annotated, "no constants in _core.pyi"
    for name, ann in annotated.items():
        assert type(getattr(_core, name)).__name__ == ann, f"_core.{name}: {ann} in the stub"


# -- what a caller's type checker sees ------------------------------------------------------

# Each line marked `# E` must be an error, every other line must pass: results are typed (not
# Any: assigning one to the wrong dtype fails), overloads follow compute_grad*, and arguments
# of the wrong type are refused.
_CALLER = """\
import numpy as np
import numpy.typing as npt
import steadygrad as sg
from steadygrad import _core

a = np.zeros((2, 2), np.float32)
y: npt.NDArray[np.float32] = sg.ops.gemm(a, a, trans_b=True, out=a)
wrong: npt.NDArray[np.float64] = sg.ops.gemm(a, a)  # E
sg.ops.gemm(a, a, trans_a=1)  # E
sg.ops.gemm(a, a, False)  # E
dx: npt.NDArray[np.float32] = _core.linear_backward(a, a, a, a)
none: None = _core.linear_backward(a, a, a, a, compute_grad_input=False)
maybe = _core.linear_backward(a, a, a, a, compute_grad_input=bool(a.size))
maybe.shape  # E
loss, grad = sg.ops.softmax_cross_entropy(a, np.zeros(2, np.int64))
total: float = loss + grad.sum()
sg.ops.softmax_cross_entropy(a, a)  # E
supported: list[str] = sg.cpu_info()["isa_supported"]
threads: str = sg.cpu_info()["threads"]  # E
sg.set_isa(3)  # E
per_thread: list[int] = _core.linear_scratch(8, 4, 2, threads=2)["a"]
_core.linear_scratch(8, 4, 2, False)  # E
norms: npt.NDArray[np.float64] = _core.grad_norms(a.ravel(), np.zeros(1, np.int64), np.ones(1, np.int64))[1]
"""


def test_stub_types_reach_callers(mypy_cache: Callable[[str], Path], tmp_path: Path) -> None:
    cache = mypy_cache("caller")
    src = tmp_path / "caller.py"
    src.write_text(_CALLER)
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache),
                        "--config-file", str(_config(cache)), str(src)],
                       capture_output=True, text=True, env=_mypy_env(), cwd=PKG.parent)
    lines = _CALLER.splitlines()
    want = {i + 1 for i, line in enumerate(lines) if line.endswith("# E")}
    got = {int(m.split(":")[1]) for m in r.stdout.splitlines() if ": error:" in m}
    assert got == want, r.stdout + r.stderr


# -- the whole package -----------------------------------------------------------------------

def test_mypy_strict_passes_on_package(mypy_cache: Callable[[str], Path]) -> None:
    """`mypy --strict` over the package's sources (the tree under test: the checkout or the
    installed copy), with the project's mypy settings (pyproject.toml) when run from a checkout."""
    cache = mypy_cache("package")
    cmd = [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache)]
    config = ROOT / "pyproject.toml"
    if config.is_file():
        cmd += ["--config-file", str(config)]
    r = subprocess.run([*cmd, str(PKG)], capture_output=True, text=True, env=_mypy_env(),
                       cwd=PKG.parent)
    assert r.returncode == 0, r.stdout + r.stderr
