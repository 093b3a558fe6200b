"""The package layout is the architecture: each part of python/steadygrad imports only the parts
its docstring allows (read here from the source, function bodies included, so a lazy import
cannot hide an edge), the parts form no cycle, and the training tools import nothing inside a
function."""

from __future__ import annotations

import ast
import pathlib

import pytest

import steadygrad as sg

ROOT = pathlib.Path(sg.__file__).parent

# What each part may import of steadygrad (progress, the package's bar, imports nothing).
TOOLS = {
    "_introspect": {"random"},
    "callbacks": {"_introspect"},
    "checkpoint": {"_introspect"},
    "compiled": {"_core", "_threads", "nn", "random"},
    "progress": set(),
    "diagnostics": {"_args", "_introspect", "_plot", "callbacks", "nn", "ops"},
    "_args": set(),
    "_plot": set(),
    "_threads": {"_core"},
    "_omp": {"_core"},
    "_precision": {"_core"},
    "data": {"_args", "random"},
    "metrics": set(),
    "onnx": {"_core", "nn"},
    # data parallelism over MPI: on top of nn next to training, which knows nothing of it
    # (fit reads a wrapped model's communicator, duck-typed)
    "distributed": {"_core", "nn"},
    "training": {"_args", "_introspect", "_plot", "_precision", "_threads", "callbacks",
                 "checkpoint", "compiled", "data", "diagnostics", "metrics", "optim", "progress"},
}
FOUNDATION = ("_core", "random", "ops", "progress", "nn", "optim")


def _part(module: str) -> str:
    """`steadygrad.training.loop` -> `training`; `steadygrad.random` -> `random`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _target(module: str, name: str) -> str:
    """What `from module import name` imports: the submodule module.name if there is one."""
    sub = ROOT.parent.joinpath(*module.split("."), name)
    return f"{module}.{name}" if sub.with_suffix(".py").exists() or sub.is_dir() else module


def _imports(path: pathlib.Path) -> list[tuple[str, int, bool]]:
    """(imported steadygrad module, line, inside a function) for every import in the file,
    `from package import submodule` counted as importing the submodule; imports under
    `if TYPE_CHECKING:` are skipped (they never run)."""
    tree = ast.parse(path.read_text())
    out: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and getattr(child.test, "id", None) == "TYPE_CHECKING":
                continue
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                out.extend((a.name, child.lineno, nested) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                out.extend((_target(child.module, a.name), child.lineno, nested) for a in child.names)
            visit(child, nested)

    visit(tree, False)
    # A module's own packages are imported before it anyway: not an edge.
    me = _module_name(path)
    return [(m, line, f) for m, line, f in out if (m == "steadygrad" or m.startswith("steadygrad."))
            and not me.startswith(m + ".")]


FILES = sorted(ROOT.rglob("*.py"))
EDGES = [(_module_name(f), f, *imp) for f in FILES for imp in _imports(f)]


@pytest.mark.parametrize("part", sorted(TOOLS))
def test_each_tool_imports_only_what_its_docstring_allows(part):
    assert any(_part(_module_name(f)) == part for f in FILES), f"steadygrad has no {part}"
    bad = [f"{f.relative_to(ROOT)}:{line} imports {mod}" for src, f, mod, line, _ in EDGES
           if _part(src) == part and _part(mod) not in TOOLS[part] | {part}]
    assert not bad, "\n".join(bad)


def test_the_library_below_the_tools_never_imports_them():
    bad = [f"{f.relative_to(ROOT)}:{line} imports {mod}" for src, f, mod, line, _ in EDGES
           if _part(src) in FOUNDATION and _part(mod) in set(TOOLS) - set(FOUNDATION)]
    assert not bad, "\n".join(bad)


def test_the_tools_import_nothing_inside_a_function():
    bad = [f"{f.relative_to(ROOT)}:{line} imports {mod} inside a function"
           for src, f, mod, line, in_function in EDGES if _part(src) in TOOLS and in_function]
    assert not bad, "\n".join(bad)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph, or None (depth-first search)."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node):], node]
        if node in done:
            return None
        for nxt in sorted(graph.get(node, ())):
            found = visit(nxt, [*path, node])
            if found:
                return found
        done.add(node)
        return None

    return next((c for c in (visit(n, []) for n in sorted(graph)) if c), None)


@pytest.mark.parametrize("level", ["part", "module"])
def test_no_import_cycle(level):
    """Module-level imports (those that run at import) form a DAG, between the parts (packages
    and top-level modules) as between the modules themselves."""
    key = _part if level == "part" else str
    graph: dict[str, set[str]] = {}
    for src, _, mod, _, in_function in EDGES:
        a, b = key(src), key(mod)
        if not in_function and a != b and a and b:
            graph.setdefault(a, set()).add(b)
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_each_public_class_name_is_defined_once():
    """One name per concept: two classes called alike (the ReduceLROnPlateau callback and
    scheduler were) read as one thing and are not."""
    seen: dict[str, list[str]] = {}
    for f in FILES:
        for node in ast.parse(f.read_text()).body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                seen.setdefault(node.name, []).append(str(f.relative_to(ROOT)))
    twice = {name: where for name, where in seen.items() if len(where) > 1}
    assert not twice, twice


def test_public_names_stay_where_the_readme_and_examples_use_them():
    import steadygrad.callbacks as cb
    import steadygrad.diagnostics as diag

    assert sg.fit is sg.training.fit and sg.evaluate is sg.training.evaluate
    assert sg.predict is sg.training.predict
    assert sg.save is sg.checkpoint.save and sg.load is sg.checkpoint.load
    assert issubclass(sg.checkpoint.CheckpointError, ValueError)
    assert sg.check_init is diag.check_init and issubclass(diag.GradientMonitor, cb.Callback)
    for name in ("Callback", "EarlyStopping", "ModelCheckpoint", "CSVLogger", "TerminateOnNaN"):
        assert issubclass(getattr(sg.callbacks, name), cb.Callback), name
    assert not (ROOT / "io.py").exists()  # the standard library's name
