"""GEMM benchmark suite: steadygrad's gemm against numpy (OpenBLAS) and torch, 1 and 2 threads.

Cases: 1024^3 in NN/NT/TN; the MLP layer products for batch 64 and 256 (forward Y = X W^T + b
with ReLU fused, numpy doing matmul, + bias, maximum; dX = dY W; dW = dY^T X); the AVX2 path
against OpenBLAS forced to its Haswell kernel (a subprocess, since OPENBLAS_CORETYPE is read
when numpy loads); the generic path against AVX2. Contenders are timed interleaved, in blocks
over several rounds (see blocked_medians); each figure is a median.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

import steadygrad as sg
from steadygrad._core import _fma_peak_gflops
from steadygrad.bench.common import blas_info, machine_info, time_sample

try:
    import torch
except ImportError:  # torch is optional for the benchmark
    torch = None

MLP_LAYERS = ((784, 256), (256, 256), (784, 1024), (1024, 1024))


@contextmanager
def threads(n: int) -> Iterator[None]:
    """Run steadygrad, numpy's BLAS and torch with n threads each."""
    from threadpoolctl import threadpool_limits

    before = sg.get_num_threads()
    t_before = torch.get_num_threads() if torch is not None else 0
    sg.set_num_threads(n)
    if torch is not None:
        torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n, user_api="blas"):
            yield
    finally:
        sg.set_num_threads(before)
        if torch is not None:
            torch.set_num_threads(t_before)


def blocked_medians(fns: dict[str, Callable[[], Any]], repeat: int, min_time: float,
                    rounds: int = 3) -> dict[str, float]:
    """Median seconds per call of each fn: `rounds` rounds, in each of which every fn gets a
    warm-up of at least 20 ms and then `repeat` samples in one block.

    Blocks, not call-by-call interleaving: numpy (OpenBLAS), torch and steadygrad each keep
    their own thread pool, whose idle workers spin for milliseconds after a call. Interleaved
    at 2 threads on 2 cores, every call would run against the previous library's spinners.
    Rounds still spread a noisy neighbour over all contenders.
    """
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < 0.02:  # warm-up: caches, buffers, other pools asleep
                fn()
            samples[name].extend(time_sample(fn, min_time) for _ in range(repeat))
    return {name: sorted(v)[len(v) // 2] for name, v in samples.items()}


def make_case(kind: str, m: int, n: int, k: int, rng: np.random.Generator) -> dict[str, Any]:
    """Operands and one callable per contender for C (m, n) = op(A) (m, k) op(B) (k, n)."""
    f32 = np.float32
    trans_a = kind == "TN"
    trans_b = kind in ("NT", "fwd")
    a = rng.standard_normal((k, m) if trans_a else (m, k), dtype=f32)
    b = rng.standard_normal((n, k) if trans_b else (k, n), dtype=f32)
    out, out_np = np.empty((m, n), f32), np.empty((m, n), f32)
    a_op, b_op = (a.T if trans_a else a), (b.T if trans_b else b)
    fns: dict[str, Callable[[], Any]] = {}
    if kind == "fwd":
        bias = rng.standard_normal(n, dtype=f32)
        fns["steadygrad"] = lambda: sg.ops.gemm(a, b, trans_b=True, out=out, bias=bias,
                                                activation="relu")

        def np_fwd() -> None:
            np.matmul(a_op, b_op, out=out_np)
            np.add(out_np, bias, out=out_np)
            np.maximum(out_np, 0.0, out=out_np)

        fns["numpy"] = np_fwd
    else:
        fns["steadygrad"] = lambda: sg.ops.gemm(a, b, trans_a=trans_a, trans_b=trans_b, out=out)
        fns["numpy"] = lambda: np.matmul(a_op, b_op, out=out_np)
    if torch is not None:
        ta, tb, tout = torch.from_numpy(a_op), torch.from_numpy(b_op), torch.empty(m, n)
        if kind == "fwd":
            tbias = torch.from_numpy(bias)

            def torch_fwd() -> None:
                torch.addmm(tbias, ta, tb, out=tout)
                torch.relu_(tout)

            fns["torch"] = torch_fwd
        else:
            fns["torch"] = lambda: torch.mm(ta, tb, out=tout)
    return {"fns": fns, "flops": 2.0 * m * n * k, "sup": sg._core._gemm_uses_sup(trans_a, m, a.shape[1])}


def cases(quick: bool) -> list[tuple[str, str, int, int, int]]:
    """(group, kind, m, n, k) rows."""
    rows = [("square", kind, 1024, 1024, 1024) for kind in ("NN", "NT", "TN")]
    batches = (64,) if quick else (64, 256)
    layers = MLP_LAYERS[::3] if quick else MLP_LAYERS
    for batch in batches:
        for fan_in, fan_out in layers:
            rows.append((f"mlp b{batch} {fan_in}->{fan_out}", "fwd", batch, fan_out, fan_in))
            rows.append((f"mlp b{batch} {fan_in}->{fan_out}", "dX", batch, fan_in, fan_out))
            rows.append((f"mlp b{batch} {fan_in}->{fan_out}", "dW", fan_out, fan_in, batch))
    return rows


KIND_TO_LAYOUT = {"NN": "NN", "NT": "NT", "TN": "TN", "fwd": "fwd", "dX": "NN", "dW": "TN"}


def run_suite(thread_counts: list[int], quick: bool, peak: float) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    repeat, min_time = (3, 0.02) if quick else (5, 0.03)
    results = []
    for group, kind, m, n, k in cases(quick):
        case = make_case(KIND_TO_LAYOUT[kind], m, n, k, rng)
        for nt in thread_counts:
            with threads(nt):
                t = blocked_medians(case["fns"], repeat, min_time)
            gf = {name: case["flops"] / sec / 1e9 for name, sec in t.items()}
            row = {"group": group, "kind": kind, "m": m, "n": n, "k": k, "threads": nt,
                   "path": "sup" if case["sup"] else "packed", "gflops": gf,
                   "vs_numpy": gf["steadygrad"] / gf["numpy"],
                   "pct_peak": 100.0 * gf["steadygrad"] / (peak * nt)}
            if "torch" in gf:
                row["vs_torch"] = gf["steadygrad"] / gf["torch"]
            results.append(row)
            print(format_row(row), flush=True)
    return results


def isa_comparison(quick: bool) -> dict[str, Any]:
    """The generic path against avx2 at 1024^3 NN, one thread (target: within 4x)."""
    if "avx2" not in sg.cpu_info()["isa_supported"]:
        return {"skipped": "no avx2 on this CPU"}
    rng = np.random.default_rng(1)
    n = 1024
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), np.float32)
    before = sg.get_isa()

    def on(isa: str) -> Callable[[], Any]:
        def fn() -> None:
            sg.set_isa(isa)
            sg.ops.gemm(a, b, out=out)

        return fn

    try:
        with threads(1):
            t = blocked_medians({"generic": on("generic"), "avx2": on("avx2")},
                                    2, 0.0, rounds=2 if quick else 3)
    finally:
        sg.set_isa(before)
    gf = {isa: 2.0 * n**3 / sec / 1e9 for isa, sec in t.items()}
    return {"shape": "1024^3 NN", "threads": 1, "gflops": gf, "generic_slowdown": gf["avx2"] / gf["generic"]}


