"""Distributed suite: the data-parallel training step (forward, CrossEntropyLoss, backward
with the gradient allreduce, clip 1.0, Adam; the train suite's step) of the S, M and L MLPs
at the configuration's global batch: 1 process x 1 thread, 2 MPI ranks x 1 thread (each half
the batch, steadygrad.distributed.DistributedDataParallel) and 1 process x 2 threads; the
allreduce of the gradient buffer alone and the part of it the step did not hide behind the
backward; PyTorch DDP over gloo launched the same way (mpiexec, one thread per rank) as the
peer; and the scaling model (scaling.py) projected from the measured allreduce."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from typing import Any, ClassVar

from steadygrad.bench import scaling, suite
from steadygrad.bench.models import CONFIGS

# (ranks, threads per rank) of each layout
LAYOUTS = {"1x1": (1, 1), "2x1": (2, 1), "1x2": (1, 2)}
# the targets: steadygrad 2x1 speed-up over torch DDP 2x1, and 2x1 vs its own 1x2
TARGETS = {"S": 3.0, "M": 1.5, "L": 1.5}
OWN_1X2_MAX = 1.3  # 2x1 step within 1.3x of steadygrad's 1 process x 2 threads
EXPOSED_MAX = 0.10  # on M and L: the allreduce's visible part <= 10% of the step
PEERS = ("torch",)


def configs_for(size: suite.Size) -> list[str]:
    return {"tiny": ["T"], "quick": ["S", "M"], "full": ["S", "M", "L"]}[size]


def _contenders() -> dict[str, suite.Runtime]:
    out = {f"steadygrad_{k}": suite.STEADYGRAD for k in LAYOUTS}
    out.update({f"torch_{k}": suite.TORCH for k in ("2x1", "1x2")})
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(config: str, framework: str, layout: str, plan: suite.Plan,
           timeout: float = 900.0) -> dict[str, Any]:
    """Runs dist_rank for one layout (under mpiexec for more than one rank) and returns
    rank 0's result."""
    ranks, threads = LAYOUTS[layout]
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = str(threads)
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))  # torch's gloo
    task = json.dumps({"config": config, "framework": framework,
                       "plan": {"warmup": plan.warmup, "min_time": plan.min_time,
                                "repeat": plan.repeat, "rounds": plan.rounds}})
    cmd = [sys.executable, "-m", "steadygrad.bench.dist_rank", task]
    if ranks > 1:
        if shutil.which("mpiexec") is None:
            raise RuntimeError("mpiexec not found: pip install 'steadygrad[mpi]'")
        cmd = ["mpiexec", "-n", str(ranks), *cmd]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    for line in p.stdout.splitlines():
        if line.startswith('{"result"'):
            result: dict[str, Any] = json.loads(line)["result"]
            return result
    tail = (p.stderr.strip().splitlines() or ["(no output)"])[-1]
    raise RuntimeError(f"{' '.join(cmd[:4])} exit {p.returncode}: {tail[:200]}")


