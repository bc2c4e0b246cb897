"""``trace(model, text)``: every gate, cell and hidden state of a :class:`CharLSTM`, per layer and character.

Names are module paths, as in TransformerLens: ``layers.0.forget_gate``, ``layers.1.cell``, plus ``embedding``
(the layer-0 input) and ``log_probs`` (next-character log-probabilities). Each tensor is (T, H) for one text.
"""

from __future__ import annotations

import contextlib
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
from lstm_interp.tracing.recurrence import QUANTITIES, gru_layer_activations, lstm_layer_activations
from lstm_interp.vocab import OnUnknown

NamesFilter = str | Sequence[str] | Callable[[str], bool] | None
DEFAULT_CHUNK_SIZE = 2048
_TRACE_FORMAT = 1


class Trace(Mapping[str, Tensor]):
    """The activations of one text: a read-only mapping from names like ``layers.0.cell`` to (T, H) tensors.

    Args:
        activations: name -> tensor, each with the time axis first.
        text: the text that was traced (``None`` if ids were traced).
        tokens: (T,) the character ids.
        cell: ``"lstm"``, ``"gru"`` or ``"rnn"``.
        num_layers: number of recurrent layers.
        final_state: the fused kernels' state after the last character (carry it into the next trace).

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
    ) -> None:
        self._activations = activations
        self.text = text
        self.tokens = tokens
        self.cell = cell
        self.num_layers = num_layers
        self.final_state = final_state

    def __getitem__(self, name: str) -> Tensor:
        try:
            return self._activations[name]
        except KeyError:
            raise KeyError(f"{name!r} is not in this trace; it holds {list(self._activations)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._activations)

    def __len__(self) -> int:
        return len(self._activations)

    def __repr__(self) -> str:
        return f"Trace(cell={self.cell!r}, layers={self.num_layers}, chars={len(self.tokens)}, names={list(self)})"

    @property
    def quantities(self) -> tuple[str, ...]:
        """The per-layer quantities this kind of cell has (whether or not all were kept)."""
        return QUANTITIES[self.cell]

    def stack(self, quantity: str) -> Tensor:
        """One quantity of every layer stacked: (num_layers, T, H)."""
        names = [f"layers.{i}.{quantity}" for i in range(self.num_layers)]
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
            "text": json.dumps(self.text),
        }
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Trace:
        """Read a trace written by :meth:`save`."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"trace file {str(path)!r} does not exist")
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        if metadata.get("format") != "lstm_interp.trace":
            raise ValueError(f"{str(path)!r} is not an lstm_interp trace (metadata {metadata})")
        tensors = load_file(str(path))
        tokens = tensors.pop("tokens")
        return cls(
            tensors,
            text=json.loads(metadata["text"]),
            tokens=tokens,
            cell=metadata["cell"],
            num_layers=int(metadata["num_layers"]),
        )


def available_names(cell: str, num_layers: int) -> list[str]:
    """Every name a trace of this architecture can hold, in order."""
    names = ["embedding"]
    for i in range(num_layers):
        names += [f"layers.{i}.{q}" for q in QUANTITIES[cell]]
    return [*names, "log_probs"]


