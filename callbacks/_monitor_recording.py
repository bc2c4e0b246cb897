"""How :class:`~lstm_interp.callbacks.LSTMActivationMonitor` records: :class:`Recorder` makes one recording.

It traces the probes of the :class:`~lstm_interp.callbacks._monitor_targets.Targets`, computes the statistics
(gate saturation through :class:`~lstm_interp.analysis.ActivationStats`, feature matches with
:func:`~lstm_interp.find_cells`) and writes tensors, scalars, figures and the report; the monitor then rewrites the
index (:meth:`Recorder.write_index`). It never imports the monitor: the settings arrive as a
:class:`~lstm_interp.callbacks._monitor_targets.RecordingSettings`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from matplotlib import pyplot as plt

from lstm_interp.analysis.find_cells import find_cells
from lstm_interp.analysis.gate_saturation import gate_saturation
from lstm_interp.manifest import MANIFEST_NAME, file_sha256, model_provenance, text_provenance, write_manifest
from lstm_interp.report.html_report import best_feature_match, ranked_feature_matches, write_html_report
from lstm_interp.tracing.quantities import GATES
from lstm_interp.tracing.trace import Trace

from ._monitor_targets import RecordingSettings, Targets
from ._recording_writer import (
    INDEX_NAME,
    FigureLogger,
    Group,
    draw_figures,
    figure_to_rgb,
    read_index_entries,
    save_activations,
    write_index,
    write_png,
)


def _feature_matches(targets: Targets, combined: Trace, top: int) -> dict[str, list[dict[str, Any]]]:
    """The ``top`` units of ``combined`` tracking each feature, as ``CellScore.to_dict`` rows (index and report)."""
    matches: dict[str, list[dict[str, Any]]] = {}
    for name, (values, kind) in targets.features.items():
        # The values are passed precomputed (joined over the probes), so the feature's name goes as the label.
        controls = targets.controls.get(name, {})
        table = find_cells(combined, values, combined.state_quantity, top, kind=kind, label=name, controls=controls)  # type: ignore[arg-type]
        matches[name] = [row.to_dict() for row in table.rows]
    return matches


def _series_inputs(targets: Targets, index: int = 0) -> np.ndarray | None:
    """(T, C) a probe's values when it is a float tensor of one sequence (a time series), else ``None``."""
    inputs = targets.probes[index].inputs
    if inputs is None or not inputs.is_floating_point():
        return None
    x = inputs[0] if inputs.dim() == 3 else inputs  # (1, T, C) -> (T, C); a (T, C) tensor as it is
    return x.detach().float().cpu().numpy() if x.dim() == 2 else None


def _feature_track(
    features: dict[str, list[dict[str, Any]]], targets: Targets, steps: int
) -> tuple[str, np.ndarray] | None:
    """The best feature (:func:`~lstm_interp.report.best_feature_match`: one whose unit visibly switches first) and
    its values on the plotted probe (the first), for the cell-text figure's track."""
    best = best_feature_match(features)
    if best is None:
        return None
    name = best["feature"]
    values = targets.features[name][0][:steps]  # joined over the probes: the first probe comes first
    return (name, values) if len(values) == steps else None


# The files a recording writes (step_<N>.safetensors, step_<N>_<kind>.png, step_<N>.html) and the hidden temporaries
# of atomic writes (.<name>.<random>.tmp): the only names the cleanup of a killed run's leftovers ever removes.
RECORDING_FILE = re.compile(r"step_\d+(_[a-z_]+)?\.(safetensors|png|html)")
TEMPORARY_FILE = re.compile(r"\..+\.tmp")


def _model_description(targets: Targets) -> dict[str, Any]:
    """What the manifest says of the model recorded: the network's class and config hash, or each hooked module.
    (No weights hash: they change between recordings; the activations files are what each recording saw.)"""
    if targets.network is not None:
        info = model_provenance(targets.network)
        return {"class": info["class"], "config_sha256": info.get("config_sha256"), "source": info["source"]}
    return {"modules": {path: str(rnn) for path, rnn in targets.modules.items()}}


