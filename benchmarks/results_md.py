"""Prints the markdown tables of a `steadygrad-bench --json` file (for benchmarks/RESULTS.md):
`python benchmarks/results_md.py run.json [suite ...]`."""

from __future__ import annotations

import json
import sys

from steadygrad.bench.report import render_markdown


def main(argv: list[str]) -> None:
    with open(argv[0], encoding="utf-8") as f:
        data = json.load(f)
    m = data["machine"]
    print(f"- command: `{' '.join(data['command'])}`")
    print(f"- CPU: {m['cpu_model']} ({m['cores']} cores, flags {' '.join(m['cpu_flags'])}), "
          f"ISA in use: {m['isa']}, threads: {data['options']['threads']}, load average at "
          f"start: {m.get('loadavg_start')}")
    print(f"- versions: {m['versions']}; BLAS: {m['blas']}")
    for name in argv[1:] or list(data["suites"]):
        res = data["suites"][name]
        print(f"\n### {res.get('title', name)}\n")
        if res.get("rows"):
            print(render_markdown(res["columns"], res["rows"], res.get("ratio_sense", "time")))
        for note in res.get("notes", []):
            print(f"- {note}")
        for peer, why in res.get("skipped", {}).items():
            print(f"- skipped {peer}: {why}")


if __name__ == "__main__":
    main(sys.argv[1:])
