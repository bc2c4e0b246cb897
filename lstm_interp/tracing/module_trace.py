"""Trace any ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` given its input: the exact trace for modules we did not build.

A multi-layer ``nn.LSTM`` returns only its last layer's outputs, so each layer (and each direction of a
bidirectional one) is re-run on its own through the same fused kernel (a single-layer, unidirectional module holding
that layer's weights), and its gates are recomputed from its hidden states exactly as for :func:`~lstm_interp.trace`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lstm_interp.tracing.layers import (
    LayerState,
    cell_type,
    run_bidirectional_layers,
    run_layers,
    traced_precision,
    zero_state,
)
from lstm_interp.tracing.quantities import QUANTITIES
from lstm_interp.tracing.trace import DEFAULT_CHUNK_SIZE, NamesFilter, Trace, select_names
from lstm_interp.tracing.trace_arguments import check_chunk_size, check_dtype

# What trace_rnn follows, for the messages of its refusals.
SUPPORTED = (
    "nn.LSTM, nn.GRU and nn.RNN modules (and their subclasses), with any number of layers, one or two directions, "
    "batch_first either way, and LSTMs with or without proj_size"
)


def layer_prefixes(rnn: nn.RNNBase, name: str) -> list[str]:
    """Name prefixes of the traced layers of ``rnn`` at module path ``name``, in ``h_n`` order.

    ``name`` alone for a single layer, ``name.0``, ``name.1``, ... for several; a bidirectional module adds the
    reverse direction of each right after it: ``name.0``, ``name.0.reverse``, ``name.1``, ``name.1.reverse``
    (``name``, ``name.reverse`` for a single layer).
    """
    layers = [name] if rnn.num_layers == 1 else [f"{name}.{k}" for k in range(rnn.num_layers)]
    if not rnn.bidirectional:
        return layers
    return [prefix for layer in layers for prefix in (layer, f"{layer}.reverse")]


def check_supported(rnn: nn.Module, name: str = "module") -> None:
    """Raise a clear error, naming the module, for one the trace cannot follow exactly.

    Raises:
        TypeError: ``rnn`` is not an ``nn.LSTM``, ``nn.GRU`` or ``nn.RNN``.
    """
    if not isinstance(rnn, (nn.LSTM, nn.GRU, nn.RNN)):
        raise TypeError(
            f"{name!r}: expected an nn.LSTM, nn.GRU or nn.RNN, got {type(rnn).__name__}; the trace follows {SUPPORTED}"
        )


def check_inputs(rnn: nn.Module, inputs: object, name: str, *, verb: str = "trace") -> int:
    """The number of steps of ``inputs``, once ``rnn`` is a module the trace follows and ``inputs`` a non-empty
    (T, input_size) sequence for it.

    Shared by :func:`trace_rnn` and :func:`~lstm_interp.run_with_interventions`, so that a module refuses the same
    inputs with the same messages whether or not anything acts on it; ``verb`` names what the caller does.

    Raises:
        TypeError: ``rnn`` is not an ``nn.LSTM``, ``nn.GRU`` or ``nn.RNN`` (:func:`check_supported`).
        ValueError: ``inputs`` is not a (T, input_size) tensor, or has no steps; each message names the module.
    """
    check_supported(rnn, name)
    if not isinstance(inputs, Tensor) or inputs.dim() != 2 or inputs.shape[1] != rnn.input_size:
        got = tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
        raise ValueError(f"`inputs` must be (T, {rnn.input_size}) for {name!r}, got shape {got}")
    if inputs.shape[0] == 0:
        raise ValueError(f"cannot {verb} an empty sequence through {name!r}; `inputs` has shape {tuple(inputs.shape)}")
    return int(inputs.shape[0])


def output_size(rnn: nn.RNNBase) -> int:
    """Width of one direction's hidden state: ``proj_size`` for an LSTM with a projection, else ``hidden_size``."""
    return getattr(rnn, "proj_size", 0) or rnn.hidden_size


