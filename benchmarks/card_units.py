"""The model cards' two unit sections (issue 22): every feature's best single unit against a sparse probe, and three
"hard to tell" units, as the lecture's slide shows them.

Usage::

    python benchmarks/card_units.py --model novel [--chars 100000] [--table-rows 20000] [--ablation-chars 1000]
                                    [--out runs/card_units] [--card]

On the first ``--chars`` characters of the model's test part (the last 10 % of its corpus, in its vocabulary):

- **single unit against probe**: the text traced once (every layer's cell state), then for every registered
  feature that varies on it, :func:`~lstm_interp.analysis.fit_probe` over all 2 x 512 units at ``max_rows=
  --table-rows`` evenly spaced positions (the probe's defaults: alpha 0.01, l1_ratio 0.5, the last 20 % held out):
  the probe's held-out score, its non-zero units, ``units_needed`` (top units reaching 95 % of its score from
  chance), the best single unit's held-out score, the control task's score and the selectivity. Printed as a
  Markdown table with the fit time of each probe.
- **hard-to-tell units**: :class:`~lstm_interp.analysis.UnitAtlas` of the last layer over the same text (features
  scored on its first 20,000 characters, every unit zeroed in turn on the first ``--ablation-chars``). Of the units
  no feature explains, not pinned near +-1 and at |tanh(c)| >= 0.9 on under half the steps, the three whose
  zeroing raises the loss most, drawn by :func:`~lstm_interp.plots.plot_unit_contexts` (their 3 highest and 3
  lowest passages).

``--card`` puts both sections and the picture into ``model_cards/<model>`` (results.json, README.md, manifest.json,
swapped in whole). Everything runs on one thread.
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _card_sections import add_card_sections  # benchmarks/ is on sys.path when this runs as a script
from matplotlib import pyplot as plt
from threadpoolctl import threadpool_limits

from lstm_interp import load_pretrained, trace
from lstm_interp.analysis import UnitAtlas, fit_probe, probe_rows
from lstm_interp.features import FEATURES, compute_feature
from lstm_interp.plots import plot_unit_contexts, save_figure

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
CORPORA = {
    "novel": REPO / "lstm_interp" / "assets" / "war_and_peace.txt.xz",
    "code": DATA / "linux_kernel.txt",
    "foldoc": DATA / "foldoc.txt",
}
PROBE_TITLE = "Single units against sparse probes"
HARD_TITLE = "Three hard-to-tell units"
HARD_IMAGE = "images/hard_to_tell_units.png"
MAX_SATURATION = 0.5  # share of steps at |tanh(c)| >= 0.9 above which a unit is not drawn as hard to tell


def test_text(name: str, chars: int, vocab: str) -> str:
    """The first ``chars`` characters of the last 10 % of the model's corpus (its test part), in ``vocab``."""
    path = CORPORA[name]
    with lzma.open(path, "rt", encoding="utf-8") if path.suffix == ".xz" else path.open(encoding="utf-8") as f:
        raw = f.read()
    return "".join(c for c in raw[int(len(raw) * 0.9) :] if c in vocab)[:chars]


def probe_table(model: Any, text: str, table_rows: int) -> list[dict[str, Any]]:
    """One row per feature that varies on ``text``: the probe against the best single unit."""
    started = time.perf_counter()
    tr = trace(model, text, names_filter="layers.*.cell")
    print(f"traced {len(text):,} characters in {time.perf_counter() - started:.0f} s")
    rows = probe_rows(tr, "cell", max_rows=table_rows, with_text=True)
    table = []
    for feature in FEATURES:
        started = time.perf_counter()
        try:
            probe = fit_probe(rows, feature)
        except ValueError as err:  # constant on the text, or on its training or held-out part
            print(f"  {feature}: skipped ({str(err)[:100]})")
            continue
        row = {"feature": feature, "seconds": time.perf_counter() - started} | probe.to_dict()
        print(f"  {probe.summary()} [{row['seconds']:.1f} s]")
        table.append(row)
    return table


