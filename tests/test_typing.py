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


# An installed steadygrad (site-packages) is found by mypy like any typed package; a source
# tree (python/ on PYTHONPATH) through MYPYPATH. mypy runs from a directory of its own: run
# from site-packages, it would take every module there for the user's own.
INSTALLED = PKG.parent.name in ("site-packages", "dist-packages")


def _mypy_env() -> dict[str, str]:
    """The environment of a mypy subprocess: this process's steadygrad comes first."""
    env = dict(os.environ)
    if not INSTALLED:
        env["MYPYPATH"] = os.pathsep.join([str(PKG.parent), *filter(None, [env.get("MYPYPATH")])])
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

class _Required:
    """The default of a parameter without one."""

    def __repr__(self) -> str:
        return "none"


_REQUIRED = _Required()


def _params(fn: ast.FunctionDef, method: bool = False) -> list[tuple[str, str, str, object]]:
    """(name, kind, annotation, default) per parameter (a method's `self` left out); default
    is `_REQUIRED` when there is none and `...` when it is not a literal: a stub's `...`, or
    the repr pybind11 writes for an object default (`pre: GradPreHyper = GradPreHyper(...)`)."""
    a = fn.args
    pos = [*a.posonlyargs, *a.args]
    pos_defaults = [None] * (len(pos) - len(a.defaults)) + list(a.defaults)
    if method:
        assert pos and pos[0].arg == "self", f"{fn.name}: no self"
        pos, pos_defaults = pos[1:], pos_defaults[1:]
    out = []
    for kind, args, defaults in (("positional", pos, pos_defaults),
                                 ("keyword", a.kwonlyargs, a.kw_defaults)):
        for arg, d in zip(args, defaults, strict=True):
            ann = "" if arg.annotation is None else ast.unparse(arg.annotation)
            default: object = _REQUIRED
            if d is not None:
                try:
                    default = ast.literal_eval(d)
                except ValueError:
                    default = ...
            out.append((arg.arg, kind, ann, default))
    assert a.vararg is None and a.kwarg is None, f"{fn.name}: *args/**kwargs"
    return out


def _stub_functions(body: list[ast.stmt] | None = None) -> dict[str, list[ast.FunctionDef]]:
    """Each function the stub (or a class body of it) defines: its overloads in order, or its
    one definition."""
    out: dict[str, list[ast.FunctionDef]] = {}
    for node in _stub_tree().body if body is None else body:
        if isinstance(node, ast.FunctionDef):
            out.setdefault(node.name, []).append(node)
    return out


def _runtime_signature(obj: object, name: str) -> ast.FunctionDef:
    """The signature pybind11 puts on the first line of the docstring, parsed."""
    doc = getattr(obj, "__doc__", None) or ""
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
_BOUND = "steadygrad._core."  # how pybind11 names a class the module binds


def _arg_types(rt_ann: str) -> set[str] | None:
    """The stub annotations that match pybind11's annotation of an argument; None where the
    binding takes any object (`object`: it checks the argument itself)."""
    if rt_ann.endswith(" | None"):
        inner = _arg_types(rt_ann.removesuffix(" | None"))
        return None if inner is None else {f"{t} | None" for t in inner}
    if rt_ann.startswith(_BOUND):
        return {rt_ann.removeprefix(_BOUND)}
    return _ARG_TYPES.get(rt_ann)


def _returns_match(rt_ret: str, ret: str) -> bool:
    """Whether the stub's return annotation is of the kind pybind11's names (any, for object)."""
    if rt_ret.startswith(_BOUND):
        return ret == rt_ret.removeprefix(_BOUND)
    return rt_ret not in _RETURN_TYPES or ret.startswith(_RETURN_TYPES[rt_ret])


def _check_signature(name: str, defs: list[ast.FunctionDef], runtime: ast.FunctionDef,
                     method: bool = False) -> None:
    """Parameter names, order, kinds (positional or keyword-only) and defaults as the binding
    declares them; the types where the binding converts (bool, str, int, float, a bound
    class); the return type's kind. Overloads each have the binding's parameters; the last is
    the general one, with the binding's defaults."""
    want = _params(runtime, method)
    for fn in defs:
        got = _params(fn, method)
        assert [(n, k) for n, k, _, _ in got] == [(n, k) for n, k, _, _ in want], name
        for (pname, _, ann, default), (_, _, rt_ann, rt_default) in zip(got, want, strict=True):
            if default is not _REQUIRED or fn is defs[-1]:
                assert (type(default), default) == (type(rt_default), rt_default), \
                    f"{name}({pname}): default {default!r} in the stub, {rt_default!r} in the binding"
            allowed = _arg_types(rt_ann)
            if allowed is not None:
                assert ann in allowed, f"{name}({pname}): {ann} for pybind11's {rt_ann}"
    rt_ret = ast.unparse(runtime.returns) if runtime.returns is not None else ""
    ret = ast.unparse(defs[-1].returns) if defs[-1].returns is not None else ""
    assert _returns_match(rt_ret, ret), f"{name}: returns {ret}, binding {rt_ret}"


