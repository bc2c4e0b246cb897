"""The paper's long-range comparison for a pretrained model: loss by character class, closing braces, error breakdown.

Cuts the config's data file with its split (the paper's 80/10/10), then runs
:func:`~lstm_interp.report.run_analysis` (what ``lstm-interp analyze`` runs) on the first ``--chars``
characters of the test part, with an interpolated Kneser-Ney n-gram of ``--ngram-order`` fitted on the train part
as the baseline (and the 1-9-gram oracles of the error breakdown). Prints the analysis summary, and copies the
comparison figures into ``model_cards/<name>/images/`` for the model card::

    python benchmarks/compare_pretrained.py --name code --config configs/code.yaml --ngram-order 20
    python benchmarks/compare_pretrained.py --name novel --config configs/novel.yaml --ngram-order 8
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import torch
import yaml

from lstm_interp import EncodedCorpus
from lstm_interp.hub.load_pretrained import load_pretrained
from lstm_interp.report import run_analysis

REPO = Path(__file__).resolve().parents[1]
FEATURES = {
    "novel": ["inside_quotes", "position_in_line", "chars_to_line_end", "start_of_word"],
    "code": ["inside_comment", "inside_string_literal", "brace_depth", "paren_depth", "inside_if_condition"],
}
CARD_FIGURES = ("class_loss.png", "error_breakdown.png", "brace_study.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--name", choices=sorted(FEATURES), required=True)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--ngram-order", type=int, required=True)
    parser.add_argument("--chars", type=int, default=50_000)
    parser.add_argument("--out", type=Path, help="the analysis folder (default: a temporary one)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = yaml.safe_load(args.config.read_text())
    card = REPO / "model_cards" / args.name
    model = load_pretrained(card)  # the shipped float16 weights, as float32
    corpus = EncodedCorpus.prepare(files=str((REPO / config["data"]["files"]).resolve()), vocab=model.vocab)
    train, val, _ = (len(p) for p in corpus.split(tuple(config["data"]["split"])))
    start = train + val
    text = corpus.text(start, min(len(corpus), start + args.chars))
    print(f"{args.name}: text = test characters {start:,}..{start + len(text):,}; baseline = train part ({train:,})")
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "analysis"
        run_analysis(
            model,
            text,
            out,
            features=FEATURES[args.name],
            baseline_text=corpus.text(0, train),
            ngram_order=args.ngram_order,
            log=print,
        )
        for figure in CARD_FIGURES:
            if (out / "figures" / figure).is_file():
                shutil.copyfile(out / "figures" / figure, card / "images" / figure)
                print(f"copied {figure} to {card / 'images'}")


if __name__ == "__main__":
    main()
