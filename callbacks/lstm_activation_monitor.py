"""``LSTMActivationMonitor``: record what the LSTM cells do on fixed probe text while a model trains.

This module is the callback itself: it checks its arguments, decides when to record, names itself and keeps the
state a resumed fit needs. What a recording does lives below it, and never calls back up:
:mod:`._monitor_targets` (the frozen :class:`RecordingSettings` this class hands down, the traced targets),
:mod:`._monitor_recording` (the :class:`Recorder`), which use :mod:`._probe_capture` (hooks on foreign recurrent
modules) and :mod:`._recording_writer` (files, figures, loggers).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from torch import Tensor

from lstm_interp.features import Feature, get_feature
from lstm_interp.tracing.quantities import QUANTITY_ORDER

from ._monitor_recording import Recorder
from ._monitor_targets import RecordingSettings, Targets, shorten

_ALL_QUANTITIES = QUANTITY_ORDER  # every per-layer quantity of any cell; checked per module at fit start
_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
DEFAULT_NAME = "lstm_interp"


class LSTMActivationMonitor(Callback):
    r"""Record the gates, cells and hidden states of a model's LSTMs on fixed probe texts while it trains.

    Each recording traces every probe exactly (:func:`~lstm_interp.trace` for a
    :class:`~lstm_interp.CharLSTMModule`; for any other LightningModule, one forward pass of the probe with hooks
    capturing every call of each chosen ``nn.LSTM``/``nn.GRU``/``nn.RNN`` (then :func:`~lstm_interp.trace_rnn`) and
    ``nn.LSTMCell``/``nn.GRUCell``/``nn.RNNCell`` stepped in the model's own loop (then
    :func:`~lstm_interp.trace_cell`, one row per call, each from the state that call received)), and writes to
    ``<log_dir>/lstm_interp/``:

    - ``step_<N>.safetensors``: the chosen quantities, keys ``probe<i>/<layer>.<quantity>`` (e.g.
      ``probe0/layers.0.cell``), plus ``probe<i>/log_probs`` and ``probe<i>/tokens``; the probe texts in its metadata;
    - ``step_<N>_<kind>.png``: cell text of the ``cells_to_plot`` most variable last-layer units, gate saturation,
      top-k predictions (when the model predicts characters), cell heatmap and the saturation history so far;
    - ``step_<N>.html``: a self-contained report (``html=True``);
    - ``index.json``: every recording (step, epoch, files, probe texts, summary scalars), rewritten after each.

    Every file is written atomically. The summary scalars (per layer and gate, the mean fraction of time units
    are below/above the saturation thresholds; mean and std of cells) go to every logger as
    ``lstm_interp/<layer>/<gate>/left_saturated`` etc.; figures go to TensorBoard (``add_image``), to loggers with
    a ``log_image`` method (W&B), to MLflow as image artifacts, and always to PNG files (a CSVLogger gets scalars
    only, with one warning). Recordings run on global rank zero only, without gradients, and never call a collective.

    Args:
        probe_texts: the fixed text(s) to trace.
        probe_tensors: instead of (or labelled by) ``probe_texts``: what the module's ``forward`` takes for one
            sequence, e.g. a (T,) or (1, T) id tensor (a 1-D tensor gets a batch dimension).
        modules: module path(s) or globs of the recurrent modules to watch (``"encoder.lstm"``); ``None`` watches
            a CharLSTMModule's network, or every ``nn.LSTM``/``nn.GRU``/``nn.RNN`` and ``nn.LSTMCell``/
            ``nn.GRUCell``/``nn.RNNCell`` of any other module.
        encode: for a foreign module, turns a probe text into ids (str -> LongTensor).
        chars: the vocabulary in id order; encodes texts when ``encode`` is not given, and makes a (1, T, V) output
            of ``forward`` count as next-character logits (for the top-k figure). Taken from a CharLSTMModule.
        tokens: for steps that are not characters (a word-level model, a tagger), one list of strings per probe,
            one string per time step of the module: figures and the report draw these words or subwords, each as
            wide as it is. A list whose length is not the module's number of steps is an error at fit start.
        decode: instead of ``tokens``, a callable turning a probe's ids into one string per id
            (``lambda ids: [tokenizer.decode([i]) for i in ids]``).
        every_n_train_steps: record when ``trainer.global_step % n == 0`` after a training batch (``None``: never).
            A recording takes a few seconds (2.7 s for a 2x256 LSTM and a 400-character probe on one CPU core,
            mostly drawing figures), so the default 500 costs about 1% of CPU training time; with a GPU's faster
            steps, raise it or set ``log_figures=False`` (see ``benchmarks/RESULTS.md``, "Callback overhead").
        every_n_epochs: record after every ``n``-th training epoch (``None``: never). A recording is always made
            when training ends, unless that step was just recorded.
        quantities: which per-layer quantities to save (default: all of the cell's); the statistics always use the
            gates and cells.
        saturation_thresholds: ``(low, high)``: a gate is left-saturated below ``low``, right-saturated above ``high``.
        cells_to_plot: how many last-layer units the cell-text figure shows: the best unit of each of ``features``
            that visibly switches with it (``CellScore.visible``) first, then the most variable ones. When every one
            would draw a flat band (cell states pinned at +-1), the figure's title gives the layers' sd of ``c`` and
            it shows the hidden state or the gate that varies most instead; the HTML report says the same.
        top_k: guesses per character in the top-k figure.
        dtype: storage dtype of the saved activations (``torch.float16``, ``torch.bfloat16`` or ``torch.float32``).
        dirpath: the folder for everything written (default ``<trainer.log_dir>/<name>``, or
            ``<trainer.default_root_dir>/<name>`` without a logger).
        name: prefix of the logged names and default folder name; ``None`` gives ``"lstm_interp"`` to the first such
            monitor of a trainer and ``"lstm_interp_<probe hash>"`` to others; a monitor resumed from a checkpoint keeps
            the name it had there.
        on_unknown: ``"error"`` for probe characters outside the vocabulary, or ``"skip"`` to drop them (with a
            warning).
        log_figures: draw figures (PNG files and loggers); ``False`` keeps only tensors, index and scalars.
        html: also write an HTML report per recording.
        features: features of the probe texts (registered names such as ``"inside_quotes"`` or
            :class:`~lstm_interp.features.Feature` objects) to match units against at every recording: the
            ``feature_top`` best units of each (:func:`~lstm_interp.find_cells` on the cell state, or the hidden state
            of a GRU/RNN, over all probes; ranked by its rule, units that visibly switch first) are listed in the
            HTML report and in ``index.json`` (``CellScore.to_dict`` rows: ``score``, ``effect``, ``visible``...),
            and the first one's score is logged as ``<name>/features/<feature>/best_score``. Needs ``probe_texts``.
        feature_top: how many units to keep per feature.

    Raises:
        ValueError: no probe, an empty probe, non-positive intervals, thresholds outside (0, 1) or ``low >= high``,
            unknown quantities or dtype, ``features`` without ``probe_texts``; at fit start, a feature that is
            constant on the probe texts (its score would be undefined), a module without recurrent modules,
            ``modules`` entries that match none or name a TorchScript, compiled or custom cell module, or a probe
            whose input a module does not take (each naming the module). Bidirectional modules, ``proj_size`` LSTMs,
            PackedSequence inputs, several recurrent modules in one model, cell modules called once per step and an
            ``nn.LSTM`` called one step at a time are all traced (:func:`~lstm_interp.trace_rnn`,
            :func:`~lstm_interp.trace_cell`); what the monitor found about calls it joined or a probe it labels by
            step is warned at fit start.
        VocabularyError: at fit start, probe characters outside the vocabulary (listed) with ``on_unknown="error"``.
        UnknownFeatureError: (a ``ValueError``) a feature name that is not registered; the message lists the known.

    Example::

        >>> from lstm_interp.callbacks import LSTMActivationMonitor
        >>> monitor = LSTMActivationMonitor(probe_texts=['He said, "Well, Prince."\n'], every_n_train_steps=500)
        >>> trainer = Trainer(callbacks=[monitor])  # doctest: +SKIP
        >>> # also list, in each report, the units that best track quotes and the position in the line:
        >>> LSTMActivationMonitor(probe_texts=[text], features=["inside_quotes", "position_in_line"])  # doctest: +SKIP
    """

    def __init__(
        self,
        probe_texts: str | Sequence[str] | None = None,
        *,
        probe_tensors: Sequence[Tensor] | None = None,
        modules: str | Sequence[str] | None = None,
        encode: Callable[[str], Tensor] | None = None,
        chars: str | None = None,
        tokens: Sequence[Sequence[str]] | None = None,
        decode: Callable[[Tensor], Sequence[str]] | None = None,
        every_n_train_steps: int | None = 500,
        every_n_epochs: int | None = None,
        quantities: Sequence[str] | None = None,
        saturation_thresholds: tuple[float, float] = (0.1, 0.9),
        cells_to_plot: int = 4,
        top_k: int = 5,
        dtype: torch.dtype = torch.float16,
        dirpath: str | os.PathLike | None = None,
        name: str | None = None,
        on_unknown: Literal["error", "skip"] = "error",
        log_figures: bool = True,
        html: bool = True,
        features: Sequence[str | Feature] | None = None,
        feature_top: int = 3,
    ) -> None:
        self.probe_texts = _check_texts(probe_texts)
        self.probe_tensors = _check_tensors(probe_tensors)
        if self.probe_texts is None and self.probe_tensors is None:
            raise ValueError("give `probe_texts` (or `probe_tensors`): the fixed input the monitor traces")
        if self.probe_texts is not None and self.probe_tensors is not None and (
            len(self.probe_texts) != len(self.probe_tensors)
        ):
            raise ValueError(
                f"{len(self.probe_texts)} `probe_texts` label {len(self.probe_tensors)} `probe_tensors`; "
                "give one text per tensor"
            )
        self.modules = [modules] if isinstance(modules, str) else list(modules) if modules is not None else None
        if self.modules is not None and (not self.modules or not all(isinstance(m, str) and m for m in self.modules)):
            raise ValueError(f"`modules` must be a module path or a non-empty list of them, got {modules!r}")
        self.tokens = _check_tokens(tokens, self.probe_texts or self.probe_tensors or [])
        if decode is not None and not callable(decode):
            raise ValueError(f"`decode` must be a callable (ids -> one string per id), got {decode!r}")
        if decode is not None and tokens is not None:
            raise ValueError("give `tokens=` or `decode=`, not both: both label the probes' time steps")
        self.decode = decode
        if encode is not None and not callable(encode):
            raise ValueError(f"`encode` must be a callable (str -> ids), got {encode!r}")
        if chars is not None and (not isinstance(chars, str) or not chars):
            raise ValueError(f"`chars` must be the vocabulary as a non-empty string, got {chars!r}")
        for arg, value in (("every_n_train_steps", every_n_train_steps), ("every_n_epochs", every_n_epochs)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"`{arg}` must be a positive integer or None, got {value!r}")
        low, high = _check_thresholds(saturation_thresholds)
        if quantities is not None:
            quantities = [quantities] if isinstance(quantities, str) else list(quantities)
            unknown = [q for q in quantities if q not in _ALL_QUANTITIES]
            if unknown or not quantities:
                raise ValueError(f"`quantities` {unknown or quantities!r} are not known; choose from {_ALL_QUANTITIES}")
        for arg, value in (("cells_to_plot", cells_to_plot), ("top_k", top_k)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{arg}` must be a positive integer, got {value!r}")
        if dtype not in _DTYPES:
            raise ValueError(f"`dtype` must be one of {_DTYPES}, got {dtype!r}")
        if name is not None and (not isinstance(name, str) or not name or os.sep in name or name in (".", "..")):
            raise ValueError(f"`name` must be a non-empty folder name, got {name!r}")
        if on_unknown not in ("error", "skip"):
            raise ValueError(f"`on_unknown` must be 'error' or 'skip', got {on_unknown!r}")
        if isinstance(features, (str, Feature)):
            features = [features]
        self.features = [get_feature(f) for f in features] if features is not None else []
        if features is not None and not self.features:
            raise ValueError(f"`features` is empty ({features!r}); give feature names or None")
        if self.features and self.probe_texts is None:
            raise ValueError("`features` are computed from the probe texts: give `probe_texts` as well")
        if isinstance(feature_top, bool) or not isinstance(feature_top, int) or feature_top < 1:
            raise ValueError(f"`feature_top` must be a positive integer, got {feature_top!r}")
        self.feature_top = feature_top

        self.encode = encode
        self.chars = chars
        self.every_n_train_steps = every_n_train_steps
        self.every_n_epochs = every_n_epochs
        self.quantities = quantities
        self.saturation_thresholds = (low, high)
        self.cells_to_plot = cells_to_plot
        self.top_k = top_k
        self.dtype = dtype
        self.dirpath = Path(dirpath) if dirpath is not None else None
        if self.dirpath is not None and self.dirpath.exists() and not self.dirpath.is_dir():
            # Checked now, not when the first recording tries to write there hundreds of steps later.
            raise ValueError(f"`dirpath` {str(self.dirpath)!r} is a file; give a folder (created if missing)")
        self.on_unknown = on_unknown
        self.log_figures = log_figures
        self.html = html
        self._name = name
        self.name = name or DEFAULT_NAME
        # The name a checkpoint gave this monitor (see `load_state_dict`): a resumed unnamed monitor keeps it.
        self._restored_name: str | None = None
        self.probe_hash = _probe_hash(self.probe_texts, self.probe_tensors)
        # Recordings made so far (also those restored from a checkpoint); each is a JSON-able dict.
        self.recordings: list[dict[str, Any]] = []
        self._targets: Targets | None = None
        self._recorder: Recorder | None = None
        self._start_step = 0

    @property
    def state_key(self) -> str:
        key: dict[str, Any] = {"probe": self.probe_hash, "modules": self.modules}
        if self._name is not None:
            key["name"] = self._name
        return self._generate_state_key(**key)

    @property
    def recorded_steps(self) -> list[int]:
        """The global steps recorded so far, in order."""
        return sorted(entry["step"] for entry in self.recordings)

    # ------------------------------------------------------------------ hooks
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Checked here rather than in `setup`: modules built in `configure_model` (CharLSTMModule builds its network
        # there when the vocabulary comes from the datamodule) exist only after the setup hooks. Every rank checks,
        # so that all of them stop alike on a bad probe.
        self.name = self._resolve_name(trainer)
        self._targets = Targets.resolve(self._settings(), pl_module)
        self._recorder = None  # a new fit may log elsewhere (a new logger version)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start_step = trainer.global_step

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.every_n_train_steps is not None and trainer.global_step % self.every_n_train_steps == 0:
            self._record(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.every_n_epochs is not None and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._record(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._record(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"recordings": [dict(entry) for entry in self.recordings], "name": self.name}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved: the recordings and the name they were logged under.

        The name is kept for the resumed fit (an unnamed monitor would otherwise be renamed by its position among
        the trainer's monitors, and write into another monitor's folder). A ``name=`` given to this monitor is part
        of its ``state_key``, so a checkpoint restored here was saved under that same name.
        """
        self.recordings = [dict(entry) for entry in state_dict.get("recordings", [])]
        name = state_dict.get("name")
        if isinstance(name, str) and name:
            self._restored_name = name
            # Lightning restores callbacks before `on_fit_start`, except under strategies that restore after setup;
            # setting the name here too serves both orders.
            self.name = self._name or name

    # ------------------------------------------------------------------ internals
    def _record(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or self._targets is None or trainer.global_step in self.recorded_steps:
            return
        if self._recorder is None:
            self._recorder = Recorder(self._settings(), self._folder(trainer))
            self.recordings = self._recorder.merge_on_disk(self.recordings, self._start_step)
        entry = self._recorder.record(trainer, pl_module, self._targets, self.recordings)
        self.recordings.append(entry)
        self._recorder.write_index(self.recordings, self._targets)

    def _folder(self, trainer: pl.Trainer) -> Path:
        """Where this monitor writes, worked out locally: ``trainer.log_dir`` would broadcast, a collective."""
        if self.dirpath is not None:
            return self.dirpath
        base: str | None = None
        if trainer.loggers:
            logger = trainer.loggers[0]
            base = logger.log_dir if isinstance(logger, (TensorBoardLogger, CSVLogger)) else logger.save_dir
        return Path(base or trainer.default_root_dir) / self.name

    def _resolve_name(self, trainer: pl.Trainer) -> str:
        # Lightning itself refuses two monitors with one state key (same probes, modules and name).
        monitors = [cb for cb in trainer.callbacks if isinstance(cb, LSTMActivationMonitor)]  # type: ignore[attr-defined]
        for other in monitors:
            if other is self:
                continue
            if self._name is not None and other._name == self._name:
                raise ValueError(f"two LSTMActivationMonitors are named {self._name!r}; give each its own `name=`")
            if self.dirpath is not None and other.dirpath is not None and other.dirpath == self.dirpath:
                raise ValueError(
                    f"two LSTMActivationMonitors write to {str(self.dirpath)!r}; give each its own `dirpath=`"
                )
        if self._name is not None:
            return self._name
        if self._restored_name is not None:
            return self._restored_name
        # Unnamed and new: the first such monitor gets the default name, unless a resumed one already holds it.
        taken = {m._restored_name for m in monitors if m._name is None and m._restored_name is not None}
        fresh = [m for m in monitors if m._name is None and m._restored_name is None]
        first = fresh[0] is self and DEFAULT_NAME not in taken
        return DEFAULT_NAME if first else f"{DEFAULT_NAME}_{self.probe_hash}"

    def _settings(self) -> RecordingSettings:
        """The arguments a recording uses, frozen now (they are public attributes, so they may have changed)."""
        return RecordingSettings(
            name=self.name,
            probe_texts=tuple(self.probe_texts) if self.probe_texts is not None else None,
            probe_tensors=tuple(self.probe_tensors) if self.probe_tensors is not None else None,
            modules=tuple(self.modules) if self.modules is not None else None,
            encode=self.encode,
            chars=self.chars,
            tokens=tuple(tuple(t) for t in self.tokens) if self.tokens is not None else None,
            decode=self.decode,
            on_unknown=self.on_unknown,
            quantities=tuple(self.quantities) if self.quantities is not None else None,
            features=tuple(self.features),
            feature_top=self.feature_top,
            saturation_thresholds=self.saturation_thresholds,
            cells_to_plot=self.cells_to_plot,
            top_k=self.top_k,
            dtype=self.dtype,
            log_figures=self.log_figures,
            html=self.html,
        )


def _check_tokens(tokens: Sequence[Sequence[str]] | None, probes: Sequence[Any]) -> list[list[str]] | None:
    if tokens is None:
        return None
    if isinstance(tokens, str) or not all(
        not isinstance(t, str) and all(isinstance(label, str) for label in t) for t in tokens
    ):
        raise ValueError(f"`tokens` must be one list of strings per probe, got {shorten(tokens)!r}")
    if len(tokens) != len(probes):
        raise ValueError(f"`tokens` has {len(tokens)} lists for {len(probes)} probes; give one list per probe")
    empty = [i for i, t in enumerate(tokens) if not len(t)]
    if empty:
        raise ValueError(f"`tokens[{empty[0]}]` is empty; every probe needs one string per time step")
    return [list(t) for t in tokens]


def _check_texts(probe_texts: str | Sequence[str] | None) -> list[str] | None:
    if probe_texts is None:
        return None
    texts = [probe_texts] if isinstance(probe_texts, str) else list(probe_texts)
    if not texts:
        raise ValueError(f"`probe_texts` is empty ({probe_texts!r}); give at least one text")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"`probe_texts[{i}]` must be a string, got {type(text).__name__}: {shorten(text)!r}")
        if not text:
            raise ValueError(f"`probe_texts[{i}]` is an empty text ({text!r}); every probe needs characters")
    return texts


def _check_tensors(probe_tensors: Sequence[Tensor] | None) -> list[Tensor] | None:
    if probe_tensors is None:
        return None
    tensors = [probe_tensors] if isinstance(probe_tensors, Tensor) else list(probe_tensors)
    if not tensors:
        raise ValueError(f"`probe_tensors` is empty ({probe_tensors!r}); give at least one tensor")
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor) or t.numel() == 0:
            raise ValueError(f"`probe_tensors[{i}]` must be a non-empty tensor, got {shorten(t)!r}")
    return [t.detach().cpu() for t in tensors]


def _check_thresholds(thresholds: tuple[float, float]) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in thresholds)
    except (TypeError, ValueError):
        raise ValueError(f"`saturation_thresholds` must be a pair (low, high), got {thresholds!r}") from None
    if not 0 < low < high < 1:
        raise ValueError(f"`saturation_thresholds` must satisfy 0 < low < high < 1, got {tuple(thresholds)!r}")
    return low, high


def _probe_hash(texts: list[str] | None, tensors: list[Tensor] | None) -> str:
    digest = hashlib.sha1(json.dumps(texts).encode())
    for t in tensors or []:
        digest.update(str((t.dtype, tuple(t.shape))).encode())
        digest.update(t.contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:8]
