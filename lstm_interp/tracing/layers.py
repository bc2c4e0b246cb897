"""The chunked layer loop shared by every trace: fused kernel per layer, then exact gates from its hidden states."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from lstm_interp.models.char_lstm import LayerState
from lstm_interp.tracing.recurrence import gru_layer_activations, lstm_layer_activations


def cell_type(layer: nn.Module) -> str:
    """``"lstm"``, ``"gru"`` or ``"rnn"`` for a recurrent module (checked with isinstance, so subclasses count)."""
    if isinstance(layer, nn.LSTM):
        return "lstm"
    if isinstance(layer, nn.GRU):
        return "gru"
    if isinstance(layer, nn.RNN):
        return "rnn"
    raise TypeError(f"expected an nn.LSTM, nn.GRU or nn.RNN, got {type(layer).__name__}")


def zero_state(cell: str, hidden_size: int, device: torch.device) -> LayerState:
    zeros = torch.zeros(1, 1, hidden_size, device=device)
    return (zeros, zeros.clone()) if cell == "lstm" else zeros


@contextlib.contextmanager
def traced_precision(device: torch.device) -> Iterator[None]:
    """Float32 without autocast, and subnormals flushed to zero, for the duration of a trace.

    Running products of forget gates pass through the subnormal range (< 1.2e-38) on their way to zero, where x86
    arithmetic is ~100x slower; values that small are far below the float32 resolution of any cell state.
    PyTorch's default (no flushing) is restored afterwards.
    """
    autocast_off = torch.autocast(device.type, enabled=False) if device.type in ("cpu", "cuda") else None
    flushing = torch.set_flush_denormal(True)
    try:
        with autocast_off or contextlib.nullcontext():
            yield
    finally:
        if flushing:
            torch.set_flush_denormal(False)


def run_layers(
    layers: Sequence[nn.RNNBase],
    prefixes: Sequence[str],
    length: int,
    layer_input: Callable[[slice], Tensor],
    *,
    state: Sequence[LayerState],
    chunk_size: int,
    keep: set[str],
    store: dict[str, Tensor],
    input_projection: Callable[[slice], Tensor] | None = None,
    on_output: Callable[[slice, Tensor], None] | None = None,
) -> list[LayerState]:
    """Trace stacked single-layer, unidirectional, ``batch_first`` recurrent modules over one sequence.

    Args:
        layers: one single-layer module per layer, all of one cell type.
        prefixes: the name prefix of each layer (``"layers.0"``); quantities are stored as ``f"{prefix}.{q}"``.
        length: number of time steps ``T``.
        layer_input: rows -> (L, I) input of the first layer for those time steps.
        state: the state before the first step, one entry per layer.
        chunk_size: time steps per chunk; the state is carried from chunk to chunk.
        keep: the names to store; quantities nobody asked for are not computed.
        store: name -> preallocated (T, ·) tensor, filled in place.
        input_projection: rows -> (L, 4H) precomputed ``x @ W_ih.T + b_ih + b_hh`` of the first LSTM layer
            (a per-character table lookup when the input is an embedding), or ``None``.
        on_output: called with (rows, last layer's hidden states) after each chunk.

    Returns:
        The state after the last step (from the fused kernels).
    """
    state = list(state)
    # Concatenated [W_ih, W_hh] of each LSTM layer, built once rather than once per chunk.
    stacked = [
        torch.cat([lay.weight_ih_l0, lay.weight_hh_l0], dim=1).T.contiguous() if isinstance(lay, nn.LSTM) else None
        for lay in layers
    ]
    for start in range(0, length, chunk_size):
        rows = slice(start, min(start + chunk_size, length))
        x = layer_input(rows)  # (L, I)
        for i, (layer, prefix) in enumerate(zip(layers, prefixes, strict=True)):
            out, new_state = layer(x[None], state[i])
            hidden = out[0]  # (L, H)
            wanted = {n[len(prefix) + 1 :] for n in keep if n.startswith(prefix + ".")} - {"hidden"}
            acts: dict[str, Tensor] = {}
            if wanted:
                projection = input_projection(rows) if i == 0 and input_projection is not None else None
                acts = _gates(layer, x, hidden, state[i], projection, stacked[i])
            acts["hidden"] = hidden
            for quantity, value in acts.items():
                name = f"{prefix}.{quantity}"
                if name in keep:
                    store[name][rows] = value.detach().to("cpu", store[name].dtype)
            state[i] = new_state
            x = hidden
        if on_output is not None:
            on_output(rows, x)
    return state


def _gates(
    layer: nn.RNNBase, x: Tensor, hidden: Tensor, state: LayerState, projection: Tensor | None, stacked: Tensor | None
) -> dict[str, Tensor]:
    weights = (
        layer.weight_ih_l0,
        layer.weight_hh_l0,
        getattr(layer, "bias_ih_l0", None),
        getattr(layer, "bias_hh_l0", None),
    )
    if isinstance(layer, nn.LSTM):
        h0, c0 = state
        x_in = None if projection is not None else x
        return lstm_layer_activations(x_in, projection, hidden, h0[0, 0], c0[0, 0], *weights, stacked_weight=stacked)
    if isinstance(layer, nn.GRU):
        return gru_layer_activations(x, hidden, state[0, 0], *weights)  # type: ignore[index]
    return {}
