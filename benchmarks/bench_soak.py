"""Soak: is resident memory flat over a long run? (A benchmark, not a test: it reports.)

    python benchmarks/bench_soak.py [--steps 20000] [--every 1000] [--fit-steps 4000]
                                    [--fit-every 500] [--json out.json]

Part 1: `--steps` training steps of the benchmark MLP with BatchNorm (steadygrad.bench.models,
config S: batch 64, 784-256-256-10; Adam with max_grad_norm=1.0, the documented loop body),
RSS sampled every `--every` steps. Part 2: sg.fit for about `--fit-steps` steps with every
callback (EarlyStopping, ModelCheckpoint, ReduceLROnPlateauCallback, CSVLogger, TerminateOnNaN, the
GradientMonitor of diagnostics=, the progress bar), validation data and a StepLR scheduler,
RSS sampled every `--fit-every` steps from a callback. Each part prints its series, the growth
from the first sample to the last (the first sample comes after `every` steps, so one-time
allocations such as the GEMM's packing buffers are in the baseline) and the band (max - min).
RSS is VmRSS, what the kernel has resident; a growing count of Python objects is printed
beside it, which tells a Python-side leak from native memory.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import sys
import tempfile
import time
from typing import Any

import numpy as np

import steadygrad as sg
from steadygrad import nn, optim
from steadygrad.bench.memory import rss_bytes
from steadygrad.bench.models import CONFIGS, build_steadygrad, make_data
from steadygrad.bench.peers import machine_info
from steadygrad.callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    ModelCheckpoint,
    ReduceLROnPlateauCallback,
    TerminateOnNaN,
)

MIB = float(1 << 20)


def sample(step: int) -> dict[str, float]:
    return {"step": step, "rss_mib": rss_bytes() / MIB, "objects": len(gc.get_objects())}


def training_loop(steps: int, every: int) -> list[dict[str, float]]:
    """The documented loop body (zero_grad, loss, backward, fused clip + Adam step)."""
    x, y = make_data(CONFIGS["S"])
    step = build_steadygrad(CONFIGS["S"], x, y).step
    series = []
    for i in range(1, steps + 1):
        step()
        if i % every == 0:
            series.append(sample(i))
    return series


class RssSampler(Callback):
    """Samples RSS every `every` optimizer steps of a fit."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.series: list[dict[str, float]] = []

    def on_batch_end(self, step: int, logs: dict[str, float]) -> None:
        if (step + 1) % self.every == 0:
            self.series.append(sample(step + 1))


def fit_with_every_callback(steps: int, every: int, workdir: str) -> list[dict[str, float]]:
    cfg = CONFIGS["S"]
    rng = np.random.default_rng(0)
    n = 50 * cfg.batch  # 50 steps per epoch
    x = rng.standard_normal((n, cfg.dims[0]), dtype=np.float32)
    y = rng.integers(0, cfg.dims[-1], n)
    xv, yv = x[: 4 * cfg.batch], y[: 4 * cfg.batch]
    model = nn.Sequential(nn.Linear(cfg.dims[0], cfg.dims[1]), nn.BatchNorm1d(cfg.dims[1]),
                          nn.ReLU(), nn.Dropout(0.1), nn.Linear(cfg.dims[1], cfg.dims[2]),
                          nn.BatchNorm1d(cfg.dims[2]), nn.ReLU(),
                          nn.Linear(cfg.dims[2], cfg.dims[3]))
    opt = optim.Adam(model.parameters(), lr=1e-3, max_grad_norm=1.0)
    sampler = RssSampler(every)
    callbacks = [
        EarlyStopping(monitor="val_loss", patience=10**6),
        ModelCheckpoint(os.path.join(workdir, "ck.safetensors"), monitor="val_loss"),
        ReduceLROnPlateauCallback(monitor="val_loss", patience=2),
        CSVLogger(os.path.join(workdir, "log.csv")),
        TerminateOnNaN(),
        sampler,
    ]
    epochs = max(1, -(-steps // 50))
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), \
            contextlib.redirect_stderr(null):  # the progress bar runs, unseen
        sg.fit(model, nn.CrossEntropyLoss(), opt, x, y, epochs=epochs, batch_size=cfg.batch,
               validation_data=(xv, yv), callbacks=callbacks, seed=0, verbose=1,
               diagnostics=100, scheduler=optim.lr_scheduler.StepLR(opt, step_size=5))
    return sampler.series


def summarize(series: list[dict[str, float]]) -> dict[str, float]:
    rss = [s["rss_mib"] for s in series]
    return {"first_mib": rss[0], "last_mib": rss[-1], "growth_mib": rss[-1] - rss[0],
            "band_mib": max(rss) - min(rss),
            "objects_growth": series[-1]["objects"] - series[0]["objects"]}


def report(title: str, series: list[dict[str, float]]) -> dict[str, float]:
    print(f"\n{title}")
    print(f"{'step':>8} {'RSS MiB':>10} {'Python objects':>15}")
    for s in series:
        print(f"{s['step']:>8,} {s['rss_mib']:>10.2f} {s['objects']:>15,}")
    summ = summarize(series)
    print(f"growth from step {series[0]['step']:,} to {series[-1]['step']:,}: "
          f"{summ['growth_mib']:+.2f} MiB (band {summ['band_mib']:.2f} MiB), "
          f"Python objects {summ['objects_growth']:+,}")
    return summ


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=20_000)
    p.add_argument("--every", type=int, default=1_000)
    p.add_argument("--fit-steps", type=int, default=4_000)
    p.add_argument("--fit-every", type=int, default=500)
    p.add_argument("--json", help="write the series and the machine description here")
    args = p.parse_args(argv)
    if min(args.steps, args.every, args.fit_steps, args.fit_every) < 1:
        p.error("step counts must be >= 1")
    machine = machine_info(set())
    print(f"steadygrad {sg.__version__}, {machine['cpu_model']}, ISA {machine['isa']}, "
          f"{machine['threads']} threads, load average {machine['loadavg_start']}")
    t0 = time.perf_counter()
    loop = training_loop(args.steps, args.every)
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sg-soak-") as workdir:
        fit = fit_with_every_callback(args.fit_steps, args.fit_every, workdir)
    t2 = time.perf_counter()
    out: dict[str, Any] = {
        "command": ["python", "benchmarks/bench_soak.py", *argv], "machine": machine,
        "loop": {"series": loop, "summary": report(
            f"Training loop: {args.steps:,} steps, MLP {CONFIGS['S'].describe()} with "
            f"BatchNorm, Adam + max_grad_norm ({t1 - t0:.0f} s)", loop)},
        "fit": {"series": fit, "summary": report(
            f"sg.fit with every callback: {fit[-1]['step']:,} steps ({t2 - t1:.0f} s)", fit)},
    }
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
