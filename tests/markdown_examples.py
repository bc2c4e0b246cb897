"""The ```python examples of the documentation: found in Markdown pages, and run page by page.

``python tests/markdown_examples.py OUT_JSON PAGE...`` runs each page's examples in order in one namespace, each
page in a fresh folder under the current directory, and writes ``{page: {"ok": bool, "error": str, "seconds":
float}}`` to ``OUT_JSON``. ``tests/test_docs_examples.py`` starts it once for all the pages it checks, in a child
process, so that the examples' imports, registered features, threads and Hub settings never leak into other tests.
"""

from __future__ import annotations

import json
import os
import re
import sys
import textwrap
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# An opening fence of a Python block, possibly indented (inside an admonition or a list item).
_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)\s*python\s*$")


@dataclass(frozen=True)
class Example:
    """One fenced ```python block: its code and the 1-based line of its first code line in the page."""

    page: str
    line: int
    code: str


def examples(path: Path, root: Path = ROOT) -> list[Example]:
    """Every ```python block of the Markdown file ``path``, in order (blocks of other languages are not run).

    Pages are named by their path under ``root``.
    """
    page = path.relative_to(root).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Example] = []
    i = 0
    while i < len(lines):
        m = _OPEN.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = m["indent"], m["fence"]
        start = i + 1
        end = start
        while end < len(lines) and lines[end].strip() != fence:
            end += 1
        if end == len(lines):
            raise ValueError(f"{page}:{i + 1}: a ```python block that is never closed")
        body = "\n".join(line.removeprefix(indent) for line in lines[start:end])
        found.append(Example(page, start + 1, textwrap.dedent(body)))
        i = end + 1
    return found


def documentation_pages() -> list[Path]:
    """README.md and every Markdown page under docs/ (the hooks' folder holds no pages)."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return [p for p in pages if "hooks" not in p.relative_to(ROOT).parts]


def run_page(path: Path, folder: Path) -> dict[str, object]:
    """Run the examples of one page in order, in one namespace, with ``folder`` as the working directory."""
    folder.mkdir(parents=True, exist_ok=True)
    namespace: dict[str, object] = {"__name__": "__main__"}
    start = time.perf_counter()
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        for example in examples(path):
            # Line numbers of tracebacks are the page's own: the code is padded to start at its line.
            code = compile("\n" * (example.line - 1) + example.code, example.page, "exec")
            exec(code, namespace)
    except BaseException:  # an example that exits or raises anything at all fails its page
        return {"ok": False, "error": traceback.format_exc(), "seconds": time.perf_counter() - start}
    finally:
        os.chdir(cwd)
        import matplotlib.pyplot as plt

        plt.close("all")
    return {"ok": True, "error": "", "seconds": time.perf_counter() - start}


def main(argv: list[str]) -> int:
    out, pages = Path(argv[0]), argv[1:]
    results: dict[str, dict[str, object]] = {}
    for page in pages:
        results[page] = run_page(ROOT / page, Path.cwd() / page.replace("/", "__"))
        out.write_text(json.dumps(results, indent=1), encoding="utf-8")  # after each page: a crash keeps the rest
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
