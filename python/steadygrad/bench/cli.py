"""`steadygrad-bench`: throughput and memory of steadygrad against numpy, PyTorch and JAX.

    steadygrad-bench                      quick run of every suite (about a minute)
    steadygrad-bench train --full --threads 1,2 --json out.json

Suite contract: each suite module exposes
    run(*, threads: list[int], repeat: int | None, quick: bool, compare: set[str],
        progress) -> dict
returning {"suite", "title", "columns": [[key, header], ...], "rows": [dict, ...],
"notes": [str], ...}; `progress(total, desc)` gives a bar with update(n), set_postfix_str(s)
and close(). Peers are optional imports: a missing one is listed as skipped, never an error.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import sys
import time
from typing import Any, NoReturn

from steadygrad.bench import report
from steadygrad.bench.peers import PEERS, available_cpus, available_peers, machine_info

SUITES = ("gemm", "optim", "train", "memory")
# the peers each suite can compare against (numpy has no training step)
SUITE_PEERS = {"gemm": {"numpy", "torch", "jax"}, "optim": {"torch", "jax", "numpy"},
               "train": {"torch", "jax"}, "memory": {"torch", "jax"}}
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2 (argparse prints usage too)
        sys.stderr.write(f"steadygrad-bench: error: {message}\n")
        sys.exit(EXIT_USAGE)


def _usage_error(message: str) -> NoReturn:
    sys.stderr.write(f"steadygrad-bench: error: {message}\n")
    sys.exit(EXIT_USAGE)


def parse_threads(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        part = part.strip()
        try:
            n = int(part)
        except ValueError:
            _usage_error(f"--threads: {part!r} is not an integer (expected e.g. 2 or 1,2)")
        cpus = available_cpus()
        if n < 1 or n > cpus:
            _usage_error(f"--threads: {n} is out of range (this process may use 1..{cpus} CPUs)")
        out.append(n)
    return list(dict.fromkeys(out))


def parse_compare(text: str) -> set[str]:
    names = {p.strip().lower() for p in text.split(",") if p.strip()}
    if names == {"none"}:
        return set()
    unknown = names - set(PEERS)
    if unknown:
        _usage_error(f"--compare: unknown peer {', '.join(sorted(unknown))!r} "
                     f"(choose from {', '.join(PEERS)}, or none)")
    return names


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="steadygrad-bench", description=__doc__.split("\n\n")[0],
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("suites", nargs="*", metavar="suite",
                   help="gemm, optim, train, memory or all (default: all, quick)")
    p.add_argument("--threads", default=None,
                   help="thread counts, comma-separated (default: all available CPUs)")
    p.add_argument("--repeat", type=int, default=None,
                   help="timed repetitions; the median is reported (default: per suite)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="quick", action="store_true", default=True,
                      help="smaller problem set (default)")
    mode.add_argument("--full", dest="quick", action="store_false",
                      help="every size, more repetitions")
    p.add_argument("--compare", default=",".join(PEERS),
                   help="peers to run beside steadygrad: numpy,torch,jax (or none)")
    p.add_argument("--json", metavar="PATH", help="write every figure and the machine to PATH")
    p.add_argument("--plot", metavar="PATH", help="bar chart of the ratios (needs matplotlib)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bars on stderr")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    return p


def _resolve_suites(names: list[str]) -> list[str]:
    if not names or "all" in names:
        if len(names) > 1:
            _usage_error("'all' cannot be combined with other suites")
        return list(SUITES)
    for n in names:
        if n not in SUITES:
            _usage_error(f"unknown suite {n!r} (choose from {', '.join(SUITES)}, all)")
    return list(dict.fromkeys(names))


def run_suite(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    try:
        mod = importlib.import_module(f"steadygrad.bench.{name}")
    except ImportError as exc:
        return {"suite": name, "title": name, "rows": [], "error": f"not available: {exc}",
                "notes": [f"suite not available in this build: {exc}"]}
    run = getattr(mod, "run", None)
    if run is not None and "quick" in inspect.signature(run).parameters:
        return run(**kwargs)
    from steadygrad.bench.adapters import ADAPTERS

    if name in ADAPTERS:
        return ADAPTERS[name](mod, **kwargs)
    return {"suite": name, "title": name, "rows": [], "error": f"steadygrad.bench.{name} has no run()"}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    suites = _resolve_suites(args.suites)
    threads = parse_threads(args.threads) if args.threads else [available_cpus()]
    if args.repeat is not None and args.repeat < 1:
        _usage_error(f"--repeat: must be at least 1, got {args.repeat}")
    compare = parse_compare(args.compare)
    if args.tiny:
        os.environ["STEADYGRAD_BENCH_TINY"] = "1"  # inherited by worker processes

    started = time.time()
    peers_ok, peers_skipped = available_peers(compare)
    machine = machine_info(peers_ok)
    report.print_header(machine, threads)
    progress = report.make_progress(args.progress and sys.stderr.isatty())
    results: dict[str, dict[str, Any]] = {}
    status = 0
    for name in suites:
        wanted = compare & SUITE_PEERS[name]
        kwargs = {"threads": threads, "repeat": args.repeat, "quick": args.quick,
                  "compare": peers_ok & wanted, "progress": progress}
        t0 = time.perf_counter()
        try:
            res = run_suite(name, kwargs)
        except Exception as exc:  # one broken suite must not lose the others' figures
            res = {"suite": name, "title": name, "rows": [],
                   "error": f"{type(exc).__name__}: {exc}"}
            status = 1
        res.setdefault("skipped", {}).update(
            {p: why for p, why in peers_skipped.items() if p in wanted})
        res["elapsed_s"] = time.perf_counter() - t0
        results[name] = res
        report.print_suite(res)
        if "error" in res:
            print(f"  error: {res['error']}")
    elapsed = time.time() - started
    print(f"\ndone in {elapsed:.1f} s")
    if args.json:
        report.write_json(args.json, {
            "command": ["steadygrad-bench", *(sys.argv[1:] if argv is None else argv)],
            "started_unix": started, "elapsed_s": elapsed, "machine": machine,
            "options": {"suites": suites, "threads": threads, "repeat": args.repeat,
                        "quick": args.quick, "compare": sorted(compare), "tiny": args.tiny},
            "peers": {"available": sorted(peers_ok), "skipped": peers_skipped},
            "suites": results,
        })
    if args.plot:
        why = report.write_plot(args.plot, results)
        if why:
            print(f"plot skipped: {why}")
    return status


if __name__ == "__main__":
    sys.exit(main())