def split_layers(rnn: nn.RNNBase) -> list[nn.RNNBase]:
    """One single-layer, unidirectional, ``batch_first`` module per layer and direction of ``rnn``, in
    :func:`layer_prefixes` order, holding float32 copies of that layer's weights."""
    cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell_type(rnn)]
    kwargs: dict[str, object] = {"nonlinearity": rnn.nonlinearity} if isinstance(rnn, nn.RNN) else {}
    if getattr(rnn, "proj_size", 0):
        kwargs["proj_size"] = rnn.proj_size
    suffixes = ("", "_reverse") if rnn.bidirectional else ("",)
    device = rnn.weight_hh_l0.device
    layers = []
    for k in range(rnn.num_layers):
        input_size = rnn.input_size if k == 0 else output_size(rnn) * len(suffixes)
        for suffix in suffixes:
            # Built on the meta device: no random initialisation to waste time on, and none to draw from the
            # global generator, which would change the user's training run whenever the monitor records.
            with torch.device("meta"):
                layer = cls(input_size, rnn.hidden_size, bias=rnn.bias, batch_first=True, **kwargs)
            layer = layer.to_empty(device=device)
            with torch.no_grad():
                for param, value in layer.named_parameters():
                    value.copy_(getattr(rnn, f"{param.removesuffix('_l0')}_l{k}{suffix}").float())
            layers.append(layer.eval())
    return layers


@torch.no_grad()
def trace_rnn(
    rnn: nn.RNNBase,
    inputs: Tensor,
    *,
    name: str = "rnn",
    hx: Tensor | tuple[Tensor, Tensor] | None = None,
    names_filter: NamesFilter = None,
    dtype: torch.dtype = torch.float32,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    text: str | None = None,
    tokens: Tensor | None = None,
    chars: str | None = None,
    labels: Sequence[str] | None = None,
) -> Trace:
    """Trace one sequence through an ``nn.LSTM``, ``nn.GRU`` or ``nn.RNN``: any number of layers, either direction.

    Layout of the trace. Each layer is one entry of ``trace.layer_names`` (see :func:`layer_prefixes`), and each
    direction of a bidirectional layer is one too: ``enc.lstm.0``, ``enc.lstm.0.reverse``, ``enc.lstm.1``, ...,
    so ``trace.num_layers`` counts directions. The reverse direction runs over the reversed sequence, but its rows
    are stored in the forward time order: row t of ``enc.lstm.0.reverse.cell`` is its state after reading
    ``x_{T-1} .. x_t``, so every quantity lines up with the text. The input of layer k + 1 is both directions of
    layer k concatenated (forward first), as in ``nn.LSTM``; the module's output at step t is
    ``cat([last.hidden[t], last.reverse.hidden[t]])``.

    Widths: every quantity is ``hidden_size`` (H) wide, except the ``hidden`` of an LSTM with ``proj_size``, which is
    ``h_t = W_hr (o_t * tanh c_t)``, ``proj_size`` wide; its ``cell`` and gates stay H wide.

    ``trace.final_state`` holds one entry per layer name, in ``h_n``/``c_n`` order (layer-major, forward before
    reverse), each as the fused kernel takes it: (1, 1, width), an ``(h, c)`` pair for an LSTM. A forward
    direction's entry is its state after the last step; a reverse direction's, its state after reading ``x_0``
    (row 0 of its quantities), which is what ``h_n`` reports for it.

    Args:
        rnn: the module; its own weights are used, in float32.
        inputs: (T, input_size), the sequence the module receives (one batch row, time first, unpadded: for a
            PackedSequence, the sequence's real length).
        name: the module's path, used as the name prefix (``"encoder.lstm"`` gives ``encoder.lstm.0.cell``, or
            ``encoder.lstm.cell`` for a single layer; ``encoder.lstm.0.reverse.cell`` for a reverse direction).
        hx: initial state as the module takes it, for this one sequence: ``h0`` (or ``(h0, c0)`` for an LSTM),
            each (num_layers * num_directions, width) or (num_layers * num_directions, 1, width); ``None`` for zeros.
        names_filter, dtype, chunk_size: as for :func:`~lstm_interp.trace`.
        text: the text the time steps stand for, if any (kept on the trace for plots and reports).
        tokens: (T,) ids of the time steps, if any.
        chars: the vocabulary ``tokens`` index, in id order, if any.
        labels: one string per time step (words, subwords, tags), if the steps are not characters.

    Raises:
        ValueError: inputs or ``hx`` of the wrong shape, an empty sequence, or a ``names_filter`` that matches
            nothing; each message names the module. A ``dtype`` or ``chunk_size`` that :func:`~lstm_interp.trace`
            refuses.
        TypeError: if ``rnn`` is not an ``nn.LSTM``, ``nn.GRU`` or ``nn.RNN``.
    """
    check_dtype(dtype)
    check_chunk_size(chunk_size)
    T = check_inputs(rnn, inputs, name)
    cell = cell_type(rnn)
    prefixes = layer_prefixes(rnn, name)
    available = [f"{p}.{q}" for p in prefixes for q in QUANTITIES[cell]]
    names = select_names(names_filter, available)
    keep = set(names)
    width = {"hidden": output_size(rnn)}
    store = {n: torch.empty(T, width.get(n.rsplit(".", 1)[1], rnn.hidden_size), dtype=dtype) for n in names}
    device = rnn.weight_hh_l0.device
    layers = split_layers(rnn)
    state = _initial_state(hx, rnn, name, device)
    x_all = inputs.to(device, torch.float32)
    with traced_precision(device):
        if rnn.bidirectional:
            final_state = run_bidirectional_layers(
                layers, prefixes, x_all, state=state, chunk_size=chunk_size, keep=keep, store=store
            )
        else:
            final_state = run_layers(
                layers, prefixes, T, x_all.__getitem__, state=state, chunk_size=chunk_size, keep=keep, store=store
            )
    return Trace(
        store,
        text=text,
        tokens=tokens if tokens is not None else torch.arange(T),
        cell=cell,
        num_layers=len(prefixes),
        final_state=final_state,
        layer_names=prefixes,
        chars=chars,
        labels=labels,
    )


