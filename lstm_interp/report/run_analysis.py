"""``run_analysis(model, text, out_dir)``: everything ``lstm-interp analyze`` and ``explore`` write, as a library call.

One streaming pass of the model over the text (:func:`~lstm_interp.tracing.trace_segments`, the state carried
across segments, into one :class:`~lstm_interp.analysis.ActivationStats`) yields the per-layer state quantity (the
cell state of an LSTM, the hidden state of a GRU or RNN), gate-saturation counts and the log-probability of every
character; from them:

- ``cells.json``: for every feature, its ``top`` units by :func:`~lstm_interp.analysis.find_cells`;
- ``figures/cell_text_<feature>.png``: the best unit of each feature over the stretch of text where the feature
  changes most (:func:`~lstm_interp.features.busiest_window`), with the feature drawn as a track under the text;
- ``gate_saturation.json`` and ``figures/gate_saturation.png``: the paper's Section 4.2;
- ``report.html``: the interactive page on the first ``report_chars`` characters, listing the feature matches and
  opening on the best unit of the first feature;
- with a baseline text: ``comparison.json`` and ``figures/class_loss.png``, ``figures/brace_study.png`` (when the
  text has matched braces), ``figures/error_breakdown.png`` (when the model makes errors): the paper's Sections
  4.3-4.4, see :mod:`lstm_interp.comparison`.

Memory: the stored cell states (``T * H * layers * 4`` bytes: 410 MB for 100,000 characters of a 2x512 LSTM) plus
one segment's gates; the page and the figures use short windows of the text.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from matplotlib.figure import Figure

from lstm_interp._io import atomic_folder, atomic_write_text
from lstm_interp.analysis import ActivationStats, CellTable, GateSaturation, find_cells
from lstm_interp.analysis.analysis_parts import SATURATION_HIGH, SATURATION_LOW, AnalysisParts
from lstm_interp.analysis.control_scores import check_control, usable_controls
from lstm_interp.analysis.corpus_pass import corpus_pass, pass_trainer
from lstm_interp.analysis.corpus_shards import DEFAULT_PRIME_CHARS, DEFAULT_SHARD_CHARS
from lstm_interp.comparison import (
    NGramBaseline,
    NoMatchedBracesError,
    brace_study,
    class_loss,
    error_breakdown,
)
from lstm_interp.features import (
    FEATURES,
    ConstantFeatureError,
    Feature,
    busiest_window,
    compute_feature,
    feature_values,
    get_feature,
)
from lstm_interp.manifest import check_replaceable, write_manifest
from lstm_interp.models.char_lstm import CharLSTM
from lstm_interp.plots import (
    plot_brace_study,
    plot_cell_text,
    plot_class_loss,
    plot_error_breakdown,
    plot_gate_saturation,
    save_figure,
)
from lstm_interp.report.html_report import best_feature_match, write_html_report
from lstm_interp.tracing import Trace, trace
from lstm_interp.vocab import OnUnknown

if TYPE_CHECKING:  # Lightning is imported by the pass itself, when it runs (it takes seconds to import)
    import lightning.pytorch as pl

DEFAULT_NGRAM_ORDER = 9
DEFAULT_SEGMENT_CHARS = 8192
ORACLE_ORDERS = tuple(range(1, 10))  # the paper's n-gram oracles
# What an analysis folder holds; an existing folder holding anything else is not replaced.
ANALYSIS_NAMES = ("cells.json", "gate_saturation.json", "comparison.json", "report.html", "figures")
Log = Callable[[str], None]


def run_analysis(
    model: CharLSTM,
    text: str,
    out_dir: str | os.PathLike,
    *,
    features: Sequence[str | Feature] | None = None,
    baseline_text: str | None = None,
    ngram_order: int = DEFAULT_NGRAM_ORDER,
    top: int = 10,
    report_chars: int = 2000,
    figure_chars: int = 800,
    segment_chars: int = DEFAULT_SEGMENT_CHARS,
    title: str | None = None,
    on_unknown: OnUnknown = "error",
    controls: Mapping[str, Sequence[str]] | None = None,
    overwrite: bool = False,
    log: Log | None = None,
    shard_chars: int = DEFAULT_SHARD_CHARS,
    prime_chars: int = DEFAULT_PRIME_CHARS,
    trainer: pl.Trainer | None = None,
    **trainer_kwargs: Any,
) -> Path | None:
    """Find the units that track each feature, measure gate saturation, and compare with an n-gram baseline.

    Args:
        model: the network (``CharLSTM.from_pretrained(folder)``, say).
        text: the text to analyse; every character must be in the model's vocabulary.
        out_dir: the folder to write. It is built whole in a hidden sibling and swapped into place at the end, with
            a ``manifest.json`` naming the model, the texts (length and sha256), the arguments and every file's
            sha256: a crash or kill leaves the previous analysis or none, and a rerun leaves nothing of an older
            run. An existing folder must be empty or an earlier analysis (anything else is refused, untouched).
        features: feature names or :class:`~lstm_interp.features.Feature` s. ``None``: every registered feature,
            where those constant on this text are skipped (and listed in ``cells.json``); a feature named here
            that is constant on the text is an error.
        baseline_text: the n-gram's training text (use the LSTM's training text); enables the comparison.
        ngram_order: the baseline n-gram's order. The n-gram oracles of the error breakdown use orders 1-9 and
            this one (those no longer than the baseline text).
        top: units listed per feature in ``cells.json`` and on the page.
        report_chars: characters of the text shown on the HTML page.
        figure_chars: characters of the text in each cell-text figure.
        segment_chars: characters traced at a time.
        title: the page title (default: names the text's length).
        on_unknown: ``"skip"`` drops characters outside the model's vocabulary (their count is logged) instead
            of failing; the analysis then describes the text without them.
        controls: feature name -> the control features its units are also scored against (see
            :func:`~lstm_interp.find_cells`); a feature not named keeps its registered
            :attr:`~lstm_interp.features.Feature.controls` (skipped where constant on the text), and an empty list
            turns them off. A control named here must vary on the text.
        overwrite: replace ``out_dir`` even if it holds files the earlier analysis did not write (or changed).
        log: called with progress lines and the summary tables (``print``, say); ``None`` is silent.
        shard_chars, prime_chars: the shards of the pass (:mod:`~lstm_interp.analysis.corpus_shards`): each is
            traced from a state warmed on the ``prime_chars`` characters before it.
        trainer: the Trainer the pass runs on (:func:`~lstm_interp.analysis.corpus_pass.corpus_pass`), or its
            arguments as keywords (``devices=2``, ``accelerator="gpu"``, ...); the result does not depend on them.

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path` on rank 0; ``None`` on the other ranks of a multi-process pass.

    Raises:
        ValueError: a text of fewer than 2 characters or outside the vocabulary (``VocabularyError``), an
            unknown feature (``UnknownFeatureError``, listing the known ones), a chosen feature that is constant
            on the text, an empty baseline text or an ``ngram_order`` below 1 or above its length, bad sizes; a
            control that is unknown (the message lists the registered ones), not binary, the feature itself or
            constant on the text.
        FileExistsError: ``out_dir`` holds files an analysis does not write (they are named).
        NotADirectoryError: ``out_dir`` is a file.
    """
    say = log or (lambda line: None)
    if on_unknown not in ("error", "skip"):
        raise ValueError(f"`on_unknown` must be 'error' or 'skip', got {on_unknown!r}")
    if not isinstance(model, CharLSTM):
        raise TypeError(f"`model` must be a CharLSTM, got {type(model).__name__}")
    if not isinstance(text, str):
        raise TypeError(f"`text` must be a string, got {type(text).__name__}")
    if len(text) < 2:
        raise ValueError(f"the text must have at least 2 characters (the first has no prediction), got {text!r}")
    for name, value in (
        ("top", top),
        ("report_chars", report_chars),
        ("figure_chars", figure_chars),
        ("segment_chars", segment_chars),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
    _check_baseline(baseline_text, ngram_order)
    check_replaceable(out_dir, "analysis", ANALYSIS_NAMES, overwrite=overwrite)
    vocab = model._require_vocab()
    if on_unknown == "skip":
        kept = "".join(c for c in text if c in vocab)
        if len(kept) != len(text):
            say(f"skipped {len(text) - len(kept):,} characters the model does not know")
        text = kept
        if len(text) < 2:
            raise ValueError("fewer than 2 characters of the text are in the model's vocabulary; nothing to analyse")
    ids = vocab.encode(text)  # fails here, before any work, on characters outside the vocabulary
    chosen = [get_feature(f) for f in features] if features is not None else list(FEATURES.values())
    values, skipped = _feature_values(chosen, text, explicit=features is not None)
    control_values = _control_values(values, text, controls)  # every control checked here, before the long pass
    arguments = {
        "features": None if features is None else [f if isinstance(f, str) else f.name for f in features],
        "ngram_order": ngram_order if baseline_text is not None else None,
        "top": top,
        "report_chars": report_chars,
        "figure_chars": figure_chars,
        "segment_chars": segment_chars,
        "title": title,
        "on_unknown": on_unknown,
        "controls": None if controls is None else {k: list(v) for k, v in controls.items()},
    }
    texts = {"text": text, **({"baseline_text": baseline_text} if baseline_text is not None else {})}
    cfg = model.config
    say(f"tracing {len(text):,} characters ({cfg.num_layers}x{cfg.hidden_size} {cfg.cell})")
    runner = pass_trainer(trainer, trainer_kwargs)
    parts = corpus_pass(model, text, functools.partial(AnalysisParts, cfg.cell, cfg.num_layers),
                        names_filter=AnalysisParts.trace_names(cfg.cell), shard_chars=shard_chars,
                        prime_chars=prime_chars, segment_chars=segment_chars, trainer=runner)  # fmt: skip
    if runner.global_rank != 0:
        return None
    arguments |= {"shard_chars": shard_chars, "prime_chars": prime_chars}
    with atomic_folder(out_dir) as staging:
        _write_analysis(
            model, text, ids, staging, chosen, values, control_values, skipped, baseline_text, ngram_order, top,
            report_chars, figure_chars, parts.states(), parts.stats, title, say,
        )  # fmt: skip
        write_manifest(staging, "analysis", model=model, texts=texts, arguments=arguments)
    say(f"wrote {out_dir}")
    return Path(out_dir)


def _write_analysis(
    model: CharLSTM,
    text: str,
    ids: torch.Tensor,
    out: Path,
    chosen: list[Feature],
    values: dict[str, tuple[np.ndarray, str]],
    control_values: dict[str, dict[str, np.ndarray]],
    skipped: dict[str, str],
    baseline_text: str | None,
    ngram_order: int,
    top: int,
    report_chars: int,
    figure_chars: int,
    states: Trace,
    stats: ActivationStats,
    title: str | None,
    say: Log,
) -> None:
    """Everything of :func:`run_analysis` but the checks and the pass, written into the (staging) folder ``out``."""
    vocab = model._require_vocab()
    figures = out / "figures"
    quantity = states.state_quantity

    tables = {
        name: find_cells(states, v, quantity, top, kind=kind, label=name, controls=control_values[name])
        for name, (v, kind) in values.items()
    }
    _write_json(out / "cells.json", _cells_json(tables, chosen, skipped, quantity, len(text), top))
    say(_best_units(tables, skipped))
    for name, table in tables.items():
        fig = _cell_text_figure(states, table, name, values[name][0], quantity, figure_chars)
        save_figure(fig, figures / f"cell_text_{_file_name(name)}.png")

    saturation = GateSaturation.from_stats(stats) if stats.has_gates else None
    if saturation is not None:
        table_rows = _saturation_rows(saturation)
        integrators = saturation.integrators()
        _write_json(
            out / "gate_saturation.json",
            {"table": table_rows, "integrators": integrators, "saturation": saturation.to_dict()},
        )
        save_figure(plot_gate_saturation(saturation), figures / "gate_saturation.png")
        say(_saturation_text(table_rows, integrators))
    else:
        say(f"gate saturation: a {model.config.cell!r} network has no gates")

    matches = {name: [row.to_dict() for row in table.rows] for name, table in tables.items()}
    shown = trace(model, ids[:report_chars])
    write_html_report(
        shown,
        out / "report.html",
        chars=vocab.chars,
        title=title or f"lstm_interp analysis of {len(text):,} characters",
        feature_matches=matches or None,
        open_on=best_feature_match(matches),  # the best match of all features by find_cells's rule
    )

    if baseline_text is not None:
        _compare(text, stats.log_probs(), baseline_text, ngram_order, vocab.chars, out, say)


# ---------------------------------------------------------------------------------------------- checks and features
def _check_baseline(baseline_text: str | None, ngram_order: int) -> None:
    if isinstance(ngram_order, bool) or not isinstance(ngram_order, int) or ngram_order < 1:
        raise ValueError(f"`ngram_order` must be an integer >= 1, got {ngram_order!r}")
    if baseline_text is None:
        return
    if not isinstance(baseline_text, str) or not baseline_text:
        raise ValueError("the baseline text is empty; the n-gram baseline needs a training text")
    if ngram_order > len(baseline_text):
        raise ValueError(
            f"n larger than the text: n-gram order {ngram_order} but the baseline text has {len(baseline_text)} "
            f"characters; use an order of at most {len(baseline_text)}"
        )


def _feature_values(
    chosen: list[Feature], text: str, *, explicit: bool
) -> tuple[dict[str, tuple[np.ndarray, str]], dict[str, str]]:
    """Each feature's values on the text and kind; features constant on it are skipped, or an error if chosen."""
    values: dict[str, tuple[np.ndarray, str]] = {}
    skipped: dict[str, str] = {}
    hint = "choose a text on which it varies, or leave it out of the features"
    for feature in chosen:
        try:
            values[feature.name] = (feature_values(feature, text, over="the text", hint=hint), feature.kind)
        except ConstantFeatureError as err:
            if explicit:
                raise
            skipped[feature.name] = str(err).removesuffix(f"; {hint}")
    return values, skipped


def _control_values(
    values: dict[str, tuple[np.ndarray, str]], text: str, controls: Mapping[str, Sequence[str]] | None
) -> dict[str, dict[str, np.ndarray]]:
    """Each scored feature's controls on the text, checked: name -> {control name -> bool values}."""
    controls = dict(controls or {})
    unknown = sorted(set(controls) - set(values))
    if unknown:
        raise ValueError(f"`controls` names features that are not analysed: {unknown}; analysed: {sorted(values)}")
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, (feature, _) in values.items():
        if name not in controls:  # the registered ones that can be scored on this text
            out[name] = usable_controls(get_feature(name), feature, text)[0]
            continue
        named = [controls[name]] if isinstance(controls[name], str) else controls[name]
        out[name] = {}
        for control_name in named:  # named explicitly: each must be usable, or the analysis is refused up front
            control = get_feature(control_name)  # unknown: fails listing the registered features
            if control.kind != "binary":
                raise ValueError(f"control {control.name!r} of {name!r} is {control.kind}; a control must be binary")
            if control.name == name:
                raise ValueError(f"control {control.name!r} is the feature itself; a control must be another feature")
            out[name][control.name] = compute_feature(control, text)
            check_control(feature, out[name][control.name], name, control.name)
    return out


# ---------------------------------------------------------------------------------------------- outputs
def _cells_json(
    tables: dict[str, CellTable], chosen: list[Feature], skipped: dict[str, str], quantity: str, chars: int, top: int
) -> dict[str, Any]:
    described = {feature.name: feature for feature in chosen}
    return {
        "format_version": 1,
        "quantity": quantity,
        "num_chars": chars,
        "top": top,
        "features": {
            name: {
                "kind": described[name].kind,
                "description": described[name].description,
                "rows": [row.to_dict() for row in table.rows],  # best first
            }
            for name, table in tables.items()
        },
        "skipped": skipped,
    }


def _best_units(tables: dict[str, CellTable], skipped: dict[str, str]) -> str:
    if not tables:
        return "no feature varies on this text: no units matched"
    width = max(len(name) for name in tables)
    lines = ["best unit per feature:"]
    for name, table in tables.items():
        r = table.rows[0]
        lines.append(f"  {name:<{width}}  {r.layer} unit {r.unit:<4}  {r.metric} {r.score:.3f}  sign {r.sign:+d}")
    if skipped:
        lines.append(f"  constant on this text, not scored: {', '.join(skipped)}")
    return "\n".join(lines)


def _cell_text_figure(
    states: Trace, table: CellTable, feature: str, values: np.ndarray, quantity: str, length: int
) -> Figure:
    """The best unit over the ``length`` characters where the feature changes most, the feature as a track."""
    best = table.rows[0]
    window = busiest_window(values, length)
    start, stop = window.start, window.stop
    fig = plot_cell_text(
        states.time_slice(start, stop),
        [(best.layer, best.unit)],
        quantity=quantity,
        feature=values[window],
        feature_name=feature,
    )
    ax = fig.axes[0]
    # The rule ranks a unit that switches first, so a flat one here means none of the feature's units switches.
    flat = "" if best.visible else " - flat: no unit visibly switches with it"
    ax.set_title(
        f"{feature}: {best.layer} unit {best.unit} ({quantity}), {best.metric} {best.score:.3f}, "
        f"effect {best.effect:+.2f}{flat}, characters {start}-{stop - 1}  ▁ = {feature}",
        loc="left",
        fontsize=ax.title.get_fontsize(),
    )
    return fig


def _saturation_rows(saturation: GateSaturation) -> list[dict[str, Any]]:
    summary = saturation.summary()
    return [
        {
            "layer": layer,
            "gate": gate,
            "left_saturated": _json_float(summary[f"{layer}/{gate}/left_saturated"]),
            "right_saturated": _json_float(summary[f"{layer}/{gate}/right_saturated"]),
        }
        for layer, gate in saturation.left
    ]


def _saturation_text(rows: list[dict[str, Any]], integrators: dict[str, float]) -> str:
    lines = [
        f"gate saturation (fraction of steps < {SATURATION_LOW} / > {SATURATION_HIGH}, mean over units):",
        f"  {'layer':<10}{'gate':<14}{'left':>8}{'right':>8}",
    ]
    fmt = lambda v: "nan" if v is None else f"{v:.3f}"  # noqa: E731
    for row in rows:
        lines.append(
            f"  {row['layer']:<10}{row['gate']:<14}{fmt(row['left_saturated']):>8}{fmt(row['right_saturated']):>8}"
        )
    shares = ", ".join(f"{layer} {share:.1%}" for layer, share in integrators.items())
    lines.append(f"  integrators (memory gate > {SATURATION_HIGH} on more than 90% of steps): {shares}")
    return "\n".join(lines)


def _compare(text: str, lstm: np.ndarray, baseline_text: str, order: int, chars: str, out: Path, say: Log) -> None:
    """The paper's Sections 4.3-4.4 against an n-gram fitted on ``baseline_text``: JSON and figures."""
    figures = out / "figures"
    say(f"fitting n-gram baselines on {len(baseline_text):,} characters")
    baseline = NGramBaseline.fit(baseline_text, order, chars=chars)
    ngram = baseline.char_log_probs(text)
    losses = class_loss(text, lstm, ngram, ngram_order=order)
    save_figure(plot_class_loss(losses), figures / "class_loss.png")
    try:
        braces = brace_study(text, lstm, ngram, ngram_order=order)
        save_figure(plot_brace_study(braces), figures / "brace_study.png")
        braces_skipped = None
    except NoMatchedBracesError as err:
        braces, braces_skipped = None, str(err)
    orders = sorted({k for k in ORACLE_ORDERS if k <= len(baseline_text)} | {order})
    oracles = {
        k: ngram if k == order else NGramBaseline.fit(baseline_text, k, chars=chars).char_log_probs(text)
        for k in orders
    }
    errors = error_breakdown(text, lstm, ngrams=oracles, train_text=baseline_text)
    if errors.num_errors:
        save_figure(plot_error_breakdown(errors), figures / "error_breakdown.png")
    _write_json(
        out / "comparison.json",
        {
            "format_version": 1,
            "ngram_order": order,
            "baseline_chars": len(baseline_text),
            "num_chars": len(text) - 1,
            "lstm_loss": float(-lstm.mean()),
            "ngram_loss": float(-ngram.mean()),
            "class_loss": losses.to_dict(),
            "brace_study": braces.to_dict() if braces is not None else None,
            "brace_study_skipped": braces_skipped,
            "error_breakdown": errors.to_dict(),
        },
    )
    say(f"loss per character: LSTM {-lstm.mean():.4f} nats, {order}-gram {-ngram.mean():.4f} nats")
    say(losses.to_markdown())
    say(
        braces_skipped
        or f"closing braces: {len(braces)} matched; mean P('}}') LSTM "
        f"{braces.lstm_probabilities.mean():.3f}, {order}-gram {braces.ngram_probabilities.mean():.3f}"
    )
    say("errors (P < 0.5): " + ", ".join(f"{c.name} {c.count}" for c in errors.categories))


def _write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def _json_float(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "feature"