class DistributedSuite(suite.BaseSuite):
    name = "distributed"
    about = ("Data-parallel training step (the train suite's: forward, loss, backward with "
             "the gradient allreduce, clip 1.0, Adam) at the configuration's global batch: 1 "
             "process x 1 thread, 2 MPI ranks x 1 thread (mpiexec, half the batch each) and 1 "
             "process x 2 threads; the allreduce time per step and the fraction hidden behind "
             "the backward; PyTorch DDP (gloo) launched the same way; the scaling model for 8, "
             "64 and 512 ranks. Needs the mpi extra. --quick: S and M; --full adds L.")
    # quick: S alone measured 41 s (2026-12-01, a loaded machine), M estimated from the train
    # suite's step times; full: estimated
    durations = (120, 420)
    peers = frozenset(PEERS)
    first_threads_only = True  # each layout sets its own threads
    plans: ClassVar[dict[suite.Size, suite.Plan]] = {
        "tiny": suite.Plan(repeat=1), "quick": suite.Plan(repeat=3, min_time=0.05),
        "full": suite.Plan(repeat=9, rounds=3, min_time=0.2)}
    config_names: tuple[str, ...] = ("T", "S", "M", "L")  # T: the tiny one, for the tests

    def cases(self, size: suite.Size) -> list[suite.Case]:
        return self.named_cases(configs_for(size))

    def named_cases(self, names: list[str]) -> list[suite.Case]:
        return [suite.Case(n, {"config": n}, _contenders(), threads=1) for n in names]

    def measure(self, case: suite.Case, contender: str, plan: suite.Plan) -> dict[str, Any]:
        framework, layout = contender.rsplit("_", 1)
        return launch(case.params["config"], framework, layout, plan)

    def report(self, measured: list[suite.Measured], run: suite.RunInfo) -> dict[str, Any]:
        rows, errors, notes = [], [], []
        for m in measured:
            errors += m.errors()
            rows.append(_row(m))
        columns = [["config", "config"], ["steadygrad_1x1_ms", "sg 1x1 ms"],
                   ["steadygrad_2x1_ms", "sg 2x1 ms"], ["steadygrad_1x2_ms", "sg 1x2 ms"],
                   ["steadygrad_2x1_samples_s", "2x1 samples/s"],
                   ["allreduce_ms", "allreduce ms"], ["exposed_ms", "exposed ms"],
                   ["hidden_pct", "% hidden"], ["torch_2x1_ms", "torch DDP 2x1 ms"],
                   ["torch_1x2_ms", "torch 1x2 ms"], suite.ratio_column("torch"),
                   ["own_1x2_x", "2x1 vs sg 1x2"]]
        for r in rows:
            notes.append(f"{r['config']}: {CONFIGS[r['config']].describe()}")
        notes += ["AxB: A processes (MPI ranks) x B threads each; 2x1 ranks each train on half "
                  "the global batch",
                  "sg: the compiled step (sg.compile_step, what sg.fit runs) in every layout; "
                  "on 2 ranks its tape starts each bucket's allreduce as the layers finish, "
                  "and a helper thread tests them while the backward runs",
                  "allreduce ms: the gradient buffer's allreduce alone (median); exposed ms: "
                  "what the step waited for it after its backward (DistributedDataParallel."
                  "last_wait_s); % hidden = 1 - exposed / allreduce",
                  "torch_x: torch DDP 2x1 time / steadygrad 2x1 time",
                  f"scaling model: {scaling.FORMULA}; alpha, beta fitted to the 2-rank "
                  "allreduces of 4 bytes and of the gradient buffer, t_c = step - exposed",
                  *_projection_notes(rows), run.plan.describe(), *errors]
        title = "Data-parallel training step (MPI; torch DDP over gloo)"
        return {"suite": "distributed", "title": title, "columns": columns, "rows": rows,
                "notes": notes, "errors": errors, "targets": TARGETS,
                "own_1x2_max": OWN_1X2_MAX, "exposed_max": EXPOSED_MAX}


def _projection_notes(rows: list[dict[str, Any]]) -> list[str]:
    notes = []
    for r in rows:
        for net in scaling.NETWORKS:
            cells = [f"{p['ranks']} ranks {p['step_ms']:.3g} ms ({100 * p['efficiency']:.0f}%)"
                     for p in r.get("projection", []) if p["network"] == net]
            if cells:
                notes.append(f"{r['config']} projected on {net}: " + ", ".join(cells))
    return notes


def _ms(m: suite.Measured, contender: str) -> float | None:
    s = m.seconds(contender)
    return None if s is None else s * 1e3


def _row(m: suite.Measured) -> dict[str, Any]:
    name = m.case.key
    cfg = CONFIGS[name]
    row: dict[str, Any] = {"config": name, "batch": cfg.batch}
    for c in m.case.contenders:
        row[f"{c}_ms"] = _ms(m, c)
    ours, own = row.get("steadygrad_2x1_ms"), row.get("steadygrad_1x2_ms")
    if ours:
        row["steadygrad_2x1_samples_s"] = cfg.batch / ours * 1e3
    theirs = row.get("torch_2x1_ms")
    row["torch_x"] = theirs / ours if ours and theirs else None
    # a time ratio as every `_x` column reads (report.ratio_cell): the other side's time over
    # the 2-rank step's, so below 1 the 2-rank step is the slower one
    row["own_1x2_x"] = own / ours if ours and own else None
    if row["own_1x2_x"] is not None:
        row["own_1x2_met"] = row["own_1x2_x"] >= 1.0 / OWN_1X2_MAX
    if name in TARGETS and row["torch_x"] is not None:
        row["torch_target_x"] = TARGETS[name]
        row["torch_target_met"] = row["torch_x"] >= TARGETS[name]
    r = m.results.get("steadygrad_2x1", {})
    if "allreduce_s" in r and ours:
        ar, wait = float(r["allreduce_s"]), float(r["wait_s"])
        row.update(allreduce_ms=ar * 1e3, exposed_ms=wait * 1e3,
                   hidden_pct=100.0 * max(0.0, 1.0 - wait / ar) if ar > 0 else None,
                   exposed_pct_of_step=100.0 * wait * 1e3 / ours)
        alpha, beta = scaling.fit_latency_bandwidth(float(r["allreduce_small_s"]), ar,
                                                    float(r["grad_bytes"]))
        row.update(latency_us=alpha * 1e6, bandwidth_gbs=beta / 1e9)
        compute = ours / 1e3 - wait  # the step without its exposed communication
        hidden = max(0.0, 1.0 - wait / ar) if ar > 0 else 0.0
        row["projection"] = scaling.projections(compute, hidden, float(r["grad_bytes"]), alpha)
    return row


SUITE: suite.Suite = DistributedSuite()
