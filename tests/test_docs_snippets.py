"""Runs the ```python blocks of every guide page (docs/*.md), in order, each page in a fresh
interpreter as a reader would paste them: a snippet that no longer matches the code fails
here, and so does one that warns (-W error). Pages keep their sizes small; one OpenMP thread
(results do not depend on it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
# A fence at any indentation (a snippet inside a list item), closed at the same indentation.
FENCE = re.compile(r"^( *)```python\n(.*?)^\1```$", flags=re.M | re.S)


def snippets(page: Path) -> list[str]:
    return [textwrap.dedent(body) for _, body in FENCE.findall(page.read_text())]


def test_guide_pages_have_snippets() -> None:
    names = {p.stem for p in PAGES}
    for page in ("index", "getting_started", "from_pytorch", "writing_a_layer", "convolutions",
                 "data_loading", "checkpoints", "gradients", "performance"):
        assert page in names, f"docs/{page}.md is missing"
    assert not [p.name for p in PAGES if not snippets(p)], "a guide page without a python snippet"


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_page_snippets_run(page: Path, tmp_path: Path) -> None:
    blocks = snippets(page)
    for optional in ("torch", "sklearn"):  # test extras: a page using one needs it
        if re.search(rf"^(import|from) {optional}\b", "\n".join(blocks), flags=re.M):
            pytest.importorskip(optional, reason=f"{page.name} uses {optional} (pip install '.[test]')")
    # each block is marked with its place, so a failure names the block
    script = "\n".join(f"# --- {page.name}, python block {i + 1}\n{b}" for i, b in enumerate(blocks))
    (tmp_path / "page.py").write_text(script)
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    env.pop("STEADYGRAD_ISA", None)
    proc = subprocess.run([sys.executable, "-W", "error", "page.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 0, f"{page.name}: a snippet failed\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