def _compiled_functions() -> list[str]:
    return sorted(n for n in _module_names()
                  if isinstance(getattr(_core, n), types.BuiltinFunctionType))


@pytest.mark.parametrize("name", _compiled_functions())
def test_stub_signature_matches_binding(name: str) -> None:
    defs = _stub_functions().get(name)
    assert defs, f"_core.{name} is not in _core.pyi"
    _check_signature(name, defs, _runtime_signature(getattr(_core, name), name))


# -- bound classes ---------------------------------------------------------------------------

def _compiled_classes() -> list[str]:
    return sorted(n for n in _module_names() if isinstance(getattr(_core, n), type))


def _stub_class(name: str) -> ast.ClassDef:
    for node in _stub_tree().body:
        if isinstance(node, ast.ClassDef) and node.name == name and not _type_only(node):
            return node
    raise AssertionError(f"class _core.{name} is not in _core.pyi")


def _stub_fields(cls: ast.ClassDef) -> dict[str, tuple[str, str | None]]:
    """Each field of a stub class: (the type read, the type assigned or None if read-only).
    An annotated name is read and written; a @property is read-only unless it has a setter."""
    out: dict[str, tuple[str, str | None]] = {}
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            ann = ast.unparse(node.annotation)
            out[node.target.id] = (ann, ann)
        elif isinstance(node, ast.FunctionDef):
            decorators = [ast.unparse(d) for d in node.decorator_list]
            if "property" in decorators:
                out[node.name] = (ast.unparse(node.returns) if node.returns else "", None)
            elif f"{node.name}.setter" in decorators:
                value = node.args.args[1].annotation
                out[node.name] = (out[node.name][0], ast.unparse(value) if value else "")
    return out


def _accessor_types(prop: property) -> tuple[str, str | None]:
    """pybind11's types of a bound property: what its getter returns, what its setter takes
    (None when read-only), from their docstrings' signatures (`(self: C, arg0: T) -> None`)."""
    def signature(f: object) -> ast.FunctionDef:
        line = (getattr(f, "__doc__", None) or "").split("\n", 1)[0]
        assert line.startswith("("), f"no pybind11 signature in {line!r}"
        fn = ast.parse(f"def f{line}: ...").body[0]
        assert isinstance(fn, ast.FunctionDef) and fn.returns is not None
        return fn
    got = ast.unparse(signature(prop.fget).returns)  # type: ignore[arg-type]
    if prop.fset is None:
        return got, None
    args = signature(prop.fset).args.args
    assert len(args) == 2 and args[1].annotation is not None
    return got, ast.unparse(args[1].annotation)


@pytest.mark.parametrize("name", _compiled_classes())
def test_stub_class_matches_binding(name: str) -> None:
    """A bound class: its constructor as a function's signature is checked, its fields (the
    binding's properties) by name, read-only or not, and type, and no method on one side
    only."""
    cls, node = getattr(_core, name), _stub_class(name)
    methods = _stub_functions(node.body)
    inits = methods.get("__init__")
    assert inits, f"_core.{name}.__init__ is not in _core.pyi"
    _check_signature(f"{name}.__init__", inits,
                     _runtime_signature(cls.__init__, "__init__"), method=True)

    props = {k: v for k, v in vars(cls).items() if isinstance(v, property)}
    fields = _stub_fields(node)
    assert set(fields) == set(props), (
        f"{name}: fields of the binding but not of the stub: {sorted(set(props) - set(fields))}; "
        f"of the stub but not of the binding: {sorted(set(fields) - set(props))}")
    for field, prop in props.items():
        read, write = fields[field]
        rt_read, rt_write = _accessor_types(prop)
        assert (write is None) == (rt_write is None), \
            f"{name}.{field}: {'read-only' if write is None else 'writable'} in the stub only"
        assert _returns_match(rt_read, read), f"{name}.{field}: {read}, binding {rt_read}"
        allowed = None if rt_write is None else _arg_types(rt_write)
        if allowed is not None:
            assert write in allowed, f"{name}.{field}: assigned {write}, binding {rt_write}"

    # pybind11's own: the __dunders__ every bound class has and its ABI hook
    def own(k: str) -> bool:
        return not (k.startswith("__") or k == "_pybind11_conduit_v1_")
    rt_methods = {k for k, v in vars(cls).items() if own(k) and not isinstance(v, property)}
    stub_methods = {k for k in methods if own(k) and k not in fields}
    assert stub_methods == rt_methods, f"{name}: methods {sorted(stub_methods ^ rt_methods)} on one side only"


