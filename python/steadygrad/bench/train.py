"""Training-step suite: ms/step, samples/s, GFLOP/s and % of the FMA peak of one full step
(forward, CrossEntropyLoss, backward, global-norm clip 1.0, Adam) for the S/M/L MLPs and the
C1/C2 CNNs, in steadygrad (compiled, as sg.fit runs it, and eager beside it), PyTorch
(Adam(fused=True) + clip_grad_norm_) and JAX/Optax (jit), with steadygrad's step split into
its phases (forward, loss, backward, optimizer)."""

from __future__ import annotations

import time
from typing import Any, ClassVar

from steadygrad.bench import suite
from steadygrad.bench.models import BUILDERS, CONFIGS, make_data, step_flops
from steadygrad.bench.models_cnn import JAX_LAYOUT, ConvConfig
from steadygrad.bench.peak import fma_peak
from steadygrad.bench.timing import timed

# the targets: steadygrad speed-up over each peer (peer ms / steadygrad ms)
TARGETS = {"S": {"torch": 3.0, "jax": 1.5}, "M": {"torch": 1.8, "jax": 1.2},
           "L": {"torch": 2.0, "jax": 1.5}, "C1": {"torch": 1.5, "jax": 1.2},
           "C2": {"torch": 1.5, "jax": 1.2}}
PEAK_TARGET = {"L": 75.0}
PEERS = ("torch", "jax")
# steadygrad's contenders (each a column prefix) and the builder each one runs
OURS = {"steadygrad": "steadygrad_compiled", "eager": "steadygrad"}
PHASES = ("forward", "loss", "backward", "optimizer")


def configs_for(size: suite.Size) -> list[str]:
    return {"tiny": ["T"], "quick": ["S", "M", "C1", "C2"],
            "full": ["S", "M", "L", "C1", "C2"]}[size]


class TrainSuite(suite.BaseSuite):
    name = "train"
    about = ("One full training step (forward, CrossEntropyLoss, backward, global-norm clip "
             "1.0, Adam) of MLPs and CNNs against PyTorch and JAX/Optax: ms per step, "
             "samples/s, GFLOP/s and % of the FMA peak. --quick: MLPs S, M and CNNs C1, C2; "
             "--full adds the MLP L, with more rounds (--configs picks configurations).")
    durations = (60, 280)  # measured: quick C1+C2 37 s; full S+M+L 172 s, C1+C2 106 s
    peers = frozenset(PEERS)
    plans: ClassVar[dict[suite.Size, suite.Plan]] = {
        "tiny": suite.Plan(repeat=1), "quick": suite.Plan(repeat=3, min_time=0.05),
        "full": suite.Plan(repeat=9, rounds=3, min_time=0.2)}

    config_names = tuple(CONFIGS)

    def cases(self, size: suite.Size) -> list[suite.Case]:
        return self.named_cases(configs_for(size))

    def named_cases(self, names: list[str]) -> list[suite.Case]:
        runtimes = {"steadygrad": suite.STEADYGRAD, "eager": suite.STEADYGRAD,
                    "torch": suite.TORCH, "jax": suite.JAX}
        return [suite.Case(name, {"config": name}, runtimes) for name in names]

    def measure(self, case: suite.Case, contender: str, plan: suite.Plan) -> dict[str, Any]:
        cfg = CONFIGS[case.params["config"]]
        builder = OURS.get(contender, case.contenders[contender].framework)
        built = BUILDERS[builder](cfg, *make_data(cfg))
        result = timed(built.step, plan)
        if built.phases:
            result["phases_ms"] = phase_medians(built.phases, plan)
        return result

    def report(self, measured: list[suite.Measured], run: suite.RunInfo) -> dict[str, Any]:
        rows, errors = [], []
        peers = [p for p in PEERS if any(p in m.case.contenders for m in measured)]
        for m in measured:
            errors += m.errors()
            rows.append(_row(m, peers, run.plan))
        columns = [["config", "config"], ["threads", "thr"], ["steadygrad_ms", "sg ms"],
                   ["steadygrad_best_ms", "(best)"],
                   ["steadygrad_samples_s", "samples/s"], ["steadygrad_gflops", "GFLOP/s"],
                   ["steadygrad_peak_pct", "% peak"]]
        if any("eager" in m.results for m in measured):
            columns += [["eager_ms", "eager ms"], suite.ratio_column("eager")]
        columns += [[f"steadygrad_{p}_ms", f"{p} ms"] for p in PHASES]
        for fw in peers:
            columns += [[f"{fw}_ms", f"{fw} ms"], [f"{fw}_best_ms", "(best)"],
                        [f"{fw}_gflops", f"{fw} GF/s"], suite.ratio_column(fw)]
        names = list(dict.fromkeys(m.case.key for m in measured))
        notes = [f"{n}: {CONFIGS[n].describe()}, {CONFIGS[n].params:,} params" for n in names]
        if any(not isinstance(CONFIGS[n], ConvConfig) for n in names):
            notes.append("MLP GFLOP/s counts 6 flops per weight per sample (2 fwd + 4 bwd); "
                         "the first layer's dX is computed by no framework, so executed GEMM "
                         "flops are lower")
        if any(isinstance(CONFIGS[n], ConvConfig) for n in names):
            notes.append("CNN GFLOP/s counts each conv/linear layer's multiply-adds x 6 per "
                         "sample (2 fwd, 2 dW, 2 dX), less the first layer's dX (x 2); "
                         "pooling, BatchNorm and ReLU not counted. JAX convolutions run in "
                         f"{'/'.join(JAX_LAYOUT[:2])} (XLA:CPU's layout; the batch is "
                         "transposed once, untimed), torch and steadygrad take NCHW")
        notes.append("sg: the compiled step (sg.compile_step, what sg.fit runs: bitwise the "
                     "eager step); eager: the same model's documented eager loop; forward / "
                     "loss / backward / optimizer ms: the compiled step's phases timed one by "
                     "one (medians; forward includes zero_grad, loss its gradient)")
        notes.append(f"% peak is of {fma_peak(run.threads[0])['source']}")
        notes.append("ms: median of the timed samples, (best): the fastest sample; ratios "
                     "of the medians")
        notes.append(suite.TIME_RATIO_NOTE)
        notes.append(run.plan.describe())
        notes += errors
        plan = run.plan
        title = "Training step (forward, loss, backward, clip 1.0, Adam)"
        return {"suite": "train", "title": title, "columns": columns, "rows": rows,
                "notes": notes, "errors": errors, "repeat": plan.repeat, "rounds": plan.rounds, "min_time_s": plan.min_time,
                "warmup": plan.warmup, "peak": {t: fma_peak(t) for t in run.threads},
                "targets": TARGETS, "peak_targets_pct": PEAK_TARGET}


