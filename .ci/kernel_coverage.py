"""pytest plugin for the sanitizer job (.ci/sanitize --subset): records which steadygrad._core
kernels ran on which ISA path and, with --kernel-coverage, fails the run unless every kernel
ran at least once on every path this machine supports. A subset of the suite that silently
stopped reaching a kernel (a renamed test, a new kernel without an ISA-parametrized test)
would otherwise pass the sanitizers without them ever seeing that code.

Load it with `-p kernel_coverage` (this directory on PYTHONPATH)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import pytest

# _core functions that are not kernels: runtime control and introspection.
NOT_KERNELS = frozenset({"cpu_info", "get_isa", "set_isa", "get_num_threads", "set_num_threads",
                         "_gemm_uses_sup", "_gemm_workspace_bytes", "_gemm_constants",
                         "linear_scratch", "conv2d_scratch", "depthwise_conv2d_scratch",
                         "pool2d_scratch", "adaptive_avg_pool2d_scratch",
                         "kernel_heap_allocations", "_set_matmul_precision",
                         "_get_matmul_precision", "_set_bf16_path", "_get_bf16_path"})
# Kernels that take the ISA path as an argument instead of running on the active one.
ISA_ARGUMENT = frozenset({"_fma_peak_gflops"})


class KernelCoverage:
    def __init__(self) -> None:
        from steadygrad import _core

        self.core = _core
        self.get_isa = _core.get_isa
        self.supported = list(_core.cpu_info()["isa_supported"])
        self.seen: set[tuple[str, str]] = set()
        # Functions only: the bound classes (AdamHyper, BatchNormContext, ...) carry a kernel's
        # arguments and run nothing themselves.
        self.kernels = sorted(n for n in dir(_core) if not n.startswith("__")
                              and n not in NOT_KERNELS and callable(getattr(_core, n))
                              and not isinstance(getattr(_core, n), type))

    def _wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        seen, get_isa = self.seen, self.get_isa

        by_argument = name in ISA_ARGUMENT

        @functools.wraps(fn)
        def recorded(*args: Any, **kwargs: Any) -> Any:
            isa = (args[0] if args else kwargs.get("isa")) if by_argument else get_isa()
            seen.add((name, str(isa)))
            return fn(*args, **kwargs)

        return recorded

    def install(self) -> None:
        """Replace each kernel in _core and wherever steadygrad already imported it by name
        (sg.ops, the layers); test modules import after this and get the recorded ones."""
        originals = {n: getattr(self.core, n) for n in self.kernels}
        by_id = {id(fn): n for n, fn in originals.items()}
        wrapped = {n: self._wrap(n, fn) for n, fn in originals.items()}
        for mod_name, mod in list(sys.modules.items()):
            if mod is None or not (mod_name == "steadygrad" or mod_name.startswith("steadygrad.")):
                continue
            for attr, value in list(vars(mod).items()):
                name = by_id.get(id(value))
                if name is not None and value is originals[name]:
                    setattr(mod, attr, wrapped[name])

    def missing(self) -> list[tuple[str, str]]:
        return [(k, isa) for k in self.kernels for isa in self.supported
                if (k, isa) not in self.seen]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--kernel-coverage", action="store_true", default=False,
                     help="fail unless every steadygrad._core kernel ran on every ISA path "
                          "this machine supports")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--kernel-coverage"):
        cov = KernelCoverage()
        cov.install()
        config.stash[_KEY] = cov


_KEY = pytest.StashKey[KernelCoverage]()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    cov = config.stash.get(_KEY, None)
    if cov is None:
        return
    missing = cov.missing()
    ran = len(cov.kernels) * len(cov.supported) - len(missing)
    terminalreporter.write_line(
        f"kernel coverage: {ran} of {len(cov.kernels) * len(cov.supported)} ({len(cov.kernels)} "
        f"kernels x ISA paths {', '.join(cov.supported)}) ran")
    for name, isa in missing:
        terminalreporter.write_line(f"KERNEL NOT RUN: {name} on {isa}", red=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    cov = session.config.stash.get(_KEY, None)
    if cov is not None and cov.missing() and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
