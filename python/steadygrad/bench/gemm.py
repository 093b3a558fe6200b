"""GEMM suite: steadygrad's gemm against numpy (OpenBLAS) and torch.

Cases: 1024^3 in NN/NT/TN; the MLP layer products for batch 64 and 256 (forward Y = X W^T + b
with ReLU fused, numpy doing matmul, + bias, maximum; dX = dY W; dW = dY^T X); with --full
also the generic path against AVX2 (1 thread) and the AVX2 path against OpenBLAS forced to
its Haswell kernel, each a runtime started with STEADYGRAD_ISA / OPENBLAS_CORETYPE set, since
both are read when the library loads. Timing is runner.py's: each library (numpy, torch,
steadygrad) in a fresh process of its own, rounds interleaved.

Precision axis: every shape also as a "bf16" row, steadygrad at sg.set_matmul_precision("bf16")
(bf16 inputs, fp32 accumulation and storage; the row names the bf16 path that ran) against
torch's bf16 mm (bfloat16 tensors in and out); numpy has no bf16 GEMM."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

import steadygrad as sg
from steadygrad.bench import suite
from steadygrad.bench.peak import fma_peak
from steadygrad.bench.peers import blas_info
from steadygrad.bench.timing import timed

MLP_LAYERS = ((784, 256), (256, 256), (784, 1024), (1024, 1024))
KIND_TO_LAYOUT = {"NN": "NN", "NT": "NT", "TN": "TN", "fwd": "fwd", "dX": "NN", "dW": "TN"}
PEERS = ("numpy", "torch")
PRECISIONS = ("fp32", "bf16")
ISA_KEY, HASWELL_KEY = "generic vs avx2", "avx2 vs OpenBLAS Haswell"
Shape = tuple[str, str, int, int, int]  # (group, kind, m, n, k)


def _isa(isa: str) -> suite.Runtime:
    return suite.Runtime("steadygrad", (("STEADYGRAD_ISA", isa),))


HASWELL_NUMPY = suite.Runtime("numpy", (("OPENBLAS_CORETYPE", "Haswell"),
                                        ("OPENBLAS_L2_SIZE", None)))


def shapes(size: suite.Size) -> list[Shape]:
    if size == "tiny":
        return [("square", "NN", 64, 64, 64), ("mlp b8 16->32", "fwd", 8, 32, 16)]
    rows: list[Shape] = [("square", kind, 1024, 1024, 1024) for kind in ("NN", "NT", "TN")]
    batches = (64, 256) if size == "full" else (64,)
    layers = MLP_LAYERS if size == "full" else MLP_LAYERS[::3]
    for batch in batches:
        for fan_in, fan_out in layers:
            group = f"mlp b{batch} {fan_in}->{fan_out}"
            rows += [(group, "fwd", batch, fan_out, fan_in), (group, "dX", batch, fan_in, fan_out),
                     (group, "dW", fan_out, fan_in, batch)]
    return rows


def _params(group: str, kind: str, m: int, n: int, k: int,
            precision: str = "fp32") -> dict[str, Any]:
    return {"group": group, "kind": kind, "m": m, "n": n, "k": k, "precision": precision}


def contender_fn(params: dict[str, Any], framework: str) -> Callable[[], object]:
    """C (m, n) = op(A) (m, k) op(B) (k, n) in `framework`, on seeded operands."""
    layout, m, n, k = KIND_TO_LAYOUT[params["kind"]], params["m"], params["n"], params["k"]
    trans_a, trans_b = layout == "TN", layout in ("NT", "fwd")
    rng = np.random.default_rng(0)
    a = rng.standard_normal((k, m) if trans_a else (m, k), dtype=np.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n), dtype=np.float32)
    bias = rng.standard_normal(n, dtype=np.float32)
    out = np.empty((m, n), np.float32)
    a_op, b_op = (a.T if trans_a else a), (b.T if trans_b else b)
    fwd = layout == "fwd"
    if framework == "steadygrad":
        if fwd:
            return lambda: sg.ops.gemm(a, b, trans_b=True, out=out, bias=bias, activation="relu")
        return lambda: sg.ops.gemm(a, b, trans_a=trans_a, trans_b=trans_b, out=out)
    if framework == "numpy":
        def np_fn() -> None:
            np.matmul(a_op, b_op, out=out)
            if fwd:
                np.add(out, bias, out=out)
                np.maximum(out, 0.0, out=out)

        return np_fn
    if framework == "torch":
        import torch

        ta, tb, tout, tbias = (torch.from_numpy(a_op), torch.from_numpy(b_op), torch.empty(m, n),
                               torch.from_numpy(bias))
        if params.get("precision") == "bf16":  # torch's bf16 mm: bfloat16 in and out
            ta, tb, tout, tbias = (t.to(torch.bfloat16) for t in (ta, tb, tout, tbias))

        def torch_fn() -> None:
            if fwd:
                torch.addmm(tbias, ta, tb, out=tout)
                torch.relu_(tout)
            else:
                torch.mm(ta, tb, out=tout)

        return torch_fn
    raise ValueError(f"gemm: no contender for framework {framework!r}")


def _gflops(m: suite.Measured) -> dict[str, float]:
    p = m.case.params
    flops = 2.0 * p["m"] * p["n"] * p["k"]
    return {name: flops / s / 1e9 for name in m.results if (s := m.seconds(name))}


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


class GemmSuite(suite.BaseSuite):
    name = "gemm"
    about = ("GEMM throughput (GFLOP/s and % of the FMA peak) of steadygrad.ops.gemm against "
             "numpy (OpenBLAS) and torch: 1024^3 products in the NN, NT and TN layouts and the "
             "forward, dX and dW products of MLP layers at batch 64. --full adds batch 256 and "
             "more layer shapes, the generic path against AVX2 at 1 thread and AVX2 against "
             "OpenBLAS forced to its Haswell kernel.")
    # full: 97 s measured at --threads 1,2 (2026-11-25) before the bf16 rows; with them, and
    # quick, estimated
    durations = (30, 150)
    peers = frozenset(PEERS)
    plans: ClassVar[dict[suite.Size, suite.Plan]] = {
        "tiny": suite.Plan(repeat=1, warmup=1),
        "quick": suite.Plan(repeat=6, rounds=2, min_time=0.02, warmup_s=0.02),
        "full": suite.Plan(repeat=15, rounds=3, min_time=0.03, warmup_s=0.02)}

    def cases(self, size: suite.Size) -> list[suite.Case]:
        both = {"steadygrad": suite.STEADYGRAD, "numpy": suite.NUMPY, "torch": suite.TORCH}
        bf16 = {"steadygrad": suite.STEADYGRAD, "torch": suite.TORCH}
        out = [suite.Case(f"{g} {kind}", _params(g, kind, m, n, k), both)
               for g, kind, m, n, k in shapes(size)]
        out += [suite.Case(f"{g} {kind} bf16", _params(g, kind, m, n, k, "bf16"), bf16)
                for g, kind, m, n, k in shapes(size)[:1 if size == "tiny" else None]]
        if size == "full" and "avx2" in sg.cpu_info()["isa_supported"]:
            square = _params("square", "NN", 1024, 1024, 1024)
            isas = {"generic": _isa("generic"), "avx2": _isa("avx2")}
            out.append(suite.Case(ISA_KEY, square, isas, threads=1))
            forced = {"steadygrad": _isa("avx2"), "numpy": HASWELL_NUMPY}
            out.append(suite.Case(HASWELL_KEY, square, forced))
        return out

    def measure(self, case: suite.Case, contender: str, plan: suite.Plan) -> dict[str, Any]:
        framework = case.contenders[contender].framework
        precision = "bf16" if case.params.get("precision") == "bf16" else "highest"
        with sg.set_matmul_precision(precision):  # steadygrad's flag; the others ignore it
            out = timed(contender_fn(case.params, framework), plan)
            if framework == "steadygrad" and precision == "bf16":
                out["info"] = {"bf16_path": sg.cpu_info()["bf16_path"]}
        if case.key == HASWELL_KEY:  # what the forced runtimes really ran
            out["info"] = {"isa": sg.get_isa(), "blas": blas_info()}
        return out

    def report(self, measured: list[suite.Measured], run: suite.RunInfo) -> dict[str, Any]:
        rows: list[dict[str, Any]] = []
        errors: list[str] = []
        extra: dict[str, Any] = {}
        haswell: list[dict[str, Any]] = []
        for m in measured:
            errors += m.errors()
            gf = _gflops(m)
            if m.case.key == ISA_KEY:
                extra["generic_vs_avx2"] = {
                    "shape": "1024^3 NN", "threads": 1, "gflops": gf,
                    "generic_slowdown": _ratio(gf.get("avx2"), gf.get("generic"))}
            elif m.case.key == HASWELL_KEY:
                haswell.append({"threads": m.threads, "gflops": gf,
                                "vs_numpy": _ratio(gf.get("steadygrad"), gf.get("numpy"))})
                info = m.results.get("steadygrad", {}).get("info", {})
                blas = m.results.get("numpy", {}).get("info", {}).get("blas")
                extra["avx2_vs_openblas_haswell"] = {"isa": info.get("isa"), "blas": blas,
                                                     "rows": haswell}
            else:
                rows.append(_row(m, gf))
        _bf16_speedups(rows)
        if run.size == "full" and "generic_vs_avx2" not in extra:
            extra["generic_vs_avx2"] = {"skipped": "no avx2 on this CPU"}
        order = {m.case.key: i for i, m in reversed(list(enumerate(measured)))}
        rows.sort(key=lambda r: order[r["case"]])  # a case's thread counts side by side
        columns = [["case", "case"], ["mnk", "m x n x k"], ["precision", "prec"],
                   ["path", "path"], ["threads", "thr"], ["steadygrad_gflops", "sg GF/s"],
                   ["peak_pct", "% peak"]]
        if any(r["precision"] == "bf16" for r in rows):
            columns.append(["bf16_x", "bf16 vs fp32"])
        for peer in PEERS:
            if any(f"{peer}_gflops" in r for r in rows):
                columns += [[f"{peer}_gflops", f"{peer} GF/s"], suite.ratio_column(peer)]
        notes = ["GFLOP/s = 2mnk / median time", suite.TIME_RATIO_NOTE,
                 f"% peak of thr x one core's peak ({fma_peak(1)['source']}); fp32 rows only",
                 "bf16 rows: steadygrad at matmul precision bf16 (path: the bf16 kernel that "
                 "ran) vs torch bf16 mm; bf16 vs fp32: steadygrad's fp32 time of the same "
                 "product / its bf16 time",
                 run.plan.describe()]
        notes += [f"{key}: {val}" for key, val in extra.items()] + errors
        return {"suite": "gemm", "title": "GEMM (steadygrad.ops.gemm vs numpy/OpenBLAS and torch)",
                "columns": columns, "rows": rows, "notes": notes, "errors": errors, **extra}


def _row(m: suite.Measured, gf: dict[str, float]) -> dict[str, Any]:
    p, nt = m.case.params, m.threads
    precision = p.get("precision", "fp32")
    trans_a = KIND_TO_LAYOUT[p["kind"]] == "TN"
    ours, peak = gf.get("steadygrad"), fma_peak(nt)["gflops"]
    if precision == "bf16":  # A always packed; the bf16 kernel the worker reported
        info = m.results.get("steadygrad", {}).get("info", {})
        path, peak = f"bf16 {info.get('bf16_path', '?')}", None
    else:
        sup = sg._core._gemm_uses_sup(trans_a, p["m"], p["m"] if trans_a else p["k"])
        path = "sup" if sup else "packed"
    raw: dict[str, Any] = {
        "group": p["group"], "kind": p["kind"], "m": p["m"], "n": p["n"], "k": p["k"],
        "precision": precision, "threads": nt, "path": path, "gflops": gf,
        "vs_numpy": _ratio(ours, gf.get("numpy")),
        "pct_peak": 100.0 * ours / peak if ours and peak else None}
    row = {"case": m.case.key, "mnk": f"{p['m']}x{p['n']}x{p['k']}", "precision": precision,
           "path": path, "threads": nt, "steadygrad_gflops": ours, "peak_pct": raw["pct_peak"],
           "raw": raw}
    for peer in PEERS:
        if peer in gf:
            raw[f"vs_{peer}"] = _ratio(ours, gf[peer])
            row[f"{peer}_gflops"] = gf[peer]
            row[f"{peer}_x"] = raw[f"vs_{peer}"]  # = peer time / steadygrad time
    return row


SUITE: suite.Suite = GemmSuite()


def _bf16_speedups(rows: list[dict[str, Any]]) -> None:
    """Each bf16 row's bf16_x: steadygrad's GFLOP/s there over its fp32 row's (same product,
    same thread count)."""
    fp32 = {(r["mnk"], r["raw"]["kind"], r["threads"]): r["steadygrad_gflops"]
            for r in rows if r["precision"] == "fp32"}
    for r in rows:
        if r["precision"] == "bf16":
            base = fp32.get((r["mnk"], r["raw"]["kind"], r["threads"]))
            r["bf16_x"] = r["raw"]["bf16_vs_fp32"] = _ratio(r["steadygrad_gflops"], base)
