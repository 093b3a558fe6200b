"""Optimizer-step suite: steadygrad's fused step against torch.optim at 262k and 16.8M
parameters, alone and with global-norm clipping, with GB/s counted from the bytes each update
must move and a measured bandwidth probe (steadygrad's own streaming kernels) to compare with.

Bytes per parameter (fp32, in place, lines read before written): Adam/AdamW/NAdam read p, g, m,
v and write p, m, v = 28 B; RMSprop (plain), SGD-momentum and Adagrad (p, g, sum) 20 B. The
read-only norm pass adds 4 B; torch's separate clip_grad_norm_ adds 12 B (norm read + in-place
scale).

torch runs each optimizer's fastest CPU implementation in torch 2.13: Adam/AdamW fused=True;
Adagrad has both a fused and a foreach kernel, both are timed and the faster is the torch
figure (the row names it), as for SGD-momentum (fused and foreach); NAdam and RMSprop have
foreach only (no fused kernel for them in torch 2.13).

    steadygrad-bench optim --full --threads 2 --compare torch --json benchmarks/runs/optim.json
    steadygrad-bench optim --configs Adagrad,NAdam --threads 2    those optimizers, every size
    python benchmarks/bench_optim.py --full --threads 2     the same, as a script
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

import steadygrad as sg
from steadygrad import optim
from steadygrad.bench import suite
from steadygrad.bench.timing import timed
from steadygrad.nn import Parameter, flatten

# (layers, width): layers x (width^2 + width) parameters; "8.3k" only for --tiny
SIZES = {"262k": (4, 256), "16.8M": (4, 2048)}
TINY_SIZES = {"8.3k": (2, 64)}
UPDATE_BYTES = {"Adam": 28, "AdamW": 28, "RMSprop": 20, "SGD-momentum": 20, "Adagrad": 20,
                "NAdam": 28}
FUSED: dict[str, Any] = {"fused": True}
FOREACH: dict[str, Any] = {"foreach": True}
OPTS: dict[str, tuple[str, dict[str, Any], dict[str, dict[str, Any]]]] = {
    # name: (class name, steadygrad/torch kwargs, torch's implementations: label -> its kwargs,
    # the first one timed as contender "torch", any other as "torch_<label>")
    "Adam": ("Adam", {"lr": 1e-3}, {"fused": FUSED}),
    "AdamW": ("AdamW", {"lr": 1e-3}, {"fused": FUSED}),
    "RMSprop": ("RMSprop", {"lr": 1e-3}, {"foreach": FOREACH}),
    "SGD-momentum": ("SGD", {"lr": 1e-3, "momentum": 0.9}, {"fused": FUSED, "foreach": FOREACH}),
    "Adagrad": ("Adagrad", {"lr": 1e-2}, {"fused": FUSED, "foreach": FOREACH}),
    "NAdam": ("NAdam", {"lr": 2e-3}, {"foreach": FOREACH}),
}
PROBE_KEY = "bandwidth probe"


def _shapes(size: str) -> list[tuple[int, ...]]:
    layers, width = {**SIZES, **TINY_SIZES}[size]
    return [s for _ in range(layers) for s in ((width, width), (width,))]


def numel(size: str) -> int:
    return sum(int(np.prod(s)) for s in _shapes(size))


def _arrays(size: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(value, gradient) per parameter, the same in every runtime."""
    rng = np.random.default_rng(0)
    vals = [(rng.standard_normal(s) * 0.02).astype(np.float32) for s in _shapes(size)]
    return [(v, (rng.standard_normal(v.shape) * 1e-2).astype(np.float32)) for v in vals]


def probe_fn(params: dict[str, Any], contender: str) -> Callable[[], object]:
    """An in-place read+write sweep (8 B/elem, the optimizer's pattern) or the read-only norm
    pass (4 B/elem) over far more floats than the caches hold."""
    g = np.ones(params["numel"], dtype=np.float32)
    off, ln = np.array([0], np.int64), np.array([g.size], np.int64)
    if contender == "probe_rw":
        pre = sg._core.GradPreHyper(grad_scale=1.0, clip_value=None)
        return lambda: sg._core.grad_scale_clamp(g, off, ln, pre)
    return lambda: sg._core.grad_norms(g, off, ln, 2.0)


