"""Memory suite: peak RSS of training each config, one fresh process per (config, framework),
net of that process's interpreter + import baseline, beside steadygrad's `model.summary()`
prediction (parameters, gradients, optimizer state, cached activations, workspace)."""

from __future__ import annotations

import gc
import resource
import sys
from typing import Any, ClassVar

from steadygrad.bench import suite
from steadygrad.bench.models import BUILDERS, CONFIGS, make_data

MB = 1 << 20
PEERS = ("torch", "jax")
STEPS = 3
# Last, steadygrad again with glibc's mmap threshold pinned at its 128 KiB default: glibc
# otherwise raises it as large blocks are freed, and memory freed while the model is built
# then stays resident in the heap. The gap between the two columns is that allocator
# retention, not memory the model holds.
FIXED_MMAP = suite.Runtime("steadygrad", (("MALLOC_MMAP_THRESHOLD_", str(128 * 1024)),))
RUNTIMES = {"steadygrad": suite.STEADYGRAD, "torch": suite.TORCH, "jax": suite.JAX,
            "steadygrad_fixed_mmap": FIXED_MMAP}
PREDICTION_TOLERANCE = 0.10  # |predicted - measured| / measured
RATIO_TARGETS = {"L": 0.8, "C2": 0.8}  # steadygrad peak <= this x PyTorch's


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
        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return r if sys.platform == "darwin" else r * 1024
    return kb * 1024


def predict(model: Any, batch: int, opt: Any = None,
            input_shape: tuple[int, ...] | None = None) -> dict[str, int]:
    """steadygrad's own accounting in bytes: model.summary(batch, input_shape, optimizer=opt)
    (parameters, gradients, buffers, cached activations, grad_input workspace, the GEMM's
    packing buffers and the optimizer's state buffers). input_shape: per sample, needed
    where summary cannot infer it (a conv net's (C, H, W))."""
    s = model.summary(batch, input_shape, file=None, optimizer=opt)
    return {k: int(v) for k, v in s.items() if k.endswith("_bytes")}


def measure_in_process(framework: str, config: str, steps: int) -> dict[str, Any]:
    """Runs in a fresh worker after the framework import: data first, then the baseline,
    then model + optimizer + `steps` training steps; peak is the high-water mark."""
    cfg = CONFIGS[config]
    # a throw-away tiny model of the same kind first (an MLP for an MLP, a CNN for a CNN):
    # lazily loaded code pages, thread-pool stacks and allocator arenas are the framework's
    # fixed cost, not this model's memory
    tiny = CONFIGS[cfg.warmup]
    tx, ty = make_data(tiny)
    warm = BUILDERS[framework](tiny, tx, ty)
    warm.step()
    warm.step()
    del warm
    gc.collect()
    x, y = make_data(cfg)
    resettable = reset_peak()
    base = rss_bytes() if resettable else peak_bytes()
    built = BUILDERS[framework](cfg, x, y)
    for _ in range(steps):
        built.step()
    peak = peak_bytes()
    out: dict[str, Any] = {"baseline_bytes": base, "peak_bytes": peak,
                           "net_bytes": peak - base, "hwm_reset": resettable}
    if framework == "steadygrad":
        out["predicted"] = predict(built.model, cfg.batch, built.optimizer, cfg.input_shape)
    return out


def configs_for(size: suite.Size) -> list[str]:
    # tiny: T's few KiB drown in allocator noise, S takes well under a second;
    # quick: one fresh process per framework
    return {"tiny": ["S"], "quick": ["M", "C2"], "full": ["S", "M", "L", "C1", "C2"]}[size]


