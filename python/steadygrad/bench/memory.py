"""Memory suite: peak RSS of training each config, one fresh process per framework, net of
that process's interpreter + import baseline, beside steadygrad's `model.summary()` prediction
(parameters, gradients, optimizer state, cached activations, workspace)."""

from __future__ import annotations

import gc
import resource
from typing import Any

from steadygrad.bench import worker
from steadygrad.bench.common import tiny
from steadygrad.bench.models import BUILDERS, CONFIGS, make_data

MB = 1 << 20
FRAMEWORKS = ("steadygrad", "torch", "jax")
PREDICTION_TOLERANCE = 0.10  # |predicted - measured| / measured
L_RATIO_TARGET = 0.8  # steadygrad peak for L <= 0.8x PyTorch's


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak() -> bool:
    """Resets the kernel's high-water mark (VmHWM) to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="utf-8") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_bytes() -> int:
    kb = _status_kb("VmRSS")
    return kb * 1024 if kb is not None else 0


def peak_bytes() -> int:
    kb = _status_kb("VmHWM")
    if kb is None:  # not Linux: ru_maxrss is KiB on Linux, bytes on macOS
        import sys

        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return r if sys.platform == "darwin" else r * 1024
    return kb * 1024


def predict(model: Any, batch: int, opt: Any = None) -> dict[str, int]:
    """steadygrad's own accounting in bytes: model.summary(batch, optimizer=opt) (parameters,
    gradients, buffers, cached activations, grad_input workspace, the GEMM's packing buffers
    and the optimizer's state buffers)."""
    s = model.summary(batch, file=None, optimizer=opt)
    return {k: int(v) for k, v in s.items() if k.endswith("_bytes")}


def measure_in_process(framework: str, config: str, steps: int) -> dict[str, Any]:
    """Runs in a fresh worker after the framework import: data first, then the baseline,
    then model + optimizer + `steps` training steps; peak is the high-water mark."""
    cfg = CONFIGS[config]
    # a throw-away tiny model first: lazily loaded code pages, thread-pool stacks and
    # allocator arenas are the framework's fixed cost, not this model's memory
    tx, ty = make_data(CONFIGS["T"])
    warm_step, _ = BUILDERS[framework](CONFIGS["T"], tx, ty)
    warm_step()
    warm_step()
    del warm_step
    gc.collect()
    x, y = make_data(cfg)
    resettable = reset_peak()
    base = rss_bytes() if resettable else peak_bytes()
    step, model = BUILDERS[framework](cfg, x, y)
    opt = getattr(step, "optimizer", None)
    for _ in range(steps):
        step()
    peak = peak_bytes()
    out: dict[str, Any] = {"baseline_bytes": base, "peak_bytes": peak,
                           "net_bytes": peak - base, "hwm_reset": resettable}
    if framework == "steadygrad":
        out["predicted"] = predict(model, cfg.batch, opt)
    return out


def configs_for(quick: bool) -> list[str]:
    if tiny():  # T's few KiB drown in allocator noise; S takes well under a second
        return ["S"]
    return ["M"] if quick else ["S", "M", "L"]  # quick: one fresh process per framework


def _pred_total(pred: dict[str, int]) -> int | None:
    return pred.get("total_bytes")


def run(*, threads: list[int], repeat: int | None = None, quick: bool = True,
        compare: set[str] | frozenset[str] = frozenset(), progress=None) -> dict[str, Any]:
    """One fresh process per (config, framework) at the first thread count."""
    names = configs_for(quick)
    t = threads[0]
    frameworks = ["steadygrad"] + [f for f in FRAMEWORKS[1:] if f in compare]
    bar = progress(len(names) * (len(frameworks) + 1), "memory") if progress else None
    rows, errors = [], []
    for name in names:
        row: dict[str, Any] = {"config": name, "shape": CONFIGS[name].describe(), "threads": t}
        for fw in frameworks:
            if bar:
                bar.set_postfix_str(f"{name} {fw}")
            res = worker.spawn({"task": "memory", "framework": fw, "config": name,
                                "threads": t, "steps": 3})
            if "error" in res:
                errors.append(f"{fw} {name}: {res['error']}")
            else:
                row[f"{fw}_mb"] = res["net_bytes"] / MB
                row[f"{fw}_baseline_mb"] = res["baseline_bytes"] / MB
                row[f"{fw}_raw"] = res
            if bar:
                bar.update(1)
        # Again with glibc's mmap threshold pinned at its 128 KiB default: glibc otherwise
        # raises it as large blocks are freed, and memory freed while the model is built
        # then stays resident in the heap. The gap between the two columns is that
        # allocator retention, not memory the model holds.
        res = worker.spawn({"task": "memory", "framework": "steadygrad", "config": name,
                            "threads": t, "steps": 3},
                           env_extra={"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)})
        if "error" not in res:
            row["steadygrad_fixed_mmap_mb"] = res["net_bytes"] / MB
        if bar:
            bar.update(1)
        pred = row.get("steadygrad_raw", {}).get("predicted")
        if pred:
            total = _pred_total(pred)
            row["predicted"] = pred
            row["predicted_mb"] = total / MB if total is not None else None
            if total is not None and row.get("steadygrad_mb"):
                err = (total / MB - row["steadygrad_mb"]) / row["steadygrad_mb"]
                row["prediction_error_pct"] = 100.0 * err
                row["prediction_ok"] = abs(err) <= PREDICTION_TOLERANCE
        for fw in frameworks[1:]:
            ours, theirs = row.get("steadygrad_mb"), row.get(f"{fw}_mb")
            row[f"{fw}_x"] = ours / theirs if ours and theirs else None
        rows.append(row)
    if bar:
        bar.close()
    columns = [["config", "config"], ["steadygrad_mb", "sg MiB"],
               ["predicted_mb", "predicted MiB"], ["prediction_error_pct", "pred err %"],
               ["steadygrad_fixed_mmap_mb", "sg MiB, mmap thr 128K"]]
    for fw in frameworks[1:]:
        columns += [[f"{fw}_mb", f"{fw} MiB"], [f"{fw}_x", f"sg/{fw}"]]
    notes = ["peak RSS (VmHWM) of 3 training steps in a fresh process, minus that process's "
             "RSS after the framework import, 2 steps of a tiny throw-away model (lazy "
             "initialisation) and the creation of the batch",
             "predicted = model.summary(batch, optimizer=opt) (parameters, gradients, "
             "buffers, cached activations, grad_input workspace, the GEMM's thread-local "
             "packing buffers, the optimizer's state buffers); 'mmap thr 128K': steadygrad again with MALLOC_MMAP_THRESHOLD_=131072 "
             "(no glibc dynamic threshold, so memory freed during model construction is returned)",
             "ratio columns: steadygrad MiB / peer MiB (below 1 = steadygrad smaller); "
             f"targets: L <= {L_RATIO_TARGET}x torch, prediction within "
             f"{PREDICTION_TOLERANCE:.0%}"]
    return {"suite": "memory", "title": f"Peak training memory, net of baseline ({t} threads)",
            "columns": columns, "rows": rows, "notes": notes + errors, "errors": errors,
            "ratio_label": "steadygrad MiB / peer MiB (lower = steadygrad smaller)"}