def torch_contenders(optimizer: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """Contender name -> (implementation label, torch-only kwargs) of torch's implementations
    of `optimizer`."""
    impls = OPTS[optimizer][2]
    return {"torch" if i == 0 else f"torch_{label.replace(' ', '_')}": (label, kw)
            for i, (label, kw) in enumerate(impls.items())}


def step_fn(params: dict[str, Any], contender: str) -> Callable[[], object]:
    return build_step(params, contender)[0]


def build_step(params: dict[str, Any],
               contender: str) -> tuple[Callable[[], object], Callable[[], list[np.ndarray]]]:
    """The contender's step on the case's parameters and gradients, and what reads the
    parameters' current values (float64 copies)."""
    cls, kw, _ = OPTS[params["optimizer"]]
    arrays = _arrays(params["size"])
    if contender in ("sg", "sg_guard"):
        ps = [Parameter(v) for v, _ in arrays]
        flatten(ps)
        for p, (_, g) in zip(ps, arrays, strict=True):
            p.grad = g
        # "sg" as timed beside torch; "sg_guard" with the default non-finite guard (a norm pass)
        extra: dict[str, Any] = {"skip_nonfinite": False} if contender == "sg" else {}
        if params["clip"]:
            extra["max_grad_norm"] = 1.0
        step: Callable[[], object] = getattr(optim, cls)(ps, **kw, **extra).step
        return step, lambda: [np.array(p.data, np.float64) for p in ps]
    import torch

    tps = [torch.tensor(v, requires_grad=True) for v, _ in arrays]
    for tp, (_, g) in zip(tps, arrays, strict=True):
        tp.grad = torch.tensor(g)
    impl = torch_contenders(params["optimizer"])[contender][1]
    topt = getattr(torch.optim, cls)(tps, **kw, **impl)

    def values() -> list[np.ndarray]:
        return [tp.detach().numpy().astype(np.float64) for tp in tps]

    if not params["clip"]:
        tstep: Callable[[], object] = topt.step
        return tstep, values

    def clipped() -> None:
        torch.nn.utils.clip_grad_norm_(tps, 1.0)
        topt.step()

    return clipped, values


class OptimSuite(suite.BaseSuite):
    name = "optim"
    about = ("One optimizer step (steadygrad's fused clip + update) against torch.optim's "
             "fastest CPU implementation, alone and after global-norm clipping, in ms and in "
             "GB/s of the bytes each update must move, beside a streaming bandwidth probe: "
             "Adam at 262k parameters. --full: Adam, AdamW, RMSprop, SGD-momentum, Adagrad "
             "and NAdam at 262k and 16.8M parameters (--configs picks optimizers).")
    durations = (10, 210)  # full: 70 s measured for 2 of the 6 optimizers (2026-12-01)
    peers = frozenset({"torch"})
    plans: ClassVar[dict[suite.Size, suite.Plan]] = {
        "tiny": suite.Plan(repeat=1, warmup=1),
        "quick": suite.Plan(repeat=5, min_time=0.03, warmup=3, warmup_s=0.02),
        "full": suite.Plan(repeat=12, rounds=3, min_time=0.03, warmup=3, warmup_s=0.02)}

    config_names = tuple(OPTS)  # --configs Adagrad,NAdam: those optimizers at every full size

    def cases(self, size: suite.Size) -> list[suite.Case]:
        sizes = list(TINY_SIZES if size == "tiny" else SIZES if size == "full" else ["262k"])
        names = list(OPTS) if size == "full" else ["Adam"]
        return self._cases(sizes, names, (1 if size == "tiny" else 64) << 20)

    def named_cases(self, names: list[str]) -> list[suite.Case]:
        return self._cases(list(SIZES), names, 64 << 20)

    def config_of(self, case: suite.Case) -> str | None:
        return case.params.get("optimizer")

    def _cases(self, sizes: list[str], names: list[str], probe_numel: int) -> list[suite.Case]:
        probe = {"probe_rw": suite.STEADYGRAD, "probe_read": suite.STEADYGRAD}
        out = [suite.Case(PROBE_KEY, {"numel": probe_numel}, probe)]
        for s in sizes:
            for name in names:
                for clip in (False, True):
                    contenders = {"sg": suite.STEADYGRAD, "sg_guard": suite.STEADYGRAD,
                                  **dict.fromkeys(torch_contenders(name), suite.TORCH)}
                    if clip:  # the guard's norm pass is the clip's: one figure
                        del contenders["sg_guard"]
                    params = {"size": s, "optimizer": name, "clip": clip}
                    out.append(suite.Case(f"{s} {name}{' clip' if clip else ''}", params,
                                          contenders))
        return out

    def measure(self, case: suite.Case, contender: str, plan: suite.Plan) -> dict[str, Any]:
        make = probe_fn if case.key == PROBE_KEY else step_fn
        return timed(make(case.params, contender), plan)

    def report(self, measured: list[suite.Measured], run: suite.RunInfo) -> dict[str, Any]:
        probe: dict[int, dict[str, float | None]] = {}
        rows, errors = [], []
        for m in measured:
            errors += m.errors()
            if m.case.key == PROBE_KEY:
                n, rw, rd = m.case.params["numel"], m.seconds("probe_rw"), m.seconds("probe_read")
                probe[m.threads] = {"rw_gbs": 8 * n / rw / 1e9 if rw else None,
                                    "read_gbs": 4 * n / rd / 1e9 if rd else None}
            else:
                rows.append(_row(m, probe.get(m.threads, {}).get("rw_gbs")))
        columns = [["size", "params"], ["threads", "thr"], ["optimizer", "optimizer"],
                   ["clip", "clip"], ["sg_ms", "sg ms"], ["sg_gbs", "sg GB/s"],
                   ["sg_probe_pct", "% probe"], ["sg_guard_ms", "sg+guard ms"]]
        if any(r.get("torch_ms") for r in rows):
            columns += [["torch_ms", "torch ms"], ["torch_gbs", "torch GB/s"],
                        suite.ratio_column("torch"), ["torch_impl", "torch impl"]]
        notes = [f"bandwidth probe, {nt} thread(s): read+write {p['rw_gbs'] or 0:.1f} GB/s, "
                 f"read {p['read_gbs'] or 0:.1f} GB/s" for nt, p in probe.items()]
        impls = "; ".join(f"{name} {' / '.join(impl)}" for name, (_, _, impl) in OPTS.items())
        notes += [f"torch (its fastest CPU implementation; of several, the faster is torch ms): "
                  f"{impls}; clip_grad_norm_ before step when clipped", suite.TIME_RATIO_NOTE,
                  run.plan.describe(),
                  *errors]
        return {"suite": "optim", "title": "Optimizer step (fused clip + update vs torch.optim)",
                "columns": columns, "rows": rows, "notes": notes, "probe": probe,
                "errors": errors}


def _ms(m: suite.Measured, name: str) -> float | None:
    s = m.seconds(name)
    return s * 1e3 if s else None


def _torch_figures(m: suite.Measured) -> dict[str, Any]:
    """torch's figure of the row: the fastest of its implementations that were timed (each
    one's ms under torch_impl_ms), and the call it stands for; {} when torch did not run."""
    cls, _, impls = OPTS[m.case.params["optimizer"]]
    ran = {label: _ms(m, key) for key, (label, _) in
           torch_contenders(m.case.params["optimizer"]).items() if key in m.case.contenders}
    if not ran:
        return {}
    timed_ms = {label: ms for label, ms in ran.items() if ms}
    best = min(timed_ms, key=timed_ms.__getitem__) if timed_ms else next(iter(ran))
    args = ", ".join(f"{k}={v}" for k, v in impls[best].items())
    call = f"{cls}({args})" if args else f"{cls} ({best})"
    return {"torch_impl_ms": ran, "torch_impl": best, "torch_ms": timed_ms.get(best),
            "torch_variant": ("clip_grad_norm_ + " if m.case.params["clip"] else "") + call}


def _row(m: suite.Measured, probe_gbs: float | None) -> dict[str, Any]:
    p = m.case.params
    n, clip, ub = numel(p["size"]), p["clip"], UPDATE_BYTES[p["optimizer"]]
    res: dict[str, Any] = {"size": p["size"], "params": n, "optimizer": p["optimizer"],
                           "clip": "2-norm" if clip else "-", "threads": m.threads,
                           "sg_bytes": ub + (4 if clip else 0),
                           "torch_bytes": ub + (12 if clip else 0), **_torch_figures(m)}
    for key in ("sg", "sg_guard"):
        if key in m.case.contenders:
            res[f"{key}_ms"] = _ms(m, key)
    for key, nbytes in (("sg", res["sg_bytes"]), ("sg_guard", ub + 4),
                        ("torch", res["torch_bytes"])):
        if f"{key}_ms" in res:
            ms = res[f"{key}_ms"]
            res[f"{key}_gbs"] = nbytes * n / ms / 1e6 if ms else None
    sg_ms, torch_ms = res.get("sg_ms"), res.get("torch_ms")
    res["speedup"] = res["torch_x"] = torch_ms / sg_ms if sg_ms and torch_ms else None
    res["sg_probe_pct"] = 100.0 * res["sg_gbs"] / probe_gbs if res.get("sg_gbs") and probe_gbs \
        else None
    return res


SUITE: suite.Suite = OptimSuite()
