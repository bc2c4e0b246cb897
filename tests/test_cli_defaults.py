"""The CLI repeats a few of the library's defaults so that ``--help`` imports no torch; they must not drift apart.

The CLI always passes its value, so a copy that drifted would silently override the library's default.
"""

from __future__ import annotations

from importlib import import_module

import pytest


@pytest.mark.parametrize(
    ("cli_module", "library_module", "name"),
    [
        ("analysis", "report.run_analysis", "DEFAULT_NGRAM_ORDER"),
        ("analysis", "analysis.unit_atlas", "DEFAULT_K"),
        ("analysis", "analysis.unit_atlas", "DEFAULT_WINDOW"),
        ("analysis", "analysis.unit_atlas", "DEFAULT_BINS"),
        ("analysis", "analysis.unit_atlas", "DEFAULT_FEATURE_CHARS"),
        ("analysis", "analysis.unit_atlas", "DEFAULT_ABLATION_CHARS"),
        ("analysis", "analysis.unit_atlas", "DEFAULT_SEGMENT_CHARS"),
        ("experiments", "analysis.probe", "DEFAULT_MAX_ROWS"),
        ("models", "tracing.trace", "DEFAULT_CHUNK_SIZE"),
        ("_arguments", "analysis.corpus_shards", "DEFAULT_SHARD_CHARS"),
        ("_arguments", "analysis.corpus_shards", "DEFAULT_PRIME_CHARS"),
    ],
)
def test_the_cli_copies_the_library_default(cli_module: str, library_module: str, name: str) -> None:
    # Modules by path: several share their name with the function they define, which their package exports.
    cli_value = getattr(import_module(f"lstm_interp.cli.{cli_module}"), name)
    assert cli_value == getattr(import_module(f"lstm_interp.{library_module}"), name), f"cli.{cli_module}.{name}"
