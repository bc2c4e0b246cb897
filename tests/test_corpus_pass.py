"""Corpus passes on Lightning's engine: shards fixed by the corpus, the same results on one process or two (real
``strategy="ddp"`` runs over gloo, as Lightning launches them), a failing or killed rank failing the whole run and
leaving the folder as it was, and the corpus scores against ``find_cells``."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from conftest import tiny_char_lstm
from safetensors.numpy import load_file
from test_unit_atlas import quote_corpus

from lstm_interp import find_cells, trace
from lstm_interp.analysis import ActivationStats, StateIndex
from lstm_interp.analysis.corpus_pass import CorpusPassError, corpus_pass
from lstm_interp.analysis.corpus_scores import CorpusScores
from lstm_interp.analysis.corpus_shards import RankShards, ShardPlan
from lstm_interp.analysis.probe_rows import RowCollector, probe_rows
from lstm_interp.tracing import trace_segments

SCRIPT = Path(__file__).with_name("_ddp_corpus_script.py")
LAYERS = ["layers.0", "layers.1"]

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def run_script(out: Path, devices: int, fail: str | None = None) -> subprocess.CompletedProcess:
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(SCRIPT), str(out), str(devices), *(["--fail", fail] if fail else [])]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture(scope="module")
def one_and_two(tmp_path_factory) -> tuple[Path, Path]:
    """Every pass run by the script on one process and on two (``strategy="ddp"``, gloo)."""
    root = tmp_path_factory.mktemp("corpus_pass")
    for devices in (1, 2):
        result = run_script(root / f"devices{devices}", devices)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root / "devices1", root / "devices2"


def test_two_processes_give_the_statistics_of_one(one_and_two):
    one, two = (json.loads((folder / "stats.json").read_text()) for folder in one_and_two)
    assert one["steps"] == two["steps"] == len(quote_corpus(400))
    np.testing.assert_allclose(one["log_probs"], two["log_probs"], atol=1e-6, rtol=0)
    assert one["saturation"] == two["saturation"]
    for layer in LAYERS:
        assert one["cell_mean"][layer] == pytest.approx(two["cell_mean"][layer], abs=1e-6)
        assert one["cell_std"][layer] == pytest.approx(two["cell_std"][layer], abs=1e-6)


def test_two_processes_give_the_scores_rows_index_and_atlas_of_one(one_and_two):
    one, two = one_and_two
    scores = [json.loads((folder / "scores.json").read_text()) for folder in one_and_two]
    for feature in ("inside_quotes", "position_in_line"):
        a, b = scores[0][feature], scores[1][feature]
        assert [(r["layer"], r["unit"]) for r in a] == [(r["layer"], r["unit"]) for r in b]
        np.testing.assert_allclose([r["score"] for r in a], [r["score"] for r in b], atol=1e-6, rtol=0)
    rows = [np.load(folder / "rows.npz") for folder in one_and_two]
    assert all(np.array_equal(rows[0][k], rows[1][k]) for k in ("x", "positions", "types"))
    for name in ("bits/layers.0.cell.bin", "bits/layers.1.cell.bin", "tokens.bin"):
        assert (one / "index" / name).read_bytes() == (two / "index" / name).read_bytes()
    contexts = [load_file(folder / "atlas" / "contexts.safetensors") for folder in one_and_two]
    assert contexts[0].keys() == contexts[1].keys()
    for name in contexts[0]:  # the top-k contexts, their positions, ids and exact values
        assert np.array_equal(contexts[0][name], contexts[1][name], equal_nan=True), name
    cards = [json.loads((folder / "atlas" / "atlas.json").read_text()) for folder in one_and_two]
    assert cards[0]["units"] == cards[1]["units"]
    assert cards[1]["meta"]["shards"] == {"shard_chars": 1000, "prime_chars": 64, "processes": 2}


@pytest.mark.parametrize("how", ["raise", "kill"])
def test_a_failing_or_killed_rank_fails_the_run_and_leaves_the_folder_as_it_was(tmp_path, how):
    result = run_script(tmp_path, 2, fail=how)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    if how == "raise":
        assert ("CorpusPassError: rank 1 of 2 failed on shard 2 (characters 2,000-3,000): ValueError: a broken "
                "accumulator at step 2000") in output  # fmt: skip
    else:
        assert "CorpusPassError: rank 0 of 2 could not collect the other ranks' results: one of them died" in output
    # The complete index built before the failing rebuild is still there, whole, and nothing else is.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]
    assert StateIndex.open(tmp_path / "index", verify=True).num_steps == len(quote_corpus(400))


# ---------------------------------------------------------------------------------------------- in one process
def test_shards_are_fixed_by_the_corpus_and_blocks_are_contiguous():
    plan = ShardPlan(10_500, shard_chars=1000, prime_chars=100)
    assert plan.num_shards == 11 and plan.bounds(0) == (0, 0, 1000) and plan.bounds(10) == (9900, 10_000, 10_500)
    blocks = [list(RankShards(plan, 3, r)) for r in range(3)]
    assert blocks == [[0, 1, 2, -1], [3, 4, 5, 6], [7, 8, 9, 10]]
    assert [k for block in blocks for k in block if k >= 0] == list(range(11))
    with pytest.raises(ValueError, match="`shard_chars` must be an integer >= 1, got 0"):
        ShardPlan(10, shard_chars=0)


def test_one_shard_without_warm_up_is_one_stream(tmp_path):
    model, text = tiny_char_lstm(), quote_corpus(200)
    whole = corpus_pass(model, text, functools.partial(ActivationStats, "lstm", LAYERS), shard_chars=len(text),
                        prime_chars=0, segment_chars=500)  # fmt: skip
    stream = ActivationStats("lstm", LAYERS)
    for _, segment in trace_segments(model, text, 500):
        stream.update(segment)
    np.testing.assert_allclose(whole.log_probs(), stream.log_probs(), atol=1e-6, rtol=0)
    assert whole.gate_counts.keys() == stream.gate_counts.keys()


def test_corpus_scores_match_find_cells_to_the_bin_width():
    model, text = tiny_char_lstm(seed=3), quote_corpus(300)
    make = functools.partial(CorpusScores, model.vocab.chars, "lstm", LAYERS, ["inside_quotes", "position_in_line"])
    scores = corpus_pass(model, text, make, names_filter="layers.*.cell", shard_chars=len(text), prime_chars=0)
    tr = trace(model, text, names_filter="layers.*.cell")
    for feature, atol in (("inside_quotes", 2 / 2048), ("position_in_line", 1e-9)):
        exact = {(r.layer, r.unit): r for r in find_cells(tr, feature, top=None, controls=()).rows}
        for row in scores.table(feature, top=None).rows:
            assert row.score == pytest.approx(exact[row.layer, row.unit].score, abs=atol)
            assert row.effect == pytest.approx(exact[row.layer, row.unit].effect, abs=2 / 2048 if atol > 1e-9 else 0.05)
    with pytest.raises(KeyError, match="'inside_parens' was not scored"):
        scores.table("inside_parens")


def test_probe_rows_merged_from_parts_are_those_of_one_pass():
    model, text = tiny_char_lstm(), quote_corpus(300)
    segments = list(trace_segments(model, text, 700, names_filter="layers.*.cell"))
    whole = probe_rows(iter(segments), max_rows=300)
    parts = [RowCollector(max_rows=300), RowCollector(max_rows=300)]
    for start, segment in segments:
        parts[0 if start < 2100 else 1].update(segment, start)
    merged = parts[0].merge(parts[1]).rows()
    assert merged.stride == whole.stride and np.array_equal(merged.positions, whole.positions)
    assert np.array_equal(merged.x, whole.x)


def test_a_raising_shard_names_the_rank_and_the_shard_and_spawn_is_refused():
    class Broken(ActivationStats):
        def update(self, trace, start=None):
            if start and start >= 1000:
                raise ValueError("no")
            return super().update(trace, start)

    model, text = tiny_char_lstm(), quote_corpus(200)
    make = functools.partial(Broken, "lstm", LAYERS)
    with pytest.raises(CorpusPassError, match=r"rank 0 of 1 failed on shard 1 \(characters 1,000-2,000\): ValueError"):
        corpus_pass(model, text, make, shard_chars=1000, prime_chars=10)
    spawned = r"cannot run on DDPStrategy with processes started by spawn .* strategy='ddp'"
    with pytest.raises(ValueError, match=spawned):
        corpus_pass(model, text, make, accelerator="cpu", devices=2, strategy="ddp_spawn")
    with pytest.raises(ValueError, match="give a `trainer` or its arguments, not both"):
        corpus_pass(model, text, make, trainer=pl.Trainer(logger=False), devices=1)
    assert not model.training and next(model.parameters()).device == torch.device("cpu")


def test_the_analyze_command_on_two_processes_writes_what_one_writes(tmp_path):
    model, text = tiny_char_lstm(), quote_corpus(300)
    model.save_pretrained(tmp_path / "model")
    (tmp_path / "text.txt").write_text(text, encoding="utf-8")
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    outputs = {}
    for devices in ("1", "2"):
        out = tmp_path / f"analysis{devices}"
        command = [sys.executable, "-m", "lstm_interp.cli.main", "analyze", str(tmp_path / "model"),
                   str(tmp_path / "text.txt"), "--out", str(out), "--features", "inside_quotes", "position_in_line",
                   "--accelerator", "cpu", "--devices", devices, "--shard-chars", "2000",
                   "--prime-chars", "100"]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert result.stdout.count("Open ") == 1  # rank 0 alone reports, and writes
        outputs[devices] = out
    one, two = (json.loads((outputs[d] / "cells.json").read_text()) for d in ("1", "2"))
    assert one == two
    saturation = [json.loads((outputs[d] / "gate_saturation.json").read_text()) for d in ("1", "2")]
    assert saturation[0] == saturation[1]
    manifest = json.loads((outputs["2"] / "manifest.json").read_text())
    assert manifest["arguments"]["shard_chars"] == 2000 and manifest["arguments"]["prime_chars"] == 100
