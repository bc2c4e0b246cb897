"""What :class:`~lstm_interp.callbacks.LSTMActivationMonitor` watches, and how it records.

The monitor (``lstm_activation_monitor.py``) checks its arguments and decides *when* to record; everything it
records with is frozen into one :class:`RecordingSettings` at fit start and handed down, so this module never
imports the monitor (the import graph is a line: monitor -> here -> ``_probe_capture``/``_recording_writer`` ->
the library).

- :class:`RecordingSettings`: the monitor's checked arguments and resolved name, as one immutable value;
- :class:`Targets`: the recurrent modules and encoded probes of one fit (:func:`probe_chars` and
  :func:`clean_probe_text` turn probe texts into ids), and the features' values on them;
- :class:`Recorder`: makes one recording: it traces the probes, computes the statistics and writes tensors,
  scalars, figures and report; the monitor then rewrites the index (:meth:`Recorder.write_index`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from matplotlib import pyplot as plt
from torch import Tensor, nn

from lstm_interp.analysis.find_cells import find_cells
from lstm_interp.analysis.gate_saturation import gate_saturation
from lstm_interp.features import Feature
from lstm_interp.features.feature_values import feature_values
from lstm_interp.models.char_lstm import CharLSTM
from lstm_interp.report.html_report import write_html_report
from lstm_interp.tracing.layers import cell_type
from lstm_interp.tracing.quantities import GATES, quantities_of
from lstm_interp.tracing.trace import Trace, trace
from lstm_interp.vocab import CharVocab, VocabularyError

from ._probe_capture import Probe, eval_mode, run_and_capture, select_modules, trace_modules
from ._recording_writer import (
    FigureLogger,
    Group,
    draw_figures,
    figure_to_rgb,
    read_index_entries,
    save_activations,
    write_index,
    write_png,
)


@dataclass(frozen=True, eq=False)  # eq=False: the probe tensors have no single truth value to compare by
class RecordingSettings:
    """Everything a recording needs from :class:`~lstm_interp.callbacks.LSTMActivationMonitor`, frozen.

    The monitor builds one from its (already checked) arguments whenever it resolves targets or starts a recorder,
    so a change to a monitor attribute between fits takes effect at the next fit. The fields mean what the
    monitor's arguments of the same names mean; ``name`` is the resolved one (never ``None``).
    """

    name: str
    probe_texts: tuple[str, ...] | None
    probe_tensors: tuple[Tensor, ...] | None
    modules: tuple[str, ...] | None
    encode: Callable[[str], Tensor] | None
    chars: str | None
    on_unknown: Literal["error", "skip"]
    quantities: tuple[str, ...] | None
    features: tuple[Feature, ...]
    feature_top: int
    saturation_thresholds: tuple[float, float]
    cells_to_plot: int
    top_k: int
    dtype: torch.dtype
    log_figures: bool
    html: bool


def probe_chars(chars: str | None, pl_module: pl.LightningModule) -> str | None:
    """The vocabulary the probes are read with: ``chars`` when given, else a CharLSTMModule network's own."""
    network = getattr(pl_module, "network", None)
    if chars is None and isinstance(network, CharLSTM) and network.vocab is not None:
        return network.vocab.chars
    return chars


def clean_probe_text(index: int, text: str, vocab: CharVocab, on_unknown: Literal["error", "skip"]) -> str:
    """``probe_texts[index]`` with unknown characters dropped (``on_unknown="skip"``, with a warning).

    Raises:
        VocabularyError: with ``on_unknown="error"``, naming the probe and its unknown characters.
        ValueError: no character of the text is in the vocabulary.
    """
    unknown = vocab.unknown_chars(text)
    if not unknown:
        return text
    if on_unknown == "error":
        try:
            vocab.encode(text)
        except VocabularyError as err:
            raise VocabularyError(f"`probe_texts[{index}]` ({shorten(text)!r}): {err}") from None
    rank_zero_warn(f"LSTMActivationMonitor: `probe_texts[{index}]` loses {sorted(unknown)}: not in the vocabulary")
    kept = "".join(c for c in text if c not in unknown)
    if not kept:
        raise ValueError(f"`probe_texts[{index}]` ({shorten(text)!r}) has no character of the vocabulary")
    return kept


