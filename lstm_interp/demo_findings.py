"""``demo_findings``: what the demo's model learnt, said honestly, with the pretrained model's cell where it has none.

The demo ends by naming its best unit for each feature it watches, scored on *held-out* prose (the book's validation
part, never trained on) with :func:`~lstm_interp.find_cells`'s ranking rule and controls. A quote cell counts when
its AUC is at least :data:`QUOTE_AUC`, it visibly switches, and it beats its control (``dialogue_line``). When the
run grew none, the demo says so and shows the pretrained ``novel`` model's quote cell beside its own best unit, over
the same probe, in one figure; ``summary.json`` records which unit each picture shows and where it came from.

This module sits at the end of the data path with :mod:`lstm_interp.demo`, which is its only user.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from lstm_interp._io import atomic_write_text
from lstm_interp.analysis import find_cells
from lstm_interp.features import compute_feature
from lstm_interp.models.char_lstm import CharLSTM
from lstm_interp.plots.cell_text import plot_cell_text
from lstm_interp.tracing import Trace, trace

QUOTE_AUC = 0.95  # the score from which the demo calls its best quote unit a quote cell
PRETRAINED = "novel"  # the pretrained model whose quote cell is shown when the run grew none
SUMMARY_FILE = "summary.json"


@dataclass
class Finding:
    """The unit shown for one feature, and where it came from.

    Attributes:
        feature: the feature's name.
        layer, unit, quantity: the unit shown.
        source: ``"trained"`` (this run's model) or ``"pretrained"``.
        model: the model's folder, or the pretrained model's name.
        metric: ``"auc"`` or ``"pearson"``.
        score: its score on held-out prose (``max(AUC, 1 - AUC)`` or ``|r|``).
        effect: how far its displayed value moves with the feature on the -1..+1 colour scale.
        probe_score: its score on the probe text the figures show.
        beats_controls: whether it tracks the feature better than the feature's controls (``None``: none).
        found: whether it meets the demo's bar (quote cell: AUC >= 0.95, visible, beats its control; other
            features: visible).
    """

    feature: str
    layer: str
    unit: int
    quantity: str
    source: str
    model: str
    metric: str
    score: float
    effect: float
    probe_score: float
    beats_controls: bool | None
    found: bool


def find_demo_cells(
    model: CharLSTM,
    model_dir: Path,
    held_out: str,
    probe: str,
    features: tuple[str, ...],
    *,
    load_pretrained: Callable[[str], CharLSTM] | None,
) -> tuple[list[Finding], Trace, Trace]:
    """The best unit of ``model`` for each feature on ``held_out``, and the probe's traces for the figures.

    Returns the findings (one per feature, the pretrained model's quote cell appended after this model's own when
    this model has none), the probe's trace of ``model``, and the probe's trace of whichever model each figure
    panel needs (this model's trace when no pretrained one was used).
    """
    held = trace(model, held_out, names_filter="layers.*.cell")
    probe_trace = trace(model, probe)
    findings = []
    for feature in features:
        row = find_cells(held, feature, top=1)[0]
        probe_row = find_cells(probe_trace, compute_feature(feature, probe), top=None, min_effect=0, controls=())
        probe_score = next(r.score for r in probe_row if (r.layer, r.unit) == (row.layer, row.unit))
        found = row.visible and row.beats_controls and (feature != "inside_quotes" or row.score >= QUOTE_AUC)
        findings.append(
            Finding(feature, row.layer, row.unit, row.quantity, "trained", str(model_dir), row.metric, row.score,
                    row.effect, probe_score, row.beats_controls if row.controls else None, found)
        )
    quote = next((f for f in findings if f.feature == "inside_quotes"), None)
    if quote is None or quote.found or load_pretrained is None:
        return findings, probe_trace, probe_trace
    pretrained = load_pretrained(PRETRAINED).eval()
    theirs = find_cells(trace(pretrained, held_out, names_filter="layers.*.cell"), "inside_quotes", top=1)[0]
    their_probe = trace(pretrained, probe, names_filter="layers.*.cell")
    probe_row = find_cells(their_probe, "inside_quotes", top=None, min_effect=0, controls=())
    findings.append(
        Finding("inside_quotes", theirs.layer, theirs.unit, theirs.quantity, "pretrained", PRETRAINED, theirs.metric,
                theirs.score, theirs.effect,
                next(r.score for r in probe_row if (r.layer, r.unit) == (theirs.layer, theirs.unit)),
                theirs.beats_controls if theirs.controls else None, theirs.score >= QUOTE_AUC and theirs.visible)
    )
    return findings, probe_trace, their_probe


def plot_side_by_side(ours: Trace, theirs: Trace, own: Finding, pretrained: Finding) -> Figure:
    """This run's best quote unit and the pretrained model's quote cell over the same probe, one panel each."""
    mine = f"this run: {own.layer}"
    other = f"pretrained {pretrained.model!r}: {pretrained.layer}"
    both = Trace(
        {f"{mine}.cell": ours[f"{own.layer}.cell"], f"{other}.cell": theirs[f"{pretrained.layer}.cell"]},
        text=ours.text,
        tokens=ours.tokens,
        cell="lstm",
        num_layers=2,
        layer_names=[mine, other],
    )
    values = compute_feature("inside_quotes", ours.text or "")
    return plot_cell_text(both, [(mine, own.unit), (other, pretrained.unit)], feature=values,
                          feature_name="inside_quotes")


def last_words(findings: list[Finding]) -> list[str]:
    """The demo's closing lines about its cells: the best unit of each feature, and plainly when it is no cell."""
    lines = []
    for f in findings:
        if f.source == "pretrained":
            lines.append(
                f"  Beside it, the pretrained {f.model!r} model's quote cell: {f.layer} unit {f.unit}, "
                f"AUC {f.score:.3f} on the same held-out text."
            )
            continue
        name = "AUC" if f.metric == "auc" else "|r|"
        what = f"{f.feature}: {f.layer} unit {f.unit}, {name} {f.score:.3f}, effect {f.effect:+.2f} on held-out prose"
        if f.found:
            lines.append(f"  {what}: a cell.")
        elif f.feature == "inside_quotes":
            why = [f"AUC below {QUOTE_AUC}"] if f.score < QUOTE_AUC else []
            why += [] if abs(f.effect) >= 0.5 else ["it barely changes colour"]
            why += ["it tracks its control, dialogue lines, as well"] if f.beats_controls is False else []
            lines.append(f"  {what}: no quote cell this run ({'; '.join(why)}).")
        else:
            lines.append(f"  {what}: it does not visibly switch.")
    return lines


def write_summary(
    path: str | os.PathLike, *, steps: int, precision: str, val_loss: float, findings: list[Finding],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``summary.json`` atomically: steps, precision, validation loss and each feature's unit shown."""
    data = {
        "steps": steps,
        "precision": precision,
        "val_loss": val_loss,
        "features": {},
        **(extra or {}),
    }
    for f in findings:
        # The unit each picture shows: the pretrained one replaces the run's own when the run grew no cell.
        shown = data["features"].get(f.feature)
        if shown is None or (f.source == "pretrained" and not shown["found"]):
            data["features"][f.feature] = asdict(f) | ({"trained": shown} if shown else {})
    path = Path(path)
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")
    return path
