"""Every ```python example in README.md and docs/ runs, page by page, as a reader would run it.

Each page's examples run in order in one namespace, in a fresh working directory, in one child process for all the
pages (tests/markdown_examples.py): offline (``HF_HUB_OFFLINE=1``: the pretrained models load from the copies
bundled with the package), on one thread. An example that cannot run here belongs in a ```bash or ```text block.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from markdown_examples import ROOT, documentation_pages, examples

PAGES = [p.relative_to(ROOT).as_posix() for p in documentation_pages() if examples(p)]
# Generous: the examples take about a minute together on one busy core (benchmarks/RESULTS.md, "Documentation").
TIMEOUT_S = 900


@pytest.fixture(scope="module")
def results(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Run the pages this session selected, once, and return each page's outcome."""
    selected = [
        item.callspec.params["page"]
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec") and "page" in item.callspec.params
    ]
    folder = tmp_path_factory.mktemp("examples")
    cache = tmp_path_factory.mktemp("cache")
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
        "LSTM_INTERP_CACHE": str(cache),
        "HF_HOME": str(cache / "hf"),
        "PYTHONWARNINGS": "ignore",
    }
    out = folder / "results.json"
    script = Path(__file__).with_name("markdown_examples.py")
    proc = subprocess.run(
        [sys.executable, str(script), str(out), *selected],
        cwd=folder, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
    )  # fmt: skip
    found = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
    for page in selected:
        found.setdefault(page, {"ok": False, "error": f"the runner stopped before this page:\n{proc.stderr[-4000:]}"})
    return found


def test_there_are_examples_to_run() -> None:
    assert "README.md" in PAGES
    assert len(PAGES) >= 8, PAGES


@pytest.mark.parametrize("page", PAGES)
def test_page_examples_run(page: str, results: dict[str, dict]) -> None:
    outcome = results[page]
    assert outcome["ok"], f"an example of {page} failed:\n{outcome['error']}"


def test_examples_are_found_with_their_lines(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# A page\n\n```python\nx = 1\n```\n\n```bash\nnot python\n```\n\n"
        "!!! note\n\n    ```python\n    y = x + 1\n    ```\n",
        encoding="utf-8",
    )
    found = examples(page, root=tmp_path)
    assert [(b.page, b.line, b.code.strip()) for b in found] == [("page.md", 4, "x = 1"), ("page.md", 14, "y = x + 1")]