def shorten(value: Any, limit: int = 60) -> str:
    """``value`` (its repr unless a string) cut to ``limit`` characters, for quoting in a message."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class Targets:
    """The resolved recurrent modules and encoded probes of one fit.

    Args:
        network: the CharLSTM traced directly, or ``None`` when ``modules`` are hooked.
        modules: module path -> recurrent module (empty for a CharLSTM).
        probes: the probes, encoded.
        chars: the vocabulary, if known (top-k figure and report).
        quantities: the per-layer quantities saved.
        labels: one per group of traces: ``""`` for a single one, else the module path.
        features: feature name -> (values over all probes end to end, kind), for the feature matches.
    """

    network: CharLSTM | None
    modules: dict[str, nn.RNNBase]
    probes: list[Probe]
    chars: str | None
    quantities: set[str]
    labels: list[str] = field(default_factory=list)
    features: dict[str, tuple[np.ndarray, str]] = field(default_factory=dict)

    @classmethod
    def resolve(cls, settings: RecordingSettings, pl_module: pl.LightningModule) -> Targets:
        """Find the modules, encode the probes and check both (see the monitor's ``Raises``)."""
        network = getattr(pl_module, "network", None)
        chars = probe_chars(settings.chars, pl_module)
        direct = isinstance(network, CharLSTM) and settings.modules is None and settings.probe_tensors is None
        if direct and settings.encode is None and network.vocab is not None:
            assert settings.probe_texts is not None
            vocab = network.vocab
            texts = [clean_probe_text(i, t, vocab, settings.on_unknown) for i, t in enumerate(settings.probe_texts)]
            probes = [Probe(text, vocab.encode(text), None) for text in texts]
            cells = {"network": network.config.cell}
            targets = cls(network, {}, probes, chars, _quantities(settings.quantities, cells), [""])
            targets.features = _feature_values(settings.features, targets.probes)
            return targets

        modules = select_modules(pl_module, settings.modules)
        cells = {path: cell_type(rnn) for path, rnn in modules.items()}
        probes = _foreign_probes(settings, pl_module, chars)
        labels = [""] if len(modules) == 1 else list(modules)
        targets = cls(None, modules, probes, chars, _quantities(settings.quantities, cells), labels)
        targets.features = _feature_values(settings.features, targets.probes)
        # One forward pass now, on every rank, so a PackedSequence input or an unused module fails at fit start,
        # not hundreds of steps later on rank zero alone.
        with torch.no_grad(), eval_mode(pl_module):
            run_and_capture(pl_module, modules, targets.probes[0].inputs.to(pl_module.device))  # type: ignore[union-attr]
        return targets

    def trace(self, pl_module: pl.LightningModule) -> list[list[Trace]]:
        """Traces of every probe (outer list) and group (inner list), computed in eval mode without gradients."""
        with torch.no_grad(), eval_mode(pl_module):
            if self.network is not None:
                network = self.network
                return [[trace(network, p.text, names_filter=_not_embedding)] for p in self.probes]  # type: ignore[arg-type]
            device = pl_module.device
            return [
                trace_modules(pl_module, self.modules, dataclasses.replace(p, inputs=p.inputs.to(device)), self.chars)  # type: ignore[union-attr]
                for p in self.probes
            ]


def _feature_values(features: Sequence[Feature], probes: list[Probe]) -> dict[str, tuple[np.ndarray, str]]:
    """Each feature on the probe texts, computed per probe (a quote opened in one probe does not run into the next)
    and joined end to end like the traces the statistics use; refused when constant (see ``feature_values``)."""
    values: dict[str, tuple[np.ndarray, str]] = {}
    for feature in features:
        texts: list[str] = []
        for i, probe in enumerate(probes):
            if probe.text is None or probe.tokens is None or len(probe.text) != len(probe.tokens):
                raise ValueError(
                    f"feature {feature.name!r} needs one probe character per time step, but `probe_texts[{i}]` "
                    "does not match its encoded input one to one"
                )
            texts.append(probe.text)
        hint = "choose probe texts on which it varies, or drop it from `features`"
        values[feature.name] = (feature_values(feature, texts, over="the probe texts", hint=hint), feature.kind)
    return values


def _feature_matches(targets: Targets, combined: Trace, top: int) -> dict[str, list[dict[str, Any]]]:
    """The ``top`` units of ``combined`` tracking each feature, as ``CellScore.to_dict`` rows (index and report)."""
    matches: dict[str, list[dict[str, Any]]] = {}
    for name, (values, kind) in targets.features.items():
        # The values are passed precomputed (joined over the probes), so the feature's name goes as the label.
        table = find_cells(combined, values, combined.state_quantity, top, kind=kind, label=name)  # type: ignore[arg-type]
        matches[name] = [row.to_dict() for row in table.rows]
    return matches


def _not_embedding(name: str) -> bool:
    return name != "embedding"


def _quantities(wanted: Sequence[str] | None, cells: dict[str, str]) -> set[str]:
    if wanted is None:
        return {q for cell in cells.values() for q in quantities_of(cell)}
    for path, cell in cells.items():
        missing = [q for q in wanted if q not in quantities_of(cell)]
        if missing:
            raise ValueError(
                f"`quantities` {missing!r} are not quantities of {path!r} ({cell.upper()}); "
                f"it has {list(quantities_of(cell))}"
            )
    return set(wanted)


def _foreign_probes(settings: RecordingSettings, pl_module: pl.LightningModule, chars: str | None) -> list[Probe]:
    texts = settings.probe_texts
    if settings.probe_tensors is not None:
        probes = []
        for i, t in enumerate(settings.probe_tensors):
            one_row = t.dim() == 1 or t.shape[0] == 1
            tokens = t.reshape(-1).long() if one_row and not t.is_floating_point() else None
            probes.append(Probe(texts[i] if texts else None, tokens, t[None] if t.dim() == 1 else t))
        return probes
    assert texts is not None
    if settings.encode is None and chars is None:
        raise ValueError(
            f"{type(pl_module).__name__} is not a CharLSTMModule, so the monitor cannot turn `probe_texts` into "
            "its input: give `encode=` (str -> ids), `chars=` (the vocabulary in id order) or `probe_tensors=`"
        )
    probes = []
    for i, text in enumerate(texts):
        if settings.encode is not None:
            ids = settings.encode(text)
            if not isinstance(ids, Tensor) or ids.is_floating_point() or ids.numel() == 0:
                raise ValueError(f"`encode({text!r})` must give a non-empty tensor of integer ids, got {ids!r}")
            tokens = ids.detach().reshape(-1).long().cpu()
        else:
            vocab = CharVocab(chars)  # type: ignore[arg-type]
            text = clean_probe_text(i, text, vocab, settings.on_unknown)
            tokens = vocab.encode(text)
        probes.append(Probe(text, tokens, tokens[None]))
    return probes


class Recorder:
    """Makes recordings into one folder: traces, statistics, files, scalars and figures.

    Args:
        settings: the monitor's settings (its name among them).
        folder: where everything goes.
    """

    def __init__(self, settings: RecordingSettings, folder: Path) -> None:
        self.settings = settings
        self.folder = folder
        self.figure_logger = FigureLogger()

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
        return sorted(merged, key=lambda entry: entry["step"])

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
            groups.append(Group(label, per_probe[0], combined, saturation))
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
        scalars = summary | {f"features/{name}/best_score": rows[0]["score"] for name, rows in features.items() if rows}
        if scalars:
            metrics = {f"{settings.name}/{key}": value for key, value in scalars.items()}
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=step)
        if settings.log_figures:
            history_now = [(e["step"], e["summary"]) for e in sorted(history, key=lambda e: e["step"])]
            best = [(rows[0]["layer"], rows[0]["unit"]) for rows in features.values() if rows]
            files["figures"] = self._figures(
                trainer, groups, [*history_now, (step, summary)], targets.chars, step, best
            )
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
        feature_units: list[tuple[str, int]],
    ) -> dict[str, str]:
        settings = self.settings
        written: dict[str, str] = {}
        for kind, draw in draw_figures(
            groups,
            history,
            chars=chars,
            cells_to_plot=settings.cells_to_plot,
            top_k=settings.top_k,
            feature_units=feature_units,
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
