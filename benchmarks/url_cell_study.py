"""The foldoc model's URL cell, as the lecture's last figure shows it, and its causal test (issue 23).

What it does, on held-out FOLDOC (the ``--chars`` characters of the test part, the last 10 % of the file, with the
most characters inside URLs; every character in the model's vocabulary):

- **the cell**: the card's ``inside_url`` cell (``model_cards/foldoc/results.json``, found by
  :func:`~lstm_interp.find_cells` on the test part's first 100,000 characters: AUC, visible effect, and its partial
  AUC against the ``no_space_run`` control), re-scored on this text;
- **the blog's figure**: :func:`~lstm_interp.plots.plot_topk_predictions` with ``unit=`` over a passage holding a
  URL: the text, the cell's tanh(c) under it (−1 red, +1 blue), and the top-5 next-character guesses, best first,
  shaded by probability on one green hue;
- **the causal test**: :func:`~lstm_interp.experiments.ablation_study.ablation_study`, the cell ablated to zero
  against ``--random`` random units of its layer (and the top 5 ``inside_url`` units together against 20 random
  sets of 5), the change in loss at the character that ends a URL (the one after its last character, predicted
  from inside it) and at the characters inside URLs (each predicted from inside the URL; its first character is
  predicted from outside and left out), with 95 % bootstrap intervals;
- ``--card`` puts the figure, the causal table and the loss against our 20-gram into the foldoc card
  (``results.json`` ``sections``, README.md and manifest.json, swapped in whole).

    python benchmarks/url_cell_study.py --chars 50000 --out runs/url_cell --card
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _card_sections import add_card_sections  # benchmarks/ is on sys.path when this runs as a script
from matplotlib import pyplot as plt

from lstm_interp import find_cells, load_pretrained, trace
from lstm_interp.experiments.ablation_study import AblationStudy, ablation_study
from lstm_interp.features import compute_feature
from lstm_interp.plots import plot_topk_predictions, save_figure
from lstm_interp.plots.ablation_study import plot_ablation_study
from lstm_interp.report.experiment_folder import write_experiment_folder

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
CARD = REPO / "model_cards" / "foldoc"
IMAGE = "images/url_cell_topk.png"
SECTION_TITLE = "The URL cell, read and predicted"


def test_part(vocab: str, part: str = "test") -> str:
    """FOLDOC's test part (the last 10 % of the file, the models' split), or its validation part (the 10 % before),
    in the model's vocabulary."""
    text = (DATA / "foldoc.txt").read_text(encoding="utf-8")
    lo, hi = (0.9, 1.0) if part == "test" else (0.8, 0.9)
    return "".join(c for c in text[int(len(text) * lo) : int(len(text) * hi)] if c in vocab)


def heldout_urls(test: str, chars: int) -> str:
    """The ``chars`` characters of ``test`` (on a 1,000-character grid) with the most characters inside URLs."""
    counts = np.cumsum(compute_feature("inside_url", test))
    starts = range(0, len(test) - chars, 1000)
    best = max(starts, key=lambda i: counts[i + chars - 1] - (counts[i - 1] if i else 0))
    return test[best : best + chars]


def url_targets(text: str) -> tuple[np.ndarray, np.ndarray]:
    """Masks over the predicted characters (position ``j`` is the prediction of ``text[j]``): the character that
    ends a URL, and the characters inside a URL predicted from inside it."""
    inside = compute_feature("inside_url", text).astype(bool)
    before = np.concatenate([[False], inside[:-1]])
    return before & ~inside, before & inside


def url_end_passages(test: str, before: int = 100, after: int = 3) -> tuple[str, np.ndarray]:
    """Every URL of ``test`` with the ``before`` characters before it and ``after`` after it, passages end to end
    (overlapping ones merged), and the mask of the characters that end a URL in that text: all of the test part's
    URL ends in a text a fraction of its length, so that each of the causal test's runs costs less per target."""
    inside = compute_feature("inside_url", test).astype(bool)
    starts = np.flatnonzero(inside & ~np.concatenate([[False], inside[:-1]]))
    stops = np.flatnonzero(inside & ~np.concatenate([inside[1:], [False]])) + 1  # one past each URL's last character
    spans: list[list[int]] = []
    for start, stop in zip(starts, stops, strict=True):
        lo, hi = max(0, start - before), min(len(test), stop + after)
        if spans and lo <= spans[-1][1]:
            spans[-1][1] = hi
        else:
            spans.append([lo, hi])
    text = "".join(test[lo:hi] for lo, hi in spans)
    return text, url_targets(text)[0]


