"""summary(batch) predicts a conv network's training footprint within 10% of the measured peak
(issue 13, Memory): the peak RSS (VmHWM) of building the model and its Adam optimizer and
running 2 training steps (CrossEntropy, backward without dL/dx for the input, step), in a fresh
process, net of that process's RSS after the imports, a throw-away warm-up step of a tiny
model and the creation of the batch (the bench's memory suite, steadygrad/bench/memory.py,
with glibc's mmap threshold pinned so that freed blocks do not stay resident). Networks: C1
(LeNet-5-like on 1x28x28) and C2 (ResNet-8-like on 3x32x32) at batch 64, and a small one."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

TOLERANCE = 0.10  # |predicted - measured| / measured (bench.memory.PREDICTION_TOLERANCE)
MAX_ABS_BYTES = 1 << 20  # below this the allocator's granularity is the error: not compared


def _nets() -> dict[str, tuple[object, tuple[int, ...], int]]:
    from cnn_blocks import resblock

    from steadygrad import nn

    return {
        "C1": (lambda: nn.Sequential(
            nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 4 * 4, 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10)), (1, 28, 28), 64),
        "C2": (lambda: nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            resblock(16, 16, 1), resblock(16, 32, 2), resblock(32, 64, 2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)), (3, 32, 32), 64),
        "small": (lambda: nn.Sequential(
            nn.Conv1d(4, 16, 5, padding=2), nn.BatchNorm1d(16), nn.ReLU(), nn.AvgPool1d(2),
            nn.Conv1d(16, 16, 3, padding=1, groups=16), nn.ReLU(), nn.MaxPool1d(2),
            nn.Flatten(), nn.Linear(16 * 64, 10)), (4, 256), 128),
    }


def _measure(name: str) -> dict[str, int]:
    """Runs in the fresh worker process."""
    import steadygrad as sg
    from steadygrad import nn, optim
    from steadygrad.bench.memory import peak_bytes, reset_peak, rss_bytes

    make, shape, batch = _nets()[name]
    rng = np.random.default_rng(0)

    def train(model: nn.Module, x: np.ndarray, y: np.ndarray, steps: int) -> optim.Optimizer:
        opt = optim.Adam(model.parameters(), lr=1e-3, max_grad_norm=1.0)
        loss = nn.CrossEntropyLoss()
        for _ in range(steps):
            opt.zero_grad()
            loss(model(x), y)
            model.backward(loss.backward(), input_grad=False)
            opt.step()
        return opt

    # lazily loaded code pages, thread stacks, allocator arenas: the process's, not the model's
    warm = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(2 * 9, 2))
    train(warm, rng.standard_normal((4, 1, 8, 8)).astype(np.float32), np.zeros(4, np.int64), 2)
    del warm
    gc.collect()
    x = rng.standard_normal((batch, *shape)).astype(np.float32)
    y = rng.integers(0, 10, batch).astype(np.int64)
    assert reset_peak(), "cannot reset the RSS high-water mark (/proc/self/clear_refs)"
    base = rss_bytes()
    sg.manual_seed(0)
    model = make()
    opt = train(model, x, y, 2)  # the peak: Adam's state exists from the first step on
    peak = peak_bytes()
    predicted = model.summary(batch, shape, file=None, optimizer=opt)
    return {"measured": peak - base, "predicted": int(predicted["total_bytes"]),
            **{k: int(v) for k, v in predicted.items() if k.endswith("_bytes")}}


def _run(name: str) -> dict[str, int]:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(128 * 1024), OMP_NUM_THREADS="2")
    out = subprocess.run([sys.executable, __file__, name], env=env, capture_output=True,
                         text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    result: dict[str, int] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's VmHWM reset")
@pytest.mark.parametrize("name", ["C1", "C2", "small"])
def test_summary_predicts_the_measured_training_peak(name: str) -> None:
    r = _run(name)
    measured, predicted = r["measured"], r["predicted"]
    err = (predicted - measured) / measured
    assert abs(err) <= TOLERANCE or abs(predicted - measured) <= MAX_ABS_BYTES, (
        f"{name}: predicted {predicted / 2**20:.2f} MiB, measured {measured / 2**20:.2f} MiB "
        f"({100 * err:+.1f}%): {r}")


if __name__ == "__main__":
    print(json.dumps(_measure(sys.argv[1])))


def test_summary_counts_a_conv_by_the_layouts_of_its_plan() -> None:
    """A conv inside a channels-last run holds no conversion copies; at the run's edges it holds
    the copies its own memory() reports for those layouts, counted once (summary used to take
    the standalone figure, with both conversions, and add the edge conversions on top)."""
    from steadygrad import nn
    from steadygrad.nn._layout import FIRST, LAST

    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3),
                          nn.Flatten(), nn.Linear(4 * 36, 2))
    rows = {r["name"]: r for r in model.summary(2, (3, 8, 8), file=None, input_grad=True)["layers"]}
    for key, layouts, shape in (("0", (FIRST, LAST), (2, 3, 8, 8)), ("3", (LAST, LAST), (2, 8, 8, 8)),
                                ("5", (LAST, FIRST), (2, 8, 8, 8))):
        conv, lp = model[int(key)], model.plan()[int(key)]
        act, ws = conv.memory(shape, *layouts)
        assert (lp.layout_in, lp.layout_out) == layouts
        assert rows[key]["activation_bytes"] == act, key
        assert rows[key]["workspace_bytes"] == (0 if lp.donate_input else ws), key
    assert rows["3"]["activation_bytes"] == 4 * 2 * 8 * 64  # its output only
