"""Old build vs new build of steadygrad, same run: the training step (S and M MLPs, the C1 and C2
CNNs: forward, loss, backward, Adam with clipping) and the optimizer step alone, through the public API only,
so any two source trees can be compared. Each (tree, case) is timed in a fresh process, the
trees alternate round by round, and the medians and new/old ratios come from this one run.

    python benchmarks/bench_builds.py OLD_TREE NEW_TREE [--rounds 5] [--threads 2] [--cases C1,C2]

OLD_TREE/NEW_TREE: directories whose python/ holds an importable steadygrad (with its _core).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, sys, time
import numpy as np
import steadygrad as sg
from steadygrad import nn, optim

case, threads = sys.argv[1], int(sys.argv[2])
sg.set_num_threads(threads)
sg.manual_seed(0)
rng = np.random.default_rng(0)
if case in ("C1", "C2"):  # the CLI's CNN configurations
    from steadygrad.bench import models_cnn as mc
    cfg = mc.CNN_CONFIGS[case]
    model = nn.Sequential(*mc.modules(cfg, nn, nn.Residual))
    x = rng.standard_normal((cfg.batch,) + cfg.input_shape).astype(np.float32)
    y = rng.integers(0, 10, cfg.batch)
else:
    dims, batch = {"S": ((784, 256, 256, 10), 64), "M": ((784, 1024, 1024, 10), 256),
                   "opt": ((784, 1024, 1024, 10), 256)}[case]
    layers = []
    for i, o in zip(dims[:-2], dims[1:-1]):
        layers += [nn.Linear(i, o), nn.BatchNorm1d(o), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(dims[-2], dims[-1]))
    x = rng.standard_normal((batch, dims[0])).astype(np.float32)
    y = rng.integers(0, dims[-1], batch)
opt = optim.Adam(model.parameters(), lr=1e-3, max_grad_norm=1.0)
lf = nn.CrossEntropyLoss()

def train_step():
    opt.zero_grad()
    lf(model(x), y)
    model.backward(lf.backward(), input_grad=False)
    opt.step()

if case == "opt":  # one backward for fresh gradients, then the fused step alone
    train_step()
    lf(model(x), y)
    model.backward(lf.backward(), input_grad=False)
    fn = opt.step
else:
    fn = train_step
for _ in range(10):
    fn()
samples = []
for _ in range(15):
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 0.2:
        fn()
        n += 1
    samples.append((time.perf_counter() - t0) / n)
print(json.dumps(sorted(samples)[len(samples) // 2]))
"""


def run(tree: str, case: str, threads: int) -> float:
    env = dict(os.environ, PYTHONPATH=os.path.join(tree, "python"))
    out = subprocess.run([sys.executable, "-c", CHILD, case, str(threads)], env=env,
                         capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cases", default="S,M,opt", help="comma-separated: S, M, opt, C1, C2")
    args = ap.parse_args()
    cases = tuple(args.cases.split(","))
    got: dict[tuple[str, str], list[float]] = {}
    for r in range(args.rounds):
        for case in cases:
            for name, tree in (("old", args.old), ("new", args.new))[:: 1 if r % 2 == 0 else -1]:
                got.setdefault((name, case), []).append(run(tree, case, args.threads))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    print("| case | old (ms) | new (ms) | new/old | spread old / new |\n|---|---|---|---|---|")
    for case in cases:
        old, new = got[("old", case)], got[("new", case)]
        mo, mn = statistics.median(old), statistics.median(new)
        spread = f"{1e3 * min(old):.3f}-{1e3 * max(old):.3f} / {1e3 * min(new):.3f}-{1e3 * max(new):.3f}"
        print(f"| {case} | {1e3 * mo:.3f} | {1e3 * mn:.3f} | {mn / mo:.3f} | {spread} |")


if __name__ == "__main__":
    main()
