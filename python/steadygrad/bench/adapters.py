"""Adapters from suites written before the CLI's `run(...)` contract (see cli.py) to it: they
call the suite's own entry points and reshape its rows into the common table form. A suite
module that defines `run` itself is called directly and never comes here."""

from __future__ import annotations

import contextlib
import io
from typing import Any


class _RowCounter(io.StringIO):
    """Swallows a suite's own table printing; each printed row advances the progress bar."""

    def __init__(self, bar: Any) -> None:
        super().__init__()
        self.bar = bar

    def write(self, s: str) -> int:
        if s.startswith("|") and self.bar is not None:
            self.bar.update(1)
        return super().write(s)


def gemm(mod: Any, *, threads: list[int], repeat: int | None, quick: bool,
         compare: set[str], progress: Any) -> dict[str, Any]:
    import steadygrad as sg
    from steadygrad.bench.peak import fma_peak

    one_core = fma_peak(1)["gflops"]
    bar = progress(len(mod.cases(quick)) * len(threads), "gemm") if progress else None
    sink = _RowCounter(bar)
    with contextlib.redirect_stdout(sink):
        raw = mod.run_suite(threads, quick, one_core)
        extra: dict[str, Any] = {}
        if not quick:
            extra["generic_vs_avx2"] = mod.isa_comparison(quick)
            if "avx2" in sg.cpu_info()["isa_supported"]:
                extra["avx2_vs_openblas_haswell"] = mod.haswell_comparison(threads, quick)
    if bar is not None:
        bar.close()
    rows = []
    for r in raw:
        g = r["gflops"]
        row = {"case": f"{r['group']} {r['kind']}", "mnk": f"{r['m']}x{r['n']}x{r['k']}",
               "path": r["path"], "threads": r["threads"], "steadygrad_gflops": g["steadygrad"],
               "peak_pct": r["pct_peak"], "raw": r}
        for peer in ("numpy", "torch"):
            if peer in g:
                row[f"{peer}_gflops"] = g[peer]
                row[f"{peer}_x"] = g["steadygrad"] / g[peer]  # = peer time / steadygrad time
        rows.append(row)
    columns = [["case", "case"], ["mnk", "m x n x k"], ["path", "path"], ["threads", "thr"],
               ["steadygrad_gflops", "sg GF/s"], ["peak_pct", "% peak"]]
    for peer in ("numpy", "torch"):
        if rows and f"{peer}_gflops" in rows[0]:
            columns += [[f"{peer}_gflops", f"{peer} GF/s"], [f"{peer}_x", f"{peer}/sg"]]
    notes = ["GFLOP/s = 2mnk / median time; ratio columns: steadygrad GF/s / peer GF/s",
             f"% peak of the measured FMA probe, {one_core:.1f} GFLOP/s per core"]
    for key, val in extra.items():
        notes.append(f"{key}: {val}")
    return {"suite": "gemm", "title": "GEMM (steadygrad.ops.gemm vs numpy/OpenBLAS and torch)",
            "columns": columns, "rows": rows, "notes": notes, **extra}


def optim(mod: Any, *, threads: list[int], repeat: int | None, quick: bool,
          compare: set[str], progress: Any) -> dict[str, Any]:
    """The optimizer suite times steadygrad beside torch.optim, so it needs torch."""
    if "torch" not in compare:
        return {"suite": "optim", "title": "Optimizer step", "rows": [],
                "notes": ["needs torch in --compare (each row pairs steadygrad with torch.optim)"]}
    sizes = ["262k"] if quick else list(mod.SIZES)
    names = ["Adam"] if quick else list(mod.OPTS)
    bar = progress(len(threads) * len(sizes) * len(names) * 2, "optim") if progress else None
    pair = mod._bench_pair

    def counted(*args: Any, **kwargs: Any) -> dict[str, Any]:
        out = pair(*args, **kwargs)
        if bar is not None:
            bar.update(1)
        return out

    mod._bench_pair = counted  # progress without changing the suite
    try:
        raw = mod.run(sizes, threads, names)
    finally:
        mod._bench_pair = pair
        if bar is not None:
            bar.close()
    rows = []
    for r in raw["rows"]:
        probe = raw["probe"][r["threads"]]["rw_gbs"]
        rows.append({**r, "clip": "2-norm" if r["clip"] else "-", "torch_x": r["speedup"],
                     "sg_probe_pct": 100.0 * r["sg_gbs"] / probe})
    columns = [["size", "params"], ["threads", "thr"], ["optimizer", "optimizer"],
               ["clip", "clip"], ["sg_ms", "sg ms"], ["sg_gbs", "sg GB/s"],
               ["sg_probe_pct", "% probe"], ["sg_guard_ms", "sg+guard ms"],
               ["torch_ms", "torch ms"], ["torch_gbs", "torch GB/s"], ["torch_x", "torch/sg"]]
    notes = [f"bandwidth probe, {nt} thread(s): read+write {p['rw_gbs']:.1f} GB/s, read "
             f"{p['read_gbs']:.1f} GB/s" for nt, p in raw["probe"].items()]
    notes.append("torch: Adam/AdamW(fused=True), clip_grad_norm_ before step when clipped")
    return {"suite": "optim", "title": "Optimizer step (fused clip + update vs torch.optim)",
            "columns": columns, "rows": rows, "notes": notes, "probe": raw["probe"]}


ADAPTERS = {"gemm": gemm, "optim": optim}
