"""Gradient-health diagnostics during training: GradientMonitor records, every k steps,
per-parameter gradient norms (from the optimizer's norm pass when it exposes them),
update-to-weight ratios, per-layer activation mean/std, dead-ReLU fractions and BatchNorm
running-variance drift, as numpy arrays and as a printed table. Steps in between cost nothing.
`check_init` (the step-0 signal-propagation check) lives in init_check.py."""

from __future__ import annotations

import itertools
import math
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from steadygrad import _introspect as intro
from steadygrad import _plot
from steadygrad.callbacks import Callback
from steadygrad.diagnostics.probe import LayerProbe, is_rectifier, is_weight_layer
from steadygrad.ops import global_norm


def param_norms(params: list[Any]) -> np.ndarray:
    """L2 norm of each parameter's gradient: one deterministic `sg.ops.global_norm` each."""
    return np.array([global_norm(p.grad_buffer.reshape(-1)) for p in params], dtype=np.float64)


def _norm(a: np.ndarray) -> float:
    return float(global_norm(np.ascontiguousarray(a, dtype=np.float32).reshape(-1)))


def _fmt(v: float | None) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3e}"


class GradientMonitor(Callback):
    """Records gradient health every `every` optimizer steps of `sg.fit` (or use
    `fit(..., diagnostics=k)`). After training, `arrays()` gives numpy arrays indexed
    [record, parameter] / [record, layer], and `print(monitor)` shows the latest record."""

    def __init__(self, every: int = 100, activations: bool = True, print_at_end: bool = False) -> None:
        if every < 1:
            raise ValueError(f"GradientMonitor: every must be >= 1, got {every}")
        self.every = int(every)
        self.activations = activations
        self.print_at_end = print_at_end
        self.steps: list[int] = []
        self._grad: list[np.ndarray] = []
        self._ratio: list[np.ndarray] = []
        self._act_mean: list[np.ndarray] = []
        self._act_std: list[np.ndarray] = []
        self._dead: list[np.ndarray] = []
        self._bn_drift: list[np.ndarray] = []
        self._probe: LayerProbe | None = None
        self._before: np.ndarray | None = None
        self._pending_norms: np.ndarray | None = None

    # -- setup ---------------------------------------------------------------------------
    def on_train_begin(self, logs: dict[str, float]) -> None:
        model = self.loop.model
        named = list(model.named_parameters())
        self.param_names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.param_shapes = [tuple(p.shape) for p in self.params]
        self.layers = list(intro.named_layers(model))
        self.layer_names = [n for n, _ in self.layers]
        self.layer_types = [type(m).__name__ for _, m in self.layers]
        self.relu_layers = [n for n, m in self.layers if is_rectifier(m)]
        # Linear and convolution layers (they declare weight_layer), input to output: the
        # layers whose gradient norms show a vanishing or exploding gradient with depth.
        self.weight_layers = [n for n, m in self.layers if is_weight_layer(m)]
        self.bn_layers = [(n, m) for n, m in self.layers if getattr(m, "running_var", None) is not None]
        self.bn_names = [n for n, _ in self.bn_layers]
        self._bn_prev = [np.array(m.running_var, dtype=np.float32) for _, m in self.bn_layers]
        # Weights before the step and the update, in buffers allocated once; norms go through
        # sg.ops.global_norm (C++, deterministic): np.linalg.norm calls BLAS, whose threads
        # fight OpenMP's for the cores and made one record cost tens of milliseconds.
        total = sum(p.size for p in self.params)
        self._w0 = np.empty(total, dtype=np.float32)
        self._dw = np.empty(total, dtype=np.float32)
        bounds = list(itertools.pairwise(np.cumsum([0] + [p.size for p in self.params])))
        self._w0_views = [self._w0[a:b] for a, b in bounds]
        self._dw_views = [self._dw[a:b] for a, b in bounds]

    def _due(self, step: int) -> bool:
        return step % self.every == 0

    # -- the recorded step -----------------------------------------------------------------
    def on_batch_begin(self, step: int) -> None:
        if self._due(step) and self.activations:
            self._probe = LayerProbe(self.loop.model).__enter__()

    def on_before_optimizer_step(self, step: int) -> None:
        if self._probe is not None:
            self._probe.__exit__(None, None, None)
        if not self._due(step):
            return
        # One copy of the weights every k steps, for the update-to-weight ratio.
        for p, w0 in zip(self.params, self._w0_views, strict=True):
            np.copyto(w0, p.data.reshape(-1))
        self._before = self._w0
        # Only needed if the optimizer does not hand out its own per-parameter norms.
        self._pending_norms = None if intro.optimizer_param_norms(self.loop.optimizer) is not None \
            else param_norms(self.params)

    def on_batch_end(self, step: int, logs: dict[str, float]) -> None:
        if not self._due(step) or self._before is None:
            return
        norms = intro.optimizer_param_norms(self.loop.optimizer)
        if norms is None or len(norms) != len(self.params):
            norms = self._pending_norms if self._pending_norms is not None else param_norms(self.params)
        self._grad.append(np.asarray(norms, dtype=np.float64))
        self._ratio.append(self._update_ratios())
        self._before = None
        probe = self._probe
        self._probe = None
        fs = probe.forward_stats if probe is not None else {}
        nan = float("nan")
        self._act_mean.append(np.array([fs.get(n, {}).get("mean", nan) for n in self.layer_names]))
        self._act_std.append(np.array([fs.get(n, {}).get("std", nan) for n in self.layer_names]))
        self._dead.append(np.array([fs.get(n, {}).get("dead", nan) for n in self.relu_layers]))
        drift = []
        for i, (_, m) in enumerate(self.bn_layers):
            rv = np.array(m.running_var, dtype=np.float32)
            prev = self._bn_prev[i]
            drift.append(_norm(rv - prev) / max(_norm(prev), 1e-30))
            self._bn_prev[i] = rv
        self._bn_drift.append(np.array(drift))
        self.steps.append(step)

    def _update_ratios(self) -> np.ndarray:
        out = np.empty(len(self.params))
        for i, (p, w0, dw) in enumerate(zip(self.params, self._w0_views, self._dw_views, strict=True)):
            np.subtract(p.data.reshape(-1), w0, out=dw)
            out[i] = _norm(dw) / max(_norm(w0), 1e-30)
        return out

    def detach(self) -> None:
        """Remove the layer taps if a step was interrupted while they were on."""
        if self._probe is not None:
            self._probe.__exit__(None, None, None)
            self._probe = None

    def on_train_end(self, logs: dict[str, float]) -> None:
        if self.print_at_end and self.steps:
            print(self.table(), file=sys.stderr)

    # -- results -------------------------------------------------------------------------
    def arrays(self) -> dict[str, Any]:
        """steps (R,), grad_norm and update_ratio (R, n_params), act_mean and act_std
        (R, n_layers), dead_relu (R, n_relu_layers), bn_var_drift (R, n_bn_layers; relative change
        of running_var since the previous record), and the matching name lists (weight_layers:
        the Linear and convolution layers among layer_names)."""

        def stack(rows: list[np.ndarray], width: int) -> np.ndarray:
            return np.vstack(rows) if rows else np.zeros((0, width))

        return {
            "steps": np.asarray(self.steps, dtype=np.int64),
            "grad_norm": stack(self._grad, len(self.param_names)),
            "update_ratio": stack(self._ratio, len(self.param_names)),
            "act_mean": stack(self._act_mean, len(self.layer_names)),
            "act_std": stack(self._act_std, len(self.layer_names)),
            "dead_relu": stack(self._dead, len(self.relu_layers)),
            "bn_var_drift": stack(self._bn_drift, len(self.bn_names)),
            "param_names": list(self.param_names),
            "layer_names": list(self.layer_names),
            "layer_types": list(self.layer_types),
            "relu_layers": list(self.relu_layers),
            "weight_layers": list(self.weight_layers),
            "bn_layers": list(self.bn_names),
        }

    def layer_grad_norm_series(self) -> tuple[list[str], np.ndarray]:
        """(layers, norms): the layers that have parameters, in forward order, named as in
        `layer_names`, and their gradient norms (R, n_layers): per record, the L2 norm of all
        of the layer's parameter gradients together (sqrt of the sum of their squared norms)."""
        params: list[str] = getattr(self, "param_names", [])  # set when training begins
        return self._layer_norms(self._grad, len(params))

    def _layer_norms(self, records: Sequence[Any], n_params: int) -> tuple[list[str], np.ndarray]:
        """(layers, norms) of the given records of per-parameter gradient norms."""
        groups: dict[str, list[int]] = {}
        for i, name in enumerate(getattr(self, "param_names", [])):
            groups.setdefault(name.rsplit(".", 1)[0] if "." in name else name, []).append(i)
        grad = np.vstack(records) if len(records) else np.zeros((0, n_params))
        norms = np.zeros((len(grad), len(groups)))
        for j, idx in enumerate(groups.values()):
            norms[:, j] = np.sqrt(np.sum(grad[:, idx] ** 2, axis=1))
        return list(groups), norms

    def layer_grad_norms(self, record: int = -1) -> dict[str, float]:
        """Gradient norm per layer (the parameters of a layer combined), for one record."""
        # only that record (the whole series would make a per-record loop quadratic)
        layers, norms = self._layer_norms([self._grad[record]], len(self.param_names))
        return dict(zip(layers, map(float, norms[0]), strict=True))

    def plot(self, layers: Sequence[str] | None = None, ax: Any = None, *,
             vanish: float | None = None, explode: float | None = None,
             figsize: tuple[float, float] | None = None, **line_kwargs: Any) -> Any:
        """Per-layer gradient norms over the recorded optimizer steps, one line per layer
        with parameters (labelled as in `layer_names`, coloured by depth, dark at the input;
        `layers` picks some, e.g. `monitor.weight_layers`), on a log y axis: the picture of a
        vanishing gradient (the lines fan out by decades from the output layer to the input)
        or an exploding one.
        The monitor has no thresholds of its own: `vanish` and `explode` (gradient norms)
        are drawn as dashed horizontal lines when given. Returns the matplotlib Figure
        (matplotlib is optional: without it this raises ImportError saying
        `pip install matplotlib`). Nothing recorded yet raises ValueError, a layer without
        parameters (or unknown) KeyError naming it. `ax`: draw on this Axes instead of a
        new figure; other keyword arguments go to every `Axes.plot` call."""
        if not self.steps:
            raise ValueError("GradientMonitor.plot: nothing recorded yet (attach the monitor to "
                             "sg.fit, or use fit(..., diagnostics=k))")
        names, norms = self.layer_grad_norm_series()
        picked = names if layers is None else list(layers)
        for name in picked:
            if name not in names:
                raise KeyError(f"GradientMonitor.plot: layers: {name!r} is not a layer with "
                               f"parameters (choose from {', '.join(names)})")
        fig, (a,) = _plot.panels("GradientMonitor.plot", 1, ax, figsize)
        x = np.asarray(self.steps, dtype=np.int64)
        # colours by depth, input to output: the default cycle of 10 repeats in deep models
        viridis = _plot.pyplot("GradientMonitor.plot").cm.viridis
        colours = viridis(np.linspace(0.0, 0.9, len(picked)))
        for name, colour in zip(picked, colours, strict=True):
            a.plot(x, norms[:, names.index(name)], label=name,
                   **{"color": colour, **line_kwargs})
        for value, what in ((vanish, "vanishing"), (explode, "exploding")):
            if value is not None:
                a.axhline(float(value), color="0.4", ls="--", lw=1.0, label=f"{what} ({value:g})")
        a.set_yscale("log")
        a.set_title("gradient norm per layer (before clipping)")
        a.set_xlabel("optimizer step")
        a.set_ylabel("grad norm")
        a.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0),
                 ncol=len(picked) // 16 + 1)  # beside the axes: the lines fill them
        a.grid(True, which="both", alpha=0.3)
        return fig

    def table(self, record: int = -1) -> str:
        """Record `record` (default: the latest) as a text table: per parameter its gradient
        norm and update-to-weight ratio, then the per-layer rows."""
        if not self.steps:
            return "GradientMonitor: nothing recorded yet"
        i = record
        # Columns as wide as the longest name (nested blocks: '3.module.0.weight'; types:
        # 'AdaptiveAvgPool2d'), so that every row lines up.
        w1 = max([24] + [len(n) + 2 for n in (*self.param_names, *self.layer_names)])
        w2 = max([16] + [len(str(s)) + 2 for s in self.param_shapes]
                 + [len(t) + 2 for t in self.layer_types])
        lines = [f"gradient health at step {self.steps[i]}",
                 f"{'parameter':<{w1}}{'shape':<{w2}}{'grad_norm':>12}{'update/weight':>15}"]
        for name, shape, g, r in zip(self.param_names, self.param_shapes, self._grad[i], self._ratio[i], strict=False):
            lines.append(f"{name:<{w1}}{shape!s:<{w2}}{_fmt(g):>12}{_fmt(r):>15}")
        dead = dict(zip(self.relu_layers, self._dead[i], strict=False))
        drift = dict(zip(self.bn_names, self._bn_drift[i], strict=False))
        lines.append(f"{'layer':<{w1}}{'type':<{w2}}{'act_mean':>12}{'act_std':>12}{'dead_relu':>11}"
                     f"{'bn_var_drift':>14}")
        for j, (name, kind) in enumerate(zip(self.layer_names, self.layer_types, strict=False)):
            d = f"{dead[name]:.1%}" if name in dead and not math.isnan(dead[name]) else "-"
            lines.append(f"{name:<{w1}}{kind:<{w2}}{_fmt(self._act_mean[i][j]):>12}"
                         f"{_fmt(self._act_std[i][j]):>12}{d:>11}{_fmt(drift.get(name)):>14}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()
