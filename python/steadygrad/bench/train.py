"""Training-step suite: ms/step, samples/s, GFLOP/s and % of the FMA peak of one full step
(forward, CrossEntropyLoss, backward, global-norm clip 1.0, Adam) for the S/M/L MLPs and the
C1/C2 CNNs, in steadygrad (compiled, as sg.fit runs it, and eager beside it), PyTorch
(Adam(fused=True) + clip_grad_norm_) and JAX/Optax (jit), with steadygrad's step split into
its phases (forward, loss, backward, optimizer).

Precision axis: each config also as a "<config> bf16" row, steadygrad's step at
sg.set_matmul_precision("bf16") against PyTorch's under torch.autocast("cpu",
dtype=torch.bfloat16) (JAX has no such switch and is left out); bf16 vs fp32 is steadygrad's
fp32 step time over its bf16 one."""

from __future__ import annotations

import time
from typing import Any, ClassVar

import steadygrad as sg
from steadygrad.bench import suite
from steadygrad.bench.models import BUILDERS, CONFIGS, build_torch, make_data, step_flops
from steadygrad.bench.models_cnn import JAX_LAYOUT, ConvConfig
from steadygrad.bench.peak import fma_peak
from steadygrad.bench.timing import timed

# the issues' targets: steadygrad speed-up over each peer (peer ms / steadygrad ms); S and M
# are issue 18's (S >= 4x torch, 3x JAX, 60% of peak; M >= 1.5x both), the rest earlier ones'
TARGETS = {"S": {"torch": 4.0, "jax": 3.0}, "M": {"torch": 1.5, "jax": 1.5},
           "L": {"torch": 2.0, "jax": 1.5}, "C1": {"torch": 1.5, "jax": 1.2},
           "C2": {"torch": 1.5, "jax": 1.2}}
PEAK_TARGET = {"S": 60.0, "L": 75.0}
# bf16 rows (issue 17, on an AMX machine): vs torch autocast, and vs steadygrad's own fp32 step
TARGETS_BF16 = {"L": {"torch": 1.5, "fp32": 3.0}}
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
    # measured before the bf16 rows: quick C1+C2 37 s; full S+M+L 172 s, C1+C2 106 s; with
    # them, estimated
    durations = (100, 450)
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
        bf16 = {"steadygrad": suite.STEADYGRAD, "torch": suite.TORCH}
        return ([suite.Case(name, {"config": name}, runtimes) for name in names]
                + [suite.Case(f"{name} bf16", {"config": name, "precision": "bf16"}, bf16)
                   for name in names])

    def config_of(self, case: suite.Case) -> str | None:
        return str(case.params["config"])

    def measure(self, case: suite.Case, contender: str, plan: suite.Plan) -> dict[str, Any]:
        cfg = CONFIGS[case.params["config"]]
        framework = case.contenders[contender].framework
        bf16 = case.params.get("precision") == "bf16"
        if bf16 and framework == "torch":
            built = build_torch(cfg, *make_data(cfg), autocast=True)
        else:
            built = BUILDERS[OURS.get(contender, framework)](cfg, *make_data(cfg))
        with sg.set_matmul_precision("bf16" if bf16 else "highest"):  # steadygrad's flag only
            out = timed(built.step, plan)
            if bf16 and framework == "steadygrad":
                out["info"] = {"bf16_path": sg.cpu_info()["bf16_path"]}
            if built.phases and not bf16:
                out["phases_ms"] = phase_medians(built.phases, plan)
        return out

    def report(self, measured: list[suite.Measured], run: suite.RunInfo) -> dict[str, Any]:
        rows, errors = [], []
        peers = [p for p in PEERS if any(p in m.case.contenders for m in measured)]
        for m in measured:
            errors += m.errors()
            rows.append(_row(m, peers, run.plan))
        _bf16_speedups(rows)
        columns = [["config", "config"], ["precision", "prec"], ["threads", "thr"],
                   ["steadygrad_ms", "sg ms"],
                   ["steadygrad_best_ms", "(best)"],
                   ["steadygrad_samples_s", "samples/s"], ["steadygrad_gflops", "GFLOP/s"],
                   ["steadygrad_peak_pct", "% peak"]]
        has_bf16 = any(r["precision"] == "bf16" for r in rows)
        if has_bf16:
            columns.append(["bf16_x", "bf16 vs fp32"])
        if any("eager" in m.results for m in measured):
            columns += [["eager_ms", "eager ms"], suite.ratio_column("eager")]
        columns += [[f"steadygrad_{p}_ms", f"{p} ms"] for p in PHASES]
        for fw in peers:
            columns += [[f"{fw}_ms", f"{fw} ms"], [f"{fw}_best_ms", "(best)"],
                        [f"{fw}_gflops", f"{fw} GF/s"], suite.ratio_column(fw)]
        names = list(dict.fromkeys(m.case.params["config"] for m in measured))
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
        if has_bf16:
            paths = sorted({str(r.get("bf16_path")) for r in rows if r["precision"] == "bf16"})
            notes.append(f"bf16 rows: steadygrad at matmul precision bf16 (bf16 path: "
                         f"{', '.join(paths)}) vs torch under torch.autocast('cpu', "
                         f"dtype=torch.bfloat16); bf16 vs fp32: steadygrad's fp32 step time / "
                         f"its bf16 step time")
        notes.append(run.plan.describe())
        notes += errors
        plan = run.plan
        title = "Training step (forward, loss, backward, clip 1.0, Adam)"
        return {"suite": "train", "title": title, "columns": columns, "rows": rows,
                "notes": notes, "errors": errors, "repeat": plan.repeat, "rounds": plan.rounds, "min_time_s": plan.min_time,
                "warmup": plan.warmup, "peak": {t: fma_peak(t) for t in run.threads},
                "targets": TARGETS, "targets_bf16": TARGETS_BF16, "peak_targets_pct": PEAK_TARGET}


