"""Training-step suite: ms/step, samples/s, GFLOP/s and % of the FMA peak of one full step
(forward, CrossEntropyLoss, backward, global-norm clip 1.0, Adam) for the S/M/L MLPs, in
steadygrad, PyTorch (Adam(fused=True) + clip_grad_norm_) and JAX/Optax (jit)."""

from __future__ import annotations

from typing import Any

from steadygrad.bench import worker
from steadygrad.bench.common import time_sample, tiny
from steadygrad.bench.models import BUILDERS, CONFIGS, make_data
from steadygrad.bench.peak import fma_peak

# the targets: steadygrad speed-up over each peer (peer ms / steadygrad ms)
TARGETS = {"S": {"torch": 3.0, "jax": 1.5}, "M": {"torch": 1.8, "jax": 1.2},
           "L": {"torch": 2.0, "jax": 1.5}}
PEAK_TARGET = {"L": 75.0}
FRAMEWORKS = ("steadygrad", "torch", "jax")


def time_in_process(framework: str, config: str, repeat: int, min_time: float) -> dict[str, Any]:
    """Median seconds per step after two warm-up steps (JAX's first call compiles)."""
    cfg = CONFIGS[config]
    x, y = make_data(cfg)
    step, _ = BUILDERS[framework](cfg, x, y)
    for _ in range(2):
        step()
    # seconds per step, each sample at least min_time long
    samples = [time_sample(step, min_time) for _ in range(repeat)]
    ordered = sorted(samples)
    # the median is the figure; the best shows how far a busy machine pushed it up
    return {"seconds": ordered[len(ordered) // 2], "best_seconds": ordered[0],
            "samples": samples}


def _measure(framework: str, config: str, threads: int, repeat: int,
             min_time: float) -> dict[str, Any]:
    """Each framework is timed in a fresh interpreter of its own: one runtime's idle thread
    pool (torch's OpenMP, OpenBLAS's, XLA's Eigen pool, ours) cannot spin on the cores
    another is being timed on, and JAX's pool is sized at import."""
    return worker.spawn({"task": "train", "framework": framework, "config": config,
                         "threads": threads, "repeat": repeat, "min_time": min_time})


def configs_for(quick: bool) -> list[str]:
    if tiny():
        return ["T"]
    return ["S", "M"] if quick else ["S", "M", "L"]


def run(*, threads: list[int], repeat: int | None = None, quick: bool = True,
        compare: set[str] | frozenset[str] = frozenset(), progress=None) -> dict[str, Any]:
    names = configs_for(quick)
    repeat = repeat or (1 if tiny() else 3 if quick else 9)
    min_time = 0.0 if tiny() else 0.05 if quick else 0.2
    # --full interleaves the frameworks over rounds (sg, torch, jax, sg, torch, jax, ...), each
    # round a fresh process per framework with a share of the samples: on a shared machine a
    # burst of load then lands on every framework's samples, not on one framework's whole run.
    rounds = 1 if quick or tiny() else 3
    per_round = max(1, -(-repeat // rounds))
    frameworks = ["steadygrad"] + [f for f in FRAMEWORKS[1:] if f in compare]
    bar = progress(len(names) * len(threads) * len(frameworks) * rounds, "train") if progress else None
    rows, errors = [], []
    for t in threads:
        peak = fma_peak(t)
        for name in names:
            cfg = CONFIGS[name]
            row: dict[str, Any] = {"config": name, "shape": cfg.describe(), "threads": t,
                                   "params": cfg.params, "gflop_per_step": cfg.flops / 1e9,
                                   "peak_gflops": peak["gflops"], "rounds": rounds}
            samples: dict[str, list[float]] = {fw: [] for fw in frameworks}
            failed: dict[str, str] = {}
            # frameworks run back to back, each in its own process (see _measure)
            for _ in range(rounds):
                for fw in frameworks:
                    if bar:
                        bar.set_postfix_str(f"{name} {fw} {t}t")
                    if fw not in failed:
                        res = _measure(fw, name, t, per_round, min_time)
                        if "error" in res:
                            failed[fw] = res["error"]
                        else:
                            samples[fw] += res["samples"]
                    if bar:
                        bar.update(1)
            for fw in frameworks:
                if fw in failed:
                    errors.append(f"{fw} {name} {t}t: {failed[fw]}")
                    row[f"{fw}_ms"] = None
                    continue
                ordered = sorted(samples[fw])
                s = ordered[len(ordered) // 2]
                row[f"{fw}_ms"] = s * 1e3
                row[f"{fw}_best_ms"] = ordered[0] * 1e3
                row[f"{fw}_samples_ms"] = [v * 1e3 for v in samples[fw]]
                row[f"{fw}_samples_s"] = cfg.batch / s
                row[f"{fw}_gflops"] = cfg.flops / s / 1e9
                if peak["gflops"]:
                    row[f"{fw}_peak_pct"] = 100.0 * row[f"{fw}_gflops"] / peak["gflops"]
            ours = row.get("steadygrad_ms")
            for fw in frameworks[1:]:
                theirs = row.get(f"{fw}_ms")
                row[f"{fw}_x"] = theirs / ours if ours and theirs else None
                target = TARGETS.get(name, {}).get(fw)
                if target is not None:
                    row[f"{fw}_target_x"] = target
                    row[f"{fw}_target_met"] = bool(row[f"{fw}_x"] and row[f"{fw}_x"] >= target)
            rows.append(row)
    if bar:
        bar.close()
    columns = [["config", "config"], ["threads", "thr"], ["steadygrad_ms", "sg ms"],
               ["steadygrad_best_ms", "(best)"],
               ["steadygrad_samples_s", "samples/s"], ["steadygrad_gflops", "GFLOP/s"],
               ["steadygrad_peak_pct", "% peak"]]
    for fw in frameworks[1:]:
        columns += [[f"{fw}_ms", f"{fw} ms"], [f"{fw}_best_ms", "(best)"],
                    [f"{fw}_gflops", f"{fw} GF/s"],
                    [f"{fw}_x", f"{fw}/sg"]]
    notes = [f"{CONFIGS[n].name}: {CONFIGS[n].describe()}, {CONFIGS[n].params:,} params"
             for n in names]
    notes.append("GFLOP/s counts 6 flops per weight per sample (2 fwd + 4 bwd); the first "
                 "layer's dX is computed by no framework, so executed GEMM flops are lower")
    notes.append(f"% peak is of {fma_peak(threads[0])['source']}")
    notes.append("ms: median of the timed samples after 2 warm-up steps, (best): the fastest "
                 "sample; ratio columns: peer ms / steadygrad ms, medians (above 1 = "
                 "steadygrad faster)")
    if rounds > 1:
        notes.append(f"{rounds} interleaved rounds (a fresh process per framework each), "
                     f"{per_round} samples per round, medians over all samples")
    notes += errors
    return {"suite": "train", "title": "Training step (forward, loss, backward, clip 1.0, Adam)",
            "columns": columns, "rows": rows, "notes": notes, "errors": errors,
            "repeat": repeat, "rounds": rounds, "min_time_s": min_time, "warmup": 2,
            "peak": {t: fma_peak(t) for t in threads},
            "targets": TARGETS, "peak_targets_pct": PEAK_TARGET}
