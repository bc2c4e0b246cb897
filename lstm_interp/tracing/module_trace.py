"""Trace any ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` given its input: the exact trace for modules we did not build.

A multi-layer ``nn.LSTM`` returns only its last layer's outputs, so each layer is re-run on its own through the
same fused kernel (a single-layer module holding that layer's weights), and its gates are recomputed from its
hidden states exactly as for :func:`~lstm_interp.trace`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lstm_interp.tracing.layers import LayerState, cell_type, run_layers, traced_precision, zero_state
from lstm_interp.tracing.quantities import QUANTITIES
from lstm_interp.tracing.trace import DEFAULT_CHUNK_SIZE, NamesFilter, Trace, select_names


def layer_prefixes(rnn: nn.RNNBase, name: str) -> list[str]:
    """Name prefixes of the layers of ``rnn`` at module path ``name``: ``name`` alone for a single layer,
    ``name.0``, ``name.1``, ... for several."""
    if rnn.num_layers == 1:
        return [name]
    return [f"{name}.{k}" for k in range(rnn.num_layers)]


def check_supported(rnn: nn.Module, name: str = "module") -> None:
    """Raise a clear error for recurrent modules the trace cannot follow exactly."""
    cell_type(rnn)
    assert isinstance(rnn, nn.RNNBase)
    if rnn.bidirectional:
        raise ValueError(f"{name!r} is bidirectional; only unidirectional recurrent layers can be traced")
    if getattr(rnn, "proj_size", 0):
        raise ValueError(f"{name!r} has proj_size={rnn.proj_size}; LSTMs with projections are not supported")


def split_layers(rnn: nn.RNNBase) -> list[nn.RNNBase]:
    """One single-layer, ``batch_first`` module per layer of ``rnn``, holding copies of that layer's weights."""
    layers = []
    cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell_type(rnn)]
    for k in range(rnn.num_layers):
        kwargs = {"nonlinearity": rnn.nonlinearity} if isinstance(rnn, nn.RNN) else {}
        input_size = rnn.input_size if k == 0 else rnn.hidden_size
        layer = cls(input_size, rnn.hidden_size, bias=rnn.bias, batch_first=True, **kwargs)
        with torch.no_grad():
            for param in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                if hasattr(layer, f"{param}_l0"):
                    getattr(layer, f"{param}_l0").copy_(getattr(rnn, f"{param}_l{k}").float())
        layers.append(layer.to(rnn.weight_hh_l0.device).eval())
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
) -> Trace:
    """Trace one sequence through a (possibly multi-layer) ``nn.LSTM``, ``nn.GRU`` or ``nn.RNN``.

    Args:
        rnn: the module (unidirectional, no ``proj_size``); its own weights are used, in float32.
        inputs: (T, input_size), the sequence the module receives (one batch row, time first).
        name: the module's path, used as the name prefix (``"encoder.lstm"`` gives ``encoder.lstm.0.cell``, or
            ``encoder.lstm.cell`` for a single layer).
        hx: initial state as ``nn.LSTM`` takes it, for this one sequence: ``(h0, c0)`` each (num_layers, H), or
            (num_layers, 1, H); ``None`` for zeros.
        names_filter, dtype, chunk_size: as for :func:`~lstm_interp.trace`.
        text: the text the time steps stand for, if any (kept on the trace for plots and reports).
        tokens: (T,) ids of the time steps, if any.
        chars: the vocabulary ``tokens`` index, in id order, if any.

    Raises:
        ValueError: for a bidirectional module, an LSTM with ``proj_size``, inputs of the wrong shape, or a
            ``names_filter`` that matches nothing.
        TypeError: if ``rnn`` is not an ``nn.LSTM``, ``nn.GRU`` or ``nn.RNN``.
    """
    check_supported(rnn, name)
    cell = cell_type(rnn)
    if inputs.dim() != 2 or inputs.shape[1] != rnn.input_size:
        raise ValueError(f"`inputs` must be (T, {rnn.input_size}) for {name!r}, got shape {tuple(inputs.shape)}")
    T = inputs.shape[0]
    if T == 0:
        raise ValueError("cannot trace an empty sequence")
    prefixes = layer_prefixes(rnn, name)
    available = [f"{p}.{q}" for p in prefixes for q in QUANTITIES[cell]]
    names = select_names(names_filter, available)
    keep = set(names)
    store = {n: torch.empty(T, rnn.hidden_size, dtype=dtype) for n in names}
    device = rnn.weight_hh_l0.device
    layers = split_layers(rnn)
    state = _initial_state(hx, cell, rnn.num_layers, rnn.hidden_size, device)
    x_all = inputs.to(device, torch.float32)
    with traced_precision(device):
        final_state = run_layers(
            layers, prefixes, T, lambda rows: x_all[rows], state=state, chunk_size=chunk_size, keep=keep, store=store
        )
    return Trace(
        store,
        text=text,
        tokens=tokens if tokens is not None else torch.arange(T),
        cell=cell,
        num_layers=rnn.num_layers,
        final_state=final_state,
        layer_names=prefixes,
        chars=chars,
    )


def _initial_state(
    hx: Tensor | tuple[Tensor, Tensor] | None, cell: str, num_layers: int, hidden_size: int, device: torch.device
) -> list[LayerState]:
    if hx is None:
        return [zero_state(cell, hidden_size, device) for _ in range(num_layers)]

    def per_layer(t: Tensor) -> list[Tensor]:
        t = t.reshape(num_layers, -1, hidden_size)
        if t.shape[1] != 1:
            raise ValueError(f"`hx` must hold the state of one sequence, got batch size {t.shape[1]}")
        return [t[k : k + 1].to(device, torch.float32) for k in range(num_layers)]

    if cell == "lstm":
        if not isinstance(hx, Sequence) or len(hx) != 2:
            raise ValueError("an LSTM's `hx` must be a pair (h0, c0)")
        return list(zip(per_layer(hx[0]), per_layer(hx[1]), strict=True))
    return per_layer(hx)  # type: ignore[arg-type]
