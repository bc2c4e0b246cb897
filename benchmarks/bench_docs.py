"""The documentation site by numbers: README length before and after, API coverage, build time, example runtime.

Prints, from one run:

- the README's length in lines at ``--before`` (a git revision; ``git show REV:README.md``) and in the working tree;
- the lines of ``lstm_interp/cli/*.py`` (the issue's thin shell) at ``--before`` and in the working tree, per file,
  and its code lines among them (no blank line, comment or docstring), with the options its parsers declare now;
- the public names (``lstm_interp.__all__`` and ``lstm_interp.callbacks.__all__``) and how many of them have an
  entry (an mkdocstrings anchor) in the built API reference;
- the pages of the site, and the ```python examples of docs/ and README.md;
- the wall time of ``mkdocs build --strict`` (``--repeats`` builds, each into a fresh folder);
- with ``--examples``, the time to run every example page by page (tests/markdown_examples.py), as the test does.

    python benchmarks/bench_docs.py --repeats 3 --examples
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from markdown_examples import documentation_pages, examples  # noqa: E402  (tests/ is not a package)


def file_text(revision: str | None, path: str) -> str:
    """The text of ``path`` at ``revision`` (``None``: the working tree)."""
    if revision is None:
        return (ROOT / path).read_text(encoding="utf-8")
    shown = subprocess.run(["git", "show", f"{revision}:{path}"], cwd=ROOT, capture_output=True, text=True, check=True)
    return shown.stdout


def readme_lines(revision: str | None, path: str = "README.md") -> int:
    """Lines of README.md (or ``path``) at ``revision`` (``None``: the working tree)."""
    return len(file_text(revision, path).splitlines())


def code_lines(source: str) -> int:
    """Lines of ``source`` that are not blank, a comment or part of a docstring."""
    docstrings = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and ast.get_docstring(node) is not None:
            docstrings.update(range(body[0].lineno, body[0].end_lineno + 1))
    lines = source.splitlines()
    return sum(1 for i, line in enumerate(lines, 1) if line.strip() and not line.strip().startswith("#")
               and i not in docstrings)  # fmt: skip


def cli_lines(revision: str | None) -> dict[str, tuple[int, int]]:
    """(lines as ``wc -l`` counts them, code lines) of each ``lstm_interp/cli/*.py`` at ``revision`` (``None``: the
    working tree)."""
    if revision is None:
        names = [p.name for p in sorted(ROOT.glob("lstm_interp/cli/*.py"))]
    else:
        listed = subprocess.run(["git", "ls-tree", "--name-only", f"{revision}:lstm_interp/cli"], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
        names = [name for name in listed if name.endswith(".py")]
    texts = {name: file_text(revision, f"lstm_interp/cli/{name}") for name in names}
    return {name: (len(text.splitlines()), code_lines(text)) for name, text in texts.items()}


def cli_options() -> tuple[int, int]:
    """(commands, options and positional arguments) of the ``lstm-interp`` parsers in the working tree, ``--help``
    left out; the Lightning commands (``fit``, ``validate``, ``test``) are LightningCLI's and not counted."""
    from lstm_interp.cli.main import COMMANDS, LIGHTNING_COMMANDS, parser_of

    names = [name for name in COMMANDS if name not in LIGHTNING_COMMANDS]
    return len(names), sum(len(parser_of(name)._actions) - 1 for name in names)


def build(site: Path) -> float:
    """Seconds for one ``mkdocs build --strict`` into ``site``; a failed build stops the script with its log."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"mkdocs build --strict failed:\n{proc.stdout}{proc.stderr}")
    return seconds


def documented(site: Path) -> tuple[list[str], list[str]]:
    """(public names, those with an anchor in the site's API reference)."""
    import lstm_interp.callbacks  # binds lstm_interp too

    names = [f"lstm_interp.{n}" for n in lstm_interp.__all__]
    names += [f"lstm_interp.callbacks.{n}" for n in lstm_interp.callbacks.__all__]
    ids = {i for p in (site / "reference" / "api").rglob("*.html") for i in re.findall(r'id="([^"]+)"', p.read_text())}
    return names, [n for n in names if n in ids]


def run_examples(pages: list[str]) -> dict[str, dict]:
    """Every page's examples, as tests/test_docs_examples.py runs them (one child process, offline, one thread)."""
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
        env |= {"LSTM_INTERP_CACHE": str(Path(folder) / "cache"), "PYTHONWARNINGS": "ignore"}
        out = Path(folder) / "results.json"
        script = ROOT / "tests" / "markdown_examples.py"
        subprocess.run([sys.executable, str(script), str(out), *pages], cwd=folder, env=env, capture_output=True)
        return json.loads(out.read_text(encoding="utf-8"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default="HEAD", help="git revision of the README to compare with (default HEAD)")
    parser.add_argument("--repeats", type=int, default=3, help="strict builds to time (default 3)")
    parser.add_argument("--examples", action="store_true", help="also time every page's examples")
    args = parser.parse_args()

    commit = subprocess.run(["git", "rev-parse", "--short", args.before], cwd=ROOT, capture_output=True, text=True)
    print(f"python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs")
    print(f"README.md lines: {readme_lines(args.before)} at {args.before} ({commit.stdout.strip()}), "
          f"{readme_lines(None)} now")  # fmt: skip
    for label, counts in ((f"at {args.before}", cli_lines(args.before)), ("now", cli_lines(None))):
        files = ", ".join(f"{name} {lines}" for name, (lines, _) in counts.items())
        total, code = (sum(c[i] for c in counts.values()) for i in (0, 1))
        print(f"lstm_interp/cli lines {label}: {total:,} in {len(counts)} files ({files}); {code:,} of them code")
    commands, options = cli_options()
    print(f"lstm_interp/cli now declares {options} options and arguments in {commands} commands (fit/validate/test: "
          "LightningCLI's own)")  # fmt: skip

    pages = [p for p in documentation_pages() if examples(p)]
    blocks = sum(len(examples(p)) for p in pages)
    times = []
    with tempfile.TemporaryDirectory() as folder:
        for i in range(args.repeats):
            site = Path(folder) / f"site{i}"
            times.append(build(site))
        names, found = documented(site)
        html_pages = len(list(site.rglob("index.html")))
    print(f"public names documented in the API reference: {len(found)} of {len(names)}")
    missing = sorted(set(names) - set(found))
    if missing:
        print(f"  missing: {', '.join(missing)}")
    print(f"site: {html_pages} pages; {blocks} python examples on {len(pages)} pages (docs/ and README.md)")
    shown = ", ".join(f"{t:.1f}" for t in times)
    print(f"mkdocs build --strict: median {statistics.median(times):.1f} s over {len(times)} builds ({shown})")

    if args.examples:
        start = time.perf_counter()
        results = run_examples([p.relative_to(ROOT).as_posix() for p in pages])
        total = time.perf_counter() - start
        for page, outcome in results.items():
            status = "ok" if outcome["ok"] else "FAILED"
            print(f"  {page:45s} {outcome['seconds']:6.1f} s  {status}")
        print(f"examples: {total:.1f} s in all, one child process, one thread")


if __name__ == "__main__":
    main()
