"""`steadygrad-bench`: throughput and memory of steadygrad against numpy, PyTorch and JAX.

    steadygrad-bench                      quick run of every suite (about 3 minutes)
    steadygrad-bench train --full --threads 1,2 --json out.json
    steadygrad-bench train,memory --configs C1,C2   only these configurations
    steadygrad-bench train --help         what a suite measures and how long it takes
    steadygrad-bench layers --threads 2 --compare torch   single layers vs torch.nn

Every suite meets one contract (suite.py) and is measured by one runner (runner.py); this
file parses the options, prints the machine header and each suite's table, and writes the
JSON and the plot. Peers are optional imports: a missing one is listed as skipped, never an
error. Usage errors exit 2 with one line on stderr; a suite that fails exits 1, the others
still report.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time
from typing import Any, NoReturn

import steadygrad
from steadygrad.bench import report, runner
from steadygrad.bench.peers import PEERS, available_cpus, available_peers, machine_info
from steadygrad.bench.suite import FRAMEWORKS, REFERENCE_MACHINE, Size, load
from steadygrad.bench.suite import NAMES as SUITES

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2 (argparse prints usage too)
        sys.stderr.write(f"steadygrad-bench: error: {message}\n")
        sys.exit(EXIT_USAGE)


def _usage_error(message: str) -> NoReturn:
    sys.stderr.write(f"steadygrad-bench: error: {message}\n")
    sys.exit(EXIT_USAGE)


def parse_threads(text: str) -> list[int]:
    out: list[int] = []
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
                formatter_class=argparse.RawDescriptionHelpFormatter, add_help=False)
    p.add_argument("suites", nargs="*", metavar="suite",
                   help="gemm, optim, layers, train, memory or all, also comma-separated "
                        "(default: all, quick)")
    p.add_argument("-h", "--help", action="store_true",
                   help="show this help; after suite names: what they measure and how long "
                        "--quick and --full take")
    p.add_argument("--version", action="version", help="print steadygrad's version and exit",
                   version=f"steadygrad-bench (steadygrad {steadygrad.__version__})")
    p.add_argument("--threads", default=None,
                   help="thread counts, comma-separated (default: all available CPUs)")
    p.add_argument("--repeat", type=int, default=None,
                   help="timed repetitions; the median is reported (default: per suite)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="quick", action="store_true", default=True,
                      help="smaller problem set (default)")
    mode.add_argument("--full", dest="quick", action="store_false",
                      help="every size, more repetitions")
    p.add_argument("--configs", default=None, metavar="NAMES",
                   help="train and memory: only these configurations, comma-separated "
                        "(MLPs S, M, L; CNNs C1, C2), with the size's repetitions; optim: "
                        "only these optimizers (e.g. Adagrad,NAdam) at every size")
    p.add_argument("--compare", default=",".join(PEERS),
                   help="peers to run beside steadygrad: numpy,torch,jax (or none)")
    p.add_argument("--json", metavar="PATH", help="write every figure and the machine to PATH")
    p.add_argument("--plot", metavar="PATH", help="bar chart of the ratios (needs matplotlib)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bars on stderr")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    return p


def suite_names(args: list[str]) -> list[str]:
    """The names in the positional arguments, each a name or a comma list."""
    names = [n.strip() for a in args for n in a.split(",") if n.strip()]
    if args and not names:
        _usage_error(f"expected suite names, got {' '.join(map(repr, args))}")
    return names


def _resolve_suites(names: list[str]) -> list[str]:
    if not names or "all" in names:
        if len(names) > 1:
            _usage_error("'all' cannot be combined with other suites")
        return list(SUITES)
    for n in names:
        if n not in SUITES:
            _usage_error(f"unknown suite {n!r} (choose from {', '.join(SUITES)}, all)")
    return list(dict.fromkeys(names))


def resolve_configs(text: str | None, names: list[str],
                    explicit: bool) -> tuple[list[str], list[str] | None]:
    """(suites to run, configurations or None). With --configs, every named suite must take
    configurations and know each name; with no suite named, the suites that take them."""
    if text is None:
        return names, None
    configs = list(dict.fromkeys(c.strip() for c in text.split(",") if c.strip()))
    if not configs:
        _usage_error("--configs: expected comma-separated configuration names, e.g. C1,C2")
    known: dict[str, tuple[str, ...]] = {}
    for name in names:
        try:
            known[name] = load(name).config_names
        except ImportError:  # run_suite reports it
            known[name] = ()
    if not explicit:
        names = [n for n in names if known[n]]
    for name in names:
        if not known[name]:
            _usage_error(f"--configs: suite {name!r} has no configurations to choose from "
                         "(train and memory have)")
        unknown = [c for c in configs if c not in known[name]]
        if unknown:
            _usage_error(f"--configs: unknown configuration {', '.join(unknown)!r} for suite "
                         f"{name!r} (choose from {', '.join(known[name])})")
    return names, configs


def run_suite(name: str, *, threads: list[int], size: Size, repeat: int | None,
              compare: set[str], peers_ok: set[str], peers_skipped: dict[str, str],
              progress: runner.ProgressFactory,
              configs: list[str] | None = None) -> dict[str, Any]:
    """One suite's result (a suite that cannot load is a result saying so)."""
    try:
        suite = load(name)
    except ImportError as exc:
        return {"suite": name, "title": name, "rows": [], "error": f"not available: {exc}",
                "notes": [f"suite not available in this build: {exc}"]}
    wanted = compare & suite.peers
    res = runner.run(suite, threads=threads, size=size, repeat=repeat,
                     peers=peers_ok & wanted, progress=progress, configs=configs)
    res["skipped"] = {p: why for p, why in peers_skipped.items() if p in wanted}
    return res


