"""Soak: RSS over many training steps (not a test: a benchmark whose figure is the growth).

20,000 explicit training steps of an MLP with BatchNorm (Adam with clipping; forward, loss,
backward, step), RSS sampled every 1,000 steps; then a fit with every callback and the
gradient monitor over 2,000 steps, sampled per epoch. Prints both series and the growth from
the first sample (after warm-up) to the last.

    python benchmarks/bench_soak.py [--steps 20000] [--every 1000] [--fit-steps 2000] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile

import numpy as np

import steadygrad as sg
from steadygrad import callbacks, nn, optim


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def model() -> nn.Sequential:
    sg.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Dropout(0.1),
                         nn.Linear(256, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Linear(256, 10))


def soak_steps(steps: int, every: int) -> list[tuple[int, float]]:
    m = model()
    opt = optim.Adam(m.parameters(), lr=1e-3, max_grad_norm=1.0)
    lf = nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 64)).astype(np.float32)
    y = rng.integers(0, 10, 128)
    series = []
    for i in range(1, steps + 1):
        opt.zero_grad()
        lf(m(x), y)
        m.backward(lf.backward(), input_grad=False)
        opt.step()
        if i % every == 0:
            series.append((i, rss_mib()))
    return series


def soak_fit(total_steps: int) -> list[tuple[int, float]]:
    m = model()
    opt = optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2048, 64)).astype(np.float32)
    y = rng.integers(0, 10, 2048)
    per_epoch = 2048 // 64
    epochs = max(1, total_steps // per_epoch)
    series: list[tuple[int, float]] = []

    class Sample(callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:  # type: ignore[override]
            series.append(((epoch + 1) * per_epoch, rss_mib()))

    with tempfile.TemporaryDirectory() as d:
        cbs = [callbacks.EarlyStopping(monitor="val_loss", patience=10 ** 6),
               callbacks.ModelCheckpoint(os.path.join(d, "best.safetensors"), monitor="val_loss"),
               callbacks.ReduceLROnPlateauCallback(monitor="val_loss", patience=10 ** 6),
               callbacks.CSVLogger(os.path.join(d, "log.csv")), callbacks.TerminateOnNaN(),
               Sample()]
        sg.fit(m, nn.CrossEntropyLoss(), opt, x, y, epochs=epochs, batch_size=64,
               validation_data=(x[:256], y[:256]), callbacks=cbs, diagnostics=50, verbose=0)
    return series


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--every", type=int, default=1000)
    ap.add_argument("--fit-steps", type=int, default=2000)
    ap.add_argument("--json")
    args = ap.parse_args()
    info = sg.cpu_info()
    print(f"# {cpu_model()}, ISA path {info['isa']}, {info['threads']} threads, "
          f"steadygrad {info['version']}, Python {sys.version.split()[0]}")
    steps = soak_steps(args.steps, args.every)
    fit = soak_fit(args.fit_steps)
    out = {"cpu": cpu_model(), "isa": info["isa"], "threads": info["threads"],
           "steps": steps, "fit": fit}
    for name, series in (("training steps", steps), ("fit with callbacks", fit)):
        print(f"{name}: " + ", ".join(f"{i}: {r:.1f}" for i, r in series) + " (MiB)")
        if series:
            print(f"  growth from the first sample to the last: {series[-1][1] - series[0][1]:+.2f} MiB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
