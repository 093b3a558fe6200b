"""Classify scikit-learn's bundled 8x8 digits as 1x8x8 images with a small CNN trained by sg.fit.

conv3x3 1->16 + BatchNorm2d + ReLU, conv3x3 16->32 + BatchNorm2d + ReLU, max-pool 2, Dropout,
Linear 512->10; Adam with fused gradient clipping, ReduceLROnPlateauCallback and EarlyStopping
on a validation split, then test accuracy on a held-out quarter of the data (the split of
digits_mlp.py). Runs in seconds on 2 cores; prints `test accuracy: 0.98xx`.

    python examples/digits_cnn.py [--verbose 1] [--checkpoint digits_cnn.safetensors]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import steadygrad as sg
from steadygrad import nn, optim
from steadygrad.callbacks import EarlyStopping, ReduceLROnPlateauCallback


def data(seed: int = 0):
    x, y = load_digits(return_X_y=True)
    x = x.reshape(-1, 1, 8, 8)  # NCHW
    x_trv, x_test, y_trv, y_test = train_test_split(x, y, test_size=0.25, stratify=y, random_state=seed)
    x_tr, x_val, y_tr, y_val = train_test_split(x_trv, y_trv, test_size=0.15, stratify=y_trv,
                                                random_state=seed)
    # One mean and std for every pixel: a convolution applies the same filter everywhere.
    mean, std = x_tr.mean(), x_tr.std()
    prep = lambda a: ((a - mean) / std).astype(np.float32)  # noqa: E731
    return (prep(x_tr), y_tr.astype(np.int64)), (prep(x_val), y_val.astype(np.int64)), \
        (prep(x_test), y_test.astype(np.int64))


def build() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.1),
        nn.Linear(32 * 4 * 4, 10),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--verbose", type=int, default=0)
    ap.add_argument("--checkpoint", default=None, help="save the best model here")
    args = ap.parse_args()

    (x_tr, y_tr), (x_val, y_val), (x_te, y_te) = data()
    sg.manual_seed(0)
    model = build()
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.Adam(model.parameters(), lr=3e-3, max_grad_norm=5.0)
    callbacks = [
        ReduceLROnPlateauCallback(monitor="val_loss", factor=0.3, patience=3),
        EarlyStopping(monitor="val_loss", patience=8, restore_best_weights=True),
    ]
    t0 = time.perf_counter()
    hist = sg.fit(model, loss_fn, opt, x_tr, y_tr, epochs=args.epochs, batch_size=32,
                  validation_data=(x_val, y_val), callbacks=callbacks, seed=0, verbose=args.verbose)
    elapsed = time.perf_counter() - t0
    test = sg.evaluate(model, loss_fn, x_te, y_te)
    if args.checkpoint:
        sg.save(args.checkpoint, model, opt, extra={"fit": hist.fit_state})
    print(f"train samples: {len(x_tr)}, validation: {len(x_val)}, test: {len(x_te)}")
    print(f"epochs run: {len(hist)}, best val_loss: {min(hist['val_loss']):.4f}, "
          f"final lr: {hist['lr'][-1]:.2g}, training time: {elapsed:.1f} s")
    print(f"test loss: {test['loss']:.4f}")
    print(f"test accuracy: {test['accuracy']:.4f}")


if __name__ == "__main__":
    main()