def figure_passage(test: str, context: int = 2000) -> tuple[str, int, int]:
    """``(passage, start, length)``: the first line of ``test`` that reads as prose around one URL (12 or more
    characters of text before it and 8 after, 95 at most in all), with ``context`` characters before it so that
    the model's state is warm. The figure shows that one line whole, as one row of blocks: the text before the URL
    (cell off), the URL (on), the text after (off), with no wrap inside a word or URL."""
    for match in re.finditer(r"\b(?:https?|ftp)://[^\s)}\]]{14,40}", test):
        line_start = test.rfind("\n", 0, match.start()) + 1
        line_end = test.find("\n", match.end())
        before, after = test[line_start : match.start()].strip(" {("), test[match.end() : line_end]
        if line_end - line_start <= 95 and len(before) >= 12 and len(after) >= 8:
            offset = max(0, line_start - context)
            return test[offset : line_end + 1], line_start - offset, line_end + 1 - line_start
    raise SystemExit("no line of prose around a URL in the held-out text for the figure")


def causal_rows(study: AblationStudy) -> dict[str, Any]:
    """The numbers the card's table shows: the cell's effect and interval, the random units' mean and 95th
    percentile, the cell's percentile among them, and the top-5 ``inside_url`` units together."""
    effect, spread = study.units[0], np.asarray(study.random_target_deltas)
    together = study.together
    return {
        "effect": effect.target_delta, "low": effect.target_delta_ci[0], "high": effect.target_delta_ci[1],
        "percentile": effect.percentile, "percentile_ci": list(effect.percentile_ci),
        "random_mean": float(spread.mean()), "random_p95": float(np.percentile(spread, 95)),
        "targets": study.num_targets, "other_delta": effect.other_delta,
        "together": None if together is None else {"units": together.units, "effect": together.target_delta,
                                                   "percentile": together.percentile},
    }  # fmt: skip


def cell_summary(card_cell: dict[str, Any]) -> dict[str, Any]:
    """The card's ``inside_url`` cell: where it is, its held-out AUC and effect, and its partial AUC per control."""
    partials = {c["control"]: c["partial"] for c in card_cell["controls"]}
    keys = ("layer", "unit", "score", "effect")
    return {key: card_cell[key] for key in keys} | {"partials": partials}


def causal_reading(r: dict[str, Any], act: str = "zeroing the cell") -> str:
    """One sentence on what the cell's ablation did at a kind of target, against the random units."""
    together = r.get("together")
    also = (f" The top 5 `inside_url` units zeroed together: {together['effect']:+.3f}, percentile "
            f"{together['percentile']:.0f} among 20 random sets of 5." if together else "")  # fmt: skip
    if r["low"] > r["random_p95"]:
        return f"{act} raises the loss above the 95th percentile of random units, interval and all.{also}"
    if r["high"] < 0 and r["percentile"] <= 5:
        return (
            f"{act} *lowers* the loss ({r['effect']:+.3f}, its interval below zero), lower than "
            f"{100 - r['percentile']:.0f}% of the random units' changes: the model uses the cell here, and predicts "
            f"better without it.{also}"
        )
    if r["effect"] > r["random_p95"] and r["low"] > 0 and r["percentile_ci"][0] >= 95:
        return (
            f"{act} raises the loss ({r['effect']:+.3f}, interval {r['low']:+.3f} to {r['high']:+.3f}) more "
            f"than the random units' 95th percentile ({r['random_p95']:+.3f}; percentile {r['percentile']:.0f}, "
            f"interval {r['percentile_ci'][0]:.0f}-{r['percentile_ci'][1]:.0f}), though the interval's low end is "
            f"not above that percentile.{also}"
        )
    if r["effect"] > r["random_p95"]:
        return (
            f"the estimate ({r['effect']:+.3f}, percentile {r['percentile']:.0f}) is above the random units' 95th "
            f"percentile, but its interval ({r['low']:+.3f} to {r['high']:+.3f}) reaches below it: the rise is not "
            f"established.{also}"
        )
    return f"no effect beyond the random units'.{also}"


