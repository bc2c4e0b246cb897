"""The chunked layer loop shared by every trace: fused kernel per layer, then exact gates from its hidden states."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from lstm_interp.models.char_lstm import LayerState
from lstm_interp.tracing.recurrence import gru_layer_activations, lstm_layer_activations


def cell_type(layer: nn.Module) -> str:
    """``"lstm"``, ``"gru"`` or ``"rnn"`` for a recurrent module or cell module (checked with isinstance, so
    subclasses count): ``nn.LSTM`` and ``nn.LSTMCell`` are both ``"lstm"``."""
    if isinstance(layer, (nn.LSTM, nn.LSTMCell)):
        return "lstm"
    if isinstance(layer, (nn.GRU, nn.GRUCell)):
        return "gru"
    if isinstance(layer, (nn.RNN, nn.RNNCell)):
        return "rnn"
    raise TypeError(
        f"expected an nn.LSTM, nn.GRU, nn.RNN, nn.LSTMCell, nn.GRUCell or nn.RNNCell, got {type(layer).__name__}"
    )


def zero_state(cell: str, hidden_size: int, device: torch.device, *, output_size: int | None = None) -> LayerState:
    """The zero state of one layer, shaped as the fused kernel takes it: (1, 1, width), a pair for an LSTM.

    ``output_size`` is the width of an LSTM's hidden state when it differs from its cell's (``proj_size``).
    """
    cell_zeros = torch.zeros(1, 1, hidden_size, device=device)
    if cell != "lstm":
        return cell_zeros
    return torch.zeros(1, 1, output_size or hidden_size, device=device), cell_zeros


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
    on_chunk: Callable[[int, list[LayerState]], None] | None = None,
) -> list[LayerState]:
    """Trace stacked single-layer, unidirectional, ``batch_first`` recurrent modules over one sequence, in chunks.

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
        on_chunk: called after each chunk with the steps done so far and the state there, every layer's (a run from
            that state over the rest computes the same chunks); an exception it raises stops the run.

    Returns:
        The state after the last step (from the fused kernels).
    """
    state = list(state)
    # Concatenated [W_ih, W_hh] of each LSTM layer whose gates are asked for, kept between calls (stacked_weight).
    stacked = [
        stacked_weight(lay) if isinstance(lay, nn.LSTM) and _gates_wanted(prefix, keep) else None
        for lay, prefix in zip(layers, prefixes, strict=True)
    ]
    for start in range(0, length, chunk_size):
        rows = slice(start, min(start + chunk_size, length))
        x = layer_input(rows)  # (L, I)
        for i, (layer, prefix) in enumerate(zip(layers, prefixes, strict=True)):
            out, new_state = layer(x[None], state[i])
            hidden = out[0]  # (L, H), or (L, proj_size)
            acts: dict[str, Tensor] = {}
            if _gates_wanted(prefix, keep):
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
        if on_chunk is not None:
            on_chunk(rows.stop, list(state))
    return state


# layer -> (the weights' identity and versions, their concatenation); weak, so a dropped model takes its entry along.
_STACKED: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[int, ...], Tensor]] = weakref.WeakKeyDictionary()


def stacked_weight(layer: nn.LSTM) -> Tensor:
    """``[W_ih, W_hh]ᵀ`` of a single-layer LSTM, (I + H, 4H), contiguous: the gates' one matmul.

    Building it copies both matrices (8 MB for a 512-unit layer, several milliseconds), which was most of a short
    trace's time; it is kept until either weight changes (a new tensor, or an in-place update bumps its version),
    so a live explorer tracing one character after another pays for it once.
    """
    w_ih, w_hh = layer.weight_ih_l0, layer.weight_hh_l0
    key = (w_ih.data_ptr(), w_ih._version, w_hh.data_ptr(), w_hh._version, *w_ih.shape, *w_hh.shape)
    found = _STACKED.get(layer)
    if found is not None and found[0] == key and found[1].device == w_ih.device and found[1].dtype == w_ih.dtype:
        return found[1]
    stacked = torch.cat([w_ih, w_hh], dim=1).T.contiguous().detach()
    _STACKED[layer] = (key, stacked)
    return stacked


def run_bidirectional_layers(
    layers: Sequence[nn.RNNBase],
    prefixes: Sequence[str],
    inputs: Tensor,
    *,
    state: Sequence[LayerState],
    chunk_size: int,
    keep: set[str],
    store: dict[str, Tensor],
) -> list[LayerState]:
    """Trace the layers of a bidirectional module over one sequence, one whole layer after another.

    A layer cannot be chunked together with the next, as :func:`run_layers` does, because the input of layer
    k + 1 at step t holds the reverse direction of layer k, which has read every later step. So each direction of
    a layer is traced through :func:`run_layers` on its own (in chunks, the state carried): the forward direction
    over ``x_0 .. x_{T-1}``, the reverse one over ``x_{T-1} .. x_0``; the reverse rows are then flipped back, so
    row t of every stored quantity belongs to step t of the sequence. The next layer reads both hidden sequences
    concatenated, forward first, as ``nn.LSTM`` feeds them.

    Args:
        layers: single-layer, unidirectional, ``batch_first`` modules, two per layer: forward, then reverse.
        prefixes: the name prefix of each, in the same order.
        inputs: (T, I) the first layer's input, on the modules' device.
        state, chunk_size, keep, store: as for :func:`run_layers`, one ``state`` entry per module.

    Returns:
        The state of each module after its last step, in ``layers`` order (``nn.LSTM``'s ``h_n`` order): for a
        reverse direction, the state after it read ``x_0``.
    """
    if len(layers) % 2 or len(layers) != len(prefixes) or len(layers) != len(state):
        raise ValueError(
            f"expected two modules per layer with one prefix and one state each, got {len(layers)} modules, "
            f"{len(prefixes)} prefixes and {len(state)} states"
        )
    final: list[LayerState] = []
    x = inputs
    for k in range(0, len(layers), 2):
        outputs = []
        for i, sequence in ((k, x), (k + 1, x.flip(0))):
            # Only this direction's own names: a forward prefix `rnn` is also the start of `rnn.reverse.cell`.
            mine = {n for n in keep if n.startswith(prefixes[i] + ".") and "." not in n[len(prefixes[i]) + 1 :]}
            hidden, last = _run_direction(layers[i], prefixes[i], sequence, state[i], chunk_size, mine, store)
            if i == k + 1:
                hidden = hidden.flip(0)
                for name in mine:
                    store[name] = store[name].flip(0)
            outputs.append(hidden)
            final.append(last)
        x = torch.cat(outputs, dim=1)  # (T, 2 * width)
    return final


def _run_direction(
    layer: nn.RNNBase,
    prefix: str,
    sequence: Tensor,
    state: LayerState,
    chunk_size: int,
    keep: set[str],
    store: dict[str, Tensor],
) -> tuple[Tensor, LayerState]:
    """One direction of one layer: its hidden sequence (in the order it read ``sequence``) and its final state."""
    chunks: list[Tensor] = []
    (last,) = run_layers(
        [layer],
        [prefix],
        len(sequence),
        sequence.__getitem__,
        state=[state],
        chunk_size=chunk_size,
        keep=keep,
        store=store,
        on_output=lambda _, hidden: chunks.append(hidden),
    )
    return torch.cat(chunks), last


def _gates_wanted(prefix: str, keep: set[str]) -> bool:
    """Whether anything of the layer at ``prefix`` besides its hidden state (which the fused kernel gives) is kept."""
    return any(n.startswith(prefix + ".") and n != f"{prefix}.hidden" for n in keep)


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