def _initial_state(
    hx: Tensor | tuple[Tensor, Tensor] | None, rnn: nn.RNNBase, name: str, device: torch.device
) -> list[LayerState]:
    """One state per traced layer (layer and direction, in ``h_n`` order), shaped (1, 1, width)."""
    cell = cell_type(rnn)
    entries = rnn.num_layers * (2 if rnn.bidirectional else 1)
    if hx is None:
        return [zero_state(cell, rnn.hidden_size, device, output_size=output_size(rnn)) for _ in range(entries)]

    def per_layer(t: object, what: str, width: int) -> list[Tensor]:
        shapes = [(entries, width), (entries, 1, width)]
        if not isinstance(t, Tensor) or tuple(t.shape) not in shapes:
            got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(
                f"`hx` {what} of {name!r} must hold one sequence's state for each of its {entries} layer directions, "
                f"of shape {shapes[0]} or {shapes[1]}; got {got}"
            )
        t = t.reshape(entries, 1, width).to(device, torch.float32)
        return [t[k : k + 1] for k in range(entries)]

    if cell == "lstm":
        if not isinstance(hx, Sequence) or len(hx) != 2:
            raise ValueError(f"the `hx` of LSTM {name!r} must be a pair (h0, c0), got {type(hx).__name__}")
        return list(zip(per_layer(hx[0], "h0", output_size(rnn)), per_layer(hx[1], "c0", rnn.hidden_size), strict=True))
    return per_layer(hx, "h0", rnn.hidden_size)