class Recorder:
    """Makes recordings into one folder: traces, statistics, files, scalars and figures.

    The folder grows by one recording at a time, so it is not rebuilt whole like an analysis: each file is written
    atomically, then ``index.json``, then ``manifest.json`` (every file with its sha256). A run killed mid-recording
    leaves files the index does not list; :meth:`merge_on_disk`, at the first recording of the next fit, removes
    them, with any temporaries, so the folder holds only what the index lists.

    Args:
        settings: the monitor's settings (its name among them).
        folder: where everything goes.
    """

    def __init__(self, settings: RecordingSettings, folder: Path) -> None:
        self.settings = settings
        self.folder = folder
        self.figure_logger = FigureLogger()
        self._hashes: dict[str, tuple[int, int, str]] = {}  # name -> (size, mtime_ns, sha256): hash new files only

    def merge_on_disk(self, entries: list[dict[str, Any]], start_step: int) -> list[dict[str, Any]]:
        """``entries`` plus recordings that an index here or in a restored recording's folder lists at steps up to
        ``start_step`` and that the checkpoint missed (made after it was saved, e.g. the one at the end of fit).

        Later ones are dropped: the run that made them is being redone from ``start_step``.
        """
        known = {entry["step"] for entry in entries}
        merged = list(entries)
        for where in dict.fromkeys([self.folder, *(Path(entry["dir"]) for entry in entries)]):
            for entry in read_index_entries(where):
                if entry["step"] <= start_step and entry["step"] not in known:
                    known.add(entry["step"])
                    merged.append(entry)
        merged.sort(key=lambda entry: entry["step"])
        self._remove_leftovers(merged)
        return merged

    def _remove_leftovers(self, kept: list[dict[str, Any]]) -> None:
        """Remove recording files here that no kept entry lists (a killed recording's, or a redone run's), and
        temporaries of interrupted atomic writes."""
        if not self.folder.is_dir():
            return
        listed = {
            name
            for entry in kept
            if Path(entry["dir"]) == self.folder
            for files in entry["files"].values()
            for name in (files.values() if isinstance(files, dict) else [files])
        }
        for path in self.folder.iterdir():
            name = path.name
            if path.is_file() and (
                TEMPORARY_FILE.fullmatch(name) or (RECORDING_FILE.fullmatch(name) and name not in listed)
            ):
                path.unlink(missing_ok=True)

    def record(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, targets: Targets, history: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """Trace the probes now and write everything but the index; returns the new index entry.

        Args:
            trainer: the trainer (step, epoch, loggers).
            pl_module: the module being trained.
            targets: what to trace.
            history: the recordings so far (for the saturation-history figure).
        """
        settings, step = self.settings, trainer.global_step
        low, high = settings.saturation_thresholds
        traced = targets.trace(pl_module)  # [probe][group]
        groups: list[Group] = []
        for g, label in enumerate(targets.labels):
            per_probe = [traces[g] for traces in traced]
            combined = Trace.concat(per_probe)
            # A plain RNN has no gates to saturate.
            saturation = gate_saturation(combined, low, high) if GATES[combined.cell] else None
            groups.append(Group(label, per_probe[0], combined, saturation, _series_inputs(targets)))
        summary = {k: v for group in groups if group.saturation for k, v in group.saturation.summary().items()}
        # The report shows the last group (the module nearest the output), so the matches are searched there.
        features = self._features(groups[-1].combined, targets, step)
        nonfinite = sum(int((~torch.isfinite(t)).sum()) for traces in traced for tr in traces for t in tr.values())
        if nonfinite:
            rank_zero_warn(
                f"LSTMActivationMonitor: {nonfinite} activation values at step {step} are NaN or infinite; the "
                "statistics leave them out and the figures draw them grey"
            )

        files: dict[str, Any] = {"activations": f"step_{step}.safetensors"}
        save_activations(
            self.folder / files["activations"],
            traced,
            quantities=targets.quantities,
            dtype=settings.dtype,
            metadata={"step": step, "epoch": trainer.current_epoch, "probe_texts": [p.text for p in targets.probes]},
        )
        # The first row is find_cells's best by its rule (visible units first), not necessarily the highest score.
        scalars = summary | {f"features/{name}/best_score": rows[0]["score"] for name, rows in features.items() if rows}
        if scalars:
            metrics = {f"{settings.name}/{key}": value for key, value in scalars.items()}
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=step)
        if settings.log_figures:
            history_now = [(e["step"], e["summary"]) for e in sorted(history, key=lambda e: e["step"])]
            best = ranked_feature_matches(features)  # each feature's first row, the best feature first
            files["figures"] = self._figures(
                trainer, groups, [*history_now, (step, summary)], targets.chars, step, best,
                _feature_track(features, targets, groups[-1].plotted.num_steps),
            )  # fmt: skip
        if settings.html:
            files["html"] = self._html(traced, targets, step, features or None)
        if files.get("html") is None:
            files.pop("html", None)
        return {
            "step": step,
            "epoch": trainer.current_epoch,
            "dir": str(self.folder),
            "files": files,
            "summary": summary,
            "nonfinite": nonfinite,
            **({"features": features} if features else {}),
        }

    def _features(self, combined: Trace, targets: Targets, step: int) -> dict[str, list[dict[str, Any]]]:
        if not targets.features:
            return {}
        try:
            return _feature_matches(targets, combined, self.settings.feature_top)
        except Exception as err:  # e.g. non-finite activations: a diverged run must still be recorded
            rank_zero_warn(f"LSTMActivationMonitor: could not match units to features at step {step}: {err}")
            return {}

    def _figures(
        self,
        trainer: pl.Trainer,
        groups: list[Group],
        history: list[tuple[int, dict[str, float]]],
        chars: str | None,
        step: int,
        feature_rows: Sequence[Mapping[str, Any]],
        feature_track: tuple[str, np.ndarray] | None,
    ) -> dict[str, str]:
        settings = self.settings
        written: dict[str, str] = {}
        for kind, draw in draw_figures(
            groups,
            history,
            chars=chars,
            cells_to_plot=settings.cells_to_plot,
            top_k=settings.top_k,
            feature_rows=feature_rows,
            feature_track=feature_track,
        ):
            try:
                fig = draw()
                try:
                    rgb = figure_to_rgb(fig)
                finally:
                    plt.close(fig)  # only the pixels are needed from here on
            except Exception as err:  # a figure must never stop a training run of hours
                rank_zero_warn(f"LSTMActivationMonitor: could not draw the {kind} figure at step {step}: {err}")
                continue
            name = f"step_{step}_{kind}.png"
            write_png(self.folder / name, rgb)
            self.figure_logger.log(trainer.loggers, f"{settings.name}/{kind}", rgb, step, self.folder)
            written[kind] = name
        return written

    def _html(
        self,
        traced: list[list[Trace]],
        targets: Targets,
        step: int,
        feature_matches: dict[str, list[dict[str, Any]]] | None = None,
    ) -> str | None:
        name = f"step_{step}.html"
        try:
            # The last group is the module nearest the output: the one that has the log-probabilities, if any.
            write_html_report(
                [traces[-1] for traces in traced],
                self.folder / name,
                chars=targets.chars,
                title=f"{self.settings.name} at step {step}",
                top_k=self.settings.top_k,
                step=step,
                quantities=self.settings.quantities,
                feature_matches=feature_matches,
                open_on=best_feature_match(feature_matches),
                inputs=[
                    x if x is not None and len(x) == traces[-1].num_steps else None
                    for x, traces in zip(
                        (_series_inputs(targets, i) for i in range(len(targets.probes))), traced, strict=True
                    )
                ],
            )
        except Exception as err:  # as for figures: a report must never stop a training run
            rank_zero_warn(f"LSTMActivationMonitor: could not write the HTML report at step {step}: {err}")
            return None
        return name

    def write_index(self, entries: list[dict[str, Any]], targets: Targets) -> None:
        """Rewrite ``index.json`` with ``entries``, after the files they list exist."""
        settings = self.settings
        header = {
            "name": settings.name,
            "probe_texts": [p.text for p in targets.probes],
            "modules": list(targets.modules) or ["network"],
            "quantities": sorted(targets.quantities),
            "dtype": str(settings.dtype).removeprefix("torch."),
            "saturation_thresholds": list(settings.saturation_thresholds),
        }
        write_index(self.folder, header, entries)
        self._write_manifest(header, targets)

    def _write_manifest(self, header: dict[str, Any], targets: Targets) -> None:
        """``manifest.json`` of the folder: what recorded it, and every file with its sha256."""
        hashes = {}
        for path in sorted(self.folder.iterdir()):
            if not path.is_file() or path.name == MANIFEST_NAME or TEMPORARY_FILE.fullmatch(path.name):
                continue
            stat = path.stat()
            cached = self._hashes.get(path.name)
            if cached is None or cached[:2] != (stat.st_size, stat.st_mtime_ns) or path.name == INDEX_NAME:
                cached = (stat.st_size, stat.st_mtime_ns, file_sha256(path))
                self._hashes[path.name] = cached
            hashes[path.name] = cached[2]
        probe_texts = header["probe_texts"]
        write_manifest(
            self.folder,
            "monitor",
            model=_model_description(targets),
            texts={f"probe{i}": text_provenance(t) for i, t in enumerate(probe_texts) if isinstance(t, str)},
            arguments={k: v for k, v in header.items() if k != "probe_texts"},
            files=hashes,
        )