def conclusion(causal: dict[str, Any]) -> str:
    """What the mean-ablation rows say together, by the rule written down before the replication was run: the rise
    at URL ends counts as shown if, on the validation part's URLs, its interval is above zero and its percentile
    among the random units at least 95."""
    end, inside, replication = (causal.get(k) for k in ("mean_end", "mean_inside", "mean_end_validation"))
    if not (end and inside and replication):
        return ""
    shown = replication["low"] > 0 and replication["percentile_ci"][0] >= 95
    inside_shown = inside["low"] > inside["random_p95"]
    return (
        f"**Reading.** Inside URLs the cell is used: set to its mean it raises the loss there "
        f"({inside['effect']:+.3f}) above every random unit, and costs nothing elsewhere "
        f"({inside['other_delta']:+.4f}). At the character that ends a URL, setting it to its mean raises the loss "
        f"in both held-out parts: {end['effect']:+.3f} on the test part, more than {end['percentile']:.0f} of the 100 "
        f"random units, though that interval's low end ({end['low']:+.3f}) falls just below their 95th percentile "
        f"({end['random_p95']:+.3f}); and {replication['effect']:+.3f} on the validation part's "
        f"{replication['targets']} URL ends, interval {replication['low']:+.3f} to {replication['high']:+.3f}, "
        f"well above theirs ({replication['random_p95']:+.3f}). "
        + (
            "By the rule fixed before the replication ran (its interval above zero, its percentile at least 95), "
            "the rise at URL ends is shown"
            if shown
            else "The replication does not meet the rule fixed before it ran, so the rise at URL ends is not shown"
        )
        + (", and inside URLs it is shown on the test part alone." if inside_shown else ".")
        + " Zeroing the cell instead lowers the loss at the ends of the densest window: zero is not a neutral "
        "value for this cell."
    )


# The rows of the card's causal table: (key in summary["causal"], what the targets are, the ablation).
CAUSAL_ROWS = [
    ("mean_end", "the character that ends a URL, every URL of the test part", "mean"),
    ("mean_inside", "characters inside a URL, every URL of the test part", "mean"),
    ("mean_end_validation", "the character that ends a URL, every URL of the validation part (replication)", "mean"),
    ("url_end", "the character that ends a URL, the densest 50,000 characters", "zero"),
    ("url_inside", "characters inside a URL, the densest 50,000 characters", "zero"),
    ("url_end_all", "the character that ends a URL, every URL of the test part", "zero"),
]


