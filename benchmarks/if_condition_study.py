"""Is there a cell in the pretrained code model that tracks if conditions, or only a parenthesis cell? (issue 20)

Every if condition lies inside parentheses, so a parenthesis unit also scores well on ``inside_if_condition``, and
a picture of it beside an ``if`` looks like an "if cell". This study settles the question for the ``code`` model
(2 x 512 LSTM on Linux C), on held-out kernel code: the test part (the last 10 %) of ``linux_kernel.txt``, in the
model's vocabulary, as ``benchmarks/causal_pretrained.py`` and ``benchmarks/eval_pretrained.py`` cut it.

1. **Scores.** ``find_cells(trace, "inside_if_condition")`` with its default rule and control (``inside_parens``)
   on the first ``--heldout`` characters of the test part (the text the model card's cells come from): the best
   unit's AUC, its AUC on the control, its AUC given the control (pairs compared only within parentheses and only
   outside them), and its effects on the displayed -1..+1 scale, beside the card's earlier if unit (``layers.1``
   unit 36, chosen by AUC alone) and the paren unit (the card's best ``paren_depth`` unit). The mean ``tanh(c)``
   of each in five contexts (if conditions, while/for/switch conditions, other parentheses, other code,
   comments and strings) and at the line ends of code says what each one shows, and the scores are repeated on
   the ablation window.
2. **Ablation.** On ``--chars`` characters of the test part that do not overlap the selection text (the window,
   on a 1,000-character grid after it, with the most if conditions), each unit's cell state is set to zero and
   the change in loss (nats per character) is measured at six kinds of targets, against 100 random units of the
   same layer (:func:`~lstm_interp.experiments.ablation_study.ablation_study`: percentiles and 95 % bootstrap
   intervals over the targets): the ``)`` that closes an if condition; the first ``{`` after it, when it comes
   before a ``;``; the ``)`` that closes any other outermost parenthesised expression in code (calls, loop
   conditions, casts); every other ``{``; and, wider, every character inside an if condition and every character
   inside other parentheses. The top 5 ``inside_if_condition`` units are also ablated together, against 20
   random sets of 5.
3. **Picture.** The units' ``tanh(c)`` over a stretch of the ablation window with at least 3 if conditions and 3
   other parenthesised expressions, under a track that is full height inside an if condition and half height in
   other parentheses (``images/if_condition_study.png``).

Outputs: ``--out`` (``runs/if_condition``, not committed) holds ``summary.json``, the picture and one experiment
folder per ablation; ``--card`` also writes the picture and a section answering the question into
``model_cards/code`` (results.json ``sections``, README.md and manifest.json, swapped in whole). ``--reuse`` reads
``summary.json`` back instead of measuring again (to re-render the card).

    python benchmarks/if_condition_study.py --heldout 100000 --chars 20000 --random 100 --out runs/if_condition --card

About 20 minutes on one shared CPU core: 125 ablated runs over 20,000 characters, each run once for all six
target sets.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import re
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import pyplot as plt

from lstm_interp import CharLSTM, find_cells, load_pretrained, trace
from lstm_interp._io import atomic_folder, atomic_write_text
from lstm_interp.analysis.find_cells import CellScore, CellTable
from lstm_interp.analysis.visible_effect import MIN_EFFECT
from lstm_interp.experiments.ablation_study import AblationStudy, ablation_study
from lstm_interp.features import compute_feature
from lstm_interp.manifest import model_provenance, write_manifest
from lstm_interp.models.model_card import save_model_card
from lstm_interp.plots import plot_cell_text, save_figure
from lstm_interp.plots.ablation_study import plot_ablation_study
from lstm_interp.report.experiment_folder import write_experiment_folder
from lstm_interp.tracing import Trace

sys.path.insert(0, str(Path(__file__).resolve().parent))
from causal_pretrained import heldout  # the one definition of the held-out text

REPO = Path(__file__).resolve().parents[1]
# The module itself (the package re-exports its function under the same name, which hides the module attribute).
ablation_module = importlib.import_module("lstm_interp.experiments.ablation_study")
CARD = REPO / "model_cards" / "code"
IMAGE = "images/if_condition_study.png"
OLD_IF_UNIT = ("layers.1", 36)  # the card's if unit before issue 20, chosen by AUC alone
SECTION_TITLE = "Is there an if-condition cell, or only a parenthesis cell?"
TARGETS = {
    "if_close": "the ) closing an if condition",
    "if_brace": "the { after an if condition",
    "other_close": "the ) closing another outermost parenthesised expression",
    "other_brace": "any other {",
    "if_inside": "every character of an if condition",
    "other_inside": "every character inside other parentheses",
}
LABELS = {  # the same targets in the card's table
    "if_close": "`)` closing an if condition",
    "if_brace": "`{` after an if condition",
    "other_close": "`)` closing another expression",
    "other_brace": "any other `{`",
    "if_inside": "every character of an if condition",
    "other_inside": "every character in other parentheses",
}
LINE_END = "line end in code"
CONTEXTS = ("if condition", "while/for/switch condition", "other parentheses", "other code", "comment or string")


# ---------------------------------------------------------------------------------------------- positions
def code_mask(text: str) -> np.ndarray:
    """(T,) True at characters of code: not in a comment or string, and not a ``'('``/``')'`` character literal."""
    mask = ~(compute_feature("inside_comment", text) | compute_feature("inside_string_literal", text))
    quoted = np.array([0 < i < len(text) - 1 and text[i - 1] == "'" == text[i + 1] for i in range(len(text))])
    return mask & ~quoted


def code_depth(text: str, code: np.ndarray) -> np.ndarray:
    """(T,) open parentheses after reading each character, counting those in code only (``paren_depth`` counts
    every one, so a ``"("`` in a string would leave it open for the rest of the text)."""
    steps = np.array([(c == "(") - (c == ")") for c in text], dtype=np.int64) * code
    depth, out = 0, np.zeros(len(text), dtype=np.int64)
    for i, step in enumerate(steps):
        depth = max(depth + int(step), 0)
        out[i] = depth
    return out


def target_masks(text: str) -> dict[str, np.ndarray]:
    """The target masks of the ablation (see the module docstring), position ``i`` = predicting ``text[i]``."""
    code, cond = code_mask(text), compute_feature("inside_if_condition", text)
    n = len(text)
    masks = {name: np.zeros(n, dtype=bool) for name in TARGETS}
    # inside_if_condition is on from the "(" to just before its matching ")": that ")" is where it turns off.
    for i in np.flatnonzero(cond[:-1] & ~cond[1:]) + 1:
        if text[i] != ")":
            continue
        masks["if_close"][i] = True
        for j in range(i + 1, n):  # the first "{" or ";" in code after it decides
            if code[j] and text[j] in "{;":
                masks["if_brace"][j] = text[j] == "{"
                break
    depth = code_depth(text, code)
    masks["other_close"] = np.array([c == ")" for c in text]) & code & (depth == 0) & ~masks["if_close"]
    masks["other_brace"] = np.array([c == "{" for c in text]) & code & ~masks["if_brace"]
    contexts = context_masks(text)
    masks["if_inside"] = contexts["if condition"] & code
    masks["other_inside"] = contexts["other parentheses"] | contexts["while/for/switch condition"]
    return masks


def context_masks(text: str) -> dict[str, np.ndarray]:
    """Five disjoint contexts that say what a unit shows: if conditions, other keyword conditions, other
    parentheses, other code, comments and strings (parentheses counted in code only)."""
    code, cond = code_mask(text), compute_feature("inside_if_condition", text)
    depth = code_depth(text, code)
    parens = depth > 0
    loop = np.zeros(len(text), dtype=bool)
    for match in re.finditer(r"\b(?:while|for|switch)\s*\(", text):
        start = match.end() - 1
        stop = start + 1
        while stop < len(text) and depth[stop] >= depth[start]:
            stop += 1
        loop[start:stop] = True
    loop &= ~cond
    other = parens & code & ~cond & ~loop
    return {
        "if condition": cond,
        "while/for/switch condition": loop,
        "other parentheses": other,
        "other code": code & ~cond & ~loop & ~other,
        "comment or string": ~code & ~cond & ~loop,
    }


def densest_window(test: str, chars: int, mask: np.ndarray, after: int) -> int:
    """The start (on a 1,000-character grid, from ``after`` on) of the ``chars`` characters with the most ``mask``."""
    counts = np.concatenate([[0], np.cumsum(mask)])
    starts = range(after, len(test) - chars, 1000)
    return max(starts, key=lambda i: int(counts[i + chars] - counts[i]))


def picture_window(text: str, masks: dict[str, np.ndarray], length: int) -> tuple[int, int, int]:
    """A ``length``-character stretch starting at a line with as many whole if conditions and other ``)`` as can
    be (the smaller count first, then the if conditions): (start, if conditions, other ``)``)."""
    cond = compute_feature("inside_if_condition", text)
    opens = np.flatnonzero(cond & ~np.concatenate([[False], cond[:-1]]))
    closes = np.flatnonzero(masks["if_close"])
    other = np.flatnonzero(masks["other_close"])
    best = (-1, -1, 0)
    for start in [0, *(i + 1 for i, c in enumerate(text[:-length]) if c == "\n")]:
        stop = start + length
        ifs = int(sum(start <= a and b < stop for a, b in zip(opens, closes, strict=False)))
        others = int(((other >= start) & (other < stop)).sum())
        key = (min(ifs, others), ifs, -start)
        if key > (min(best[0], best[1]), best[0], -best[2]):
            best = (ifs, others, start)
    return best[2], best[0], best[1]


# ---------------------------------------------------------------------------------------------- measurements
def row_of(table: CellTable, layer: str, unit: int) -> CellScore:
    return next(r for r in table.rows if (r.layer, r.unit) == (layer, unit))


def brief(row: CellScore) -> dict[str, Any]:
    """The numbers of one row the card and RESULTS.md quote."""
    out: dict[str, Any] = {"unit": f"{row.layer}:{row.unit}", "score": round(row.score, 6), "sign": row.sign,
                           "effect": round(row.effect, 6), "visible": row.visible}  # fmt: skip
    for control in row.controls:
        out |= {"control": control.control, "control_score": round(control.score, 6),
                "partial": round(control.partial, 6), "partial_effect": round(control.partial_effect, 6)}  # fmt: skip
    if row.controls:
        out["beats_controls"] = row.beats_controls
    return out


def context_means(tr: Trace, text: str, units: list[tuple[str, int]]) -> dict[str, dict[str, float]]:
    """Mean tanh(c) of each unit in each context of :func:`context_masks` (what its picture shows there), and at the
    line ends of code, where the next statement (an if among them) begins: a unit that anticipates ``if`` is blue
    there too."""
    masks = context_masks(text)
    masks[LINE_END] = np.array([c == "\n" for c in text]) & masks["other code"]
    out: dict[str, dict[str, float]] = {}
    for layer, unit in units:
        shown = torch.tanh(tr[f"{layer}.cell"][:, unit]).double().numpy()
        out[f"{layer}:{unit}"] = {name: round(float(shown[m].mean()), 6) for name, m in masks.items()}
    out["characters"] = {name: int(m.sum()) for name, m in masks.items()}
    return out


@contextlib.contextmanager
def reuse_ablated_runs() -> Iterator[None]:
    """Run each ablation once for all the target sets.

    ``ablation_study`` runs every ablation over the whole text and only then picks out the targets; the studies
    share the text, the units and the seed (so the same random units and random sets), so without this they would
    repeat the same ~125 runs once per target set. Each run's log-probabilities are kept (8 MB for 20,000 characters).
    """
    original = ablation_module.run_with_interventions
    cache: dict[tuple[Any, ...], Trace] = {}

    def cached(model: CharLSTM, text: str, interventions: list[Any], **kwargs: Any) -> Trace:
        key = (id(model), text, tuple(repr(iv) for iv in interventions), repr(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = original(model, text, interventions, **kwargs)
        return cache[key]

    ablation_module.run_with_interventions = cached
    try:
        yield
    finally:
        ablation_module.run_with_interventions = original


def effect_dict(study: AblationStudy) -> dict[str, Any]:
    """Per ablated unit (and the top 5 together): Δ loss at the targets and elsewhere, intervals, percentiles."""
    out: dict[str, Any] = {"targets": study.targets, "n": study.num_targets,
                           "baseline": round(study.baseline_target_loss, 6)}  # fmt: skip
    spread = np.asarray(study.random_target_deltas)
    out["random"] = {"median": round(float(np.median(spread)), 6), "p95": round(float(np.percentile(spread, 95)), 6),
                     "max": round(float(spread.max()), 6)}  # fmt: skip
    rows = [*study.units, *([study.together] if study.together is not None else [])]
    for effect in rows:
        name = "top5" if effect is study.together else f"{effect.units[0][0]}:{effect.units[0][1]}"
        out[name] = {
            "delta": round(effect.target_delta, 6),
            "ci": [round(x, 6) for x in effect.target_delta_ci],
            "elsewhere": round(effect.other_delta, 6),
            "percentile": round(effect.percentile, 1),
            "percentile_ci": [round(x, 1) for x in effect.percentile_ci],
        }
    if study.together is not None:
        out["top5"]["units"] = [f"{layer}:{unit}" for layer, unit in study.together.units]
    return out


def draw(tr: Trace, text: str, units: list[tuple[str, int]], roles: list[str], start: int, length: int) -> Any:
    """The units' tanh(c) over ``text[start:start+length]``, under a track: full height inside an if condition,
    half height in other parentheses, so one picture shows which parentheses each unit follows."""
    cond = compute_feature("inside_if_condition", text)
    track = np.where(cond, 1.0, np.where(code_depth(text, code_mask(text)) > 0, 0.5, 0.0))
    fig = plot_cell_text(tr, units, start=start, length=length, chars_per_line=80, feature=track,
                         feature_name="full = inside_if_condition, half = other parentheses")  # fmt: skip
    for ax, role in zip(fig.axes, roles, strict=False):  # the panels come first, then the colour bar
        ax.set_title(f"{role}: {ax.get_title(loc='left')}", fontsize=10, loc="left", pad=4)
    return fig


def measure(args: argparse.Namespace) -> dict[str, Any]:
    model = load_pretrained(CARD).eval()  # the folder: the card's own weights, its manifest checked
    test = heldout("linux_kernel.txt", sys.maxsize, model.vocab.chars)
    selection = test[: args.heldout]
    t0 = time.perf_counter()
    tr = trace(model, selection, names_filter="layers.*.cell")
    table = find_cells(tr, "inside_if_condition", top=None)
    paren = find_cells(tr, "paren_depth", top=1)[0]
    best = table[0]
    paren_unit, if_unit = (paren.layer, paren.unit), (best.layer, best.unit)
    units = list(dict.fromkeys([if_unit, (paren.layer, paren.unit), OLD_IF_UNIT]))
    beating = [r for r in table.rows if r.visible and r.beats_controls]
    print(f"selection on {len(selection):,} characters ({time.perf_counter() - t0:.0f} s): "
          f"{len(beating)} units beat inside_parens", flush=True)  # fmt: skip
    parens = find_cells(tr, "inside_parens", top=None)
    summary: dict[str, Any] = {
        "selection": {
            "characters": len(selection),
            "if_unit": brief(best),
            "paren_unit": brief(row_of(table, *paren_unit)) | {"paren_depth_r": round(paren.score, 6)},
            "old_if_unit": brief(row_of(table, *OLD_IF_UNIT)),
            "inside_parens_auc": {
                f"{layer}:{unit}": round(row_of(parens, layer, unit).score, 6) for layer, unit in units
            },
            "beating_units": [brief(r) for r in beating],
            "has_if_cell": bool(best.visible and best.beats_controls),
        },
        "contexts": context_means(tr, selection, units),
    }
    for name, row in summary["selection"].items():
        if isinstance(row, dict) and "unit" in row:
            print(f"  {name}: {row}")
    print(f"  contexts: {summary['contexts']}", flush=True)

    # The ablation window: after the selection text, so that choosing the unit and testing it use different text.
    masks_all = target_masks(test)
    start = densest_window(test, args.chars, masks_all["if_close"], after=args.heldout)
    window = test[start : start + args.chars]
    masks = target_masks(window)
    wtr = trace(model, window, names_filter="layers.*.cell")
    wtable = find_cells(wtr, "inside_if_condition", top=None)
    summary["window"] = {
        "start_in_test": start,
        "characters": len(window),
        "targets": {name: int(m[1:].sum()) for name, m in masks.items()},
        "scores": {f"{layer}:{unit}": brief(row_of(wtable, layer, unit)) for layer, unit in units},
        "best_unit_here": brief(wtable[0]),
    }
    print(f"ablation window: test[{start}:{start + len(window)}], targets {summary['window']['targets']}")
    for unit, row in summary["window"]["scores"].items():
        print(f"  on the window, {unit}: {row}", flush=True)

    summary["ablation"] = {}
    with reuse_ablated_runs():
        for name, described in TARGETS.items():
            t0 = time.perf_counter()
            study = ablation_study(model, window, units, masks[name], n_random=args.random,
                                   together_feature="inside_if_condition", k=5, n_random_sets=20)  # fmt: skip
            study.targets = described
            print(study.to_markdown(), f"\n({time.perf_counter() - t0:.0f} s)\n", flush=True)
            write_experiment_folder(args.out / f"ablation_{name}", "ablation", study.to_dict(),
                                    plot_ablation_study(study), model=model, texts={"text": window},
                                    arguments={"units": [f"{a}:{b}" for a, b in units], "targets": described,
                                               "start_in_test": start, "random": args.random})  # fmt: skip
            summary["ablation"][name] = effect_dict(study)

    pic_start, ifs, others = picture_window(window, masks, args.picture)
    if min(ifs, others) < 3:  # the picture would not show the contrast it is for
        print(f"warning: the picture holds only {ifs} if conditions and {others} other parenthesised expressions")
    roles = ["if unit (new rule)", "paren unit", "old if unit (AUC alone)"][: len(units)]
    fig = draw(wtr, window, units, roles, pic_start, args.picture)
    args.out.mkdir(parents=True, exist_ok=True)
    save_figure(fig, args.out / "if_condition_study.png")
    plt.close(fig)
    summary["picture"] = {"start_in_window": pic_start, "characters": args.picture, "if_conditions": ifs,
                          "other_parentheses": others, "units": [f"{a}:{b}" for a, b in units]}  # fmt: skip
    # What the if unit does in the picture's while/for/switch conditions, so the card's text agrees with the picture.
    shown = slice(pic_start, pic_start + args.picture)
    loops = context_masks(window)["while/for/switch condition"][shown]
    if loops.any():
        values = torch.tanh(wtr[f"{if_unit[0]}.cell"][shown, if_unit[1]]).double().numpy()[loops]
        summary["picture"]["if_unit_in_loop_conditions"] = round(float(values.mean()), 6)
    summary["arguments"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    return summary


# ---------------------------------------------------------------------------------------------- the card
def _minus(text: str) -> str:
    return text.replace("-", "−")


def _delta(row: dict[str, Any]) -> str:
    """Δ loss, its 95 % interval and its percentile among the random ablations: "+0.172 [+0.137, +0.209], 100 %ile"."""
    lo, hi = row["ci"]
    return _minus(f"{row['delta']:+.3f} [{lo:+.3f}, {hi:+.3f}], {row['percentile']:.0f} %ile")


def _above_random(row: dict[str, Any]) -> bool:
    """Hurts more than (nearly) every random ablation, the whole 95 % interval of its percentile at 95 or more."""
    return row["percentile_ci"][0] >= 95


def card_section(summary: dict[str, Any]) -> dict[str, str]:
    """The card's answer to the lecture's question, written from the numbers; each claim is tested here first."""
    sel, ctx, abl, win = summary["selection"], summary["contexts"], summary["ablation"], summary["window"]
    if_u, paren_u, old_u = sel["if_unit"], sel["paren_unit"], sel["old_if_unit"]
    units = {if_u["unit"]: "if unit", paren_u["unit"]: "paren unit", old_u["unit"]: "earlier if unit (AUC alone)"}
    parts = []
    if sel["has_if_cell"]:
        parts.append(
            f"**Yes: {if_u['unit']} tracks if conditions, and it is not the parenthesis cell.** It is the unit "
            "`find_cells` ranks first for `inside_if_condition`, one of "
            f"{len(sel['beating_units'])} that pass its control test against `inside_parens` (higher on the "
            "feature than on the control, AUC at least 0.75 *given* the control, and a visible effect, at least "
            "0.5, given it); it is first by AUC given the control."
        )
    else:
        parts.append(
            "**No: the model has a parenthesis cell and no if-condition cell.** No unit passes `find_cells`' control "
            "test against `inside_parens` (higher on the feature than on the control, AUC at least 0.75 given the "
            f"control, and a visible effect given it); the first unit, {if_u['unit']}, is shown below."
        )
    rows = [
        "| unit | AUC on `inside_if_condition` | effect | AUC on `inside_parens` | AUC given `inside_parens` | "
        "effect given it | beats the control | mean tanh(c): if / while, for, switch conditions / other "
        "parentheses / other code / line ends |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for row in (if_u, paren_u, old_u):
        means = " / ".join(f"{ctx[row['unit']][name]:+.2f}" for name in (*CONTEXTS[:4], LINE_END))
        rows.append(_minus(
            f"| {units[row['unit']]} {row['unit']} | {row['score']:.3f} | {row['effect']:+.2f} | "
            f"{row['control_score']:.3f} | {row['partial']:.3f} | {row['partial_effect']:+.2f} | "
            f"{'yes' if row['beats_controls'] else 'no'} | {means} |"
        ))  # fmt: skip
    parts.append(f"On the first {sel['characters']:,} held-out characters (the cards' text):\n\n" + "\n".join(rows))
    here = win["scores"]
    notes = []
    if_means = ctx[if_u["unit"]]
    loops = if_means["while/for/switch condition"]
    if sel["has_if_cell"] and loops < 0:
        in_picture = summary["picture"].get("if_unit_in_loop_conditions", -1.0)
        notes.append(
            f"On average the if unit stays red in while, for and switch conditions (mean {loops:+.2f} over "
            f"{ctx['characters']['while/for/switch condition']:,} characters): it marks if conditions, not conditions "
            "in general"
            + (
                ", though not every time: in the picture a while/for/switch condition is blue."
                if in_picture > 0
                else "."
            )
        )
    if sel["has_if_cell"] and if_means[LINE_END] >= MIN_EFFECT:
        notes.append(
            f"It is not a pure if cell: it is also blue at most line ends of code (mean {if_means[LINE_END]:+.2f} at "
            "`\\n`), where the next statement, perhaps an if, begins."
        )
    notes += [
        f"On the ablation window below the if unit scores {here[if_u['unit']]['score']:.3f}, "
        f"{here[if_u['unit']]['partial']:.3f} given parentheses"
        + ("" if here[if_u["unit"]]["beats_controls"] else " and does **not** pass the control test there")
        + "."
    ]
    paren_here = here[paren_u["unit"]]
    if paren_u["beats_controls"] != paren_here["beats_controls"]:
        passes, fails = ("the cards' text", "the ablation window")[:: 1 if paren_u["beats_controls"] else -1]
        notes.append(
            f"The paren unit is on the line: it passes the control test on {passes} and fails it on {fails} "
            f"(effect given parentheses {paren_u['partial_effect']:+.2f} and {paren_here['partial_effect']:+.2f}, "
            f"AUC on parentheses {paren_u['control_score']:.3f} and {paren_here['control_score']:.3f} against "
            f"{paren_u['score']:.3f} and {paren_here['score']:.3f} on if conditions)."
        )
    if old_u["partial_effect"] < MIN_EFFECT:
        pinned = all(ctx[old_u["unit"]][name] <= -0.7 for name in CONTEXTS[:4])
        notes.append(
            f"The earlier unit's AUC given parentheses ({old_u['partial']:.3f}) is a rank difference no picture "
            "shows: "
            + ("its tanh(c) is near −1 all through code, and " if pinned else "it ")
            + f"moves by only {old_u['partial_effect']:+.2f} given parentheses."
        )
    parts.append(_minus(" ".join(notes)))

    # The causal test.
    top5 = abl["if_close"].get("top5")
    header = "| target (positions) | " + " | ".join(f"{units[u]} {u}" for u in units)
    header += (" | top 5 together¹" if top5 else "") + " | random units: median, 95th percentile |"
    rows = [header, "| --- |" + " ---: |" * (len(units) + 1 + bool(top5))]
    for name, described in LABELS.items():
        study = abl[name]
        cells = [_delta(study[u]) for u in units] + ([_delta(study["top5"])] if top5 else [])
        rnd = study["random"]
        rows.append(_minus(f"| {described} ({study['n']:,}) | " + " | ".join(cells) +
                           f" | {rnd['median']:+.3f}, {rnd['p95']:+.3f} |"))  # fmt: skip
    parts.append(
        f"Causal test on {win['characters']:,} other held-out characters (the window of the test part after the "
        "cards' text with the most if conditions): each unit's cell state set to zero, the change in loss in "
        "nats/char at the targets [95 % bootstrap interval], and its percentile among 100 random units of layer 1:"
        "\n\n" + "\n".join(rows)
        + (f"\n\n¹ The top 5 `inside_if_condition` units on that window ({', '.join(top5['units'])}"
           + (", the paren unit among them" if top5 and paren_u["unit"] in top5["units"] else "")
           + "), against 20 random sets of 5." if top5 else "")
    )  # fmt: skip
    if_close, other_close = abl["if_close"], abl["other_close"]
    verdict = []
    if _above_random(if_close[if_u["unit"]]) and not _above_random(other_close[if_u["unit"]]):
        rest = max(abs(abl[t][if_u["unit"]]["delta"]) for t in ("if_brace", "other_brace", "if_inside", "other_inside"))
        share = if_close[if_u["unit"]]["percentile"]
        share_text = "every one of the random units" if share == 100 else f"{share:.0f} % of the random units"
        verdict.append(
            f"Zeroing the if unit hurts the `)` that closes an if condition more than {share_text} does "
            f"({_delta(if_close[if_u['unit']])}), and not the `)` of other expressions "
            f"({_delta(other_close[if_u['unit']])}): the model relies on it where an if condition closes, not "
            f"where other parentheses do. At the other targets it moves the loss by at most {rest:.3f} nats."
        )
    elif _above_random(if_close[if_u["unit"]]):
        verdict.append("Zeroing the if unit hurts the `)` of if conditions and of other expressions alike.")
    else:
        verdict.append("Zeroing the if unit does not hurt the `)` of an if condition beyond random units: no causal "
                       "role is shown.")  # fmt: skip
    if _above_random(if_close[paren_u["unit"]]) and _above_random(other_close[paren_u["unit"]]):
        verdict.append(
            f"Zeroing the paren unit hurts every closing parenthesis ({_delta(if_close[paren_u['unit']])} at if "
            f"conditions, {_delta(other_close[paren_u['unit']])} elsewhere): it is the parenthesis cell, and "
            "the model needs it at if conditions too."
        )
    brace = abl["if_brace"]
    if all(abs(brace[u]["delta"]) < 0.02 for u in units):
        verdict.append(
            f"At the `{{` after an if condition no single unit changes the loss by 0.02 nats: the model predicts it "
            f"almost surely (baseline {brace['baseline']:.3f} nats) with or without them."
        )
    parts.append(_minus(" ".join(verdict)))
    pic = summary["picture"]
    parts.append(
        f"The picture: {pic['characters']} characters of the ablation window, {pic['if_conditions']} if conditions "
        f"and {pic['other_parentheses']} other parenthesised expressions, one panel per unit (tanh(c): blue +1, "
        "white 0, red −1). The dark track under the text is full height inside an if condition and half height in "
        "other parentheses. Reproduce with `python benchmarks/if_condition_study.py --card`."
    )
    return {"title": SECTION_TITLE, "text": "\n\n".join(parts), "image": IMAGE}


def write_card(summary: dict[str, Any], picture: Path) -> None:
    """Put the picture and the section into the code card folder, its card and manifest redone, swapped in whole."""
    model = load_pretrained(CARD).eval()
    results = json.loads((CARD / "results.json").read_text(encoding="utf-8"))
    section = card_section(summary)
    with atomic_folder(CARD) as staging:
        shutil.copytree(CARD, staging, dirs_exist_ok=True)
        shutil.copyfile(picture, staging / IMAGE)
        kept = [s for s in results.get("sections", []) if s.get("title") != SECTION_TITLE]
        results["sections"] = [*kept, section]
        atomic_write_text(staging / "results.json", json.dumps(results, indent=1) + "\n")
        save_model_card(staging, final_dir=CARD)
        write_manifest(staging, "model", model=model_provenance(model, local_paths=False),
                       arguments={"repo_id": results.get("repo_id")})  # fmt: skip
    print(f"wrote the section and {IMAGE} into {CARD}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--heldout", type=int, default=100_000, help="selection text: the test part's first N chars")
    parser.add_argument("--chars", type=int, default=20_000, help="the ablation window's length")
    parser.add_argument("--random", type=int, default=100, help="random units of the layer to compare with")
    parser.add_argument("--picture", type=int, default=480, help="characters in the picture")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "if_condition")
    parser.add_argument("--card", action="store_true", help="write the picture and the section into the code card")
    parser.add_argument("--reuse", action="store_true", help="read OUT/summary.json instead of measuring again")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.reuse:
        summary = json.loads((args.out / "summary.json").read_text(encoding="utf-8"))
    else:
        summary = measure(args)
        atomic_write_text(args.out / "summary.json", json.dumps(summary, indent=1) + "\n")
    section = card_section(summary)
    print(f"\n## {section['title']}\n\n{section['text']}")
    if args.card:
        write_card(summary, args.out / "if_condition_study.png")


if __name__ == "__main__":
    main()
