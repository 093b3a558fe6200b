"""The training loop: `fit` (loop.py; one epoch and its steps in epoch.py), `evaluate` and
`predict` (evaluation.py), the argument checks that all
run before the first step (checks.py), the state of a running fit that callbacks see (run.py),
what fit returns and resumes from (history.py: History, FitState; plotting.py draws
History.plot), and what it prints (display.py: the ProgressBar callback, drawn with
steadygrad.progress's bar). It sits on top:
it may import `steadygrad.callbacks` (the hooks it calls), `steadygrad.diagnostics` (the
GradientMonitor behind `fit(diagnostics=k)`), `steadygrad.checkpoint` (resume and
ModelCheckpoint's writes), `steadygrad.data` (DataLoader, the batch gather and prefetch),
`steadygrad.metrics` (the logged metrics by name), `steadygrad.optim`, `steadygrad.progress`,
`steadygrad._introspect`, `steadygrad._plot` (the figures' matplotlib) and
`steadygrad.compiled` (the compiled step fit runs when the model compiles) and
`steadygrad._precision` (fit's precision=); nothing below it imports it. inputs.py settles what fit trains
on (arrays or a DataLoader, validation_split, sample and class weights, metrics)."""

from __future__ import annotations

from steadygrad.training.checks import DroppedBatchWarning
from steadygrad.training.evaluation import evaluate, predict
from steadygrad.training.history import FitState, History
from steadygrad.training.loop import fit

__all__ = ["DroppedBatchWarning", "FitState", "History", "evaluate", "fit", "predict"]
