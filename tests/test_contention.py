"""fit's guard against shared cores (steadygrad._threads.Contention): while other processes
hold the cores, each step runs on the cores they leave free (at least one), with results equal
to the uncontended fit's (every kernel is bitwise thread-count independent)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import num_threads

import steadygrad as sg
from steadygrad import nn, optim
from steadygrad._threads import Contention
from steadygrad.callbacks import Callback


@pytest.mark.parametrize("running, cores, free", [(1, 2, 2), (2, 2, 1), (3, 2, 1), (9, 2, 1),
                                                  (5, 16, 12), (1, 16, 16)])
def test_free_cores_from_loadavg(tmp_path: Path, running: int, cores: int, free: int) -> None:
    f = tmp_path / "loadavg"
    f.write_text(f"1.50 1.20 0.90 {running}/412 12345\n")
    c = Contention()
    c.LOADAVG, c._cores = str(f), cores  # type: ignore[misc]
    assert c._sample() == free


def test_unreadable_loadavg_never_intervenes(tmp_path: Path) -> None:
    c = Contention()
    c.LOADAVG = str(tmp_path / "missing")  # type: ignore[misc]
    assert c._sample() == c._cores


class Threads(Callback):
    def __init__(self) -> None:
        self.seen: list[int] = []

    def on_before_optimizer_step(self, step: int) -> None:
        self.seen.append(sg.get_num_threads())


def _fit(monkeypatch: pytest.MonkeyPatch, free: int | None) -> tuple[Any, list[int]]:
    if free is not None:
        monkeypatch.setattr(Contention, "_sample", lambda self: free)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((96, 10)).astype(np.float32)
    y = rng.integers(0, 3, 96)
    sg.manual_seed(1)
    model = nn.Sequential(nn.Linear(10, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 3))
    cb = Threads()
    with num_threads(2):
        h = sg.fit(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=1e-2), x, y,
                   epochs=2, batch_size=16, seed=0, verbose=0, callbacks=[cb])
        assert sg.get_num_threads() == 2  # restored after each step
    return (h, model), cb.seen


def test_a_contended_fit_steps_on_the_free_cores_with_the_same_results(
        monkeypatch: pytest.MonkeyPatch) -> None:
    (h1, m1), seen1 = _fit(monkeypatch, 2)
    assert seen1 == [2] * 12
    (h2, m2), seen2 = _fit(monkeypatch, 1)
    assert seen2 == [1] * 12
    assert h1.steps == h2.steps and h1.history["loss"] == h2.history["loss"]
    for (k, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items(), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=k)