class MemorySuite(suite.BaseSuite):
    name = "memory"
    about = ("Peak resident memory of 3 training steps of each configuration, in a fresh "
             "process per (configuration, framework), net of the interpreter and imports, "
             "against PyTorch and JAX, beside steadygrad's model.summary() prediction. "
             "--quick: MLP M and CNN C2; --full: S, M, L, C1, C2 (--configs picks some).")
    durations = (60, 150)  # measured: quick C1+C2 76 s; full S+M+L 65 s, C1+C2 70 s
    peers = frozenset(PEERS)
    isolate = True  # a clean heap for each measurement
    first_threads_only = True
    # one measurement of STEPS steps per process; nothing is timed
    plans: ClassVar[dict[suite.Size, suite.Plan]] = dict.fromkeys(
        ("tiny", "quick", "full"), suite.Plan(repeat=1))

    config_names = tuple(CONFIGS)

    def cases(self, size: suite.Size) -> list[suite.Case]:
        return self.named_cases(configs_for(size))

    def named_cases(self, names: list[str]) -> list[suite.Case]:
        return [suite.Case(name, {"config": name}, dict(RUNTIMES)) for name in names]

    def measure(self, case: suite.Case, contender: str, plan: suite.Plan) -> dict[str, Any]:
        framework = case.contenders[contender].framework
        return measure_in_process(framework, case.params["config"], STEPS)

    def report(self, measured: list[suite.Measured], run: suite.RunInfo) -> dict[str, Any]:
        peers = [p for p in PEERS if any(p in m.case.contenders for m in measured)]
        rows, errors = [], []
        for m in measured:
            errors += m.errors()
            rows.append(_row(m, peers))
        columns = [["config", "config"], ["steadygrad_mb", "sg MiB"],
                   ["predicted_mb", "predicted MiB"], ["prediction_ratio", "pred/meas"],
                   ["prediction_error_pct", "pred err %"],
                   ["steadygrad_fixed_mmap_mb", "sg MiB, mmap thr 128K"]]
        for fw in peers:
            columns += [[f"{fw}_mb", f"{fw} MiB"], suite.ratio_column(fw)]
        t = run.threads[0]
        return {"suite": "memory", "title": f"Peak training memory, net of baseline ({t} threads)",
                "columns": columns, "rows": rows, "notes": NOTES + errors, "errors": errors,
                "ratio_label": "steadygrad MiB / peer MiB (lower = steadygrad smaller)",
                "ratio_sense": "memory"}


def _row(m: suite.Measured, peers: list[str]) -> dict[str, Any]:
    name = m.case.key
    row: dict[str, Any] = {"config": name, "shape": CONFIGS[name].describe(), "threads": m.threads}
    for fw in ("steadygrad", *peers):
        res = m.results.get(fw, {})
        if "net_bytes" in res:
            row[f"{fw}_mb"] = res["net_bytes"] / MB
            row[f"{fw}_baseline_mb"] = res["baseline_bytes"] / MB
            row[f"{fw}_raw"] = res
    fixed = m.results.get("steadygrad_fixed_mmap", {})
    if "net_bytes" in fixed:
        row["steadygrad_fixed_mmap_mb"] = fixed["net_bytes"] / MB
    pred = row.get("steadygrad_raw", {}).get("predicted")
    if pred:
        total = pred.get("total_bytes")
        row["predicted"] = pred
        row["predicted_mb"] = total / MB if total is not None else None
        if total is not None and row.get("steadygrad_mb"):
            err = (total / MB - row["steadygrad_mb"]) / row["steadygrad_mb"]
            row["prediction_ratio"] = 1.0 + err
            row["prediction_error_pct"] = 100.0 * err
            row["prediction_ok"] = abs(err) <= PREDICTION_TOLERANCE
    for fw in peers:
        ours, theirs = row.get("steadygrad_mb"), row.get(f"{fw}_mb")
        row[f"{fw}_x"] = ours / theirs if ours and theirs else None
    target = RATIO_TARGETS.get(name)
    if target is not None and row.get("torch_x") is not None:
        row["torch_target_x"] = target
        row["torch_target_met"] = row["torch_x"] <= target
    return row


NOTES = [
    "peak RSS (VmHWM) of 3 training steps in a fresh process, minus that process's RSS after "
    "the framework import, 2 steps of a tiny throw-away model (lazy initialisation) and the "
    "creation of the batch; the tiny model is an MLP for the MLPs, a small CNN for C1/C2",
    "predicted = model.summary(batch, optimizer=opt) (parameters, gradients, buffers, cached "
    "activations, grad_input workspace, the GEMM's thread-local packing buffers, the "
    "optimizer's state buffers); 'mmap thr 128K': steadygrad again with "
    "MALLOC_MMAP_THRESHOLD_=131072 (no glibc dynamic threshold, so memory freed during model "
    "construction is returned)",
    "sg vs <peer>: steadygrad's peak is that many times smaller (or larger) than the peer's; "
    "the JSON's <peer>_x is steadygrad MiB / peer MiB (below 1: steadygrad smaller); targets: " + ", ".join(f"{k} <= {v}x torch" for k, v in RATIO_TARGETS.items())
    + f", prediction within {PREDICTION_TOLERANCE:.0%} (pred/meas: predicted / measured)"]
SUITE: suite.Suite = MemorySuite()
