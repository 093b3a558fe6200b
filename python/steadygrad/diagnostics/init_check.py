"""`sg.check_init`: the step-0 signal-propagation check. One forward and one backward on a probe
batch; per-layer activation and gradient scales; flags the layer where they vanish or explode
with depth (or die, saturate, go non-finite) and says what to change. The model's weights,
buffers, mode and sg's RNG are left as they were; gradients are left stale."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from steadygrad import _introspect as intro
from steadygrad import nn
from steadygrad._args import features
from steadygrad.diagnostics.probe import (
    LayerProbe,
    fan_in,
    init_gain,
    is_rectifier,
    output_bounds,
    spatial_dims,
    unit_std,
)


@dataclass
class InitIssue:
    """One problem sg.check_init found: the layer (its state_dict-style name and class), the
    kind (vanishing_activation, exploding_activation, vanishing_gradient, exploding_gradient,
    dead_relu, saturation, non_finite), what was measured and the suggested fix."""

    layer: str
    layer_type: str
    kind: str  # vanishing_activation, exploding_activation, vanishing_gradient, ...
    message: str
    suggestion: str

    def __str__(self) -> str:
        return f"[{self.kind}] layer '{self.layer}' ({self.layer_type}): {self.message}\n  fix: {self.suggestion}"


@dataclass
class InitReport:
    """Per-layer rows (dicts: layer, type, act_mean, act_std, act_scale, grad_in_std,
    param_grad_rms, grad_scale, dead, saturated; fan_in and init_gain, std(weight) *
    sqrt(fan_in), for a weight layer, else None) and the issues found, most important first."""

    rows: list[dict[str, Any]]
    issues: list[InitIssue] = field(default_factory=list)
    input_std: float = 1.0

    @property
    def ok(self) -> bool:
        """True when no issue was found."""
        return not self.issues

    def flagged(self, kind: str | None = None) -> list[str]:
        """The names of the layers with an issue (of `kind`, when given), most important first."""
        return [i.layer for i in self.issues if kind is None or i.kind == kind]

    def table(self) -> str:
        """The per-layer rows as a text table, each issue's kind marked on its layer's row."""

        def f(v: Any) -> str:
            return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2e}"

        wl = max([14] + [len(r["layer"]) + 2 for r in self.rows])
        wt = max([13] + [len(r["type"]) + 2 for r in self.rows])
        head = (f"{'layer':<{wl}}{'type':<{wt}}{'act_std':>10}{'act/in':>10}{'dL/dx std':>11}"
                f"{'grad rms':>10}{'grad/last':>10}{'gain':>7}{'dead':>7}{'sat':>7}  flag")
        lines = [head, "-" * len(head)]
        marks: dict[str, list[str]] = {}
        for i in self.issues:
            marks.setdefault(i.layer, []).append(i.kind)
        for r in self.rows:
            dead = f"{r['dead']:.0%}" if r.get("dead") is not None else "-"
            sat = f"{r['saturated']:.0%}" if r.get("saturated") is not None else "-"
            gain = "-" if r.get("init_gain") is None else f"{r['init_gain']:.2f}"
            lines.append(f"{r['layer']:<{wl}}{r['type']:<{wt}}{f(r['act_std']):>10}"
                         f"{f(r['act_scale']):>10}{f(r['grad_in_std']):>11}"
                         f"{f(r['param_grad_rms']):>10}{f(r['grad_scale']):>10}{gain:>7}"
                         f"{dead:>7}{sat:>7}  {','.join(marks.get(r['layer'], []))}")
        return "\n".join(lines)

    def __str__(self) -> str:
        verdict = "no problems found" if self.ok else f"{len(self.issues)} problem(s):"
        return "\n".join([self.table(), "", f"check_init: {verdict}", *map(str, self.issues)])


_RESIDUAL = ("; in a deep network, residual blocks (nn.Residual(block), y = x + block(x)) "
             "give the gradient a path around each block")


def _suggest(kind: str, saturating: bool, rectifying: bool, norm: str = "BatchNorm1d") -> str:
    """The fix for `kind` in a model that has saturating (sigmoid/tanh) or rectifier layers;
    `norm` is the BatchNorm class for its weight layers (BatchNorm2d after a Conv2d)."""
    if kind in ("vanishing_activation", "vanishing_gradient"):
        if saturating:
            return ("sigmoid/tanh shrink the signal at every layer (their slope is <= 0.25 / <= 1): "
                    "use ReLU with Kaiming init (nn.init.kaiming_normal_(w, nonlinearity='relu')), "
                    f"or put {norm} before each activation" + _RESIDUAL)
        if rectifying:
            return ("the init gain is too small for ReLU: use Kaiming init "
                    f"(nn.init.kaiming_normal_, gain sqrt(2)) or add {norm}" + _RESIDUAL)
        return f"use Xavier/Kaiming init with the gain of your activation, or add {norm}" + _RESIDUAL
    if kind in ("exploding_activation", "exploding_gradient"):
        return ("the init gain is too large: use Kaiming (ReLU) or Xavier (tanh/sigmoid) init, add "
                f"{norm}, and clip gradients (optimizer max_grad_norm=1.0)")
    if kind == "dead_relu":
        return "use Kaiming init with zero bias, a lower learning rate, or LeakyReLU"
    if kind == "saturation":
        return (f"pre-activations are too large: Xavier init, normalised inputs or {norm} "
                "before the activation")
    return ("find the first non-finite layer above; check the input for NaN/inf, lower the init "
            "gain, and clip gradients (max_grad_norm)")


def _default_loss(y: np.ndarray) -> Any:
    return nn.CrossEntropyLoss() if y.dtype.kind in "iu" else nn.MSELoss()


Grads = list[tuple[str, np.ndarray | None]]  # (parameter name, its gradient in float64)


def _probe(model: Any, x: np.ndarray, y: np.ndarray | None, loss_fn: Any) -> tuple[LayerProbe, Grads]:
    with LayerProbe(model, backward=True) as probe:
        pred = model(x)
        if y is not None:
            loss_fn = loss_fn if loss_fn is not None else _default_loss(y)
            loss_fn(pred, y)
            dout = loss_fn.backward()
        else:
            dout = np.random.default_rng(0).standard_normal(np.shape(pred)).astype(np.float32)
        # indices have no gradient: an Embedding-first model's backward stops at its weight
        if x.dtype.kind == "f":
            model.backward(dout)
        else:
            model.backward(dout, input_grad=False)
    grads: Grads = []
    for name, p in model.named_parameters():
        g = p.grad
        grads.append((name, None if g is None else np.asarray(g, dtype=np.float64)))
    return probe, grads


def check_init(model: Any, x_probe: Any, y_probe: Any = None, loss_fn: Any = None, *,
               vanish: float = 1e-2, explode: float = 1e2) -> InitReport:
    """Runs one forward/backward on (x_probe[, y_probe]) in train mode and reports per layer:
    activation std across the batch relative to the input's (act/in), std of the gradient
    w.r.t. the layer input, and each parameterised layer's gradient RMS relative to the last
    such layer's (grad/last). Flags act/in or grad/last below `vanish` or above `explode`,
    >50% dead ReLU units, >50% saturated sigmoid/tanh outputs, and non-finite values; names
    the first layer where each starts and suggests a fix. Without y_probe the backward starts
    from a standard-normal output gradient."""
    integer = intro.integer_input(model)
    x = features(x_probe, "check_init: x_probe", integer)
    y = None if y_probe is None else np.asarray(y_probe)
    if y is not None and y.dtype.kind == "f":
        y = np.ascontiguousarray(y, dtype=np.float32)
    saved = copy.deepcopy(model.state_dict())
    was_training = intro.training_mode(model)
    rng = intro.global_rng()
    rng_state = rng.bit_generator.state
    try:
        model.train()
        model.zero_grad()
        probe, grads = _probe(model, x, y, loss_fn)
    finally:
        model.load_state_dict(saved)  # BatchNorm running statistics moved during the probe
        model.train() if was_training else model.eval()
        rng.bit_generator.state = rng_state
        model.zero_grad()
    return _analyse(model, x, probe, grads, vanish, explode)


def _analyse(model: Any, x: np.ndarray, probe: LayerProbe, grads: Grads, vanish: float,
             explode: float) -> InitReport:
    # act/in: relative to the input's spread, or for indices to the first layer's output (the
    # embedding rows the rest of the network sees)
    first = probe.forward_stats.get(probe.layers[0][0], {}) if probe.layers else {}
    in_std = max(unit_std(x) if x.dtype.kind == "f" else first.get("std", 1.0), 1e-30)
    layer_sq: dict[str, float] = {}
    layer_n: dict[str, int] = {}
    for name, g in grads:
        layer = name.rsplit(".", 1)[0] if "." in name else name
        if g is not None:
            layer_sq[layer] = layer_sq.get(layer, 0.0) + float(np.sum(g * g))
            layer_n[layer] = layer_n.get(layer, 0) + g.size
    rms = {k: math.sqrt(layer_sq[k] / max(layer_n[k], 1)) for k in layer_sq}
    last = next((rms[n] for n, _ in reversed(probe.layers) if n in rms), None)
    rows: list[dict[str, Any]] = []
    for name, layer in probe.layers:
        fs = probe.forward_stats.get(name, {})
        bs = probe.backward_stats.get(name, {})
        grad_rms = rms.get(name)
        rows.append({
            "layer": name, "type": type(layer).__name__,
            "act_mean": fs.get("mean", math.nan), "act_std": fs.get("std", math.nan),
            "act_scale": fs.get("std", math.nan) / in_std,
            "grad_in_std": bs.get("grad_in_std", math.nan),
            "param_grad_rms": grad_rms,
            "grad_scale": None if grad_rms is None or not last else grad_rms / last,
            "dead": fs.get("dead"), "saturated": fs.get("saturated"),
            "fan_in": fan_in(layer), "init_gain": init_gain(layer),
            "finite": fs.get("finite", True) and math.isfinite(bs.get("grad_in_std", 0.0))
            and (grad_rms is None or math.isfinite(grad_rms)),
        })
    saturating = any(output_bounds(m) is not None for _, m in probe.layers)
    rectifying = any(is_rectifier(m) for _, m in probe.layers)
    norm = f"BatchNorm{max([1] + [spatial_dims(m) for _, m in probe.layers])}d"
    issues: list[InitIssue] = []

    def add(row: dict[str, Any], kind: str, message: str) -> None:
        if row["init_gain"] is not None and kind.startswith(("vanishing", "exploding")):
            message += (f"; its init gain std(weight)*sqrt(fan_in) is {row['init_gain']:.3g} "
                        f"(fan_in {row['fan_in']})")
        fix = _suggest(kind, saturating, rectifying, norm)
        issues.append(InitIssue(row["layer"], row["type"], kind, message, fix))

    def below(s: float) -> bool:
        return s < vanish

    def above(s: float) -> bool:
        return s > explode

    bad = next((r for r in rows if not r["finite"]), None)
    if bad is not None:
        add(bad, "non_finite", "first layer with a NaN/inf activation or gradient")
    for kind, test in (("vanishing_activation", below), ("exploding_activation", above)):
        hit = next((r for r in rows if math.isfinite(r["act_scale"]) and test(r["act_scale"])), None)
        if hit is not None:
            worst = rows[-1]["act_scale"]
            add(hit, kind, f"activation std across the batch is {hit['act_scale']:.2e} x the input's "
                f"here (first layer past the threshold; {worst:.2e} x at the output)")
    scaled = [r for r in rows if r["grad_scale"] is not None]
    for kind, test in (("vanishing_gradient", below), ("exploding_gradient", above)):
        # Walk from the output towards the input: name the layer where it starts.
        hit = next((r for r in reversed(scaled) if test(r["grad_scale"])), None)
        if hit is not None:
            first = scaled[0]
            add(hit, kind, f"parameter-gradient RMS is {hit['grad_scale']:.2e} x the last layer's "
                f"here, {first['grad_scale']:.2e} x at the first layer '{first['layer']}'")
    for r in rows:
        if r["dead"] is not None and r["dead"] > 0.5:
            add(r, "dead_relu", f"{r['dead']:.0%} of the units are zero for every probe sample")
        if r["saturated"] is not None and r["saturated"] > 0.5:
            add(r, "saturation", f"{r['saturated']:.0%} of the outputs are saturated")
    return InitReport(rows=rows, issues=issues, input_std=in_std)
