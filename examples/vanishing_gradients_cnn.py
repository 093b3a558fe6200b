"""Vanishing gradients in a 20-layer CNN, and BatchNorm2d + residual blocks fixing them.

Two 20-conv-layer networks (conv3x3, 16 channels, tanh, torch's default init, whose gain
1/sqrt(3) shrinks the signal at every layer) on scikit-learn's digits as 1x8x8 images:
  plain      : [Conv2d + Tanh] x 20                                  -> gradients vanish
  bn_residual: Conv2d + BatchNorm2d + Tanh, then 19 x Residual(Conv2d + BatchNorm2d + Tanh)
               (the same layers, init and depth)                    -> gradients reach the input
For each: sg.check_init's verdict (which layer it names), the per-layer gradient norms at the
first step of sg.fit (recorded by GradientMonitor) for the conv and Linear layers, the ratio of
the first layer's to the last one's, and the test accuracy after a short training.

    python examples/vanishing_gradients_cnn.py [--epochs 3] [--plot vanishing_cnn.png]
"""

from __future__ import annotations

import argparse

import numpy as np

import steadygrad as sg
from steadygrad import nn, optim
from steadygrad.diagnostics import GradientMonitor

DEPTH, WIDTH = 20, 16
KINDS = ("plain", "bn_residual")


def data():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = ((x - x.mean()) / x.std()).reshape(-1, 1, 8, 8).astype(np.float32)
    return train_test_split(x, y.astype(np.int64), test_size=0.3, stratify=y, random_state=0)


def build(kind: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(DEPTH):
        conv = nn.Conv2d(1 if i == 0 else WIDTH, WIDTH, 3, padding=1)  # torch's default init
        if kind == "plain":
            layers += [conv, nn.Tanh()]
        elif i == 0:  # the stem changes the channel count: no identity shortcut around it
            layers += [conv, nn.BatchNorm2d(WIDTH), nn.Tanh()]
        else:
            layers.append(nn.Residual(nn.Sequential(conv, nn.BatchNorm2d(WIDTH), nn.Tanh())))
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(WIDTH, 10))


def run(kind: str, x_tr, y_tr, x_te, y_te, epochs: int):
    sg.manual_seed(0)
    model = build(kind)
    report = sg.check_init(model, x_tr[:256], y_tr[:256])
    monitor = GradientMonitor(every=10_000)  # the first step only
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.Adam(model.parameters(), lr=3e-3)
    sg.fit(model, loss_fn, opt, x_tr, y_tr, epochs=epochs, batch_size=64, callbacks=[monitor],
           seed=0, verbose=0)
    acc = sg.evaluate(model, loss_fn, x_te, y_te)["accuracy"]
    norms = monitor.layer_grad_norms(0)
    layers = monitor.weight_layers  # the 20 convs and the Linear, input -> output
    return report, layers, [norms[n] for n in layers], acc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--plot", default=None, help="save a plot here (needs matplotlib)")
    args = ap.parse_args()
    x_tr, x_te, y_tr, y_te = data()
    results = {k: run(k, x_tr, y_tr, x_te, y_te, args.epochs) for k in KINDS}

    for k in KINDS:
        report = results[k][0]
        print(f"== check_init, {k}: {'ok' if report.ok else ''}")
        for issue in report.issues:
            print(f"  {issue}")
        first = next(r for r in report.rows if r["grad_scale"] is not None)
        print(f"  first layer '{first['layer']}' ({first['type']}): parameter-gradient RMS "
              f"{first['grad_scale']:.2e} x the last layer's")
    print()
    print("per-layer gradient norm at step 0 (conv and Linear layers, input -> output)")
    print(f"{'':>4}" + "".join(f"{'layer':>13}{k:>13}" for k in KINDS))
    for i in range(DEPTH + 1):
        print(f"{i:>4}" + "".join(f"{results[k][1][i]:>13}{results[k][2][i]:>13.3e}" for k in KINDS))
    for k in KINDS:
        norms = results[k][2]
        print(f"{k}: first/last layer gradient-norm ratio {norms[0] / norms[-1]:.3e}")
    for k in KINDS:
        print(f"{k}: test accuracy after {args.epochs} epochs {results[k][3]:.4f}")

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for k in KINDS:
            ax.semilogy(range(DEPTH + 1), results[k][2], marker="o", label=k)
        ax.set_xlabel("conv / Linear layer (input -> output)")
        ax.set_ylabel("gradient norm at step 0")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot)
        print(f"plot saved to {args.plot}")


if __name__ == "__main__":
    main()