def _size(args: argparse.Namespace) -> Size:
    """--tiny (hidden, or STEADYGRAD_BENCH_TINY=1): each suite's smallest real measurement,
    so the CLI tests finish in seconds."""
    if args.tiny or os.environ.get("STEADYGRAD_BENCH_TINY", "") not in ("", "0"):
        return "tiny"
    return "quick" if args.quick else "full"


def _about(seconds: int) -> str:
    return f"about {seconds} s" if seconds < 60 else f"about {round(seconds / 30) / 2:g} min"


def suite_help(name: str) -> str:
    """`steadygrad-bench NAME --help`: what the suite measures, its cases at --quick and
    --full and how long each takes on the reference machine."""
    suite = load(name)
    width = 88
    usage = (f"usage: steadygrad-bench {name} [--quick | --full] [--threads N[,N...]] "
             f"[--compare PEERS]{' [--configs NAMES]' if suite.config_names else ''} "
             "[--json PATH] [--plot PATH]")
    lines = [*textwrap.wrap(usage, width, subsequent_indent=" " * 24), "",
             *textwrap.wrap(suite.about, width), ""]
    peers = [f for f in FRAMEWORKS if f in suite.peers]
    lines.append(f"peers (--compare): {', '.join(peers)}")
    if suite.config_names:
        lines.append(f"configurations (--configs): {', '.join(suite.config_names)}")
    sizes: tuple[Size, Size] = ("quick", "full")
    for size, seconds in zip(sizes, suite.durations, strict=True):
        cases = suite.cases(size)
        configs = list(dict.fromkeys(c for c in map(suite.config_of, cases) if c))
        what = f"{len(cases)} case{'s' * (len(cases) != 1)}"
        if configs:
            what += f" ({', '.join(configs)})"
        default = " (default)" if size == "quick" else ""
        lines.append(f"--{size}{default}: {what}, {_about(seconds)}")
    more = ("it measures at the first --threads value only" if suite.first_threads_only
            else "each further --threads value adds about as much again")
    lines += textwrap.wrap(f"Durations: on {REFERENCE_MACHINE}; {more}. A slower or busier "
                           "machine takes longer.", width)
    lines += ["", "every option: steadygrad-bench --help"]
    return "\n".join(lines)


def _general_help(parser: argparse.ArgumentParser) -> str:
    rows = []
    for name in SUITES:
        try:
            suite = load(name)
        except ImportError as exc:
            rows.append(f"  {name:<8} not available: {exc}")
            continue
        rows.append(f"  {name:<8} --quick {_about(suite.durations[0])}, "
                    f"--full {_about(suite.durations[1])}")
    head = textwrap.wrap("suites (steadygrad-bench SUITE --help: what it measures), taking "
                         f"on {REFERENCE_MACHINE}:", 79)
    return "\n".join([parser.format_help().rstrip(), "", *head, *rows])


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    names = suite_names(args.suites)
    named = _resolve_suites(names)
    explicit = bool(names) and "all" not in names
    if args.help:
        print("\n\n".join(map(suite_help, named)) if explicit else _general_help(parser))
        return 0
    suites, configs = resolve_configs(args.configs, named, explicit=explicit)
    threads = parse_threads(args.threads) if args.threads else [available_cpus()]
    if args.repeat is not None and args.repeat < 1:
        _usage_error(f"--repeat: must be at least 1, got {args.repeat}")
    compare = parse_compare(args.compare)
    size = _size(args)

    started = time.time()
    peers_ok, peers_skipped = available_peers(compare)
    machine = machine_info(peers_ok)
    report.print_header(machine, threads)
    progress = report.make_progress(args.progress and sys.stderr.isatty())
    results: dict[str, dict[str, Any]] = {}
    status = 0
    for name in suites:
        t0 = time.perf_counter()
        try:
            res = run_suite(name, threads=threads, size=size, repeat=args.repeat,
                            compare=compare, peers_ok=peers_ok, peers_skipped=peers_skipped,
                            progress=progress, configs=configs)
        except Exception as exc:  # one broken suite must not lose the others' figures
            res = {"suite": name, "title": name, "rows": [],
                   "error": f"{type(exc).__name__}: {exc}"}
            status = 1
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
                        "quick": args.quick, "compare": sorted(compare), "tiny": args.tiny,
                        "configs": configs},
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