def card_section(summary: dict[str, Any]) -> dict[str, str]:
    """The card's section: the picture's reading, the causal table and the loss against the n-gram."""
    cell, loss, causal = summary["cell"], summary["loss"], summary["causal"]
    rows = [
        "| ablation | targets | positions | Δ loss, URL cell (95% CI) | random units: mean, 95th percentile | "
        "cell's percentile (95% CI) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    readings = []
    for key, label, value in CAUSAL_ROWS:
        if key not in causal:
            continue
        r = causal[key]
        low, high = r["percentile_ci"]
        rows.append(
            f"| {value} | {label} | {r['targets']:,} | {r['effect']:+.3f} ({r['low']:+.3f} to {r['high']:+.3f}) | "
            f"{r['random_mean']:+.3f}, {r['random_p95']:+.3f} | {r['percentile']:.0f} ({low:.0f}-{high:.0f}) |"
        )
        act = "setting the cell to its mean" if value == "mean" else "zeroing the cell"
        readings.append(f"- {value} ablation, {label}: {causal_reading(r, act)}")
    window, every = causal.get("url_end"), causal.get("url_end_all")
    disagree = ""
    if window and every and (window["effect"] > 0) != (every["effect"] > 0):
        disagree = (
            f" Zeroed, the cell's effect at URL ends changes sign between the {window['targets']} ends of the densest "
            f"window and the {every['targets']} of the whole test part."
        )
    parts = [
        "Karpathy's blog post ends on a Wikipedia model's cell that turns on inside URLs, shown with the model's "
        "top guesses for the next character under each character. This model's cell for `inside_url` is "
        f"layers.{cell['layer']} unit {cell['unit']} (cell state): AUC {cell['score']:.3f} on held-out text, "
        f"visible effect {cell['effect']:+.2f}, and partial AUC {cell['partials']['no_space_run']:.3f} against the "
        "`no_space_run` control (inside a run of 8 or more characters without a space, which every URL is) and "
        f"{cell['partials']['inside_braces']:.3f} against `inside_braces` (FOLDOC's `{{cross-references}}`, where "
        "96% of its URL characters are). Ranked by AUC alone, the top unit was layers.1 unit 117 (AUC 0.997), "
        "but it is an inside-braces cell: 98% of the brace characters outside URLs drive it below −0.5; the "
        "control caught it. "
        "The picture reads one line of the test part around a URL: the text, the cell under it "
        "(tanh(c): blue +1, white 0, red −1), then the five "
        "likeliest next characters, best first, darker green for more probable, bold where it is the character "
        "that came next.",
        "**Causal test.** The cell's state is set to its mean over held-out text (the first 100,000 characters of "
        "the part tested, URLs and all) at every step, against 100 random units of the same layer set to theirs; "
        "the change in loss (nats per character) at the targets, with 95% intervals from 1,000 bootstrap "
        "resamples of the target positions. The mean, not zero, is the neutral value for this cell: it rests "
        "strongly negative outside URLs and positive inside, so zeroing it at a URL's last character moves it "
        'halfway to "no longer in a URL", which may itself help predict the end. "Every URL" is each URL of '
        "the part with the 100 characters before it, passages end to end; the validation part's URLs were tested "
        "after the test part's, as a replication. The zero-ablation rows are the first test, kept." + disagree,
        "\n".join(rows),
        "\n".join(readings),
        summary.get("conclusion", ""),
        f"**Loss.** Test loss {loss['lstm']:.4f} nats/char against {loss['ngram20']:.4f} for our interpolated "
        f"Kneser-Ney 20-gram on the same 80/10/10 split ({100 * (1 - loss['lstm'] / loss['ngram20']):.1f}% lower; "
        "the target was 5%).",
        "Reproduce with `python benchmarks/url_cell_study.py --chars 50000 --card` (the densest window, zero "
        "ablation, and the picture), `--ends-only [--value mean] [--part validation]` (every URL), then "
        "`--card-only --also DIR ...` (the card from their summaries).",
    ]
    return {"title": SECTION_TITLE, "text": "\n\n".join(parts), "image": IMAGE}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chars", type=int, default=10_000, help="held-out characters for the causal test")
    parser.add_argument("--random", type=int, default=100, help="random units of the layer to compare with")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "url_cell")
    parser.add_argument("--card", action="store_true", help="write the picture and the section into the foldoc card")
    parser.add_argument("--card-only", action="store_true",
                        help="write the card from the summary.json and picture of an earlier run in --out")  # fmt: skip
    parser.add_argument("--also", type=Path, nargs="*", default=[],
                        help="with --card-only: folders of --ends-only runs whose rows the card shows too")  # fmt: skip
    parser.add_argument("--ends-only", action="store_true",
                        help="only the URL-end test, on every URL of the test part with its context")  # fmt: skip
    parser.add_argument("--context", type=int, default=100,
                        help="with --ends-only: characters before each URL, to warm the state")  # fmt: skip
    value = "with --ends-only: ablate to zero, or to the mean over the test part's first 100,000 characters"
    parser.add_argument("--value", choices=("zero", "mean"), default="zero", help=value)
    part = "with --ends-only: the held-out part whose URLs are tested (validation: a replication)"
    parser.add_argument("--part", choices=("test", "validation"), default="test", help=part)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_pretrained(CARD).eval()
    results = json.loads((CARD / "results.json").read_text(encoding="utf-8"))
    card_cell = next(c for c in results["cells"] if c["feature"] == "inside_url")
    if args.card_only:
        summary = json.loads((args.out / "summary.json").read_text(encoding="utf-8"))
        summary["cell"] = summary["cell"] | cell_summary(card_cell)
        if (args.out / "summary_ends.json").is_file():
            summary["causal"]["url_end_all"] = json.loads((args.out / "summary_ends.json").read_text(encoding="utf-8"))
        for folder in args.also:  # every-URL runs of other ablations or parts: their rows, by what they ran
            for name, kind in (("summary_ends.json", "end"), ("summary_inside.json", "inside")):
                if (folder / name).is_file():
                    r = json.loads((folder / name).read_text(encoding="utf-8"))
                    if r.get("value") == "mean":
                        part = "" if r.get("part", "test") == "test" else f"_{r['part']}"
                        summary["causal"][f"mean_{kind}{part}"] = r
        summary["conclusion"] = conclusion(summary["causal"])
        add_card_sections(CARD, [card_section(summary)], {IMAGE: args.out / "url_cell_topk.png"})
        return
    layer, unit = f"layers.{card_cell['layer']}", card_cell["unit"]
    test = test_part(model.vocab.chars)
    if args.ends_only:
        test = test_part(model.vocab.chars, args.part)  # the mean below is over this part's first 100,000 characters
        text, ends = url_end_passages(test, before=args.context)
        inside = url_targets(text)[1]
        print(f"every URL of the {args.part} part with {args.context} characters before it: {len(text):,} characters, "
              f"{int(ends.sum())} URL ends, {int(inside.sum())} inside-URL targets, {args.value} ablation")  # fmt: skip
        # The mean over ordinary text, URLs and all, traced once (a text would be traced again for every unit).
        reference = trace(model, test[:100_000], names_filter=f"{layer}.cell") if args.value == "mean" else None
        # Both kinds of target on one sample and one ablation, so the two rows can be read together.
        for targets, described, name, summary_file in (
            (ends, "the character that ends a URL", "url_end_all", "summary_ends.json"),
            (inside, "characters inside a URL", "url_inside_all", "summary_inside.json"),
        ):
            study = ablation_study(model, text, [(layer, unit)], targets, value=args.value, reference=reference,
                                   n_random=args.random, seed=0)  # fmt: skip
            study.targets = f"{described} (every URL of the {args.part} part, {args.value} ablation)"
            print(study.to_markdown())
            write_experiment_folder(args.out / f"{name}_ablation", "ablation", study.to_dict(),
                                    plot_ablation_study(study), model=model, texts={"text": text}, overwrite=True,
                                    arguments=vars(args) | {"units": f"{layer}:{unit}"})  # fmt: skip
            rows = causal_rows(study) | {"chars": len(text), "context": args.context, "value": args.value,
                                         "part": args.part}  # fmt: skip
            (args.out / summary_file).write_text(json.dumps(rows, indent=1, default=float) + "\n")
        return
    text = heldout_urls(test, args.chars)
    ends, inside = url_targets(text)
    print(f"held-out: {len(text):,} characters, {int(ends.sum())} URL ends, {int(inside.sum())} inside-URL targets")

    began = time.perf_counter()
    tr = trace(model, text, names_filter=[f"{layer}.cell", "log_probs"])
    rescored = next(r for r in find_cells(tr, "inside_url", "cell", top=2048, layers=[layer]).rows if r.unit == unit)
    print(f"{layer}:{unit} on this text: AUC {rescored.score:.3f}, effect {rescored.effect:+.2f}, visible "
          f"{rescored.visible}, beats controls {rescored.beats_controls}")  # fmt: skip
    passage, start, length = figure_passage(test)
    shown = trace(model, passage, names_filter=[f"{layer}.cell", "log_probs"])
    fig = plot_topk_predictions(shown, model.vocab.chars, k=5, start=start, length=length, chars_per_line=length,
                                unit=(layer, unit))  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    picture = save_figure(fig, args.out / "url_cell_topk.png")
    plt.close(fig)
    print(f"wrote {picture}")

    causal = {}
    for targets, described, name in ((ends, "the character that ends a URL", "url_end"),
                                     (inside, "characters inside a URL", "url_inside")):  # fmt: skip
        study = ablation_study(model, text, [(layer, unit)], targets, n_random=args.random,
                               together_feature="inside_url", k=5, n_random_sets=20, seed=0)  # fmt: skip
        study.targets = described
        print(study.to_markdown())
        write_experiment_folder(args.out / f"{name}_ablation", "ablation", study.to_dict(), plot_ablation_study(study),
                                model=model, texts={"text": text}, overwrite=True,
                                arguments=vars(args) | {"units": f"{layer}:{unit}", "targets": described})  # fmt: skip
        causal[name] = causal_rows(study)
    metrics = results["metrics"]
    summary = {
        "cell": cell_summary(card_cell) | {"heldout_rescored": {"score": rescored.score, "effect": rescored.effect}},
        "chars": len(text), "random": args.random, "causal": causal,
        "loss": {"lstm": metrics["test_loss_nats"], "ngram20": metrics["ngram20_test_nats"]},
        "seconds": round(time.perf_counter() - began, 1),
    }  # fmt: skip
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1, default=float) + "\n")
    section = card_section(summary)
    print(f"\n## {section['title']}\n\n{section['text']}")
    if args.card:
        add_card_sections(CARD, [section], {IMAGE: picture})


if __name__ == "__main__":
    main()
