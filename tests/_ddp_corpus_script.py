"""Run by ``tests/test_corpus_pass.py``: every corpus pass on ``--devices N`` CPU processes (``strategy="ddp"``).

Lightning's DDP launcher starts the other ranks by running this script again, which is why this is a script and not
a test. Rank 0 writes what each pass gave under ``<out>``: ``stats.json`` and ``scores.json`` (numbers),
``rows.npz`` (the probe rows), the state index folder ``index/`` and the atlas's ``atlas.json``. With ``--fail raise``
rank 1 raises in its first shard of a second index build over the first; with ``--fail kill`` it kills itself
(SIGKILL) there.

Usage::

    python tests/_ddp_corpus_script.py <out> <devices> [--fail raise|kill]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from conftest import tiny_char_lstm
from test_unit_atlas import quote_corpus

from lstm_interp.analysis import ActivationStats, StateIndex, UnitAtlas, state_index
from lstm_interp.analysis.corpus_pass import corpus_pass
from lstm_interp.analysis.corpus_scores import CorpusScores
from lstm_interp.analysis.index_bits import IndexBits
from lstm_interp.analysis.probe_rows import corpus_probe_rows

SHARDS = {"shard_chars": 1000, "prime_chars": 64}


class FailingBits(IndexBits):
    """Index bits whose first update on rank 1 raises, or kills the process."""

    how = "raise"

    def update(self, trace, start):
        if int(os.environ.get("LOCAL_RANK", "0")) == 1:
            if self.how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise ValueError(f"a broken accumulator at step {start}")
        return super().update(trace, start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("devices", type=int)
    parser.add_argument("--fail", choices=("raise", "kill"), default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)  # two processes on a shared 2-core machine
    model = tiny_char_lstm(hidden_size=8)
    text = quote_corpus(400)
    trainer = {"accelerator": "cpu", "devices": args.devices, "strategy": "ddp" if args.devices > 1 else "auto"}
    layers = ["layers.0", "layers.1"]
    if args.fail:  # a complete index first, then a rebuild over it in which rank 1 fails
        StateIndex.build(model, text, args.out / "index", overwrite=True, **SHARDS, **trainer)
        FailingBits.how = args.fail
        state_index.IndexBits = FailingBits
        StateIndex.build(model, text, args.out / "index", overwrite=True, **SHARDS, **trainer)
        return
    stats = corpus_pass(model, text, functools.partial(ActivationStats, "lstm", layers), **SHARDS, **trainer)
    scores = corpus_pass(model, text, functools.partial(CorpusScores, model.vocab.chars, "lstm", layers,
                                                        ["inside_quotes", "position_in_line"]),
                         names_filter="layers.*.cell", **SHARDS, **trainer)  # fmt: skip
    rows = corpus_probe_rows(model, text, max_rows=500, **SHARDS, **trainer)
    StateIndex.build(model, text, args.out / "index", **SHARDS, **trainer)
    atlas = UnitAtlas.build(model, text, k=3, window=5, feature_chars=2000, ablation_chars=0,
                            features=["inside_quotes"], **SHARDS, **trainer)  # fmt: skip
    if stats is None:  # not rank 0
        return
    saturation = {f"{k[0]}/{k[1]}": [c.tolist() for c in v] for k, v in stats.gate_counts.items()}
    numbers = {"steps": stats.num_steps, "log_probs": stats.log_probs().tolist(), "saturation": saturation,
               "cell_mean": stats.cell_mean(), "cell_std": stats.cell_std()}  # fmt: skip
    (args.out / "stats.json").write_text(json.dumps(numbers))
    tables = {name: [row.to_dict() for row in scores.table(name, top=None).rows]
              for name in ("inside_quotes", "position_in_line")}  # fmt: skip
    (args.out / "scores.json").write_text(json.dumps(tables))
    np.savez(args.out / "rows.npz", x=rows.x, positions=rows.positions, types=rows.types)
    (args.out / "atlas").mkdir()
    atlas.write(args.out / "atlas")


if __name__ == "__main__":
    main()
