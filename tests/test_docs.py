"""The documentation site builds with ``mkdocs build --strict`` (a real build, no mocks) and covers the package.

One build per session (about 15 s on one core), then checks on the HTML it wrote: every public name in the API
reference, every command in the command-line reference with its real options, every section of
benchmarks/RESULTS.md as a page; and the README stays a short front door that links into the site.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
README_MAX_LINES = 150


def _hook(name: str) -> ModuleType:
    """A module of docs/hooks/, imported from its file (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(f"docs_hook_{name}", ROOT / "docs" / "hooks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once into a temporary folder; a warning of any kind fails the build (strict mode)."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{log[-6000:]}"
    warnings = [line for line in log.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert not warnings, "\n".join(warnings)
    return out


def _ids(folder: Path) -> set[str]:
    return {i for page in folder.rglob("*.html") for i in re.findall(r'id="([^"]+)"', page.read_text("utf-8"))}


def test_every_public_name_is_in_the_api_reference(site: Path) -> None:
    import lstm_interp.callbacks  # binds lstm_interp too

    ids = _ids(site / "reference" / "api")
    expected = [f"lstm_interp.{name}" for name in lstm_interp.__all__]
    expected += [f"lstm_interp.callbacks.{name}" for name in lstm_interp.callbacks.__all__]
    missing = [name for name in expected if name not in ids]
    assert not missing, f"public names without an entry in docs/reference/api/*.md: {missing}"


def test_the_cli_reference_is_generated_from_the_parsers(site: Path) -> None:
    from lstm_interp.cli.main import COMMANDS, LIGHTNING_COMMANDS, PROG, parser_of

    page = (site / "reference" / "cli" / "index.html").read_text("utf-8")
    for name in COMMANDS:
        assert f"{PROG} {name}" in page, name
        if name in LIGHTNING_COMMANDS:
            continue
        parser = parser_of(name)
        for action in parser._actions:  # every option of the real parser is on the page
            for option in action.option_strings:
                assert option in page, f"{option} of `{PROG} {name}` is missing from the CLI reference"
    # The LightningCLI's own help, not a pointer to it: its flags are on the page.
    assert "--trainer.max_steps" in page and "--model.hidden_size" in page and "--data.corpus" in page


def test_every_section_of_results_md_has_a_page(site: Path) -> None:
    hook = _hook("benchmark_results")
    _, sections = hook.split_sections((ROOT / "benchmarks" / "RESULTS.md").read_text("utf-8"))
    assert len(sections) >= 20
    index = (site / "results" / "index.html").read_text("utf-8")
    for section in sections:
        page = site / "results" / section.slug / "index.html"
        assert page.is_file(), section.title
        assert f'href="{section.slug}/"' in index, section.title


def test_results_are_split_at_headings_outside_code_blocks() -> None:
    hook = _hook("benchmark_results")
    text = "# Results\n\n## First (issue 3)\n\n```\n$ python x.py --n 2 \\\n    --m 3\n## output, not a heading\n```\n"
    text += "\n### Sub\n\n```\npython benchmarks/b.py\npython 3.11.7, torch 2.13\n```\n\n## Second\n\ntext\n"
    preamble, sections = hook.split_sections(text)
    assert preamble == ["# Results", ""]
    assert [(s.title, s.slug) for s in sections] == [("First (issue 3)", "first"), ("Second", "second")]
    assert sections[0].commands() == ["python x.py --n 2 \\\n    --m 3", "python benchmarks/b.py"]
    assert "## Sub" in hook._raise_headings(sections[0].lines)
    assert "## output, not a heading" in sections[0].lines


def test_the_readme_is_a_front_door() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    assert len(readme.splitlines()) <= README_MAX_LINES
    # CI runs what sits between the markers; the docs extra is what the build above needs.
    command = re.search(r"<!-- test-command:start -->\n```bash\n(.+)\n```\n<!-- test-command:end -->", readme)
    assert command is not None
    assert '".[test,docs]"' in command.group(1) and command.group(1).endswith("pytest -q")
    for target in re.findall(r"\]\(([^)#\s]+)", readme):
        if "://" not in target:
            assert (ROOT / target).exists(), f"README.md links to {target}, which does not exist"


def test_relative_links_of_results_md_are_rewritten_for_the_site() -> None:
    from mkdocs.config import load_config
    from mkdocs.structure.files import Files

    hook = _hook("benchmark_results")
    config = load_config(str(ROOT / "mkdocs.yml"))
    config.plugins._current_plugin = None  # File.generated records the plugin that made a file; none runs here
    links = hook._Links(ROOT, ROOT / "docs", Files([]), config)
    text = (
        "![shot](../docs/explorer.png) [card](../model_cards/novel/README.md) [script](bench_trace.py) "
        "[readme](../README.md) [web](https://example.org) [here](#x)\n```\n[kept](../nowhere)\n```"
    )
    out = links.rewrite(text, ROOT / "benchmarks" / "RESULTS.md", "results/a-section.md")
    assert out.splitlines()[0] == (
        "![shot](../explorer.png) [card](../model-cards/novel.md) [script](../repo/benchmarks/bench_trace.py) "
        "readme (`README.md`) [web](https://example.org) [here](#x)"
    )
    assert "[kept](../nowhere)" in out  # code is not rewritten
    assert [f.src_uri for f in links.files] == ["repo/benchmarks/bench_trace.py"]  # copied into the site


def test_docstrings_are_read_as_google_style_markdown() -> None:
    hook = _hook("griffe_lstm_interp")
    doc = (
        "Trace it with :func:`~lstm_interp.trace` or :class:`lstm_interp.Trace`.\n\n"
        "Args:\n    model: the network.\n    start, end: the span,\n        end exclusive.\n\n"
        "Example::\n\n    >>> trace(model, text)  # doctest: +SKIP\n"
    )
    out = hook.rst_to_markdown(doc)
    assert '<autoref identifier="lstm_interp.trace" optional><code>trace</code></autoref>' in out
    assert '<autoref identifier="lstm_interp.Trace" optional><code>lstm_interp.Trace</code></autoref>' in out
    assert "    start: the span,\n        end exclusive.\n    end: the span,\n        end exclusive.\n" in out
    assert "Example:\n" in out and "doctest" not in out