def _select_names(names_filter: NamesFilter, names: list[str]) -> list[str]:
    if names_filter is None:
        return names
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

    Raises:
        VocabularyError: the text has characters the model's vocabulary lacks.
        ValueError: empty text, a ``names_filter`` that matches nothing, a bad ``chunk_size`` or ``dtype``.
    """
    if not isinstance(model, CharLSTM):
        raise TypeError(f"`model` must be a CharLSTM, got {type(model).__name__}")
    if chunk_size < 1:
        raise ValueError(f"`chunk_size` must be >= 1, got {chunk_size!r}")
    if dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        raise ValueError(f"`dtype` must be a floating dtype, got {dtype!r}")
    cfg = model.config
    if isinstance(text, str):
        tokens = model._require_vocab().encode(text, on_unknown=on_unknown)
        text_str: str | None = text
    else:
        tokens = torch.as_tensor(text, dtype=torch.long).reshape(-1).cpu()
        text_str = model.vocab.decode(tokens) if model.vocab is not None else None
    T = len(tokens)
    if T == 0:
        raise ValueError("cannot trace an empty text")
    names = _select_names(names_filter, available_names(cfg.cell, cfg.num_layers))
    keep = set(names)
    store = {name: torch.empty(T, _width(name, cfg), dtype=dtype) for name in names}

    net = _float32_copy(model)
    device = net.device
    was_training = model.training
    net.eval()
    try:
        autocast_off = torch.autocast(device.type, enabled=False) if device.type in ("cpu", "cuda") else None
        with autocast_off or contextlib.nullcontext(), _flush_denormals():
            final_state = _run_chunks(net, tokens, state, chunk_size, keep, store)
    finally:
        model.train(was_training)
    return Trace(store, text=text_str, tokens=tokens, cell=cfg.cell, num_layers=cfg.num_layers, final_state=final_state)


@contextlib.contextmanager
def _flush_denormals() -> Iterator[None]:
    """Treat subnormal floats as zero while tracing.

    Running products of forget gates pass through the subnormal range (< 1.2e-38) on their way to zero, where x86
    arithmetic is ~100x slower; values that small are far below float32 resolution of any cell state. PyTorch's
    default (off) is restored afterwards.
    """
    enabled = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if enabled:
            torch.set_flush_denormal(False)


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


def _run_chunks(
    net: CharLSTM, tokens: Tensor, state: State | None, chunk_size: int, keep: set[str], store: dict[str, Tensor]
) -> State:
    cfg = net.config
    device = net.device
    H = cfg.hidden_size
    if state is None:
        zeros = torch.zeros(1, 1, H, device=device)
        state = [(zeros, zeros) if cfg.cell == "lstm" else zeros for _ in range(cfg.num_layers)]
    state = [tuple(t.to(device, torch.float32) for t in s) if isinstance(s, tuple) else s.to(device) for s in state]
    layer0 = net.layers[0]
    table = None
    if cfg.cell == "lstm":
        # Layer 0's input is an embedding lookup, so its input projection is a per-character table (V, 4H).
        table = torch.addmm(layer0.bias_ih_l0 + layer0.bias_hh_l0, net.embedding.weight, layer0.weight_ih_l0.T)
    for start in range(0, len(tokens), chunk_size):
        ids = tokens[start : start + chunk_size].to(device)
        rows = slice(start, start + len(ids))
        x = net.embedding(ids)  # (L, E)
        _keep(store, keep, "embedding", rows, x)
        new_state: State = []
        for i, layer in enumerate(net.layers):
            prefix = f"layers.{i}."
            out, layer_state = layer(x[None], state[i])
            hidden = out[0]  # (L, H)
            wanted = {n[len(prefix) :] for n in keep if n.startswith(prefix)} - {"hidden"}
            if wanted and cfg.cell == "lstm":
                h0, c0 = state[i]
                acts = lstm_layer_activations(
                    None if i == 0 else x,
                    table[ids] if i == 0 else None,
                    hidden,
                    h0[0, 0],
                    c0[0, 0],
                    layer.weight_ih_l0,
                    layer.weight_hh_l0,
                    layer.bias_ih_l0,
                    layer.bias_hh_l0,
                )
            elif wanted and cfg.cell == "gru":
                acts = gru_layer_activations(
                    x,
                    hidden,
                    state[i][0, 0],
                    layer.weight_ih_l0,
                    layer.weight_hh_l0,
                    layer.bias_ih_l0,
                    layer.bias_hh_l0,
                )
            else:
                acts = {}
            acts["hidden"] = hidden
            for quantity, value in acts.items():
                _keep(store, keep, prefix + quantity, rows, value)
            new_state.append(layer_state)
            x = hidden
        if "log_probs" in keep:
            _keep(store, keep, "log_probs", rows, torch.log_softmax(net.head(x), dim=-1))
        state = new_state
    return state


def _keep(store: dict[str, Tensor], keep: set[str], name: str, rows: slice, value: Tensor) -> None:
    if name in keep:
        store[name][rows] = value.detach().to("cpu", store[name].dtype)