def test_stub_constants_have_the_modules_types() -> None:
    annotated = {n.target.id: ast.unparse(n.annotation) for n in _stub_tree().body
                 if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    assert annotated, "no constants in _core.pyi"
    for name, ann in annotated.items():
        assert type(getattr(_core, name)).__name__ == ann, f"_core.{name}: {ann} in the stub"


# -- what a caller's type checker sees ------------------------------------------------------

# Each line marked `# E` must be an error, every other line must pass: results are typed (not
# Any: assigning one to the wrong dtype fails), a result compute_grad*=False leaves out is
# Optional (a caller narrows it before use), arguments of the wrong type are refused, and so are a bound struct's wrong fields and a read-only one; a
# bare `Optimizer` needs no type argument (its kernel struct's has a default).
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
dx: npt.NDArray[np.float32] | None = _core.linear_backward(a, a, a, a)
wrong_dx: npt.NDArray[np.float64] | None = _core.linear_backward(a, a, a, a)  # E
maybe = _core.linear_backward(a, a, a, a, compute_grad_input=bool(a.size))
maybe.shape  # E
_core.linear_backward(a, a, a, a, compute_grad_input=None)  # E
loss, grad = sg.ops.softmax_cross_entropy(a, np.zeros(2, np.int64))
grad.sum()  # E
assert grad is not None
total: float = loss + grad.sum()
sg.ops.softmax_cross_entropy(a, a.astype(np.float64))  # E
supported: list[str] = sg.cpu_info()["isa_supported"]
threads: str = sg.cpu_info()["threads"]  # E
sg.set_isa(3)  # E
per_thread: list[int] = _core.linear_scratch(8, 4, 2, threads=2)["a"]
_core.linear_scratch(8, 4, 2, False)  # E
norms: npt.NDArray[np.float64] = _core.grad_norms(a.ravel(), np.zeros(1, np.int64), np.ones(1, np.int64))[1]
off, ln = np.zeros(1, np.int64), np.ones(1, np.int64)
h = _core.AdamHyper(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, amsgrad=False, decoupled=False)
h.pre.clip_value = None
h.step = 2.5  # E
_core.AdamHyper(lr=1e-3)  # E
_core.AdamHyper(1e-3, 0.9, 0.999, 1e-8, 0.0, False, False)  # E
_core.adam_step(a, a, a, a, None, off, ln, h)
_core.sgd_step(a, a, None, off, ln, h)  # E
_core.grad_scale_clamp(a, off, ln, _core.GradPreHyper(grad_scale=0.5))
ctx = _core.BatchNormContext(a.ravel(), a.ravel(), True, "relu")
ctx.save_mean = a.ravel()  # E
saved: npt.NDArray[np.float32] | None = ctx.input
bn: npt.NDArray[np.float32] = _core.batchnorm_forward(a, None, None, None, None, None, ctx, momentum=None)
no_dx: npt.NDArray[np.float32] | None = _core.batchnorm_backward(a, None, None, ctx, None, None, compute_grad_input=False)
def lr_of(opt: sg.optim.Optimizer) -> float: return float(opt.param_groups[0]["lr"])
adam: sg.optim.Optimizer[_core.AdamHyper] = sg.optim.Adam([])
sgd: sg.optim.Optimizer[_core.AdamHyper] = sg.optim.SGD([])  # E
"""


def test_stub_types_reach_callers(mypy_cache: Callable[[str], Path], tmp_path: Path) -> None:
    cache = mypy_cache("caller")
    src = tmp_path / "caller.py"
    src.write_text(_CALLER)
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache),
                        "--config-file", str(_config(cache)), str(src)],
                       capture_output=True, text=True, env=_mypy_env(), cwd=tmp_path)
    lines = _CALLER.splitlines()
    want = {i + 1 for i, line in enumerate(lines) if line.endswith("# E")}
    got = {int(m.split(":")[1]) for m in r.stdout.splitlines() if ": error:" in m}
    assert got == want, r.stdout + r.stderr


# -- the whole package -----------------------------------------------------------------------

def test_mypy_strict_passes_on_package(mypy_cache: Callable[[str], Path], tmp_path: Path) -> None:
    """`mypy --strict` over the package's sources (the tree under test: the checkout or the
    installed copy), with the project's mypy settings (pyproject.toml) when run from a checkout."""
    cache = mypy_cache("package")
    cmd = [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache)]
    config = ROOT / "pyproject.toml"
    if config.is_file():
        cmd += ["--config-file", str(config)]
    r = subprocess.run([*cmd, "-p", "steadygrad"], capture_output=True, text=True,
                       env=_mypy_env(), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
