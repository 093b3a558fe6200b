"""Exploding gradients, and gradient clipping rescuing the same training run.

A 10-layer ReLU MLP whose weights start 1.5x as large as Kaiming init prescribes: the
activations and gradients grow about 1.5x per layer (~60x over the stack). sg.check_init flags it at step 0. Trained
with SGD + momentum on scikit-learn's digits, the run without clipping diverges (the loss
becomes non-finite; TerminateOnNaN stops it). The identical run with `max_grad_norm=1.0`
(clipping fused into the optimizer step) trains to high accuracy. Prints the per-epoch
gradient norm of both runs.

    python examples/exploding_gradients.py
"""

from __future__ import annotations

import argparse
import math

import numpy as np

import steadygrad as sg
from steadygrad import nn, optim
from steadygrad.callbacks import TerminateOnNaN

DEPTH, WIDTH, GAIN = 10, 64, 1.5


def data():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = ((x - x.mean(0)) / (x.std(0) + 1.0)).astype(np.float32)
    return train_test_split(x, y.astype(np.int64), test_size=0.3, stratify=y, random_state=0)


def build() -> nn.Sequential:
    sg.manual_seed(0)
    layers: list = []
    n_in = 64
    for i in range(DEPTH):
        n_out = 10 if i == DEPTH - 1 else WIDTH
        lin = nn.Linear(n_in, n_out)
        nn.init.kaiming_normal_(lin.weight, nonlinearity="relu")
        lin.weight.data = lin.weight.data * GAIN  # the mistake: 1.5x the right scale
        nn.init.zeros_(lin.bias)
        layers.append(lin)
        if i < DEPTH - 1:
            layers.append(nn.ReLU())
        n_in = n_out
    return nn.Sequential(*layers)


def train(max_grad_norm: float | None, x_tr, y_tr, x_te, y_te, epochs: int):
    model = build()
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, max_grad_norm=max_grad_norm)
    stop = TerminateOnNaN()
    hist = sg.fit(model, loss_fn, opt, x_tr, y_tr, epochs=epochs, batch_size=32, callbacks=[stop],
                  seed=0, verbose=0)
    acc = sg.evaluate(model, loss_fn, x_te, y_te)["accuracy"] if stop.terminated_at is None else math.nan
    return hist, stop, acc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=15)
    args = ap.parse_args()
    x_tr, x_te, y_tr, y_te = data()

    # explode=10: flag 10x growth of the activation scale (the default, 100, is more lenient).
    report = sg.check_init(build(), x_tr[:256], y_tr[:256], explode=10.0)
    print("check_init at step 0:")
    for issue in report.issues:
        print(f"  {issue}")
    print()

    for name, clip in (("without clipping", None), ("with clipping", 1.0)):
        hist, stop, acc = train(clip, x_tr, y_tr, x_te, y_te, args.epochs)
        norms = " ".join(f"{v:.2e}" for v in hist["grad_norm_max"])
        print(f"{name}: max pre-clip gradient norm per epoch: {norms}")
        losses = hist["loss"]
        if stop.terminated_at is not None or not all(map(math.isfinite, losses)):
            print(f"{name}: diverged: loss {losses[-1]} at step {stop.terminated_at} "
                  f"(epoch {hist.epoch[-1] + 1}), skipped steps {int(sum(hist['skipped_steps']))}")
        else:
            print(f"{name}: loss {losses[0]:.3f} -> {losses[-1]:.3f}")
            print(f"{name}: test accuracy {acc:.4f}")


if __name__ == "__main__":
    main()