def haswell_comparison(thread_counts: list[int], quick: bool) -> dict[str, Any]:
    """1024^3 NN with STEADYGRAD_ISA=avx2 against OpenBLAS forced to OPENBLAS_CORETYPE=Haswell."""
    env = dict(os.environ, OPENBLAS_CORETYPE="Haswell", STEADYGRAD_ISA="avx2")
    env.pop("OPENBLAS_L2_SIZE", None)
    cmd = [sys.executable, "-c",
           "import json, sys; from steadygrad.bench.gemm import _haswell_child; "
           "print(json.dumps(_haswell_child(json.loads(sys.argv[1]), sys.argv[2] == '1')))",
           json.dumps(thread_counts), "1" if quick else "0"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _haswell_child(thread_counts: list[int], quick: bool) -> dict[str, Any]:
    case = make_case("NN", 1024, 1024, 1024, np.random.default_rng(2))
    fns = {name: case["fns"][name] for name in ("steadygrad", "numpy")}
    rows = []
    for nt in thread_counts:
        with threads(nt):
            t = blocked_medians(fns, 3 if quick else 5, 0.03)
        gf = {name: case["flops"] / sec / 1e9 for name, sec in t.items()}
        rows.append({"threads": nt, "gflops": gf, "vs_numpy": gf["steadygrad"] / gf["numpy"]})
    return {"isa": sg.get_isa(), "blas": blas_info(), "rows": rows}


def format_row(r: dict[str, Any]) -> str:
    g = r["gflops"]
    t = f"{g['torch']:7.1f}" if "torch" in g else "      -"
    vt = f"{r['vs_torch']:5.2f}x" if "vs_torch" in r else "     -"
    return (f"| {r['group']:22s} | {r['kind']:3s} | {r['m']}x{r['n']}x{r['k']:<5d} | {r['path']:6s} "
            f"| {r['threads']} | {g['steadygrad']:7.1f} | {g['numpy']:7.1f} | {t} "
            f"| {r['vs_numpy']:5.2f}x | {vt} | {r['pct_peak']:5.1f}% |")


TABLE_HEADER = ("| case | op | m x n x k | path | thr | steadygrad GF/s | numpy GF/s | torch GF/s "
                "| vs numpy | vs torch | % FMA peak |\n"
                "|---|---|---|---|---|---|---|---|---|---|---|")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer shapes and repeats")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--json", default=None, help="write all results to this file")
    args = p.parse_args(argv)
    thread_counts = [int(x) for x in args.threads.split(",")]
    info = machine_info()
    isa = sg.get_isa()
    # Best of several short probes: a neighbour that takes the core only lowers a sample.
    peak = max(_fma_peak_gflops(isa, 0.05) for _ in range(10))
    print(f"cpu: {info['cpu']}  isa: {isa}  FMA peak ({isa}, 1 thread): {peak:.1f} GFLOP/s")
    print(f"blas: {info['blas']}  torch: {info['torch']}")
    print(TABLE_HEADER)
    results = run_suite(thread_counts, args.quick, peak)
    generic = isa_comparison(args.quick)
    print(f"generic vs avx2 (1024^3 NN, 1 thread): {generic}")
    haswell = haswell_comparison(thread_counts, args.quick)
    print(f"avx2 path vs OpenBLAS Haswell kernel (1024^3 NN): {haswell}")
    report = {"machine": info, "isa": isa, "fma_peak_gflops_1thread": peak, "results": results,
              "generic_vs_avx2": generic, "avx2_vs_openblas_haswell": haswell}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return report


if __name__ == "__main__":
    main()
