"""Files, figures and logger output of :class:`~lstm_interp.callbacks.LSTMActivationMonitor`.

Every file is written atomically (temporary file, then rename), so a reader of ``index.json`` never meets a
half-written recording, and the index itself is rewritten last, once everything it lists exists. Figures are
yielded lazily (:func:`draw_figures`), so the monitor renders, writes and closes each before drawing the next: one
figure in memory at a time, however many the recording has.

Below :mod:`._monitor_recording` (which decides what to write) and beside :mod:`._probe_capture`: it takes traces,
statistics and plain values, never the monitor or its settings. Which units the cell-text figure shows, and the note
its title carries when every one would be a flat band, is :func:`cell_text_units`.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from lightning.fabric.loggers.tensorboard import TensorBoardLogger as FabricTensorBoardLogger
from lightning.pytorch.loggers import Logger, MLFlowLogger
from lightning.pytorch.utilities import rank_zero_warn
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from safetensors.torch import save_file

from lstm_interp._io import atomic_path, atomic_write_text
from lstm_interp.analysis.gate_saturation import GateSaturation
from lstm_interp.features.feature_window import busiest_window
from lstm_interp.plots import (
    plot_cell_heatmap,
    plot_cell_text,
    plot_gate_saturation,
    plot_saturation_history,
    plot_series,
    plot_topk_predictions,
)
from lstm_interp.report.html_report import is_visible
from lstm_interp.report.saturation import effect_text, flat_mask, pinned_mask, state_saturation
from lstm_interp.tracing.most_variable_units import most_variable_units
from lstm_interp.tracing.trace import Trace

INDEX_NAME = "index.json"
INDEX_FORMAT = "lstm_interp.activation_monitor"
INDEX_FORMAT_VERSION = 1

# Figures show the start of the probe: drawing costs one text artist per character (and unit, or guess), which makes
# up most of a recording's time, and the paper's pictures need a few lines of text, not a chapter. The HTML report
# shows the whole of every probe.
CELL_TEXT_STEPS = 240  # three lines of 80 characters
TOPK_STEPS = 120  # two lines of 60
HEATMAP_STEPS = 150  # the most that plot_cell_heatmap labels with characters
HEATMAP_UNITS = 64
SERIES_STEPS = 500  # a series has no glyphs to draw, so more steps fit


def save_activations(
    path: Path,
    probes: Sequence[Sequence[Trace]],
    *,
    quantities: set[str],
    dtype: torch.dtype,
    metadata: dict[str, Any],
) -> None:
    """Write the chosen quantities of every probe to one ``.safetensors`` file, keys ``probe<i>/<name>``.

    ``log_probs`` is kept whenever a trace has it; ``probe<i>/tokens`` holds the ids of the probe's time steps.
    Metadata values are stored as JSON strings (safetensors metadata is ``str -> str``).
    """
    tensors: dict[str, torch.Tensor] = {}
    for i, traces in enumerate(probes):
        for tr in traces:
            for name, values in tr.items():
                if name == "log_probs" or name.rsplit(".", 1)[-1] in quantities:
                    tensors[f"probe{i}/{name}"] = values.to("cpu", dtype).contiguous()
            tensors.setdefault(f"probe{i}/tokens", tr.tokens.to(torch.long).contiguous())
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={key: json.dumps(value) for key, value in metadata.items()})


def write_index(dirpath: Path, header: dict[str, Any], entries: Iterable[dict[str, Any]]) -> Path:
    """Rewrite ``index.json``: the header, then one record per recording with file paths relative to ``dirpath``.

    Recordings restored from a run that wrote elsewhere (a resumed run with a new logger version) keep pointing at
    their files there, through ``..`` paths.
    """
    records = []
    for entry in sorted(entries, key=lambda e: e["step"]):
        where = Path(entry["dir"])
        files = {
            kind: (
                {k: os.path.relpath(where / f, dirpath) for k, f in name.items()}
                if isinstance(name, dict)
                else os.path.relpath(where / name, dirpath)
            )
            for kind, name in entry["files"].items()
        }
        records.append({key: value for key, value in entry.items() if key != "dir"} | {"files": files})
    document = {"format": INDEX_FORMAT, "format_version": INDEX_FORMAT_VERSION, **header, "recordings": records}
    path = dirpath / INDEX_NAME
    atomic_write_text(path, json.dumps(_json_safe(document), indent=1, ensure_ascii=False))
    return path


def read_index_entries(dirpath: Path) -> list[dict[str, Any]]:
    """The recordings that ``dirpath/index.json`` lists with files in ``dirpath`` itself, as entries.

    Empty if there is no index or it is unreadable. Records pointing elsewhere (``..`` paths, restored by a resumed
    run) are left out: they belong to the run that wrote them.
    """
    try:
        document = json.loads((dirpath / INDEX_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(document, dict) or document.get("format") != INDEX_FORMAT:
        return []
    entries = []
    for record in document.get("recordings", []):
        files = record.get("files", {})
        names = [n for f in files.values() for n in (f.values() if isinstance(f, dict) else [f])]
        if isinstance(record.get("step"), int) and all(isinstance(n, str) and Path(n).name == n for n in names):
            summary = {k: math.nan if v is None else v for k, v in record.get("summary", {}).items()}
            entries.append({**record, "summary": summary, "dir": str(dirpath)})
    return entries


def _json_safe(value: Any) -> Any:
    """JSON has no NaN or infinity: they become ``null`` (a NaN-poisoned run must still give a readable index)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def figure_to_rgb(fig: Figure) -> np.ndarray:
    """The rendered figure as an (H, W, 3) uint8 array: what the PNG file and every logger receive."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def write_png(path: Path, rgb: np.ndarray) -> None:
    """Write pixels from :func:`figure_to_rgb` as a PNG file, atomically."""
    with atomic_path(path) as tmp:
        PIL.Image.fromarray(rgb).save(tmp, format="PNG")


class FigureLogger:
    """Sends rendered figures to every logger that can take images; warns once per logger type that cannot.

    A figure is rendered once (:func:`figure_to_rgb`) and the pixels go to the PNG file and to every logger:
    rendering is most of a figure's cost, and ``experiment.add_figure`` or ``save_figure`` would each render again.
    TensorBoard gets ``add_image``, MLflow (whose Lightning logger has no ``log_image``) an image artifact through its
    client, any other logger with a ``log_image`` method (W&B, Neptune, ...) ``log_image(key=, images=, step=)``.
    """

    def __init__(self) -> None:
        self._warned: set[str] = set()

    def log(self, loggers: Sequence[Logger], tag: str, rgb: np.ndarray, step: int, png_dir: Path) -> None:
        for logger in loggers:
            if isinstance(logger, FabricTensorBoardLogger):
                # What `add_figure` does after rendering the figure itself.
                logger.experiment.add_image(tag, rgb, global_step=step, dataformats="HWC")
            elif isinstance(logger, MLFlowLogger):
                log_mlflow_image(logger, tag, rgb, step)
            elif callable(getattr(logger, "log_image", None)):
                logger.log_image(key=tag, images=[rgb], step=step)
            elif type(logger).__name__ not in self._warned:
                self._warned.add(type(logger).__name__)
                rank_zero_warn(
                    f"LSTMActivationMonitor: the logger {type(logger).__name__} takes neither TensorBoard images "
                    f"nor `log_image` (nor is it MLFlowLogger), so figures go to PNG files only, in {str(png_dir)!r}"
                )


def log_mlflow_image(logger: MLFlowLogger, tag: str, rgb: np.ndarray, step: int) -> None:
    """Log pixels to the run of an :class:`~lightning.pytorch.loggers.MLFlowLogger` as an image artifact.

    With an MLflow whose ``MlflowClient.log_image`` takes ``key=`` and ``step=``, the images of one tag form a series
    the MLflow UI shows with a step slider (``images/<tag, '/' as '~'>+step+<step>+...png``); with an older one each
    goes to ``<tag>/step_<step>.png``. The tag loses the characters MLflow refuses in names, as
    ``MLFlowLogger.log_metrics`` does for the scalars, so figures and scalars keep the same names.
    """
    key = re.sub(r"[^a-zA-Z0-9_/. -]+", "", tag)
    client = logger.experiment
    if "key" in inspect.signature(client.log_image).parameters:
        client.log_image(logger.run_id, rgb, key=key, step=step)
    else:
        client.log_image(logger.run_id, rgb, artifact_file=f"{key}/step_{step}.png")


@dataclass
class Group:
    """One monitored recurrent module (or the whole CharLSTM) in one recording.

    Args:
        label: ``""`` when it is the only one, else its module path (suffix of figure kinds).
        plotted: its trace on the probe that the figures show.
        combined: its traces on all probes end to end (what the statistics and unit choice use).
        saturation: gate saturation of ``combined`` (``None`` for a plain RNN, which has no gates).
        inputs: (T, C) the plotted probe's float input values, when the probe is not text (a time series): the
            figures then draw the series view (:func:`~lstm_interp.plots.plot_series`) instead of coloured text.
    """

    label: str
    plotted: Trace
    combined: Trace
    saturation: GateSaturation | None
    inputs: np.ndarray | None = None


def draw_figures(
    groups: Sequence[Group],
    history: Sequence[tuple[int, dict[str, float]]],
    *,
    chars: str | None,
    cells_to_plot: int,
    top_k: int,
    feature_rows: Sequence[Mapping[str, Any]] = (),
    feature_track: tuple[str, np.ndarray] | None = None,
) -> Iterator[tuple[str, Callable[[], Figure]]]:
    """``(kind, draw)`` pairs: calling ``draw()`` makes the figure, so a failing one can be skipped by the caller.

    The cell-text figure shows the :data:`CELL_TEXT_STEPS` steps of the first probe where ``feature_track`` (the
    best feature, name and values) changes most (:func:`~lstm_interp.features.busiest_window`), drawn as a track
    under the text; without features, the first steps. Its units (:func:`cell_text_units`; last group only for the
    features) are the units of ``feature_rows`` (each feature's best ``CellScore.to_dict`` row, best first) that
    visibly switch with their feature, then the last layer's units that vary most over that window, leaving out
    flat ones, ``cells_to_plot`` in all (or more, when there are more features). When none of those is left (no
    feature unit visible, every unit's state pinned at +-1), the figure's title says so with the layers' numbers
    and it shows the displayed quantity that varies most instead. The heatmap's units are the most variable ones
    over its own window.

    Kinds: ``cell_text`` (``series`` for a probe of float inputs), ``gate_saturation``, ``topk_predictions``,
    ``cell_heatmap`` (each with ``_<module path>`` appended when several modules are monitored) and
    ``saturation_history``.
    """
    for g, group in enumerate(groups):
        suffix = f"_{group.label}" if group.label else ""
        tr = group.plotted
        quantity = tr.state_quantity
        last = g == len(groups) - 1
        track = feature_track if last and feature_track is not None and len(feature_track[1]) == tr.num_steps else None
        window = busiest_window(track[1], CELL_TEXT_STEPS) if track is not None else slice(0, CELL_TEXT_STEPS)
        choice = cell_text_units(tr, window, feature_rows if last else (), cells_to_plot)
        if group.inputs is not None and tr.labels is None and len(group.inputs) == tr.num_steps:
            # Not text: the input channels as lines, the units beneath on the same time axis.
            yield (
                f"series{suffix}",
                _bind(plot_series, tr, group.inputs, choice.units, quantity=choice.quantity, length=SERIES_STEPS),
            )
        else:
            options: dict[str, Any] = {"quantity": choice.quantity, "start": window.start, "length": CELL_TEXT_STEPS}
            if track is not None and choice.follows_feature:
                options |= {"feature": track[1], "feature_name": track[0]}
            if choice.note:
                options["note"] = choice.note
            yield f"cell_text{suffix}", _bind(plot_cell_text, tr, choice.units, labels=choice.labels, **options)
        if group.saturation is not None:
            yield f"gate_saturation{suffix}", _bind(plot_gate_saturation, group.saturation)
        if "log_probs" in tr and chars is not None:
            topk: dict[str, Any] = {"k": min(top_k, len(chars)), "length": TOPK_STEPS}
            if choice.follows_feature and choice.units:
                # The blog's URL-cell figure: the chosen feature unit under the text, where its feature changes most.
                topk |= {"unit": choice.units[0], "quantity": choice.quantity, "start": window.start}
            yield f"topk_predictions{suffix}", _bind(plot_topk_predictions, tr, chars, **topk)
        layer = tr.layer_names[-1]
        ranked = most_variable_units(tr, quantity, HEATMAP_UNITS, layer=layer, stop=HEATMAP_STEPS, skip_flat=True)
        heatmap_units = [u.unit for u in ranked]
        heatmap = _bind(plot_cell_heatmap, tr, layer, quantity=quantity, units=heatmap_units, length=HEATMAP_STEPS)
        yield f"cell_heatmap{suffix}", heatmap
    if history and any(group.saturation is not None for group in groups):
        yield "saturation_history", _bind(plot_saturation_history, list(history))


@dataclass(frozen=True)
class CellTextUnits:
    """What the cell-text figure shows: its units, the quantity they are coloured by, each unit's reason (the feature
    it was matched to, or ``"most variable"``), the note for its title (or ``None``), and whether a feature's unit
    is among them (the feature's track is drawn only then)."""

    units: list[tuple[str, int]]
    quantity: str
    labels: list[str]
    note: str | None
    follows_feature: bool


def cell_text_units(tr: Trace, window: slice, feature_rows: Sequence[Mapping[str, Any]], count: int) -> CellTextUnits:
    """The units of the cell-text figure over ``window`` (see :func:`draw_figures`).

    A feature's unit is kept when it visibly switches with the feature (its row's ``visible`` flag, the rule
    ``find_cells`` ranks by; a row without the flag counts as visible), however rarely the feature is on: a quote
    cell at -1 on 95% of the characters is a sparse switch, not a flat band. The other units are the last layer's
    most variable ones over the window (flat ones only if every unit is flat), leaving out those pinned at +-1
    there (:func:`~lstm_interp.report.saturation.pinned_mask`). When that leaves nothing, every candidate would
    draw a solid band: the state is pinned, and the figure shows the displayed quantity that varies most
    (:func:`~lstm_interp.report.saturation.state_saturation`), the features' units first where they vary in it.
    """
    quantity = tr.state_quantity
    rows = [row for row in feature_rows if row.get("layer") in tr.layer_names]
    reasons: dict[tuple[str, int], str] = {}  # each feature's unit, with the (first) feature it was matched to
    for row in rows:
        reasons.setdefault((str(row["layer"]), int(row["unit"])), str(row.get("feature", "feature")))
    shown = [unit for unit, row in zip(reasons, _first_rows(rows), strict=True) if is_visible(row)]
    last = tr.layer_names[-1]
    ranked = most_variable_units(tr, quantity, count + len(shown), start=window.start, stop=window.stop, skip_flat=True)
    # A solid deep band says nothing; a faint one (an untrained model's) is left in, as most_variable_units ranks it.
    pinned = pinned_mask(tr, last, quantity, window)
    variable = [(u.layer, u.unit) for u in ranked if (u.layer, u.unit) not in shown and not bool(pinned[u.unit])]
    if shown or variable:
        note = None
        if rows and not shown:  # the features' best units barely move with them: say so, and draw no track
            features = " or ".join(dict.fromkeys(str(row.get("feature", "the feature")) for row in rows))
            note = f"no unit visibly follows {features}: {_match(rows[0])}, barely changes colour with it"
        units = shown + variable[: max(0, count - len(shown))]
        return CellTextUnits(units, quantity, _labels(units, reasons), note, bool(shown))
    # Every candidate is pinned: the state is saturated. Say so, with numbers, and show what does vary.
    saturation = state_saturation(tr, [*(layer for layer, _ in reasons), last], quantity, window=window)
    note = saturation.note()
    if rows:
        match = _match(rows[0])
        note += f". {match[0].upper()}{match[1:]}, does not visibly switch"
    instead = saturation.instead
    if instead is None:  # nothing else was traced: the solid bands are all there is
        units = list(dict.fromkeys([*reasons, *((u.layer, u.unit) for u in ranked)]))[: max(count, 1)]
        return CellTextUnits(units, quantity, _labels(units, reasons), note, bool(reasons))
    kept = [(layer, unit) for layer, unit in reasons if not bool(flat_mask(tr, layer, instead, window, unit=unit)[0])]
    ranked = most_variable_units(tr, instead, count + len(kept), start=window.start, stop=window.stop, skip_flat=True)
    others = [(u.layer, u.unit) for u in ranked if (u.layer, u.unit) not in kept]
    units = kept + others[: max(0, count - len(kept))]
    return CellTextUnits(units, instead, _labels(units, reasons), note, bool(kept))


def _first_rows(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The first row naming each unit, in order: the one whose feature the unit is shown for."""
    seen: dict[tuple[str, int], Mapping[str, Any]] = {}
    for row in rows:
        seen.setdefault((str(row["layer"]), int(row["unit"])), row)
    return list(seen.values())


def _labels(units: list[tuple[str, int]], reasons: dict[tuple[str, int], str]) -> list[str]:
    return [reasons.get(unit, "most variable") for unit in units]


def _match(row: Mapping[str, Any]) -> str:
    """``"the best unit for position_in_line, layers.0 unit 85 (r 0.67, effect +0.03)"``: a feature's first row."""
    details = []
    if row.get("score") is not None:
        details.append(f"{'AUC' if row.get('metric') == 'auc' else 'r'} {float(row['score']):.2f}")
    if row.get("effect") is not None:
        details.append(f"effect {effect_text(row['effect'])}")
    unit = f"{row['layer']} unit {row['unit']}" + (f" ({', '.join(details)})" if details else "")
    return f"the best unit for {row.get('feature', 'the feature')}, {unit}"


def _bind(plot: Callable[..., Figure], *args: Any, **kwargs: Any) -> Callable[[], Figure]:
    return lambda: plot(*args, **kwargs)
