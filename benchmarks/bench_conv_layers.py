"""Per-layer convolution timings for the issue-13 networks C1 (LeNet-like) and C2 (ResNet-8-like):
forward, dL/dw (+db) and dL/dx of every distinct conv geometry, through the _core bindings on
channels-last arrays, at 1 and 2 threads, as GFLOP/s and % of the FMA peak (the _core probe
times the thread count). Not a test; rerun it to compare kernels:

    PYTHONPATH=python python benchmarks/bench_conv_layers.py [--rounds 15] [--only C2]

dL/dx is timed as (backward with dL/dx) - (backward without): medians of short samples taken
alternately over rounds, so a busy machine shifts all figures alike."""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import numpy as np

import steadygrad as sg
from steadygrad import _core
from steadygrad.bench.timing import time_sample

# name: (n, h, w, c_in, c_out, k, stride, pad, first layer (no dL/dx in training))
LAYERS: dict[str, tuple[int, int, int, int, int, int, int, int, bool]] = {
    "C1.conv1 1->6 5x5 28": (64, 28, 28, 1, 6, 5, 1, 0, True),
    "C1.conv2 6->16 5x5 12": (64, 12, 12, 6, 16, 5, 1, 0, False),
    "C2.stem 3->16 3x3 32": (64, 32, 32, 3, 16, 3, 1, 1, True),
    "C2.s1 16->16 3x3 32": (64, 32, 32, 16, 16, 3, 1, 1, False),
    "C2.s2a 16->32 3x3/2 32": (64, 32, 32, 16, 32, 3, 2, 1, False),
    "C2.s2b 32->32 3x3 16": (64, 16, 16, 32, 32, 3, 1, 1, False),
    "C2.s2p 16->32 1x1/2 32": (64, 32, 32, 16, 32, 1, 2, 0, False),
    "C2.s3a 32->64 3x3/2 16": (64, 16, 16, 32, 64, 3, 2, 1, False),
    "C2.s3b 64->64 3x3 8": (64, 8, 8, 64, 64, 3, 1, 1, False),
    "C2.s3p 32->64 1x1/2 16": (64, 16, 16, 32, 64, 1, 2, 0, False),
}


def _calls(spec: tuple[int, ...]) -> tuple[float, dict[str, Callable[[], object]]]:
    n, h, w, ci, co, k, s, p, _ = spec
    g = _core.ConvGeometry(n=n, h=h, w=w, c_in=ci, c_out=co, kh=k, kw=k, sh=s, sw=s,
                           ph0=p, ph1=p, pw0=p, pw1=p)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, h, w, ci)).astype(np.float32)
    wt = rng.standard_normal((co, ci, k, k)).astype(np.float32)
    b = np.zeros(co, np.float32)
    y = np.empty((n, g.oh, g.ow, co), np.float32)
    dy = rng.standard_normal(size=(n, g.oh, g.ow, co), dtype=np.float32)
    dw, db, dx = np.empty_like(wt), np.empty_like(b), np.empty_like(x)
    flops = 2.0 * n * g.oh * g.ow * co * ci * k * k
    return flops, {
        "fwd": lambda: _core.conv2d_forward(x, wt, b, g, out=y),
        "dw": lambda: _core.conv2d_backward(dy, x, wt, g, dw, db, compute_grad_input=False),
        "bwd": lambda: _core.conv2d_backward(dy, x, wt, g, dw, db, grad_input=dx),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--min-time", type=float, default=0.01, help="seconds per sample")
    ap.add_argument("--only", default="", help="substring of the layer names to run")
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    isa = sg.get_isa()
    peak1 = _core._fma_peak_gflops(isa, 0.2)
    print(f"isa {isa}, FMA peak {peak1:.1f} GF/s per thread")
    totals: dict[int, dict[str, float]] = {t: {"fwd": 0.0, "dw": 0.0, "dx": 0.0} for t in threads}
    for name, spec in LAYERS.items():
        if args.only not in name:
            continue
        flops, calls = _calls(spec)
        samples: dict[tuple[int, str], list[float]] = {}
        for _ in range(args.rounds):
            for t in threads:
                sg.set_num_threads(t)
                for what, fn in calls.items():
                    if what == "bwd" and spec[-1]:
                        continue
                    fn()
                    samples.setdefault((t, what), []).append(time_sample(fn, args.min_time))
        for t in threads:
            med = {what: statistics.median(v) for (tt, what), v in samples.items() if tt == t}
            if "bwd" in med:
                med["dx"] = max(med.pop("bwd") - med["dw"], 1e-9)
            cells = []
            for what in ("fwd", "dw", "dx"):
                if what not in med:
                    cells.append(f"{what} {'-':>23}")
                    continue
                totals[t][what] += med[what]
                gf = flops / med[what] / 1e9
                cells.append(f"{what} {med[what] * 1e6:7.0f}us {gf:6.1f}GF {100 * gf / (peak1 * t):3.0f}%")
            print(f"{name:26s} t{t}  " + "  ".join(cells))
    sg.set_num_threads(max(threads))
    for t in threads:
        print(f"total t{t}: " + "  ".join(f"{k} {v * 1e3:.2f}ms" for k, v in totals[t].items()))


if __name__ == "__main__":
    main()