def _row(m: suite.Measured, peers: list[str], plan: suite.Plan) -> dict[str, Any]:
    name, t = m.case.params["config"], m.threads
    precision = m.case.params.get("precision", "fp32")
    cfg, peak = CONFIGS[name], fma_peak(t)
    row: dict[str, Any] = {"config": m.case.key, "precision": precision,
                           "shape": cfg.describe(), "threads": t,
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
    if precision == "bf16":
        row["bf16_path"] = m.results.get("steadygrad", {}).get("info", {}).get("bf16_path")
    ours = row.get("steadygrad_ms")
    if row.get("eager_ms") and ours:
        row["eager_x"] = row["eager_ms"] / ours
    targets = TARGETS_BF16 if precision == "bf16" else TARGETS
    for fw in peers:
        theirs = row.get(f"{fw}_ms")
        row[f"{fw}_x"] = theirs / ours if ours and theirs else None
        target = targets.get(name, {}).get(fw)
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


def _bf16_speedups(rows: list[dict[str, Any]]) -> None:
    """Each bf16 row's bf16_x: steadygrad's fp32 step time of the config over its bf16 one
    (same thread count), and its target where the issue sets one."""
    fp32 = {(r["config"], r["threads"]): r.get("steadygrad_ms")
            for r in rows if r["precision"] == "fp32"}
    for r in rows:
        if r["precision"] != "bf16":
            continue
        name = r["config"].removesuffix(" bf16")
        base, ours = fp32.get((name, r["threads"])), r.get("steadygrad_ms")
        r["bf16_x"] = base / ours if base and ours else None
        target = TARGETS_BF16.get(name, {}).get("fp32")
        if target is not None:
            r["fp32_target_x"] = target
            r["fp32_target_met"] = bool(r["bf16_x"] and r["bf16_x"] >= target)
