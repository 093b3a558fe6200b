"""Console output of `steadygrad-bench`: the machine header, suite tables, progress bars,
the JSON file and the optional plot. Formatting only; no timing happens here."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from steadygrad.bench.runner import ProgressFactory
from steadygrad.progress import Bar, open_bar

# A suite's result is a plain dict (see Suite.report in suite.py):
#   {"suite": str, "title": str, "columns": [[key, header], ...], "rows": [dict, ...],
#    "notes": [str, ...], "skipped": {peer: reason}, ...anything else for the JSON}


def fmt(value: Any) -> str:
    """A table cell: numbers with 3-4 significant digits, None as '-' (ratios: ratio_cell)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        a = abs(value)
        if a == 0:
            return "0"
        if a >= 1000:
            return f"{value:,.0f}"
        if a >= 100:
            return f"{value:.1f}"
        if a >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return str(value)


# A ratio's sense (a suite's result says "ratio_sense"; "time" when it does not): "time" ratios
# are peer time / steadygrad time, "memory" ratios steadygrad MiB / peer MiB; each with the
# words for steadygrad winning and losing.
RATIO_WORDS = {"time": ("faster", "slower"), "memory": ("smaller", "larger")}


def ratio_cell(value: float, sense: str = "time") -> str:
    """A ratio as the factor by which steadygrad wins or loses: a "time" ratio 2.41 (the peer
    takes 2.41x steadygrad's time) is '2.41x faster', 0.8 is '1.25x slower'; a "memory"
    ratio 0.8 (steadygrad needs 0.8x the peer's) is '1.25x smaller', 1.1 '1.10x larger'."""
    if not math.isfinite(value) or value <= 0:
        return fmt(value)
    win, lose = RATIO_WORDS[sense]
    ours_better = value >= 1.0 if sense == "time" else value <= 1.0
    factor = max(value, 1.0 / value)
    return f"{factor:.2f}x {win if ours_better else lose}"


def _cells(keys: Sequence[str], rows: Iterable[dict[str, Any]], sense: str) -> list[list[str]]:
    """Each row's cells: keys ending in '_x' are ratios of that sense (see ratio_cell)."""
    return [[ratio_cell(v, sense) if k.endswith("_x") and isinstance(v, float) else fmt(v)
             for k, v in ((k, row.get(k)) for k in keys)] for row in rows]


def render_table(columns: Sequence[Sequence[str]], rows: Iterable[dict[str, Any]],
                 title: str = "", sense: str = "time") -> str:
    """Fixed-width text table. `columns` is [(key, header), ...]; first column left-aligned,
    the rest right-aligned; ratio columns ('_x' keys) of that `sense` (see ratio_cell)."""
    heads = [c[1] for c in columns]
    cells = _cells([c[0] for c in columns], rows, sense)
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(heads)]

    def line(items: Sequence[str]) -> str:
        out = [items[0].ljust(widths[0])]
        out += [s.rjust(w) for s, w in zip(items[1:], widths[1:], strict=True)]
        return "  ".join(out).rstrip()

    parts = [title] if title else []
    parts.append(line(heads))
    parts.append("  ".join("-" * w for w in widths))
    parts += [line(r) for r in cells]
    return "\n".join(parts)


def render_markdown(columns: Sequence[Sequence[str]], rows: Iterable[dict[str, Any]],
                    sense: str = "time") -> str:
    """The same table as GitHub markdown (for benchmarks/RESULTS.md)."""
    out = ["| " + " | ".join(c[1] for c in columns) + " |"]
    out.append("|" + "|".join("---" for _ in columns) + "|")
    out += ["| " + " | ".join(r) + " |" for r in _cells([c[0] for c in columns], rows, sense)]
    return "\n".join(out)


def print_suite(result: dict[str, Any], file: TextIO | None = None) -> None:
    """Prints one suite's table, its skipped peers and its notes."""
    file = file or sys.stdout
    rows = result.get("rows", [])
    columns = result.get("columns")
    if not columns and rows:
        columns = [[k, k] for k in rows[0]]
    title = result.get("title") or result.get("suite", "")
    print(file=file)
    if columns:
        print(render_table(columns, rows, title=f"== {title}",
                           sense=result.get("ratio_sense", "time")), file=file)
    else:
        print(f"== {title}: no rows", file=file)
    for peer, why in sorted(result.get("skipped", {}).items()):
        print(f"  skipped {peer}: {why}", file=file)
    for note in result.get("notes", []):
        print(f"  note: {note}", file=file)
    file.flush()


def print_header(machine: dict[str, Any], threads: list[int], file: TextIO | None = None) -> None:
    """The machine block printed before any suite."""
    file = file or sys.stdout
    libs = ", ".join(f"{k} {v}" for k, v in machine.get("versions", {}).items() if v)
    print(f"steadygrad-bench {machine.get('version', '?')}  |  CPU: {machine.get('cpu_model')} "
          f"({machine.get('cores')} cores)  |  ISA in use: {machine.get('isa')} "
          f"(supported: {', '.join(machine.get('isa_supported', []))})", file=file)
    print(f"threads: {', '.join(map(str, threads))}  |  {libs}", file=file)
    for blas in machine.get("blas", []):
        if "error" in blas:
            print(f"numpy BLAS: {blas['error']}", file=file)
        else:
            print(f"numpy BLAS: {blas.get('internal_api')} {blas.get('version')} "
                  f"kernel {blas.get('architecture')}", file=file)
    for warning in machine.get("warnings", []):
        print(f"warning: {warning}", file=file)
    file.flush()


class NullBar:
    """The bar of a run without progress display (--no-progress, or stderr not a terminal)."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass


def make_progress(enabled: bool, file: TextIO | None = None) -> ProgressFactory:
    """Returns progress(total, desc) -> bar with update(n), set_postfix_str(s) and close():
    steadygrad.progress's bar (tqdm when installed), wiped when a suite ends. Bars go to
    stderr so stdout stays a clean table."""

    def progress(total: int, desc: str) -> Bar:
        if not enabled:
            return NullBar()
        return open_bar(total, desc, file or sys.stderr, leave=False)

    return progress


def write_json(path: str, payload: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2, default=str)
        f.write("\n")


RATIO_LABEL = "peer time / steadygrad time (higher = steadygrad faster)"


def write_plot(path: str, suites: dict[str, dict[str, Any]]) -> str | None:
    """A bar chart per suite of the ratio columns ('_x' keys). Returns a reason if skipped."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed"
    panels = []
    for name, res in suites.items():
        ratio_keys = [c[0] for c in res.get("columns", []) if c[0].endswith("_x")]
        if ratio_keys and res.get("rows"):
            panels.append((name, res, ratio_keys))
    if not panels:
        return "no ratio columns to plot"
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 3.2 * len(panels)), squeeze=False)
    for ax, (name, res, keys) in zip(axes[:, 0], panels, strict=True):
        label_key = res["columns"][0][0]
        labels = [f"{r.get(label_key)}/{r.get('threads', '')}t" for r in res["rows"]]
        width = 0.8 / len(keys)
        for j, k in enumerate(keys):
            vals = [r.get(k) or 0.0 for r in res["rows"]]
            ax.bar([i + j * width for i in range(len(vals))], vals, width, label=k[:-2])
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(labels))], labels, fontsize=7,
                      rotation=25, ha="right")
        ax.set_title(f"{name}: {res.get('ratio_label', RATIO_LABEL)}", fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
