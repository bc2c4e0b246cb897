"""Each card feature's best unit before and after the ranking rule, with its effect and its control scores.

"Before" ranks by score alone (``find_cells(..., min_effect=0)``, the order up to issue 20); "after" is the default
rule (visible units first). Both are on the same held-out text as the model cards: the first ``--heldout``
characters of the test part of each model's corpus.

    python benchmarks/card_rankings.py --heldout 100000 --json runs/card_rankings.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import yaml

from lstm_interp import EncodedCorpus, find_cells, load_pretrained, trace

REPO = Path(__file__).resolve().parent.parent
FEATURES = {
    "novel": ["inside_quotes", "position_in_line"],
    "code": ["inside_comment", "inside_string_literal", "brace_depth", "paren_depth", "inside_if_condition",
             "indentation"],
}


def heldout_text(name: str, chars: int) -> tuple[Any, str]:
    config = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())
    model = load_pretrained(name).eval()
    corpus = EncodedCorpus.prepare(files=str((REPO / config["data"]["files"]).resolve()), vocab=model.vocab)
    n_train, n_val = (len(p) for p in corpus.split(tuple(config["data"]["split"]))[:2])
    start = n_train + n_val
    return model, corpus.text(start, min(len(corpus), start + chars))


def describe(row: Any) -> dict[str, Any]:
    out = {"unit": f"{row.layer}:{row.unit}", "score": round(row.score, 4), "effect": round(row.effect, 3),
           "visible": row.visible}
    for control in row.controls:
        out[control.control] = round(control.score, 4)
        out[f"{row.feature} | {control.control}"] = round(control.partial, 4)
        if not math.isnan(control.partial_effect):  # the visible part of the control test
            out[f"effect | {control.control}"] = round(control.partial_effect, 3)
        out["beats_controls"] = row.beats_controls
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heldout", type=int, default=100_000)
    parser.add_argument("--models", nargs="+", default=["novel", "code"])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    for name in args.models:
        model, text = heldout_text(name, args.heldout)
        tr = trace(model, text, names_filter="layers.*.cell")
        for feature in FEATURES[name]:
            before = find_cells(tr, feature, top=1, min_effect=0)[0]
            after = find_cells(tr, feature, top=1)[0]
            results[f"{name}/{feature}"] = {"before": describe(before), "after": describe(after)}
            print(f"{name:<6} {feature:<22} before {describe(before)}\n{'':<29} after  {describe(after)}", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
