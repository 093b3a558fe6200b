"""The documentation site builds with warnings as errors (`mkdocs build --strict`), from the
source tree as a fresh clone has it (mkdocstrings reads python/ statically, the compiled module
through its stub), and its API reference documents every public name."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from public_api import public_modules, public_names

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "reference"


def _reference_pages() -> dict[str, str]:
    """module -> the reference page (its name, without .md) that renders it (`::: module`)."""
    pages: dict[str, str] = {}
    for page in sorted(REFERENCE.glob("*.md")):
        for module in re.findall(r"^::: (\S+)\s*$", page.read_text(), flags=re.M):
            pages[module] = page.stem
    return pages


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install '.[docs]'")
    pytest.importorskip("mkdocstrings_handlers.python",
                        reason="mkdocstrings-python is not installed: pip install '.[docs]'")
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    assert "WARNING" not in proc.stderr, proc.stderr
    return out


def test_every_public_module_has_a_reference_page() -> None:
    pages = _reference_pages()
    missing = [m for m in public_modules() if m not in pages]
    assert not missing, f"no docs/reference page renders {missing} (add one with '::: module')"


def test_reference_documents_every_public_name(site: Path) -> None:
    pages = _reference_pages()
    missing = []
    for module in public_modules():
        html = (site / "reference" / pages[module] / "index.html").read_text()
        ids = set(re.findall(r'id="([^"]+)"', html))
        missing += [f"{module}.{n}" for n in public_names(module) if f"{module}.{n}" not in ids]
    assert not missing, f"the API reference has no entry for {missing}"


def test_reference_follows_all(site: Path) -> None:
    """A name outside its module's __all__ has no entry (fit's CallbackList), and Module's
    page has the methods every module inherits."""
    callbacks = (site / "reference" / "callbacks" / "index.html").read_text()
    assert 'id="steadygrad.callbacks.Callback"' in callbacks
    assert 'id="steadygrad.callbacks.CallbackList"' not in callbacks
    module = (site / "reference" / "module" / "index.html").read_text()
    for method in ("parameters", "named_parameters", "summary", "state_dict", "train", "backward"):
        assert f'id="steadygrad.nn.Module.{method}"' in module, method


def test_guide_pages_are_built(site: Path) -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    guides = re.findall(r"^\s+- [^:]+: (\w+)\.md$", nav, flags=re.M)
    assert len(guides) >= 9, guides
    for guide in guides:
        page = site / ("index.html" if guide == "index" else f"{guide}/index.html")
        assert page.is_file(), f"{guide}.md was not built"
    # and every guide page in docs/ is in the nav (mkdocs builds an unlisted page unlinked)
    pages = {p.stem for p in (ROOT / "docs").glob("*.md")}
    assert pages == set(guides), f"in docs/ but not in the nav: {sorted(pages - set(guides))}"
