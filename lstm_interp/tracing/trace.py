"""``trace(model, text)``: every gate, cell and hidden state of a :class:`CharLSTM`, per layer and character.

Names are module paths, as in TransformerLens: ``layers.0.forget_gate``, ``layers.1.cell``, plus ``embedding``
(the layer-0 input) and ``log_probs`` (next-character log-probabilities). Each tensor is (T, H) for one text (the
``hidden`` state of an LSTM with ``proj_size`` is (T, proj_size)). A bidirectional module traced with
:func:`~lstm_interp.trace_rnn` has one layer name per direction, the reverse one ``<layer>.reverse``, its rows in
the text's order.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from lstm_interp._io import atomic_path
from lstm_interp.models.char_lstm import CharLSTM, State
from lstm_interp.tracing.layers import run_layers, traced_precision, zero_state
from lstm_interp.tracing.quantities import QUANTITIES, state_quantity
from lstm_interp.tracing.trace_arguments import (
    check_chunk_size,
    check_dtype,
    check_ids,
    check_names_filter,
    check_state,
)
from lstm_interp.vocab import OnUnknown

NamesFilter = str | Sequence[str] | Callable[[str], bool] | None
DEFAULT_CHUNK_SIZE = 2048
_TRACE_FORMAT = 1


class Trace(Mapping[str, Tensor]):
    """The activations of one text: a read-only mapping from names like ``layers.0.cell`` to (T, H) tensors.

    Args:
        activations: name -> tensor, each with the time axis first.
        text: the text that was traced (``None`` if ids were traced).
        tokens: (T,) the character ids (or time-step indices when the input was not characters).
        cell: ``"lstm"``, ``"gru"`` or ``"rnn"``.
        num_layers: number of layer names: recurrent layers, each direction of a bidirectional layer counted.
        final_state: the fused kernels' state after the last character (carry it into the next trace).
        layer_names: the name prefix of each layer, default ``layers.0``, ``layers.1``, ...; a trace of a
            foreign ``nn.LSTM`` at module path ``encoder.rnn`` uses ``encoder.rnn.0``, ``encoder.rnn.1``, ... and,
            bidirectional, ``encoder.rnn.0.reverse`` after each forward layer.
        chars: the vocabulary the ids index, in id order (``None`` when the steps are not characters).
        labels: one string per step when the steps are not characters (words, subwords, tags): what figures and
            reports write for each step. ``None`` for a character trace, whose ``text`` labels it.

    Operations: :meth:`concat` (texts end to end), :meth:`time_slice` (a window of steps), :meth:`with_activation`
    (one more name), :attr:`state_quantity` (``cell`` for an LSTM, ``hidden`` for a GRU or RNN).

    Example::

        >>> tr = trace(model, "hello world")  # doctest: +SKIP
        >>> tr["layers.0.cell"].shape  # doctest: +SKIP
        torch.Size([11, 128])
        >>> tr.stack("forget_gate").shape  # (layers, T, H)  # doctest: +SKIP
        torch.Size([2, 11, 128])
    """

    def __init__(
        self,
        activations: dict[str, Tensor],
        *,
        text: str | None,
        tokens: Tensor,
        cell: str,
        num_layers: int,
        final_state: State | None = None,
        layer_names: Sequence[str] | None = None,
        chars: str | None = None,
        labels: Sequence[str] | None = None,
    ) -> None:
        self._activations = activations
        self.text = text
        self._labels = list(labels) if labels is not None else None
        self.tokens = tokens
        self.cell = cell
        self.num_layers = num_layers
        self.final_state = final_state
        self.chars = chars
        self.layer_names = list(layer_names) if layer_names is not None else [f"layers.{i}" for i in range(num_layers)]
        if len(self.layer_names) != num_layers:
            raise ValueError(f"{len(self.layer_names)} layer names for {num_layers} layers: {self.layer_names}")
        steps = len(tokens)
        wrong = {name: tuple(t.shape) for name, t in activations.items() if t.dim() == 0 or t.shape[0] != steps}
        if wrong:
            raise ValueError(f"every activation needs {steps} rows, one per step of `tokens`; got shapes {wrong}")
        if text is not None and len(text) != steps:
            raise ValueError(f"`text` has {len(text)} characters but `tokens` has {steps} steps")
        if self._labels is not None and (
            len(self._labels) != steps or not all(isinstance(label, str) for label in self._labels)
        ):
            raise ValueError(f"`labels` must be {steps} strings, one per step; got {len(self._labels)} items")

    def __getitem__(self, name: str) -> Tensor:
        try:
            return self._activations[name]
        except KeyError:
            raise KeyError(f"{name!r} is not in this trace; it holds {list(self._activations)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._activations)

    def __repr__(self) -> str:
        return f"Trace(cell={self.cell!r}, layers={self.layer_names}, chars={len(self.tokens)}, names={list(self)})"

    def __len__(self) -> int:
        return len(self._activations)

    def describe(self) -> str:
        """What the trace holds, for a reader: its length and cell, then each name with its shape and dtype.

        Example::

            >>> print(trace(model, "hello").describe())  # doctest: +SKIP
            5 characters, lstm with 1 layer(s), 6 activation(s)
              layers.0.input_gate   (5, 8)  float32
              ...
        """
        lines = [f"{self.num_steps} characters, {self.cell} with {self.num_layers} layer(s), {len(self)} activation(s)"]
        width = max((len(name) for name in self), default=0)
        for name, tensor in self.items():
            lines.append(f"  {name:<{width}}  {tuple(tensor.shape)}  {str(tensor.dtype).removeprefix('torch.')}")
        return "\n".join(lines)

    @property
    def quantities(self) -> tuple[str, ...]:
        """The per-layer quantities this kind of cell has (whether or not all were kept)."""
        return QUANTITIES[self.cell]

    @property
    def state_quantity(self) -> str:
        """``"cell"`` for an LSTM, ``"hidden"`` for a GRU or RNN: the quantity that carries each layer's memory."""
        return state_quantity(self.cell)

    @property
    def num_steps(self) -> int:
        """Time steps (characters) in the trace."""
        return len(self.tokens)

    @property
    def labels(self) -> list[str] | None:
        """One string per step: the token labels if given, else the characters of ``text``, else ``None``."""
        if self._labels is not None:
            return list(self._labels)
        return list(self.text) if self.text is not None else None

    @property
    def has_token_labels(self) -> bool:
        """Whether the steps are labelled by strings other than single characters (words, subwords)."""
        return self._labels is not None

    # ------------------------------------------------------------------ operations
    def _replace(self, activations: dict[str, Tensor], **changes: object) -> Trace:
        fields: dict[str, object] = {
            "text": self.text,
            "tokens": self.tokens,
            "cell": self.cell,
            "num_layers": self.num_layers,
            "final_state": self.final_state,
            "layer_names": self.layer_names,
            "chars": self.chars,
            "labels": self._labels,
        }
        return Trace(activations, **(fields | changes))  # type: ignore[arg-type]

    def with_activation(self, name: str, values: Tensor) -> Trace:
        """A trace holding one more activation (or replacing one), e.g. ``log_probs`` computed elsewhere.

        Raises:
            ValueError: ``values`` does not have one row per step.
        """
        if values.dim() == 0 or values.shape[0] != self.num_steps:
            raise ValueError(
                f"{name!r} needs {self.num_steps} rows, one per step of the trace; got shape {tuple(values.shape)}"
            )
        return self._replace({**self._activations, name: values})

    def select(self, names: NamesFilter) -> Trace:
        """A trace holding only the activations ``names`` matches (a name, a glob, a list of them or a predicate)."""
        return self._replace({name: self._activations[name] for name in select_names(names, list(self))})

    def time_slice(self, start: int, stop: int | None = None) -> Trace:
        """Steps ``start`` to ``stop`` (exclusive; clipped to the trace, negative values count from the end).

        The slice shares memory with this trace. ``final_state`` is kept only when the slice reaches the last step.

        Raises:
            ValueError: an empty window.
        """
        if not isinstance(start, int) or (stop is not None and not isinstance(stop, int)):
            raise TypeError(f"`start` and `stop` must be integers, got {start!r} and {stop!r}")
        rows = range(self.num_steps)[slice(start, stop)]
        if len(rows) == 0:
            raise ValueError(f"steps {start}:{stop} of a trace of {self.num_steps} steps are empty")
        lo, hi = rows.start, rows.stop
        return self._replace(
            {name: t[lo:hi] for name, t in self._activations.items()},
            text=self.text[lo:hi] if self.text is not None else None,
            labels=self._labels[lo:hi] if self._labels is not None else None,
            tokens=self.tokens[lo:hi],
            final_state=self.final_state if hi == self.num_steps else None,
        )

    @classmethod
    def concat(cls, traces: Sequence[Trace]) -> Trace:
        """Traces end to end along time: the segments of one long text, or several probes for statistics.

        Keeps the names every trace holds; the text when every trace has one; the last trace's ``final_state`` (the
        state after the last step, right for consecutive segments of one text).

        Raises:
            ValueError: no traces, or traces of different architectures (cell type or layer names).
        """
        traces = list(traces)
        if not traces:
            raise ValueError("`traces` is empty; give at least one trace to concatenate")
        first = traces[0]
        for i, tr in enumerate(traces[1:], 1):
            if (tr.cell, tr.layer_names) != (first.cell, first.layer_names):
                raise ValueError(
                    f"trace {i} is of a {tr.cell} with layers {tr.layer_names}, trace 0 of a {first.cell} with "
                    f"layers {first.layer_names}: only traces of one architecture can be concatenated"
                )
        if len(traces) == 1:
            return first
        names = [name for name in first if all(name in tr for tr in traces)]
        texts = [tr.text for tr in traces]
        return first._replace(
            {name: torch.cat([tr[name] for tr in traces]) for name in names},
            text="".join(texts) if all(t is not None for t in texts) else None,  # type: ignore[arg-type]
            labels=[label for tr in traces for label in tr._labels]  # type: ignore[union-attr]
            if all(tr._labels is not None for tr in traces)
            else None,
            tokens=torch.cat([tr.tokens for tr in traces]),
            final_state=traces[-1].final_state,
        )

    def stack(self, quantity: str) -> Tensor:
        """One quantity of every layer stacked: (num_layers, T, H)."""
        names = [f"{layer}.{quantity}" for layer in self.layer_names]
        missing = [n for n in names if n not in self._activations]
        if missing:
            raise KeyError(f"{missing} not in this trace; it holds {list(self._activations)}")
        return torch.stack([self._activations[n] for n in names])

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Write the trace to a ``.safetensors`` file (atomically); the text and layout go in its metadata."""
        path = Path(path)
        tensors = {name: t.contiguous() for name, t in self._activations.items()}
        tensors["tokens"] = self.tokens.contiguous()
        metadata = {
            "format": "lstm_interp.trace",
            "format_version": str(_TRACE_FORMAT),
            "cell": self.cell,
            "num_layers": str(self.num_layers),
            "layer_names": json.dumps(self.layer_names),
            "text": json.dumps(self.text),
            "chars": json.dumps(self.chars),
            "labels": json.dumps(self._labels),
        }
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Trace:
        """Read a trace written by :meth:`save`.

        Raises:
            FileNotFoundError: no such file. IsADirectoryError: a folder where a file was expected.
            ValueError: a file that is empty, truncated or not safetensors, is not an lstm_interp trace, or has
                broken metadata; each message names the path and the problem.
        """
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        where = repr(str(path))
        if path.is_dir():
            raise IsADirectoryError(f"trace file {where} is a folder; expected a .safetensors file from Trace.save")
        if not path.is_file():
            raise FileNotFoundError(f"trace file {where} does not exist")
        if path.stat().st_size == 0:
            raise ValueError(f"trace file {where} is empty (0 bytes); expected a .safetensors file")
        try:
            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
            if metadata.get("format") != "lstm_interp.trace":
                found = metadata.get("format")
                raise ValueError(f"{where} is not an lstm_interp trace (its metadata format is {found!r})")
            tensors = load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise ValueError(f"trace file {where} is truncated or not a safetensors file: {err}") from err
        try:
            tokens = tensors.pop("tokens")
            fields = {
                "text": json.loads(metadata["text"]),
                "cell": metadata["cell"],
                "num_layers": int(metadata["num_layers"]),
                **{
                    key: json.loads(metadata[key]) if key in metadata else None
                    for key in ("layer_names", "chars", "labels")
                },
            }
        except (KeyError, ValueError) as err:
            raise ValueError(f"trace file {where} has broken metadata ({type(err).__name__}: {err})") from err
        return cls(tensors, tokens=tokens, **fields)


def available_names(cell: str, num_layers: int) -> list[str]:
    """Every name a trace of this architecture can hold, in order."""
    names = ["embedding"]
    for i in range(num_layers):
        names += [f"layers.{i}.{q}" for q in QUANTITIES[cell]]
    return [*names, "log_probs"]


def select_names(names_filter: NamesFilter, names: list[str]) -> list[str]:
    if names_filter is None:
        return names
    check_names_filter(names_filter)
    if callable(names_filter):
        chosen = [n for n in names if names_filter(n)]
        if not chosen:
            raise ValueError(f"`names_filter` matched no activation name; the names are {names}")
        return chosen
    patterns = [names_filter] if isinstance(names_filter, str) else list(names_filter)
    unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(n, p) for n in names)]
    if unmatched:
        raise ValueError(f"`names_filter` entries {unmatched} match no activation name; the names are {names}")
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]


@torch.no_grad()
def trace(
    model: CharLSTM,
    text: str | Tensor,
    *,
    names_filter: NamesFilter = None,
    dtype: torch.dtype = torch.float32,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    state: State | None = None,
    on_unknown: OnUnknown = "error",
    on_chunk: Callable[[int, State], None] | None = None,
) -> Trace:
    """Run ``model`` over ``text`` and record every gate, cell and hidden state, exactly.

    The hidden states come from the model's own fused kernels; gates are recomputed from them in batched matmuls
    and the LSTM cell state from its linear recurrence (see :mod:`lstm_interp.tracing.recurrence`). The text is
    processed in chunks of ``chunk_size`` characters with the state carried across, so memory is the stored
    tensors plus one chunk.

    Args:
        model: the network (its train/eval mode is restored afterwards; dropout is off while tracing).
        text: a string, or a 1-D tensor of character ids.
        names_filter: which activations to keep: a name or glob (``"layers.*.cell"``), a list of them, or a
            predicate on the name. ``None`` keeps everything.
        dtype: storage dtype (``torch.float32`` default, ``torch.float16``/``torch.bfloat16`` to halve memory);
            computation is always float32.
        chunk_size: characters per chunk.
        state: initial per-layer state (e.g. ``previous_trace.final_state``); zeros if ``None``.
        on_unknown: how to treat characters outside the vocabulary (see :meth:`CharVocab.encode`).
        on_chunk: called after each chunk with the characters traced so far and the state there: a checkpoint
            (:class:`~lstm_interp.tracing.resumable_trace.ResumableTrace` keeps them), or a place to stop, since an
            exception it raises ends the trace.

    Raises:
        VocabularyError: the text has characters the model's vocabulary lacks.
        ValueError: empty text, a ``names_filter`` that matches nothing, a bad ``chunk_size`` or ``dtype``.
    """
    if not isinstance(model, CharLSTM):
        raise TypeError(f"`model` must be a CharLSTM, got {type(model).__name__}")
    check_chunk_size(chunk_size)
    check_dtype(dtype)
    cfg = model.config
    tokens, text_str = encode_text(model, text, on_unknown)
    T = len(tokens)
    names = select_names(names_filter, available_names(cfg.cell, cfg.num_layers))
    keep = set(names)
    store = {name: torch.empty(T, _width(name, cfg), dtype=dtype) for name in names}

    net = _float32_copy(model)
    device = net.device
    state = start_state(model, state, device)
    ids = tokens.to(device)

    def embed(rows: slice) -> Tensor:
        x = net.embedding(ids[rows])  # (L, E)
        if "embedding" in keep:
            store["embedding"][rows] = x.to("cpu", dtype)
        return x

    def log_probs(rows: slice, hidden: Tensor) -> None:
        if "log_probs" in keep:
            store["log_probs"][rows] = torch.log_softmax(net.head(hidden), dim=-1).to("cpu", dtype)

    was_training = model.training
    net.eval()
    try:
        with traced_precision(device):
            projection = None
            if cfg.cell == "lstm":
                # Layer 0's input is an embedding lookup, so its input projection is a per-character table (V, 4H).
                layer0 = net.layers[0]
                table = torch.addmm(layer0.bias_ih_l0 + layer0.bias_hh_l0, net.embedding.weight, layer0.weight_ih_l0.T)
                projection = lambda rows: table[ids[rows]]  # noqa: E731
            final_state = run_layers(
                list(net.layers),
                [f"layers.{i}" for i in range(cfg.num_layers)],
                T,
                embed,
                state=state,
                chunk_size=chunk_size,
                keep=keep,
                store=store,
                input_projection=projection,
                on_output=log_probs,
                on_chunk=on_chunk,
            )
    finally:
        model.train(was_training)
    return Trace(
        store,
        text=text_str,
        tokens=tokens,
        cell=cfg.cell,
        num_layers=cfg.num_layers,
        final_state=final_state,
        chars=model.vocab.chars if model.vocab is not None else None,
    )


def encode_text(
    model: CharLSTM, text: str | Tensor, on_unknown: OnUnknown, *, verb: str = "trace"
) -> tuple[Tensor, str | None]:
    """The (T,) CPU ids of ``text`` (a string or ids) and the text they stand for (``None`` without a vocabulary).

    Shared by :func:`trace` and :func:`~lstm_interp.run_with_interventions`, so that a text is read the same way
    whether or not anything acts on the model; ``verb`` names what the caller does in the empty-text message.

    Raises:
        VocabularyError: characters the vocabulary lacks (``on_unknown="error"``).
        ValueError: nothing left to ``verb``: an empty text, or one whose every character was skipped.
    """
    if isinstance(text, str):
        tokens = model._require_vocab().encode(text, on_unknown=on_unknown)
        # With on_unknown="skip" some characters have no step: the trace's text is the one that was traced.
        text_str: str | None = text if len(text) == len(tokens) else model._require_vocab().decode(tokens)
    else:
        tokens = check_ids(text, model.config.vocab_size)
        text_str = model.vocab.decode(tokens) if model.vocab is not None else None
    if len(tokens) == 0:
        raise ValueError(f"cannot {verb} an empty text")
    return tokens, text_str


def start_state(model: CharLSTM, state: State | None, device: torch.device) -> State:
    """The per-layer state a run of ``model`` starts from, on ``device``: zeros for ``None``, else ``state`` (e.g.
    ``previous_trace.final_state``) moved there, an LSTM's ``(h, c)`` pairs in float32 as the traced kernels run.

    Shared by :func:`trace` and :func:`~lstm_interp.run_with_interventions`, so that a carried state continues the
    same way in both."""
    cfg = model.config
    if state is None:
        state = [zero_state(cfg.cell, cfg.hidden_size, device) for _ in range(cfg.num_layers)]
    check_state(state, cfg.cell, cfg.num_layers, cfg.hidden_size)
    return [tuple(t.to(device, torch.float32) for t in s) if isinstance(s, tuple) else s.to(device) for s in state]


def _width(name: str, cfg) -> int:
    if name == "embedding":
        return cfg.embedding_size
    if name == "log_probs":
        return cfg.vocab_size
    return cfg.hidden_size


def _float32_copy(model: CharLSTM) -> CharLSTM:
    """The model itself when already float32, else a float32 copy (traces are always computed in float32)."""
    if all(p.dtype == torch.float32 for p in model.parameters()):
        return model
    return copy.deepcopy(model).float()
