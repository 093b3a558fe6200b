"""Shared pieces of the property-based fuzzers (tests/test_fuzz_*.py): reproducible hypothesis
settings, the input classes that still hit known issue-11 bugs, and bitwise snapshots of
everything a rejected call must leave alone."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from hypothesis import HealthCheck, settings

import steadygrad as sg
from steadygrad import random as sg_random

# Input classes the fuzzers exclude because they hit bugs listed in issue 11 (sections 2-3),
# which are being fixed on other branches. Each name is the class a generated case declares
# (see the fuzzers); remove an entry once its fix has landed, and the fuzzers cover it again.
KNOWN_ISSUE_11_CASES: frozenset[str] = frozenset({
    # §3 "Partial optimizer step": an invalid value set later in a param group is found by
    # step() after earlier groups were updated; load_state_dict accepts bad hyperparameters.
    "optimizer.step.bad_group_hyperparameter",
    "optimizer.load_state_dict.bad_hyperparameter",
    "optimizer.load_state_dict.bad_step",
    # §3 "sg.fit checks its data too late" / unclear messages.
    "fit.validation_data",
    "fit.labels_out_of_range",
    "fit.float_labels_for_cross_entropy",
    "fit.batch_size_not_int",
    "evaluate.batch_size",
    "predict.batch_size",
    # §3 "Crash from the public API": eval-mode BatchNorm with its running statistics removed.
    "batchnorm.running_stats_none",
})


def fuzz_settings(max_examples: int, **kw: Any) -> settings:
    """Reproducible in CI: derandomized (examples follow from the test's source), no example
    database, no deadline (a shared 2-core machine has no meaningful per-example time)."""
    return settings(max_examples=max_examples, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture], **kw)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch on n threads inside the block (1 for these tiny shapes: its pool spinning next to
    ours on a 2-core machine only costs time)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def active_isa(name: str) -> Iterator[None]:
    before = sg.get_isa()
    sg.set_isa(name)
    try:
        yield
    finally:
        sg.set_isa(before)


def _leaf(value: Any) -> Any:
    """A comparable copy: arrays keep dtype, shape and bytes; containers are walked."""
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, np.generic):
        return ("scalar", value.dtype.str, value.tobytes())
    if isinstance(value, float):
        return ("float", np.float64(value).tobytes())  # NaN == NaN, -0.0 != 0.0
    if isinstance(value, dict):
        return {k: _leaf(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_leaf(v) for v in value)
    return value


def model_state(model: Any) -> dict[str, Any]:
    """Parameters (values, gradient buffers and their freshness) and buffers, bit for bit."""
    out: dict[str, Any] = {}
    for name, p in model.named_parameters():
        out[f"param {name}"] = _leaf(p.data)
        out[f"grad {name}"] = _leaf(p.grad_buffer) if p.grad_fresh else "stale"
    for name, b in model.named_buffers():
        out[f"buffer {name}"] = _leaf(b)
    return out


def optimizer_state(opt: Any) -> dict[str, Any]:
    """Hyperparameters, step counts, state buffers and skip counters, bit for bit."""
    sd = opt.state_dict()
    return {"optimizer": _leaf(sd), "flat buffers": _leaf(dict(opt._bufs)),
            "steps": _leaf(opt._step.copy())}


def rng_state() -> Any:
    return _leaf(sg_random.generator().bit_generator.state)


def snapshot(model: Any = None, optimizer: Any = None) -> dict[str, Any]:
    """Everything a rejected call must leave exactly as it was."""
    snap: dict[str, Any] = {"rng": rng_state()}
    if model is not None:
        snap.update(model_state(model))
    if optimizer is not None:
        snap.update(optimizer_state(optimizer))
    return snap


def assert_unchanged(before: dict[str, Any], after: dict[str, Any], what: str) -> None:
    changed = [k for k in before if before[k] != after.get(k)] + \
              [k for k in after if k not in before]
    assert not changed, f"{what}: the rejected call changed {changed}"


def raises_clearly(call: Callable[[], Any], names: tuple[str, ...], what: str) -> BaseException:
    """call() must raise TypeError/ValueError/RuntimeError whose message names one of `names`
    (the argument at fault, in the words the API uses). Returns the exception."""
    try:
        call()
    except (TypeError, ValueError, RuntimeError) as e:
        msg = str(e)
        assert any(n in msg for n in names), (
            f"{what}: {type(e).__name__} does not name the argument (any of {names}): {msg!r}")
        return e
    except BaseException as e:  # any other kind is the finding
        raise AssertionError(f"{what}: raised {type(e).__name__} (not TypeError/ValueError/"
                             f"RuntimeError): {e!r}") from e
    raise AssertionError(f"{what}: accepted without an error")
