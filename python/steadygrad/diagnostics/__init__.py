"""Gradient-health diagnostics: GradientMonitor (monitor.py: a fit callback recording, every k
steps, per-parameter gradient norms, update-to-weight ratios and per-layer activation
statistics), `check_init` (init_check.py: the step-0 signal-propagation check) and the
temporary layer taps both use (probe.py). It may import `steadygrad.callbacks` (the Callback
base), `steadygrad.nn` (check_init's default loss), `steadygrad.ops` (norms) and
`steadygrad._introspect` and `steadygrad._args` (argument checks) and `steadygrad._plot`
(GradientMonitor.plot's matplotlib, imported when a figure is drawn); never `steadygrad.training`, which imports it, nor
`steadygrad.checkpoint`."""

from __future__ import annotations

from steadygrad.diagnostics.init_check import InitIssue, InitReport, check_init
from steadygrad.diagnostics.monitor import GradientMonitor, param_norms

__all__ = ["GradientMonitor", "InitIssue", "InitReport", "check_init", "param_norms"]
