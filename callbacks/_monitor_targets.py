"""What :class:`~lstm_interp.callbacks.LSTMActivationMonitor` watches: its settings, modules, probes and features.

The monitor (``lstm_activation_monitor.py``) checks its arguments and decides *when* to record; everything it
records with is frozen into one :class:`RecordingSettings` at fit start and handed down, so no module below it
imports the monitor (the import graph is a line: monitor -> ``_monitor_recording`` -> here -> ``_probe_capture``
-> ``_module_calls`` -> the library).

- :class:`RecordingSettings`: the monitor's checked arguments and resolved name, as one immutable value;
- :class:`Targets`: the recurrent modules and encoded probes of one fit (:func:`probe_chars` and
  :func:`clean_probe_text` turn probe texts into ids), and the features' values on them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from lstm_interp.analysis.control_scores import usable_controls
from lstm_interp.features import Feature
from lstm_interp.features.feature_values import feature_values
from lstm_interp.models.char_lstm import CharLSTM
from lstm_interp.tracing.layers import cell_type
from lstm_interp.tracing.quantities import quantities_of
from lstm_interp.tracing.trace import Trace, trace
from lstm_interp.vocab import CharVocab, VocabularyError

from ._module_calls import call_notes, run_and_capture
from ._probe_capture import Probe, eval_mode, select_modules, step_notes, trace_modules


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
    tokens: tuple[tuple[str, ...], ...] | None
    decode: Callable[[Tensor], Sequence[str]] | None
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
            # The monitor takes on_unknown="error" or "skip" only: name what exists here.
            err = err.with_hint("Pass on_unknown='skip' to the LSTMActivationMonitor to drop them from the probe.")
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
        controls: feature name -> {control name -> values}: the feature's registered controls that vary on the
            probes, which its matches are also scored against (``find_cells(controls=...)``).
    """

    network: CharLSTM | None
    modules: dict[str, nn.Module]
    probes: list[Probe]
    chars: str | None
    quantities: set[str]
    labels: list[str] = field(default_factory=list)
    features: dict[str, tuple[np.ndarray, str]] = field(default_factory=dict)
    controls: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

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
            targets.controls = _control_values(settings.features, targets.probes, targets.features)
            return targets

        modules = select_modules(pl_module, settings.modules)
        cells = {path: cell_type(rnn) for path, rnn in modules.items()}
        probes = _foreign_probes(settings, pl_module, chars)
        labels = [""] if len(modules) == 1 else list(modules)
        targets = cls(None, modules, probes, chars, _quantities(settings.quantities, cells), labels)
        targets.features = _feature_values(settings.features, targets.probes)
        targets.controls = _control_values(settings.features, targets.probes, targets.features)
        # Forward passes now, on every rank, so an input the trace cannot follow or an unused module fails at fit
        # start, not hundreds of steps later on rank zero alone.
        with torch.no_grad(), eval_mode(pl_module):
            # Every probe, so that one the module's forward rejects fails here with the module's own error, before
            # anything is written, and labels are checked against the steps each probe really runs.
            notes: dict[str, None] = {}  # said once each, in order
            for i, probe in enumerate(targets.probes):
                captured, _ = run_and_capture(pl_module, modules, probe.inputs.to(pl_module.device))  # type: ignore[union-attr]
                _check_labels(i, probe, {path: cap.steps for path, cap in captured.items()})
                found = [call_notes(path, modules[path], cap) for path, cap in captured.items()]
                notes.update(dict.fromkeys([n for n in found if n] + step_notes(i, probe, captured)))
        for note in notes:
            rank_zero_warn(note)
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


def _control_values(
    features: Sequence[Feature], probes: list[Probe], values: dict[str, tuple[np.ndarray, str]]
) -> dict[str, dict[str, np.ndarray]]:
    """Each feature's registered controls that can be scored on the probes (``usable_controls``), joined like the
    features; the matches are scored without the others."""
    texts = [probe.text or "" for probe in probes]
    return {feature.name: usable_controls(feature, values[feature.name][0], texts)[0] for feature in features}


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
            probe = Probe(texts[i] if texts else None, tokens, t[None] if t.dim() == 1 else t)
            probes.append(_labelled(settings, i, probe))
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
        probes.append(_labelled(settings, i, Probe(text, tokens, tokens[None])))
    return probes


def _check_labels(index: int, probe: Probe, steps: dict[str, int]) -> None:
    """Step labels must fit a monitored module's time steps (modules of other lengths are left unlabelled)."""
    if probe.labels is None or len(probe.labels) in steps.values():
        return
    lengths = ", ".join(f"{path!r} {n}" for path, n in steps.items())
    raise ValueError(
        f"probe {index} has {len(probe.labels)} step labels (`tokens` or `decode`) but the monitored modules run "
        f"{lengths} time steps on it; give one string per time step"
    )


def _labelled(settings: RecordingSettings, index: int, probe: Probe) -> Probe:
    """The probe with its step labels: the ``tokens`` given for it, or ``decode`` of its ids."""
    if settings.tokens is not None:
        return dataclasses.replace(probe, labels=list(settings.tokens[index]))
    if settings.decode is None:
        return probe
    if probe.tokens is None:
        raise ValueError(
            f"`decode` turns ids into strings, but probe {index} has no ids (a float tensor, or several rows); "
            "give `tokens=` instead"
        )
    labels = settings.decode(probe.tokens)
    if isinstance(labels, str) or not all(isinstance(label, str) for label in labels):
        raise ValueError(f"`decode` must return one string per id, got {shorten(labels)!r} for probe {index}")
    labels = list(labels)
    if len(labels) != len(probe.tokens):
        raise ValueError(f"`decode` gave {len(labels)} strings for the {len(probe.tokens)} ids of probe {index}")
    return dataclasses.replace(probe, labels=labels)
