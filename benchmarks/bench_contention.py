"""The training step under contention (issue 18): the S and M MLP steps (steadygrad-bench's
configurations: forward, loss, backward, Adam with clipping), compiled as sg.fit runs them and
eager, at 1 and 2 threads, on a quiet machine and beside a deliberate load: LOAD processes that
spin on the cores for the whole measurement. Each (case, threads, load) is timed in a fresh
process, the rounds interleave, and the medians and the 2-thread / 1-thread ratios come from
this one run. The issue's target: under load, the 2-thread step within 1.5x of the 1-thread one.

    python benchmarks/bench_contention.py [--cases S,M] [--load 2] [--rounds 3] [--seconds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
import numpy as np
import steadygrad as sg
from steadygrad import nn, optim
from steadygrad.bench import models as M

case, threads, mode, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
sg.set_num_threads(threads)
cfg = M.CONFIGS[case]
x, y = M.make_data(cfg)
sg.manual_seed(0)
model = nn.Sequential(*M._layers(cfg, nn, nn.Residual))
loss_fn = nn.CrossEntropyLoss()
opt = optim.Adam(model.parameters(), lr=M.LR, max_grad_norm=M.MAX_NORM)
if mode == "compiled":
    step = sg.compile_step(model, loss_fn, opt)
    run = lambda: step(x, y)
else:
    def run():
        opt.zero_grad()
        loss_fn(model(x), y)
        model.backward(loss_fn.backward(), input_grad=False)
        opt.step()
for _ in range(5):
    run()
times = []
end = time.perf_counter() + seconds
while time.perf_counter() < end or len(times) < 10:
    t0 = time.perf_counter()
    run()
    times.append(time.perf_counter() - t0)
print(json.dumps({"median_ms": 1e3 * float(np.median(times)), "steps": len(times),
                  "policy": sg._omp.policy}))
"""

SPIN = "import time\nend = time.time() + 3600\nwhile time.time() < end: pass\n"


def _child(case: str, threads: int, mode: str, seconds: float) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python")}
    out = subprocess.run([sys.executable, "-c", CHILD, case, str(threads), mode, str(seconds)],
                         env=env, check=True, capture_output=True, text=True, timeout=600)
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="S,M")
    ap.add_argument("--modes", default="compiled,eager")
    ap.add_argument("--load", type=int, default=2, help="busy processes beside the step")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.0, help="timed seconds per sample")
    args = ap.parse_args()
    cases, modes = args.cases.split(","), args.modes.split(",")
    samples: dict[tuple[str, str, int, int], list[float]] = {}
    policy = ""
    for _ in range(args.rounds):
        for load in (0, args.load):
            spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(load)]
            try:
                time.sleep(0.2 if load else 0.0)
                for case in cases:
                    for mode in modes:
                        for threads in (1, 2):
                            r = _child(case, threads, mode, args.seconds)
                            policy = str(r["policy"])
                            samples.setdefault((case, mode, load, threads), []).append(
                                float(r["median_ms"]))  # type: ignore[arg-type]
            finally:
                for p in spinners:
                    p.kill()
                    p.wait()
    print(f"CPU: {_cpu()}; OpenMP wait: {policy}; {args.rounds} rounds, medians of per-round "
          f"medians (ms per step); load = {args.load} busy processes")
    print(f"{'case':4} {'mode':9} {'load':>4} {'1 thread':>9} {'2 threads':>9} {'2t / 1t':>8}")
    for case in cases:
        for mode in modes:
            for load in (0, args.load):
                one = statistics.median(samples[(case, mode, load, 1)])
                two = statistics.median(samples[(case, mode, load, 2)])
                print(f"{case:4} {mode:9} {load:>4} {one:9.3f} {two:9.3f} {two / one:7.2f}x")


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main()