def _row(m: suite.Measured, peers: list[str], plan: suite.Plan) -> dict[str, Any]:
    name, t = m.case.key, m.threads
    cfg, peak = CONFIGS[name], fma_peak(t)
    row: dict[str, Any] = {"config": name, "shape": cfg.describe(), "threads": t,
                           "params": cfg.params, "gflop_per_step": step_flops(cfg) / 1e9,
                           "peak_gflops": peak["gflops"], "rounds": plan.rounds}
    for p, ms in m.results.get("steadygrad", {}).get("phases_ms", {}).items():
        row[f"steadygrad_{p}_ms"] = ms
    for fw in ("steadygrad", "eager", *peers):
        r = m.results.get(fw, {})
        if "seconds" not in r:
            row[f"{fw}_ms"] = None
            continue
        s = r["seconds"]
        row[f"{fw}_ms"] = s * 1e3
        row[f"{fw}_best_ms"] = r["best_seconds"] * 1e3
        row[f"{fw}_samples_ms"] = [v * 1e3 for v in r["samples"]]
        row[f"{fw}_samples_s"] = cfg.batch / s
        row[f"{fw}_gflops"] = step_flops(cfg) / s / 1e9
        if peak["gflops"]:
            row[f"{fw}_peak_pct"] = 100.0 * row[f"{fw}_gflops"] / peak["gflops"]
    ours = row.get("steadygrad_ms")
    if row.get("eager_ms") and ours:
        row["eager_x"] = row["eager_ms"] / ours
    for fw in peers:
        theirs = row.get(f"{fw}_ms")
        row[f"{fw}_x"] = theirs / ours if ours and theirs else None
        target = TARGETS.get(name, {}).get(fw)
        if target is not None:
            row[f"{fw}_target_x"] = target
            row[f"{fw}_target_met"] = bool(row[f"{fw}_x"] and row[f"{fw}_x"] >= target)
    return row


def phase_medians(phases: tuple[tuple[str, Any], ...], plan: suite.Plan) -> dict[str, float]:
    """Median ms of each phase of a step: the phases run in order, one step after another,
    each call timed on its own (plan.per_round x 20 steps, at least 0.1 s)."""
    times: dict[str, list[float]] = {name: [] for name, _ in phases}
    t_end = time.perf_counter() + 0.1
    while len(times[phases[0][0]]) < 20 * plan.per_round or time.perf_counter() < t_end:
        for name, fn in phases:
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: 1e3 * sorted(v)[len(v) // 2] for name, v in times.items()}


SUITE: suite.Suite = TrainSuite()