def hard_units(model: Any, text: str, ablation_chars: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The three unexplained, unpinned last-layer units whose zeroing costs the most, and counts over the layer."""
    layer = f"layers.{model.config.num_layers - 1}"
    atlas = UnitAtlas.build(model, text, layers=[layer], ablation_chars=ablation_chars, log=print)
    cards = atlas.cards()
    # A unit near +-1 most of the time shows rows of one colour: the slide needs units that visibly switch.
    candidates = [c for c in cards if not c["explained"] and not c["pinned"] and c["saturation"] < MAX_SATURATION
                  and c["ablation"] and c["found"]["top"] >= 3 and c["found"]["bottom"] >= 3]  # fmt: skip
    chosen = sorted(candidates, key=lambda c: -c["ablation"]["delta_loss"])[:3]
    deltas = np.array([c["ablation"]["delta_loss"] for c in cards if c["ablation"]])
    counts = {
        "layer": layer, "units": len(cards), "explained": sum(c["explained"] for c in cards),
        "pinned": sum(bool(c["pinned"]) for c in cards), "candidates": len(candidates),
        "median_delta": float(np.median(deltas)), "p95_delta": float(np.percentile(deltas, 95)),
        "ablation_chars": atlas.meta.get("ablation_chars", ablation_chars), "steps": atlas.end - atlas.start,
    }  # fmt: skip
    return chosen, counts


def shares(row: dict[str, Any], text: str) -> str:
    """A yes/no feature's share of characters in the fitted part and in the held-out tail: a tail unlike the rest
    of the text (the novel's second epilogue, an essay with few quotations) explains a score below the cell table's."""
    if row["metric"] != "auc":
        return "–"
    values = compute_feature(row["feature"], text).astype(bool)
    boundary = row["num_train"] * row["stride"]
    return f"{values[:boundary].mean():.1%} / {values[boundary:].mean():.1%}"


def probe_section(table: list[dict[str, Any]], text: str, units: int) -> dict[str, Any]:
    chars = len(text)
    lines = [
        "| feature | metric | on: fitted / held out | probe | its units | units needed | best single unit | "
        "control task | selectivity |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    distributed = []
    for row in table:
        best = row["best_unit"]
        lines.append(
            f"| {row['feature']} | {row['metric']} | {shares(row, text)} | {row['score']:.3f} | {len(row['units'])} | "
            f"{row['units_needed']} | {row['best_single']:.3f} ({best['layer']}:{best['unit']}) | "
            f"{row['control_score']:.3f} | {row['selectivity']:+.3f} |"
        )
        chance = 0.5 if row["metric"] == "auc" else 0.0
        gained = (row["score"] - row["best_single"]) / max(row["score"] - chance, 1e-9)
        if gained > 0.2 and row["score"] - chance > 0.1:
            distributed.append(f"`{row['feature']}`")
    reading = (
        f"Features where the probe gains over a fifth of its score above chance on the best single unit, so more "
        f"than one unit carries them: {', '.join(distributed)}."
        if distributed
        else "For no feature does the probe gain a fifth of its score above chance over the best single unit."
    )
    text = (
        f"Which features can be read from the cell states, and does one unit carry each? For every registered "
        f"feature that varies on {chars:,} characters of the test part, a sparse (elastic-net) probe was fitted on "
        f"all {units:,} cell states (tanh(c), standardised) and compared with the best single unit, both scored on "
        "the last 20% of the positions (AUC for a yes/no feature, R² for a number; chance is 0.5 and 0), a contiguous "
        "tail, so a feature rarer there than in the fitted part (*on*: its share of characters in each) can score "
        "below the cell table's, which is on another span of the test part. *Units "
        "needed*: how many of the probe's top units reach 95% of its score. *Control task*: the same probe on "
        "labels drawn per character type with the feature's marginals (Hewitt & Liang 2019); *selectivity* is the "
        "probe's score minus that.\n\n"
        + "\n".join(lines)
        + f"\n\n{reading} {control_reading(table)} A probe shows what can be read, not what the model uses: the "
        "causal test is `lstm-interp probe MODEL TEXT --features F --causal`. Reproduce with "
        "`python benchmarks/card_units.py --model NAME --card`."
    )
    return {"title": PROBE_TITLE, "text": text}


def control_reading(table: list[dict[str, Any]]) -> str:
    """What the control task says here: whether it separates the features at all."""
    controls = [row["control_score"] for row in table if row["metric"] == "auc"]
    if not controls:
        return ""
    median = float(np.median(controls))
    if median >= 0.95:
        return (
            f"The control task is nearly as easy as the features (median control AUC {median:.3f}): the cell states "
            "carry the current character so well that a linear probe learns any labelling of character types, so "
            "selectivity does not separate features of the context from features of the character on this model."
        )
    return f"The median control AUC is {median:.3f}: a selectivity well above zero marks a feature of the context."


def signed(value: float) -> str:
    """``+0.0032``, and ``0.0000`` rather than ``-0.0000`` for a value that rounds to zero."""
    return "0.0000" if abs(value) < 5e-5 else f"{value:+.4f}"


def hard_section(chosen: list[dict[str, Any]], counts: dict[str, Any]) -> dict[str, Any]:
    bullets = []
    for card in chosen:
        best = card["features"][0] if card["features"] else None
        hurt = ", ".join(f"`{h['char']!r}` ({h['delta']:+.3f})" for h in card["ablation"]["hurt"][:3])
        feature = (f"its best feature, `{best['feature']}`, scores {best['metric']} {best['score']:.2f} with effect "
                   f"{best['effect']:+.2f}" if best else "no feature varies with it")  # fmt: skip
        bullets.append(
            f"- **{card['layer']} unit {card['unit']}**: zeroing it raises the loss by "
            f"{card['ablation']['delta_loss']:+.4f} nats/char, most before {hurt}; {feature}; saturation "
            f"{card['saturation']:.0%}."
        )
    text = (
        f'Most units read like none of the named features: the lecture\'s slide of cells that are "hard to tell". '
        f"The unit atlas of {counts['layer']} over {counts['steps']:,} characters of the test part "
        f"(`lstm-interp atlas`) explains {counts['explained']} of its {counts['units']} units (a feature that "
        f"visibly switches, beats its controls and has strength ≥ 0.5) and finds {counts['pinned']} pinned near ±1. "
        f"Of the {counts['candidates']} others that switch (at ±0.9 or beyond on under half the characters), "
        "these three cost the model most when zeroed, on the first "
        f"{counts['ablation_chars']:,} characters (the layer's median unit: {signed(counts['median_delta'])} "
        "nats/char, "
        f"its 95th percentile {counts['p95_delta']:+.4f}). The picture shows each one's three highest and three "
        "lowest passages, every character on the unit's tanh(c) (blue +1, red −1), the peak outlined.\n\n"
        + "\n".join(bullets)
        + "\n\nWhat they track is left to the reader, as on the slide: the atlas's pages hold twenty passages of "
        "each end, its histogram, gates and every feature row."
    )
    return {"title": HARD_TITLE, "text": text, "image": HARD_IMAGE}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(CORPORA), required=True)
    parser.add_argument("--chars", type=int, default=100_000)
    parser.add_argument("--table-rows", type=int, default=20_000)
    parser.add_argument("--ablation-chars", type=int, default=1_000)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "card_units")
    parser.add_argument("--card", action="store_true", help="write both sections into model_cards/<model>")
    parser.add_argument("--from-summary", action="store_true",
                        help="redo sections, picture and card from an earlier run's summary.json in --out")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, one thread, load average {os.getloadavg()[0]:.1f}")
    model = load_pretrained(REPO / "model_cards" / args.model).eval()
    text = test_text(args.model, args.chars, model.vocab.chars)
    out = args.out / args.model
    out.mkdir(parents=True, exist_ok=True)
    if args.from_summary:
        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        table, chosen, counts = summary["table"], summary["hard"], summary["counts"]
    else:
        with threadpool_limits(1):
            table = probe_table(model, text, args.table_rows)
            chosen, counts = hard_units(model, text, args.ablation_chars)
        summary = {"table": table, "hard": chosen, "counts": counts}
        (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    units = model.config.num_layers * model.config.hidden_size
    sections = [probe_section(table, text, units), hard_section(chosen, counts)]
    fig = plot_unit_contexts(chosen, n=3)
    picture = save_figure(fig, out / "hard_to_tell_units.png")
    plt.close(fig)
    for section in sections:
        print(f"\n## {section['title']}\n\n{section['text']}")
    print(f"\nwrote {picture} and {out / 'summary.json'}")
    if args.card:
        add_card_sections(REPO / "model_cards" / args.model, sections, {HARD_IMAGE: picture})


if __name__ == "__main__":
    main()
