"""The public API, as the documentation covers it: every public module and the names its
`__all__` exports (tests/test_docstrings.py, tests/test_docs_build.py)."""

from __future__ import annotations

import importlib
import types

# Public modules outside the chain of __all__ that starts at steadygrad (sg.random is reached
# as an attribute; its name stays out of steadygrad.__all__, where a star import would shadow
# the standard library's random; steadygrad.sklearn is imported on its own, as it needs
# scikit-learn, which importing steadygrad does not; so is steadygrad.distributed, so that
# importing steadygrad never imports mpi4py).
EXTRA_MODULES = ("steadygrad.random", "steadygrad.sklearn", "steadygrad.distributed")


def _exported(module: types.ModuleType) -> list[str]:
    """Its __all__ (none: nothing; tests/test_docstrings.py requires one of each)."""
    return list(getattr(module, "__all__", ()))


def public_modules() -> list[str]:
    """steadygrad, every module its __all__ exports, theirs in turn, and EXTRA_MODULES."""
    found: list[str] = []
    todo = ["steadygrad", *EXTRA_MODULES]
    while todo:
        name = todo.pop(0)
        if name in found:
            continue
        found.append(name)
        module = importlib.import_module(name)
        todo += [f"{name}.{n}" for n in _exported(module)
                 if isinstance(getattr(module, n), types.ModuleType)]
    return found


def public_names(module_name: str) -> list[str]:
    """The names `module_name` exports that are not modules (those have pages of their own)."""
    module = importlib.import_module(module_name)
    return [n for n in _exported(module) if not isinstance(getattr(module, n), types.ModuleType)]
