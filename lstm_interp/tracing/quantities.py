"""The one table of per-layer quantities: which each kind of cell has, what range each spans, how each is shown.

Every consumer reads it from here: the tracer (what to compute), the analyses (which quantities are sigmoid gates,
which gate is the memory), the figures and the HTML report (how a value maps onto the diverging -1..+1 scale).

Kinds:

- ``"gate"``: a sigmoid output in 0..1 (LSTM input/forget/output gates, GRU reset/update gates);
- ``"signed"``: a tanh output in -1..1 (hidden states, the LSTM cell candidate, the GRU new gate; a plain RNN's
  hidden state with ``nonlinearity="relu"`` is the exception, unbounded above, and is clipped when shown);
- ``"unbounded"``: the LSTM cell state, any real value, shown squashed with tanh as in Karpathy et al. (2015).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

QuantityKind = Literal["gate", "signed", "unbounded"]

LSTM_GATES = ("input_gate", "forget_gate", "cell_candidate", "output_gate")
LSTM_QUANTITIES = (*LSTM_GATES, "cell", "hidden")
GRU_QUANTITIES = ("reset_gate", "update_gate", "new_gate", "hidden")
RNN_QUANTITIES = ("hidden",)
# The quantities each kind of cell has, in trace order.
QUANTITIES: dict[str, tuple[str, ...]] = {"lstm": LSTM_QUANTITIES, "gru": GRU_QUANTITIES, "rnn": RNN_QUANTITIES}

QUANTITY_KINDS: dict[str, QuantityKind] = {
    "cell": "unbounded",
    "hidden": "signed",
    "cell_candidate": "signed",
    "new_gate": "signed",
    "input_gate": "gate",
    "forget_gate": "gate",
    "output_gate": "gate",
    "reset_gate": "gate",
    "update_gate": "gate",
}
# Display order in selectors and listings: the states people look at first, then the gates.
QUANTITY_ORDER = (
    "cell",
    "hidden",
    "input_gate",
    "forget_gate",
    "cell_candidate",
    "output_gate",
    "reset_gate",
    "update_gate",
    "new_gate",
)
# The sigmoid gates of each kind of cell (the ones that saturate at 0 and 1); an RNN has none.
GATES: dict[str, tuple[str, ...]] = {
    cell: tuple(q for q in quantities if QUANTITY_KINDS[q] == "gate") for cell, quantities in QUANTITIES.items()
}
# The gate whose right saturation means "keep the previous state": PyTorch's GRU computes
# h_t = (1 - z_t) * n_t + z_t * h_{t-1}, so its update gate z plays the LSTM forget gate's part.
MEMORY_GATE: dict[str, str] = {"lstm": "forget_gate", "gru": "update_gate"}


def quantities_of(cell: str) -> tuple[str, ...]:
    """The per-layer quantities of ``cell`` (``"lstm"``, ``"gru"`` or ``"rnn"``).

    Raises:
        ValueError: for another cell type, naming the known ones.
    """
    try:
        return QUANTITIES[cell]
    except KeyError:
        raise ValueError(f"unknown cell type {cell!r}; expected one of {list(QUANTITIES)}") from None


def state_quantity(cell: str) -> str:
    """The quantity that carries a layer's memory: the cell state of an LSTM, the hidden state of a GRU or RNN.

    It is what :func:`~lstm_interp.find_cells` scores by default and what the paper's figures colour.
    """
    return "cell" if "cell" in quantities_of(cell) else "hidden"


def quantity_kind(quantity: str) -> QuantityKind:
    """``"gate"``, ``"signed"`` or ``"unbounded"`` (see the module docstring).

    Raises:
        ValueError: for a name that is no per-layer quantity, listing the known ones.
    """
    try:
        return QUANTITY_KINDS[quantity]
    except KeyError:
        known = list(QUANTITY_ORDER)
        raise ValueError(f"unknown quantity {quantity!r}; the per-layer quantities are {known}") from None


def display_values(values: Tensor, quantity: str) -> Tensor:
    """Values of ``quantity`` mapped onto the diverging scale -1..+1 that every figure and page colours.

    A gate ``g`` becomes ``2g - 1`` (0.5 at the centre), the cell state ``tanh(c)``, signed values stay as they are;
    the result is clipped to [-1, 1], so infinities become -1 or +1 and NaN stays NaN.
    """
    kind = quantity_kind(quantity)
    x = values.detach().to(torch.float32)
    if kind == "unbounded":
        return torch.tanh(x)  # within [-1, 1] already: tanh(+-inf) = +-1, and NaN stays NaN
    if kind == "gate":
        return x.mul(2).sub_(1).clamp_(-1, 1)
    return x.clamp(-1, 1)


def display_codes(values: Tensor, quantity: str) -> Tensor:
    """(T, H) activations -> (H, T) uint8 codes, 0 = -1 and 255 = +1 on the pictures' diverging scale.

    The display value (:func:`display_values`) quantised to one byte, ``code / 127.5 - 1``: what the HTML report,
    the live explorer and the unit atlas send, and what ``colours.js`` turns into colours. NaN shows as 0.
    """
    x = torch.nan_to_num(display_values(values.detach().cpu(), quantity), nan=0.0)
    codes = ((x + 1) * 127.5).round().to(torch.uint8)
    return codes.T.contiguous()
