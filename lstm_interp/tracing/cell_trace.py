"""Trace an ``nn.LSTMCell``, ``nn.GRUCell`` or ``nn.RNNCell``: the cells a user steps by hand in a Python loop.

Attention decoders, speech models and reinforcement-learning policies rarely hand a whole sequence to an
``nn.LSTM``; they call a cell module once per step, often doing something between the calls (attention over an
encoder, an action chosen, a state reset at an episode's end). The trace of such a cell is one row per call, in call
order, and every gate of a row is recomputed exactly from that call's own input and the state it received
(``incoming``), whatever the user did to the state between calls. All rows come out of one batched matmul, so the
cost does not grow with a Python loop.

Without ``incoming``, the state is carried from call to call as ``h = cell(x_t, h)`` would carry it, from ``hx``
(zeros by default); that sequence runs through the fused kernel of an ``nn.LSTM``/``nn.GRU``/``nn.RNN`` holding the
cell's weights (:func:`~lstm_interp.trace_rnn`), the same computation up to float rounding.

Names: the cell's module path, then the quantity, as for every other module: ``decoder.cell.forget_gate`` (B: the
cell module sits at ``decoder.cell``), ``policy.gru.update_gate``. ``trace.layer_names`` is ``[name]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lstm_interp.tracing.layers import cell_type, traced_precision
from lstm_interp.tracing.module_trace import trace_rnn
from lstm_interp.tracing.quantities import QUANTITIES
from lstm_interp.tracing.recurrence import gru_gates, lstm_gates
from lstm_interp.tracing.trace import NamesFilter, Trace, select_names
from lstm_interp.tracing.trace_arguments import check_dtype

CELL_CLASSES = (nn.LSTMCell, nn.GRUCell, nn.RNNCell)
# What trace_cell follows, for the messages of its refusals.
SUPPORTED_CELLS = "nn.LSTMCell, nn.GRUCell and nn.RNNCell (and their subclasses), called once per step"

CellState = Tensor | tuple[Tensor, Tensor]


def check_cell(cell: object, name: str = "cell") -> str:
    """The kind of ``cell`` (``"lstm"``, ``"gru"`` or ``"rnn"``) once it is a cell module the trace follows.

    Raises:
        TypeError: anything else, naming ``name``, its class and what is supported.
    """
    if not isinstance(cell, CELL_CLASSES):
        raise TypeError(
            f"{name!r} is a {type(cell).__name__}; the cell trace follows {SUPPORTED_CELLS} (a whole sequence "
            "given to an nn.LSTM, nn.GRU or nn.RNN goes through trace_rnn)"
        )
    return cell_type(cell)


def cell_step_activations(cell: nn.RNNCellBase, x: Tensor, h_prev: Tensor, c_prev: Tensor | None) -> dict[str, Tensor]:
    """Every quantity of N independent steps of ``cell``, each (N, H), in float32.

    Args:
        cell: an ``nn.LSTMCell``, ``nn.GRUCell`` or ``nn.RNNCell``.
        x: (N, input_size) each step's input.
        h_prev: (N, H) the hidden state each step received; ``c_prev`` (N, H) the cell state (LSTM only).

    Returns:
        The quantities of :data:`~lstm_interp.tracing.QUANTITIES` for the cell's kind, ``hidden`` (and an LSTM's
        ``cell``) included: what each call returned.
    """
    kind = cell_type(cell)
    w_ih, w_hh = cell.weight_ih.float(), cell.weight_hh.float()
    b_ih = cell.bias_ih.float() if cell.bias else None
    b_hh = cell.bias_hh.float() if cell.bias else None
    H = cell.hidden_size
    if kind == "gru":
        gates = gru_gates(x, h_prev, w_ih, w_hh, b_ih, b_hh)
        gates["hidden"] = torch.lerp(gates["new_gate"], h_prev, gates["update_gate"])  # (1 - z) * n + z * h
        return gates
    pre = torch.cat([x, h_prev], dim=1) @ torch.cat([w_ih, w_hh], dim=1).T  # (N, G·H)
    if cell.bias:
        pre = pre + b_ih + b_hh
    if kind == "rnn":
        return {"hidden": pre.tanh() if cell.nonlinearity == "tanh" else pre.relu()}
    assert c_prev is not None
    gates = lstm_gates(pre, H)
    gates["cell"] = torch.addcmul(gates["forget_gate"] * c_prev, gates["input_gate"], gates["cell_candidate"])
    gates["hidden"] = gates["output_gate"] * gates["cell"].tanh()
    return gates


@torch.no_grad()
def trace_cell(
    cell: nn.RNNCellBase,
    inputs: Tensor,
    *,
    hx: CellState | None = None,
    incoming: CellState | None = None,
    name: str = "cell",
    names_filter: NamesFilter = None,
    dtype: torch.dtype = torch.float32,
    text: str | None = None,
    tokens: Tensor | None = None,
    chars: str | None = None,
    labels: Sequence[str] | None = None,
) -> Trace:
    """Trace the calls of an ``nn.LSTMCell``, ``nn.GRUCell`` or ``nn.RNNCell``: one row per call, in call order.

    Args:
        cell: the cell module; its own weights are used, in float32.
        inputs: (T, input_size) the input of each call (one batch row).
        hx: the state before the first call when the state is carried from call to call: ``h0`` (H,) or (1, H),
            ``(h0, c0)`` for an LSTMCell; ``None`` for zeros, as the module starts without one.
        incoming: instead of ``hx``, the state each call received, for a loop that does more than carry it
            (resets, attention, zoneout): (T, H), ``(h, c)`` of (T, H) each for an LSTMCell. Gates are then
            recomputed from each call's own state, exactly.
        name: the module path, used as the name prefix (``decoder.cell`` gives ``decoder.cell.forget_gate``).
        names_filter, dtype: as for :func:`~lstm_interp.trace`.
        text, tokens, chars, labels: as for :func:`~lstm_interp.trace_rnn`: what the steps stand for, if known.

    Returns:
        A :class:`~lstm_interp.Trace` of one layer named ``name``; ``final_state`` is the last call's output state
        ((1, 1, H), a pair for an LSTMCell).

    Raises:
        TypeError: ``cell`` is not one of the supported cell modules.
        ValueError: ``inputs``, ``hx`` or ``incoming`` of the wrong shape, both ``hx`` and ``incoming`` given, or
            a ``names_filter`` matching nothing; each message names the module.

    Example::

        >>> cell = nn.LSTMCell(8, 16)  # doctest: +SKIP
        >>> tr = trace_cell(cell, torch.randn(50, 8), name="decoder.cell")  # doctest: +SKIP
        >>> tr["decoder.cell.forget_gate"].shape  # (T, H)  # doctest: +SKIP
        torch.Size([50, 16])
    """
    kind = check_cell(cell, name)
    check_dtype(dtype)
    if not isinstance(inputs, Tensor) or inputs.dim() != 2 or inputs.shape[1] != cell.input_size:
        got = tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
        raise ValueError(f"`inputs` must be (T, {cell.input_size}) for {name!r}, got shape {got}")
    T = int(inputs.shape[0])
    if T == 0:
        raise ValueError(f"cannot trace an empty sequence through {name!r}; `inputs` has shape {tuple(inputs.shape)}")
    if hx is not None and incoming is not None:
        raise ValueError(
            f"give `hx` (carried from the first call) or `incoming` (each call's state) for {name!r}, not both"
        )
    names = select_names(names_filter, [f"{name}.{q}" for q in QUANTITIES[kind]])
    if incoming is None:
        return _carried(cell, kind, inputs, hx, name, names, dtype, text, tokens, chars, labels)
    device = cell.weight_hh.device
    h_in, c_in = _states(incoming, kind, (T, cell.hidden_size), name, "incoming")
    with traced_precision(device):
        acts = cell_step_activations(
            cell, inputs.to(device, torch.float32), h_in.to(device), None if c_in is None else c_in.to(device)
        )
    last = acts["hidden"][-1].reshape(1, 1, -1)
    final = (last, acts["cell"][-1].reshape(1, 1, -1)) if kind == "lstm" else last
    store = {n: acts[n.rsplit(".", 1)[1]].detach().to("cpu", dtype) for n in names}
    return Trace(store, text=text, tokens=tokens if tokens is not None else torch.arange(T), cell=kind, num_layers=1,
                 final_state=[final], layer_names=[name], chars=chars, labels=labels)  # fmt: skip


def as_rnn(cell: nn.RNNCellBase) -> nn.RNNBase:
    """A one-layer ``nn.LSTM``/``nn.GRU``/``nn.RNN`` holding float32 copies of ``cell``'s weights: the same step,
    on the fused kernel."""
    kind = cell_type(cell)
    cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[kind]
    kwargs: dict[str, object] = {"nonlinearity": cell.nonlinearity} if kind == "rnn" else {}
    with torch.device("meta"):  # no initialisation drawn from the user's random generator
        rnn = cls(cell.input_size, cell.hidden_size, bias=cell.bias, **kwargs)
    rnn = rnn.to_empty(device=cell.weight_hh.device)
    with torch.no_grad():
        for param, value in rnn.named_parameters():
            value.copy_(getattr(cell, param.removesuffix("_l0")).float())
    return rnn.eval()


def _carried(
    cell: nn.RNNCellBase,
    kind: str,
    inputs: Tensor,
    hx: CellState | None,
    name: str,
    names: list[str],
    dtype: torch.dtype,
    text: str | None,
    tokens: Tensor | None,
    chars: str | None,
    labels: Sequence[str] | None,
) -> Trace:
    state: CellState | None = None
    if hx is not None:
        h0, c0 = _states(hx, kind, (cell.hidden_size,), name, "hx")
        state = (h0[None], c0[None]) if kind == "lstm" else h0[None]  # type: ignore[index]
    return trace_rnn(as_rnn(cell), inputs, name=name, hx=state, names_filter=names, dtype=dtype, text=text,
                     tokens=tokens, chars=chars, labels=labels)  # fmt: skip


def _states(value: object, kind: str, shape: tuple[int, ...], name: str, what: str) -> tuple[Tensor, Tensor | None]:
    """``(h, c)`` (``c`` None but for an LSTMCell) of ``shape``, float32; a leading 1 is dropped from a
    one-row ``hx``."""
    expected = f"({', '.join(map(str, shape))})"

    def one(t: object, part: str) -> Tensor:
        if isinstance(t, Tensor) and len(shape) == 1 and t.dim() == 2 and t.shape[0] == 1:
            t = t[0]
        if not isinstance(t, Tensor) or tuple(t.shape) != shape:
            got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"`{what}` {part} of {name!r} must be {expected}, got {got}")
        return t.float()

    if kind == "lstm":
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise ValueError(f"`{what}` of LSTMCell {name!r} must be a pair (h, c), got {type(value).__name__}")
        return one(value[0], "h"), one(value[1], "c")
    return one(value, "h"), None
