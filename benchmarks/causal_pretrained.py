"""Causal tests of the pretrained models' interpretable cells: ablate them, against random units, and steer with them.

What it runs (each result also written as an experiment folder under ``--out``, JSON + figure + manifest):

- **novel, quote cell** (``layers.1`` unit 254, cell state): ablated to zero on held-out War and Peace (the
  ``--chars`` characters of the test part, the last 10 % of the file, with the most quotes), the change in loss
  at *closing* quotes (a ``"`` after an odd number of them) against 100 random units of layer 1, and the top 5
  ``inside_quotes`` units ablated together against 20 random sets of 5.
- **novel, steering:** the quote cell clamped, from the first sampled character on, to its mean inside quotes and
  to its mean outside (measured on the same held-out text); the rate of ``"`` in 20 samples of 300 characters
  each, against the same samples without the clamp (same seeds).
- **novel, line-position cell** (``layers.1`` unit 343): ablated, the change in loss at ``\n`` against random
  units (and the top 5 ``position_in_line`` units together), and the mean line length of generated text with and
  without the ablation.
- **code, comment and brace cells** (``layers.0`` unit 1, ``inside_comment``; ``layers.1`` unit 237,
  ``brace_depth``): ablated on held-out Linux C, the change in loss at the ``/`` of ``*/`` and at ``}``, against
  100 random units of the same layer, and the top 5 units of each feature together.

The foldoc model's URL cell has its own study, ``benchmarks/url_cell_study.py``.

    python benchmarks/causal_pretrained.py --chars 10000 --out runs/causal
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from lstm_interp import load_pretrained, trace
from lstm_interp.experiments.ablation_study import ablation_study
from lstm_interp.experiments.steer import steer
from lstm_interp.interventions import Ablate, Clamp
from lstm_interp.plots.ablation_study import plot_ablation_study
from lstm_interp.plots.steer import plot_steer
from lstm_interp.report.experiment_folder import write_experiment_folder

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def heldout(name: str, chars: int, vocab: str, densest: str | None = None) -> str:
    """``chars`` characters of the test part (the last 10 %) of the corpus, in the model's vocabulary: its start, or
    with ``densest`` the window (on a 1,000-character grid) holding the most of those characters, so that a study of
    closing quotes has dialogue to measure on (the test part ends in the essay-like second epilogue)."""
    text = (DATA / name).read_text(encoding="utf-8")
    test = "".join(c for c in text[int(len(text) * 0.9) :] if c in vocab)
    if densest is None:
        return test[:chars]
    counts = np.cumsum([c in densest for c in test])
    starts = range(0, len(test) - chars, 1000)
    best = max(starts, key=lambda i: counts[i + chars - 1] - (counts[i - 1] if i else 0))
    return test[best : best + chars]


def closing_quotes(text: str) -> np.ndarray:
    """True at each '"' that closes a quotation: one after an odd number of quotes."""
    mask, count = np.zeros(len(text), dtype=bool), 0
    for i, char in enumerate(text):
        if char == '"':
            mask[i] = count % 2 == 1
            count += 1
    return mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chars", type=int, default=10_000)
    parser.add_argument("--random", type=int, default=100)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--length", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "causal")
    parser.add_argument("--only", choices=["novel", "steer", "line", "code"], action="append")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    only = set(args.only or ["novel", "steer", "line", "code"])
    results: dict[str, dict] = {}

    novel = load_pretrained(REPO / "model_cards" / "novel")
    text = heldout("war_and_peace.txt", args.chars, novel.vocab.chars, densest='"')
    if "novel" in only:
        t0 = time.perf_counter()
        study = ablation_study(novel, text, [("layers.1", 254)], closing_quotes(text), n_random=args.random,
                               together_feature="inside_quotes", k=5, n_random_sets=20, log=print)  # fmt: skip
        study.targets = "closing quotes"
        print(study.to_markdown(), f"\n({time.perf_counter() - t0:.0f} s)")
        write_experiment_folder(args.out / "novel_quote_ablation", "ablation", study.to_dict(),
                                plot_ablation_study(study), model=novel, texts={"text": text},
                                arguments=vars(args) | {"units": "layers.1:254", "targets": "closing quotes"})
        results["novel_ablation"] = study.to_dict()
    if "steer" in only:
        cell = trace(novel, text, names_filter="layers.1.cell")["layers.1.cell"][:, 254].numpy()
        inside = np.array([c == 1 for c in _inside(text)])
        values = {"inside": float(cell[inside].mean()), "outside": float(cell[~inside].mean())}
        prompt = "\n\n"
        for where, value in values.items():
            clamp = [Clamp("layers.1.cell", [254], value, steps=slice(len(prompt), None))]
            result = steer(novel, prompt, clamp, args.samples, args.length, seed=0, features=["inside_quotes"])
            print(f"clamp to the {where} value {value:+.3f}:\n{result.to_markdown()}")
            write_experiment_folder(args.out / f"novel_quote_steer_{where}", "steer", result.to_dict(),
                                    plot_steer(result), model=novel, texts={"prompt": prompt},
                                    arguments=vars(args) | {"clamp": value})  # fmt: skip
            results[f"novel_steer_{where}"] = result.to_dict() | {"value": value}
    if "line" in only:
        study = ablation_study(novel, text, [("layers.1", 343)], "\n", n_random=args.random,
                               together_feature="position_in_line", k=5, n_random_sets=20, log=print)  # fmt: skip
        print(study.to_markdown())
        write_experiment_folder(args.out / "novel_line_ablation", "ablation", study.to_dict(),
                                plot_ablation_study(study), model=novel, texts={"text": text},
                                arguments=vars(args) | {"units": "layers.1:343", "targets": "\\n"})  # fmt: skip
        results["novel_line_ablation"] = study.to_dict()
        prompt = "\n\n"
        ablate = [Ablate("layers.1.cell", [343], steps=slice(len(prompt), None))]
        result = steer(novel, prompt, ablate, args.samples, args.length, seed=0, features=["position_in_line"])
        print(f"line-position cell ablated during generation:\n{result.to_markdown()}")
        write_experiment_folder(args.out / "novel_line_steer", "steer", result.to_dict(), plot_steer(result),
                                model=novel, texts={"prompt": prompt}, arguments=vars(args))  # fmt: skip
        results["novel_line_steer"] = result.to_dict()
    if "code" in only:
        code = load_pretrained(REPO / "model_cards" / "code")
        source = heldout("linux_kernel.txt", args.chars, code.vocab.chars)
        comment_ends = np.array([i > 0 and c == "/" and source[i - 1] == "*" for i, c in enumerate(source)])
        cases = (("layers.0", 1, comment_ends, "the / of */", "inside_comment", "comment"),
                 ("layers.1", 237, "}", "}", "brace_depth", "brace"))  # fmt: skip
        for layer, unit, targets, described, feature, name in cases:
            study = ablation_study(code, source, [(layer, unit)], targets, n_random=args.random,
                                   together_feature=feature, k=5, n_random_sets=20, log=print)  # fmt: skip
            study.targets = described
            print(study.to_markdown())
            write_experiment_folder(args.out / f"code_{name}_ablation", "ablation", study.to_dict(),
                                    plot_ablation_study(study), model=code, texts={"text": source},
                                    arguments=vars(args) | {"units": f"{layer}:{unit}", "targets": described})
            results[f"code_{name}_ablation"] = study.to_dict()
    args.out.mkdir(parents=True, exist_ok=True)
    summary = args.out / f"summary_{'_'.join(sorted(only))}.json"
    summary.write_text(json.dumps(results, indent=1, default=str) + "\n")


def _inside(text: str) -> list[int]:
    from lstm_interp.features import compute_feature

    return [int(v) for v in compute_feature("inside_quotes", text)]


if __name__ == "__main__":
    main()
