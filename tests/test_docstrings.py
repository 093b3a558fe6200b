"""Every public name has a docstring of its own (the API reference is generated from them), and
the docstrings the stub of the compiled module carries for the reference are the module's."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
from pathlib import Path

import pytest
from public_api import public_modules, public_names

import steadygrad
from steadygrad import _core

STUB = Path(steadygrad.__file__).resolve().parent / "_core.pyi"
PUBLIC = [(m, n) for m in public_modules() for n in public_names(m)]


def _own_docstring(obj: object) -> str:
    """The object's own docstring: a class's, not inherited; a compiled function's without the
    signature line pybind11 puts first; '' for a plain value (which documents nothing)."""
    if inspect.isclass(obj):
        doc = vars(obj).get("__doc__") or ""
        # a dataclass without one gets its signature as __doc__: that documents nothing
        return "" if dataclasses.is_dataclass(obj) and doc.startswith(f"{obj.__name__}(") else doc
    if inspect.isbuiltin(obj):
        return _compiled_text(obj)
    if inspect.isfunction(obj) or inspect.ismodule(obj):
        return obj.__doc__ or ""
    return ""


def _compiled_text(fn: object) -> str:
    doc = getattr(fn, "__doc__", None) or ""
    first, _, rest = doc.partition("\n")
    name = getattr(fn, "__name__", "")
    return rest.strip() if first.startswith(f"{name}(") else doc.strip()


def test_public_modules_are_found() -> None:
    mods = public_modules()
    for name in ("steadygrad.nn", "steadygrad.nn.init", "steadygrad.optim",
                 "steadygrad.optim.lr_scheduler", "steadygrad.ops", "steadygrad.random"):
        assert name in mods, mods
    for name in mods:
        module = importlib.import_module(name)
        assert (module.__doc__ or "").strip(), f"module {name} has no docstring"
        assert hasattr(module, "__all__"), f"public module {name} has no __all__"


@pytest.mark.parametrize(("module", "name"), PUBLIC, ids=[f"{m}.{n}" for m, n in PUBLIC])
def test_public_name_has_a_docstring(module: str, name: str) -> None:
    if name == "__version__":
        assert isinstance(steadygrad.__version__, str)  # a plain str: documented in the stub
        return
    obj = getattr(importlib.import_module(module), name)
    assert _own_docstring(obj).strip(), f"{module}.{name} ({type(obj).__name__}) has no docstring"


def _stub_docstrings() -> dict[str, str]:
    """name -> docstring of each function in the stub that has one."""
    return {node.name: ast.get_docstring(node) or ""
            for node in ast.parse(STUB.read_text()).body
            if isinstance(node, ast.FunctionDef) and ast.get_docstring(node)}


# The compiled functions the public modules export: the reference reads their docstrings from
# the stub (the site builds without a compiled module), so the stub must carry each, as the
# module has it.
COMPILED = sorted({n for m, n in PUBLIC
                   if inspect.isbuiltin(getattr(importlib.import_module(m), n))})


def test_compiled_public_functions_are_the_expected_ones() -> None:
    assert {"gemm", "relu", "softmax_cross_entropy", "cpu_info", "set_isa"} <= set(COMPILED)


@pytest.mark.parametrize("name", COMPILED)
def test_stub_docstring_is_the_modules(name: str) -> None:
    stub = _stub_docstrings()
    assert name in stub, f"_core.pyi: {name} has no docstring (copy help(_core.{name})'s)"
    assert stub[name] == inspect.cleandoc(_compiled_text(getattr(_core, name))), (
        f"_core.pyi: the docstring of {name} differs from the compiled module's")
